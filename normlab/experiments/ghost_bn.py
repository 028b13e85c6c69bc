"""ghost-bn: one large batch, batch norm's statistics over ghost batches of 16..1024 images.

Hoffer, Hubara & Soudry 2017, "Train longer, generalize better: closing the generalization gap
in large batch training of neural networks" (section 4, Table 1): a network trained with large
batches generalizes worse than with small ones, and part of the gap closes when batch norm
computes its statistics over small *ghost* batches of the large batch ("Ghost Batch
Normalization"), keeping the large batch's gradient. Here: a small ConvNet ``{conv 3x3 - norm -
relu - 2x2 pool} x 2 - affine - norm - relu - affine`` trained with ``batch_size`` images per
step (1024 by default) and ``'ghostbatchnorm'`` with ``virtual_batch_size = V`` for each V of
``ghost_sizes``; V equal to the batch is plain batch norm. Every run starts from the same
weights and sees the same batches (one seed per sweep), SGD with momentum at one learning rate.

Reported against V: the generalization gap, final training accuracy minus final validation
accuracy (both in test mode, the running statistics; training accuracy on ``num_train_eval``
training images), and the final validation accuracy.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from normlab.experiments import figspec, noise
from normlab.experiments.base import Experiment, RunSpec
from normlab.experiments.config import ExperimentConfig, field_of, opt, require_nonempty
from normlab.experiments.training import build_model, load_data, train_solver
from normlab.experiments.wording import num
from normlab.vocab import color, run_name

NAME = "ghost-bn"
DESCRIPTION = (
    "large batch (1024), ghost batch norm with V = 16..1024: generalization gap (Hoffer 2017)"
)

NORM = "ghostbatchnorm"


@dataclass(frozen=True)
class GhostBNConfig(ExperimentConfig):
    """Settings of ``ghost-bn``."""

    dataset: str = field_of(ExperimentConfig, "dataset", "fashion-mnist")
    normalizations: tuple[str, ...] = field_of(ExperimentConfig, "normalizations", (NORM,))
    batch_size: int = opt(1024, "images per batch (one large batch for every run)")
    ghost_sizes: tuple[int, ...] = opt(
        (16, 32, 64, 128, 256, 512, 1024),
        "ghost batch sizes V; each divides batch_size (V = batch_size: plain batch norm)",
    )
    num_filters: tuple[int, ...] = opt((16, 32), "filters of each conv block")
    hidden_dims: tuple[int, ...] = opt((64,), "widths of the hidden affine layers")
    weight_scale: float | str = opt("he", "initial weights: std, or he | xavier", positive=True)
    num_training: int | None = opt(None, "training images (None: all)")
    num_train_eval: int | None = opt(
        10_000, "training images the training accuracy is measured on (None: all)"
    )
    learning_rate: float = opt(0.1, "SGD-momentum learning rate", positive=True)
    momentum: float = opt(0.9, "SGD momentum")
    num_epochs: int = opt(10, "epochs")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.normalizations != (NORM,):
            raise ValueError(
                f"GhostBNConfig: the sweep is over ghostbatchnorm's virtual_batch_size; expected "
                f"normalizations ('{NORM}',), got {self.normalizations!r} (use small-batch or "
                "renorm to compare normalizations)"
            )
        require_nonempty(self, "ghost_sizes")
        bad = [v for v in self.ghost_sizes if self.batch_size % v]
        if bad:
            raise ValueError(
                f"GhostBNConfig: ghost_sizes {bad} do not divide batch_size {self.batch_size}; "
                "use divisors of it (V = batch_size is plain batch norm)"
            )


def quick(config: GhostBNConfig) -> GhostBNConfig:
    """Batches of 256 with V = 16, 64, 256; 4 and 8 filters; 6 epochs (24 steps on the
    digits)."""
    return dataclasses.replace(
        config,
        quick=True,
        batch_size=256,
        ghost_sizes=(16, 64, 256),
        num_filters=(4, 8),
        hidden_dims=(32,),
        num_epochs=6,
    )


def runs(config: GhostBNConfig) -> list[RunSpec]:
    """One run per ghost batch size, all from one seed (the same weights and batches)."""
    return [
        RunSpec(run_name(NORM, v=v), {"virtual_batch_size": v}, seed_key="net")
        for v in config.ghost_sizes
    ]


def run_task(config: GhostBNConfig, params: dict, seed: int) -> dict:
    """Train one ConvNet with ghost batches of ``params['virtual_batch_size']``; return its
    curves and scores, and ``num_train_eval`` (images its training accuracy is measured on)."""
    data = load_data(config, num_training=config.num_training)
    if len(data["X_train"]) < config.batch_size:
        raise ValueError(
            f"ghost-bn: {len(data['X_train'])} training images cannot fill a batch of "
            f"{config.batch_size}; lower batch_size (and ghost_sizes) or use a larger dataset"
        )
    v = params["virtual_batch_size"]
    model, solver_seed = build_model(
        data,
        seed,
        NORM,
        "conv",
        num_filters=config.num_filters,
        hidden_dims=config.hidden_dims,
        weight_scale=config.weight_scale,
        norm_options={"virtual_batch_size": v},
    )
    out = train_solver(
        model,
        data,
        solver_seed,
        diagnostics=config.diagnostics,
        update_rule="sgd_momentum",
        optim_config={"learning_rate": config.learning_rate, "momentum": config.momentum},
        batch_size=config.batch_size,
        num_epochs=config.num_epochs,
        num_train_samples=config.num_train_eval,
    )
    n_train = len(data["X_train"])
    n_eval = n_train if config.num_train_eval is None else min(config.num_train_eval, n_train)
    return {
        **out,
        "virtual_batch_size": v,
        "batch_size": config.batch_size,
        "num_train_eval": n_eval,
    }


def _gap(out: dict) -> float | None:
    """Final training minus final validation accuracy of a run (None if either is missing)."""
    train, val = out["train_acc"][-1], out["val_acc"][-1]
    return None if train is None or val is None else train - val


def summarize(config: GhostBNConfig, outputs: dict, seconds: dict) -> dict:
    """Final training and validation accuracy, their gap and the best-epoch test accuracy per
    ghost batch size.

    Returns
    -------
    summary : dict
        ``ghost_sizes``, ``batch_size``; ``final_train_acc``, ``final_val_acc``, ``gap`` and
        ``best_epoch_test_acc``, one per ghost batch size; ``table`` (one row per size).
    """
    outs = [outputs[run_name(NORM, v=v)] for v in config.ghost_sizes]
    picks = {
        "final_train_acc": lambda o: o["train_acc"][-1],
        "final_val_acc": lambda o: o["val_acc"][-1],
        "gap": _gap,
        "best_epoch_test_acc": lambda o: o["test_acc"],
    }
    curves = {key: [pick(o) for o in outs] for key, pick in picks.items()}
    columns = [
        "ghost batch size",
        "final train acc",
        "final val acc",
        "generalization gap",
        "test acc (best val epoch)",
    ]
    rows = [[v, *(curves[k][i] for k in picks)] for i, v in enumerate(config.ghost_sizes)]
    return {
        "ghost_sizes": list(config.ghost_sizes),
        "batch_size": config.batch_size,
        **curves,
        "table": {"columns": columns, "rows": rows},
    }


def gap_difference(results: dict, i: int, j: int) -> noise.Difference:
    """The noise bound of gap ``j`` minus gap ``i`` (indices into ``ghost_sizes``).

    A gap is a training accuracy minus a validation accuracy, so beside the seeds' spread
    (paired: every run starts from the same seed) its bound holds the binomial error of all four
    accuracies: the training ones measured on ``num_train_eval`` images, the validation ones on
    ``num_val`` (:mod:`~normlab.experiments.noise`).
    """
    gaps = noise.per_seed(results, ["gap"])
    seeds = noise.difference([g[i] for g in gaps], [g[j] for g in gaps], paired=True)
    if seeds.a is None or seeds.b is None:
        return seeds
    run = next(iter(results.get("runs", {}).values()), {})
    n_train, n_val = run.get("num_train_eval"), run.get("num_val")
    var = 0.0 if seeds.bound is None else (seeds.bound / 2) ** 2
    have_eval = bool(n_train and n_val)
    if have_eval:
        for k in (i, j):
            var += noise.binomial_se(results["final_train_acc"][k], n_train) ** 2
            var += noise.binomial_se(results["final_val_acc"][k], n_val) ** 2
    bound = 2.0 * math.sqrt(var) if have_eval or seeds.bound is not None else None
    return noise.Difference(seeds.a, seeds.b, bound, seeds.seeds)


def headline(results: dict) -> str:
    """The smallest ghost batch against the largest (plain batch norm when it is the batch):
    generalization gap and final validation accuracy, differences beyond noise only."""
    vs, batch = results["ghost_sizes"], results["batch_size"]
    big, small = vs.index(max(vs)), vs.index(min(vs))
    ref = "plain batch norm" if max(vs) == batch else f"ghost batches of {max(vs)}"
    gap = gap_difference(results, big, small)
    n_val = noise.eval_size(results, "num_val")
    val = noise.per_seed(results, ["final_val_acc"])
    acc = noise.difference([a[big] for a in val], [a[small] for a in val], n_val, paired=True)
    sentence = (
        f"With {batch} images per batch, ghost batches of {min(vs)} gave a generalization gap "
        f"(final train minus validation accuracy) of {num(results['gap'][small])} against "
        f"{num(results['gap'][big])} with {ref} ({noise.versus(gap)}), and a final validation "
        f"accuracy of {num(results['final_val_acc'][small])} against "
        f"{num(results['final_val_acc'][big])} ({noise.versus(acc)}) "
        f"({noise.seeds_phrase(results.get('seeds', 1))})."
    )
    return noise.qualify(sentence, [gap, acc], results.get("config", {}).get("quick", False))


def figures(config: GhostBNConfig) -> list[dict]:
    """The generalization gap, and the final training and validation accuracy, against the
    ghost batch size (log scale, base 2)."""
    xlabel = f"ghost batch size V (batch {config.batch_size})"
    gap = figspec.sweep(
        "Generalization gap (train - val accuracy)",
        xlabel,
        "accuracy difference",
        ["ghost_sizes"],
        [figspec.line("gap", "gap", color(NORM))],
        log_base=2,
        ticks=True,
    )
    accs = figspec.sweep(
        "Final accuracy",
        xlabel,
        "accuracy",
        ["ghost_sizes"],
        [
            figspec.line("final_train_acc", "training", None, fmt="s--"),
            figspec.line("final_val_acc", "validation", color(NORM)),
        ],
        log_base=2,
        ticks=True,
        legend=True,
    )
    return [figspec.figure("gap_vs_ghost_batch_size", [gap, accs])]


EXPERIMENT = Experiment(
    NAME, DESCRIPTION, GhostBNConfig, runs, run_task, summarize, quick, headline, figures
)
