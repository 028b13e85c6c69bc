"""numba's thread pool, started with a short spin-wait for its OpenMP threads.

After each parallel region libgomp's threads spin-wait for the next one, by default for
``GOMP_SPINCOUNT=300000`` iterations, and hold the cores that the next matrix
product's OpenBLAS threads need. On the 2-core AMD EPYC a batch-norm ConvNet step on CIFAR-10's
shape (batch 64, 2 threads) took 84-91 ms with it, 51-61 ms with 1,000-30,000 iterations, and
55-63 ms with sleeping threads (``OMP_WAIT_POLICY=PASSIVE``). Sleeping threads cost the kernels
themselves up to 2x (batch norm (256, 4096) forward + backward 1.4-2.0 ms against 0.7-1.0 ms:
waking an idle virtual CPU is slow), while 3,000-30,000 measured as 300,000 at the layer.
10,000 is in the middle of that range (``benchmarks/README.md``,
"Idle OpenMP threads").

libgomp reads ``GOMP_SPINCOUNT`` once, when it is loaded, and numba loads it when it starts its
pool. :func:`start_pool` sets the variable for that moment only and restores it. It changes
nothing

* where the user set ``GOMP_SPINCOUNT`` or ``OMP_WAIT_POLICY`` (their choice is kept);
* where numba's pool already runs (numba code that ran before normlab was imported);
* where a libgomp is already loaded (``import torch`` first: PyTorch's own libgomp, whose
  settings numba's OpenMP calls then share);
* where numba uses another threading layer (``NUMBA_THREADING_LAYER=tbb`` or ``workqueue``).

A libgomp loaded later under the same name (``import torch`` after normlab) is the same library,
and shares the setting.
"""

from __future__ import annotations

import os

import numba as nb

SPINCOUNT = "10000"


def start_pool() -> None:
    """Start numba's thread pool with ``GOMP_SPINCOUNT=10000`` unless the user chose a wait policy.

    Called once, when :mod:`normlab.kernels` is imported (~25 ms: numba starts its pool then
    rather than at the first parallel kernel).
    """
    chosen = "GOMP_SPINCOUNT" in os.environ or "OMP_WAIT_POLICY" in os.environ
    if not chosen:
        os.environ["GOMP_SPINCOUNT"] = SPINCOUNT
    try:
        nb.get_num_threads()  # starts the pool (numba's _launch_threads) if it is not running
    finally:
        if not chosen:
            del os.environ["GOMP_SPINCOUNT"]
