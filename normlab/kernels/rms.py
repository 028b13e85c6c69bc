"""Fused numba kernels for RMSNorm (Zhang & Sennrich, 2019): x (N, D), statistics per row.

The same math as ``normlab.layers.rmsnorm`` (its NumPy path is the readable reference the
tests compare against; docs/derivations.md, section 5)::

    ms_n   = mean_d x[n, d]^2,    rrms_n = 1 / sqrt(ms_n + eps)
    out    = gamma * x * rrms
    g      = dout * gamma,        dx = rrms * (g - xhat * mean_d(g * xhat)),  xhat = x * rrms
    dgamma = sum_n dout * xhat

Forward, row by row: one pass summing ``x^2``, one pass writing ``out``, which finds the row in
cache. Backward, row by row: one pass for ``sum(g * xhat)`` and the row's share of ``dgamma``,
one writing ``dx``, again from cache. Rows run in parallel in the multi-threaded variant, which
the layer picks from ``PARALLEL_MIN`` elements on, as for :mod:`normlab.kernels.norm`.

Precision. ``ms`` is accumulated per row in float64, element by element: a float32 square is
exact in float64 and cannot overflow or underflow there, so for float32 input ``ms`` is the
reference's to float64 rounding and needs no fallback (it measured as fast as float32 block
sums on (128, 512) and (512, 1024)). The element-wise passes run in x's dtype with ``r =
rrms`` rounded to it, ``r`` applied to ``x`` first: ``xhat`` is of order 1 whatever the scale
of ``x``. ``sum(g * xhat)`` is summed per block of ``_BLOCK`` values in x's dtype and the blocks
added in float64 (a block that overflows, or holds NaN/inf, is redone in float64; summing it in
float64 element by element took 1.5 times as long). The dx pass is
:func:`normlab.kernels._dx._dx_gamma`, compiled without reassociation, so that no ``rrms^2`` is
formed (it leaves float32's range for |x| ~ 1e20 or ~1e-20 while dx stays in it). A row whose
``rrms`` is not a normal number of x's dtype, or whose reciprocal is not (float32 x near its
largest values, eps far below 1e-38 on a zero row, a NaN row in test mode), is done in float64
and rounded once. ``ms`` and ``rrms`` come back in float64, with the number of rows whose ``ms``
is NaN or inf, which the layer refuses in train mode.

``dgamma`` is summed per feature in x's dtype over ``_FLUSH`` rows and then added into float64
partial sums, one per chunk of rows (:func:`normlab.kernels.norm.chunks`, from the input's size
alone); the caller adds the chunks in order. Every row is computed by one thread, so the bits
are the same for any thread count. Inner loops run over 1-D row slices so LLVM vectorises them.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba import prange

from normlab.kernels._blocks import _BLOCK, _FAST, _like, _tiny
from normlab.kernels._dx import _dx_gamma
from normlab.kernels.norm import _FLUSH, _jit


@nb.njit(cache=True, fastmath=_FAST, inline="always")
def _normal(rr, tiny):
    """Whether ``rr`` and ``1 / rr`` are normal numbers of a dtype whose smallest is ``tiny``
    (False for NaN)."""
    return rr >= tiny and rr * tiny <= 1.0


@_jit
def rms_forward(x, gamma, eps, out, ms, rrms):
    """RMSNorm forward per row: x (N, D), gamma (D,) of x's dtype -> out (N, D); ms, rrms (N,)
    float64 out. Returns the number of rows whose ``ms`` is NaN or inf."""
    N, D = x.shape
    tiny = _tiny(x)
    bad = 0
    for n in prange(N):
        row = x[n]
        o = out[n]
        s = 0.0  # float64 sum of squares
        for i in range(D):
            v = np.float64(row[i])
            s += v * v
        m = s / D
        bad += not np.isfinite(m)
        rr = 1.0 / np.sqrt(m + eps)
        ms[n] = m
        rrms[n] = rr
        if _normal(rr, tiny):
            r = _like(rr, x)
            for i in range(D):
                o[i] = (row[i] * r) * gamma[i]
        else:  # rrms out of x's range (or NaN): the row in float64, rounded once
            for i in range(D):
                o[i] = np.float64(row[i]) * rr * gamma[i]
    return bad


@_jit
def rms_backward(dy, x, rrms, gamma, dx, dgamma_part):
    """RMSNorm backward per row: dy, x (N, D), rrms (N,) float64, gamma (D,) of x's dtype ->
    dx (N, D); per-chunk partial dgamma ``dgamma_part`` (T, D) float64, zero on entry, summed
    over T by the caller (chunk t holds rows ``t*N//T`` to ``(t+1)*N//T``)."""
    N, D = x.shape
    T = dgamma_part.shape[0]
    tiny = _tiny(x)
    zero = _like(0.0, x)
    for t in prange(T):
        dgp = dgamma_part[t]
        acc = np.zeros(D, x.dtype)  # sum(dy * xhat) per feature over a block of rows
        pending = 0  # rows summed into acc since the last flush
        r1 = (t + 1) * N // T
        for n in range(t * N // T, r1):
            g = dy[n]
            xr = x[n]
            o = dx[n]
            rr = rrms[n]
            if _normal(rr, tiny):
                r = _like(rr, x)
                s = 0.0  # float64 sum(dy * gamma * xhat)
                for b0 in range(0, D, _BLOCK):
                    b1 = min(b0 + _BLOCK, D)
                    gb = g[b0:b1]  # 1-D slices from 0: the loop vectorises
                    xb = xr[b0:b1]
                    gsb = gamma[b0:b1]
                    ab = acc[b0:b1]
                    a = zero
                    for i in range(b1 - b0):  # the row's sum and the per-feature sums
                        gi = gb[i]
                        xh = xb[i] * r
                        a += gi * gsb[i] * xh
                        ab[i] += gi * xh
                    if np.isfinite(a):
                        s += a
                    else:  # overflow in x's dtype, or NaN/inf: this block in float64
                        for i in range(b1 - b0):
                            s += np.float64(gb[i]) * gsb[i] * (np.float64(xb[i]) * rr)
                proj = s / D  # mean(g * xhat)
                # dx = dy * (gamma * r) + P * (x * r): rrms applied twice, never rrms^2
                _dx_gamma(g, xr, gamma, zero, r, _like(-rr * proj, x), zero, o)
                pending += 1
            else:  # rrms out of x's range (or NaN): the row in float64, rounded once
                s = 0.0
                for i in range(D):
                    s += np.float64(g[i]) * gamma[i] * xr[i]
                proj = rr * (s / D)
                for i in range(D):
                    xh = np.float64(xr[i]) * rr
                    dgp[i] += g[i] * xh
                    o[i] = rr * (np.float64(g[i]) * gamma[i] - xh * proj)
            if pending == _FLUSH or (n == r1 - 1 and pending > 0):
                pending = 0
                for i in range(D):
                    dgp[i] += acc[i]
                    acc[i] = 0
