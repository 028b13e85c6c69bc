"""What the two batch-size sweeps (``batch-size``, ``small-batch``) share: their config base,
their runs, their summary, their headline's comparison and their plot against the batch size.

A sweep runs every normalization at every batch size, ``run_name(norm, bs=B)``; the runs of one
batch size share a seed, so that they start from the same weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from normlab.experiments import figspec, noise
from normlab.experiments.base import RunSpec
from normlab.experiments.config import (
    EVERY_NORMALIZATION,
    ExperimentConfig,
    field_of,
    opt,
    require_nonempty,
)
from normlab.experiments.wording import with_norm
from normlab.vocab import run_name, short_label

__all__ = ["BatchSweepConfig", "endpoints", "panel", "runs", "summarize"]


@dataclass(frozen=True)
class BatchSweepConfig(ExperimentConfig):
    """Settings of a batch-size sweep: every normalization at each of ``batch_sizes``."""

    dataset: str = field_of(ExperimentConfig, "dataset", "cifar10")
    normalizations: tuple[str, ...] = field_of(
        ExperimentConfig, "normalizations", EVERY_NORMALIZATION
    )
    batch_sizes: tuple[int, ...] = opt((5, 10, 50), "minibatch sizes")

    def __post_init__(self) -> None:
        super().__post_init__()
        require_nonempty(self, "batch_sizes")


def runs(config: BatchSweepConfig) -> list[RunSpec]:
    """One run per (normalization, batch size); a batch size's runs share a seed."""
    return [
        RunSpec(run_name(n, bs=b), {"normalization": n, "batch_size": b}, seed_key=f"bs={b}")
        for n in config.normalizations
        for b in config.batch_sizes
    ]


def summarize(
    config: BatchSweepConfig, outputs: dict, picks: dict[str, tuple[Callable, str | None]]
) -> dict:
    """One curve over the batch sizes per normalization, for each of ``picks``, and a table.

    Parameters
    ----------
    config : BatchSweepConfig
    outputs : dict
        Run outputs by run name (:func:`runs`).
    picks : dict
        ``{key: (pick, column)}``: ``summary[key][norm]`` lists ``pick(output)`` of the runs of
        ``norm`` in batch-size order; with a ``column`` title (else None) the table shows it,
        one column per batch size.

    Returns
    -------
    summary : dict
        ``batch_sizes``, each ``key``, and ``table`` (one row per normalization).
    """
    bss = list(config.batch_sizes)
    curves = {
        key: {n: [pick(outputs[run_name(n, bs=b)]) for b in bss] for n in config.normalizations}
        for key, (pick, _) in picks.items()
    }
    shown = [(key, column) for key, (_, column) in picks.items() if column is not None]
    columns = ["normalization"] + [f"{column}, bs={b}" for _, column in shown for b in bss]
    rows = [
        [short_label(n), *(v for key, _ in shown for v in curves[key][n])]
        for n in config.normalizations
    ]
    return {"batch_sizes": bss, **curves, "table": {"columns": columns, "rows": rows}}


def endpoints(results: dict, key: str, n_key: str) -> tuple[list[str], list[noise.Difference]]:
    """Phrases "fell from a to b with <norm> (beyond noise, ±bound)", from the largest batch
    size to the smallest, a change within noise said as such, and the differences they rest on.

    ``n_key`` names the runs' output holding how many images the score was measured on (the
    binomial term of the noise bound); the two batch sizes' runs do not share seeds (unpaired).
    """
    bss = results["batch_sizes"]
    hi, lo = bss.index(max(bss)), bss.index(min(bss))
    n_eval = noise.eval_size(results, n_key)
    parts, diffs = [], []
    for norm, mean in results[key].items():
        values = noise.per_seed(results, [key, norm])
        d = noise.difference([v[hi] for v in values], [v[lo] for v in values], n_eval)
        parts.append(noise.trend(mean[hi], mean[lo], d, with_norm(norm)))
        diffs.append(d)
    return parts, diffs


def panel(
    config: BatchSweepConfig,
    key: str,
    title: str,
    xlabel: str,
    ylabel: str | None,
    log_base: int = 10,
    legend: bool = False,
) -> dict:
    """The panel of ``summary[key]`` against the batch size, a labelled tick at each size."""
    lines = [figspec.norm_line(n, [key, n], ms=None) for n in config.normalizations]
    return figspec.sweep(
        title, xlabel, ylabel, ["batch_sizes"], lines, log_base, ticks=True, legend=legend
    )
