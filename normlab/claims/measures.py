"""What each claim measures: a function of its experiment's results (one seed or several) that
returns a :class:`~normlab.claims.verdict.Finding`.

Each function reads the keys its experiment's ``summarize`` and ``run_task`` write (named in
each docstring) through :func:`normlab.experiments.noise.per_seed` and
:func:`normlab.vocab.seed_outputs`, so it sees every seed's own numbers; the verdict comes
from :mod:`normlab.claims.verdict`. Accuracies carry the number of images they were measured
on (``num_val``, ``num_test``), whose binomial error the noise bound holds.
"""

from __future__ import annotations

import math
import statistics

from normlab.claims.verdict import (
    Finding,
    all_of,
    beyond,
    greater,
    judge,
    matches,
    measured,
)
from normlab.experiments import noise
from normlab.vocab import label, seed_outputs

__all__ = [
    "ACCURACY_MARGIN",
    "bn_fixes_bad_init",
    "landscape_smoother",
    "larger_learning_rate",
    "noisy_bn_trains",
    "population_inconsistency",
    "precise_beats_ema",
    "ghost_narrows_gap",
    "renorm_recovers",
    "rmsnorm_matches",
    "sigmoid_input_stable",
    "small_batch_degrades",
    "trains_faster",
    "weight_scale_insensitive",
]

# RMSNorm "matches" layer norm: test accuracies within two percentage points. A 10,000-image
# test set alone puts about ±0.01 (95%) on a difference of two accuracies near 0.85, so a
# tighter margin could never be shown to hold on this machine's runs.
ACCURACY_MARGIN = 0.02


_first = noise.eval_size  # the images a run's accuracies were measured on


def _mean_trained(curve: list) -> float | None:
    """The mean of a per-epoch curve over the trained epochs (1..E; entry 0 is before
    training): the area under the learning curve, per epoch."""
    trained = [v for v in (curve or [])[1:] if v is not None]
    return statistics.fmean(trained) if trained else None


def trains_faster(results: dict) -> Finding:
    """bn-vs-baseline: the mean validation accuracy over the epochs (the area under the
    learning curve, per epoch: a net that learns sooner has more of it), batch norm against
    none, paired (the same initial weights). Reads each run's ``val_acc`` (E + 1,) and
    ``num_val``."""
    bn = [_mean_trained(o["val_acc"]) for o in seed_outputs(results, "batchnorm")]
    none = [_mean_trained(o["val_acc"]) for o in seed_outputs(results, "none")]
    return greater(
        bn, none, "val acc (epoch mean) BN", "val acc (epoch mean) none", _first(results, "num_val")
    )


def sigmoid_input_stable(results: dict) -> Finding:
    """paper-mnist: the range over training of the tracked sigmoid's median input
    (``median_drift`` per run), larger without normalization than with batch norm, paired."""
    none = noise.per_seed(results, ["median_drift", "none"])
    bn = noise.per_seed(results, ["median_drift", "batchnorm"])
    return greater(none, bn, "median-input range none", "median-input range BN")


def _shortfall(accs: list, best: float | None) -> float | None:
    """The mean shortfall of per-scale accuracies from ``best`` (0: every scale reached it)."""
    present = [a for a in accs if a is not None]
    return statistics.fmean(best - a for a in present) if present and best is not None else None


def weight_scale_insensitive(results: dict) -> Finding:
    """weight-scale: how far, on average over the weight scales, the best validation accuracy
    (``curves[norm]["best_val_acc"]``, one per scale) falls short of the best that either net
    reached at any scale in that seed; larger without normalization than with batch norm,
    paired (a scale's two nets share a seed). The common reference keeps a net that fails at
    every scale from counting as insensitive (its own best would be as poor as the rest)."""
    curves = {
        n: noise.per_seed(results, ["curves", n, "best_val_acc"]) for n in ("none", "batchnorm")
    }
    per_seed = {n: [] for n in curves}
    for none, bn in zip(curves["none"], curves["batchnorm"], strict=True):
        best = max((a for a in [*none, *bn] if a is not None), default=None)
        per_seed["none"].append(_shortfall(none, best))
        per_seed["batchnorm"].append(_shortfall(bn, best))
    return greater(
        per_seed["none"], per_seed["batchnorm"], "mean shortfall none", "mean shortfall BN"
    )


