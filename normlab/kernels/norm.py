"""Fused numba kernels for batch, spatial batch, layer and group normalization.

Every kernel computes the same math as ``normlab.layers.norm_core`` (the readable NumPy
reference its tests compare against). Two memory layouts cover the four layers:

* **columns** ``x (N, C, S)``: statistics per channel ``c`` over ``n`` and ``s`` (batch norm,
  ``S = 1``; spatial batch norm, ``S = H*W``);
* **rows** ``x (R, L)`` with ``R = N*G`` and ``L = K*S``: statistics per row (layer norm,
  ``G = 1, K = D, S = 1``; group norm, ``K = C/G, S = H*W``); ``gamma``/``beta`` are per channel
  ``g*K + k``.

Forward (train) makes two passes: one for the mean and variance, one writing
``y = (x - mu) * gamma / sqrt(var + eps) + beta``. Backward makes two: one for ``sum(dy)`` and
``sum(dy * xhat)``, one writing the closed form ``dx = gamma * rstd * (dy - mean(dy) - xhat *
mean(dy * xhat))`` (rows use ``dy * gamma`` inside the means, since there gamma varies within a
row). Rows (layer and group norm) and spatial batch norm (channel by channel) make their second
pass over data still in cache; batch norm over (N, D) reads its input twice.

Precision. The inner loops run in the input's dtype, so float32 input gets float32 vector
arithmetic; everything that accumulates over more than one cache-sized block is float64:

* statistics are the *corrected two-pass* per block (at most ``_BLOCK`` elements, or ``_ROWS``
  rows of a column tile), which is in cache for its second pass: the block's mean ``m0`` first,
  then ``s = sum(x - m0)`` and ``q = sum((x - m0)^2)``, giving ``mean = m0 + s/n`` and ``M2 = q -
  s^2/n``; blocks merged in float64 with Chan et al.'s update; a float32 block whose squares
  over- or underflow is redone in float64. Batch norm over (N, D) alone makes one pass of these
  shifted sums about the mean of a sample of rows, accepted when ``m0`` is within one standard
  deviation of the mean (:func:`_shifted_stats`: at most one bit lost to the subtraction) and
  otherwise redone; at the layer it measured up to 20 % faster than two passes, where for rows
  and channels it bought under 7 % (benchmarks/README.md, stop 20).
  Never ``E[x^2] - E[x]^2``: ``1e4 + 0.1 * noise`` in float32 keeps its variance.
* ``x - mean`` is computed as ``(x - mh) - ml`` with ``mh`` the mean rounded to the input dtype
  and ``ml = mean - mh`` (float64) folded into the per-channel shift: ``x - mh`` is exact when x
  is near the mean (Sterbenz), so a large common offset costs no digits.
* gradient sums are accumulated per block in the input dtype and added into float64 totals.

Batch-norm reductions are split into a fixed number of chunks of rows (:data:`CHUNKS`) with
per-chunk partial sums, which the threads share; spatial batch norm is split by channels, rows
by rows: the same bits for any thread count. Inner loops run over 1-D row slices so LLVM
vectorises them.
"""

from __future__ import annotations

import types
from typing import NamedTuple

import numba as nb
import numpy as np
from numba import prange

from normlab.kernels import _threads
from normlab.kernels._blocks import (
    _BLOCK,
    _FAST,
    _ROWS,
    _TILE,
    _affine_coef,
    _affine_coefs,
    _backward_coef,
    _backward_coefs,
    _chunk_totals,
    _cols_grad_sums,
    _cols_sample_mean,
    _cols_shifted_sums,
    _cols_stats,
    _like,
    _merge,
    _seg_grad_sums,
    _seg_stats,
    _shifted_stats,
    _tiny,
)
from normlab.kernels._dx import _dx_cols, _dx_gamma, _dx_seg

