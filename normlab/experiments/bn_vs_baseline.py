"""bn-vs-baseline: the CS231n notebook's deep network trained with and without batch norm.

Setting (CS231n assignment 2, ``BatchNormalization.ipynb``, "Batchnorm for deep networks"): a
six-layer ReLU network, hidden layers ``[100] * 5``, weights ``N(0, 0.02^2)``, 1000 training
images of CIFAR-10, Adam with learning rate 1e-3, batches of 50, 10 epochs. The two networks
start from the same weights (a paired seed); only the normalization differs.

The same task compares any list of normalizations; ``normlab demo`` is this experiment on the
embedded digits with batch, layer and group norm added (:mod:`normlab.experiments.demo`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from normlab.experiments.base import Experiment, RunSpec
from normlab.experiments.config import ExperimentConfig, opt
from normlab.experiments.runner import run_experiment
from normlab.experiments.training import (
    auto_threshold,
    build_fc,
    epochs_to_reach,
    load_data,
    norm_from_key,
    norm_label,
    train_solver,
)

NAME = "bn-vs-baseline"
DESCRIPTION = "CS231n deep net [100]*5, weight scale 2e-2, with and without batch norm: curves"


@dataclass(frozen=True)
class BNvsBaselineConfig(ExperimentConfig):
    """Settings of ``bn-vs-baseline`` (the notebook's by default)."""

    dataset: str = opt("cifar10", "digits | mnist | fashion-mnist | cifar10")
    normalizations: tuple[str, ...] = opt(("none", "batchnorm"), "normalizations compared")
    hidden_dims: tuple[int, ...] = opt((100,) * 5, "widths of the hidden layers")
    weight_scale: float = opt(2e-2, "std of the Gaussian initial weights")
    num_training: int | None = opt(1000, "training images (None: all)")
    update_rule: str = opt("adam", "update rule")
    learning_rate: float = opt(1e-3, "learning rate")
    batch_size: int = opt(50, "minibatch size")
    num_epochs: int = opt(10, "epochs")
    threshold: float | None = opt(None, "accuracy target of the table (None: 95% of the best)")


def quick(config: BNvsBaselineConfig) -> BNvsBaselineConfig:
    """Three epochs on 500 images (about a second on the digits)."""
    return dataclasses.replace(config, quick=True, num_training=500, num_epochs=3)


def runs(config: BNvsBaselineConfig) -> list[RunSpec]:
    """One run per normalization, all from the same initial weights."""
    return [RunSpec(n, {"normalization": n}, seed_key="net") for n in config.normalizations]


def run_task(config: BNvsBaselineConfig, params: dict, seed: int) -> dict:
    """Train the network with ``params['normalization']``; return its curves and scores."""
    data = load_data(config, num_training=config.num_training)
    model, solver_seed = build_fc(config, data, params["normalization"], config.weight_scale, seed)
    return train_solver(
        model,
        data,
        solver_seed,
        update_rule=config.update_rule,
        optim_config={"learning_rate": config.learning_rate},
        batch_size=config.batch_size,
        num_epochs=config.num_epochs,
    )


def comparison_table(outputs: dict, seconds: dict, threshold: float) -> dict:
    """One row per run: final/best validation accuracy, test accuracy, epochs to ``threshold``."""
    rows = []
    for name, out in outputs.items():
        reached = epochs_to_reach(out["val_acc"], threshold)
        rows.append(
            [
                norm_label(norm_from_key(name)),
                out["final_val_acc"],
                out["best_val_acc"],
                out["test_acc"],
                reached,
                seconds.get(name),
            ]
        )
    columns = [
        "normalization",
        "final val acc",
        "best val acc",
        "test acc (best val epoch)",
        f"epochs to {threshold:.2f} val acc",
        "time (s)",
    ]
    return {"columns": columns, "rows": rows}


def summarize(config: BNvsBaselineConfig, outputs: dict, seconds: dict) -> dict:
    """The comparison table, with the accuracy target used for "epochs to reach"."""
    threshold = config.threshold
    if threshold is None:
        # from trained epochs only (>= 1): epoch 0 is before training
        trained = [v for o in outputs.values() for v in o["val_acc"][1:] if v is not None]
        threshold = auto_threshold(max(trained, default=0.0))
    return {"threshold": threshold, "table": comparison_table(outputs, seconds, threshold)}


EXPERIMENT = Experiment(NAME, DESCRIPTION, BNvsBaselineConfig, runs, run_task, summarize, quick)


def run(config: BNvsBaselineConfig | None = None, **kwargs) -> dict:
    """Run the experiment (``jobs``, ``scheduler``, ``progress`` as in ``run_experiment``).

    Returns
    -------
    results : dict
        ``runs[name]``: ``loss`` (per iteration), ``train_acc``, ``val_acc`` (per epoch, epoch 0
        first), ``best_val_acc``, ``test_acc``...; ``table``; ``threshold``.
    """
    return run_experiment(EXPERIMENT, config or BNvsBaselineConfig(), **kwargs)


__all__ = ["EXPERIMENT", "BNvsBaselineConfig", "quick", "run", "run_task", "runs", "summarize"]
