"""Figures from training-diagnostics records (``Recorder.to_dict()``), runs side by side.

Each function takes one record, or several labelled ones (``{"none": rec, "batchnorm": rec}``),
and returns a :class:`matplotlib.figure.Figure` (Agg canvas, no ``pyplot``, as
:mod:`normlab.report.figures` draws); :func:`~normlab.report.figures.render_png` turns it into
PNG bytes. A label that names a normalization (or a run of one, ``'batchnorm/seed=0'``) is
drawn in its colour and called by its label (:mod:`normlab.vocab`).

============================  =============================================================
:func:`activation_histograms`  per run (columns), at the first and the last recorded
                               iteration (rows): every hidden layer's pre-activation (or
                               pre-normalization) histogram, bins of 0.2, mean, std and
                               saturation in the legend
:func:`gradient_histograms`    per run (columns), at the first and the last recorded
                               iteration (rows): every layer's weight-gradient histogram in
                               gradient units, mean, std and grad:data in the legend
:func:`update_ratios`          per run: log10 update:data ratio of each weight matrix over
                               the iterations, with Karpathy's rule of thumb at -3
:func:`saturation`             per run: saturated fraction of each hidden layer's units
:func:`signal_propagation`     Brock et al. 2021: per layer, mean squared channel mean and
                               mean channel variance at initialization, log y
============================  =============================================================

The record is read as its ``format_version`` 1 lays it out (see
``normlab.diagnostics.Recorder.to_dict``): nothing of the diagnostics package is imported,
so a report is redrawn from ``results.json`` alone. A record from before the gradient
histograms (no ``grad_hist``) draws every figure but that one.
"""

from __future__ import annotations

import re

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from normlab.vocab import color, label

__all__ = [
    "FIGURES",
    "UPDATE_RULE_OF_THUMB",
    "activation_histograms",
    "diagnostics_figures",
    "gradient_histograms",
    "run_diagnostics",
    "saturation",
    "signal_propagation",
    "update_ratios",
]

RECORD_VERSION = 1  # the Recorder's to_dict() layout these figures read
UPDATE_RULE_OF_THUMB = -3.0  # log10 update:data; Karpathy, makemore part 3 (2022)
_STAGES = ("pre_norm", "pre_act")
_STAGE_WORDS = {"pre_norm": "pre-normalization", "pre_act": "pre-activation"}


# -- validation ------------------------------------------------------------------------------


def _records(records: dict) -> dict[str, dict]:
    """``{label: record}`` from one record (labelled ``'run'``) or a labelled mapping."""
    if not isinstance(records, dict) or not records:
        raise ValueError(
            f"expected a diagnostics record (Recorder.to_dict()) or a dict of them by label, got "
            f"{type(records).__name__} {records!r:.60}"
        )
    if "layers" in records or "format_version" in records:
        return {"run": records}
    return {str(k): v for k, v in records.items()}


def _require(records: dict[str, dict], *paths: str) -> None:
    """Raise ValueError naming the first missing key of each dotted path, as far as it goes
    (``'signal_propagation'`` when there is none, ``'signal_propagation.pre_act'`` ...)."""
    for name, rec in records.items():
        if not isinstance(rec, dict):
            raise ValueError(
                f"diagnostics record {name!r} is a {type(rec).__name__}, not a dict; pass "
                "Recorder.to_dict() (or the 'diagnostics' of a run's output)"
            )
        version = rec.get("format_version")
        if version != RECORD_VERSION:
            raise ValueError(
                f"diagnostics record {name!r} has format_version {version!r}; these figures "
                f"read version {RECORD_VERSION} (Recorder.to_dict())"
            )
        for path in paths:
            node, keys = rec, path.split(".")
            for depth, key in enumerate(keys, 1):
                if not isinstance(node, dict) or node.get(key) is None:
                    missing = ".".join(keys[:depth])
                    raise ValueError(
                        f"diagnostics record {name!r} has no {missing!r}; record with "
                        "normlab.diagnostics.Recorder and pass its to_dict()"
                    )
                node = node[key]


def _iterations(rec: dict, name: str) -> np.ndarray:
    """The recorded iterations, at least one (a figure of nothing says so)."""
    its = np.asarray(rec["iterations"], dtype=float)  # (T,)
    if its.size == 0:
        raise ValueError(
            f"diagnostics record {name!r} has no recorded 'iterations'; train at least one "
            "step with the Recorder as a Solver callback"
        )
    return its


