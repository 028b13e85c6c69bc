"""The memory-traffic floor of a normalization layer: streaming kernels timed on the same input.

Batch norm must read all of ``x`` before it can write any output, and its backward must read
all of ``dy`` and ``x`` before it can write any ``dx``: any implementation makes two passes
each way. Layer and group norm work a row at a time, so their second passes re-read the row
from cache. Counting the passes over memory:

* batch / spatial batch norm: forward ``read(x) + read(x) write(out)``; backward
  ``read(dy) + read(x) + read(dy) read(x) write(dx)``: 4 reads and 2 read-writes in all;
* layer / group norm: forward ``read(x) write(out)``; backward ``read(dy) + read(x) write(dx)``:
  1 read and 2 read-writes.

:func:`floor_seconds` times a read pass (a sum) and a read-write pass (``y = a * x + b``) over an
array of the input's shape with numba, on as many threads as the normlab kernel for that size
uses, and adds them up as above. No implementation of the same math can beat it by more than
what stays in cache; ``floor / torch`` is the lowest ratio to PyTorch reachable on the machine.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numba import prange

_FAST = {"reassoc", "contract"}


def _read(x, out):
    R = x.shape[0]
    T = out.shape[0]
    for t in prange(T):
        s = np.float32(0)
        for r in range(t * R // T, (t + 1) * R // T):
            a = x[r]
            for i in range(a.shape[0]):
                s += a[i]
        out[t] = s


def _read_write(x, y):
    for r in prange(x.shape[0]):
        a = x[r]
        b = y[r]
        for i in range(a.shape[0]):
            b[i] = a[i] * np.float32(1.5) + np.float32(0.5)


_KERNELS = {
    parallel: (
        nb.njit(_read, parallel=parallel, fastmath=_FAST),
        nb.njit(_read_write, parallel=parallel, fastmath=_FAST),
    )
    for parallel in (False, True)
}


def floor_seconds(x: np.ndarray, batch: bool, threads: int, time_fn) -> float:
    """Seconds of the minimal memory traffic of forward + backward on ``x`` (float32).

    ``batch``: batch-norm pass count (else layer/group norm); ``threads``: what the normlab
    kernel uses at this size (1 below ``PARALLEL_MIN``); ``time_fn(fn) -> seconds``.
    """
    x2 = np.ascontiguousarray(x).reshape(x.shape[0], -1)
    y2 = np.empty_like(x2)
    read, read_write = _KERNELS[threads > 1]
    partial = np.empty(max(threads, 1), np.float32)
    t_read = time_fn(lambda: read(x2, partial))
    t_rw = time_fn(lambda: read_write(x2, y2))
    return 4 * t_read + 2 * t_rw if batch else t_read + 2 * t_rw
