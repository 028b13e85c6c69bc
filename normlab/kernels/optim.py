"""Fused update kernels: one compiled pass over a run of parameters for each built-in rule.

``KERNELS[rule](w, g, state, hyper)`` is what :class:`normlab.optimizer.Optimizer` calls: it
casts the hyperparameters to the parameters' dtype and runs the rule's kernel over 1-D arrays
``w`` (a contiguous run of the model's parameters, updated in place), ``g`` (their gradients,
same layout) and the rule's state arrays (same layout, updated in place). The readable
definitions are the CS231n rules in :mod:`normlab.optim`; each kernel line repeats their
operations in the same order and dtype (no FMA contraction without fastmath), flushing the
same subnormal state to zero, so the results are bit-identical (tested). A rule without an
entry here runs as its definition.

RMSProp and Adam first check, from the bit patterns, that every ``|g|`` and mean square is
below a bound under which nothing can leave the dtype's range (:func:`_in_bounds`, one read of
``g`` and the mean squares as integer max reductions): a training step passes and runs the
one-pass loop; otherwise every element is checked as the rules do, and those whose mean square
would leave the range (or is stored as minus its root, see :mod:`normlab.optim`) are redone in
float64 (:func:`_root_mean_square`, :func:`_stored_mean_square`).
"""

from __future__ import annotations

import functools
import math
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


@njit(cache=True)
def _in_bounds(g_bits, ms_bits, g_bound, ms_bound, magnitude):  # pragma: no cover - compiled
    # every |g| <= g_bound and 0 <= ms <= ms_bound, all as unsigned bit patterns: non-negative
    # floats order as their bits do and a negative one has the top bit set (integer max
    # reductions vectorise, float ones would need fastmath); one read of g and ms
    if g_bits.shape[0] == 0:
        return True
    u = g_bits.dtype.type  # numba widens ``&`` to 64 bits: cast back so that the maxima vectorise
    g_hi, ms_hi = u(g_bits[0] & magnitude), ms_bits[0]
    for i in range(g_bits.shape[0]):
        g_hi = max(g_hi, u(g_bits[i] & magnitude))
        ms_hi = max(ms_hi, ms_bits[i])
    return g_hi <= g_bound and ms_hi <= ms_bound


@njit(cache=True)
def _root_mean_square(prev, gi, decay, one_minus_decay):  # pragma: no cover - compiled
    # float64 sqrt(decay prev + (1 - decay) g^2), scaled by k = max(sqrt(prev), |g|) > 0;
    # prev < 0 holds minus the root (normlab.optim._root_mean_square)
    prev, a = np.float64(prev), abs(np.float64(gi))
    s = np.sqrt(prev) if prev >= 0 else -prev
    k = s if s >= a else a
    p, q = s / k, a / k
    return k * np.sqrt(decay * (p * p) + one_minus_decay * (q * q))


@njit(cache=True)
def _stored_mean_square(r, big):  # pragma: no cover - compiled
    # r^2 when at most big (the dtype's largest number, as float64), else -r
    ms = r * r
    return ms if ms <= big else -r


@njit(cache=True, error_model="numpy")
def _rmsprop_kernel(
    w, g, cache, lr, rho, one_minus_rho, eps, tiny, big, bounds, wide
):  # pragma: no cover
    # c <- rho c + (1 - rho) g^2; w <- w - lr g / (sqrt(c) + eps); one pass
    if _in_bounds(*bounds):
        for i in range(w.shape[0]):
            gi = g[i]
            ci = rho * cache[i] + one_minus_rho * (gi * gi)
            if ci < tiny:
                ci = ci - ci
            cache[i] = ci
            w[i] = w[i] - (lr * gi) / (np.sqrt(ci) + eps)
        return
    rho64, omr64, lr64, eps64, big64 = wide
    for i in range(w.shape[0]):
        gi, cp = g[i], cache[i]
        ci = rho * cp + one_minus_rho * (gi * gi)
        if ci > big or cp < 0:  # in float64, as normlab.optim.rmsprop
            r = _root_mean_square(cp, gi, rho64, omr64)
            w[i] = w[i] - lr64 * (np.float64(gi) / (r + eps64))
            cache[i] = _stored_mean_square(r, big64)
            continue
        if ci < tiny:
            ci = ci - ci
        cache[i] = ci
        w[i] = w[i] - (lr * gi) / (np.sqrt(ci) + eps)


