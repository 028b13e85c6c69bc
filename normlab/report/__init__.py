"""Reports: figures, headlines and the HTML page of an experiment's results; never trains.

Everything here reads a results dict (as :func:`~normlab.experiments.run_experiment` returns
it, or as :func:`load_results` reads it back from ``results.json``), which carries all a report
needs: the headline the experiment worded, its figures' declarations, each setting's comment.
So ``normlab report DIR`` rebuilds the figures and ``report.html`` of a finished run without
running or importing anything of the training: ``import normlab.report`` loads no experiment,
Solver, optimizer, model, kernel or numba.

Files of an output directory
----------------------------
``results.json``  every curve and number, with its ``format_version`` (:mod:`.results`);
``config.json``   the experiment's name and configuration;
``<figure>.png``  one file per declared figure (:mod:`.figures`);
``diagnostics_*.png``  the runs' training diagnostics, where they recorded them
                  (:mod:`.diagnostics`);
``report.html``   self-contained page: headline, tables, embedded figures, environment.
"""

from __future__ import annotations

from pathlib import Path

from normlab.report.diagnostics import diagnostics_figures
from normlab.report.figures import make_figures, render_png
from normlab.report.html import render_html, write_report
from normlab.report.results import FORMAT_VERSION, headline, load_results, save_results
from normlab.report.tables import html_table, text_table

__all__ = [
    "FORMAT_VERSION",
    "diagnostics_figures",
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


def write_outputs(results: dict, out_dir: str | Path) -> Path:
    """``results.json``, ``config.json``, the figures and ``report.html`` into ``out_dir``.

    Returns
    -------
    path : Path
        Of ``report.html``.
    """
    save_results(results, out_dir)
    return write_report(results, out_dir)