def _ends(results: dict, key: str, name: str) -> tuple[list, list]:
    """Per-seed scores of ``results[key][name]`` at the largest and the smallest batch size."""
    bss = results["batch_sizes"]
    hi, lo = bss.index(max(bss)), bss.index(min(bss))
    values = noise.per_seed(results, [key, name])
    return [v[hi] for v in values], [v[lo] for v in values]


def _drop(hi: list, lo: list) -> list:
    """Per-seed fall from the largest batch to the smallest (None where either is missing)."""
    return [None if a is None or b is None else a - b for a, b in zip(hi, lo, strict=True)]


def small_batch_degrades(results: dict, key: str = "best_epoch_test_acc") -> Finding:
    """A batch-size sweep (``renorm``, ``small-batch``: ``results[key][norm]`` per batch size,
    ``batch_sizes``): batch norm's accuracy falls from the largest batch to the smallest beyond
    noise (unpaired: the two sizes' runs have their own seeds), and falls further than layer
    norm's and than group norm's (paired: a batch size's runs share a seed; the bound holds the
    binomial error of the four test accuracies besides the seeds' spread)."""
    bss = results["batch_sizes"]
    big, small = max(bss), min(bss)
    n_test = _first(results, "num_test")
    bn_hi, bn_lo = _ends(results, key, "batchnorm")
    bn_drop = _drop(bn_hi, bn_lo)
    parts = [
        (
            "batch norm degrades",
            greater(
                bn_hi, bn_lo, f"test acc BN bs={big}", f"test acc BN bs={small}", n_test, False
            ),
        )
    ]
    for norm in ("layernorm", "groupnorm"):
        hi, lo = _ends(results, key, norm)
        other = _drop(hi, lo)
        name = label(norm)
        d = _drop_difference(other, bn_drop, [bn_hi, bn_lo, hi, lo], n_test)
        nums = [measured("drop BN", bn_drop), measured(f"drop {name}", other)]
        parts.append((f"{name} degrades less", judge(d, "drop BN", f"drop {name}", nums)))
    return all_of(parts)


def _drop_difference(low: list, high: list, accuracies: list, n_eval: int | None):
    """The paired difference ``high - low`` of two per-seed drops (each an accuracy minus
    another), its bound holding the binomial error of all four accuracies measured on
    ``n_eval`` images (``accuracies``: their per-seed lists) beside the seeds' spread, each
    term at its 95% multiplier as :func:`normlab.experiments.noise.difference` adds them."""
    d = noise.difference(low, high, paired=True)
    if d.bound is None or not n_eval:
        return d
    means = [statistics.fmean(ok) for ok in ([v for v in a if v is not None] for a in accuracies)
             if ok]  # fmt: skip
    var = sum(noise.binomial_se(m, n_eval) ** 2 for m in means)
    return noise.Difference(d.a, d.b, math.sqrt(d.bound**2 + 4.0 * var), d.seeds)


def renorm_recovers(results: dict) -> Finding:
    """renorm: test accuracy at the best validation epoch (``best_epoch_test_acc[variant]``,
    per batch size) at the smallest batch, batch renorm above batch norm, paired."""
    bss = results["batch_sizes"]
    lo = bss.index(min(bss))
    acc = {n: [v[lo] for v in noise.per_seed(results, ["best_epoch_test_acc", n])] for n in
           ("batchrenorm", "batchnorm")}  # fmt: skip
    return greater(
        acc["batchrenorm"],
        acc["batchnorm"],
        f"test acc renorm bs={min(bss)}",
        f"test acc BN bs={min(bss)}",
        _first(results, "num_test"),
    )


