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

from normlab.experiments.base import Experiment, RunSpec
from normlab.experiments.config import ExperimentConfig, opt
from normlab.experiments.runner import run_experiment
from normlab.experiments.training import (
    batch_size_runs,
    load_data,
    norm_from_key,
    norm_label,
    num_classes,
    per_batch_size,
    split_seed,
    train_solver,
)

NAME = "small-batch"
DESCRIPTION = "small ConvNet, batch sizes 2..64: none vs batch, layer, group norm (GN paper)"


@dataclass(frozen=True)
class SmallBatchConfig(ExperimentConfig):
    """Settings of ``small-batch``."""

    dataset: str = opt("cifar10", "digits | mnist | fashion-mnist | cifar10")
    normalizations: tuple[str, ...] = opt(
        ("none", "batchnorm", "layernorm", "groupnorm"), "normalizations compared"
    )
    batch_sizes: tuple[int, ...] = opt((2, 4, 8, 16, 32, 64), "minibatch sizes")
    num_filters: tuple[int, ...] = opt((16, 32), "filters of each conv block")
    hidden_dims: tuple[int, ...] = opt((64,), "widths of the hidden affine layers")
    groups: int = opt(4, "group norm: groups per layer")
    weight_scale: float | str = opt("he", "initial weights: std, or he | xavier")
    num_training: int | None = opt(10_000, "training images (None: all)")
    base_lr: float = opt(0.02, "SGD-momentum learning rate at base_batch images per batch")
    base_batch: int = opt(32, "batch size at which the learning rate is base_lr")
    momentum: float = opt(0.9, "SGD momentum")
    num_epochs: int = opt(5, "epochs, the same for every batch size")


def quick(config: SmallBatchConfig) -> SmallBatchConfig:
    """One epoch on 256 images, 8 and 16 filters."""
    return dataclasses.replace(
        config, quick=True, num_epochs=1, num_training=256, num_filters=(8, 16), hidden_dims=(32,)
    )


def runs(config: SmallBatchConfig) -> list[RunSpec]:
    """One run per (normalization, batch size); a batch size's runs share the seed."""
    return batch_size_runs(config)


def run_task(config: SmallBatchConfig, params: dict, seed: int) -> dict:
    """Train one ConvNet; return its curves and scores."""
    from normlab.models import ConvNet

    data = load_data(config, num_training=config.num_training)
    model_seed, solver_seed = split_seed(seed)
    model = ConvNet(
        input_dim=data["X_train"].shape[1:],
        num_filters=config.num_filters,
        hidden_dims=config.hidden_dims,
        num_classes=num_classes(data),
        normalization=norm_from_key(params["normalization"]),
        weight_scale=config.weight_scale,
        groups=config.groups,
        seed=model_seed,
    )
    bs = params["batch_size"]
    lr = config.base_lr * bs / config.base_batch
    out = train_solver(
        model,
        data,
        solver_seed,
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
    bss = list(config.batch_sizes)
    final_val = per_batch_size(config, outputs, lambda o: o["final_val_acc"])
    best_test = per_batch_size(config, outputs, lambda o: o["test_acc"])
    columns = ["normalization"] + [f"test acc (best val epoch), bs={b}" for b in bss]
    rows = [[norm_label(norm_from_key(n)), *best_test[n]] for n in config.normalizations]
    return {
        "batch_sizes": bss,
        "final_val_acc": final_val,
        "best_epoch_test_acc": best_test,
        "table": {"columns": columns, "rows": rows},
    }


EXPERIMENT = Experiment(NAME, DESCRIPTION, SmallBatchConfig, runs, run_task, summarize, quick)


def run(config: SmallBatchConfig | None = None, **kwargs) -> dict:
    """Run the experiment (``jobs``, ``scheduler``, ``progress`` as in ``run_experiment``).

    Returns
    -------
    results : dict
        ``batch_sizes``; ``final_val_acc[norm]`` and ``best_epoch_test_acc[norm]``
        (test accuracy at the best validation epoch), one per batch
        size; ``runs``; ``table``.
    """
    return run_experiment(EXPERIMENT, config or SmallBatchConfig(), **kwargs)
