"""landscape: the loss landscape along the gradient, with and without batch norm (Santurkar §3.2).

S. Santurkar, D. Tsipras, A. Ilyas, A. Madry, "How Does Batch Normalization Help
Optimization?", NeurIPS 2018, §3.2 and Figure 4: batch norm makes the loss landscape smoother.
At every k-th training step, from the parameters θ and the step's batch gradient g, they
evaluate, on the same batch, the loss at ``θ − η·g`` for a grid of step sizes η (the band
between the smallest and the largest is the "variation" of the loss landscape, Fig. 4a), the
gradient predictiveness ``‖∇L(θ) − ∇L(θ − η g)‖₂`` (Fig. 4b) and the effective β-smoothness
``max_η ‖∇L(θ) − ∇L(θ − η g)‖₂ / ‖η g‖₂`` (Fig. 4c), for a VGG and a deep linear net trained
with plain SGD at several learning rates, with and without batch norm.

Here, scaled down: a deep fully-connected ReLU net (8 hidden layers of 100, He initialization)
on Fashion-MNIST -- the offline dataset closest to their CIFAR-10 (the embedded digits hold
1,197 training images of 8x8 pixels: 9 batches of 128 an epoch, too few steps to follow the
landscape through training) -- trained with plain SGD (so the actual step is ``η = learning
rate`` on the grid) at each of ``learning_rates``, without normalization and with batch norm,
every pair from the same seed.
The grid is ``step_multiples`` times the learning rate (default 0.5x to 4x: it spans the step
actually taken); probes every ``probe_every`` steps
(:class:`~normlab.diagnostics.landscape.LandscapeProbe`, which leaves training bit-identical).

Summary keys (what a claims table reads)
----------------------------------------
``learning_rates`` (list), ``normalizations`` (list); per normalization, one value per learning
rate: ``median_band`` (median over the probed steps of the loss band ``max_η L − min_η L``),
``median_predictiveness`` (median of ``max_η ‖∇L(θ) − ∇L(θ − η g)‖₂``), ``median_beta``
(median effective β-smoothness), ``final_train_loss``, ``test_acc`` (best validation epoch),
``diverged``; and, per normalization other than ``'none'``, ``ratio_band``,
``ratio_predictiveness``, ``ratio_beta``: the value without normalization divided by the value
with it (> 1: smoother with it), one per learning rate. The headline tests the ratios against
the seeds' spread (on log10 values, paired by seed).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass

from normlab.experiments import figspec, noise
from normlab.experiments.base import Experiment, RunSpec
from normlab.experiments.config import ExperimentConfig, field_of, opt, require_nonempty
from normlab.experiments.training import build_model, finite, load_data, train_solver
from normlab.experiments.wording import join, num
from normlab.vocab import color, label, run_name

NAME = "landscape"
DESCRIPTION = (
    "deep net, none vs batch norm at 3 learning rates: loss band, gradient predictiveness and "
    "effective beta-smoothness along the gradient (Santurkar 2018)"
)
MEASURES = {  # summary key suffix -> what the headline and figures call it
    "band": "loss band",
    "predictiveness": "gradient change",
    "beta": "effective β-smoothness",
}


@dataclass(frozen=True)
class LandscapeConfig(ExperimentConfig):
    """Settings of ``landscape``."""

    dataset: str = field_of(ExperimentConfig, "dataset", "fashion-mnist")
    hidden_dims: tuple[int, ...] = opt((100,) * 8, "widths of the hidden affine layers")
    weight_scale: float | str = opt("he", "initial weights: std, or he | xavier", positive=True)
    learning_rates: tuple[float, ...] = opt((0.03, 0.1, 0.3), "plain-SGD learning rates")
    step_multiples: tuple[float, ...] = opt(
        (0.5, 1.0, 2.0, 3.0, 4.0), "the η grid: these multiples of the learning rate"
    )
    probe_every: int = opt(10, "SGD steps between two landscape probes")
    batch_size: int = opt(128, "images per batch")
    num_training: int | None = opt(None, "training images (None: all)")
    num_epochs: int = opt(4, "epochs")

    def __post_init__(self) -> None:
        super().__post_init__()
        require_nonempty(self, "learning_rates", "step_multiples")
        if "none" not in self.normalizations or len(self.normalizations) < 2:
            raise ValueError(
                f"LandscapeConfig: expected normalizations to hold 'none' and at least one "
                f"normalization to compare with it, got {self.normalizations!r}"
            )
        for name in ("learning_rates", "step_multiples"):
            bad = [v for v in getattr(self, name) if not v > 0]
            if bad:
                raise ValueError(f"LandscapeConfig: expected {name} > 0, got {bad}")


def quick(config: LandscapeConfig) -> LandscapeConfig:
    """6 hidden layers of 32, learning rate 0.2, 2 epochs of batches of 64, probes every 4
    steps on a 4-point grid."""
    return dataclasses.replace(
        config,
        quick=True,
        hidden_dims=(32,) * 6,
        learning_rates=(0.2,),
        step_multiples=(0.5, 1.0, 2.0, 4.0),
        probe_every=4,
        batch_size=64,
        num_epochs=2,
    )


def runs(config: LandscapeConfig) -> list[RunSpec]:
    """One run per (normalization, learning rate); the runs of a learning rate share a seed."""
    return [
        RunSpec(run_name(n, lr=lr), {"normalization": n, "learning_rate": lr}, seed_key=f"lr={lr}")
        for n in config.normalizations
        for lr in config.learning_rates
    ]


def _median(values: list) -> float:
    """The median of floats, ``inf`` counted as the largest; NaN when there are none."""
    return statistics.median(values) if values else math.nan


def run_task(config: LandscapeConfig, params: dict, seed: int) -> dict:
    """Train one deep net with plain SGD, probing the landscape every ``probe_every`` steps.

    Returns
    -------
    out : dict
        :func:`~normlab.experiments.training.train_solver`'s output, then ``learning_rate``,
        ``etas`` (the grid), ``probe_iterations``, the per-probe series ``band``,
        ``predictiveness``, ``beta``, ``loss_min``, ``loss_max``, ``grad_norm`` (None where not
        finite), and their medians ``median_band``, ``median_predictiveness``, ``median_beta``.
    """
    from normlab.diagnostics.landscape import LandscapeProbe

    data = load_data(config, num_training=config.num_training)
    lr = params["learning_rate"]
    model, solver_seed = build_model(
        data,
        seed,
        params["normalization"],
        hidden_dims=config.hidden_dims,
        weight_scale=config.weight_scale,
    )
    probe = LandscapeProbe(model, [lr * m for m in config.step_multiples], config.probe_every)
    out = train_solver(
        model,
        data,
        solver_seed,
        [probe],
        diagnostics=config.diagnostics,
        update_rule="sgd",
        optim_config={"learning_rate": lr},
        batch_size=config.batch_size,
        num_epochs=config.num_epochs,
    )
    series = {
        "band": probe.band,
        "predictiveness": probe.predictiveness,
        "beta": probe.beta,
        "loss_min": [min(v) for v in probe.losses],
        "loss_max": [max(v) for v in probe.losses],
        "grad_norm": probe.grad_norm,
    }
    medians = {f"median_{k}": finite(_median(series[k])) for k in MEASURES}
    return {
        **out,
        "learning_rate": lr,
        "etas": probe.etas,
        "probe_iterations": probe.iterations,
        **{k: finite(v) for k, v in series.items()},
        **medians,
    }


def summarize(config: LandscapeConfig, outputs: dict, seconds: dict) -> dict:
    """Per normalization and learning rate, the medians of the three measures, the final
    training loss and test accuracy; the ratios without / with each normalization.

    Returns
    -------
    summary : dict
        The keys of the module docstring and ``table`` (one row per run).
    """
    lrs, norms = list(config.learning_rates), list(config.normalizations)
    out = {n: [outputs[run_name(n, lr=lr)] for lr in lrs] for n in norms}
    pick = ["median_band", "median_predictiveness", "median_beta", "final_train_loss", "test_acc"]
    summary: dict = {"learning_rates": lrs, "normalizations": norms}
    for key in pick:
        summary[key] = {n: [o[key] for o in out[n]] for n in norms}
    summary["diverged"] = {n: [bool(o["diverged"]) for o in out[n]] for n in norms}
    for m in MEASURES:
        base = summary[f"median_{m}"]["none"]
        summary[f"ratio_{m}"] = {
            n: [_ratio(a, b) for a, b in zip(base, summary[f"median_{m}"][n], strict=True)]
            for n in norms
            if n != "none"
        }
    columns = [
        "normalization",
        "learning rate",
        "median loss band",
        "median gradient change",
        "median effective β-smoothness",
        "final train loss",
        "test acc (best val epoch)",
    ]
    rows = [
        [label(n), lr, *(summary[k][n][i] for k in pick)] for n in norms for i, lr in enumerate(lrs)
    ]
    return {**summary, "table": {"columns": columns, "rows": rows}}


def _ratio(a, b) -> float | None:
    """``a / b``, None when either is missing or ``b`` is not > 0."""
    return None if a is None or b is None or not b > 0 else a / b


def _log10(v) -> float | None:
    """log10 of a positive value, else None."""
    return None if v is None or not v > 0 else math.log10(v)


def factor(results: dict, measure: str, norm: str, i: int) -> noise.Difference:
    """The paired difference of ``log10`` median ``measure`` (``'band'``, ``'predictiveness'``,
    ``'beta'``) without normalization (``a``) and with ``norm`` (``b``) at learning rate ``i``,
    one value per seed: ``10 ** (a - b)`` is the factor by which ``norm`` is smaller; it is
    beyond noise when ``|a - b|`` exceeds the bound (:mod:`~normlab.experiments.noise`)."""
    key = f"median_{measure}"
    none = [_log10(v[i]) for v in noise.per_seed(results, [key, "none"])]
    other = [_log10(v[i]) for v in noise.per_seed(results, [key, norm])]
    return noise.difference(none, other, paired=True)


def _factor_word(d: noise.Difference) -> str:
    """``"5.1x smaller"`` / ``"1.3x larger"`` for a log10 difference, or ``"n/a"``."""
    if d.a is None or d.b is None:
        return "n/a"
    f = 10 ** (d.a - d.b)
    return f"{num(f, 1)}x smaller" if f >= 1 else f"{num(1 / f, 1)}x larger"


def _verdicts(ds: list, lrs: list) -> str:
    """Where the factors are beyond noise: ``"beyond noise at every learning rate"``, ``"beyond
    noise at lr 0.1 and 0.3, within at 0.03"``; empty without a noise estimate."""
    if all(d.bound is None for d in ds):
        return ""
    beyond = [f"{lr:g}" for d, lr in zip(ds, lrs, strict=True) if d.clear]
    within = [f"{lr:g}" for d, lr in zip(ds, lrs, strict=True) if not d.clear]
    if not within:
        return " (beyond noise at every learning rate)"
    if not beyond:
        return " (within noise at every learning rate)"
    return f" (beyond noise at lr {join(beyond)}, within at {join(within)})"


