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
    return next((i for i, v in enumerate(curve) if v is not None and v >= threshold), None)


def curves_headline(results: dict) -> str:
    """bn-vs-baseline / demo: epochs each run took to reach the validation accuracy target."""
    runs, thr = results["runs"], results["threshold"]
    epochs = results["config"]["num_epochs"]

    def reached(name: str) -> str:
        e = _first_reaching(runs[name]["val_acc"], thr)
        return (
            f"did not reach it in {_plural(epochs, 'epoch')}"
            if e is None
            else (f"in {_plural(e, 'epoch')}")
        )

    lead = "batchnorm" if "batchnorm" in runs else next(iter(runs))
    sentence = f"{_capital(_label(lead))} "
    e = _first_reaching(runs[lead]["val_acc"], thr)
    if e is None:
        sentence += f"did not reach {thr:.2f} validation accuracy in {_plural(epochs, 'epoch')}"
    else:
        sentence += f"reached {thr:.2f} validation accuracy in {_plural(e, 'epoch')}"
    others = [n for n in runs if n != lead]
    parts = []
    if "none" in others:
        parts.append(f"the baseline {reached('none')}")
    parts += [f"{_label(n)} {reached(n)}" for n in others if n != "none"]
    if parts:
        sentence += ", " + _join(parts)
    return sentence + "."


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
        where = ""
        if len(good) == 1:
            where = f" (scale {good[0]:.1e})"
        elif good:
            where = f" (scales {good[0]:.1e} to {good[-1]:.1e})"
        parts.append(f"{len(good)} of {len(scales)} weight scales {_with(norm)}{where}")
    return f"Best validation accuracy was at least {thr:.2f} at {_join(parts)}."


def _endpoints(results: dict, key: str) -> list[str]:
    """Phrases "a to b with <norm>", from the largest batch size to the smallest."""
    bss = results["batch_sizes"]
    hi, lo = bss.index(max(bss)), bss.index(min(bss))
    out = []
    for norm, vals in results[key].items():
        a, b = vals[hi], vals[lo]
        same = a is not None and b is not None and round(a, 2) == round(b, 2)
        change = f"stayed at {_f(b)}" if same else f"{_f(a)} to {_f(b)}"
        out.append(f"{change} {_with(norm)}")
    return out


def batch_size_headline(results: dict) -> str:
    """batch-size: best validation accuracy at the largest and the smallest batch size."""
    bss = results["batch_sizes"]
    parts = _endpoints(results, "best_val_acc")
    return (
        f"From batch size {max(bss)} to {min(bss)}, best validation accuracy went from "
        f"{_join(parts)}."
    )


def small_batch_headline(results: dict) -> str:
    """small-batch: final test accuracy at the largest and the smallest batch size."""
    bss = results["batch_sizes"]
    parts = _endpoints(results, "final_test_acc")
    return (
        f"From {max(bss)} images per batch to {min(bss)}, final test accuracy went from "
        f"{_join(parts)}."
    )


def paper_mnist_headline(results: dict) -> str:
    """paper-mnist: final test accuracies and the drift of the tracked sigmoid's median input."""
    runs = results["runs"]
    steps = max((o["steps"][-1] for o in runs.values() if o["steps"]), default=0)
    accs = [f"{_f(o['final_test_acc'], 3)} {_with(n)}" for n, o in runs.items()]
    drift = results.get("median_drift", {})
    moves = [f"{_f(drift.get(n))} {_with(n)}" for n in runs]
    return (
        f"After {steps} steps, test accuracy was {_join(accs)}, and the median input of the "
        f"tracked sigmoid moved over a range of {_join(moves)}."
    )


def mlp_adam_headline(results: dict) -> str:
    """mlp-adam: final validation loss and accuracy of each network."""
    runs = results["runs"]
    epochs = results["config"]["num_epochs"]
    parts = [
        f"{_f(o['val_loss'][-1], 3)} {_with(n)} (accuracy {_f(o['val_acc'][-1], 3)})"
        for n, o in runs.items()
    ]
    return f"After {_plural(epochs, 'epoch')}, the validation loss was {_join(parts)}."


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
