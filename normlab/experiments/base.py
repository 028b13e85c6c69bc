"""What an experiment is made of: a config class, its runs, one task per run, a summary, its
headline and its figures.

An experiment never trains in a loop of its own: it lists its runs (:class:`RunSpec`), each of
which :mod:`normlab.experiments.runner` executes as an independent task -- a pure function of
``(config, spec.params, seed)`` -- in this process, in local worker processes or on a Dask
cluster, and then ``summarize`` turns the per-run outputs into the results dict. Its headline
(a sentence computed from the results) and its figures (declared as data,
:mod:`normlab.experiments.figspec`) go into the results too, so that a report needs nothing
else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Experiment", "RunSpec"]


@dataclass(frozen=True)
class RunSpec:
    """One run of an experiment.

    Attributes
    ----------
    name : str
        Unique within the experiment, e.g. ``"batchnorm/bs=5"``; names the run in the results.
    params : dict
        What distinguishes this run (JSON-able), passed to the experiment's ``run_task``.
    seed_key : str or None
        The run's seed is derived from the root seed and this key (default: ``name``). Runs that
        share a key (e.g. the same net with and without batch norm) start from the same seed, so
        that a comparison is paired.
    """

    name: str
    params: dict = field(default_factory=dict)
    seed_key: str | None = None


@dataclass(frozen=True)
class Experiment:
    """An experiment as the registry and the runner see it.

    Attributes
    ----------
    name : str
        The command-line name, e.g. ``"bn-vs-baseline"``.
    description : str
        One line for ``normlab experiment --list``.
    config_cls : type
        Its config dataclass (a subclass of :class:`~normlab.experiments.config.ExperimentConfig`).
    runs : callable
        ``runs(config) -> list[RunSpec]``.
    run_task : callable
        ``run_task(config, params, seed) -> dict``, module level (picklable), JSON-able output.
    summarize : callable
        ``summarize(config, outputs, seconds) -> dict`` with ``outputs`` the run outputs by run
        name, in ``runs`` order, and ``seconds`` their durations; returns the experiment-specific
        part of the results: a ``table`` (``{"columns": [...], "rows": [[...], ...]}``, printed
        by the command and the report) and any other keys (``threshold``...).
    quick : callable
        ``quick(config) -> config``: the reduced variant (``quick=True``).
    headline : callable
        ``headline(results) -> str``: one sentence stating what the results show, computed
        from them (never canned).
    figures : callable
        ``figures(config) -> list[dict]``: the figures' declarations
        (:mod:`normlab.experiments.figspec`), drawn by :mod:`normlab.report.figures`.
    settle : callable or None
        ``settle(config, outputs_per_seed) -> config``: fixes, from every seed's runs, the
        summary's settings that must be one for all seeds (an automatic accuracy target), so
        that each seed's summary is computed with them (:mod:`normlab.experiments.seeds`).
        None: the config as it is.
    """

    name: str
    description: str
    config_cls: type
    runs: Callable[[Any], list[RunSpec]]
    run_task: Callable[[Any, dict, int], dict]
    summarize: Callable[[Any, dict, dict], dict]
    quick: Callable[[Any], Any]
    headline: Callable[[dict], str]
    figures: Callable[[Any], list[dict]]
    settle: Callable[[Any, list[dict]], Any] | None = None
