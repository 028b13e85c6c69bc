"""demo: a deep network on the embedded digits without normalization and with batch, layer and
group norm -- the experiment of ``normlab demo``, about ten seconds on two cores.

The network is the CS231n notebook's kind of deep, thin ReLU net with small initial weights
(six hidden layers of 100, ``N(0, 0.02^2)``): without normalization the signal shrinks by a
factor of about ``0.02 * sqrt(100 / 2)`` per layer and Adam needs many epochs to get it going,
while the normalized networks learn at once. It is :mod:`~normlab.experiments.bn_vs_baseline`
with these settings: its runs, task, summary, headline and figures.

The demo records training diagnostics by default (``diagnostics=40``: a
:class:`~normlab.diagnostics.Recorder` every 40 iterations, 12 records a run), so its first
report shows *why* the baseline stalls: its pre-activations collapse towards 0 layer by layer
(the histograms and the signal-propagation plot), its gradients and updates are orders of
magnitude below the normalized nets' (gradient histograms, update:data ratio against 1e-3).
``--diagnostics 0`` turns it off. Every 40 rather than 20: the records are written into
``results.json``, whose size (and writing time) grows with them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from normlab.experiments import bn_vs_baseline
from normlab.experiments.config import EVERY_NORMALIZATION, ExperimentConfig, field_of, opt

NAME = "demo"
DESCRIPTION = "deep net [100]*6 on the digits: none vs batch, layer and group norm (takes seconds)"

_Base = bn_vs_baseline.BNvsBaselineConfig


@dataclass(frozen=True)
class DemoConfig(_Base):
    """Settings of ``normlab demo``."""

    dataset: str = field_of(ExperimentConfig, "dataset")
    normalizations: tuple[str, ...] = field_of(_Base, "normalizations", EVERY_NORMALIZATION)
    hidden_dims: tuple[int, ...] = field_of(_Base, "hidden_dims", (100,) * 6)
    num_training: int | None = opt(None, "training images (None: all 1197 of the digits)")
    num_epochs: int = field_of(_Base, "num_epochs", 20)
    threshold: float | None = opt(0.9, "validation accuracy target of the table")
    diagnostics: int | None = field_of(ExperimentConfig, "diagnostics", 40)


def quick(config: DemoConfig) -> DemoConfig:
    """Five epochs."""
    return dataclasses.replace(config, quick=True, num_epochs=5)


EXPERIMENT = dataclasses.replace(
    bn_vs_baseline.EXPERIMENT,
    name=NAME,
    description=DESCRIPTION,
    config_cls=DemoConfig,
    quick=quick,
)
