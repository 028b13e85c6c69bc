"""renorm: batch norm vs batch renorm vs group norm (with and without weight standardization)
across batch sizes 2..64 on a small ConvNet.

Two claims, at a small scale. Batch renormalization (Ioffe 2017, "Batch Renormalization: Towards
Reducing Minibatch Dependence in Batch-Normalized Models", Figure 2) keeps training with small
minibatches close to what large ones give, where batch norm degrades; group norm (Wu & He 2018,
Table 1 / Figure 1) does not depend on the batch at all, and Qiao et al. 2019 add weight
standardization to group norm (GN+WS) to close its gap to batch norm at large batches.

The network and the training are ``small-batch``'s (its config is this one's base): ``{conv 3x3
- norm - relu - 2x2 pool} x 2 - affine - norm - relu - affine``, SGD with momentum at the
linearly scaled learning rate ``base_lr * B / base_batch``, the same number of epochs at every
batch size, and every run of one batch size starting from the same weights. Each compared
*variant* is a normalization, or one of ``weight_standardized`` run with weight-standardized
convolutions (named ``groupnorm+ws``, labelled "group norm + WS").

Batch renorm follows the paper's schedule -- ``rmax = 1, dmax = 0`` (batch norm) for 5k steps,
then relaxed linearly to ``rmax = 3`` at 40k steps and ``dmax = 5`` at 25k -- scaled to each
run's own length, since these runs take hundreds to tens of thousands of steps rather than the
paper's ~100k+: ``rmax`` reaches 3 after ``renorm_span`` of the run's steps (default 0.4: the
paper's 40k of a 100k-step run), ``dmax`` 5 after 25/40 of that and the warmup is 5/40 of it
(:func:`renorm_schedule`). Reported: test accuracy at the best validation epoch (test mode: the
batch-statistic normalizations use their running statistics) against the batch size.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from normlab.experiments import figspec, noise, small_batch
from normlab.experiments.base import Experiment, RunSpec
from normlab.experiments.config import field_of, opt
from normlab.experiments.training import build_model, load_data, train_solver
from normlab.experiments.wording import join, num
from normlab.models.norms import RENORM_SCHEDULE
from normlab.vocab import color, label, run_name

NAME = "renorm"
DESCRIPTION = "small ConvNet, batch sizes 2..64: batch norm vs batch renorm vs group norm (+WS)"

WS = "+ws"  # the suffix of a weight-standardized variant's name


@dataclass(frozen=True)
class RenormConfig(small_batch.SmallBatchConfig):
    """Settings of ``renorm`` (the network and training of ``small-batch``)."""

    normalizations: tuple[str, ...] = field_of(
        small_batch.SmallBatchConfig, "normalizations", ("batchnorm", "batchrenorm", "groupnorm")
    )
    weight_standardized: tuple[str, ...] = opt(
        ("groupnorm",),
        "normalizations of the list also run with weight-standardized convolutions (name+ws)",
    )
    renorm_span: float = opt(
        0.4,
        "batch renorm schedule: rmax reaches 3 after this fraction of a run's steps (the "
        "paper's 40k); dmax reaches 5 after 25/40 of it, after a warmup of 5/40 of it",
        positive=True,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        unknown = [n for n in self.weight_standardized if n not in self.normalizations]
        if unknown:
            raise ValueError(
                f"RenormConfig: weight_standardized names {unknown}, which normalizations "
                f"{list(self.normalizations)} does not hold; add them there too"
            )


def quick(config: RenormConfig) -> RenormConfig:
    """small-batch's quick variant (one epoch on 256 images, 8 and 16 filters), batch sizes 4,
    16 and 64."""
    return dataclasses.replace(small_batch.quick(config), batch_sizes=(4, 16, 64))


def variants(config: RenormConfig) -> list[tuple[str, str, bool]]:
    """``(name, normalization, weight_standardization)`` of every compared variant."""
    return [(n, n, False) for n in config.normalizations] + [
        (n + WS, n, True) for n in config.weight_standardized
    ]


def variant_label(name: str) -> str:
    """``'group norm + WS'`` for ``'groupnorm+ws'``; a normalization's label otherwise."""
    return label(name[: -len(WS)]) + " + WS" if name.endswith(WS) else label(name)


def renorm_schedule(steps: int, span: float) -> dict:
    """The paper's schedule scaled to a run of ``steps`` steps (``renorm_schedule`` option).

    ``rmax_steps = span * steps``, and ``dmax_steps`` and ``warmup`` in the paper's proportions
    to it (25k and 5k to 40k), rounded to whole steps.

    >>> renorm_schedule(1000, 0.4)
    {'warmup': 50, 'rmax_steps': 400, 'dmax_steps': 250}
    """
    end = span * steps
    paper = RENORM_SCHEDULE["rmax_steps"]
    return {
        "warmup": round(end * RENORM_SCHEDULE["warmup"] / paper),
        "rmax_steps": round(end),
        "dmax_steps": round(end * RENORM_SCHEDULE["dmax_steps"] / paper),
    }


def runs(config: RenormConfig) -> list[RunSpec]:
    """One run per (variant, batch size); the runs of a batch size share a seed (the same
    initial weights: weight standardization changes the forward, not the parameters)."""
    return [
        RunSpec(
            run_name(name, bs=b),
            {"normalization": norm, "weight_standardization": ws, "batch_size": b},
            seed_key=f"bs={b}",
        )
        for name, norm, ws in variants(config)
        for b in config.batch_sizes
    ]


