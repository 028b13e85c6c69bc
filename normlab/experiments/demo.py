"""demo: a deep network on the embedded digits without normalization and with batch, layer and
group norm -- the experiment of ``normlab demo``, about ten seconds on two cores.

The network is the CS231n notebook's kind of deep, thin ReLU net with small initial weights
(six hidden layers of 100, ``N(0, 0.02^2)``): without normalization the signal shrinks by a
factor of about ``0.02 * sqrt(100 / 2)`` per layer and Adam needs many epochs to get it going,
while the normalized networks learn at once. It is :mod:`~normlab.experiments.bn_vs_baseline`'s
task with these settings.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from normlab.experiments import bn_vs_baseline
from normlab.experiments.base import Experiment
from normlab.experiments.config import opt
from normlab.experiments.runner import run_experiment

NAME = "demo"
DESCRIPTION = "deep net [100]*6 on the digits: none vs batch, layer and group norm (seconds)"


@dataclass(frozen=True)
class DemoConfig(bn_vs_baseline.BNvsBaselineConfig):
    """Settings of ``normlab demo``."""

    dataset: str = opt("digits", "digits | mnist | fashion-mnist | cifar10")
    normalizations: tuple[str, ...] = opt(
        ("none", "batchnorm", "layernorm", "groupnorm"), "normalizations compared"
    )
    hidden_dims: tuple[int, ...] = opt((100,) * 6, "widths of the hidden layers")
    weight_scale: float = opt(2e-2, "std of the Gaussian initial weights")
    num_training: int | None = opt(None, "training images (None: all 1197 of the digits)")
    num_epochs: int = opt(20, "epochs")
    threshold: float | None = opt(0.9, "validation accuracy target of the table")


def quick(config: DemoConfig) -> DemoConfig:
    """Five epochs."""
    return dataclasses.replace(config, quick=True, num_epochs=5)


EXPERIMENT = Experiment(
    NAME,
    DESCRIPTION,
    DemoConfig,
    bn_vs_baseline.runs,
    bn_vs_baseline.run_task,
    bn_vs_baseline.summarize,
    quick,
)


def run(config: DemoConfig | None = None, **kwargs) -> dict:
    """Run the demo (``jobs``, ``scheduler``, ``progress`` as in ``run_experiment``)."""
    return run_experiment(EXPERIMENT, config or DemoConfig(), **kwargs)
