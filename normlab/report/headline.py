"""The one-sentence headline of each experiment, computed from its results (never canned).

:func:`headline` dispatches on ``results["experiment"]``; every sentence quotes numbers taken
from the results and words its comparison after what they show ("did not reach it" when a run
never reached the target, "rose" or "fell" by the sign of a change).
"""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["HEADLINES", "headline"]

_LABELS = {
    "none": "no normalization",
    "batchnorm": "batch norm",
    "layernorm": "layer norm",
    "groupnorm": "group norm",
}


def _label(norm: str) -> str:
    return _LABELS.get(norm, norm)


def _with(norm: str) -> str:
    """The phrase for a run: without normalization, or with batch norm (etc.)."""
    return "without normalization" if norm == "none" else f"with {_label(norm)}"


def _capital(s: str) -> str:
    return s[:1].upper() + s[1:]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _f(x, digits: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _join(parts: list[str]) -> str:
    if len(parts) <= 2:
        return " and ".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _first_reaching(curve: list, threshold: float) -> int | None:
    """The first trained epoch (>= 1; epoch 0 is before training) at or above ``threshold``."""
    return next(
        (i for i, v in enumerate(curve) if i >= 1 and v is not None and v >= threshold), None
    )


def _diverged_at(run: dict) -> int | None:
    """The epoch (1-based) in which a diverged run's loss became non-finite, else None."""
    if not run.get("diverged"):
        return None
    return max(len(run.get("val_acc") or []), 1)  # val_acc holds epochs 0 .. k-1


def _last(values) -> float | None:
    """The last entry of a curve, or None when it is empty or missing."""
    return values[-1] if values else None


def curves_headline(results: dict) -> str:
    """bn-vs-baseline / demo: epochs each run took to reach the validation accuracy target.

    Diverged runs are named as such; epoch 0 (before training) never counts as reaching the
    target, and a run that never beat its untrained accuracy says so.
    """
    runs, thr = results["runs"], results["threshold"]
    epochs = results["config"]["num_epochs"]

    def outcome(name: str, first: bool) -> str:
        run = runs[name]
        curve = run.get("val_acc") or []
        k = _diverged_at(run)
        e = _first_reaching(curve, thr)
        trained = [v for v in curve[1:] if v is not None]
        start = curve[0] if curve else None
        if e is None and k is not None:
            return f"diverged at epoch {k}"
        if e is not None and start is not None and max(trained) <= start:
            return f"never beat its untrained {_f(start)} validation accuracy"
        tail = f" (then diverged at epoch {k})" if k is not None else ""
        if e is None:
            target = f"reach {thr:.2f} validation accuracy" if first else "reach it"
            return f"did not {target} in {_plural(epochs, 'epoch')}"
        target = f"reached {thr:.2f} validation accuracy " if first else ""
        return f"{target}in {_plural(e, 'epoch')}{tail}"

    lead = "batchnorm" if "batchnorm" in runs else next(iter(runs))
    sentence = f"{_capital(_label(lead))} {outcome(lead, True)}"
    others = [n for n in runs if n != lead]
    parts = []
    if "none" in others:
        parts.append(f"the baseline {outcome('none', False)}")
    parts += [f"{_label(n)} {outcome(n, False)}" for n in others if n != "none"]
    if parts:
        sentence += ", " + _join(parts)
    return sentence + "."


def _scale_list(good: list, scales: list) -> str:
    """ " (scales a to b)" when ``good`` is a contiguous run of ``scales``, else each listed."""
    if not good:
        return ""
    if len(good) == 1:
        return f" (scale {good[0]:.1e})"
    i = scales.index(good[0])
    if scales[i : i + len(good)] == good:
        return f" (scales {good[0]:.1e} to {good[-1]:.1e})"
    return f" (scales {_join([f'{s:.1e}' for s in good])})"


def weight_scale_headline(results: dict) -> str:
    """weight-scale: at how many scales each network stayed near the best accuracy."""
    curves, scales = results["curves"], results["weight_scales"]
    best = max((v for c in curves.values() for v in c["best_val_acc"] if v is not None), default=0)
    thr = math.floor(0.8 * best * 20 + 1e-9) / 20
    parts = []
    for norm, c in curves.items():
        good = [
            s for s, v in zip(scales, c["best_val_acc"], strict=True) if v is not None and v >= thr
        ]
        where = _scale_list(good, list(scales))
        parts.append(f"{len(good)} of {len(scales)} weight scales {_with(norm)}{where}")
    return f"Best validation accuracy was at least {thr:.2f} at {_join(parts)}."


def _change(a, b) -> str:
    """How a value went from ``a`` to ``b``: fell from / rose from / stayed at / diverged."""
    if b is None:
        return "diverged" if a is None else f"fell from {_f(a)} to n/a (diverged)"
    if a is None:
        return f"was n/a (diverged) at the largest and {_f(b)} at the smallest"
    if round(a, 2) == round(b, 2):
        return f"stayed at {_f(b)}"
    return f"{'fell' if b < a else 'rose'} from {_f(a)} to {_f(b)}"


def _endpoints(results: dict, key: str) -> list[str]:
    """Phrases "fell from a to b with <norm>", from the largest batch size to the smallest."""
    bss = results["batch_sizes"]
    hi, lo = bss.index(max(bss)), bss.index(min(bss))
    return [f"{_change(v[hi], v[lo])} {_with(norm)}" for norm, v in results[key].items()]


def batch_size_headline(results: dict) -> str:
    """batch-size: best validation accuracy at the largest and the smallest batch size."""
    bss = results["batch_sizes"]
    parts = _endpoints(results, "best_val_acc")
    return f"From batch size {max(bss)} to {min(bss)}, best validation accuracy {_join(parts)}."


def small_batch_headline(results: dict) -> str:
    """small-batch: test accuracy (at the best validation epoch), largest to smallest batch."""
    bss = results["batch_sizes"]
    key = "best_epoch_test_acc" if "best_epoch_test_acc" in results else "final_test_acc"
    parts = _endpoints(results, key)
    return (
        f"From {max(bss)} images per batch to {min(bss)}, test accuracy at the best "
        f"validation epoch {_join(parts)}."
    )


def paper_mnist_headline(results: dict) -> str:
    """paper-mnist: final test accuracies and the drift of the tracked sigmoid's median input."""
    runs = results["runs"]
    trained = {n: o for n, o in runs.items() if not o.get("diverged")}
    steps = max((o["steps"][-1] for o in trained.values() if o.get("steps")), default=0)
    accs = [f"{_f(o.get('final_test_acc'), 3)} {_with(n)}" for n, o in trained.items()]
    gone = [f"the run {_with(n)} diverged" for n, o in runs.items() if o.get("diverged")]
    drift = results.get("median_drift", {})
    moves = [f"{_f(drift.get(n))} {_with(n)}" for n in trained]
    if not trained:
        return f"{_capital(_join(gone))}."
    sentence = (
        f"After {steps} steps, test accuracy was {_join(accs)}, and the median input of the "
        f"tracked sigmoid moved over a range of {_join(moves)}"
    )
    return sentence + (f"; {_join(gone)}." if gone else ".")


def mlp_adam_headline(results: dict) -> str:
    """mlp-adam: final validation loss and accuracy of each network (or where it diverged)."""
    runs = results["runs"]
    epochs = results["config"]["num_epochs"]
    parts, gone = [], []
    for n, o in runs.items():
        if o.get("diverged"):
            gone.append(f"the run {_with(n)} diverged at epoch {_diverged_at(o)}")
            continue
        loss, acc = _last(o.get("val_loss")), _last(o.get("val_acc"))
        parts.append(f"{_f(loss, 3)} {_with(n)} (accuracy {_f(acc, 3)})")
    if not parts:
        return f"{_capital(_join(gone))}."
    sentence = f"After {_plural(epochs, 'epoch')}, the validation loss was {_join(parts)}"
    return sentence + (f"; {_join(gone)}." if gone else ".")


HEADLINES: dict[str, Callable[[dict], str]] = {
    "demo": curves_headline,
    "bn-vs-baseline": curves_headline,
    "weight-scale": weight_scale_headline,
    "batch-size": batch_size_headline,
    "paper-mnist": paper_mnist_headline,
    "mlp-adam": mlp_adam_headline,
    "small-batch": small_batch_headline,
}


def headline(results: dict) -> str:
    """One sentence stating what an experiment's results show.

    Parameters
    ----------
    results : dict
        As returned by the experiment's ``run`` or read from ``results.json``.

    Returns
    -------
    sentence : str

    Raises
    ------
    ValueError
        For an experiment without a headline (the message lists those with one).
    """
    name = results.get("experiment")
    if name not in HEADLINES:
        raise ValueError(f"no headline for experiment {name!r}; known are {sorted(HEADLINES)}")
    return HEADLINES[name](results)
