"""Batch norm's one-pass column statistics against two plain passes, at the layer, one thread.

Run:  cd benchmarks && python bench_stats_passes.py [--rounds 21]

Issue 11, point 4: a kernel path stays only if it buys >= 10 % at the layer. Batch norm (N, D)
takes its column statistics in one pass of sums shifted by a sampled mean (``cols_forward`` in
``normlab/kernels/norm.py``, with its redo). Against it, two forward kernels with two plain
passes, the rest unchanged:

* ``block``: the corrected two-pass per block of 16 rows of a column tile (the block's mean,
  then its shifted sums from cache), merged with Chan's update down the rows and across chunks
  (``_cols_stats``, today the fallback);
* ``column``: the columns' means in a first pass over x, then their shifted sums in a second
  (x read twice, in tiles; no overflow handling: timing only).

Layer forward (train) + ``batchnorm_backward_alt``, float32, one numba and BLAS thread, CPU time
(``time.process_time``), the three kernels interleaved round by round in one process; prints
medians with their range and the median and quartiles of the per-round ratios to the one-pass
kernel. Not a test. (Layer and group norm and spatial batch norm were measured the same way
against their former one-pass kernels in stop 20, benchmarks/README.md, and lost them.)
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import numba as nb
import numpy as np
from _common import machine_line, setup
from numba import prange

from normlab import layers as L
from normlab.kernels import norm as K
from normlab.kernels._blocks import (
    _FAST,
    _ROWS,
    _TILE,
    _affine_coefs,
    _chunk_totals,
    _cols_shifted_sums,
    _cols_stats,
    _like,
    _merge,
)

SHAPES = [(128, 512), (256, 4096), (4096, 1024)]


@K._jit
def cols_forward_block(x, gamma, beta, eps, out, mean, var, rstd, nchunks):
    """Corrected two-pass per 16-row block, merged (Chan) down the rows and across chunks."""
    N, D = x.shape
    T = max(1, min(nchunks, N // _ROWS))
    pm = np.zeros((T, D))  # per-chunk mean
    pq = np.zeros((T, D))  # per-chunk M2
    for t in prange(T):
        b0 = np.empty(_TILE, x.dtype)
        b1 = np.empty(_TILE, x.dtype)
        b2 = np.empty(_TILE, x.dtype)
        _cols_stats(x[t * N // T : (t + 1) * N // T], pm[t], pq[t], b0, b1, b2, eps)
    m2 = np.empty(D)
    for j in prange(D):
        mu, q, cnt = 0.0, 0.0, 0
        for t in range(T):
            mu, q, cnt = _merge(mu, q, cnt, pm[t, j], pq[t, j], (t + 1) * N // T - t * N // T)
        mean[j] = mu
        m2[j] = q
    var[:] = m2 / N
    rstd[:] = 1.0 / np.sqrt(var + eps)
    mh, a, b = _affine_coefs(x, mean, rstd, gamma, beta)
    for n in prange(N):
        row = x[n]
        o = out[n]
        for j in range(D):
            o[j] = (row[j] - mh[j]) * a[j] + b[j]


@nb.njit(cache=True, fastmath=_FAST, inline="always")
def _cols_sums(x, n0, n1, t1, s):
    """``sum(x)`` per column over rows ``n0:n1``, per 16-row block in x's dtype, into t1."""
    D = x.shape[1]
    for b0 in range(n0, n1, _ROWS):
        b1 = min(b0 + _ROWS, n1)
        for c0 in range(0, D, _TILE):
            c1 = min(c0 + _TILE, D)
            k = c1 - c0
            s[:k] = 0
            n = b0
            while n + 4 <= b1:
                r0, r1, r2, r3 = x[n, c0:c1], x[n + 1, c0:c1], x[n + 2, c0:c1], x[n + 3, c0:c1]
                for j in range(k):
                    s[j] += (r0[j] + r1[j]) + (r2[j] + r3[j])
                n += 4
            for r in range(n, b1):
                r0 = x[r, c0:c1]
                for j in range(k):
                    s[j] += r0[j]
            a1 = t1[c0:c1]
            for j in range(k):
                a1[j] += s[j]


