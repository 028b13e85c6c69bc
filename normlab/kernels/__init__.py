"""Fused compiled kernels behind the normalization, convolution and max-pool layers, and the
switch that bypasses them.

Only ``normlab.layers`` calls into this package, with two exceptions: ``normlab.optimizer`` its
update rules (:mod:`normlab.kernels.optim`), and ``normlab.diagnostics.stats`` the statistics of
one array (:mod:`normlab.kernels.stats`). Set the environment variable
``NORMLAB_BACKEND=numpy`` (read at every call) to run the readable NumPy reference path instead
of the numba kernels; ``NORMLAB_BACKEND=numba`` (the default) uses the kernels.

Every numba function defined in this package (any module, ``njit(cache=True)`` as usual) has
its on-disk cache keyed on all of the package's source files, so that editing a helper that a
kernel inlines from another file recompiles the kernel (:mod:`normlab.kernels._cache`).
The first multi-threaded kernel starts numba's thread pool with a short OpenMP spin-wait
(:func:`start_pool`, :mod:`normlab.kernels._threads`).
"""

from __future__ import annotations

import os

from normlab.kernels._cache import cover
from normlab.kernels._threads import start_pool

cover(os.path.dirname(os.path.abspath(__file__)))

__all__ = ["BACKENDS", "get_backend", "start_pool"]

BACKENDS = ("numba", "numpy")


# os.environ.get costs ~0.65 us for an unset variable (a KeyError raised and caught inside),
# five times per training step of a small model; CPython's os.environ keeps its encoded items in
# the dict ``_data`` (kept in step with putenv/unsetenv), where a lookup costs ~20 ns.
_ENV_DATA = getattr(os.environ, "_data", None)
_ENV_KEY = os.environ.encodekey("NORMLAB_BACKEND") if hasattr(os.environ, "encodekey") else None


def _raw_backend() -> str | None:
    if isinstance(_ENV_DATA, dict) and _ENV_KEY is not None:
        value = _ENV_DATA.get(_ENV_KEY)
        return None if value is None else os.environ.decodevalue(value)
    return os.environ.get("NORMLAB_BACKEND")


def get_backend() -> str:
    """The active backend, from ``$NORMLAB_BACKEND`` (default ``"numba"``)."""
    raw = _raw_backend()
    if raw is None:
        return "numba"
    name = raw.strip().lower() or "numba"
    if name not in BACKENDS:
        raise ValueError(f"NORMLAB_BACKEND must be one of {BACKENDS}, got {name!r}")
    return name
