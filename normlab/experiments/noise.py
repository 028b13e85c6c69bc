"""When a headline may state a difference: the noise bound of a difference between two scores.

A headline compares two scores (two normalizations at one setting, or one normalization at the
largest and the smallest batch size). It states the difference only when it exceeds a noise
bound computed from the results; otherwise it says the difference is within noise.

The bound is a 95% interval of the difference of the means, from two independent sources of
noise:

- **seeds** (with N >= 2 seeds): the spread of the runs. For a *paired* comparison (both scores
  from the same seeds, e.g. the same initial weights with and without batch norm) the standard
  error of the mean per-seed difference, ``std(a_k - b_k) / sqrt(N)``; unpaired,
  ``sqrt(var(a) / N + var(b) / N)`` (``ddof=1``).
- **evaluation** (for accuracies measured on ``n`` images): the binomial standard error of an
  accuracy ``p``, ``sqrt(p (1 - p) / n)``, for each score. The images are the same for every
  seed, so this term does not shrink with more seeds.

``bound = sqrt((t se_seeds)^2 + (2 se_eval)^2)``: each source at its own 95% multiplier,
``t`` the 97.5% quantile of Student's t with ``N - 1`` degrees of freedom (12.7 for 2 seeds,
4.3 for 3, 2.8 for 5: few seeds say little about their own spread), 2 for the binomial term,
whose standard error is known rather than estimated.
With one seed and no evaluation size there is no bound ("no noise estimate"), and no
difference is stated as a finding. A one-seed bound holds the evaluation's noise, not the
training's: a quick run therefore always says it is too short to conclude unless its finding
holds beyond noise over at least 3 seeds (:func:`qualify`).

Examples
--------
>>> d = difference([0.52], [0.48], n_eval=300)  # one seed, 300 validation images
>>> round(d.bound, 3), d.clear
(0.082, False)
>>> difference([0.90, 0.91, 0.92], [0.50, 0.52, 0.51], n_eval=300, paired=True).clear
True
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from normlab.experiments.wording import change, num

__all__ = [
    "Difference",
    "binomial_se",
    "difference",
    "eval_size",
    "per_seed",
    "qualify",
    "seeds_phrase",
    "trend",
    "versus",
]


def binomial_se(p: float, n: int) -> float:
    """The standard error of an accuracy ``p`` measured on ``n`` images, ``sqrt(p(1-p)/n)``."""
    return math.sqrt(max(p * (1.0 - p), 0.0) / n)


@dataclass(frozen=True)
class Difference:
    """Two mean scores and the noise bound on their difference.

    Attributes
    ----------
    a, b : float or None
        The means over the seeds that gave a score (None: none did, e.g. every run diverged).
    bound : float or None
        Noise bound on ``|b - a|`` (module docstring); None when there is no estimate.
    seeds : int
        Seeds compared.
    """

    a: float | None
    b: float | None
    bound: float | None
    seeds: int

    @property
    def clear(self) -> bool:
        """True when ``|b - a|`` exceeds the noise bound."""
        if self.a is None or self.b is None or self.bound is None:
            return False
        return abs(self.b - self.a) > self.bound


def eval_size(results: dict, key: str) -> int | None:
    """``key`` (``num_val``, ``num_test``...: the images an accuracy was measured on) of the
    first run output that has it, or None; runs of one experiment can differ (population-stats'
    first run has no ``num_val_population``)."""
    runs = results.get("runs", {}).values()
    return next((o[key] for o in runs if o.get(key) is not None), None)


def per_seed(results: dict, path: list) -> list:
    """The value at ``path`` (keys into the summary) of each seed's own summary, in seed
    order: ``results["per_seed"]`` with several seeds, the results themselves with one."""
    out = []
    for summary in results.get("per_seed") or [results]:
        for key in path:
            summary = summary[key]
        out.append(summary)
    return out


def versus(d: Difference, ref: str = "") -> str:
    """How ``d.b`` compares with ``d.a`` (named ``ref`` when given): ``"lower than batch norm's
    beyond noise, ±0.03"`` or ``"within noise of batch norm's, ±0.03"``."""
    if d.bound is None:  # one seed and no evaluation size, or a side without scores
        return "no noise estimate"
    if d.clear:
        words = f"{'lower' if d.b < d.a else 'higher'} {f'than {ref} ' if ref else ''}beyond noise"
    else:
        words = f"within noise{f' of {ref}' if ref else ''}"
    return f"{words}, ±{num(d.bound)}"


def trend(a, b, d: Difference, who: str) -> str:
    """How a mean went from ``a`` to ``b`` for ``who`` (``"with batch norm"``), with the noise
    verdict of ``d``: ``"fell from 0.80 to 0.77 with batch norm (beyond noise, ±0.02)"``,
    ``"went from 0.80 to 0.79 with layer norm (within noise, ±0.02)"``."""
    words = change(a, b)  # "stayed at" when equal to two decimals
    if d.a is not None and d.b is not None and not d.clear and "stayed" not in words:
        words = f"went from {num(a)} to {num(b)}"
    elif d.clear and "stayed" in words:  # apart beyond noise, equal to two decimals
        words = f"went from {num(a, 3)} to {num(b, 3)}"
    verdict = "beyond noise" if d.clear else "within noise"
    bound = " (no noise estimate)" if d.bound is None else f" ({verdict}, ±{num(d.bound)})"
    return f"{words} {who}{bound}"


