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
from pathlib import Path
from urllib.parse import quote

from normlab._io import atomic_write_text, json_safe

__all__ = [
    "FORMAT_VERSION",
    "RUNS_DIR",
    "headline",
    "load_results",
    "load_runs",
    "output_files",
    "remove_outputs",
    "save_config",
    "save_results",
    "save_run",
]

FORMAT_VERSION = 2
RUNS_DIR = "runs"  # one <run name>.json per finished run, written as the run ends
_FILES = ("results.json", "config.json", "report.html")  # besides the runs and the figures
# the figures report.diagnostics draws from runs that recorded diagnostics (its FIGURES' keys)
DIAGNOSTICS_FIGURES = (
    "diagnostics_histograms", "diagnostics_grad_histograms", "diagnostics_update_ratio",
    "diagnostics_saturation", "diagnostics_signal",
)  # fmt: skip


def _dump(obj, indent: int) -> str:
    """Strict JSON text of ``obj`` (NaN and infinities as null)."""
    return json.dumps(json_safe(obj), indent=indent, allow_nan=False) + "\n"


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
    res_path = out / "results.json"
    atomic_write_text(res_path, _dump({"format_version": FORMAT_VERSION, **results}, 1))
    cfg_path = save_config(
        results.get("experiment"), results.get("config", {}), out, results.get("data_dir_used")
    )
    return res_path, cfg_path


def save_config(
    experiment: str | None, config: dict, out_dir: str | Path, data_dir_used: str | None = None
) -> Path:
    """Write ``config.json`` (``{"experiment": ..., "config": {...}}``) into ``out_dir``.

    Written before the first run, it says what the runs in ``out_dir/runs`` belong to (a resume
    compares it with its own config) and proves the folder writable before anything trains.
    Written again with the results, it gains ``data_dir_used``: the folder the dataset was
    actually read from (``config["data_dir"]`` may be None: the default places).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "config.json"
    record = {"experiment": experiment, "config": config}
    if data_dir_used is not None:
        record["data_dir_used"] = data_dir_used
    atomic_write_text(path, _dump(record, 2))
    return path


def _run_path(out: Path, name: str) -> Path:
    """``out/runs/<name>.json``, the run name escaped into one file name (``/`` is ``%2F``)."""
    return out / RUNS_DIR / f"{quote(name, safe='=,+-_.')}.json"


def save_run(out_dir: str | Path, name: str, record: dict) -> Path:
    """Write one finished run's ``record`` (``name``, ``params``, ``output``, ``seconds``)
    atomically to ``out_dir/runs/<name>.json``."""
    path = _run_path(Path(out_dir), name)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, _dump({**record, "name": name}, 1))
    return path


def load_runs(out_dir: str | Path) -> dict[str, dict]:
    """The run records saved in ``out_dir/runs``, by run name (unreadable files are skipped)."""
    records = {}
    for path in sorted((Path(out_dir) / RUNS_DIR).glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # not one of ours, or not whole: the run is done again
        if isinstance(record, dict) and path == _run_path(Path(out_dir), record.get("name", "")):
            records[record["name"]] = record
    return records


def output_files(out_dir: str | Path, figure_names=()) -> list[Path]:
    """The files an experiment wrote into ``out_dir`` that exist there, nothing else.

    ``results.json``, ``config.json``, ``report.html``, the runs in ``runs/`` and the PNG of
    every figure named in ``figure_names``, declared by the ``results.json`` there, or drawn
    from recorded diagnostics (:data:`DIAGNOSTICS_FIGURES`).
    """
    out = Path(out_dir)
    names = set(figure_names) | set(DIAGNOSTICS_FIGURES)
    try:
        declared = json.loads((out / "results.json").read_text()).get("figures", [])
        names |= {f["name"] for f in declared if isinstance(f, dict) and "name" in f}
    except (OSError, ValueError, AttributeError, TypeError):
        pass  # no results or not ours: only the names given
    found = [out / n for n in (*_FILES, *(f"{n}.png" for n in sorted(names)))]
    return [p for p in found if p.is_file()] + _run_files(out)


def _run_files(out: Path) -> list[Path]:
    """The run records of ``out/runs`` (files whose content names them)."""
    return [_run_path(out, name) for name in load_runs(out)]


def remove_outputs(out_dir: str | Path, figure_names=()) -> list[Path]:
    """Delete :func:`output_files` (and ``runs/`` if that leaves it empty); the paths removed."""
    gone = output_files(out_dir, figure_names)
    for path in gone:
        path.unlink(missing_ok=True)
    runs = Path(out_dir) / RUNS_DIR
    if runs.is_dir() and not any(runs.iterdir()):
        runs.rmdir()
    return gone


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
