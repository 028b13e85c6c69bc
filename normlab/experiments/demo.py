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
from normlab.vocab import label, seed_outputs

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


def why(results: dict) -> str:
    """Why the baseline stalls, from the signal-propagation records at initialization: the
    variance of the nonlinearity's input in the first and the last hidden layer, without
    normalization and with each normalization (first seed; the records hold the mean over
    channels of the channel variance, ``pre_act.var``). ``""`` when the runs were not recorded.
    """
    names = list(results["config"]["normalizations"])
    if "none" not in names:
        return ""
    var = {}
    for n in names:
        sig = (seed_outputs(results, n)[0].get("diagnostics") or {}).get("signal_propagation")
        v = ((sig or {}).get("pre_act") or {}).get("var")
        if v and len(v) > 2 and None not in (v[0], v[-2]):
            var[n] = (v[0], v[-2])  # the last layer is the scores': its last hidden one
    if "none" not in var or len(var) < 2:
        return ""
    a, b = var.pop("none")
    others = ", ".join(f"{x:.2g} and {y:.2g} with {label(n)}" for n, (x, y) in var.items())
    hidden = len(results["config"]["hidden_dims"])
    return (
        f"Why: at initialization the variance of the nonlinearities' input without "
        f"normalization is {a:.2g} in hidden layer 1 and {b:.2g} in hidden layer {hidden} "
        f"(the signal-propagation figure), against {others}."
    )


def headline(results: dict) -> str:
    """:func:`normlab.experiments.bn_vs_baseline.headline`, then :func:`why`."""
    return " ".join(filter(None, (bn_vs_baseline.headline(results), why(results))))


EXPERIMENT = dataclasses.replace(
    bn_vs_baseline.EXPERIMENT,
    name=NAME,
    description=DESCRIPTION,
    config_cls=DemoConfig,
    quick=quick,
    headline=headline,
)