def ghost_narrows_gap(results: dict) -> Finding:
    """ghost-bn: the generalization gap (final train minus validation accuracy, ``gap`` per
    ghost size) with plain batch norm over the whole batch against the smallest ghost batch;
    the bound is :func:`normlab.experiments.ghost_bn.gap_difference`'s (seeds and the binomial
    error of all four accuracies)."""
    from normlab.experiments.ghost_bn import gap_difference

    vs = results["ghost_sizes"]
    big, small = vs.index(max(vs)), vs.index(min(vs))
    gaps = noise.per_seed(results, ["gap"])
    d = gap_difference(results, small, big)  # a: the small ghost's gap, b: the large one's
    hi, lo = f"gap V={max(vs)}", f"gap V={min(vs)}"
    nums = [measured(hi, [g[big] for g in gaps]), measured(lo, [g[small] for g in gaps])]
    return judge(d, hi, lo, nums)


def rmsnorm_matches(results: dict) -> Finding:
    """rmsnorm: test accuracy (at the best validation epoch, each run's ``test_acc``) equal to
    layer norm's within :data:`ACCURACY_MARGIN`, and the median step time over layer norm's
    (``time_ratio["rmsnorm"]``) below 1, both beyond noise."""
    ln = [o["test_acc"] for o in seed_outputs(results, "layernorm")]
    rms = [o["test_acc"] for o in seed_outputs(results, "rmsnorm")]
    ratio = noise.per_seed(results, ["time_ratio", "rmsnorm"])
    return all_of(
        [
            (
                "accuracy",
                matches(
                    ln,
                    rms,
                    "test acc layer norm",
                    "test acc RMSNorm",
                    ACCURACY_MARGIN,
                    _first(results, "num_test"),
                ),
            ),
            (
                "cost",
                beyond(ratio, 1.0, "step time / layer norm's", above=False, what="time ratio"),
            ),
        ]
    )


def _mean_log10(values: list) -> float | None:
    """The mean of log10 of the positive values (None: none is)."""
    logs = [math.log10(v) for v in values if v is not None and v > 0]
    return statistics.fmean(logs) if logs else None


def landscape_smoother(results: dict) -> Finding:
    """landscape: each of the three measures along the gradient -- the loss band, the gradient
    change and the effective β-smoothness -- smaller with batch norm: per seed, the mean over
    the learning rates of log10 of ``ratio_<measure>["batchnorm"]`` (the value without
    normalization over the value with it, one per rate) above 0."""
    parts = []
    for key, words in (
        ("band", "loss band"),
        ("predictiveness", "gradient change"),
        ("beta", "effective β-smoothness"),
    ):
        logs = [_mean_log10(r) for r in noise.per_seed(results, [f"ratio_{key}", "batchnorm"])]
        finding = beyond(logs, 0.0, f"log10 {words} none/BN", above=True, what="mean over rates")
        parts.append((f"{words} smaller with batch norm", finding))
    return all_of(parts)


NOISY = "noisybatchnorm"  # noisy-bn's run of batch norm with injected noise


def noisy_bn_trains(results: dict) -> Finding:
    """noisy-bn: the injected noise does shift the layers' inputs (``shift``, the mean per-step
    change of their moments, larger than plain batch norm's); the noisy net's test accuracy
    (``test_acc``, at the best validation epoch) is above the unnormalized net's, and equal to
    plain batch norm's within :data:`ACCURACY_MARGIN`; all paired (the same initial weights)."""
    n_test = _first(results, "num_test")
    test = {n: noise.per_seed(results, ["test_acc", n]) for n in ("none", "batchnorm", NOISY)}
    shift = {n: noise.per_seed(results, ["shift", n]) for n in ("batchnorm", NOISY)}
    return all_of(
        [
            (
                "the noise shifts the inputs",
                greater(shift[NOISY], shift["batchnorm"], "shift noisy BN", "shift BN"),
            ),
            (
                "noisy BN beats no normalization",
                greater(test[NOISY], test["none"], "test acc noisy BN", "test acc none", n_test),
            ),
            (
                "noisy BN matches BN",
                matches(
                    test["batchnorm"],
                    test[NOISY],
                    "test acc BN",
                    "test acc noisy BN",
                    ACCURACY_MARGIN,
                    n_test,
                ),
            ),
        ]
    )


