"""Figures drawn from a results dict alone, as its experiment declared them (headless, Agg).

An experiment declares its figures as data (``results["figures"]``, built with
:mod:`normlab.experiments.figspec`); this module draws any declaration with three generic panel
kinds, so ``normlab report DIR`` redraws every figure from ``results.json`` alone.

Declarations
------------
A figure is ``{"name", "panels", "width", "height", "sharey"}``: saved as ``<name>.png``, its
panels side by side, ``width`` by ``height`` inches each. A panel has ``"kind"``, ``"title"``,
``"xlabel"``, ``"ylabel"`` (None: none), ``"legend"`` (bool) and ``"lines"``; a line has
``"label"``, ``"color"`` (None: the next default colour), ``"fmt"`` (matplotlib's format
string), ``"ms"`` (marker size, None: the default) and the data it plots:

``"curves"``  runs' curves: line ``"y"`` (a key, or a path of keys) in the output of run
              ``"run"``, against the epochs (panel ``"x": "epoch"``: integer ticks, the first
              value at epoch ``line["first"]``) or against a key of the run (``"x": "steps"``);
              panel ``"target"``: a results key drawn as a dotted horizontal line.
``"loss"``    run ``"run"``'s per-iteration training loss on an epoch axis, faint, and its
              moving average over an epoch.
``"sweep"``   values against a swept setting on a log x-axis: panel ``"x"`` and line ``"y"``
              are paths into the results; ``"log_base"``, ``"ticks"`` (a labelled tick at each
              value), ``"ylog"``, ``"minor_grid"``; a line's ``"diverged"`` path flags values
              marked with an x at the top of the line.

With several seeds (``results["seeds"] > 1``) a run's curve is the mean over its seeds' runs
(``name/seed=k``) with a band of ± one standard deviation, and a sweep's line the summary's
mean with the band of ``results["spread"]`` at the same path
(:mod:`normlab.experiments.seeds`).

Figures are built with :class:`matplotlib.figure.Figure` and rendered by the Agg canvas, never
through ``pyplot``: no global backend is selected, no window can open, and a caller's own
matplotlib state is left alone. :func:`make_figures` returns ``{name: Figure}``;
:func:`render_png` turns one into PNG bytes.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, NullFormatter

from normlab.vocab import seed_outputs

__all__ = ["PANELS", "make_figures", "render_png"]


def _get(tree, path):
    """``tree[k1][k2]...`` for a path ``[k1, k2, ...]`` (a single key for ``"k"``).

    Raises
    ------
    ValueError
        If ``results.json`` lacks what a figure declares (a damaged or hand-edited file).
    """
    for key in [path] if isinstance(path, str) else path:
        try:
            tree = tree[key]
        except (KeyError, IndexError, TypeError):
            raise ValueError(
                f"results.json has no {path!r} that a figure declares: the file is incomplete or "
                "damaged; rerun the experiment"
            ) from None
    return tree


def _arr(values) -> np.ndarray:
    """A float array with None as NaN (gaps in the plotted line)."""
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _smooth(y: np.ndarray, n: int) -> np.ndarray:
    """Moving average over ``n`` points (shorter at the start), NaN-aware enough for plots."""
    if n <= 1 or len(y) < n:
        return y
    c = np.cumsum(np.insert(np.nan_to_num(y), 0, 0.0))
    out = (c[n:] - c[:-n]) / n
    head = c[1:n] / np.arange(1, n)
    return np.concatenate([head, out])


def _plot(ax, x, y, line: dict) -> None:
    """One declared line: its format, colour, label and marker size."""
    style = {"color": line["color"], "label": line["label"]}
    if line.get("ms") is not None:
        style["ms"] = line["ms"]
    ax.plot(x, y, line["fmt"], **style)


def _mean_std(curves: list) -> tuple[np.ndarray, np.ndarray | None]:
    """The mean over seeds of curves (padded with NaN to the longest: a diverged run's curve
    stops early) and their std (ddof=1) where two or more seeds have a value, else None."""
    arrays = [_arr(c) for c in curves]
    if len(arrays) == 1:
        return arrays[0], None
    stack = np.full((len(arrays), max(len(a) for a in arrays)), np.nan)  # (seeds, T)
    for i, a in enumerate(arrays):
        stack[i, : len(a)] = a
    n = np.sum(np.isfinite(stack), axis=0)  # (T,)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nansum(stack, axis=0) / n
        dev = np.where(np.isfinite(stack), stack - mean, 0.0)
        std = np.sqrt(np.sum(dev**2, axis=0) / (n - 1))
    return np.where(n > 0, mean, np.nan), np.where(n > 1, std, np.nan)


def _band(ax, x, mean: np.ndarray, std: np.ndarray | None, color) -> None:
    """The spread over seeds, mean ± std, as a shaded band (nothing with one seed)."""
    if std is not None and np.isfinite(std).any():
        ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2, lw=0)


def _curves(ax, panel: dict, results: dict) -> None:
    """Runs' curves over the epochs (integer ticks) or over a key of each run; with several
    seeds, the mean curve and a band of ± one standard deviation."""
    for line in panel["lines"]:
        runs = seed_outputs(results, line["run"])
        y, std = _mean_std([_get(run, line["y"]) for run in runs])
        epochs = np.arange(line["first"], line["first"] + len(y))
        x = epochs if panel["x"] == "epoch" else np.array(_get(runs[0], panel["x"]))[: len(y)]
        _plot(ax, x, y, line)
        _band(ax, x, y, std, line["color"])
    target = results.get(panel["target"]) if panel.get("target") else None
    if target is not None:
        ax.axhline(target, color="k", ls=":", lw=0.8, label=f"target {target:.2f}")
    if panel["x"] == "epoch":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _loss(ax, panel: dict, results: dict) -> None:
    """Per-iteration training loss (faint) and its moving average over an epoch; with several
    seeds, both of the mean loss over the seeds."""
    for line in panel["lines"]:
        runs = seed_outputs(results, line["run"])
        loss, _ = _mean_std([_get(run, "loss") for run in runs])
        ipe = max(runs[0].get("iterations_per_epoch", 1), 1)
        epochs = np.arange(1, len(loss) + 1) / ipe
        ax.plot(epochs, loss, color=line["color"], alpha=0.25, lw=0.6)
        ax.plot(epochs, _smooth(loss, ipe), color=line["color"], label=line["label"])
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _sweep(ax, panel: dict, results: dict) -> None:
    """Values against a swept setting on a log x-axis; diverged values marked with an x; with
    several seeds, the mean and a band of ± one standard deviation (``results["spread"]``)."""
    x = np.array(_get(results, panel["x"]))
    for line in panel["lines"]:
        y = _arr(_get(results, line["y"]))
        _plot(ax, x, y, line)
        if "spread" in results:
            _band(ax, x, y, _arr(_get(results["spread"], line["y"])), line["color"])
        diverged = np.array(_get(results, line["diverged"]) if line["diverged"] else [], bool)
        if diverged.any():
            top = np.nanmax(y) if np.isfinite(y).any() else 1.0
            label = f"{line['label']}: diverged"
            ax.plot(
                x[diverged], np.full(diverged.sum(), top), "x", color=line["color"], label=label
            )
    ax.set_xscale("log", base=panel["log_base"])
    if panel["ticks"]:  # the swept values alone: a log axis's minor labels would overlap them
        ax.set_xticks(x, [str(v) for v in x])
        ax.xaxis.set_minor_formatter(NullFormatter())
    if panel["ylog"]:
        ax.set_yscale("log")


PANELS = {"curves": _curves, "loss": _loss, "sweep": _sweep}


def _draw(spec: dict, results: dict) -> Figure:
    """One declared figure: its panels side by side, titled, labelled, gridded."""
    panels = spec["panels"]
    fig = Figure(figsize=(spec["width"] * len(panels), spec["height"]), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), sharey=spec["sharey"], squeeze=False)[0]
    for ax, panel in zip(axes, panels, strict=True):
        PANELS[panel["kind"]](ax, panel, results)
        ax.set(title=panel["title"], xlabel=panel["xlabel"])
        if panel["ylabel"] is not None:
            ax.set_ylabel(panel["ylabel"])
        ax.grid(alpha=0.3, which="both" if panel.get("minor_grid") else "major")
        if panel["legend"] and ax.get_legend_handles_labels()[0]:  # a run may have failed early
            ax.legend(fontsize=8)
    return fig


def make_figures(results: dict) -> dict[str, Figure]:
    """The figures its experiment declared in ``results``, by file stem (e.g. ``"curves"``).

    Parameters
    ----------
    results : dict
        As returned by :func:`~normlab.experiments.run_experiment` (or read back from
        ``results.json``); ``results["figures"]`` holds the declarations.

    Returns
    -------
    figures : dict of str to matplotlib.figure.Figure

    Raises
    ------
    ValueError
        If the results declare no figures (they stopped before the summary).
    """
    name = results.get("experiment")
    if "figures" not in results:
        raise ValueError(
            f"no figures for experiment {name!r}: its results are incomplete (no 'figures'; "
            "the run stopped before its summary?); rerun the experiment"
        )
    figs = {}
    for spec in results["figures"]:
        figs[spec["name"]] = fig = _draw(spec, results)
        fig.suptitle(f"{name} on {results['config'].get('dataset')}", fontsize=11)
    return figs


def render_png(fig: Figure, dpi: int = 110) -> bytes:
    """The PNG bytes of ``fig``."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