def run_task(config: RenormConfig, params: dict, seed: int) -> dict:
    """Train one ConvNet; return its curves and scores, its learning rate and, for batch renorm,
    the schedule it ran."""
    data = load_data(config, num_training=config.num_training)
    bs, norm = params["batch_size"], params["normalization"]
    steps = max(len(data["X_train"]) // bs, 1) * config.num_epochs  # the Solver's full batches
    options = {}
    if norm == "batchrenorm":
        options["renorm_schedule"] = renorm_schedule(steps, config.renorm_span)
    model, solver_seed = build_model(
        data,
        seed,
        norm,
        "conv",
        num_filters=config.num_filters,
        hidden_dims=config.hidden_dims,
        weight_scale=config.weight_scale,
        groups=config.groups,
        norm_options=options,
        weight_standardization=params["weight_standardization"],
    )
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
    return {**out, "batch_size": bs, "learning_rate": lr, "steps": steps, **options}


def summarize(config: RenormConfig, outputs: dict, seconds: dict) -> dict:
    """Test accuracy at the best validation epoch and final validation accuracy per variant
    and batch size.

    Returns
    -------
    summary : dict
        ``batch_sizes``; ``variants`` (names) and ``labels`` (by name);
        ``best_epoch_test_acc[name]`` and ``final_val_acc[name]``, one per batch size; ``table``
        (one row per variant, the test accuracies).
    """
    bss, names = list(config.batch_sizes), [v[0] for v in variants(config)]
    runs_of = {n: [outputs[run_name(n, bs=b)] for b in bss] for n in names}
    test = {n: [o["test_acc"] for o in runs_of[n]] for n in names}
    final_val = {n: [o["final_val_acc"] for o in runs_of[n]] for n in names}
    columns = ["variant"] + [f"test acc (best val epoch), bs={b}" for b in bss]
    return {
        "batch_sizes": bss,
        "variants": names,
        "labels": {n: variant_label(n) for n in names},
        "best_epoch_test_acc": test,
        "final_val_acc": final_val,
        "table": {"columns": columns, "rows": [[variant_label(n), *test[n]] for n in names]},
    }


def headline(results: dict) -> str:
    """Each variant's test accuracy from the largest batch to the smallest, then at the smallest
    batch each variant against batch norm (or the first variant), differences beyond noise
    only."""
    bss, names, labels = results["batch_sizes"], results["variants"], results["labels"]
    key, hi, lo = "best_epoch_test_acc", bss.index(max(bss)), bss.index(min(bss))
    n_eval = noise.eval_size(results, "num_test")
    per_seed = {n: noise.per_seed(results, [key, n]) for n in names}
    parts, diffs = [], []
    for n in names:  # largest vs smallest batch: different seeds, unpaired
        mean = results[key][n]
        d = noise.difference([v[hi] for v in per_seed[n]], [v[lo] for v in per_seed[n]], n_eval)
        parts.append(noise.trend(mean[hi], mean[lo], d, f"with {labels[n]}"))
        diffs.append(d)
    ref = "batchnorm" if "batchnorm" in names else names[0]
    against = []
    for n in names:  # at the smallest batch: the same initial weights, paired
        if n == ref:
            continue
        d = noise.difference(
            [v[lo] for v in per_seed[ref]], [v[lo] for v in per_seed[n]], n_eval, paired=True
        )
        mean = results[key][n][lo]
        against.append(f"{labels[n]} {num(mean)} ({noise.versus(d, labels[ref])})")
        diffs.append(d)
    sentence = (
        f"From {max(bss)} images per batch to {min(bss)}, test accuracy at the best validation "
        f"epoch {join(parts)}"
    )
    if against:
        sentence += (
            f"; at {min(bss)} per batch, against {labels[ref]}'s "
            f"{num(results[key][ref][lo])}: {join(against)}"
        )
    sentence += f" ({noise.seeds_phrase(results.get('seeds', 1))})."
    return noise.qualify(sentence, diffs, results.get("config", {}).get("quick", False))


def _lines(config: RenormConfig, key: str) -> list[dict]:
    """One line per variant: its normalization's colour, dashed with square markers for +WS."""
    return [
        figspec.line(
            [key, name], variant_label(name), color(norm), fmt="s--" if ws else "o-", ms=None
        )
        for name, norm, ws in variants(config)
    ]


def figures(config: RenormConfig) -> list[dict]:
    """Test accuracy (best validation epoch) and final validation accuracy against the batch
    size (log scale, base 2)."""
    xlabel = "images per batch"
    panels = [
        figspec.sweep(
            "Test accuracy (best validation epoch)",
            xlabel,
            "accuracy",
            ["batch_sizes"],
            _lines(config, "best_epoch_test_acc"),
            log_base=2,
            ticks=True,
            legend=True,
        ),
        figspec.sweep(
            "Final validation accuracy",
            xlabel,
            None,
            ["batch_sizes"],
            _lines(config, "final_val_acc"),
            log_base=2,
            ticks=True,
        ),
    ]
    return [figspec.figure("accuracy_vs_batch_size", panels, sharey=True)]


EXPERIMENT = Experiment(
    NAME, DESCRIPTION, RenormConfig, runs, run_task, summarize, quick, headline, figures
)
