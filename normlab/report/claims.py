"""The report of ``normlab claims``: the verdict table first, then every claim with its numbers
and its experiment's figures; and the table as text for the terminal.

It reads the claims' results dict alone (as :func:`normlab.claims.run_claims` returns it or
``results.json`` holds it): ``claims`` (one row per claim), ``table``, ``headline`` and
``studies`` (each experiment's own results, whose declared figures and recorded diagnostics
are drawn as ``normlab experiment`` draws them). A study read by several claims is drawn once,
under the first; the others link to it.
"""

from __future__ import annotations

import base64
import datetime
import html
from pathlib import Path

from normlab._io import atomic_write_text
from normlab.report.diagnostics import diagnostics_figures, run_diagnostics
from normlab.report.figures import make_figures, render_png
from normlab.report.html import _CSS, _environment_rows
from normlab.report.tables import html_table

__all__ = ["claims_text", "render_claims_html", "study_figures", "write_claims_report"]

_VERDICT_CSS = """
td.verdict { font-weight: 600; white-space: nowrap; }
.holds { color: #1a7f37; } .does-not-hold { color: #b42318; } .inconclusive { color: #8a6d00; }
div.claim { border-top: 1px solid #ddd; margin-top: 2em; }
p.reason { background: #f7f7f7; padding: 0.4em 0.8em; }
"""


def _rows(results: dict) -> list[dict]:
    """The claim rows, refusing results that hold none (not a claims run)."""
    rows = results.get("claims")
    if not isinstance(rows, list):
        raise ValueError(
            f"no claims in the results of {results.get('experiment')!r}: not a `normlab claims` "
            "run; redraw an experiment's report with `normlab report DIR`"
        )
    return rows


def _seeds(n: int) -> str:
    return f"{n} seed{'s' if n != 1 else ''}"


def _css_class(verdict: str) -> str:
    return verdict.replace(" ", "-")


def claims_text(results: dict) -> str:
    """The verdict table for the terminal: per claim, its number, verdict and text, then its
    source and setting, and its numbers, indented below."""
    rows = _rows(results)
    width = max((len(r["verdict"]) for r in rows), default=0)
    table = results.get("table", {})
    col = next(
        (i for i, c in enumerate(table.get("columns", [])) if c.startswith("measured")), None
    )
    numbers = [r[col] for r in table["rows"]] if col is not None else [""] * len(rows)
    lines = []
    pad = " " * (4 + width + 2)
    for i, (row, measured) in enumerate(zip(rows, numbers, strict=True), 1):
        lines.append(f"{i:>2}  {row['verdict']:<{width}}  {row['claim']}")
        lines.append(f"{pad}{row['source']} | {row['setting']}, {_seeds(row['seeds'])}")
        lines.append(f"{pad}{measured}")
    return "\n".join(lines)


def study_figures(study: dict) -> dict[str, bytes]:
    """The PNGs of one study (an experiment's results): its declared figures, then the
    diagnostics its runs recorded, if any."""
    figures = make_figures(study)
    records = run_diagnostics(study)
    if records:
        figures.update(diagnostics_figures(records))
    return {stem: render_png(fig) for stem, fig in figures.items()}


def _img(stem: str, png: bytes) -> str:
    b64 = base64.b64encode(png).decode("ascii")
    esc = html.escape
    return (
        f'<figure><img alt="{esc(stem)}" src="data:image/png;base64,{b64}">'
        f"<figcaption>{esc(stem)}.png</figcaption></figure>"
    )


def _verdict_table(rows: list[dict], table: dict) -> str:
    """The table of ``results["table"]``, each claim linked to its section, verdicts coloured."""
    esc = html.escape
    head = "".join(f"<th>{esc(str(c))}</th>" for c in ["#", *table["columns"]])
    body = []
    for i, (row, cells) in enumerate(zip(rows, table["rows"], strict=True), 1):
        claim = f'<a href="#{esc(row["name"])}">{esc(str(cells[0]))}</a>'
        tds = [f'<td class="num">{i}</td>', f"<td>{claim}</td>"]
        tds += [f"<td>{esc(str(c))}</td>" for c in cells[1:-1]]
        tds.append(f'<td class="verdict {_css_class(row["verdict"])}">{esc(row["verdict"])}</td>')
        body.append("<tr>" + "".join(tds) + "</tr>")
    return (
        f'<table class="claims"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody>'
        "</table>"
    )


