"""Figures of each experiment, drawn from its results dict alone (headless, Agg).

Figures are built with :class:`matplotlib.figure.Figure` and rendered by the Agg canvas, never
through ``pyplot``: no global backend is selected, no window can open, and a caller's own
matplotlib state is left alone. :func:`make_figures` returns ``{name: Figure}``;
:func:`render_png` turns one into PNG bytes.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from normlab.experiments.training import batch_size_run_name

__all__ = ["FIGURES", "make_figures", "render_png"]

# One colour per normalization, the same in every figure.
COLORS = {"none": "#7f7f7f", "batchnorm": "#1f77b4", "layernorm": "#2ca02c", "groupnorm": "#d62728"}
LABELS = {
    "none": "no normalization",
    "batchnorm": "batch norm",
    "layernorm": "layer norm",
    "groupnorm": "group norm",
}


def _legend(ax) -> None:
    """A legend when the axes have labelled artists (a run may have failed before any)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def _color(norm: str) -> str | None:
    return COLORS.get(norm)


def _label(norm: str) -> str:
    return LABELS.get(norm, norm)


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


def _figure(ncols: int, nrows: int = 1, width: float = 4.6, height: float = 3.4) -> Figure:
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _epoch_axis(ax) -> None:
    """Integer ticks on an epoch axis."""
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _norms(results: dict) -> list[str]:
    return list(results["config"].get("normalizations", []))


# --- one function per experiment ----------------------------------------------------------------


def curves_figures(results: dict) -> dict[str, Figure]:
    """bn-vs-baseline and demo: training loss, train and validation accuracy per run."""
    fig = _figure(3)
    ax_loss, ax_train, ax_val = fig.subplots(1, 3)
    thr = results.get("threshold")
    for name, out in results["runs"].items():
        c = _color(name)
        loss = _arr(out["loss"])
        it = np.arange(1, len(loss) + 1)
        ipe = max(out.get("iterations_per_epoch", 1), 1)
        ax_loss.plot(it / ipe, loss, color=c, alpha=0.25, lw=0.6)
        ax_loss.plot(it / ipe, _smooth(loss, ipe), color=c, label=_label(name))
        ax_train.plot(_arr(out["train_acc"]), "o-", ms=3, color=c, label=_label(name))
        ax_val.plot(_arr(out["val_acc"]), "o-", ms=3, color=c, label=_label(name))
    ax_loss.set(title="Training loss", xlabel="epoch", ylabel="loss (moving average over an epoch)")
    ax_train.set(title="Training accuracy", xlabel="epoch", ylabel="accuracy")
    ax_val.set(title="Validation accuracy", xlabel="epoch", ylabel="accuracy")
    if thr is not None:
        ax_val.axhline(thr, color="k", ls=":", lw=0.8, label=f"target {thr:.2f}")
    for ax in (ax_loss, ax_train, ax_val):
        ax.grid(alpha=0.3)
        _epoch_axis(ax)
    _legend(ax_val)
    return {"curves": fig}


def weight_scale_figures(results: dict) -> dict[str, Figure]:
    """weight-scale: the notebook's three panels against the weight scale (log x-axis)."""
    scales = np.array(results["weight_scales"])
    fig = _figure(3)
    axes = fig.subplots(1, 3)
    panels = [
        ("best_val_acc", "Best validation accuracy", "accuracy"),
        ("best_train_acc", "Best training accuracy", "accuracy"),
        ("final_train_loss", "Final training loss", "loss"),
    ]
    for ax, (key, title, ylabel) in zip(axes, panels, strict=True):
        for norm, curves in results["curves"].items():
            y = _arr(curves[key])
            ax.semilogx(scales, y, "o-", ms=3, color=_color(norm), label=_label(norm))
            diverged = np.array(curves.get("diverged", [False] * len(scales)), dtype=bool)
            if key == "final_train_loss" and diverged.any():
                top = np.nanmax(y) if np.isfinite(y).any() else 1.0
                ax.plot(
                    scales[diverged],
                    np.full(diverged.sum(), top),
                    "x",
                    color=_color(norm),
                    label=f"{_label(norm)}: diverged",
                )
        ax.set(title=title, xlabel="weight initialization scale", ylabel=ylabel)
        if key == "final_train_loss":
            ax.set_yscale("log")  # a diverging baseline's loss spans decades
        ax.grid(alpha=0.3, which="both")
    _legend(axes[0])
    return {"weight_scale": fig}


def batch_size_figures(results: dict) -> dict[str, Figure]:
    """batch-size: train and validation accuracy curves, one panel per batch size."""
    bss, norms = results["batch_sizes"], _norms(results)
    figs = {}
    for key, title in (("train_acc", "Training accuracy"), ("val_acc", "Validation accuracy")):
        fig = _figure(len(bss), height=3.2, width=4.0)
        axes = np.atleast_1d(fig.subplots(1, len(bss), sharey=True))
        for ax, bs in zip(axes, bss, strict=True):
            for norm in norms:
                out = results["runs"][batch_size_run_name(norm, bs)]
                ax.plot(_arr(out[key]), "o-", ms=3, color=_color(norm), label=_label(norm))
            ax.set(title=f"{title}, batch size {bs}")
            _epoch_axis(ax)
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("accuracy")
        _legend(axes[0])
        figs[f"{key}_by_batch_size"] = fig
    fig = _figure(1)
    ax = fig.subplots()
    for norm in norms:
        ax.plot(
            bss, _arr(results["best_val_acc"][norm]), "o-", color=_color(norm), label=_label(norm)
        )
    ax.set_xscale("log")
    ax.set_xticks(bss, [str(b) for b in bss])
    ax.set(title="Best validation accuracy", xlabel="batch size", ylabel="accuracy")
    ax.grid(alpha=0.3)
    _legend(ax)
    figs["best_val_acc_vs_batch_size"] = fig
    return figs


