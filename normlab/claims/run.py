"""Running the claims: each needed experiment once, every task in one sweep, then a verdict per
claim.

:func:`plan` turns the chosen claims into *studies*, one per (experiment, setting) that any of
them names, so that claims reading the same experiment share its runs. :func:`task_specs` lists
the tasks of every study (each run once per seed) as one sweep, named ``study:run``: the runner
spreads them over ``--jobs`` processes or a Dask cluster like any experiment's, and each task
keeps the seed it has when its experiment runs alone (the same root seed and seed key), so a
study's numbers equal ``normlab experiment``'s with the same settings. :func:`run_claims` runs
the sweep, summarizes each study as :func:`normlab.experiments.run_experiment` would
(:func:`normlab.experiments.runner.collect`) and applies each claim's measure to its study's
results.

The results dict (``results.json``) holds ``claims`` (one row per claim: text, source, study,
dataset, setting, numbers, verdict and why), ``table`` (the verdict table as text cells),
``studies`` (by key, each experiment's full results, which its report section draws), the
configuration and the environment; a report reads nothing else (:mod:`normlab.report.claims`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from normlab.claims.catalog import Claim, get_claims
from normlab.claims.verdict import FAILS, HOLDS, INCONCLUSIVE
from normlab.experiments import get_experiment, runner
from normlab.experiments.base import RunSpec
from normlab.experiments.config import config_from_dict, config_help, config_to_dict, opt

__all__ = [
    "NAME",
    "ClaimsConfig",
    "Study",
    "claim_row",
    "plan",
    "run_claims",
    "run_task",
    "task_specs",
    "verdict_table",
]

NAME = "claims"  # what config.json and results.json call this command's runs
DESCRIPTION = "published claims about normalization, each tested by an experiment with a verdict"
SEP = ":"  # between a study's key and its run's name in a task name


@dataclass(frozen=True)
class ClaimsConfig:
    """Settings of ``normlab claims``: which claims, how many seeds, the quick variant."""

    seed: int = opt(0, "root seed: every study's runs derive their seeds from it", False)
    seeds: int = opt(
        1, "runs of every setting, each from its own seed; a verdict needs 2 (3+ advised)"
    )
    quick: bool = opt(False, "every experiment's reduced variant, on the digits")
    diagnostics: int | None = opt(
        None, "record diagnostics every N iterations in every study (None: each one's default)"
    )
    only: tuple[str, ...] = opt((), "the claims to run (empty: all)")

    def __post_init__(self) -> None:
        for name in ("seed", "seeds"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (name == "seeds"):
                least = 1 if name == "seeds" else 0
                raise ValueError(f"ClaimsConfig: expected {name} an integer >= {least}, got {v!r}")
        d = self.diagnostics
        if d is not None and (isinstance(d, bool) or not isinstance(d, int) or d < 1):
            raise ValueError(
                f"ClaimsConfig: expected diagnostics an integer >= 1 (record every N "
                f"iterations) or None (each study's default), got {d!r}"
            )
        get_claims(self.only)  # unknown names fail here, listing the known ones


@dataclass(frozen=True)
class Study:
    """One experiment at one setting, and the claims that read it."""

    key: str
    experiment: str
    config: Any
    claims: tuple[str, ...]


def _experiment_config(claim: Claim, config: ClaimsConfig) -> Any:
    """The config of ``claim``'s experiment: its setting (or, quick, the experiment's quick
    variant on the digits with the claim's quick overrides), with the run's seeds."""
    exp = get_experiment(claim.experiment)
    common = {"seed": config.seed, "seeds": config.seeds}
    if config.diagnostics is not None:  # else the experiment's own (init-diagnostics records)
        common["diagnostics"] = config.diagnostics
    if not config.quick:
        return config_from_dict(exp.config_cls, {**claim.setting, **common})
    base = exp.quick(config_from_dict(exp.config_cls, {"dataset": "digits", **common}))
    return config_from_dict(exp.config_cls, {**config_to_dict(base), **claim.quick})


def plan(config: ClaimsConfig) -> dict[str, Study]:
    """The studies the chosen claims need, by key: the experiment's name, or ``name-2`` ...
    when claims name one experiment at several settings."""
    studies: dict[str, Study] = {}
    for claim in get_claims(config.only):
        cfg = _experiment_config(claim, config)
        same = [s for s in studies.values() if s.experiment == claim.experiment]
        match = next((s for s in same if s.config == cfg), None)
        if match is not None:
            studies[match.key] = dataclasses.replace(match, claims=(*match.claims, claim.name))
            continue
        key = claim.experiment if not same else f"{claim.experiment}-{len(same) + 1}"
        studies[key] = Study(key, claim.experiment, cfg, (claim.name,))
    return studies


def task_specs(studies: dict[str, Study]) -> list[RunSpec]:
    """Every task of every study, as one sweep: ``study:run`` with the run's own seed key."""
    specs = []
    for key, study in studies.items():
        for s in runner.task_specs(get_experiment(study.experiment), study.config):
            params = {"study": key, "experiment": study.experiment, "params": s.params}
            specs.append(RunSpec(f"{key}{SEP}{s.name}", params, seed_key=s.seed_key or s.name))
    return specs