def _numbers(row: dict) -> str:
    """The claim's numbers as a table: what, mean, std over the seeds, seeds."""
    cells = [[m["label"], m["mean"], m["spread"], m["seeds"]] for m in row["measured"]]
    d = row.get("difference")
    if d is not None:
        cells.append([f"difference {d['label']}", d["value"], d["bound"], "95% bound"])
    columns = ["measured", "mean", "std over seeds (bound: 95%)", "seeds"]
    return html_table({"columns": columns, "rows": cells}, "numbers")


def render_claims_html(results: dict, pngs: dict[str, dict[str, bytes]]) -> str:
    """The claims page of ``results`` with each study's figures ``pngs[study][stem]``.

    Returns
    -------
    page : str
        A complete HTML document with no external resources.

    Raises
    ------
    ValueError
        If the results hold no ``claims`` (another command's results).
    """
    rows = _rows(results)
    esc = html.escape
    config = results.get("config", {})
    quick = " Quick variants, on the digits." if config.get("quick") else ""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>normlab: claims</title><style>{_CSS}{_VERDICT_CSS}</style></head><body>",
        "<h1>normlab &middot; claims</h1>",
        f'<p class="description">{esc(results.get("description", ""))}; '
        f"{_seeds(results.get('seeds', 1))} from {results.get('seed')}.{quick}</p>",
        f'<p class="headline">{esc(results["headline"])}</p>',
        "<h2>Verdicts</h2>",
        _verdict_table(rows, results["table"]),
        '<p class="description">Holds / does not hold: the difference is beyond its 95% '
        "interval (Student's t over the seeds, paired where runs share seeds, plus the "
        "binomial error of accuracies) in the claimed direction / the other way; "
        "inconclusive: within it, or one seed (no noise estimate).</p>",
    ]
    drawn: dict[str, str] = {}  # study -> the claim under which its figures are
    studies = results.get("studies", {})
    for i, row in enumerate(rows, 1):
        study = studies.get(row["study"], {})
        parts += [
            f'<div class="claim" id="{esc(row["name"])}">',
            f"<h2>{i}. {esc(row['claim'])}</h2>",
            f"<p><b>Source:</b> {esc(row['source'])}. <b>Experiment:</b> "
            f"{esc(row['setting'])}, {_seeds(row['seeds'])}.</p>",
            f'<p class="reason"><b class="{_css_class(row["verdict"])}">{esc(row["verdict"])}'
            f"</b>: {esc(row['reason'])}.</p>",
        ]
        if row.get("note"):
            parts.append(f'<p class="description"><b>How:</b> {esc(row["note"])}.</p>')
        parts.append(_numbers(row))
        if study.get("headline"):
            parts.append(f"<p><b>The experiment's headline:</b> {esc(study['headline'])}</p>")
        if row["study"] in drawn:
            first = drawn[row["study"]]
            parts.append(f'<p>Figures: under <a href="#{esc(first)}">{esc(first)}</a>.</p>')
        else:
            drawn[row["study"]] = row["name"]
            parts += [_img(stem, png) for stem, png in pngs.get(row["study"], {}).items()]
        parts.append("</div>")
    parts += [
        "<h2>Environment</h2>",
        html_table({"columns": ["", "value"], "rows": _environment_rows(results)}, "env"),
    ]
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f'<p class="description">Generated {esc(stamp)} from results.json.</p>')
    parts.append("</body></html>")
    return "\n".join(parts)


def write_claims_report(results: dict, out_dir: str | Path) -> Path:
    """Draw every study's figures and write ``out_dir/report.html`` (atomically).

    Returns
    -------
    path : Path
        Of ``report.html``.
    """
    _rows(results)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pngs = {key: study_figures(study) for key, study in results.get("studies", {}).items()}
    path = out / "report.html"
    atomic_write_text(path, render_claims_html(results, pngs))
    return path
