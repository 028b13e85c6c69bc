"""Reports: figures, headlines and the HTML page of an experiment's results; never trains.

Everything here reads a results dict (as an experiment's ``run`` returns it, or as
:func:`load_results` reads it back from ``results.json``), so ``normlab report DIR`` can rebuild
the figures and ``report.html`` of a finished run without running anything.

Files of an output directory
----------------------------
``results.json``  every curve and number (:func:`save_results`);
``config.json``   the experiment's name and configuration;
``<figure>.png``  one file per figure (:mod:`.figures`);
``report.html``   self-contained page: headline, tables, embedded figures, environment.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from normlab.report.figures import make_figures, render_png
from normlab.report.headline import headline
from normlab.report.html import render_html, write_report
from normlab.report.tables import html_table, text_table

__all__ = [
    "headline",
    "html_table",
    "load_results",
    "make_figures",
    "render_html",
    "render_png",
    "save_results",
    "text_table",
    "write_outputs",
    "write_report",
]


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
    """Write ``results.json`` and ``config.json`` into ``out_dir`` (created if needed).

    Returns
    -------
    paths : (Path, Path)
        Of ``results.json`` and ``config.json``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    res_path, cfg_path = out / "results.json", out / "config.json"
    res_path.write_text(json.dumps(_json_safe(results), indent=1, allow_nan=False) + "\n")
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
        If it is not a normlab results file.
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
    cfg = out / "config.json"
    if cfg.is_file():
        saved = json.loads(cfg.read_text())
        if isinstance(saved, dict) and isinstance(saved.get("config"), dict):
            results["config"] = saved["config"]
    return results


def write_outputs(results: dict, out_dir: str | Path) -> Path:
    """``results.json``, ``config.json``, the figures and ``report.html`` into ``out_dir``.

    Returns
    -------
    path : Path
        Of ``report.html``.
    """
    save_results(results, out_dir)
    return write_report(results, out_dir)