def run_task(configs: dict, params: dict, seed: int) -> dict:
    """One task of the sweep: the study's experiment's ``run_task`` with the study's config
    (``configs`` holds them by study key)."""
    exp = get_experiment(params["experiment"])
    return exp.run_task(configs[params["study"]], params["params"], seed)


def _setting(claim: Claim, study: Study) -> str:
    """The setting as the row prints it: dataset and the claim's shown fields."""

    def shown(v) -> str:
        if isinstance(v, tuple):
            if len(v) > 2 and len(set(v)) == 1:
                return f"[{v[0]}]*{len(v)}"
            return ",".join(map(str, v))
        return f"{v:g}" if isinstance(v, float) else str(v)

    fields = [f"{f}={shown(getattr(study.config, f))}" for f in claim.shown]
    quick = "; quick variant, too short to conclude" if study.config.quick else ""
    return f"{study.experiment} on {study.config.dataset}" + (
        f" ({', '.join(fields)}{quick})" if fields else f" ({quick[2:]})" if quick else ""
    )


def claim_row(claim: Claim, study: Study, results: dict) -> dict:
    """One claim's row: its text, source, study and setting, and what its measure found. A
    quick variant is too short to conclude: its verdict is inconclusive whatever the numbers,
    and the reason says where they point."""
    finding = claim.measure(results).to_dict()
    if study.config.quick and finding["verdict"] != INCONCLUSIVE:
        finding["reason"] = (
            f"quick variant, too short to conclude; its numbers point to "
            f"'{finding['verdict']}' ({finding['reason']})"
        )
        finding["verdict"] = INCONCLUSIVE
    return {
        "name": claim.name,
        "claim": claim.text,
        "source": claim.source,
        "study": study.key,
        "experiment": study.experiment,
        "dataset": study.config.dataset,
        "setting": _setting(claim, study),
        "seeds": study.config.seeds,
        "note": claim.note,
        **finding,
    }


