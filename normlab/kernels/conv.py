"""col2im of the im2col convolution: the input gradient from the gradient of the im2col matrix.

``normlab.layers.conv`` lowers a convolution to GEMMs on the im2col matrix (see its module
docstring). Its backward scatters ``dcols = w2.T @ dout2`` back into the input::

    dx[n, c, h, w] = sum over kernel offsets (i, j), in row-major order,
                     of dcols[c, i, j, n, oh, ow] with h = s*oh + i - pad, w = s*ow + j - pad

:func:`col2im` makes that one pass over ``dcols``, one ``(n, c)`` plane of ``dx`` at a time
(it stays in L1 while its ``HH * WW`` rows of ``dcols`` stream past). It adds the offsets from
zero in the order of the NumPy path's loop over offsets, so every sum rounds alike (the NumPy
path is the readable reference that ``NORMLAB_BACKEND=numpy`` runs and the tests compare
against, bit for bit), and it never writes the padding (the NumPy path adds into a padded
buffer and crops it).

Against the NumPy path's strided adds the kernel makes the layer's forward + backward 0.75-0.96x
as long (1 thread; ``benchmarks/bench_conv_backends.py``). Single-threaded: with OpenBLAS's
default spin-wait a parallel col2im took 1.03-1.12x the serial one's layer time at 2 threads
(OpenBLAS's idle workers hold the second core); only with ``OPENBLAS_THREAD_TIMEOUT=4`` was it
faster (0.85-0.99x). Kernels for the other memory-bound passes (im2col, and the moves of the
GEMM result and of ``dout`` between (N, F, H', W') and (F, N, H', W')) measured 0.91-1.01x at
the layer and are not kept (``benchmarks/README.md``, "Stop 20").
"""

from __future__ import annotations

import numba as nb


@nb.njit(cache=True, nogil=True, inline="always")
def _span(j, s, pad, W, Wo):
    """The output columns ``[lo, hi)`` whose input column ``s*ow + j - pad`` is in ``[0, W)``."""
    lo = (pad - j + s - 1) // s if pad > j else 0
    last = W - 1 - j + pad  # the largest s*ow that stays inside
    hi = min(Wo, last // s + 1) if last >= 0 else 0
    return min(lo, hi), hi


@nb.njit(cache=True, nogil=True)
def col2im(dcols, s, pad, dx):
    """Scatter-add the im2col gradient into the input gradient, the padding dropped.

    Parameters
    ----------
    dcols : ndarray of shape (C, HH, WW, N, H', W'), C-contiguous
        Gradient of the im2col matrix.
    s, pad : int
        Stride and zero padding of the convolution.
    dx : ndarray of shape (N, C, H, W)
        Written (not added to): ``dx[n, c, h, w]`` is the sum, over offsets ``(i, j)`` in
        row-major order, of ``dcols[c, i, j, n, oh, ow]`` with ``s*oh + i - pad = h`` and
        ``s*ow + j - pad = w``; 0 where no window covers the element.
    """
    N, C, H, W = dx.shape
    _, HH, WW, _, Ho, Wo = dcols.shape
    for n in range(N):
        for c in range(C):
            plane = dx[n, c]
            for h in range(H):
                row = plane[h]
                for w in range(W):
                    row[w] = 0
            for i in range(HH):
                for j in range(WW):
                    lo, hi = _span(j, s, pad, W, Wo)
                    for oh in range(Ho):
                        h = s * oh + i - pad
                        if h < 0 or h >= H:
                            continue
                        src = dcols[c, i, j, n, oh]
                        if s == 1:  # contiguous on both sides: vectorised
                            dst = plane[h, lo + j - pad : hi + j - pad]
                            part = src[lo:hi]
                            for k in range(hi - lo):
                                dst[k] += part[k]
                        else:
                            dst = plane[h]
                            for ow in range(lo, hi):
                                dst[s * ow + j - pad] += src[ow]
