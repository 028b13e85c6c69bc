"""The self-contained ``report.html`` of one experiment: headline, figures, tables, environment.

Figures are embedded as base64 PNG (``data:image/png;base64,...``) and the style sheet is
inline, so the file can be mailed or archived alone.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
from pathlib import Path

from normlab._io import atomic_write, atomic_write_text
from normlab.report.diagnostics import diagnostics_figures, run_diagnostics
from normlab.report.figures import make_figures, render_png
from normlab.report.results import headline
from normlab.report.tables import html_table

__all__ = ["render_html", "write_report"]

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1200px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 1.8em; }
p.description { color: #555; margin-top: 0; }
p.headline { font-size: 1.15em; background: #eef4fb; border-left: 4px solid #1f77b4;
             padding: 0.6em 0.9em; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""


def _config_rows(results: dict) -> list[list]:
    """``[name, value, comment]`` for every setting, comments from ``results["config_help"]``."""
    comments = results.get("config_help", {})

    def shown(v) -> str:
        if isinstance(v, float):
            return f"{v:.6g}"  # a learning rate of 10**-3.5 must not read 0.000
        return json.dumps(v) if isinstance(v, list | dict | bool) or v is None else str(v)

    return [[k, shown(v), comments.get(k, "")] for k, v in results.get("config", {}).items()]


def _environment_rows(results: dict) -> list[list]:
    """``[what, value]`` rows: versions, CPU, seed, parallelism and times."""
    env = dict(results.get("environment", {}))
    rows = [[k, v] for k, v in env.items()]
    rows.append(["seed", results.get("seed")])
    rows.append(["seeds per run", results.get("seeds", 1)])
    rows.append(["dataset read from", results.get("data_dir_used") or "none (embedded data)"])
    rows.append(["jobs", results.get("jobs")])
    rows.append(["scheduler", results.get("scheduler") or "local"])
    rows.append(["wall time (s)", results.get("wall_time_s")])
    run_s = results.get("run_seconds", {})
    rows.append(["sum of run times (s)", round(sum(run_s.values()), 3) if run_s else None])
    rows.append(["kernel compile before the runs (s)", results.get("compile_seconds")])
    return rows


def render_html(results: dict, pngs: dict[str, bytes]) -> str:
    """The report page of ``results`` with the figures ``pngs`` (file stem -> PNG bytes).

    Parameters
    ----------
    results : dict
        An experiment's results (``experiment``, ``config``, ``table``, ``environment``...).
    pngs : dict of str to bytes
        Figures to embed, in order.

    Returns
    -------
    page : str
        A complete HTML document with no external resources.
    """
    name = results.get("experiment", "experiment")
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>normlab: {esc(name)}</title><style>{_CSS}</style></head><body>",
        f"<h1>normlab &middot; {esc(name)}</h1>",
        f'<p class="description">{esc(results.get("description", ""))} '
        f"&mdash; dataset <code>{esc(str(results.get('config', {}).get('dataset')))}</code>"
        + (" (quick variant)" if results.get("config", {}).get("quick") else "")
        + "</p>",
        f'<p class="headline">{esc(headline(results))}</p>',
    ]
    if "table" in results:
        parts += ["<h2>Results</h2>", html_table(results["table"])]
    parts.append("<h2>Figures</h2>")
    for stem, png in pngs.items():
        b64 = base64.b64encode(png).decode("ascii")
        parts.append(
            f'<figure><img alt="{esc(stem)}" src="data:image/png;base64,{b64}">'
            f"<figcaption>{esc(stem)}.png</figcaption></figure>"
        )
    parts += [
        "<h2>Configuration</h2>",
        html_table(
            {"columns": ["setting", "value", "comment"], "rows": _config_rows(results)}, "config"
        ),
        "<h2>Environment</h2>",
        html_table({"columns": ["", "value"], "rows": _environment_rows(results)}, "env"),
    ]
    run_s = results.get("run_seconds", {})
    if run_s:
        rows = [[k, v] for k, v in run_s.items()]
        parts += [
            "<details><summary>Time per run</summary>",
            html_table({"columns": ["run", "time (s)"], "rows": rows}, "runs"),
            "</details>",
        ]
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f'<p class="description">Generated {esc(stamp)} from results.json.</p>')
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(results: dict, out_dir: str | Path) -> Path:
    """Draw the figures into ``out_dir/<name>.png`` and write ``out_dir/report.html`` (atomically).

    The declared figures, then, where runs recorded training diagnostics, the figures of
    :mod:`normlab.report.diagnostics` (``diagnostics_*.png``).

    Parameters
    ----------
    results : dict
        An experiment's results.
    out_dir : str or Path
        Created if needed.

    Returns
    -------
    path : Path
        Of ``report.html``.

    Notes
    -----
    The results of ``normlab claims`` (a ``claims`` key) get their own page, every study's
    figures embedded (:func:`normlab.report.claims.write_claims_report`).
    """
    if "claims" in results:
        from normlab.report.claims import write_claims_report  # it imports this module

        return write_claims_report(results, out_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pngs = {}
    figures = make_figures(results)
    records = run_diagnostics(results)  # runs of an experiment run with diagnostics=N
    if records:
        figures.update(diagnostics_figures(records))
    for stem, fig in figures.items():
        pngs[stem] = render_png(fig)
        with atomic_write(out / f"{stem}.png") as f:
            f.write(pngs[stem])
    path = out / "report.html"
    atomic_write_text(path, render_html(results, pngs))
    return path
