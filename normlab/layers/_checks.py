"""Validation at the public boundary of the layers: say what was expected and what was got."""

from __future__ import annotations

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
