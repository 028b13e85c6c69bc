"""batch-size: how batch, layer and group norm fare as the batch shrinks (fully-connected net).

Setting (CS231n assignment 2, ``BatchNormalization.ipynb``, "Batch normalization and batch
size" and the layer-norm section): a six-layer ReLU network, hidden layers ``[100] * 5``,
weights ``N(0, 0.02^2)``, 1000 training images, Adam with learning rate ``10**-3.5``, 10 epochs,
batch sizes 5, 10 and 50; no normalization, batch, layer and group norm side by side. All runs
of one batch size start from the same weights.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from normlab.experiments.base import Experiment, RunSpec
from normlab.experiments.config import ExperimentConfig, opt
from normlab.experiments.runner import run_experiment
from normlab.experiments.training import (
    batch_size_runs,
    build_fc,
    load_data,
    norm_from_key,
    norm_label,
    per_batch_size,
    train_solver,
)

NAME = "batch-size"
DESCRIPTION = "deep net [100]*5 at batch sizes 5, 10, 50: none vs batch, layer and group norm"


@dataclass(frozen=True)
class BatchSizeConfig(ExperimentConfig):
    """Settings of ``batch-size`` (the notebook's by default)."""

    dataset: str = opt("cifar10", "digits | mnist | fashion-mnist | cifar10")
    normalizations: tuple[str, ...] = opt(
        ("none", "batchnorm", "layernorm", "groupnorm"), "normalizations compared"
    )
    batch_sizes: tuple[int, ...] = opt((5, 10, 50), "minibatch sizes")
    hidden_dims: tuple[int, ...] = opt((100,) * 5, "widths of the hidden layers")
    weight_scale: float = opt(2e-2, "std of the Gaussian initial weights")
    num_training: int | None = opt(1000, "training images (None: all)")
    learning_rate: float = opt(10**-3.5, "Adam learning rate")
    num_epochs: int = opt(10, "epochs")


def quick(config: BatchSizeConfig) -> BatchSizeConfig:
    """Two epochs on 300 images."""
    return dataclasses.replace(config, quick=True, num_epochs=2, num_training=300)


def runs(config: BatchSizeConfig) -> list[RunSpec]:
    """One run per (normalization, batch size); a batch size's runs share the seed."""
    return batch_size_runs(config)


def run_task(config: BatchSizeConfig, params: dict, seed: int) -> dict:
    """Train one network; return its curves and scores."""
    data = load_data(config, num_training=config.num_training)
    model, solver_seed = build_fc(config, data, params["normalization"], config.weight_scale, seed)
    out = train_solver(
        model,
        data,
        solver_seed,
        update_rule="adam",
        optim_config={"learning_rate": config.learning_rate},
        batch_size=params["batch_size"],
        num_epochs=config.num_epochs,
    )
    return {**out, "batch_size": params["batch_size"]}


def summarize(config: BatchSizeConfig, outputs: dict, seconds: dict) -> dict:
    """Best validation and final training accuracy per (normalization, batch size)."""
    bss = list(config.batch_sizes)
    best = per_batch_size(config, outputs, lambda o: o["best_val_acc"])
    train = per_batch_size(config, outputs, lambda o: o["train_acc"][-1])
    columns = ["normalization"] + [f"best val acc, bs={b}" for b in bss]
    columns += [f"final train acc, bs={b}" for b in bss]
    rows = [[norm_label(norm_from_key(n)), *best[n], *train[n]] for n in config.normalizations]
    return {
        "batch_sizes": bss,
        "best_val_acc": best,
        "final_train_acc": train,
        "table": {"columns": columns, "rows": rows},
    }


EXPERIMENT = Experiment(NAME, DESCRIPTION, BatchSizeConfig, runs, run_task, summarize, quick)


def run(config: BatchSizeConfig | None = None, **kwargs) -> dict:
    """Run the experiment (``jobs``, ``scheduler``, ``progress`` as in ``run_experiment``).

    Returns
    -------
    results : dict
        ``runs["<norm>/bs=<B>"]`` with ``train_acc`` / ``val_acc`` per epoch; ``batch_sizes``;
        ``best_val_acc[norm]`` and ``final_train_acc[norm]``, one per batch size; ``table``.
    """
    return run_experiment(EXPERIMENT, config or BatchSizeConfig(), **kwargs)