def headline(results: dict) -> str:
    """Per measure, the factors by which each normalization's median is smaller than without
    normalization, one per learning rate, and where they are beyond noise (seeds, paired)."""
    lrs, norms = results["learning_rates"], results["normalizations"]
    parts, diffs = [], []
    for n in [n for n in norms if n != "none"]:
        measures = []
        for m, words in MEASURES.items():
            ds = [factor(results, m, n, i) for i in range(len(lrs))]
            diffs += ds
            factors = join([_factor_word(d) for d in ds])
            measures.append(f"the median {words} was {factors}{_verdicts(ds, lrs)}")
        parts.append(f"with {label(n)} {join(measures)}")
    seeds = results.get("seeds", 1)
    noise_words = noise.seeds_phrase(seeds) if seeds > 1 else "one seed: no noise estimate"
    sentence = (
        f"Along the gradient, against no normalization at learning rates "
        f"{join([f'{lr:g}' for lr in lrs])}: {'; '.join(parts)} ({noise_words})."
    )
    return noise.qualify(sentence, diffs, results.get("config", {}).get("quick", False))


def figures(config: LandscapeConfig) -> list[dict]:
    """Per learning rate, the loss range, the gradient change and the effective β-smoothness
    over training; then their medians against the learning rate."""
    figs = []
    for lr in config.learning_rates:
        ranges, grads, betas = [], [], []
        for n in config.normalizations:
            run = run_name(n, lr=lr)
            ranges += [
                figspec.line("loss_max", f"{label(n)}: max", color(n), run=run, fmt="-", ms=None),
                figspec.line("loss_min", f"{label(n)}: min", color(n), run=run, fmt="--", ms=None),
            ]
            grads.append(figspec.norm_line(n, "predictiveness", run=run, fmt="-", ms=None))
            betas.append(figspec.norm_line(n, "beta", run=run, fmt="-", ms=None))
        x = dict(x="probe_iterations", xlabel="SGD step")
        panels = [
            figspec.curves(f"Loss along the gradient, lr {lr:g}", ranges, "loss", legend=True, **x),
            figspec.curves("Max gradient change ‖∇L(θ) − ∇L(θ − ηg)‖", grads, "ℓ2 distance", **x),
            figspec.curves("Effective β-smoothness", betas, "max ‖Δ∇L‖ / ‖ηg‖", **x),
        ]
        figs.append(figspec.figure(f"landscape_lr_{lr:g}", panels))
    sweeps = [
        figspec.sweep(
            f"Median {words}",
            "learning rate",
            None,
            ["learning_rates"],
            [figspec.norm_line(n, [f"median_{m}", n]) for n in config.normalizations],
            ticks=True,
            ylog=True,
            legend=m == "band",
        )
        for m, words in MEASURES.items()
    ]
    figs.append(figspec.figure("landscape_vs_learning_rate", sweeps))
    return figs


EXPERIMENT = Experiment(
    NAME, DESCRIPTION, LandscapeConfig, runs, run_task, summarize, quick, headline, figures
)
