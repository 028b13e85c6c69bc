"""Figure declarations: what an experiment's figures show, as data a report can draw alone.

An experiment's ``figures(config)`` returns a list of :func:`figure` declarations; the runner
stores them in ``results["figures"]`` and :mod:`normlab.report.figures` draws them (its
docstring describes the layout), so redrawing a report needs ``results.json`` and nothing
else. Labels and colours come from :mod:`normlab.vocab`.

Examples
--------
>>> panel = curves("Validation accuracy", [norm_line("batchnorm", "val_acc", run="batchnorm")])
>>> figure("curves", [panel])["panels"][0]["lines"][0]["label"]
'batch norm'
"""

from __future__ import annotations

from normlab import vocab

__all__ = ["curves", "figure", "line", "loss", "norm_line", "sweep"]


def figure(
    name: str, panels: list[dict], width: float = 4.6, height: float = 3.4, sharey: bool = False
) -> dict:
    """A figure of ``panels`` side by side, saved as ``<name>.png``; sizes in inches per panel."""
    return {"name": name, "panels": panels, "width": width, "height": height, "sharey": sharey}


def line(
    y: str | list,
    label: str,
    color: str | None,
    run: str | None = None,
    fmt: str = "o-",
    ms: float | None = 3,
    first: int = 0,
    diverged: list | None = None,
) -> dict:
    """One line: ``y`` (a key or path of keys) in run ``run``'s output, or in the results.

    ``fmt`` is matplotlib's format string and ``ms`` the marker size (None: the default);
    ``first`` is the epoch of the first value on an epoch axis; ``diverged`` is the path of a
    sweep's flags, whose values are marked with an x.
    """
    return {
        "run": run,
        "y": y,
        "label": label,
        "color": color,
        "fmt": fmt,
        "ms": ms,
        "first": first,
        "diverged": diverged,
    }


def norm_line(norm: str, y: str | list, suffix: str = "", **options) -> dict:
    """A :func:`line` labelled and coloured as normalization ``norm`` (label + ``suffix``)."""
    return line(y, vocab.label(norm) + suffix, vocab.color(norm), **options)


def _panel(kind: str, title: str, xlabel: str, ylabel: str | None, legend: bool, **more) -> dict:
    """The keys every panel has, then its kind's."""
    return {
        "kind": kind,
        "title": title,
        "xlabel": xlabel,
        "ylabel": ylabel,
        "legend": legend,
        **more,
    }


def curves(
    title: str,
    lines: list[dict],
    ylabel: str | None = None,
    x: str = "epoch",
    xlabel: str = "epoch",
    target: str | None = None,
    legend: bool = False,
) -> dict:
    """Runs' curves over the epochs (integer ticks), or over a key of each run (``"steps"``).

    ``target`` names a results key drawn as a dotted horizontal line (e.g. ``"threshold"``).
    """
    return _panel("curves", title, xlabel, ylabel, legend, x=x, lines=lines, target=target)


def loss(title: str, ylabel: str, runs: list[str], legend: bool = False) -> dict:
    """Each run's per-iteration training loss on an epoch axis, with its moving average over an
    epoch; the runs are named by their normalization."""
    lines = [norm_line(n, "loss", run=n) for n in runs]
    return _panel("loss", title, "epoch", ylabel, legend, lines=lines)


def sweep(
    title: str,
    xlabel: str,
    ylabel: str | None,
    x: list,
    lines: list[dict],
    log_base: int = 10,
    ticks: bool = False,
    ylog: bool = False,
    minor_grid: bool = False,
    legend: bool = False,
) -> dict:
    """Values against a swept setting (the results path ``x``) on a log axis.

    ``ticks``: a labelled tick at each swept value; ``ylog``: a log y-axis; ``minor_grid``: grid
    lines at the minor ticks too.
    """
    more = dict(x=x, lines=lines, log_base=log_base, ticks=ticks, ylog=ylog, minor_grid=minor_grid)
    return _panel("sweep", title, xlabel, ylabel, legend, **more)
