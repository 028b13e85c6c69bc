"""Result tables (``{"columns": [...], "rows": [[...], ...]}``) as text and as HTML."""

from __future__ import annotations

import html
import math

__all__ = ["format_cell", "html_table", "text_table"]


def format_cell(value, column: str = "") -> str:
    """One cell as text: accuracies and losses to 3 decimals, scales in scientific notation.

    ``None`` reads "not reached" in an "epochs to" or "steps to" column and "n/a" elsewhere; a
    mean over seeds in such a column (a float) has one decimal.
    """
    if value is None:
        return "not reached" if column.startswith(("epochs to", "steps to")) else "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        if "scale" in column:
            return f"{value:.2e}"
        if "time" in column:
            return f"{value:.2f}"
        if column.startswith(("epochs to", "steps to")):
            return f"{value:.1f}"
        return f"{value:.3f}"
    return str(value)


def _cells(table: dict) -> list[list[str]]:
    """The rows' cells as text; with several seeds ``mean ± std``, and ``(k of N)`` where only
    k of the N seeds gave a number (:mod:`normlab.experiments.seeds`)."""
    columns = [str(c) for c in table["columns"]]
    seeds = table.get("seeds", 1)
    spread = table.get("spread") or [[None] * len(columns) for _ in table["rows"]]
    count = table.get("count") or [[None] * len(columns) for _ in table["rows"]]
    out = []
    for row, stds, ns in zip(table["rows"], spread, count, strict=True):
        cells = []
        for v, std, n, c in zip(row, stds, ns, columns, strict=True):
            text = format_cell(v, c)
            if std is not None and v is not None:
                text += f" ± {format_cell(std, c)}"
            if n is not None and n < seeds:
                text += f" ({n} of {seeds})"
            cells.append(text)
        out.append(cells)
    return out


def text_table(table: dict) -> str:
    """A fixed-width text rendering of ``table``, for the terminal."""
    columns = [str(c) for c in table["columns"]]
    cells = _cells(table)
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]

    def line(values: list[str]) -> str:
        first = values[0].ljust(widths[0])
        rest = [v.rjust(w) for v, w in zip(values[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(columns), rule, *(line(r) for r in cells)])


def html_table(table: dict, css_class: str = "results") -> str:
    """An HTML ``<table>`` of ``table`` (escaped; numbers right-aligned)."""
    columns = [str(c) for c in table["columns"]]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row, cells in zip(table["rows"], _cells(table), strict=True):
        tds = []
        for v, text in zip(row, cells, strict=True):
            cls = ' class="num"' if isinstance(v, int | float) and not isinstance(v, bool) else ""
            tds.append(f"<td{cls}>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(tds) + "</tr>")
    return (
        f'<table class="{css_class}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )
