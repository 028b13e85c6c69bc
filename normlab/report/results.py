"""``results.json``: writing it with its format version, reading it back, its headline.

A results file holds everything a report needs (:func:`normlab.experiments.run_experiment`
lists the keys): the runs, the summary, the configuration and each setting's comment
(``config_help``), the headline sentence the experiment computed, and the declarations of its
figures. ``format_version`` says how they are laid out.

Versions
--------
1  what normlab wrote before the report read results alone: no ``format_version`` key, no
   headline or figure declarations (the report looked them up in the experiments). Refused:
   rerun the experiment to get a version-2 file.
2  ``format_version``, ``config_help``, ``headline`` and ``figures``
   (:mod:`normlab.report.figures`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

__all__ = ["FORMAT_VERSION", "headline", "load_results", "save_results"]

FORMAT_VERSION = 2


def _json_safe(obj):
    """``obj`` with NaN and infinities replaced by None (strict JSON has neither)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


def save_results(results: dict, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``results.json`` (with ``format_version``) and ``config.json`` into ``out_dir``.

    Parameters
    ----------
    results : dict
        An experiment's results (or the runs alone, saved before the summary).
    out_dir : str or Path
        Created if needed.

    Returns
    -------
    paths : (Path, Path)
        Of ``results.json`` and ``config.json``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    res_path, cfg_path = out / "results.json", out / "config.json"
    versioned = {"format_version": FORMAT_VERSION, **results}
    res_path.write_text(json.dumps(_json_safe(versioned), indent=1, allow_nan=False) + "\n")
    config = {"experiment": results.get("experiment"), "config": results.get("config", {})}
    cfg_path.write_text(json.dumps(_json_safe(config), indent=2, allow_nan=False) + "\n")
    return res_path, cfg_path


def load_results(out_dir: str | Path) -> dict:
    """Read ``results.json`` (and ``config.json``'s configuration, which wins) from ``out_dir``.

    Raises
    ------
    FileNotFoundError
        If ``out_dir/results.json`` does not exist; the message says what to run.
    ValueError
        If it is not a normlab results file, one of another format version (older files,
        without ``format_version``, are version 1; the message names the version), or one
        without the configuration, figures and headline a report needs.
    """
    out = Path(out_dir)
    path = out / "results.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no results.json in {out}; run `normlab experiment NAME --out {out}` "
            "or `normlab demo --out DIR` first"
        )
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(results, dict) or "experiment" not in results or "runs" not in results:
        raise ValueError(f"{path} is not a normlab results file (no 'experiment' and 'runs')")
    _check_version(path, results.get("format_version", 1))
    missing = [k for k in ("config", "figures", "headline") if k not in results]
    if missing:
        raise ValueError(f"{path} is incomplete or damaged (no {missing}); rerun the experiment")
    cfg = out / "config.json"
    if cfg.is_file():
        saved = json.loads(cfg.read_text())
        if isinstance(saved, dict) and isinstance(saved.get("config"), dict):
            results["config"] = saved["config"]
    return results


def _check_version(path: Path, version) -> None:
    """Refuse a results file of any format version but this one, saying what to do."""
    if version == FORMAT_VERSION:
        return
    if isinstance(version, int) and not isinstance(version, bool) and version < FORMAT_VERSION:
        raise ValueError(
            f"{path} is a results file of format version {version}, written by an older normlab "
            f"without the headline and figure declarations a report needs (this normlab reads "
            f"version {FORMAT_VERSION}); rerun the experiment to write a new one"
        )
    raise ValueError(
        f"{path} is a results file of format version {version!r}; this normlab reads version "
        f"{FORMAT_VERSION} (a newer normlab wrote it? upgrade normlab)"
    )


def headline(results: dict) -> str:
    """The one sentence stating what an experiment's results show, as the experiment worded it.

    Parameters
    ----------
    results : dict
        As returned by :func:`~normlab.experiments.run_experiment` or read from
        ``results.json``.

    Returns
    -------
    sentence : str

    Raises
    ------
    ValueError
        If the results hold no headline (they stopped before the summary).
    """
    if "headline" not in results:
        name = results.get("experiment")
        raise ValueError(
            f"no headline for experiment {name!r}: its results are incomplete (no 'headline'; "
            "the run stopped before its summary?); rerun the experiment"
        )
    return results["headline"]