def _number(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def measured_text(row: dict) -> str:
    """The row's numbers: ``label mean ± std`` each, then the difference and its 95% bound."""
    parts = []
    for m in row["measured"]:
        spread = "" if m["spread"] is None else f" ± {_number(m['spread'])}"
        parts.append(f"{m['label']} {_number(m['mean'])}{spread}")
    d = row.get("difference")
    if d is not None and d.get("value") is not None:
        bound = "no noise estimate" if d["bound"] is None else f"± {_number(d['bound'])} (95%)"
        parts.append(f"difference {_number(d['value'])} {bound}")
    return "; ".join(parts)


def verdict_table(rows: list[dict], seeds: int) -> dict:
    """The verdict table: one row per claim, its cells as text."""
    columns = [
        "claim",
        "source",
        "experiment and setting",
        f"measured (mean ± std over {seeds} seed{'s' if seeds > 1 else ''})",
        "verdict",
    ]
    cells = [[r["claim"], r["source"], r["setting"], measured_text(r), r["verdict"]] for r in rows]
    return {"columns": columns, "rows": cells}


def headline(rows: list[dict], seeds: int, quick: bool) -> str:
    """How many claims hold, do not hold and are inconclusive, and on what evidence."""
    count = {v: sum(r["verdict"] == v for r in rows) for v in (HOLDS, FAILS, INCONCLUSIVE)}
    n = len(rows)
    words = (
        f"Of {n} claim{'s' if n != 1 else ''}, {count[HOLDS]} held, {count[FAILS]} did not hold "
        f"and {count[INCONCLUSIVE]} {'was' if count[INCONCLUSIVE] == 1 else 'were'} inconclusive"
    )
    evidence = (
        f"95% intervals over {seeds} seeds"
        if seeds > 1
        else "one seed: no noise estimate, so no verdict (run with --seeds 3)"
    )
    scale = "; quick variants on the digits, too short to conclude" if quick else ""
    return f"{words} ({evidence}{scale})."


def run_claims(
    config: ClaimsConfig,
    jobs: int = 1,
    scheduler: str | None = None,
    progress: Callable | None = None,
    done: dict | None = None,
    on_result: Callable | None = None,
) -> dict:
    """Run the studies of ``config``'s claims as one sweep and judge every claim.

    Parameters
    ----------
    config : ClaimsConfig
    jobs, scheduler, progress, done, on_result
        As in :func:`normlab.experiments.runner.run_tasks` (task names ``study:run``).

    Returns
    -------
    results : dict
        ``experiment`` ("claims"), ``description``, ``config``, ``config_help``, ``seed``,
        ``seeds``, ``claims`` (rows), ``table``, ``headline``, ``studies`` (each study's results,
        as :func:`normlab.experiments.run_experiment` returns them), ``runs`` (empty: each study
        holds its own), ``figures`` (empty: each study declares its own), ``environment``,
        ``compile_seconds``, ``jobs``, ``scheduler``, ``wall_time_s``.
    """
    from normlab.experiments.training import preload_data

    t0 = time.perf_counter()
    studies = plan(config)
    for study in studies.values():
        preload_data(study.config, scheduler)  # a missing dataset fails before any run
    specs = task_specs(studies)
    configs = {k: s.config for k, s in studies.items()}
    finished = runner.run_tasks(
        run_task, configs, specs, config.seed, jobs, scheduler, progress, done, on_result
    )
    results = {}
    for key, study in studies.items():
        mine = {
            name.partition(SEP)[2]: dataclasses.replace(r, name=name.partition(SEP)[2])
            for name, r in finished.items()
            if name.partition(SEP)[0] == key
        }
        exp = get_experiment(study.experiment)
        results[key] = runner.collect(exp, study.config, mine, jobs, scheduler)
    by_name = {c.name: c for c in get_claims(config.only)}
    rows = [
        claim_row(by_name[name], study, results[key])
        for key, study in studies.items()
        for name in study.claims
    ]
    order = list(by_name)
    rows.sort(key=lambda r: order.index(r["name"]))
    return {
        "experiment": NAME,
        "description": DESCRIPTION,
        "config": config_to_dict(config),
        "config_help": {name: text for name, _, text in config_help(ClaimsConfig)},
        "seed": config.seed,
        "seeds": config.seeds,
        "claims": rows,
        "table": verdict_table(rows, config.seeds),
        "headline": headline(rows, config.seeds, config.quick),
        "studies": results,
        "runs": {},
        "figures": [],
        "environment": runner.environment(),
        "compile_seconds": round(sum(r.compile_seconds for r in finished.values()), 3),
        "jobs": jobs,
        "scheduler": scheduler,
        "wall_time_s": round(time.perf_counter() - t0, 3),
    }
