"""The numerics shared by the normalization kernels: block statistics, merges, fallbacks.

Inlined into the kernels of :mod:`normlab.kernels.norm` (whose docstring gives the algorithm):
the corrected two-pass statistics of a block in the input's dtype, Chan's merge in float64, the
float64 redo of a block whose float32 sums overflow, batch norm's one-pass shifted column sums
about a sample's mean and the test that accepts them, gradient sums per block, and the
per-channel coefficients of the element-wise passes.

An edit here recompiles the kernels that inline it: their on-disk cache is keyed on every file
of ``normlab/kernels`` (:mod:`normlab.kernels._cache`).
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba.extending import overload

# Reassociation lets LLVM vectorise the sums; no nnan/ninf, so NaNs still propagate.
_FAST = {"reassoc", "contract"}
_BLOCK = 4096  # elements per corrected two-pass block: 16-32 KiB, in L1 for both passes
_ROWS = 16  # rows per block of a column tile
# Columns per tile of the batch-norm column sums. Their float32 scratch (2-3 x 4 KiB) stays in L1,
# and each row of a tile is a 4 KiB run: 256 columns (1 KiB runs) took 8-15 % longer at the
# layer on the 2-core AMD EPYC (batch norm (4096, 1024)). Tiles group columns only: same bits.
_TILE = 1024
# Rows in a batch-norm column's sample: its mean is then off by more than the standard
# deviation (and the pass is redone) for a Gaussian column with probability P(|z| > sqrt(32))
# ~ 1e-8.
_SAMPLE_ROWS = 32


def _like(value, arr):
    """``value`` cast to the dtype of ``arr`` (jitted code only)."""
    raise NotImplementedError("only callable from numba-compiled code")


@overload(_like, inline="always")
def _like_impl(value, arr):
    dtype = arr.dtype

    def impl(value, arr):
        return dtype(value)

    return impl


def _tiny(arr):
    """The smallest normal number of the dtype of ``arr``, as a float (jitted code only)."""
    raise NotImplementedError("only callable from numba-compiled code")


@overload(_tiny, inline="always")
def _tiny_impl(arr):
    tiny = float(np.finfo(nb.np.numpy_support.as_dtype(arr.dtype)).tiny)

    def impl(arr):
        return tiny

    return impl


@nb.njit(cache=True, fastmath=_FAST, inline="always")
def _squares_ok(q, n, eps, tiny):
    """Whether ``q``, a sum of n squared deviations in a dtype whose smallest normal number is
    ``tiny``, gives ``var + eps`` to rounding.

    It must be finite (float32 squares overflow at |x - m| > ~1e19), and ``q / n + eps`` at
    least ``tiny``: a square below ``tiny`` (|x - m| < ~1e-19 in float32) is rounded to a
    subnormal, up to ``tiny * 2^-24`` off, which is within rounding of ``var + eps`` only then.
    With the usual eps (1e-5) every finite ``q`` passes; with ``eps = 1e-45`` and |x - m| ~
    1e-20 it does not.
    """
    return np.isfinite(q) and q + n * eps >= n * tiny


@nb.njit(cache=True, fastmath=_FAST, inline="always")
def _block_stats(a, eps):
    """Mean and M2 (float64) of a 1-D block by the corrected two-pass algorithm.

    The passes run in the block's dtype: ``m0 = sum(a)/n``, then ``s = sum(a - m0)`` and
    ``q = sum((a - m0)^2)``; mean ``m0 + s/n``, ``M2 = q - s^2/n`` (clamped at 0).
    """
    n = a.shape[0]
    t = a[0]
    for i in range(1, n):
        t += a[i]
    m0 = _like(t / n, a)
    s, q = _shifted_sums(a, m0)  # one block: its dtype's sums, as float64
    # float32 overflow (|x| > ~1e19), underflow (|x - m| < ~1e-19), or NaN/inf
    if not (np.isfinite(t) and _squares_ok(q, n, eps, _tiny(a))):
        return _block_stats64(a)
    return m0 + s / n, max(q - s * s / n, 0.0)


@nb.njit(cache=True, fastmath=_FAST, inline="always")
def _block_stats64(a):
    """Mean and M2 of a 1-D block, two passes in float64 (when the block's dtype overflows)."""
    n = a.shape[0]
    t = 0.0
    for i in range(n):
        t += a[i]
    m = t / n
    q = 0.0
    for i in range(n):
        d = a[i] - m
        q += d * d
    return m, q


@nb.njit(cache=True, fastmath=_FAST)
def _grad_sums64(g, xs, mh):
    """``sum(g)`` and ``sum(g * (xs - mh))`` of 1-D arrays in float64 (overflow fallback)."""
    t1, t2 = 0.0, 0.0
    for i in range(g.shape[0]):
        gi = np.float64(g[i])
        t1 += gi
        t2 += gi * (np.float64(xs[i]) - mh)
    return t1, t2


@nb.njit(cache=True, fastmath=_FAST, inline="always")
def _merge(mean, m2, cnt, bm, bq, k):
    """Chan et al.'s pairwise update of (mean, M2, count) with a block's (mean, M2, count)."""
    tot = cnt + k
    delta = bm - mean
    return mean + delta * (k / tot), m2 + bq + delta * delta * (cnt * k / tot), tot


@nb.njit(cache=True, fastmath=_FAST, inline="always")
def _seg_stats(a, eps):
    """Mean and M2 (float64) of a 1-D array: corrected two-pass per block, blocks merged."""
    n = a.shape[0]
    mean, m2, cnt = 0.0, 0.0, 0
    for b in range(0, n, _BLOCK):
        blk = a[b : min(b + _BLOCK, n)]
        bm, bq = _block_stats(blk, eps)
        mean, m2, cnt = _merge(mean, m2, cnt, bm, bq, blk.shape[0])
    return mean, m2


@nb.njit(cache=True, fastmath=_FAST, inline="always")
def _shifted_sums(a, m0):
    """``sum(a - m0)`` and ``sum((a - m0)^2)`` of a 1-D array: per block in its dtype, float64.

    A block that overflows (or holds NaN/inf) makes the second sum inf or NaN, which the caller
    (:func:`_block_stats`) refuses.
    """
    n = a.shape[0]
    t1, t2 = 0.0, 0.0
    for b0 in range(0, n, _BLOCK):
        blk = a[b0 : min(b0 + _BLOCK, n)]
        s = _like(0.0, a)
        q = _like(0.0, a)
        for i in range(blk.shape[0]):
            d = blk[i] - m0
            s += d
            q += d * d
        t1 += s
        t2 += q
    return t1, t2


@nb.njit(cache=True, fastmath=_FAST, inline="always")
def _shifted_stats(m0, t1, t2, n, eps=0.0, tiny=0.0):
    """(ok, mean, M2) from the shifted sums of n values about m0, summed in a dtype whose
    smallest normal number is ``tiny`` (0: no underflow test); ``eps`` is the layer's.

    ``ok`` when the squares neither overflowed nor underflowed (:func:`_squares_ok`) and the
    shift lies within one standard deviation of the mean: then ``t2 <= 2 * M2`` and ``M2 = t2 -
    t1^2 / n`` loses at most one bit to the subtraction, the corrected two-pass bound.
    Otherwise the caller recomputes by blocks.
    """
    d = t1 / n
    m2 = t2 - t1 * d
    ok = _squares_ok(t2, n, eps, tiny) and d * d * n <= m2
    return ok, m0 + d, max(m2, 0.0)


@nb.njit(cache=True, fastmath=_FAST, inline="always")
def _seg_grad_sums(g, xs, mh):
    """``sum(g)`` and ``sum(g * (xs - mh))`` of 1-D segments, per block in their dtype, float64."""
    n = g.shape[0]
    t1, t2 = 0.0, 0.0
    for b0 in range(0, n, _BLOCK):
        gb = g[b0 : min(b0 + _BLOCK, n)]  # slices from 0: the loop vectorises (twice as fast
        xb = xs[b0 : min(b0 + _BLOCK, n)]  # as indexing from b0, measured)
        a1 = _like(0.0, g)
        a2 = _like(0.0, g)
        for i in range(gb.shape[0]):
            a1 += gb[i]
            a2 += gb[i] * (xb[i] - mh)
        if np.isfinite(a1) and np.isfinite(a2):
            t1 += a1
            t2 += a2
        else:  # overflow in x's dtype, or NaN/inf: this block again in float64
            f1, f2 = _grad_sums64(gb, xb, mh)
            t1 += f1
            t2 += f2
    return t1, t2


@nb.njit(cache=True, fastmath=_FAST, inline="always")
def _affine_coef(x, mean, rstd, gamma, beta):
    """One channel's ``y = (x - mh) * a + b`` in x's dtype: (mh, a, b) from float64 stats."""
    m = _like(mean, x)  # the mean rounded to x's dtype
    sc = gamma * rstd
    # (x - mean) * sc = (x - mh) * sc - (mean - mh) * sc
    return m, _like(sc, x), _like(beta - (mean - m) * sc, x)


@nb.njit(cache=True, fastmath=_FAST, inline="always")
def _affine_coefs(x, mean, rstd, gamma, beta):
    """:func:`_affine_coef` of every channel: mh, a, b (C,) in x's dtype."""
    C = mean.shape[0]
    mh = np.empty(C, x.dtype)
    a = np.empty(C, x.dtype)
    b = np.empty(C, x.dtype)
    for c in range(C):
        mh[c], a[c], b[c] = _affine_coef(x, mean[c], rstd[c], gamma[c], beta[c])
    return mh, a, b


@nb.njit(cache=True, fastmath=_FAST, inline="always")
def _tile_shifted_sums(x, b0, b1, c0, c1, mu, s, q):
    """``s = sum(x - mu)``, ``q = sum((x - mu)^2)`` over rows ``b0:b1`` of columns ``c0:c1``.

    In x's dtype, four rows a sweep; ``mu``, ``s``, ``q`` hold at least ``c1 - c0`` values.
    """
    k = c1 - c0
    s[:k] = 0
    q[:k] = 0
    n = b0
    while n + 4 <= b1:
        r0, r1, r2, r3 = x[n, c0:c1], x[n + 1, c0:c1], x[n + 2, c0:c1], x[n + 3, c0:c1]
        for j in range(k):
            mj = mu[j]
            d0, d1, d2, d3 = r0[j] - mj, r1[j] - mj, r2[j] - mj, r3[j] - mj
            s[j] += (d0 + d1) + (d2 + d3)
            q[j] += (d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3)
        n += 4
    for r in range(n, b1):
        r0 = x[r, c0:c1]
        for j in range(k):
            d = r0[j] - mu[j]
            s[j] += d
            q[j] += d * d


@nb.njit(cache=True, fastmath=_FAST, inline="always")
def _cols_stats(x, m, m2, m0, s, q, eps):
    """Column means and M2 of x (N, D) into ``m, m2`` (D,) float64, zero on entry.

    Blocks of ``_ROWS`` rows, in tiles of ``_TILE`` columns (in L2 for both passes of the
    corrected two-pass, four rows per sweep), merged down the rows with Chan's update.
    ``m0, s, q`` are scratch (_TILE,) arrays of x's dtype.
    """
    N, D = x.shape
    tiny = _tiny(x)
    cnt = 0
    for b0 in range(0, N, _ROWS):
        b1 = min(b0 + _ROWS, N)
        nb_ = b1 - b0
        f1 = nb_ / (cnt + nb_)
        f2 = cnt * f1
        inb = 1.0 / nb_
        inv = _like(inb, x)
        for c0 in range(0, D, _TILE):
            c1 = min(c0 + _TILE, D)
            k = c1 - c0
            m0[:k] = 0
            n = b0
            while n + 4 <= b1:
                r0, r1, r2, r3 = x[n, c0:c1], x[n + 1, c0:c1], x[n + 2, c0:c1], x[n + 3, c0:c1]
                for j in range(k):
                    m0[j] += (r0[j] + r1[j]) + (r2[j] + r3[j])
                n += 4
            for r in range(n, b1):
                r0 = x[r, c0:c1]
                for j in range(k):
                    m0[j] += r0[j]
            for j in range(k):
                m0[j] *= inv
            _tile_shifted_sums(x, b0, b1, c0, c1, m0, s, q)
            mm = m[c0:c1]
            mq = m2[c0:c1]
            good = 0  # columns whose q neither overflowed nor underflowed, nor is NaN
            for j in range(k):
                good += _squares_ok(q[j], nb_, eps, tiny)
            if good == k:  # the fast path, no branch in the loop: vectorises
                for j in range(k):
                    sj = np.float64(s[j])
                    delta = m0[j] + sj * inb - mm[j]
                    mm[j] += delta * f1
                    mq[j] += max(q[j] - sj * sj * inb, 0.0) + delta * delta * f2
            else:  # over- or underflow in x's dtype (|x - m| > ~1e19 or < ~1e-19), NaN/inf
                for j in range(k):
                    if _squares_ok(q[j], nb_, eps, tiny):
                        sj = np.float64(s[j])
                        bm = m0[j] + sj * inb
                        bq = max(q[j] - sj * sj * inb, 0.0)
                    else:
                        bm, bq = _block_stats64(x[b0:b1, c0 + j])  # a strided column
                    delta = bm - mm[j]
                    mm[j] += delta * f1
                    mq[j] += bq + delta * delta * f2
        cnt += nb_


@nb.njit(cache=True, fastmath=_FAST, inline="always")
def _cols_sample_mean(x, m0):
    """Per-column mean of up to ``_SAMPLE_ROWS`` rows spread over x (N, D), into m0 (D,) in x's
    dtype: the shift of :func:`_cols_shifted_sums`. Summed in float64, so that a constant
    float32 column's sample mean is its value exactly."""
    N, D = x.shape
    k = min(N, _SAMPLE_ROWS)
    if k == 0:
        m0[:] = 0
        return
    step = N // k
    t = np.zeros(D)
    for i in range(k):
        r = x[i * step]
        for j in range(D):
            t[j] += r[j]
    for j in range(D):
        m0[j] = _like(t[j] / k, x)


@nb.njit(cache=True, fastmath=_FAST, inline="always")
def _cols_shifted_sums(x, n0, n1, m0, t1, t2, s, q):
    """``sum(x - m0)`` and ``sum((x - m0)^2)`` per column over rows ``n0:n1`` of x (N, D).

    Added into ``t1, t2`` (D,) float64; per block of ``_ROWS`` rows and tile of ``_TILE``
    columns in x's dtype, four rows a sweep (``s, q`` are (_TILE,) scratch). An overflow or a
    NaN makes ``t2`` inf or NaN, which :func:`_shifted_stats` refuses.
    """
    D = x.shape[1]
    for b0 in range(n0, n1, _ROWS):
        b1 = min(b0 + _ROWS, n1)
        for c0 in range(0, D, _TILE):
            c1 = min(c0 + _TILE, D)
            k = c1 - c0
            _tile_shifted_sums(x, b0, b1, c0, c1, m0[c0:c1], s, q)
            a1 = t1[c0:c1]
            a2 = t2[c0:c1]
            for j in range(k):
                a1[j] += s[j]
                a2[j] += q[j]


@nb.njit(cache=True, fastmath=_FAST, inline="always")
def _cols_grad_sums(dy, x, n0, n1, mh, ts, td, bdy, bdx):
    """``sum(dy)`` and ``sum(dy * (x - mh))`` per column over rows ``n0:n1`` of x (N, D).

    Added into ``ts, td`` (D,) float64. Per block of ``_ROWS`` rows and tile of ``_TILE``
    columns in x's dtype (``bdy, bdx`` are (_TILE,) scratch); a block whose sums overflow (or
    hold NaN/inf) is redone column by column in float64. ``mh`` (D,) is the mean in x's dtype.
    """
    D = x.shape[1]
    for b0 in range(n0, n1, _ROWS):
        b1 = min(b0 + _ROWS, n1)
        for c0 in range(0, D, _TILE):
            c1 = min(c0 + _TILE, D)
            k = c1 - c0
            mu = mh[c0:c1]
            bdy[:k] = 0
            bdx[:k] = 0
            n = b0
            while n + 4 <= b1:  # four rows a sweep: a quarter of the loads and stores of bdy, bdx
                g0, g1, g2, g3 = dy[n, c0:c1], dy[n + 1, c0:c1], dy[n + 2, c0:c1], dy[n + 3, c0:c1]
                x0, x1, x2, x3 = x[n, c0:c1], x[n + 1, c0:c1], x[n + 2, c0:c1], x[n + 3, c0:c1]
                for j in range(k):
                    m = mu[j]
                    bdy[j] += (g0[j] + g1[j]) + (g2[j] + g3[j])
                    bdx[j] += (g0[j] * (x0[j] - m) + g1[j] * (x1[j] - m)) + (
                        g2[j] * (x2[j] - m) + g3[j] * (x3[j] - m)
                    )
                n += 4
            for r in range(n, b1):
                g = dy[r, c0:c1]
                xr = x[r, c0:c1]
                for j in range(k):
                    bdy[j] += g[j]
                    bdx[j] += g[j] * (xr[j] - mu[j])
            s1 = ts[c0:c1]
            s2 = td[c0:c1]
            check = 0.0  # float64: not finite iff a block sum overflowed or is NaN
            for j in range(k):
                check += bdy[j]
                check += bdx[j]
            if np.isfinite(check):  # the fast path: vectorises
                for j in range(k):
                    s1[j] += bdy[j]
                    s2[j] += bdx[j]
            else:
                for j in range(k):
                    if np.isfinite(bdy[j]) and np.isfinite(bdx[j]):
                        s1[j] += bdy[j]
                        s2[j] += bdx[j]
                    else:  # overflow in x's dtype, or NaN/inf: this column block in float64
                        f1, f2 = _grad_sums64(dy[b0:b1, c0 + j], x[b0:b1, c0 + j], mu[j])
                        s1[j] += f1
                        s2[j] += f2


@nb.njit(cache=True, fastmath=_FAST, inline="always")
def _chunk_totals(p1, p2, j):
    """Column ``j``'s totals over the chunks of per-chunk float64 sums p1, p2 (T, D), added
    in chunk order (so the bits do not depend on which thread summed which chunk)."""
    t1 = 0.0
    t2 = 0.0
    for t in range(p1.shape[0]):
        t1 += p1[t, j]
        t2 += p2[t, j]
    return t1, t2


@nb.njit(cache=True, fastmath=_FAST, inline="always")
def _backward_coef(x, mean, rstd, gamma, dgamma, dbeta, M):
    """One channel's closed-form backward over M values in x's dtype: (mh, R, A, B, Cc) with
    ``dx = A * dy + B * ((x - mh) * R) + Cc``.

    ``dx = gamma * rstd * (dy - dbeta/M - xhat * dgamma/M)`` and ``xhat = (x - mh) * rstd -
    (mean - mh) * rstd``. ``rstd`` is applied twice, never as ``rstd^2``: every coefficient is
    of the order of ``rstd`` or of dx, so none leaves float32 while x and dx are in it (a
    coefficient ``gamma * rstd^2 * dgamma / M`` of ``x - mh`` underflows at |x| ~ 1e20 and
    overflows at |x| ~ 1e-20).
    """
    m = _like(mean, x)
    a = gamma * rstd
    b = -a * dgamma / M  # the coefficient of xhat
    c = -a * dbeta / M - b * ((mean - m) * rstd)
    return m, _like(rstd, x), _like(a, x), _like(b, x), _like(c, x)


@nb.njit(cache=True, fastmath=_FAST, inline="always")
def _backward_coefs(x, mean, rstd, gamma, dgamma, dbeta, M):
    """:func:`_backward_coef` of every channel: mh, R, A, B, Cc (C,) in x's dtype."""
    C = mean.shape[0]
    mh = np.empty(C, x.dtype)
    R = np.empty(C, x.dtype)
    A = np.empty(C, x.dtype)
    B = np.empty(C, x.dtype)
    Cc = np.empty(C, x.dtype)
    for c in range(C):
        mh[c], R[c], A[c], B[c], Cc[c] = _backward_coef(
            x, mean[c], rstd[c], gamma[c], dgamma[c], dbeta[c], M
        )
    return mh, R, A, B, Cc
