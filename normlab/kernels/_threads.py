"""numba's thread pool, started with a short spin-wait for its OpenMP threads.

After each parallel region libgomp's threads spin-wait for the next one, by default for
``GOMP_SPINCOUNT=300000`` iterations, and hold the cores that the next matrix product's
OpenBLAS threads need. On the 2-core AMD EPYC a batch-norm ConvNet step on CIFAR-10's shape
(batch 64, 2 threads) took 84-91 ms with it, 51-61 ms with 1,000-30,000 iterations, and 55-63 ms
with sleeping threads (``OMP_WAIT_POLICY=PASSIVE``). Sleeping threads cost the kernels
themselves up to 2x (batch norm (256, 4096) forward + backward 1.4-2.0 ms against 0.7-1.0 ms:
waking an idle virtual CPU is slow), while 3,000-30,000 measured as 300,000 at the layer.
10,000 is in the middle of that range (``benchmarks/README.md``, "Idle OpenMP threads").

libgomp reads ``GOMP_SPINCOUNT`` once, when it is loaded, and numba loads it when it starts its
pool. :func:`start_pool` sets the variable for that moment only and restores it. The first
parallel kernel calls it (``Kernel.pick`` in :mod:`normlab.kernels.norm`), the moment numba
would start its pool anyway: importing normlab starts no threads, and a process that forks
before running a parallel kernel leaves its children free to run them (GNU OpenMP is not
fork-safe: numba terminates a forked child that runs a parallel region after its parent did).
It changes nothing

* where the user set ``GOMP_SPINCOUNT`` or ``OMP_WAIT_POLICY`` (their choice is kept);
* where numba's pool already runs (numba parallel code, ``numba.get_num_threads`` or
  ``numba.set_num_threads`` ran first, as in the experiment runner's one-thread runs);
* where a libgomp is already loaded with global symbols (``import torch`` first: numba's
  OpenMP calls then bind to PyTorch's libgomp, with its settings);
* where numba uses another threading layer (``NUMBA_THREADING_LAYER=tbb`` or ``workqueue``).

A libgomp loaded after the pool started, under the same name (``import torch`` then), is the
same library and shares the setting. The benchmarks (``benchmarks/_common.py``) import PyTorch
first and then call :func:`start_pool` with ``RTLD_DEEPBIND`` in the dlopen flags, so that each
library runs on its own libgomp: PyTorch's with its defaults, numba's with the short spin.
"""

from __future__ import annotations

import os
import threading

import numba as nb

SPINCOUNT = "10000"
started = False  # set by start_pool once the pool is started (or its start failed)
_lock = threading.Lock()  # two threads' first parallel kernels: one starts the pool, one waits


def start_pool() -> None:
    """Start numba's thread pool with ``GOMP_SPINCOUNT=10000`` unless the user chose a wait policy.

    The first call starts the pool (~25 ms), later calls return at once, also after a failed
    first call. Called by the first parallel kernel. ``GOMP_SPINCOUNT`` is set only while the
    pool starts and removed on every path. Where PyTorch is already imported, numba's OpenMP
    calls bind to PyTorch's libgomp unless this runs with ``RTLD_DEEPBIND`` in
    ``sys.setdlopenflags`` (as ``benchmarks/_common.py`` does; see the module docstring).

    Raises
    ------
    ValueError
        From numba, when no threading layer can be loaded (``NUMBA_THREADING_LAYER`` names
        one that is missing, or none is installed); the environment is restored first.
    """
    global started
    with _lock:
        if started:
            return
        chosen = "GOMP_SPINCOUNT" in os.environ or "OMP_WAIT_POLICY" in os.environ
        if not chosen:
            os.environ["GOMP_SPINCOUNT"] = SPINCOUNT
        try:
            nb.get_num_threads()  # starts the pool (numba's _launch_threads) if not running
        finally:
            if not chosen:
                del os.environ["GOMP_SPINCOUNT"]
            started = True
