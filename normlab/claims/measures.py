"""What each claim measures: a function of its experiment's results (one seed or several) that
returns a :class:`~normlab.claims.verdict.Finding`.

Each function reads the keys its experiment's ``summarize`` and ``run_task`` write (named in
each docstring) through :func:`normlab.experiments.noise.per_seed` and
:func:`normlab.vocab.seed_outputs`, so it sees every seed's own numbers; the verdict comes
from :mod:`normlab.claims.verdict`. Accuracies carry the number of images they were measured
on (``num_val``, ``num_test``), whose binomial error the noise bound holds.
"""

from __future__ import annotations

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


def _first(results: dict, key: str) -> int | None:
    """``key`` of the experiment's first run output (``num_val``, ``num_test``), or None."""
    return next((o.get(key) for o in results.get("runs", {}).values()), None)


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
        bn, none, "batch norm", "none", _first(results, "num_val"), what="mean val acc over epochs:"
    )


def sigmoid_input_stable(results: dict) -> Finding:
    """paper-mnist: the range over training of the tracked sigmoid's median input
    (``median_drift`` per run), larger without normalization than with batch norm, paired."""
    none = noise.per_seed(results, ["median_drift", "none"])
    bn = noise.per_seed(results, ["median_drift", "batchnorm"])
    return greater(
        none, bn, "none", "batch norm", what="range of the median sigmoid input over training:"
    )


def _shortfall(accs: list) -> float | None:
    """The mean shortfall of per-scale accuracies from the best of them (0: flat)."""
    present = [a for a in accs if a is not None]
    return statistics.fmean(max(present) - a for a in present) if present else None


def weight_scale_insensitive(results: dict) -> Finding:
    """weight-scale: how far, on average over the weight scales, the best validation accuracy
    falls short of the best scale's (``curves[norm]["best_val_acc"]``, one per scale); larger
    without normalization than with batch norm, paired (a scale's two nets share a seed)."""
    per_seed = {
        n: [_shortfall(c) for c in noise.per_seed(results, ["curves", n, "best_val_acc"])]
        for n in ("none", "batchnorm")
    }
    return greater(
        per_seed["none"],
        per_seed["batchnorm"],
        "none",
        "batch norm",
        what="mean shortfall from the best scale's best val acc:",
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
    norm's and than group norm's (paired: a batch size's runs share a seed)."""
    bss = results["batch_sizes"]
    big, small = max(bss), min(bss)
    n_test = _first(results, "num_test")
    bn_hi, bn_lo = _ends(results, key, "batchnorm")
    bn_drop = _drop(bn_hi, bn_lo)
    parts = [
        (
            "batch norm degrades",
            greater(bn_hi, bn_lo, f"BN bs={big}", f"BN bs={small}", n_test, paired=False),
        )
    ]
    for norm in ("layernorm", "groupnorm"):
        other = _drop(*_ends(results, key, norm))
        name = label(norm)
        parts.append(
            (
                f"{name} degrades less",
                greater(bn_drop, other, "BN's drop", f"{name}'s drop", what="accuracy drop:"),
            )
        )
    return all_of(parts)


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
        f"renorm bs={min(bss)}",
        f"BN bs={min(bss)}",
        _first(results, "num_test"),
        what="test acc:",
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
    return judge(d, hi, lo, nums, what="generalization gap:")


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
                    "layer norm",
                    "RMSNorm",
                    ACCURACY_MARGIN,
                    _first(results, "num_test"),
                    what="test acc:",
                ),
            ),
            (
                "cost",
                beyond(ratio, 1.0, "step time / layer norm's", above=False, what="time ratio"),
            ),
        ]
    )
