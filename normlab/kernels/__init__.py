"""Fused compiled kernels behind the normalization layers, and the switch that bypasses them.

Only ``normlab.layers`` calls into this package. Set the environment variable
``NORMLAB_BACKEND=numpy`` (read at every call) to run the readable NumPy reference path instead
of the numba kernels; ``NORMLAB_BACKEND=numba`` (the default) uses the kernels.
"""

from __future__ import annotations

import os

BACKENDS = ("numba", "numpy")


def get_backend() -> str:
    """The active backend, from ``$NORMLAB_BACKEND`` (default ``"numba"``)."""
    name = os.environ.get("NORMLAB_BACKEND", "numba").strip().lower() or "numba"
    if name not in BACKENDS:
        raise ValueError(f"NORMLAB_BACKEND must be one of {BACKENDS}, got {name!r}")
    return name