@K._jit
def cols_forward_column(x, gamma, beta, eps, out, mean, var, rstd, nchunks):
    """The columns' means (pass 1), then their shifted sums about them (pass 2)."""
    N, D = x.shape
    T = max(1, min(nchunks, N // _ROWS))
    p1 = np.zeros((T, D))
    p2 = np.zeros((T, D))
    for t in prange(T):
        s = np.empty(_TILE, x.dtype)
        _cols_sums(x, t * N // T, (t + 1) * N // T, p1[t], s)
    m0 = np.empty(D, x.dtype)
    for j in range(D):
        t1 = 0.0
        for t in range(T):
            t1 += p1[t, j]
        m0[j] = _like(t1 / N, x)
    p1[:] = 0.0
    for t in prange(T):
        s = np.empty(_TILE, x.dtype)
        q = np.empty(_TILE, x.dtype)
        _cols_shifted_sums(x, t * N // T, (t + 1) * N // T, m0, p1[t], p2[t], s, q)
    m2 = np.empty(D)
    for j in prange(D):
        t1, t2 = _chunk_totals(p1, p2, j)
        d = t1 / N
        mean[j] = m0[j] + d
        m2[j] = max(t2 - t1 * d, 0.0)
    var[:] = m2 / N
    rstd[:] = 1.0 / np.sqrt(var + eps)
    mh, a, b = _affine_coefs(x, mean, rstd, gamma, beta)
    for n in prange(N):
        row = x[n]
        o = out[n]
        for j in range(D):
            o[j] = (row[j] - mh[j]) * a[j] + b[j]


def _step(x, g, b, dy):
    _, cache = L.batchnorm_forward(x, g, b, {"mode": "train"})
    L.batchnorm_backward_alt(dy, cache)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=21)
    args = ap.parse_args(argv)
    from threadpoolctl import threadpool_limits

    setup(1)
    threadpool_limits(1)
    kernels = {
        "one-pass": K.cols_forward,
        "block": cols_forward_block,
        "column": cols_forward_column,
    }
    names = list(kernels)
    rng = np.random.default_rng(0)
    print(f"# {machine_line(1)}; batch norm forward (train) + backward, float32, CPU time")
    try:
        for shape in SHAPES:
            x = rng.standard_normal(shape, dtype=np.float32)
            dy = rng.standard_normal(shape, dtype=np.float32)
            g, b = np.ones(shape[1], np.float32), np.zeros(shape[1], np.float32)

            step = partial(_step, x, g, b, dy)

            for name in names:  # compile, first touch
                K.cols_forward = kernels[name]
                for _ in range(3):
                    step()
            t0 = time.process_time()
            step()
            reps = max(1, int(0.03 / max(time.process_time() - t0, 1e-6)))
            res = {name: [] for name in names}
            for r in range(args.rounds):
                for name in names[r % 3 :] + names[: r % 3]:  # rotate the order
                    K.cols_forward = kernels[name]
                    step()
                    t0 = time.process_time()
                    for _ in range(reps):
                        step()
                    res[name].append((time.process_time() - t0) / reps)
            base = res["one-pass"]
            line = f"{shape!s:13} one-pass {statistics.median(base) * 1e3:7.3f} ms"
            line += f" [{min(base) * 1e3:.3f}-{max(base) * 1e3:.3f}]"
            for name in names[1:]:
                t = res[name]
                ratios = [a / c for a, c in zip(t, base, strict=True)]
                q1, q2, q3 = statistics.quantiles(ratios, n=4)
                line += f" | {name} {statistics.median(t) * 1e3:7.3f} ms"
                line += f" [{min(t) * 1e3:.3f}-{max(t) * 1e3:.3f}]"
                line += f" ratio {statistics.median(ratios):.3f} ({q1:.3f}-{q3:.3f})"
            print(line, flush=True)
    finally:
        K.cols_forward = kernels["one-pass"]


if __name__ == "__main__":
    main()
