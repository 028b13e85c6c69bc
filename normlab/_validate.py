"""Argument checks shared by the models, the Solver and the data loaders."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np


def check_int(
    name: str, value, minimum: int = 1, maximum: int | None = None, *, allow_none: bool = False
) -> int | None:
    """``value`` as an ``int`` in ``[minimum, maximum]``, else a ValueError naming ``name``.

    Parameters
    ----------
    name : str
        How the message names the argument (``'batch_size'``).
    value : object
        An ``int`` or a NumPy integer; ``bool`` is refused (``True`` is no batch size).
    minimum : int, default 1
    maximum : int, optional
        No upper bound when None.
    allow_none : bool, default False
        Return None for None instead of refusing it.

    Returns
    -------
    int or None

    Examples
    --------
    >>> check_int("batch_size", np.int64(32))
    32
    >>> check_int("batch_size", True)
    Traceback (most recent call last):
    ...
    ValueError: expected batch_size to be an integer >= 1, got True
    """
    if value is None and allow_none:
        return None
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)
    if ok and value >= minimum and (maximum is None or value <= maximum):
        return int(value)
    if maximum is None:
        want = f"an integer >= {minimum}"
    else:
        want = f"an integer in [{minimum}, {maximum}]"
    if allow_none:
        want += " or None"
    raise ValueError(f"expected {name} to be {want}, got {value!r}")


def check_positive(name: str, value: Any) -> float:
    """``value`` as a finite float > 0, else a ValueError naming ``name``."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)
    if not (ok and 0 < value < math.inf):
        raise ValueError(f"expected {name} to be a finite number > 0, got {value!r}")
    return float(value)


def check_callbacks(value: Any) -> list:
    """``callbacks`` as a list of callables (None: an empty list)."""
    if value is None:
        return []
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        raise ValueError(
            f"expected callbacks to be a sequence of callables or None, got {value!r}"
            + (f"; pass [{getattr(value, '__name__', 'fn')}]" if callable(value) else "")
        )
    bad = [fn for fn in value if not callable(fn)]
    if bad:
        raise ValueError(f"expected callbacks to be callables, got {bad!r}")
    return list(value)
