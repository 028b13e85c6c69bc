"""Fused update kernels: one compiled pass over a run of parameters for each built-in rule.

``KERNELS[rule](w, g, state, hyper)`` is what :class:`normlab.optimizer.Optimizer` calls: it
casts the hyperparameters to the parameters' dtype and runs the rule's kernel over 1-D arrays
``w`` (a contiguous run of the model's parameters, updated in place), ``g`` (their gradients,
same layout) and the rule's state arrays (same layout, updated in place). The readable
definitions are the CS231n rules in :mod:`normlab.optim`; each kernel line repeats their
operations in the same order and dtype (no FMA contraction without fastmath), flushing the
same subnormal state to zero, so the results are bit-identical (tested). A rule without an
entry here runs as its definition.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit

__all__ = ["KERNELS"]

# error_model="numpy": a zero denominator gives inf like NumPy instead of ZeroDivisionError.
# Subnormal state is flushed as normlab.optim._flush_subnormals does; ``x - x`` is the zero of
# the buffer dtype (a literal 0.0 would type it as float64).


@njit(cache=True, error_model="numpy")
def _sgd_kernel(w, g, lr):  # pragma: no cover - compiled
    # w <- w - lr g; 1 read of g, 1 read-write of w
    for i in range(w.shape[0]):
        w[i] = w[i] - lr * g[i]


@njit(cache=True, error_model="numpy")
def _sgd_momentum_kernel(w, g, vel, lr, mu, tiny):  # pragma: no cover - compiled
    # v <- mu v - lr g; w <- w + v; one pass
    for i in range(w.shape[0]):
        vi = mu * vel[i] - lr * g[i]
        if abs(vi) < tiny:
            vi = vi - vi
        vel[i] = vi
        w[i] = w[i] + vi


@njit(cache=True, error_model="numpy")
def _rmsprop_kernel(w, g, cache, lr, rho, one_minus_rho, eps, tiny):  # pragma: no cover
    # c <- rho c + (1 - rho) g^2; w <- w - lr g / (sqrt(c) + eps); one pass
    for i in range(w.shape[0]):
        gi = g[i]
        ci = rho * cache[i] + one_minus_rho * (gi * gi)
        if ci < tiny:
            ci = ci - ci
        cache[i] = ci
        w[i] = w[i] - (lr * gi) / (np.sqrt(ci) + eps)


@njit(cache=True, error_model="numpy")
def _adam_kernel(w, g, m, v, lr, b1, c1, b2, c2, bc1, bc2, eps, tiny):  # pragma: no cover
    # m <- b1 m + c1 g; v <- b2 v + c2 g^2; w <- w - lr (m/bc1) / (sqrt(v/bc2) + eps)
    # with c = 1 - beta, bc = 1 - beta^t; one pass over w, g, m, v
    for i in range(w.shape[0]):
        gi = g[i]
        mi = b1 * m[i] + c1 * gi
        vi = b2 * v[i] + c2 * (gi * gi)
        if abs(mi) < tiny:
            mi = mi - mi
        if vi < tiny:
            vi = vi - vi
        m[i] = mi
        v[i] = vi
        w[i] = w[i] - (lr * (mi / bc1)) / (np.sqrt(vi / bc2) + eps)


def _sgd(w, g, state, hyper) -> None:
    _sgd_kernel(w, g, w.dtype.type(hyper["learning_rate"]))


def _sgd_momentum(w, g, state, hyper) -> None:
    s = w.dtype.type  # scalars in the buffer dtype, like NumPy's weak Python floats
    lr, mu, tiny = s(hyper["learning_rate"]), s(hyper["momentum"]), s(np.finfo(w.dtype).tiny)
    _sgd_momentum_kernel(w, g, state[0], lr, mu, tiny)


def _rmsprop(w, g, state, hyper) -> None:
    s, rho = w.dtype.type, float(hyper["decay_rate"])
    lr, eps, tiny = s(hyper["learning_rate"]), s(hyper["epsilon"]), s(np.finfo(w.dtype).tiny)
    _rmsprop_kernel(w, g, state[0], lr, s(rho), s(1 - rho), eps, tiny)


def _adam(w, g, state, hyper) -> None:
    s, b1, b2, t = w.dtype.type, float(hyper["beta1"]), float(hyper["beta2"]), hyper["t"]
    lr, eps, tiny = s(hyper["learning_rate"]), s(hyper["epsilon"]), s(np.finfo(w.dtype).tiny)
    _adam_kernel(
        w, g, state[0], state[1], lr, s(b1), s(1 - b1), s(b2), s(1 - b2),
        s(1 - b1**t), s(1 - b2**t), eps, tiny,
    )  # fmt: skip


# rule name -> fn(w (P,), g (P,), state: tuple of (P,) arrays in STATE_KEYS order, hyper), in
# place; for Adam ``hyper["t"]`` already counts this step (the rule increments it first)
KERNELS: dict[str, Callable[..., None]] = {
    "sgd": _sgd,
    "sgd_momentum": _sgd_momentum,
    "rmsprop": _rmsprop,
    "adam": _adam,
}
