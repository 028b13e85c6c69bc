"""The words the experiments' headlines share: numbers, lists and changes in plain English.

Each experiment words its own headline from its results (``headline(results) -> str`` beside
its run); every sentence quotes numbers taken from the results and words its comparison after
what they show ("did not reach it" when a run never reached the target, "rose" or "fell" by the
sign of a change).
"""

from __future__ import annotations

import math

from normlab.vocab import label

__all__ = [
    "capital",
    "change",
    "diverged_at",
    "join",
    "last",
    "num",
    "plural",
    "with_norm",
]


def with_norm(norm: str) -> str:
    """The phrase for a run: without normalization, or with batch norm (etc.)."""
    return "without normalization" if norm == "none" else f"with {label(norm)}"


def capital(s: str) -> str:
    """``s`` with its first letter upper case."""
    return s[:1].upper() + s[1:]


def plural(n: int, word: str) -> str:
    """``"1 epoch"``, ``"3 epochs"``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def num(x, digits: int = 2) -> str:
    """``x`` to ``digits`` decimals, or ``"n/a"`` for None or NaN."""
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def join(parts: list[str]) -> str:
    """``"a and b"``, ``"a, b and c"``."""
    if len(parts) <= 2:
        return " and ".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def last(values) -> float | None:
    """The last entry of a curve, or None when it is empty or missing."""
    return values[-1] if values else None


def diverged_at(run: dict) -> int | None:
    """The epoch (1-based) in which a diverged run's loss became non-finite, else None."""
    if not run.get("diverged"):
        return None
    return max(len(run.get("val_acc") or []), 1)  # val_acc holds epochs 0 .. k-1


def change(a, b) -> str:
    """How a value went from ``a`` to ``b``: fell from / rose from / stayed at / diverged."""
    if b is None:
        return "diverged" if a is None else f"fell from {num(a)} to n/a (diverged)"
    if a is None:
        return f"was n/a (diverged) at the largest and {num(b)} at the smallest"
    if round(a, 2) == round(b, 2):
        return f"stayed at {num(b)}"
    return f"{'fell' if b < a else 'rose'} from {num(a)} to {num(b)}"