def larger_learning_rate(results: dict) -> Finding:
    """lr-stability: log10 of the largest rate of the grid at which the net trains
    (``log10_largest_trainable_lr`` by normalization), batch norm above none, paired.

    A seed in which a net trained at no rate of the grid counts one grid step below the
    smallest rate (``log10(lrs[0]) - step``, ``step`` the grid's log10 spacing): dropping it
    would drop the pair that speaks most for (or against) the claim.
    """
    lrs = [math.log10(lr) for lr in results["learning_rates"]]
    below = lrs[0] - ((lrs[-1] - lrs[0]) / (len(lrs) - 1) if len(lrs) > 1 else 1.0)

    def largest(norm: str) -> list:
        logs = noise.per_seed(results, ["log10_largest_trainable_lr", norm])
        return [below if v is None else v for v in logs]

    return greater(
        largest("batchnorm"), largest("none"), "log10 largest rate BN", "log10 largest rate none"
    )


DEFAULT_EMA = 0.9  # normlab's momentum (PyTorch's momentum=0.1): the EMA a user gets


def precise_beats_ema(results: dict) -> Finding:
    """population-stats: final test accuracy with precise statistics over the most images
    (``final_test_acc_precise``, one per count of ``precise_samples``) above the EMA's at
    the momentum of ``ema_momenta`` nearest :data:`DEFAULT_EMA` (``final_test_acc_ema``);
    paired (the same trained weights, evaluated both ways)."""
    lams, ns = results["ema_momenta"], results["precise_samples"]
    i = min(range(len(lams)), key=lambda j: abs(lams[j] - DEFAULT_EMA))
    j = ns.index(max(ns))
    precise = [v[j] for v in noise.per_seed(results, ["final_test_acc_precise"])]
    ema = [v[i] for v in noise.per_seed(results, ["final_test_acc_ema"])]
    return greater(
        precise,
        ema,
        f"test acc precise BN ({max(ns)} images)",
        f"test acc EMA λ={lams[i]:g}",
        _first(results, "num_test"),
    )


BAD_INIT = "bad-init"  # init-diagnostics' unnormalized run from the badly scaled weights


def bn_fixes_bad_init(results: dict) -> Finding:
    """init-diagnostics: the saturated fraction of the tanh units at initialization (mean over
    the hidden layers of ``per_run[name]["saturation_init"]``) higher for the bad init than
    for batch norm from the same weights, and batch norm's final validation accuracy
    (``final_val_acc``) above the bad init's; paired."""

    def saturation(name: str) -> list:
        per_layer = noise.per_seed(results, ["per_run", name, "saturation_init"])
        return [statistics.fmean(v) if v else None for v in per_layer]

    acc = {
        n: noise.per_seed(results, ["per_run", n, "final_val_acc"]) for n in (BAD_INIT, "batchnorm")
    }
    return all_of(
        [
            (
                "the bad init saturates, batch norm does not",
                greater(
                    saturation(BAD_INIT),
                    saturation("batchnorm"),
                    "saturated at init, bad init",
                    "saturated at init, BN",
                ),
            ),
            (
                "batch norm trains from it",
                greater(
                    acc["batchnorm"],
                    acc[BAD_INIT],
                    "val acc BN",
                    "val acc bad init",
                    _first(results, "num_val"),
                ),
            ),
        ]
    )


def population_inconsistency(results: dict) -> Finding:
    """population-stats: at the smallest normalization batch of ``norm_batch_sizes``, the
    validation error with population statistics (``val_error_population_stats``) above the
    error with the batch's own (``val_error_batch_stats``); paired (the same net and images)."""
    vs = results["norm_batch_sizes"]
    i = vs.index(min(vs))
    pop = [v[i] for v in noise.per_seed(results, ["val_error_population_stats"])]
    bat = [v[i] for v in noise.per_seed(results, ["val_error_batch_stats"])]
    return greater(
        pop,
        bat,
        f"val error population stats V={min(vs)}",
        f"val error batch stats V={min(vs)}",
        _first(results, "num_val_population"),
    )
