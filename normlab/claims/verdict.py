"""The verdict on a claim, computed from per-seed scores: holds, does not hold or inconclusive.

Every test here rests on :func:`normlab.experiments.noise.difference`, the 95% interval of a
difference of means that the experiments' headlines use (Student's t over the seeds' spread,
paired where the runs share seeds, plus the binomial error of accuracies measured on ``n_eval``
images). The verdict follows from where that interval lies:

=======================  ====================================================================
:func:`greater`          a claim that one score exceeds another: **holds** when the
                         difference is beyond noise in the claimed direction, **does not
                         hold** when it is beyond noise the other way, **inconclusive** when
                         it is within noise
:func:`beyond`           a claim that one score exceeds a fixed level (a ratio below 1, an
                         accuracy above chance): the same three outcomes against the level
:func:`matches`          a claim of equivalence: **holds** when the whole interval of the
                         difference lies inside ``±margin``, **does not hold** when it lies
                         wholly outside, **inconclusive** when it straddles the margin (the
                         two one-sided tests of an equivalence trial, at 95%)
:func:`all_of`           a compound claim: holds when every part holds, does not hold when
                         any part does not, inconclusive otherwise
=======================  ====================================================================

With one seed there is no estimate of the training's noise (a one-seed bound would hold the
evaluation's noise alone), so every claim measured on one seed is inconclusive ("one seed: no
noise estimate"); so is a claim whose scores are missing (every run diverged).

Examples
--------
>>> f = greater([0.90, 0.91, 0.92], [0.50, 0.52, 0.51], "batch norm", "none", paired=True)
>>> f.verdict
'holds'
>>> greater([0.90], [0.50], "batch norm", "none").verdict
'inconclusive'
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from normlab.experiments import noise
from normlab.experiments.wording import num

__all__ = [
    "FAILS",
    "HOLDS",
    "INCONCLUSIVE",
    "VERDICTS",
    "Finding",
    "all_of",
    "beyond",
    "greater",
    "judge",
    "matches",
    "measured",
]

HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE)
MIN_SEEDS = 2  # below this, no estimate of the training's noise: no verdict


@dataclass(frozen=True)
class Finding:
    """What a claim's measurement found.

    Attributes
    ----------
    verdict : str
        One of :data:`VERDICTS`.
    measured : list of dict
        The numbers, each ``{"label", "mean", "spread", "seeds"}``: the mean over the seeds
        that gave a number, their standard deviation (``ddof=1``; None with one) and how many.
    difference : dict or None
        ``{"label", "value", "bound"}``: the difference the verdict rests on and its 95% noise
        bound (None: no estimate); for :func:`all_of`, None (each part has its own).
    reason : str
        One sentence: why this verdict.
    """

    verdict: str
    measured: list = field(default_factory=list)
    difference: dict | None = None
    reason: str = ""

    def to_dict(self) -> dict:
        """JSON-able form, as results.json stores it."""
        return {
            "verdict": self.verdict,
            "measured": list(self.measured),
            "difference": self.difference,
            "reason": self.reason,
        }


def measured(label: str, values: list) -> dict:
    """``{"label", "mean", "spread", "seeds"}`` of per-seed ``values`` (None: no number)."""
    present = [float(v) for v in values if v is not None and math.isfinite(v)]
    mean = statistics.fmean(present) if present else None
    spread = statistics.stdev(present) if len(present) > 1 else None
    return {"label": label, "mean": mean, "spread": spread, "seeds": len(present)}


def _too_few(d: noise.Difference) -> str | None:
    """Why there is no verdict on ``d``, or None when there can be one."""
    if d.a is None or d.b is None:
        return "no scores to compare (every run diverged or none was measured)"
    if d.seeds < MIN_SEEDS:
        return "one seed: no noise estimate (run with --seeds 3)"
    if d.bound is None:
        return "no noise estimate"
    return None


def _difference(label: str, d: noise.Difference) -> dict:
    """The difference ``d.b - d.a`` and its bound; no bound from one seed (it would hold the
    evaluation's noise alone, not the training's)."""
    value = None if d.a is None or d.b is None else d.b - d.a
    return {"label": label, "value": value, "bound": d.bound if d.seeds >= MIN_SEEDS else None}


def greater(
    high: list,
    low: list,
    high_label: str,
    low_label: str,
    n_eval: int | None = None,
    paired: bool = True,
    what: str = "",
) -> Finding:
    """The claim that scores ``high`` exceed scores ``low``.

    Parameters
    ----------
    high, low : list of float or None
        Per-seed scores, in seed order (None: a run gave none).
    high_label, low_label : str
        What each is, e.g. ``"batch norm"``, ``"none"``.
    n_eval : int, optional
        Images each score was measured on, when the scores are accuracies.
    paired : bool, default True
        Seed k of both started from the same seed.
    what : str
        The score, for the reason (``"drift of the median input"``).

    Returns
    -------
    Finding
        Both scores measured, the difference ``high - low`` and its bound.
    """
    d = noise.difference(low, high, n_eval, paired=paired)
    nums = [measured(high_label, high), measured(low_label, low)]
    return judge(d, high_label, low_label, nums, what)


def judge(
    d: noise.Difference, high_label: str, low_label: str, nums: list, what: str = ""
) -> Finding:
    """The verdict on the claim ``d.b > d.a`` (``d.b`` is ``high_label``'s score), for a
    difference whose bound was computed elsewhere (e.g. a gap of two accuracies); ``nums``
    are the numbers the row shows (:func:`measured`)."""
    diff = _difference(f"{high_label} - {low_label}", d)
    subject = f"{what} " if what else ""
    why = _too_few(d)
    if why is not None:
        return Finding(INCONCLUSIVE, nums, diff, why)
    gap = f"{num(d.b - d.a, 3)} ± {num(d.bound, 3)}"
    if not d.clear:
        return Finding(
            INCONCLUSIVE, nums, diff, f"{subject}{high_label} - {low_label} = {gap}: within noise"
        )
    if d.b > d.a:
        return Finding(
            HOLDS, nums, diff, f"{subject}{high_label} above {low_label} beyond noise ({gap})"
        )
    return Finding(
        FAILS, nums, diff, f"{subject}{high_label} below {low_label} beyond noise ({gap})"
    )


def beyond(
    values: list,
    level: float,
    label: str,
    above: bool,
    n_eval: int | None = None,
    what: str = "",
) -> Finding:
    """The claim that scores ``values`` lie above (``above=True``) or below a fixed ``level``.

    The bound is that of the mean of ``values`` alone: Student's t over the seeds (a paired
    difference with a constant) and, for accuracies on ``n_eval`` images, the binomial term of
    the mean (the level has none).

    Returns
    -------
    Finding
        The scores measured, the difference ``mean - level`` and its bound.
    """
    seeds = noise.difference([level] * len(values), values, paired=True)
    d = seeds
    if n_eval and seeds.b is not None:
        se = noise.binomial_se(seeds.b, n_eval)
        bound = math.sqrt((seeds.bound or 0.0) ** 2 + (2 * se) ** 2) if seeds.seeds > 1 else None
        d = noise.Difference(seeds.a, seeds.b, bound, seeds.seeds)
    nums = [measured(label, values)]
    side = "above" if above else "below"
    diff = _difference(f"{label} - {num(level, 3)}", d)
    subject = f"{what} " if what else ""
    why = _too_few(d)
    if why is not None:
        return Finding(INCONCLUSIVE, nums, diff, why)
    gap = f"{num(d.b, 3)} ± {num(d.bound, 3)}"
    if not d.clear:
        return Finding(INCONCLUSIVE, nums, diff, f"{subject}{gap}: within noise of {num(level, 3)}")
    if (d.b > d.a) == above:
        return Finding(HOLDS, nums, diff, f"{subject}{gap}, {side} {num(level, 3)} beyond noise")
    other = "below" if above else "above"
    return Finding(FAILS, nums, diff, f"{subject}{gap}, {other} {num(level, 3)} beyond noise")


def matches(
    a: list,
    b: list,
    a_label: str,
    b_label: str,
    margin: float,
    n_eval: int | None = None,
    paired: bool = True,
    what: str = "",
) -> Finding:
    """The claim that scores ``b`` equal scores ``a`` within ``±margin``.

    Holds when ``|b - a| + bound <= margin`` (the whole 95% interval inside the margin); does
    not hold when ``|b - a| - bound > margin`` (wholly outside); inconclusive otherwise.

    Returns
    -------
    Finding
        Both scores, the difference ``b - a`` and its bound.

    Raises
    ------
    ValueError
        For a margin that is not > 0.
    """
    if not margin > 0:
        raise ValueError(f"expected an equivalence margin > 0, got {margin!r}")
    d = noise.difference(a, b, n_eval, paired=paired)
    nums = [measured(b_label, b), measured(a_label, a)]
    diff = _difference(f"{b_label} - {a_label}", d)
    subject = f"{what} " if what else ""
    why = _too_few(d)
    if why is not None:
        return Finding(INCONCLUSIVE, nums, diff, why)
    gap, m = d.b - d.a, num(margin, 3)
    said = f"{subject}{b_label} - {a_label} = {num(gap, 3)} ± {num(d.bound, 3)}"
    if abs(gap) + d.bound <= margin:
        return Finding(HOLDS, nums, diff, f"{said}, inside the margin ±{m}")
    if abs(gap) - d.bound > margin:
        return Finding(FAILS, nums, diff, f"{said}, outside the margin ±{m}")
    return Finding(INCONCLUSIVE, nums, diff, f"{said}: the interval straddles the margin ±{m}")


def all_of(parts: list[tuple[str, Finding]]) -> Finding:
    """A compound claim from its named parts: holds when all hold, does not hold when any
    does not, inconclusive otherwise; the numbers and reasons of every part, in order."""
    if not parts:
        raise ValueError("expected at least one part of a compound claim, got none")
    verdicts = [f.verdict for _, f in parts]
    if all(v == HOLDS for v in verdicts):
        verdict = HOLDS
    elif FAILS in verdicts:
        verdict = FAILS
    else:
        verdict = INCONCLUSIVE
    nums, seen = [], set()
    for _, f in parts:  # a number two parts share (the same runs) is listed once
        for m in f.measured:
            if m["label"] not in seen:
                seen.add(m["label"])
                nums.append(m)
    reason = "; ".join(f"{name}: {f.verdict} ({f.reason})" for name, f in parts)
    return Finding(verdict, nums, None, reason)
