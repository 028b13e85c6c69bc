"""weight-scale: sensitivity to the initial weight scale, with and without batch norm.

Setting (CS231n assignment 2, ``BatchNormalization.ipynb``, "Batch normalization and
initialization"): an eight-layer ReLU network, hidden layers ``[50] * 7``, 1000 training images,
20 weight scales ``np.logspace(-4, 0, 20)``, Adam with learning rate 1e-3, batches of 50,
10 epochs; for each scale the networks with and without batch norm start from the same
weights. A run whose loss becomes NaN or infinite is recorded as diverged (its final loss is
None) with the accuracies it reached until then.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from normlab.experiments.base import Experiment, RunSpec
from normlab.experiments.config import ExperimentConfig, opt
from normlab.experiments.runner import run_experiment
from normlab.experiments.training import (
    build_fc,
    load_data,
    norm_from_key,
    norm_label,
    train_solver,
)

NAME = "weight-scale"
DESCRIPTION = "deep net [50]*7 at 20 weight scales 1e-4..1, with and without batch norm"


@dataclass(frozen=True)
class WeightScaleConfig(ExperimentConfig):
    """Settings of ``weight-scale`` (the notebook's by default)."""

    dataset: str = opt("cifar10", "digits | mnist | fashion-mnist | cifar10")
    normalizations: tuple[str, ...] = opt(("none", "batchnorm"), "normalizations compared")
    hidden_dims: tuple[int, ...] = opt((50,) * 7, "widths of the hidden layers")
    scale_min: float = opt(1e-4, "smallest weight scale")
    scale_max: float = opt(1.0, "largest weight scale")
    num_scales: int = opt(20, "weight scales, log-spaced from scale_min to scale_max")
    num_training: int | None = opt(1000, "training images (None: all)")
    learning_rate: float = opt(1e-3, "Adam learning rate")
    batch_size: int = opt(50, "minibatch size")
    num_epochs: int = opt(10, "epochs")


def quick(config: WeightScaleConfig) -> WeightScaleConfig:
    """Five scales, two epochs, 300 images."""
    return dataclasses.replace(config, quick=True, num_scales=5, num_epochs=2, num_training=300)


def weight_scales(config: WeightScaleConfig) -> list[float]:
    """The swept scales, ``np.logspace(log10(scale_min), log10(scale_max), num_scales)``."""
    lo, hi = np.log10(config.scale_min), np.log10(config.scale_max)
    return [float(s) for s in np.logspace(lo, hi, config.num_scales)]


def runs(config: WeightScaleConfig) -> list[RunSpec]:
    """One run per (normalization, scale); both normalizations of a scale share the seed."""
    return [
        RunSpec(f"{n}/scale={i}", {"normalization": n, "weight_scale": s}, seed_key=f"scale={i}")
        for n in config.normalizations
        for i, s in enumerate(weight_scales(config))
    ]


def run_task(config: WeightScaleConfig, params: dict, seed: int) -> dict:
    """Train one network; return its curves and scores."""
    data = load_data(config, num_training=config.num_training)
    model, solver_seed = build_fc(
        config, data, params["normalization"], params["weight_scale"], seed
    )
    out = train_solver(
        model,
        data,
        solver_seed,
        update_rule="adam",
        optim_config={"learning_rate": config.learning_rate},
        batch_size=config.batch_size,
        num_epochs=config.num_epochs,
    )
    return {**out, "weight_scale": params["weight_scale"]}


def summarize(config: WeightScaleConfig, outputs: dict, seconds: dict) -> dict:
    """Per normalization, the three notebook curves against the scale; a table per scale."""
    scales = weight_scales(config)
    curves = {}
    for n in config.normalizations:
        outs = [outputs[f"{n}/scale={i}"] for i in range(len(scales))]
        curves[n] = {
            key: [o[key] for o in outs]
            for key in ("best_val_acc", "best_train_acc", "final_train_loss", "diverged")
        }
    columns = ["weight scale"] + [
        f"{norm_label(norm_from_key(n))}: {what}"
        for n in config.normalizations
        for what in ("best val acc", "best train acc", "final train loss")
    ]
    rows = [
        [s]
        + [
            curves[n][key][i]
            for n in config.normalizations
            for key in ("best_val_acc", "best_train_acc", "final_train_loss")
        ]
        for i, s in enumerate(scales)
    ]
    return {"weight_scales": scales, "curves": curves, "table": {"columns": columns, "rows": rows}}


EXPERIMENT = Experiment(NAME, DESCRIPTION, WeightScaleConfig, runs, run_task, summarize, quick)


def run(config: WeightScaleConfig | None = None, **kwargs) -> dict:
    """Run the experiment (``jobs``, ``scheduler``, ``progress`` as in ``run_experiment``).

    Returns
    -------
    results : dict
        ``weight_scales`` (S,); ``curves[norm]``: ``best_val_acc``, ``best_train_acc``,
        ``final_train_loss`` (None where diverged), ``diverged``, each of length S; ``runs``;
        ``table``.
    """
    return run_experiment(EXPERIMENT, config or WeightScaleConfig(), **kwargs)
