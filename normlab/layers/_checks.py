"""Validation at the public boundary of the layers: say what was expected and what was got."""

from __future__ import annotations

import difflib
import math
import numbers

import numpy as np


def as_float_array(x, fn: str, name: str = "x") -> np.ndarray:
    """``x`` as a float32/float64 ndarray (integers become float64); reject anything else."""
    a = np.asarray(x)
    if a.dtype == np.float32 or a.dtype == np.float64:
        return a
    if a.dtype.kind in "iub":
        return a.astype(np.float64)
    if a.dtype.kind == "f":
        raise ValueError(
            f"{fn}: expected {name} of dtype float32 or float64, got {a.dtype}; "
            f"convert it with {name}.astype(np.float32)"
        )
    raise ValueError(f"{fn}: expected {name} to be a real-valued array, got dtype {a.dtype}")


def check_ndim(x: np.ndarray, ndim: int, fn: str, layout: str, name: str = "x") -> None:
    """Raise unless ``x.ndim == ndim``; ``layout`` is e.g. ``'(N, D)'``."""
    if x.ndim != ndim:
        raise ValueError(f"{fn}: expected {name} of shape {layout}, got {tuple(x.shape)}")


def check_channel_param(p, C: int, fn: str, name: str, allow_4d: bool = False) -> np.ndarray:
    """``gamma``/``beta`` of shape (C,) (or (1, C, 1, 1) when ``allow_4d``)."""
    a = as_float_array(p, fn, name)
    ok = a.shape == (C,) or (allow_4d and a.shape == (1, C, 1, 1))
    if not ok:
        want = f"({C},)" + (f" or (1, {C}, 1, 1)" if allow_4d else "")
        raise ValueError(f"{fn}: expected {name} of shape {want}, got {tuple(a.shape)}")
    return a


def check_eps(eps, fn: str) -> float:
    """``eps`` must be a finite number > 0."""
    if type(eps) is float and eps > 0 and eps != np.inf:  # the common case, fast
        return eps
    if not isinstance(eps, numbers.Real) or not np.isfinite(eps) or eps <= 0:
        raise ValueError(f"{fn}: expected eps > 0, got {eps!r}")
    return float(eps)


def check_momentum(momentum, fn: str) -> float:
    """``momentum`` must be a number in [0, 1]."""
    if type(momentum) is float and 0.0 <= momentum <= 1.0:  # the common case, fast
        return momentum
    if not isinstance(momentum, numbers.Real) or not 0.0 <= momentum <= 1.0:
        raise ValueError(f"{fn}: expected momentum in [0, 1], got {momentum!r}")
    return float(momentum)


def check_mode(param: dict, fn: str, key: str = "mode", required: bool = True) -> str:
    """``param['mode']`` must be 'train' or 'test'."""
    if not isinstance(param, dict):
        raise ValueError(f"{fn}: expected a dict of parameters, got {type(param).__name__}")
    if key not in param:
        if required:
            raise ValueError(f"{fn}: expected {key!r} in the parameter dict ('train' or 'test')")
        return "train"
    mode = param[key]
    if mode not in ("train", "test"):
        raise ValueError(f"{fn}: expected mode 'train' or 'test', got {mode!r}")
    return mode


def check_keys(param: dict, known: frozenset, fn: str, name: str) -> None:
    """Every key of ``param`` must be one of ``known``; a misspelling names the likely key."""
    if param.keys() <= known:  # the common case, fast
        return
    key = sorted(set(param) - known, key=str)[0]
    close = difflib.get_close_matches(str(key), sorted(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"{fn}: unknown {name} key {key!r}{hint}; known keys are {sorted(known)}")


class NonFiniteStatisticsError(FloatingPointError):
    """A normalization's batch statistics hold NaN or inf: its input does, or overflowed.

    Raised by the train-mode forwards before any running statistic is updated.

    Attributes
    ----------
    function : str
        The layer function, e.g. ``'batchnorm_forward'``.
    what : str
        What the statistics are of: ``'channels'``, ``'samples'`` or ``'(sample, group) pairs'``.
    indices : list
        The first few affected indices (ints, or (sample, group) pairs).
    count, total : int
        How many statistics are non-finite, of how many.
    running : bool
        The layer keeps running statistics (left unchanged).
    """

    def __init__(
        self, function: str, what: str, indices: list, count: int, total: int, running=False
    ):
        more = ", ..." if count > len(indices) else ""
        listed = ", ".join(map(str, indices))
        super().__init__(
            f"{function}: non-finite batch statistics in {count} of {total} {what} "
            f"({listed}{more}): the input holds NaN or inf there, or its values overflow"
            + ("; the running statistics were not updated" if running else "")
        )
        self.function, self.what, self.indices = function, what, indices
        self.count, self.total, self.running = count, total, running

    def __reduce__(self):
        args = (self.function, self.what, self.indices, self.count, self.total, self.running)
        return type(self), args


def check_finite_stats(mean, var, fn: str, what: str, running: bool = False) -> None:
    """Raise NonFiniteStatisticsError unless every batch statistic is finite.

    ``mean``, ``var`` of shape (C,) or (N, G): a pass over the statistics, not over the data;
    ``running``: the caller keeps running statistics (the message says they were not updated).
    """
    # sum(mean * var) is finite whenever they all are (one dot, ~1 us); a NaN or an inf makes
    # it NaN or inf (inf * 0 is NaN), and only then, or on overflow, is each element looked at
    if math.isfinite(np.dot(mean.reshape(-1), var.reshape(-1))):
        return
    bad = ~(np.isfinite(mean) & np.isfinite(var))  # (C,) or (N, G)
    if not bad.any():
        return  # finite statistics whose sum overflowed
    idx = np.argwhere(bad) if bad.ndim > 1 else np.flatnonzero(bad)
    first = [tuple(int(i) for i in r) if bad.ndim > 1 else int(r) for r in idx[:5]]
    raise NonFiniteStatisticsError(fn, what, first, int(bad.sum()), bad.size, running)


def raise_overflowed_running(fn: str, count: int, total: int, dtype) -> None:
    """Raise NonFiniteStatisticsError for ``count`` of ``total`` channels whose new running
    statistic would overflow the running arrays' ``dtype`` (they were left unchanged)."""
    err = NonFiniteStatisticsError(fn, "channels", [], count, total, running=True)
    err.args = (
        f"{fn}: the running statistics of {count} of {total} channels would overflow "
        f"{np.dtype(dtype).name} (the batch variance exceeds its range): the input's values are "
        "too large for the running arrays; the running statistics were not updated",
    )
    raise err