def _arr(values) -> np.ndarray:
    """A float array with None as NaN (a gap in a line)."""
    return np.array([np.nan if v is None else v for v in values], dtype=float)


# -- drawing helpers -------------------------------------------------------------------------


def _style(name: str) -> tuple[str, str | None]:
    """The label and colour of a run called ``name`` (a normalization, maybe ``/seed=k``)."""
    norm = name.split("/")[0]
    return (label(norm) + name[len(norm) :], color(norm))


def _figure(rows: int, cols: int, width: float, height: float, **kw):
    """A constrained-layout Figure on an Agg canvas and its (rows, cols) axes."""
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, squeeze=False, **kw)


def _grid(rows: int, cols: int, width: float, height: float, **kw):
    """:func:`_figure` with fixed margins instead of the constrained layout, for grids of many
    panels: the layout engine measured most of a 6 x 3 histogram grid's drawing time
    (1.8 s against 1.2 s)."""
    fig = Figure(figsize=(width * cols, height * rows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False, **kw)
    w, h = width * cols, height * rows  # inches
    fig.subplots_adjust(
        left=0.85 / w, right=1 - 0.15 / w, bottom=0.45 / h, top=1 - 0.5 / h,
        wspace=0.28, hspace=0.4,
    )  # fmt: skip
    return fig, axes


def _layer_names(rec: dict) -> list[str]:
    """The record's layer numbers in order (``'1'``, ``'2'``, ...)."""
    return sorted(rec["layers"], key=int)


# -- the figures -----------------------------------------------------------------------------


def activation_histograms(records: dict, stage: str = "pre_act") -> Figure:
    """Every hidden layer's histogram, per run, at the first and last recorded iteration.

    Parameters
    ----------
    records : dict
        One record (``Recorder.to_dict()``) or ``{label: record}``.
    stage : {'pre_act', 'pre_norm'}, default 'pre_act'
        The input of the nonlinearity, or the linear output before normalization.

    Returns
    -------
    fig : matplotlib.figure.Figure
        Columns: the runs; rows: the first and the last recorded iteration. Each panel
        overlays the layers with an activation (every layer when none has one) as the
        fraction of their units in each bin of ``hist_edges`` (60 bins of 0.2 over [-6, 6]),
        with the mean, std and saturated share (and the share outside [-6, 6]) in the legend,
        as Karpathy's makemore part 3 plots them.

    Raises
    ------
    ValueError
        For an unknown ``stage``, or a record without ``hist_edges``, ``layers`` or the
        layers' histograms (the message names what is missing).

    Notes
    -----
    One panel per run and iteration rather than per layer: a grid of every layer took most
    of a report's drawing time (28 panels for the demo's four runs of seven layers).
    """
    if stage not in _STAGES:
        raise ValueError(f"unknown stage {stage!r}; known stages are {list(_STAGES)}")
    recs = _records(records)
    _require(recs, "hist_edges", "layers", "iterations")
    for name, rec in recs.items():
        _iterations(rec, name)
        for layer in _layer_names(rec):
            for key in ("hist", "under", "over", "mean", "std"):
                _require({name: rec}, f"layers.{layer}.{stage}.{key}")
    fig, axes = _grid(2, len(recs), 3.8, 2.6, sharex=True)
    for col, (name, rec) in enumerate(recs.items()):
        edges = np.asarray(rec["hist_edges"], dtype=float)  # (B + 1,)
        its = rec["iterations"]
        layers = _layer_names(rec)
        hidden = [k for k in layers if rec["layers"][k].get("activation")] or layers
        for row, j in enumerate((0, -1)):
            ax = axes[row, col]
            for k, layer in enumerate(hidden):
                entry = rec["layers"][layer]
                d = entry[stage]
                hist = np.asarray(d["hist"][j], dtype=float)  # (B,)
                outside = d["under"][j] + d["over"][j]
                total = max(hist.sum() + outside, 1.0)
                sat = (entry.get("saturation") or [None] * len(its))[j]
                words = [f"mean {_f(d['mean'][j])}", f"std {_f(d['std'][j])}"]
                zero = entry.get("activation") == "relu"  # a ReLU's "saturation": outputs 0
                words += [] if sat is None else [f"{'zero' if zero else 'sat'} {sat:.0%}"]
                words += [f"{outside / total:.0%} out"] if outside else []
                ax.stairs(
                    hist / total,
                    edges,
                    color=f"C{k}",
                    lw=1.1,
                    label=f"layer {layer}: {', '.join(words)}",
                )
            ax.legend(fontsize=5, loc="upper right")
            ax.grid(alpha=0.3)
            ax.set_title(f"{_style(name)[0]}, iteration {its[j]}", fontsize=8)
            if col == 0:
                ax.set_ylabel("fraction per bin", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel(_STAGE_WORDS[stage], fontsize=8)
    fig.suptitle(
        f"{_STAGE_WORDS[stage]} histograms per layer, first and last recorded iteration",
        fontsize=10,
    )
    return fig


def _f(x) -> str:
    """A mean or std in a legend: 2 decimals, or 'n/a' for None."""
    return "n/a" if x is None else f"{x:.2f}"


def _weights(rec: dict, name: str) -> list[str]:
    """The record's weight parameters in layer order (``W1``, ``W2``, ... ``W10``)."""
    weights = sorted((p for p in rec["params"] if p.startswith("W")), key=_param_order)
    if not weights:
        raise ValueError(
            f"diagnostics record {name!r} has no weight parameter (W1, ...) "
            f"in 'params': it has {sorted(rec['params'])}"
        )
    return weights


def gradient_histograms(records: dict) -> Figure:
    """Every layer's weight-gradient histogram, per run, at the first and last record.

    Parameters
    ----------
    records : dict
        One record (``Recorder.to_dict()``) or ``{label: record}``.

    Returns
    -------
    fig : matplotlib.figure.Figure
        Columns: the runs; rows: the first and the last recorded iteration that holds
        gradient histograms (``Recorder(grad_hist='ends')`` takes them there). Each panel
        overlays the weights ``W1``, ``W2``... as the fraction of their gradients per bin, on
        the bins the record gives them (``hist_edges * grad_std``: 60 bins of 0.2 std, so
        a layer whose gradients are 1000 times smaller is a spike at 0 beside the others,
        as in Karpathy's plot), with mean, std and the grad:data ratio in the legend.

    Raises
    ------
    ValueError
        For a record without ``hist_edges``, ``params``, ``iterations`` or a weight's
        ``grad_hist`` (a record from before gradient histograms: the message names it).

    Notes
    -----
    A. Karpathy, "Building makemore part 3: activations & gradients, BatchNorm" (2022): the
    gradient distributions of the layers should look alike; a layer whose gradients are far
    narrower or wider than the others' learns at another speed.
    """
    recs = _records(records)
    _require(recs, "hist_edges", "params", "iterations")
    for name, rec in recs.items():
        _iterations(rec, name)
        for p in _weights(rec, name):
            _require({name: rec}, *(f"params.{p}.{k}" for k in _GRAD_KEYS))
    fig, axes = _grid(2, len(recs), 3.8, 2.6)
    for col, (name, rec) in enumerate(recs.items()):
        unit = np.asarray(rec["hist_edges"], dtype=float)  # (B + 1,) in units of the std
        its = rec["iterations"]
        for row, j in enumerate((0, _last_grad_hist(rec))):
            ax = axes[row, col]
            for k, p in enumerate(_weights(rec, name)):
                e = rec["params"][p]
                hist, std = e["grad_hist"][j], e["grad_std"][j]
                if hist is None or std is None:  # a gradient of std 0 or not finite
                    ax.plot([], [], color=f"C{k}", label=f"{p}: no spread")
                    continue
                hist = np.asarray(hist, dtype=float)  # (B,)
                total = max(hist.sum() + e["grad_under"][j] + e["grad_over"][j], 1.0)
                ax.stairs(
                    hist / total,
                    unit * std,
                    color=f"C{k}",
                    lw=1.1,
                    label=f"{p}: mean {_g(e['grad_mean'][j])}, std {_g(std)}, "
                    f"grad:data {_g(e['grad_data'][j])}",
                )
            ax.legend(fontsize=5, loc="upper right")
            ax.grid(alpha=0.3)
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 2))
            ax.set_title(f"{_style(name)[0]}, iteration {its[j]}", fontsize=8)
            if col == 0:
                ax.set_ylabel("fraction per bin", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("weight gradient", fontsize=8)
    fig.suptitle(
        "weight-gradient histograms (bins of 0.2 std of each layer's gradient)", fontsize=10
    )
    return fig


def _last_grad_hist(rec: dict) -> int:
    """The last record holding gradient histograms (a Recorder takes them at the first and the
    last recorded iteration by default; a run stopped early has them at its first only)."""
    taken = [
        j
        for j in range(len(rec["iterations"]))
        if any(rec["params"][p]["grad_hist"][j] is not None for p in _weights(rec, ""))
    ]
    return taken[-1] if taken else len(rec["iterations"]) - 1


_GRAD_KEYS = ("grad_hist", "grad_under", "grad_over", "grad_mean", "grad_std", "grad_data")


def _g(x) -> str:
    """A statistic in a legend: 3 significant digits, or 'n/a' for None."""
    return "n/a" if x is None else f"{x:.2e}"


def update_ratios(records: dict) -> Figure:
    """log10 update:data ratio of each weight matrix over the iterations, one panel per run.

    Parameters
    ----------
    records : dict
        One record or ``{label: record}``.

    Returns
    -------
    fig : matplotlib.figure.Figure
        Per run, one line per weight parameter (``W1``, ``W2``, ...: biases and the
        normalizations' gamma and beta are left out) and a dashed line at
        :data:`UPDATE_RULE_OF_THUMB` (updates a thousandth of the weights).

    Raises
    ------
    ValueError
        For a record without ``params``, ``iterations`` or a weight's ``update_data_log10``.
    """
    recs = _records(records)
    _require(recs, "params", "iterations")
    fig, axes = _figure(1, len(recs), 4.0, 3.0, sharey=True)
    for ax, (name, rec) in zip(axes[0], recs.items(), strict=True):
        its = _iterations(rec, name)
        for p in _weights(rec, name):
            _require({name: rec}, f"params.{p}.update_data_log10")
            ax.plot(its, _arr(rec["params"][p]["update_data_log10"]), lw=1.2, label=p, **_few(its))
        ax.axhline(UPDATE_RULE_OF_THUMB, color="k", ls="--", lw=0.8, label="1e-3")
        ax.set(title=_style(name)[0], xlabel="iteration")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    axes[0, 0].set_ylabel("log10 std(update) / std(weight)")
    fig.suptitle("update:data ratio", fontsize=10)
    return fig


def _param_order(name: str) -> tuple[str, int]:
    """``W2`` before ``W10``."""
    m = re.fullmatch(r"(\D*)(\d*)", name)
    return (m[1], int(m[2] or 0)) if m else (name, 0)


def saturation(records: dict) -> Figure:
    """Saturated fraction of each hidden layer's units over the iterations, one panel per run.

    Parameters
    ----------
    records : dict
        One record or ``{label: record}``.

    Returns
    -------
    fig : matplotlib.figure.Figure
        Per run, one line per layer with an activation (what "saturated" means for it, from
        the record's ``saturation``, in the y label), on [0, 1].

    Raises
    ------
    ValueError
        For a record without ``layers``, ``iterations`` or a layer's ``saturation``.
    """
    recs = _records(records)
    _require(recs, "layers", "iterations", "saturation")
    fig, axes = _figure(1, len(recs), 4.0, 3.0, sharey=True)
    meaning = set()
    for ax, (name, rec) in zip(axes[0], recs.items(), strict=True):
        its = _iterations(rec, name)
        for layer in _layer_names(rec):
            entry = rec["layers"][layer]
            if "saturation" not in entry or "activation" not in entry:
                raise ValueError(
                    f"diagnostics record {name!r} has no 'layers.{layer}.saturation'; record "
                    "with normlab.diagnostics.Recorder and pass its to_dict()"
                )
            if entry["activation"] is None:
                continue  # the scores layer: nothing saturates
            meaning.add(f"{entry['activation']}: {rec['saturation'].get(entry['activation'])}")
            ax.plot(its, _arr(entry["saturation"]), lw=1.2, label=f"layer {layer}", **_few(its))
        ax.set(title=_style(name)[0], xlabel="iteration", ylim=(-0.02, 1.02))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("saturated fraction")
    fig.suptitle("saturation (" + "; ".join(sorted(meaning)) + ")", fontsize=9)
    return fig


def signal_propagation(records: dict) -> Figure:
    """Brock et al.'s signal-propagation plot: per layer, at initialization, log y.

    Parameters
    ----------
    records : dict
        One record or ``{label: record}``.

    Returns
    -------
    fig : matplotlib.figure.Figure
        Two panels against the layer: the mean over channels of the squared channel mean, and
        the mean channel variance; per run a solid line for the pre-activation and a dotted
        one for the pre-normalization (the same when a layer has no normalization).

    Raises
    ------
    ValueError
        For a record without ``signal_propagation`` (taken at iteration 0 or by
        ``Recorder.signal_propagation``) or one of its entries.

    Notes
    -----
    A. Brock, S. De, S. L. Smith, "Characterizing signal propagation to close the performance
    gap in unnormalized ResNets", ICLR 2021.
    """
    recs = _records(records)
    paths = [f"signal_propagation.{s}.{k}" for s in _STAGES for k in ("mean_sq", "var")]
    _require(recs, "signal_propagation.layers", *paths)
    fig, axes = _figure(1, 2, 4.0, 3.0)
    for name, rec in recs.items():
        sig = rec["signal_propagation"]
        run_label, run_color = _style(name)
        for ax, key in zip(axes[0], ("mean_sq", "var"), strict=True):
            ax.plot(
                sig["layers"], _arr(sig["pre_act"][key]), "o-", color=run_color, label=run_label
            )
            if sig["pre_norm"][key] != sig["pre_act"][key]:  # equal: no normalization
                pre_norm = _arr(sig["pre_norm"][key])
                ax.plot(
                    sig["layers"],
                    pre_norm,
                    "o:",
                    color=run_color,
                    ms=3,
                    alpha=0.6,
                    label=f"{run_label} (pre-norm)",
                )
    titles = ("mean squared channel mean", "mean channel variance")
    for ax, title in zip(axes[0], titles, strict=True):
        ax.set(title=title, xlabel="layer", yscale="log")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3, which="both")
    axes[0, 0].legend(fontsize=7)
    source = next(iter(recs.values()))["signal_propagation"].get("source", "")
    fig.suptitle(f"signal propagation at initialization ({source})", fontsize=10)
    return fig


