"""small-batch: batch, layer and group norm across batch sizes 2..64 on a small ConvNet.

The Group Normalization paper (Wu & He, 2018, Table 1 / Figure 1) trains ResNet-50 on ImageNet
with 32 down to 2 images per batch: batch norm's error grows as the batch shrinks, group norm's
does not. This is the same comparison at a small scale: a ConvNet ``{conv 3x3 - norm - relu -
2x2 pool} x 2 - affine - norm - relu - affine``, no normalization, batch, layer and group norm
(4 groups), batch sizes 2, 4, 8, 16, 32, 64, the same number of epochs for every batch size.

As in the paper, the learning rate follows the linear scaling rule, ``lr = base_lr * B /
base_batch`` (Goyal et al. 2017), with SGD and momentum 0.9, so every batch size gets the same
number of epochs and comparable updates. All runs of one batch size start from the same weights.
Reported: the final validation and test accuracy (test mode: batch norm uses its running
statistics, where small batches hurt it most) against the batch size.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from normlab.experiments import batch_sweep, figspec, noise
from normlab.experiments.base import Experiment
from normlab.experiments.config import field_of, opt
from normlab.experiments.training import build_model, load_data, train_solver
from normlab.experiments.wording import join

NAME = "small-batch"
DESCRIPTION = "small ConvNet, batch sizes 2..64: none vs batch, layer, group norm (GN paper)"


@dataclass(frozen=True)
class SmallBatchConfig(batch_sweep.BatchSweepConfig):
    """Settings of ``small-batch``."""

    batch_sizes: tuple[int, ...] = field_of(
        batch_sweep.BatchSweepConfig, "batch_sizes", (2, 4, 8, 16, 32, 64)
    )
    num_filters: tuple[int, ...] = opt((16, 32), "filters of each conv block")
    hidden_dims: tuple[int, ...] = opt((64,), "widths of the hidden affine layers")
    groups: int = opt(4, "group norm: groups per layer")
    weight_scale: float | str = opt("he", "initial weights: std, or he | xavier", positive=True)
    num_training: int | None = opt(10_000, "training images (None: all)")
    base_lr: float = opt(
        0.02, "SGD-momentum learning rate at base_batch images per batch", positive=True
    )
    base_batch: int = opt(32, "batch size at which the learning rate is base_lr")
    momentum: float = opt(0.9, "SGD momentum")
    num_epochs: int = opt(5, "epochs, the same for every batch size")


def quick(config: SmallBatchConfig) -> SmallBatchConfig:
    """One epoch on 256 images, 8 and 16 filters."""
    return dataclasses.replace(
        config, quick=True, num_epochs=1, num_training=256, num_filters=(8, 16), hidden_dims=(32,)
    )


runs = batch_sweep.runs  # one run per (normalization, batch size); a batch size's runs share a seed


def run_task(config: SmallBatchConfig, params: dict, seed: int) -> dict:
    """Train one ConvNet; return its curves and scores."""
    data = load_data(config, num_training=config.num_training)
    model, solver_seed = build_model(
        data,
        seed,
        params["normalization"],
        "conv",
        num_filters=config.num_filters,
        hidden_dims=config.hidden_dims,
        weight_scale=config.weight_scale,
        groups=config.groups,
    )
    bs = params["batch_size"]
    lr = config.base_lr * bs / config.base_batch
    out = train_solver(
        model,
        data,
        solver_seed,
        diagnostics=config.diagnostics,
        update_rule="sgd_momentum",
        optim_config={"learning_rate": lr, "momentum": config.momentum},
        batch_size=bs,
        num_epochs=config.num_epochs,
    )
    return {**out, "batch_size": bs, "learning_rate": lr}


def summarize(config: SmallBatchConfig, outputs: dict, seconds: dict) -> dict:
    """Final validation accuracy and best-epoch test accuracy per normalization and batch size.

    ``train_solver`` measures test accuracy with the best validation epoch's parameters and
    running statistics, so it is stored as ``best_epoch_test_acc``, not as a final accuracy.
    """
    picks = {
        "final_val_acc": (lambda o: o["final_val_acc"], None),
        "best_epoch_test_acc": (lambda o: o["test_acc"], "test acc (best val epoch)"),
    }
    return batch_sweep.summarize(config, outputs, picks)


def headline(results: dict) -> str:
    """Test accuracy (at the best validation epoch), from the largest batch to the smallest."""
    bss = results["batch_sizes"]
    parts, diffs = batch_sweep.endpoints(results, "best_epoch_test_acc", "num_test")
    sentence = (
        f"From {max(bss)} images per batch to {min(bss)}, test accuracy at the best "
        f"validation epoch {join(parts)} ({noise.seeds_phrase(results.get('seeds', 1))})."
    )
    return noise.qualify(sentence, diffs, results.get("config", {}).get("quick", False))


def figures(config: SmallBatchConfig) -> list[dict]:
    """Best-validation-epoch test accuracy and final validation accuracy against the batch size
    (log scale, base 2)."""

    xlabel = "images per batch"
    panels = [
        batch_sweep.panel(
            config,
            "best_epoch_test_acc",
            "Test accuracy (best validation epoch)",
            xlabel,
            "accuracy",
            log_base=2,
            legend=True,
        ),
        batch_sweep.panel(
            config, "final_val_acc", "Final validation accuracy", xlabel, None, log_base=2
        ),
    ]
    return [figspec.figure("accuracy_vs_batch_size", panels, sharey=True)]


EXPERIMENT = Experiment(
    NAME, DESCRIPTION, SmallBatchConfig, runs, run_task, summarize, quick, headline, figures
)
