"""lr-stability: the largest learning rate that trains, with and without batch norm, and how
activations grow with depth at large rates (Bjorck et al. 2018).

Bjorck, Gomes, Selman & Weinberger 2018, "Understanding Batch Normalization" (sections 2-3):
batch norm's benefit comes mostly from the larger learning rates it makes usable; without it,
a large rate makes the activations grow with depth until the loss diverges, and the stable
rates are much smaller. Here, scaled to a CPU: a deep ReLU MLP (``hidden_dims``, He initial
weights) trained with plain SGD for ``num_epochs`` epochs (a fixed number of steps) at every
rate of the log-spaced grid ``learning_rates``, once per normalization, every run from the same
initial weights and batches.

A run **trains** when its loss stays finite (a run whose loss becomes NaN or infinite is
recorded as diverged by the Solver, :mod:`normlab.divergence`, and the sweep goes on) and the
mean training loss of its last epoch is at most ``loss_fraction * ln(num_classes)``, the loss of
a uniform guess (``loss_fraction = 0.5``: 1.15 for ten classes, well below where any
untrained or stalled net sits and well above where a working one ends). The largest trainable
rate is the largest of the grid at which the run trains (whether or not every smaller one
did).

Activation growth: after every step, the standard deviation (over the batch and the units) of
each layer's pre-activation -- the input of its ReLU (the normalization's output with one, the
affine output without), and the scores for the last layer -- is taken on the training batch;
the last one kept is at the end of training, or at the last step before divergence.
``act_log10_std`` holds its log10 per layer, and ``act_log10_std_init`` the same at the first
step.

Default dataset: Fashion-MNIST (784 inputs, 60,000 images: a deep MLP is still learning after a
few epochs, and its 5,000 validation images keep an accuracy's binomial error near half a point);
``--quick`` runs on the embedded digits.

Summary keys (what a claims table reads): ``largest_trainable_lr`` by normalization (None when
no rate trains; with several seeds the mean of the seeds' values) and
``log10_largest_trainable_lr`` (its log10, whose mean is the geometric mean); per rate, by
normalization: ``trains`` (1.0 or 0.0; with seeds, the fraction that trained), ``final_loss``
(the last epoch's mean training loss), ``final_val_acc`` (None where diverged), ``diverged``;
``act_log10_std`` by normalization, per rate, per layer; ``learning_rates``,
``loss_threshold``, ``layers``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from normlab.experiments import figspec, noise
from normlab.experiments.base import Experiment, RunSpec
from normlab.experiments.config import ExperimentConfig, field_of, opt
from normlab.experiments.training import build_model, finite, load_data, train_solver
from normlab.experiments.wording import num
from normlab.vocab import label, run_name, short_label

NAME = "lr-stability"
DESCRIPTION = "SGD learning rates 1e-3..30: the largest that trains, with and without batch norm"


@dataclass(frozen=True)
class LRStabilityConfig(ExperimentConfig):
    """Settings of ``lr-stability``."""

    dataset: str = field_of(ExperimentConfig, "dataset", "fashion-mnist")
    hidden_dims: tuple[int, ...] = opt((100,) * 8, "widths of the hidden layers")
    weight_scale: float | str = opt("he", "initial weights: std, or he | xavier", positive=True)
    num_training: int | None = opt(10_000, "training images (None: all)")
    learning_rates: tuple[float, ...] = opt(
        (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0),
        "SGD learning rates swept, increasing (log-spaced)",
        positive=True,
    )
    batch_size: int = opt(128, "minibatch size")
    num_epochs: int = opt(5, "epochs at every rate (a fixed number of steps)")
    loss_fraction: float = opt(
        0.5,
        "a run trains if finite and its last epoch's mean loss <= this * ln(classes)",
        positive=True,
    )
    depth_lrs: int = opt(3, "the activation-by-depth figure shows this many largest rates")

    def __post_init__(self) -> None:
        super().__post_init__()
        lrs = self.learning_rates
        if not lrs or any(not b > a for a, b in zip(lrs, lrs[1:], strict=False)):
            raise ValueError(
                f"LRStabilityConfig: expected learning_rates increasing, got {lrs!r}; list "
                "them from the smallest to the largest"
            )
        if any(not (isinstance(v, float | int) and v > 0) for v in lrs):
            raise ValueError(f"LRStabilityConfig: expected learning_rates > 0, got {lrs!r}")


def quick(config: LRStabilityConfig) -> LRStabilityConfig:
    """Three rates (0.1, 1, 10), three epochs on 500 images, four hidden layers of 32."""
    return dataclasses.replace(
        config,
        quick=True,
        learning_rates=(0.1, 1.0, 10.0),
        num_training=500,
        num_epochs=3,
        hidden_dims=(32,) * 4,
        batch_size=50,
        depth_lrs=2,
    )


def _run(norm: str, lr: float) -> str:
    return run_name(norm, lr=f"{lr:g}")


def runs(config: LRStabilityConfig) -> list[RunSpec]:
    """One run per (normalization, rate), all from the same initial weights and batches."""
    return [
        RunSpec(_run(n, lr), {"normalization": n, "learning_rate": lr}, seed_key="net")
        for n in config.normalizations
        for lr in config.learning_rates
    ]


class ActivationStd:
    """A Solver callback: the std of each layer's pre-activation on the training batch after
    every step (``model.record``/``model.activations``); keeps the first and the last."""

    def __init__(self, model) -> None:
        self.model = model
        self.layers = [blk.index for blk in model.blocks]
        model.record = set(model.record) | set(self.layers)
        self.first: list | None = None
        self.last: list | None = None

    def __call__(self, solver, info: dict) -> None:
        acts = self.model.activations
        with np.errstate(over="ignore", invalid="ignore"):
            stds = [float(np.std(acts[i], dtype=np.float64)) for i in self.layers]
        self.last = stds
        if self.first is None:
            self.first = stds


def _log10(values: list | None, n: int) -> list:
    """log10 of each value (None where missing, zero or not finite); n Nones for no values."""
    if values is None:
        return [None] * n
    return [math.log10(v) if v is not None and math.isfinite(v) and v > 0 else None
            for v in values]  # fmt: skip


def run_task(config: LRStabilityConfig, params: dict, seed: int) -> dict:
    """Train one MLP at one rate with plain SGD; return its curves, whether it diverged, and
    the log10 std of every layer's pre-activation at the first and the last step."""
    data = load_data(config, num_training=config.num_training)
    lr = params["learning_rate"]
    model, solver_seed = build_model(
        data,
        seed,
        params["normalization"],
        hidden_dims=config.hidden_dims,
        weight_scale=config.weight_scale,
    )
    meter = ActivationStd(model)
    out = train_solver(
        model,
        data,
        solver_seed,
        [meter],
        diagnostics=config.diagnostics,
        update_rule="sgd",
        optim_config={"learning_rate": lr},
        batch_size=config.batch_size,
        num_epochs=config.num_epochs,
    )
    n = len(meter.layers)
    return {
        **out,
        "learning_rate": lr,
        "layers": meter.layers,
        "steps_done": len(out["loss"]),
        "num_classes": len(data.get("class_names") or np.unique(data["y_train"])),
        "act_log10_std": _log10(meter.last, n),
        "act_log10_std_init": _log10(meter.first, n),
    }


