"""The memory-traffic floor of a normalization layer: its data flow with no arithmetic, timed.

Batch norm over (N, D) must read all of ``x`` before it can write any output, and its backward
must read all of ``dy`` and ``x`` before it can write any ``dx``; a column is strided, so an
input larger than the L2 caches is read twice each way. Spatial batch norm works a channel at a
time, layer and RMS norm a row at a time, group norm (and instance norm, group norm with
``G = C``) a group at a time, so their second pass finds the data in cache. RMS norm has no
``beta``, which changes no pass over memory. The passes over memory, for one forward + backward:

* ``reads_twice`` (batch norm): ``read(x)``, ``x -> out``, ``read(dy, x)``, ``(dy, x) -> dx``;
* otherwise: ``x -> out``, ``(dy, x) -> dx``.

:func:`floor_seconds` runs exactly those passes as numba streaming kernels (a sum; ``y = a*x +
b``; ``y = a*dy + b*x``), one after the other as one step, on the benchmark's own ``x`` and
``dy`` with output buffers allocated per call like the layers', on as many threads as the
normlab kernel uses at that size. It moves the bytes the kernel's data flow must move and does
nothing else, so ``floor / torch`` is the lowest ratio to PyTorch that data flow can reach with
ordinary stores on this machine, cache and working-set effects included.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba import prange

_FAST = {"reassoc", "contract"}


def _read(x, dy, out, two):
    R = x.shape[0]
    T = out.shape[0]
    for t in prange(T):
        s = np.float32(0)
        for r in range(t * R // T, (t + 1) * R // T):
            a = x[r]
            for i in range(a.shape[0]):
                s += a[i]
            if two:
                b = dy[r]
                for i in range(b.shape[0]):
                    s += b[i]
        out[t] = s


def _write(x, dy, y, two):
    for r in prange(x.shape[0]):
        a = x[r]
        o = y[r]
        if two:
            b = dy[r]
            for i in range(a.shape[0]):
                o[i] = a[i] * np.float32(1.5) + b[i] * np.float32(0.5)
        else:
            for i in range(a.shape[0]):
                o[i] = a[i] * np.float32(1.5) + np.float32(0.5)


_KERNELS = {
    parallel: (
        nb.njit(_read, parallel=parallel, fastmath=_FAST),
        nb.njit(_write, parallel=parallel, fastmath=_FAST),
    )
    for parallel in (False, True)
}


def floor_seconds(x: np.ndarray, dy: np.ndarray, reads_twice: bool, threads: int, time_fn) -> float:
    """Seconds of the minimal memory traffic of forward + backward on ``x``, ``dy`` (float32).

    ``reads_twice``: batch norm's data flow (see above); ``threads``: what the normlab
    kernel uses at this size (1 below ``PARALLEL_MIN``); ``time_fn(fn) -> seconds``.
    """
    x2 = np.ascontiguousarray(x).reshape(x.shape[0], -1)
    dy2 = np.ascontiguousarray(dy).reshape(x2.shape)
    read, write = _KERNELS[threads > 1]
    partial = np.empty(max(threads, 1), np.float32)

    def step():
        out = np.empty_like(x2)  # allocated per call, as the layers do
        if reads_twice:
            read(x2, dy2, partial, False)
        write(x2, dy2, out, False)
        dx = np.empty_like(x2)
        if reads_twice:
            read(x2, dy2, partial, True)
        write(x2, dy2, dx, True)

    return time_fn(step)