@njit(cache=True, error_model="numpy")
def _adam_kernel(
    w, g, m, v, lr, b1, c1, b2, c2, bc1, bc2, eps, tiny, big, bounds, wide
):  # pragma: no cover
    # m <- b1 m + c1 g; v <- b2 v + c2 g^2; w <- w - lr (m/bc1) / (sqrt(v/bc2) + eps)
    # with c = 1 - beta, bc = 1 - beta^t; one pass over w, g, m, v
    if _in_bounds(*bounds):
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
        return
    b2_64, c2_64, lr64, bc1_64, sqrt_bc2_64, eps64, big64 = wide
    for i in range(w.shape[0]):
        gi, vp = g[i], v[i]
        mi = b1 * m[i] + c1 * gi
        vi = b2 * vp + c2 * (gi * gi)
        if abs(mi) < tiny:
            mi = mi - mi
        m[i] = mi
        if vi / bc2 > big or vp < 0:  # in float64, as normlab.optim.adam
            r = _root_mean_square(vp, gi, b2_64, c2_64)
            mt = np.float64(mi) / bc1_64
            w[i] = w[i] - lr64 * mt / (r / sqrt_bc2_64 + eps64)
            v[i] = _stored_mean_square(r, big64)
            continue
        if vi < tiny:
            vi = vi - vi
        v[i] = vi
        w[i] = w[i] - (lr * (mi / bc1)) / (np.sqrt(vi / bc2) + eps)


def _sgd(w, g, state, hyper) -> None:
    _sgd_kernel(w, g, w.dtype.type(hyper["learning_rate"]))


def _sgd_momentum(w, g, state, hyper) -> None:
    s = w.dtype.type  # scalars in the buffer dtype, like NumPy's weak Python floats
    lr, mu, tiny = s(hyper["learning_rate"]), s(hyper["momentum"]), s(np.finfo(w.dtype).tiny)
    _sgd_momentum_kernel(w, g, state[0], lr, mu, tiny)


@functools.cache
def _bit_constants(dtype: np.dtype) -> tuple:
    """(unsigned type, bits of sqrt(max / 4), all bits but the sign, max) for a float dtype."""
    u, big = np.dtype(f"u{dtype.itemsize}").type, float(np.finfo(dtype).max)
    return u, dtype.type(math.sqrt(big / 4)).view(u), u(np.iinfo(u).max >> 1), big


def _bounds(g, ms, bc):
    """The arguments of ``_in_bounds`` for gradients ``g`` and mean squares ``ms``."""
    # |g| <= sqrt(max / 4) and 0 <= ms <= max bc / 4 keep (decay ms + (1 - decay) g^2) / bc
    # below max / 2, since bc = 1 - decay^t >= 1 - decay
    u, g_bound, magnitude, big = _bit_constants(g.dtype)
    return g.view(u), ms.view(u), g_bound, g.dtype.type(big * bc / 4).view(u), magnitude


def _rmsprop(w, g, state, hyper) -> None:
    s, rho, fi = w.dtype.type, float(hyper["decay_rate"]), np.finfo(w.dtype)
    lr, eps = float(hyper["learning_rate"]), float(hyper["epsilon"])
    wide = (rho, 1 - rho, lr, eps, float(fi.max))  # float64, for the out-of-range elements
    _rmsprop_kernel(
        w, g, state[0], s(lr), s(rho), s(1 - rho), s(eps), s(fi.tiny), s(fi.max),
        _bounds(g, state[0], 1.0), wide,
    )  # fmt: skip


def _adam(w, g, state, hyper) -> None:
    s, b1, b2, t = w.dtype.type, float(hyper["beta1"]), float(hyper["beta2"]), hyper["t"]
    lr, eps, fi = float(hyper["learning_rate"]), float(hyper["epsilon"]), np.finfo(w.dtype)
    # float64, for the out-of-range elements
    wide = (b2, 1 - b2, lr, 1 - b1**t, math.sqrt(1 - b2**t), eps, float(fi.max))
    _adam_kernel(
        w, g, state[0], state[1], s(lr), s(b1), s(1 - b1), s(b2), s(1 - b2),
        s(1 - b1**t), s(1 - b2**t), s(eps), s(fi.tiny), s(fi.max),
        _bounds(g, state[1], 1 - b2**t), wide,
    )  # fmt: skip


# rule name -> fn(w (P,), g (P,), state: tuple of (P,) arrays in STATE_KEYS order, hyper), in
# place; for Adam ``hyper["t"]`` already counts this step (the rule increments it first)
KERNELS: dict[str, Callable[..., None]] = {
    "sgd": _sgd,
    "sgd_momentum": _sgd_momentum,
    "rmsprop": _rmsprop,
    "adam": _adam,
}