def seeds_phrase(seeds: int) -> str:
    """How a headline names its noise bound: ``"noise: 95% t-interval, 5 seeds"``."""
    if seeds > 1:
        return f"noise: 95% t-interval over {seeds} seeds"
    return "noise: 2 binomial standard errors, one seed"


def difference(a: list, b: list, n_eval: int | None = None, paired: bool = False) -> Difference:
    """The difference between scores ``a`` and ``b`` (one per seed, None where a run gave none).

    Parameters
    ----------
    a, b : list of float or None
        Per-seed scores, in seed order.
    n_eval : int, optional
        Images each score was measured on, when the scores are accuracies (adds the binomial
        term); None for other scores (losses, epochs).
    paired : bool, default False
        Whether seed k of ``a`` and of ``b`` started from the same seed (the same weights).

    Returns
    -------
    Difference
    """
    if paired:
        both = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
        a_ok, b_ok = [x for x, _ in both], [y for _, y in both]
    else:
        a_ok, b_ok = [x for x in a if x is not None], [y for y in b if y is not None]
    if not a_ok or not b_ok:
        mean = statistics.fmean
        return Difference(mean(a_ok) if a_ok else None, mean(b_ok) if b_ok else None, None, 0)
    ma, mb = statistics.fmean(a_ok), statistics.fmean(b_ok)
    var, n_seeds = None, min(len(a_ok), len(b_ok))
    if paired and len(a_ok) > 1:
        var = statistics.variance([y - x for x, y in both]) / len(both)
    elif not paired and len(a_ok) > 1 and len(b_ok) > 1:
        var = statistics.variance(a_ok) / len(a_ok) + statistics.variance(b_ok) / len(b_ok)
    # each source at its own 95% multiplier, added in quadrature: Student's t with the seeds'
    # degrees of freedom for their spread (12.7 for 2 seeds, 4.3 for 3, 2.8 for 5), 2 for the
    # binomial term (its standard error is known, not estimated from the seeds)
    seeds_part = None if var is None else _t975(n_seeds - 1) ** 2 * var
    eval_part = None
    if n_eval:
        eval_part = 4.0 * (binomial_se(ma, n_eval) ** 2 + binomial_se(mb, n_eval) ** 2)
    if seeds_part is None and eval_part is None:
        return Difference(ma, mb, None, n_seeds)
    return Difference(ma, mb, math.sqrt((seeds_part or 0.0) + (eval_part or 0.0)), n_seeds)


def _t_central(t: float, df: int) -> float:
    """``P(|T| < t)`` for Student's t with an integer ``df >= 1`` degrees of freedom, in closed
    form (Abramowitz & Stegun 26.7.3-4): with ``theta = atan(t / sqrt(df))``, ``c = cos(theta)^2``,

    * odd df: ``(2/pi) * (theta + sin(theta) cos(theta) (1 + 2/3 c + 2*4/(3*5) c^2 + ...))``,
      the series to ``c^((df-3)/2)`` (empty for df = 1, the Cauchy distribution);
    * even df: ``sin(theta) * (1 + 1/2 c + 1*3/(2*4) c^2 + ...)``, to ``c^((df-2)/2)``.
    """
    theta = math.atan(t / math.sqrt(df))
    c = math.cos(theta) ** 2
    odd = df % 2
    term = total = 1.0
    for k in range(2 if odd else 1, df - 1, 2):  # the series' k-th ratio: k / (k + 1) * c
        term *= c * k / (k + 1)
        total += term
    if odd:
        series = math.sin(theta) * math.cos(theta) * total if df > 1 else 0.0
        return 2.0 / math.pi * (theta + series)
    return math.sin(theta) * total


def _t975(df: int) -> float:
    """The 97.5% quantile of Student's t distribution with ``df`` degrees of freedom (12.706
    for 1, 4.303 for 2, 2.776 for 4; 1.96 as df grows): the ``t`` with ``P(|T| < t) = 0.95``,
    by bisection on :func:`_t_central` (monotone in t), to float precision. SciPy's
    ``t.ppf(0.975, df)`` computes the same number; written here so that the runtime needs no
    SciPy (issue 14: a 140 MB dependency for one quantile).
    """
    if df < 1:
        raise ValueError(f"expected at least 1 degree of freedom (2 seeds), got {df}")
    lo, hi = 0.0, 1.0
    while _t_central(hi, df) < 0.95:  # bracket: hi = 16 holds df = 1's 12.706
        hi *= 2.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if _t_central(mid, df) < 0.95 else (lo, mid)
    return 0.5 * (lo + hi)


def qualify(sentence: str, differences: list[Difference], quick: bool) -> str:
    """``sentence``, prefixed "Quick run, too short to conclude:" when the run is a quick
    variant, unless every one of the ``differences`` its finding rests on is beyond noise over
    at least 3 seeds: a quick run is too short for its one-seed bounds, which hold the
    evaluation's noise but not the training's, to be trusted (and a quick batch sweep gives the
    small batches more steps)."""
    clear = bool(differences) and all(d.clear and d.seeds >= 3 for d in differences)
    if quick and not clear:
        return f"Quick run, too short to conclude: {sentence[:1].lower()}{sentence[1:]}"
    return sentence