def loss_threshold(config: LRStabilityConfig, num_classes: int) -> float:
    """The final-loss bound of "trains": ``loss_fraction * ln(num_classes)``."""
    return config.loss_fraction * math.log(num_classes)


def trains(out: dict, threshold: float) -> bool:
    """Whether a run trained: not diverged and its last epoch's mean loss <= ``threshold``."""
    loss = out.get("final_train_loss")
    return not out["diverged"] and loss is not None and loss <= threshold


def _final_val(out: dict) -> float | None:
    """The validation accuracy at the end of training; None for a diverged run (its curve
    stops at the epoch before divergence, which is not the end)."""
    return None if out["diverged"] else finite(out["val_acc"][-1])


def summarize(config: LRStabilityConfig, outputs: dict, seconds: dict) -> dict:
    """Per normalization and rate: trains, final loss, final validation accuracy, diverged,
    activation stds; the largest trainable rate per normalization.

    Returns
    -------
    summary : dict
        The keys of the module docstring, and a ``table`` (one row per rate).
    """
    lrs, norms = list(config.learning_rates), list(config.normalizations)
    first = next(iter(outputs.values()))
    thr = loss_threshold(config, first.get("num_classes", 10))
    by = {n: [outputs[_run(n, lr)] for lr in lrs] for n in norms}
    ok = {n: [trains(o, thr) for o in by[n]] for n in norms}
    largest = {n: max((lr for lr, t in zip(lrs, ok[n], strict=True) if t), default=None)
               for n in norms}  # fmt: skip
    summary = {
        "learning_rates": lrs,
        "normalizations": norms,
        "labels": {n: label(n) for n in norms},
        "loss_threshold": thr,
        "layers": first.get("layers"),
        "largest_trainable_lr": largest,
        "log10_largest_trainable_lr": {
            n: None if v is None else math.log10(v) for n, v in largest.items()
        },
        "trains": {n: [1.0 if t else 0.0 for t in ok[n]] for n in norms},
        "final_loss": {n: [o["final_train_loss"] for o in by[n]] for n in norms},
        "final_val_acc": {n: [_final_val(o) for o in by[n]] for n in norms},
        "diverged": {n: [bool(o["diverged"]) for o in by[n]] for n in norms},
        "act_log10_std": {n: [o["act_log10_std"] for o in by[n]] for n in norms},
    }
    columns = ["learning rate"]
    for n in norms:
        s = short_label(n)
        columns += [f"{s}: trains", f"{s}: last-epoch loss", f"{s}: final val acc"]
    rows = []
    for i, lr in enumerate(lrs):
        row = [lr]
        for n in norms:
            row += [summary["trains"][n][i], summary["final_loss"][n][i],
                    summary["final_val_acc"][n][i]]  # fmt: skip
        rows.append(row)
    summary["table"] = {"columns": columns, "rows": rows}
    return summary


