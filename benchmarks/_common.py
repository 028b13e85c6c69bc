"""Shared helpers of the benchmarks: machine line, Fashion-MNIST as flat arrays, timing."""

from __future__ import annotations

import os
import sys
import time

# OpenBLAS's worker threads spin (yielding) for 2**OPENBLAS_THREAD_TIMEOUT cycles after each
# matrix product before they sleep, 2**28 (~0.1 s) by default: in one process they took the
# cores from PyTorch's next block of an interleaved timing (PyTorch's CIFAR-shape ConvNet step
# 53-55 ms beside them, 38-40 ms without) and from normlab's own numba kernels (its step 3-12 %
# slower alone; benchmarks/README.md, "Stop 20"). OpenBLAS reads the variable once, when NumPy
# loads it, so a script run without it is started again with it (4, the smallest OpenBLAS
# accepts). A value the user set is kept. Code from -c, stdin or an interactive session cannot
# be started again (stdin is spent, state would be lost): it gets a warning instead.
if "OPENBLAS_THREAD_TIMEOUT" not in os.environ:
    if os.path.isfile(sys.argv[0]) and not sys.flags.interactive and not hasattr(sys, "ps1"):
        os.environ["OPENBLAS_THREAD_TIMEOUT"] = "4"
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
    print(
        "warning: OPENBLAS_THREAD_TIMEOUT is not set; export OPENBLAS_THREAD_TIMEOUT=4 before "
        "starting Python, or PyTorch is timed beside OpenBLAS's spinning threads",
        file=sys.stderr,
    )

import numpy as np  # noqa: E402

# Each library on its own OpenMP runtime, as when it runs alone. PyTorch first: its wheel's
# libgomp, loaded with global symbols, keeps PyTorch's defaults. Then numba's pool, started by
# normlab with a short spin-wait (normlab/kernels/_threads.py) on the system libgomp; the
# extension modules numba loads for it are opened with RTLD_DEEPBIND, so that their OpenMP calls
# bind to that libgomp and not to PyTorch's (without it they took PyTorch's, with its default
# 300,000-iteration spin, and normlab's CIFAR-shape ConvNet step measured 77-94 ms instead of
# 43-44 ms; benchmarks/README.md, "Idle OpenMP threads").
import torch  # noqa: E402  (loaded before numba's pool: see above)
from _steps import (
    cpu_model,  # noqa: E402
    median_seconds,  # noqa: E402, F401  (re-exported: the scripts time with it)
)

from normlab.kernels import start_pool  # noqa: E402

_flags = sys.getdlopenflags()
sys.setdlopenflags(_flags | getattr(os, "RTLD_DEEPBIND", 0))
try:
    start_pool()
finally:
    sys.setdlopenflags(_flags)


def setup(threads: int) -> None:
    """Same conditions for both libraries: ``threads`` threads for the BLAS (NumPy's OpenBLAS),
    numba and PyTorch, for the rest of the process, and glibc's malloc thresholds pinned so
    that neither pays page faults for fresh large buffers (normlab/_malloc.py)."""
    import numba
    from threadpoolctl import threadpool_limits

    from normlab._malloc import pin_malloc_thresholds

    pin_malloc_thresholds()
    threadpool_limits(threads, user_api="blas")  # (until the process ends: no ``with``)
    numba.set_num_threads(threads)
    torch.set_num_threads(threads)


def machine_line(threads: int) -> str:
    """One line naming the date, machine and library versions of a run."""
    import numba

    cpu = cpu_model()
    return (
        f"{time.strftime('%Y-%m-%d')}, {cpu}, {os.cpu_count()} cores, {threads} threads, "
        f"numpy {np.__version__}, numba {numba.__version__}, torch {torch.__version__}, "
        f"OPENBLAS_THREAD_TIMEOUT={os.environ.get('OPENBLAS_THREAD_TIMEOUT', 'unset')}"
    )


def fashion_mnist(data_dir=None, scale_only=True):
    """Fashion-MNIST as float32 (N, 1, 28, 28) arrays, pixels in [0, 1] (as torchvision's
    ``ToTensor``) unless ``scale_only=False`` (then training-mean subtracted as well)."""
    from normlab.data import load_dataset

    return load_dataset(
        "fashion-mnist", data_dir=data_dir, subtract_mean=not scale_only, num_validation=5000
    )
