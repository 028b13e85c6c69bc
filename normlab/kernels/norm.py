"""Fused numba kernels for batch, spatial batch, layer and group normalization.

Every kernel computes the same math as ``normlab.layers.norm_core`` (the readable NumPy
reference its tests compare against), with statistics accumulated in float64 whatever the
input dtype. Two memory layouts cover the four layers:

* **columns** ``x (N, C, S)``: statistics per channel ``c`` over ``n`` and ``s`` (batch norm,
  ``S = 1``; spatial batch norm, ``S = H*W``);
* **rows** ``x (R, L)`` with ``R = N*G`` and ``L = K*S``: statistics per row (layer norm,
  ``G = 1, K = D, S = 1``; group norm, ``K = C/G, S = H*W``); ``gamma``/``beta`` are per channel
  ``g*K + k``.

Forward (train) makes two passes over memory: one for the mean and variance (a two-pass mean
and M2 per cache-sized block, blocks merged with Chan et al.'s update -- never
``E[x^2] - E[x]^2``), one writing ``y = (x - mu) * gamma / sqrt(var + eps) + beta``. For the
rows layout the second pass re-reads a row still in cache.
Reductions are split over threads by channel (or by blocks of rows with per-thread partial
sums); element-wise passes by row. Inner loops run over 1-D row slices so LLVM vectorises them.
Backward makes two: one for ``sum(dy)`` and ``sum(dy * xhat)``, one writing the closed form
``dx = gamma * rstd * (dy - mean(dy) - xhat * mean(dy * xhat))`` (rows use ``dy * gamma``
inside the means, since there gamma varies within a row).
"""

from __future__ import annotations

import types
from typing import NamedTuple

import numba as nb
import numpy as np
from numba import prange

# Reassociation lets LLVM vectorise the float64 sums; no nnan/ninf, so NaNs still propagate.
_FAST = {"reassoc", "contract"}
_BLOCK = 2048  # elements per two-pass block: 8-16 KiB, stays in L1 between its two passes
# Below this many elements (4 MiB of float32) a kernel runs on the calling thread. Waking the
# pool costs tens of microseconds, and after a parallel region its OpenMP threads spin-wait,
# taking the cores from the BLAS threads of the next matrix product: a batch-norm ConvNet step
# on 2 cores measured 36 ms with a 65536-element threshold and 24 ms with this one.
PARALLEL_MIN = 1 << 20
_ROWS = 16  # rows per block of the column statistics


class Kernel(NamedTuple):
    """A kernel compiled twice from one source: multi-threaded and single-threaded."""

    parallel: object
    serial: object

    def pick(self, size: int):
        """The variant for an input of ``size`` elements."""
        return self.parallel if size >= PARALLEL_MIN else self.serial


def _jit(fn) -> Kernel:
    opts = dict(cache=True, fastmath=_FAST, nogil=True)
    # A renamed copy, so the two variants get separate on-disk cache entries.
    serial = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial")
    serial.__qualname__ = fn.__qualname__ + "_serial"
    serial.__doc__ = fn.__doc__
    return Kernel(nb.njit(fn, parallel=True, **opts), nb.njit(serial, **opts))


@nb.njit(cache=True, fastmath=_FAST, inline="always")
def _two_pass(a):
    """Mean and sum of squared deviations of a 1-D block: sum(x)/n, then sum((x - mean)^2)."""
    n = a.shape[0]
    s = 0.0
    for i in range(n):
        s += a[i]
    m = s / n
    q = 0.0
    for i in range(n):
        d = a[i] - m
        q += d * d
    return m, q


@nb.njit(cache=True, fastmath=_FAST, inline="always")
def _merge(mean, m2, cnt, bm, bq, k):
    """Chan et al.'s pairwise update of (mean, M2, count) with a block's (mean, M2, count)."""
    tot = cnt + k
    delta = bm - mean
    return mean + delta * (k / tot), m2 + bq + delta * delta * (cnt * k / tot), tot


@nb.njit(cache=True, fastmath=_FAST, inline="always")
def _seg_stats(a):
    """Mean and M2 of a 1-D array: two-pass per block of _BLOCK, blocks merged."""
    n = a.shape[0]
    mean, m2, cnt = 0.0, 0.0, 0
    for b in range(0, n, _BLOCK):
        blk = a[b : min(b + _BLOCK, n)]
        bm, bq = _two_pass(blk)
        mean, m2, cnt = _merge(mean, m2, cnt, bm, bq, blk.shape[0])
    return mean, m2


@nb.njit(cache=True, nogil=True)
def ema_update(running_mean, running_var, mean, var, momentum, var_factor):
    """Running statistics in place: ``r = momentum * r + (1 - momentum) * batch`` (C,).

    ``var_factor`` multiplies the batch variance first (``m / (m - 1)`` for the unbiased one).
    """
    for c in range(mean.shape[0]):
        running_mean[c] = momentum * running_mean[c] + (1.0 - momentum) * mean[c]
        running_var[c] = momentum * running_var[c] + (1.0 - momentum) * var_factor * var[c]