def _pair(results: dict) -> tuple[str, str]:
    """(reference, normalized): ``'none'`` and ``'batchnorm'`` when present, else the first
    two normalizations (the first alone twice when there is one)."""
    norms = results["normalizations"]
    ref = "none" if "none" in norms else norms[0]
    other = "batchnorm" if "batchnorm" in norms else next((n for n in norms if n != ref), ref)
    return ref, other


def _grid_step(lrs: list) -> str:
    """The grid's typical ratio between neighbouring rates, in words (``'about 3.2'``)."""
    if len(lrs) < 2:
        return "n/a (one rate)"
    ratio = 10 ** ((math.log10(lrs[-1]) - math.log10(lrs[0])) / (len(lrs) - 1))
    return f"about {ratio:.2g}"


def _lr_words(v) -> str:
    return "none of the rates" if v is None else f"{v:g}"


def headline(results: dict) -> str:
    """The largest trainable rate of each normalization (with the log10 difference's noise
    over seeds), then the last layer's pre-activation std at the smallest rate at which the
    reference (no normalization) failed to train."""
    lrs, thr = results["learning_rates"], results["loss_threshold"]
    ref, other = _pair(results)
    big = results["largest_trainable_lr"]
    logs = noise.per_seed(results, ["log10_largest_trainable_lr"])
    d = noise.difference([s[ref] for s in logs], [s[other] for s in logs], paired=True)
    cfg = results.get("config", {})
    seeds = results.get("seeds", 1)
    per_seed = ""
    vals = noise.per_seed(results, ["largest_trainable_lr"])
    if seeds > 1:
        per_seed = "; per seed " + ", ".join(
            f"{_lr_words(s[ref])} vs {_lr_words(s[other])}" for s in vals
        )

    def largest(n: str) -> str:  # the seeds' mean leaves out those where no rate trained
        k = sum(s[n] is not None for s in vals)
        some = f" (the mean of the {k} of {len(vals)} seeds in which a rate trained)"
        return _lr_words(big[n]) + (some if 0 < k < len(vals) else "")

    verdict = noise.versus(d)
    sentence = (
        f"Of {len(lrs)} SGD learning rates from {lrs[0]:g} to {lrs[-1]:g} "
        f"({cfg.get('num_epochs', '?')} epochs each; trains = finite loss and a last-epoch mean "
        f"loss <= {num(thr)}), the largest that trained was {largest(ref)} "
        f"{'without normalization' if ref == 'none' else 'with ' + label(ref)} and "
        f"{largest(other)} with {label(other)}"
    )
    if big[ref] is not None and big[other] is not None and d.a is not None:
        ratio = 10 ** (d.b - d.a)
        times = "the same rate" if abs(d.b - d.a) < 1e-9 else f"{ratio:.3g}x"
        sentence += (
            f" ({times}; log10 difference {d.b - d.a:.2f}, {verdict}, on a grid that resolves "
            f"factors of {_grid_step(lrs)}{per_seed})"
        )
    sentence += "."
    # the first rate above the reference's largest trainable one at which it fails: too large
    start = 0 if big[ref] is None else min(range(len(lrs)), key=lambda k: abs(lrs[k] - big[ref]))
    fails = [i for i, t in enumerate(results["trains"][ref]) if t < 1.0 and i > start]
    if fails and big[ref] is not None:
        i = fails[0]
        stds = results["act_log10_std"]
        a, b = stds[ref][i], stds[other][i]
        ends = (a[0], a[-1], b[0], b[-1]) if a and b else (None,)
        if None not in ends and len(a) > 1:  # layer 1 and the last, both runs (None: not finite)
            # combined over seeds a run's flag is "any seed": say in how many it diverged
            flags = [d[i] for d in noise.per_seed(results, ["diverged", ref])]
            k = sum(map(bool, flags))
            how = "failed to train" if not k else "diverged"
            if 0 < k < len(flags):
                how = f"diverged in {k} of {len(flags)} seeds (failed to train in the others)"
            who = "the net without normalization" if ref == "none" else label(ref)
            sentence += (
                f" At {lrs[i]:g}, where {who} {how}, the std of the pre-activations was "
                f"10^{a[0]:.1f} in layer 1 and "
                f"10^{a[-1]:.1f} in the last (the scores; at the end or just before divergence), "
                f"against 10^{b[0]:.1f} and 10^{b[-1]:.1f} with {label(other)}."
            )
    sentence = sentence[:-1] + f" ({noise.seeds_phrase(seeds)})."
    return noise.qualify(sentence, [d], cfg.get("quick", False))


