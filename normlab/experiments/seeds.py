"""Seeds: every run of an experiment repeated ``config.seeds`` times, and the per-seed summaries
combined into mean and spread.

With ``seeds = N > 1`` each run ``name`` becomes N tasks ``name/seed=k`` (k = 0..N-1,
:func:`~normlab.vocab.seed_run_name`); seed 0 keeps the run's seed key, so its numbers are those
of a one-seed run, and seed k > 0 gets the key ``key/seed=k`` -- runs that share a key (a
paired comparison) still share it at every k. The tasks are ordinary tasks: ``--jobs`` and a
Dask cluster spread them like any others.

The experiment's ``summarize`` is applied to each seed's runs alone and :func:`combine` folds
the N summaries into one of the same shape: every number becomes the mean over the seeds that
gave one (a number the same in every seed, such as a swept setting, stays as it is, with no
spread), and a parallel tree ``spread`` holds the standard deviation (``ddof=1``; None with
fewer than two numbers). Booleans (a run's ``diverged`` flag) become True when any seed's is;
anything else (labels, column titles) is seed 0's. The table's cells carry their spread and
how many seeds gave a number (``table["spread"]``, ``table["count"]``), which the report prints
as ``mean ± std`` and ``(k of N)``; ``per_seed`` keeps every seed's own summary.

Examples
--------
>>> mean, spread, count = fold([{"acc": [0.5, 0.7]}, {"acc": [0.7, None]}])
>>> mean["acc"], count["acc"]
([0.6, 0.7], [2, 1])
"""

from __future__ import annotations

import dataclasses
import statistics
from typing import Any

from normlab.experiments.base import RunSpec
from normlab.vocab import seed_run_name

__all__ = ["combine", "expand", "fold", "split"]


def expand(specs: list[RunSpec], seeds: int) -> list[RunSpec]:
    """Every spec once per seed (the specs themselves when ``seeds == 1``), seed-major order
    (all runs of seed 0 first), so that an interrupted sweep has whole seeds done first."""
    if seeds == 1:
        return list(specs)
    return [
        dataclasses.replace(
            s,
            name=seed_run_name(s.name, k, seeds),
            seed_key=(s.seed_key or s.name) if k == 0 else f"{s.seed_key or s.name}/seed={k}",
        )
        for k in range(seeds)
        for s in specs
    ]


def split(values: dict, names: list[str], seeds: int) -> list[dict]:
    """``values`` by task name -> one dict per seed, by run name (in ``names`` order)."""
    return [{n: values[seed_run_name(n, k, seeds)] for n in names} for k in range(seeds)]


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def fold(trees: list) -> tuple[Any, Any, Any]:
    """The mean, spread (std, ddof=1) and count of numbers of same-shaped trees, leaf by leaf.

    Lists of unequal length (the curve of a run that diverged) are folded up to the longest,
    the short ones counting as missing there.

    Returns
    -------
    mean, spread, count
        Trees of the shape of ``trees[0]``; at a leaf that is no number, ``mean`` holds the
        leaf (True if any seed's boolean is) and ``spread`` and ``count`` hold None.
    """
    first = trees[0]
    if isinstance(first, dict):
        parts = {k: fold([t.get(k) for t in trees]) for k in first}
        return tuple({k: p[i] for k, p in parts.items()} for i in range(3))
    if isinstance(first, list | tuple):
        longest = max(len(t) if isinstance(t, list | tuple) else 0 for t in trees)
        cols = [
            fold([t[i] if isinstance(t, list | tuple) and i < len(t) else None for t in trees])
            for i in range(longest)
        ]
        return tuple([c[i] for c in cols] for i in range(3))
    present = [t for t in trees if t is not None]
    if present and all(_is_number(t) for t in present) and len(set(present)) == 1:
        return present[0], None, len(present)  # a setting, or the same value every time
    if present and all(_is_number(t) for t in present):
        std = statistics.stdev(present) if len(present) > 1 else None
        return statistics.fmean(present), std, len(present)
    if present and all(isinstance(t, bool) for t in present):
        return any(present), None, None
    return first, None, None


def combine(summaries: list[dict]) -> dict:
    """One summary from each seed's: the mean tree, ``spread``, ``per_seed``; the table's
    ``spread`` and ``count`` rows beside its mean rows. One summary is returned as it is."""
    if len(summaries) == 1:
        return summaries[0]
    mean, spread, count = fold(summaries)
    if "table" in mean:
        table, table_spread, table_count = mean.pop("table"), spread.pop("table"), count["table"]
        table = {**table, "spread": table_spread["rows"], "count": table_count["rows"]}
        mean["table"] = {**table, "seeds": len(summaries)}
    return {**mean, "spread": spread, "per_seed": summaries}