@_jit
def cols_forward(x, gamma, beta, eps, out, mean, var, rstd, nthreads):
    """Batch norm over columns, S = 1: x (N, D) -> out (N, D); mean, var, rstd (D,) float64 out.

    Statistics: ``nthreads`` blocks of columns (numba cannot cache a kernel that asks for its
    thread count itself); down the rows in blocks of ``_ROWS``: a two-pass mean and M2 per block
    (the block is in L1/L2 for its second pass), blocks merged with Chan's update, all in
    float64. Output: parallel over rows.
    """
    N, D = x.shape
    T = max(1, min(nthreads, D // 16))
    for t in prange(T):
        c0 = t * D // T
        c1 = (t + 1) * D // T
        k = c1 - c0
        m = np.zeros(k)  # (k,) float64 mean so far
        m2 = np.zeros(k)  # (k,) float64 sum of squared deviations so far
        bs = np.empty(k)  # (k,) block mean, float64
        bq = np.empty(k)  # (k,) block M2, float64
        cnt = 0
        for n0 in range(0, N, _ROWS):
            n1 = min(n0 + _ROWS, N)
            nb_ = n1 - n0
            bs[:] = 0
            for n in range(n0, n1):
                row = x[n, c0:c1]
                for j in range(k):
                    bs[j] += row[j]
            for j in range(k):
                bs[j] /= nb_
            bq[:] = 0
            for n in range(n0, n1):
                row = x[n, c0:c1]
                for j in range(k):
                    d = row[j] - bs[j]
                    bq[j] += d * d
            f1 = nb_ / (cnt + nb_)
            f2 = cnt * f1
            for j in range(k):
                delta = bs[j] - m[j]
                m[j] += delta * f1
                m2[j] += bq[j] + delta * delta * f2
            cnt += nb_
        mean[c0:c1] = m
        var[c0:c1] = m2 / N
    rstd[:] = 1.0 / np.sqrt(var + eps)
    scale = gamma * rstd  # (D,)
    for n in prange(N):
        row = x[n]
        o = out[n]
        for j in range(D):
            o[j] = (row[j] - mean[j]) * scale[j] + beta[j]


@_jit
def cols_backward(dy, x, mean, rstd, gamma, dx, dgamma, dbeta, nthreads):
    """Closed-form batch-norm backward, S = 1: dy, x (N, D) -> dx (N, D); dgamma, dbeta (D,).

    Pass 1, ``nthreads`` blocks of columns: ``sum(dy)`` and ``sum(dy * (x - mean))`` in float64.
    Pass 2, parallel over rows: ``dx = a * dy + b * (x - mean) + c`` per column.
    """
    N, D = x.shape
    T = max(1, min(nthreads, D // 16))
    for t in prange(T):
        c0 = t * D // T
        c1 = (t + 1) * D // T
        sdy = np.zeros(c1 - c0)
        sdyx = np.zeros(c1 - c0)  # sum(dy * (x - mean))
        mu = mean[c0:c1]
        for n in range(N):
            g = dy[n, c0:c1]
            xr = x[n, c0:c1]
            for j in range(c1 - c0):
                gj = np.float64(g[j])
                sdy[j] += gj
                sdyx[j] += gj * (xr[j] - mu[j])
        dgamma[c0:c1] = sdyx * rstd[c0:c1]
        dbeta[c0:c1] = sdy
    a = gamma * rstd  # (D,)  dx = a*dy + b*(x - mean) + c
    b = -a * rstd * dgamma / N
    c = -a * dbeta / N
    for n in prange(N):
        g = dy[n]
        xr = x[n]
        o = dx[n]
        for j in range(D):
            o[j] = a[j] * g[j] + b[j] * (xr[j] - mean[j]) + c[j]


@_jit
def spatial_forward(x, gamma, beta, eps, out, mean, var, rstd):
    """Batch norm per channel over (N, S): x (N, C, S) -> out; mean, var, rstd (C,) float64."""
    N, C, S = x.shape
    for ch in prange(C):
        mu, m2, cnt = 0.0, 0.0, 0
        for n in range(N):
            bm, bq = _seg_stats(x[n, ch])
            mu, m2, cnt = _merge(mu, m2, cnt, bm, bq, S)
        mean[ch] = mu
        var[ch] = m2 / cnt
    rstd[:] = 1.0 / np.sqrt(var + eps)
    scale = gamma * rstd  # (C,)
    for r in prange(N * C):
        n, ch = r // C, r % C
        row = x[n, ch]
        o = out[n, ch]
        mu, sc, sh = mean[ch], scale[ch], beta[ch]
        for s in range(S):
            o[s] = (row[s] - mu) * sc + sh


@_jit
def spatial_backward(dy, x, mean, rstd, gamma, dx, dgamma, dbeta):
    """Closed-form spatial batch-norm backward: dy, x (N, C, S) -> dx; dgamma, dbeta (C,)."""
    N, C, S = x.shape
    M = N * S
    for ch in prange(C):
        mu = mean[ch]
        sdy = 0.0
        sdyx = 0.0
        for n in range(N):
            g = dy[n, ch]
            xr = x[n, ch]
            for s in range(S):
                sdy += g[s]
                sdyx += np.float64(g[s]) * (xr[s] - mu)
        dgamma[ch] = sdyx * rstd[ch]
        dbeta[ch] = sdy
    a = gamma * rstd  # (C,)
    b = -a * rstd * dgamma / M
    c = -a * dbeta / M
    for r in prange(N * C):
        n, ch = r // C, r % C
        g = dy[n, ch]
        xr = x[n, ch]
        o = dx[n, ch]
        mu, ac, bc, cc = mean[ch], a[ch], b[ch], c[ch]
        for s in range(S):
            o[s] = ac * g[s] + bc * (xr[s] - mu) + cc


@_jit
def rows_forward(x, gamma, beta, G, K, S, eps, out, mean, var, rstd):
    """Layer/group norm per row: x (R, L = K*S) -> out; mean, var, rstd (R,) float64 out."""
    R, L = x.shape
    for r in prange(R):
        row = x[r]
        o = out[r]
        mu, m2 = _seg_stats(row)
        v = m2 / L
        mean[r] = mu
        var[r] = v
        rs = 1.0 / np.sqrt(v + eps)
        rstd[r] = rs
        base = (r % G) * K
        if S == 1:
            gs = gamma[base : base + K]
            bs = beta[base : base + K]
            for i in range(L):
                o[i] = (row[i] - mu) * (rs * gs[i]) + bs[i]
        else:
            for k in range(K):
                xs = row[k * S : (k + 1) * S]  # 1-D slices from 0: these loops vectorise
                os_ = o[k * S : (k + 1) * S]
                sc = rs * gamma[base + k]
                sh = beta[base + k]
                for s in range(S):
                    os_[s] = (xs[s] - mu) * sc + sh


@_jit
def rows_backward(dy, x, mean, rstd, gamma, G, K, S, dx, dgamma_part, dbeta_part):
    """Closed-form layer/group-norm backward per row.

    dy, x (R, L) -> dx (R, L); per-thread partial parameter gradients dgamma_part,
    dbeta_part (T, G*K) float64, zero on entry, summed over T by the caller. Each row's second
    pass re-reads it from cache.
    """
    R, L = x.shape
    T = dgamma_part.shape[0]
    for t in prange(T):
        dgp = dgamma_part[t]
        dbp = dbeta_part[t]
        for r in range(t * R // T, (t + 1) * R // T):
            g = dy[r]
            xr = x[r]
            o = dx[r]
            mu = mean[r]
            rs = rstd[r]
            base = (r % G) * K
            s1 = 0.0  # sum(dy * gamma)
            s2 = 0.0  # sum(dy * gamma * xhat)
            if S == 1:
                gs = gamma[base : base + K]
                dgs = dgp[base : base + K]
                dbs = dbp[base : base + K]
                for i in range(L):  # reductions only: this loop vectorises
                    gg = np.float64(g[i]) * gs[i]
                    s1 += gg
                    s2 += gg * (xr[i] - mu)
                m1 = s1 / L
                m2 = s2 * rs / L
                for i in range(L):  # element-wise only
                    gi = np.float64(g[i])
                    xh = (xr[i] - mu) * rs
                    dgs[i] += gi * xh
                    dbs[i] += gi
                    o[i] = rs * (gi * gs[i] - m1 - xh * m2)
            else:
                for k in range(K):
                    gs = g[k * S : (k + 1) * S]
                    xs = xr[k * S : (k + 1) * S]
                    a1 = 0.0
                    a2 = 0.0
                    for s in range(S):
                        a1 += gs[s]
                        a2 += np.float64(gs[s]) * (xs[s] - mu)
                    a2 *= rs
                    s1 += gamma[base + k] * a1
                    s2 += gamma[base + k] * a2
                    dgp[base + k] += a2
                    dbp[base + k] += a1
                m1 = s1 / L
                m2 = s2 / L
                for k in range(K):
                    gk = gamma[base + k]
                    gs = g[k * S : (k + 1) * S]
                    xs = xr[k * S : (k + 1) * S]
                    os_ = o[k * S : (k + 1) * S]
                    for s in range(S):
                        os_[s] = rs * (gs[s] * gk - m1 - (xs[s] - mu) * rs * m2)
