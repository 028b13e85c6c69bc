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

from normlab.experiments import batch_sweep, figspec, noise
from normlab.experiments.base import Experiment
from normlab.experiments.config import opt
from normlab.experiments.training import train_fc
from normlab.experiments.wording import join
from normlab.vocab import run_name

NAME = "batch-size"
DESCRIPTION = "deep net [100]*5 at batch sizes 5, 10, 50: none vs batch, layer and group norm"


@dataclass(frozen=True)
class BatchSizeConfig(batch_sweep.BatchSweepConfig):
    """Settings of ``batch-size`` (the notebook's by default: batch sizes 5, 10 and 50)."""

    hidden_dims: tuple[int, ...] = opt((100,) * 5, "widths of the hidden layers")
    weight_scale: float = opt(2e-2, "std of the Gaussian initial weights", positive=True)
    num_training: int | None = opt(1000, "training images (None: all)")
    learning_rate: float = opt(10**-3.5, "Adam learning rate", positive=True)
    num_epochs: int = opt(10, "epochs")


def quick(config: BatchSizeConfig) -> BatchSizeConfig:
    """Two epochs on 300 images."""
    return dataclasses.replace(config, quick=True, num_epochs=2, num_training=300)


runs = batch_sweep.runs  # one run per (normalization, batch size); a batch size's runs share a seed
run_task = train_fc  # the net above, trained in batches of the run's size


def summarize(config: BatchSizeConfig, outputs: dict, seconds: dict) -> dict:
    """Best validation and final training accuracy per (normalization, batch size).

    Returns
    -------
    summary : dict
        ``batch_sizes``; ``best_val_acc[norm]`` and ``final_train_acc[norm]``, one per batch
        size; ``table``.
    """
    picks = {
        "best_val_acc": (lambda o: o["best_val_acc"], "best val acc"),
        "final_train_acc": (lambda o: o["train_acc"][-1], "final train acc"),
    }
    return batch_sweep.summarize(config, outputs, picks)


def headline(results: dict) -> str:
    """Best validation accuracy at the largest and the smallest batch size."""
    bss = results["batch_sizes"]
    parts, diffs = batch_sweep.endpoints(results, "best_val_acc", "num_val")
    sentence = (
        f"From batch size {max(bss)} to {min(bss)}, best validation accuracy {join(parts)} "
        f"({noise.seeds_phrase(results.get('seeds', 1))})."
    )
    return noise.qualify(sentence, diffs, results.get("config", {}).get("quick", False))


def figures(config: BatchSizeConfig) -> list[dict]:
    """Training and validation accuracy curves, one panel per batch size; the best validation
    accuracy against the batch size."""
    bss, norms = config.batch_sizes, config.normalizations
    figs = []
    for key, title in (("train_acc", "Training accuracy"), ("val_acc", "Validation accuracy")):
        panels = [
            figspec.curves(
                f"{title}, batch size {b}",
                [figspec.norm_line(n, key, run=run_name(n, bs=b)) for n in norms],
                "accuracy" if i == 0 else None,
                legend=i == 0,
            )
            for i, b in enumerate(bss)
        ]
        figs.append(figspec.figure(f"{key}_by_batch_size", panels, 4.0, 3.2, sharey=True))
    best = batch_sweep.panel(
        config, "best_val_acc", "Best validation accuracy", "batch size", "accuracy", legend=True
    )
    return [*figs, figspec.figure("best_val_acc_vs_batch_size", [best])]


EXPERIMENT = Experiment(
    NAME, DESCRIPTION, BatchSizeConfig, runs, run_task, summarize, quick, headline, figures
)
