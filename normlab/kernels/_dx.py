"""The dx passes of the normalization backwards: ``dx = a dy + b ((x - m) r) + c``.

Compiled without reassociation, which would fold ``b * r`` (of order rstd^2, out of float32 range
for |x| ~ 1e20 or ~1e-20) into one loop-invariant coefficient (docs/derivations.md, "The exponent
range"); they vectorise without it. Called, not inlined into the kernels of ``norm.py``, so that
they keep these flags.
"""

from __future__ import annotations

import numba as nb

_NO_REASSOC = {"contract"}


@nb.njit(cache=True, fastmath=_NO_REASSOC, nogil=True)
def _dx_seg(dy, x, m, r, a, b, c, dx):
    """``dx = a * dy + b * ((x - m) * r) + c`` over 1-D segments, scalar coefficients."""
    for i in range(dx.shape[0]):
        dx[i] = a * dy[i] + b * ((x[i] - m) * r) + c


@nb.njit(cache=True, fastmath=_NO_REASSOC, nogil=True)
def _dx_cols(dy, x, mh, r, a, b, c, dx):
    """``dx = a * dy + b * ((x - mh) * r) + c`` over 1-D rows, per-column coefficients."""
    for j in range(dx.shape[0]):
        dx[j] = a[j] * dy[j] + b[j] * ((x[j] - mh[j]) * r[j]) + c[j]


@nb.njit(cache=True, fastmath=_NO_REASSOC, nogil=True)
def _dx_gamma(dy, x, gamma, m, r, b, c, dx):
    """``dx = dy * (gamma * r) + b * ((x - m) * r) + c`` over 1-D rows, gamma per element."""
    for i in range(dx.shape[0]):
        dx[i] = dy[i] * (gamma[i] * r) + b * ((x[i] - m) * r) + c
