"""Fused numba kernels for batch, spatial batch, layer and group normalization.

Every kernel computes the same math as ``normlab.layers.norm_core`` (the readable NumPy
reference its tests compare against), with statistics accumulated in float64 whatever the
input dtype. Two memory layouts cover the four layers:

* **columns** ``x (N, C, S)``: statistics per channel ``c`` over ``n`` and ``s`` (batch norm,
  ``S = 1``; spatial batch norm, ``S = H*W``);
* **rows** ``x (R, L)`` with ``R = N*G`` and ``L = K*S``: statistics per row (layer norm,
  ``G = 1, K = D, S = 1``; group norm, ``K = C/G, S = H*W``); ``gamma``/``beta`` are per channel
  ``g*K + k``.

Forward (train) makes two passes over memory: one for the mean and variance (Welford across
rows for ``S = 1`` columns; blocked two-pass with Chan's merge otherwise -- never
``E[x^2] - E[x]^2``), one writing ``y = (x - mu) * gamma / sqrt(var + eps) + beta``.
Backward makes two: one for ``sum(dy)`` and ``sum(dy * xhat)``, one writing the closed form
``dx = gamma * rstd * (dy - mean(dy) - xhat * mean(dy * xhat))`` (rows use ``dy * gamma``
inside the means, since there gamma varies within a row).
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba import prange

# Reassociation lets LLVM vectorise the float64 sums; no nnan/ninf, so NaNs still propagate.
_FAST = {"reassoc", "contract"}
_BLOCK = 2048  # elements per two-pass block: 16 KiB of float64, stays in L1/L2 between passes


def _jit(fn):
    return nb.njit(fn, parallel=True, cache=True, fastmath=_FAST, nogil=True)


@nb.njit(cache=True, fastmath=_FAST, nogil=True)
def _seg_stats(a, lo, hi):
    """Mean and sum of squared deviations of a[lo:hi] (blocked two-pass, Chan merge)."""
    mean = 0.0
    m2 = 0.0
    cnt = 0
    b = lo
    while b < hi:
        e = min(b + _BLOCK, hi)
        k = e - b
        s = 0.0
        for i in range(b, e):
            s += a[i]
        bm = s / k
        q = 0.0
        for i in range(b, e):
            d = a[i] - bm
            q += d * d
        tot = cnt + k
        delta = bm - mean
        mean += delta * k / tot
        m2 += q + delta * delta * (cnt * k / tot)
        cnt = tot
        b = e
    return mean, m2


@_jit
def cols_forward(x, gamma, beta, eps, out, mean, var, nthreads):
    """Batch norm over columns, S = 1: x (N, D) -> out (N, D); mean, var (D,) float64 out.

    Columns are split into ``nthreads`` blocks (numba cannot cache a kernel that asks for its
    thread count itself).
    """
    N, D = x.shape
    T = max(1, min(nthreads, D // 8))  # column blocks, one per thread
    for t in prange(T):
        c0 = t * D // T
        k = (t + 1) * D // T - c0
        m = np.zeros(k)  # (k,) running mean, Welford across rows
        m2 = np.zeros(k)  # (k,) running sum of squared deviations
        for n in range(N):
            inv = 1.0 / (n + 1)
            for j in range(k):
                v = np.float64(x[n, c0 + j])
                d = v - m[j]
                m[j] += d * inv
                m2[j] += d * (v - m[j])
        sc = np.empty(k)
        for j in range(k):
            vj = m2[j] / N
            mean[c0 + j] = m[j]
            var[c0 + j] = vj
            sc[j] = gamma[c0 + j] / np.sqrt(vj + eps)
        for n in range(N):
            for j in range(k):
                out[n, c0 + j] = (x[n, c0 + j] - m[j]) * sc[j] + beta[c0 + j]


@_jit
def cols_backward(dy, x, mean, rstd, gamma, dx, dgamma, dbeta, nthreads):
    """Closed-form batch-norm backward, S = 1: dy, x (N, D) -> dx (N, D), dgamma, dbeta (D,)."""
    N, D = x.shape
    T = max(1, min(nthreads, D // 8))  # column blocks, one per thread
    for t in prange(T):
        c0 = t * D // T
        k = (t + 1) * D // T - c0
        sdy = np.zeros(k)
        sdyx = np.zeros(k)  # sum(dy * (x - mean))
        for n in range(N):
            for j in range(k):
                g = np.float64(dy[n, c0 + j])
                sdy[j] += g
                sdyx[j] += g * (x[n, c0 + j] - mean[c0 + j])
        a = np.empty(k)
        b = np.empty(k)
        c = np.empty(k)
        for j in range(k):
            r = rstd[c0 + j]
            dg = sdyx[j] * r
            dgamma[c0 + j] = dg
            dbeta[c0 + j] = sdy[j]
            a[j] = gamma[c0 + j] * r
            b[j] = -a[j] * r * dg / N
            c[j] = -a[j] * sdy[j] / N
        for n in range(N):
            for j in range(k):
                dx[n, c0 + j] = a[j] * dy[n, c0 + j] + b[j] * (x[n, c0 + j] - mean[c0 + j]) + c[j]


@_jit
def spatial_forward(x, gamma, beta, eps, out, mean, var):
    """Batch norm per channel over (N, S): x (N, C, S) -> out; mean, var (C,) float64 out."""
    N, C, S = x.shape
    for ch in prange(C):
        mu = 0.0
        m2 = 0.0
        cnt = 0
        for n in range(N):
            bm, bq = _seg_stats(x[n, ch], 0, S)
            tot = cnt + S
            delta = bm - mu
            mu += delta * S / tot
            m2 += bq + delta * delta * (cnt * S / tot)
            cnt = tot
        v = m2 / cnt
        mean[ch] = mu
        var[ch] = v
        sc = gamma[ch] / np.sqrt(v + eps)
        sh = np.float64(beta[ch])
        for n in range(N):
            for s in range(S):
                out[n, ch, s] = (x[n, ch, s] - mu) * sc + sh


@_jit
def spatial_backward(dy, x, mean, rstd, gamma, dx, dgamma, dbeta):
    """Closed-form spatial batch-norm backward: dy, x (N, C, S) -> dx, dgamma, dbeta (C,)."""
    N, C, S = x.shape
    M = N * S
    for ch in prange(C):
        mu = mean[ch]
        sdy = 0.0
        sdyx = 0.0
        for n in range(N):
            for s in range(S):
                g = np.float64(dy[n, ch, s])
                sdy += g
                sdyx += g * (x[n, ch, s] - mu)
        r = rstd[ch]
        dg = sdyx * r
        dgamma[ch] = dg
        dbeta[ch] = sdy
        a = gamma[ch] * r
        b = -a * r * dg / M
        c = -a * sdy / M
        for n in range(N):
            for s in range(S):
                dx[n, ch, s] = a * dy[n, ch, s] + b * (x[n, ch, s] - mu) + c


@_jit
def rows_forward(x, gamma, beta, G, K, S, eps, out, mean, var):
    """Layer/group norm per row: x (R, L = K*S) -> out; mean, var (R,) float64 out."""
    R, L = x.shape
    for r in prange(R):
        mu, m2 = _seg_stats(x[r], 0, L)
        v = m2 / L
        mean[r] = mu
        var[r] = v
        rs = 1.0 / np.sqrt(v + eps)
        base = (r % G) * K
        if S == 1:
            for i in range(L):
                out[r, i] = (x[r, i] - mu) * (rs * gamma[base + i]) + beta[base + i]
        else:
            for k in range(K):
                sc = rs * gamma[base + k]
                sh = np.float64(beta[base + k])
                for s in range(S):
                    out[r, k * S + s] = (x[r, k * S + s] - mu) * sc + sh


@_jit
def rows_backward(dy, x, mean, rstd, gamma, G, K, S, dx, dgamma_part, dbeta_part):
    """Closed-form layer/group-norm backward per row.

    dy, x (R, L) -> dx (R, L); per-thread partial parameter gradients dgamma_part,
    dbeta_part (T, G*K) float64, zero on entry, summed over T by the caller.
    """
    R, L = x.shape
    T = dgamma_part.shape[0]
    for t in prange(T):
        for r in range(t * R // T, (t + 1) * R // T):
            mu = mean[r]
            rs = rstd[r]
            base = (r % G) * K
            s1 = 0.0  # sum(dy * gamma)
            s2 = 0.0  # sum(dy * gamma * xhat)
            if S == 1:
                for i in range(L):
                    g = np.float64(dy[r, i])
                    xh = (x[r, i] - mu) * rs
                    gg = g * gamma[base + i]
                    s1 += gg
                    s2 += gg * xh
                    dgamma_part[t, base + i] += g * xh
                    dbeta_part[t, base + i] += g
            else:
                for k in range(K):
                    gk = np.float64(gamma[base + k])
                    a1 = 0.0
                    a2 = 0.0
                    for s in range(S):
                        g = np.float64(dy[r, k * S + s])
                        a1 += g
                        a2 += g * (x[r, k * S + s] - mu)
                    a2 *= rs
                    s1 += gk * a1
                    s2 += gk * a2
                    dgamma_part[t, base + k] += a2
                    dbeta_part[t, base + k] += a1
            m1 = s1 / L
            m2 = s2 / L
            if S == 1:
                for i in range(L):
                    xh = (x[r, i] - mu) * rs
                    dx[r, i] = rs * (dy[r, i] * gamma[base + i] - m1 - xh * m2)
            else:
                for k in range(K):
                    gk = np.float64(gamma[base + k])
                    for s in range(S):
                        i = k * S + s
                        xh = (x[r, i] - mu) * rs
                        dx[r, i] = rs * (dy[r, i] * gk - m1 - xh * m2)