_FLUSH = 64  # rows of layer-norm parameter gradients summed in x's dtype before a float64 add
# Below this many elements (4 MiB of float32) a kernel runs on the calling thread. Waking the
# pool costs tens of microseconds, and after a parallel region its OpenMP threads spin-wait,
# taking the cores from the BLAS threads of the next matrix product: a batch-norm ConvNet step
# on 2 cores measured 36 ms with a 65536-element threshold and 24 ms with this one.
PARALLEL_MIN = 1 << 20


# Reductions over rows are split into this many chunks (fewer for short inputs), each summed on
# its own and the chunks added in order: the grouping of the sums, and so every bit of the
# result, depends on the input's size alone, never on the thread count (numba's threads share
# the chunks). A sweep then gives the same numbers in one process and in one-thread workers.
CHUNKS = 8


def chunks(size: int) -> int:
    """Chunks of the row reductions for an input of ``size`` elements (1 below
    ``PARALLEL_MIN``, where the kernels run on one thread)."""
    return CHUNKS if size >= PARALLEL_MIN else 1


class Kernel(NamedTuple):
    """A kernel compiled twice from one source: multi-threaded and single-threaded."""

    parallel: object
    serial: object

    def pick(self, size: int):
        """The variant for an input of ``size`` elements (the first parallel one starts numba's
        thread pool: :func:`normlab.kernels.start_pool`)."""
        if size < PARALLEL_MIN:
            return self.serial
        if not _threads.started:
            _threads.start_pool()
        return self.parallel


def _jit(fn) -> Kernel:
    opts = dict(cache=True, fastmath=_FAST, nogil=True)
    # A renamed copy, so the two variants get separate on-disk cache entries.
    serial = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial")
    serial.__qualname__ = fn.__qualname__ + "_serial"
    serial.__doc__ = fn.__doc__
    return Kernel(nb.njit(fn, parallel=True, **opts), nb.njit(serial, **opts))


@nb.njit(cache=True, nogil=True)
def ema_update(running_mean, running_var, mean, var, momentum, var_factor):
    """Running statistics in place: ``r = momentum * r + (1 - momentum) * batch`` (C,).

    ``var_factor`` multiplies the batch variance first (``m / (m - 1)`` for the unbiased one).
    Two passes: the new values are formed in the running arrays' dtype first, and written only
    if every one is finite. Returns the number of channels whose new value is not (float64
    statistics overflowing a float32 running array), with nothing written; 0 when all are.
    """
    C = mean.shape[0]
    new_mean = np.empty(C, running_mean.dtype)
    new_var = np.empty(C, running_var.dtype)
    bad = 0
    for c in range(C):
        new_mean[c] = momentum * running_mean[c] + (1.0 - momentum) * mean[c]
        new_var[c] = momentum * running_var[c] + (1.0 - momentum) * var_factor * var[c]
        if not (np.isfinite(new_mean[c]) and np.isfinite(new_var[c])):
            bad += 1
    if bad == 0:
        running_mean[:] = new_mean
        running_var[:] = new_var
    return bad