def _few(iterations) -> dict:
    """Markers for a curve of few records: a line needs two points, and one record (a short run,
    or a sweep's largest batch) would otherwise draw nothing."""
    return {"marker": "o", "ms": 3} if len(iterations) <= 5 else {}


FIGURES = {
    "diagnostics_histograms": activation_histograms,
    "diagnostics_grad_histograms": gradient_histograms,
    "diagnostics_update_ratio": update_ratios,
    "diagnostics_saturation": saturation,
    "diagnostics_signal": signal_propagation,
}


def diagnostics_figures(records: dict) -> dict[str, Figure]:
    """Every figure of :data:`FIGURES` that ``records`` can give, by file stem.

    The signal-propagation figure is left out when no record holds one (a run that did not
    record iteration 0), the gradient histograms when a record has none (one from before
    them); any other gap raises as the figure function does.
    """
    recs = _records(records)
    figs = {}
    for stem, draw in FIGURES.items():
        if draw is signal_propagation and not all(
            r.get("signal_propagation") for r in recs.values()
        ):
            continue
        if draw is gradient_histograms and not all(_has_grad_hist(r) for r in recs.values()):
            continue
        figs[stem] = draw(recs)
    return figs


def _has_grad_hist(rec: dict) -> bool:
    """Whether a record holds gradient histograms (its first weight has ``grad_hist``)."""
    params = rec.get("params") if isinstance(rec, dict) else None
    return bool(params) and any("grad_hist" in e for e in params.values())


def run_diagnostics(results: dict) -> dict[str, dict]:
    """The diagnostics records of an experiment's runs, by run name (``{}``: none recorded).

    A run holds one in its output's ``'diagnostics'`` (an experiment run with
    ``diagnostics=N``). With several seeds, the first seed's runs stand for their settings
    (``'batchnorm/seed=0'`` is shown as ``'batchnorm'``): the figures compare runs, not seeds.
    """
    seeds = results.get("seeds", 1)
    out = {}
    for name, run in results.get("runs", {}).items():
        if not isinstance(run, dict) or not run.get("diagnostics"):
            continue
        if seeds > 1:
            if not name.endswith("/seed=0"):
                continue
            name = name.removesuffix("/seed=0")
        out[name] = run["diagnostics"]
    return out