def paper_mnist_figures(results: dict) -> dict[str, Figure]:
    """paper-mnist: Figure 1 of Ioffe & Szegedy (a) test accuracy, (b, c) sigmoid input."""
    runs = results["runs"]
    fig = _figure(1 + len(runs))
    axes = fig.subplots(1, 1 + len(runs), sharey=False)
    ax = axes[0]
    for name, out in runs.items():
        ax.plot(out["steps"], _arr(out["test_acc"]), color=_color(name), label=_label(name))
    ax.set(title="(a) Test accuracy", xlabel="training steps", ylabel="accuracy")
    ax.grid(alpha=0.3)
    _legend(ax)
    for i, (name, out) in enumerate(runs.items()):
        ax, letter = axes[1 + i], "bcdefghijklmnopqrstuvwxyz"[i % 25]
        steps = out["steps"]
        for p, style in (("15", ":"), ("50", "-"), ("85", ":")):
            ax.plot(
                steps,
                _arr(out["percentiles"][p]),
                style,
                color=_color(name) or "k",
                label=f"{p}th percentile",
            )
        ax.set(
            title=f"({letter}) Sigmoid input, {_label(name)}",
            xlabel="training steps",
        )  # each panel on its own scale: the drift, not the width, is the point
        ax.grid(alpha=0.3)
        _legend(ax)
    axes[1].set_ylabel("input of one last-layer sigmoid")
    return {"figure1": fig}


def mlp_adam_figures(results: dict) -> dict[str, Figure]:
    """mlp-adam: loss and accuracy per epoch, training solid and validation dashed."""
    fig = _figure(2)
    ax_loss, ax_acc = fig.subplots(1, 2)
    for name, out in results["runs"].items():
        c, lab = _color(name), _label(name)
        tl = _arr(out["train_loss"])
        ax_loss.plot(np.arange(1, len(tl) + 1), tl, "o-", ms=3, color=c, label=f"{lab}, train")
        vl = _arr(out["val_loss"])
        ax_loss.plot(
            np.arange(1, len(vl) + 1), vl, "s--", ms=3, color=c, label=f"{lab}, validation"
        )
        ax_acc.plot(_arr(out["train_acc"]), "o-", ms=3, color=c, label=f"{lab}, train")
        ax_acc.plot(_arr(out["val_acc"]), "s--", ms=3, color=c, label=f"{lab}, validation")
    ax_loss.set(title="Loss", xlabel="epoch", ylabel="cross-entropy")
    ax_acc.set(title="Accuracy", xlabel="epoch", ylabel="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        _epoch_axis(ax)
        _legend(ax)
    return {"loss_accuracy": fig}


def _best_epoch_test_key(results: dict) -> str:
    """``best_epoch_test_acc``, or its old name in results.json files written before."""
    return "best_epoch_test_acc" if "best_epoch_test_acc" in results else "final_test_acc"


def small_batch_figures(results: dict) -> dict[str, Figure]:
    """small-batch: best-validation-epoch test accuracy and final validation accuracy."""
    bss, norms = results["batch_sizes"], _norms(results)
    fig = _figure(2)
    axes = fig.subplots(1, 2, sharey=True)
    for ax, key, title in zip(
        axes,
        (_best_epoch_test_key(results), "final_val_acc"),
        ("Test accuracy (best validation epoch)", "Final validation accuracy"),
        strict=True,
    ):
        for norm in norms:
            ax.plot(bss, _arr(results[key][norm]), "o-", color=_color(norm), label=_label(norm))
        ax.set_xscale("log", base=2)
        ax.set_xticks(bss, [str(b) for b in bss])
        ax.set(title=title, xlabel="images per batch")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy")
    _legend(axes[0])
    return {"accuracy_vs_batch_size": fig}


FIGURES: dict[str, Callable[[dict], dict[str, Figure]]] = {
    "demo": curves_figures,
    "bn-vs-baseline": curves_figures,
    "weight-scale": weight_scale_figures,
    "batch-size": batch_size_figures,
    "paper-mnist": paper_mnist_figures,
    "mlp-adam": mlp_adam_figures,
    "small-batch": small_batch_figures,
}


def make_figures(results: dict) -> dict[str, Figure]:
    """The figures of an experiment's results, by file stem (e.g. ``"curves"``).

    Parameters
    ----------
    results : dict
        As returned by the experiment's ``run`` (or read back from ``results.json``).

    Returns
    -------
    figures : dict of str to matplotlib.figure.Figure

    Raises
    ------
    ValueError
        If the experiment has no figures here (the message lists those that do).
    """
    name = results.get("experiment")
    if name not in FIGURES:
        raise ValueError(f"no figures for experiment {name!r}; known are {sorted(FIGURES)}")
    for fig in (figs := FIGURES[name](results)).values():
        fig.suptitle(f"{name} on {results['config'].get('dataset')}", fontsize=11)
    return figs


def render_png(fig: Figure, dpi: int = 110) -> bytes:
    """The PNG bytes of ``fig``."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