def figures(config: LRStabilityConfig) -> list[dict]:
    """The last epoch's loss and the final validation accuracy against the rate (diverged runs
    marked); the log10 std of the pre-activations by layer at the largest rates, one panel per
    normalization."""
    xlabel = "learning rate (SGD)"
    sweeps = [
        figspec.sweep(
            "Last-epoch training loss",
            xlabel,
            "loss",
            ["learning_rates"],
            [
                figspec.norm_line(n, ["final_loss", n], diverged=["diverged", n])
                for n in config.normalizations
            ],
            ylog=True,
            legend=True,
        ),
        figspec.sweep(
            "Final validation accuracy",
            xlabel,
            "accuracy",
            ["learning_rates"],
            [figspec.norm_line(n, ["final_val_acc", n]) for n in config.normalizations],
        ),
    ]
    top = list(config.learning_rates)[-config.depth_lrs :]
    depth = [
        figspec.curves(
            f"Pre-activation std by depth, {label(n)}",
            [figspec.line("act_log10_std", f"lr {lr:g}", None, run=_run(n, lr)) for lr in top],
            "log10 std (end, or before divergence)",
            x="layers",
            xlabel="layer",
            legend=True,
        )
        for n in config.normalizations
    ]
    return [
        figspec.figure("loss_vs_learning_rate", sweeps),
        figspec.figure("activation_std_by_depth", depth, sharey=True),
    ]


EXPERIMENT = Experiment(
    NAME, DESCRIPTION, LRStabilityConfig, runs, run_task, summarize, quick, headline, figures
)