@_jit
def cols_forward(x, gamma, beta, eps, out, mean, var, rstd, nchunks):
    """Batch norm over columns, S = 1: x (N, D) -> out (N, D); mean, var, rstd (D,) float64 out.

    Statistics in one pass: sums of ``x - m0`` and ``(x - m0)^2``, ``m0`` the mean of sampled
    rows, by ``nchunks`` chunks of rows in parallel (:func:`chunks`; memory read in order),
    added up in float64. If :func:`_shifted_stats` refuses a column, the pass is made again
    with that column shifted by its first-pass mean; if one is still refused (overflow, NaN),
    every column by the corrected two-pass of :func:`_cols_stats`. Output: parallel over rows.
    (Tiling the columns so that the second pass finds its tile in L2 was measured slower: a
    tile's rows are a page apart and the hardware prefetchers stop at page boundaries.)
    """
    N, D = x.shape
    T = max(1, min(nchunks, N // _ROWS))
    m0 = np.empty(D, x.dtype)
    _cols_sample_mean(x, m0)
    p1 = np.empty((T, D))  # per-chunk sum(x - m0)
    p2 = np.empty((T, D))  # per-chunk sum((x - m0)^2)
    m2 = np.empty(D)
    redo = 0
    for _attempt in range(2):  # a refused column's second shift is its first-pass mean
        p1[:] = 0.0
        p2[:] = 0.0
        for t in prange(T):
            s = np.empty(_TILE, x.dtype)
            q = np.empty(_TILE, x.dtype)
            _cols_shifted_sums(x, t * N // T, (t + 1) * N // T, m0, p1[t], p2[t], s, q)
        redo = 0
        for j in prange(D):
            t1, t2 = _chunk_totals(p1, p2, j)
            ok, mean[j], m2[j] = _shifted_stats(m0[j], t1, t2, N, eps, _tiny(x))
            if not ok:
                m0[j] = _like(mean[j], x)
                redo += 1
        if redo == 0:
            break
    if redo:  # float32 overflow, or NaN/inf: the corrected two-pass with float64 fallbacks
        mean[:] = 0.0
        m2[:] = 0.0
        b0 = np.empty(_TILE, x.dtype)
        b1 = np.empty(_TILE, x.dtype)
        b2 = np.empty(_TILE, x.dtype)
        _cols_stats(x, mean, m2, b0, b1, b2, eps)
    var[:] = m2 / N
    rstd[:] = 1.0 / np.sqrt(var + eps)
    mh, a, b = _affine_coefs(x, mean, rstd, gamma, beta)
    for n in prange(N):
        row = x[n]
        o = out[n]
        for j in range(D):
            o[j] = (row[j] - mh[j]) * a[j] + b[j]


@_jit
def cols_backward(dy, x, mean, rstd, gamma, dx, dgamma, dbeta, nchunks):
    """Closed-form batch-norm backward, S = 1: dy, x (N, D) -> dx (N, D); dgamma, dbeta (D,).

    Pass 1, ``nchunks`` chunks of rows in parallel: ``sum(dy)`` and ``sum(dy * (x - mh))``
    per column by :func:`_cols_grad_sums`, into float64 per-chunk totals. Pass 2, parallel over
    rows: ``dx = A * dy + B * ((x - mh) * R) + Cc`` per column (:func:`_backward_coef`).
    """
    N, D = x.shape
    mh = np.empty(D, x.dtype)
    for j in range(D):
        mh[j] = _like(mean[j], x)
    T = max(1, min(nchunks, N // _ROWS))
    ps = np.zeros((T, D))  # float64 sum(dy) per chunk
    pd = np.zeros((T, D))  # float64 sum(dy * (x - mh)) per chunk
    for t in prange(T):
        bdy = np.empty(_TILE, x.dtype)
        bdx = np.empty(_TILE, x.dtype)
        _cols_grad_sums(dy, x, t * N // T, (t + 1) * N // T, mh, ps[t], pd[t], bdy, bdx)
    for j in prange(D):
        sdy, sdx = _chunk_totals(ps, pd, j)
        # sum(dy * (x - mean)) = sum(dy * (x - mh)) - (mean - mh) * sum(dy)
        dgamma[j] = (sdx - (mean[j] - mh[j]) * sdy) * rstd[j]
        dbeta[j] = sdy
    _, R, A, B, Cc = _backward_coefs(x, mean, rstd, gamma, dgamma, dbeta, N)
    for n in prange(N):  # dx = A dy + B xhat + Cc, xhat up to a shift folded into Cc
        _dx_cols(dy[n], x[n], mh, R, A, B, Cc, dx[n])


@_jit
def spatial_forward(x, gamma, beta, eps, out, mean, var, rstd):
    """Batch norm per channel over (N, S): x (N, C, S) -> out; mean, var, rstd (C,) float64.

    Channel by channel (channels in parallel): the statistics over the channel's N segments
    (corrected two-pass per segment block, merged), then its output pass, which finds them in L2
    when the channel's N*S values fit.
    (So at most C threads work: an input with fewer channels than cores leaves some idle.)
    """
    N, C, S = x.shape
    M = N * S
    for ch in prange(C):
        mu, m2, cnt = 0.0, 0.0, 0  # corrected two-pass per segment, segments merged (Chan)
        for n in range(N):
            bm, bq = _seg_stats(x[n, ch], eps)
            mu, m2, cnt = _merge(mu, m2, cnt, bm, bq, S)
        v = m2 / M
        rs = 1.0 / np.sqrt(v + eps)
        mean[ch] = mu
        var[ch] = v
        rstd[ch] = rs
        m, sc, sh = _affine_coef(x, mu, rs, gamma[ch], beta[ch])
        for n in range(N):
            row = x[n, ch]
            o = out[n, ch]
            for s in range(S):
                o[s] = (row[s] - m) * sc + sh


@_jit
def spatial_backward(dy, x, mean, rstd, gamma, dx, dgamma, dbeta):
    """Closed-form spatial batch-norm backward: dy, x (N, C, S) -> dx; dgamma, dbeta (C,).

    Channel by channel, as the forward: the gradient sums over the channel's N segments, then
    its dx pass, which finds dy and x in L2 when the channel's 2*N*S values fit.
    """
    N, C, S = x.shape
    M = N * S
    for ch in prange(C):
        m = _like(mean[ch], x)
        sdy = 0.0
        sdx = 0.0  # sum(dy * (x - m))
        for n in range(N):
            t1, t2 = _seg_grad_sums(dy[n, ch], x[n, ch], m)
            sdy += t1
            sdx += t2
        dg = (sdx - (mean[ch] - m) * sdy) * rstd[ch]
        dgamma[ch] = dg
        dbeta[ch] = sdy
        m, r, ac, bc, cc = _backward_coef(x, mean[ch], rstd[ch], gamma[ch], dg, sdy, M)
        for n in range(N):  # dx = A dy + B xhat + Cc, xhat up to a shift folded into Cc
            _dx_seg(dy[n, ch], x[n, ch], m, r, ac, bc, cc, dx[n, ch])


@_jit
def rows_forward(x, gamma, beta, G, K, S, eps, out, mean, var, rstd):
    """Layer/group norm per row: x (R, L = K*S) -> out; mean, var, rstd (R,) float64 out.

    The statistics by the corrected two-pass per block of the row (:func:`_seg_stats`), then the
    output pass, which finds the row in cache.
    """
    R, L = x.shape
    for r in prange(R):
        row = x[r]
        o = out[r]
        mu, m2 = _seg_stats(row, eps)  # corrected two-pass per block, blocks merged
        v = m2 / L
        mean[r] = mu
        var[r] = v
        rs = 1.0 / np.sqrt(v + eps)
        rstd[r] = rs
        m = _like(mu, x)
        base = (r % G) * K
        if S == 1:
            gs = gamma[base : base + K]
            bs = beta[base : base + K]
            rs_ = _like(rs, x)
            q = _like(-(mu - m) * rs, x)  # xhat = (x - m) * rs + q
            for i in range(L):
                o[i] = ((row[i] - m) * rs_ + q) * gs[i] + bs[i]
        else:
            for k in range(K):
                xs = row[k * S : (k + 1) * S]  # 1-D slices from 0: these loops vectorise
                os_ = o[k * S : (k + 1) * S]
                sc64 = rs * gamma[base + k]
                sc = _like(sc64, x)
                sh = _like(beta[base + k] - (mu - m) * sc64, x)
                for s in range(S):
                    os_[s] = (xs[s] - m) * sc + sh


@_jit
def rows_backward(dy, x, mean, rstd, gamma, G, K, S, dx, dgamma_part, dbeta_part):
    """Closed-form layer/group-norm backward per row.

    dy, x (R, L) -> dx (R, L); per-chunk partial parameter gradients dgamma_part,
    dbeta_part (T, G*K) float64, zero on entry, summed over T by the caller. Each row's second
    pass re-reads it from cache. For S == 1 the per-feature gradient sums are kept in x's dtype
    over ``_FLUSH`` rows and then added into the float64 partials.
    """
    R, L = x.shape
    T = dgamma_part.shape[0]
    for t in prange(T):
        dgp = dgamma_part[t]
        dbp = dbeta_part[t]
        r0 = t * R // T
        r1 = (t + 1) * R // T
        C = G * K if S == 1 else 0
        accg = np.zeros(C, x.dtype)  # sum(dy * xhat) per channel over a block of rows
        accb = np.zeros(C, x.dtype)  # sum(dy)
        pending = 0  # rows summed into accg, accb since the last flush
        for r in range(r0, r1):
            g = dy[r]
            xr = x[r]
            o = dx[r]
            mu = mean[r]
            rs = rstd[r]
            m = _like(mu, x)
            ml = mu - m
            base = (r % G) * K
            if S == 1:
                gs = gamma[base : base + K]
                ag = accg[base : base + K]
                ab = accb[base : base + K]
                rs_ = _like(rs, x)
                q = _like(-ml * rs, x)  # xhat = (x - m) * rs + q
                t1, t2 = 0.0, 0.0  # float64 sum(dy * gamma), sum(dy * gamma * (x - m))
                for b0 in range(0, L, _BLOCK):
                    b1 = min(b0 + _BLOCK, L)
                    gb = g[b0:b1]
                    xb = xr[b0:b1]
                    gsb = gs[b0:b1]
                    agb = ag[b0:b1]
                    abb = ab[b0:b1]
                    a1 = _like(0.0, x)
                    a2 = _like(0.0, x)
                    for i in range(b1 - b0):  # the row's sums and the per-feature sums
                        gi = gb[i]
                        d = xb[i] - m
                        gg = gi * gsb[i]
                        a1 += gg
                        a2 += gg * d
                        agb[i] += gi * (d * rs_ + q)
                        abb[i] += gi
                    if np.isfinite(a1) and np.isfinite(a2):
                        t1 += a1
                        t2 += a2
                    else:  # overflow in x's dtype, or NaN/inf: this block in float64
                        for i in range(b1 - b0):
                            gg64 = np.float64(gb[i]) * gsb[i]
                            t1 += gg64
                            t2 += gg64 * (np.float64(xb[i]) - m)
                m1 = t1 / L  # mean(dy * gamma)
                m2 = (t2 - ml * t1) * rs / L  # mean(dy * gamma * xhat)
                # dx = rs*gamma*dy + P*((x - m)*rs) + Q: rs applied twice, never rs^2 (which
                # leaves float32 for |x| ~ 1e20 or ~1e-20 while dx stays in it)
                P = _like(-rs * m2, x)
                Q = _like(-rs * (m1 - m2 * (ml * rs)), x)
                _dx_gamma(g, xr, gs, m, rs_, P, Q, o)  # element-wise: dx
                pending += 1
                if pending == _FLUSH or r == r1 - 1:
                    pending = 0
                    for c in range(C):
                        dgp[c] += accg[c]
                        dbp[c] += accb[c]
                        accg[c] = 0
                        accb[c] = 0
            else:
                s1, s2 = 0.0, 0.0  # float64 sum(dy * gamma), sum(dy * gamma * (x - m))
                for k in range(K):
                    a1, a2 = _seg_grad_sums(g[k * S : (k + 1) * S], xr[k * S : (k + 1) * S], m)
                    a2 = (a2 - ml * a1) * rs  # sum(dy * xhat) over channel k
                    s1 += gamma[base + k] * a1
                    s2 += gamma[base + k] * a2
                    dgp[base + k] += a2
                    dbp[base + k] += a1
                m1 = s1 / L  # mean(dy * gamma)
                m2 = s2 / L  # mean(dy * gamma * xhat)
                rs_ = _like(rs, x)
                P = _like(-rs * m2, x)  # dx = rs*gamma*dy + P*((x - m)*rs) + Q, as for S == 1
                Q = _like(-rs * (m1 - m2 * (ml * rs)), x)
                for k in range(K):
                    gk = _like(rs * gamma[base + k], x)
                    ks = slice(k * S, (k + 1) * S)
                    _dx_seg(g[ks], xr[ks], m, rs_, gk, P, Q, o[ks])
