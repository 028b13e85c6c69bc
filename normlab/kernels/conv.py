"""The memory-bound passes of the im2col convolution: col2im and the two layout changes.

``normlab.layers.conv`` lowers a convolution to GEMMs on the im2col matrix (see its module
docstring); around them it moves data between layouts. These kernels make three of those moves
in one pass each, with the same arithmetic as the layer's NumPy path (the readable reference
that ``NORMLAB_BACKEND=numpy`` runs and the tests compare against, bit for bit)::

    out[n, f, p]  = og[f, n, p] + b[f]                    # grid_to_nchw: GEMM result + bias
    dg[f, n, p]   = dout[n, f, p]                         # nchw_to_grid: dout, F first
    dx[n, c, h, w] = sum over (i, j) in row-major order   # col2im, crop fused
                     of dcols[c, i, j, n, oh, ow] with h = s*oh + i - pad, w = s*ow + j - pad

``p`` is the flat output pixel ``oh * W' + ow``. col2im adds the kernel offsets into each
``(n, c)`` plane in the order of the NumPy path's loop over offsets, starting from zero, so
every sum rounds alike; the padding is never written (the NumPy path adds into a padded buffer
and crops it). The plane stays in L1 while its ``HH * WW`` rows of ``dcols`` stream past.

All three are single-threaded: they are bound by memory, and at 2 threads a parallel col2im
measured the same or slower than the serial one inside a layer call (the handoff between
numba's and OpenBLAS's threads costs more than the second core buys; ``benchmarks/README.md``,
"Stop 20"). An im2col kernel is not here: written the same way it took 1.5-2x the time of the
NumPy strided copy (rows of ``W'`` elements, short stores), so the layer keeps NumPy's.
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


@nb.njit(cache=True, nogil=True)
def grid_to_nchw(og, b, out):
    """``out[n, f, p] = og[f, n, p] + b[f]``: og (F, N, P), b (F,), out (N, F, P)."""
    N, F = out.shape[:2]
    for n in range(N):
        for f in range(F):
            src, dst, bias = og[f, n], out[n, f], b[f]
            for p in range(dst.size):
                dst[p] = src[p] + bias


@nb.njit(cache=True, nogil=True)
def nchw_to_grid(dout, dg):
    """``dg[f, n, p] = dout[n, f, p]``: dout (N, F, P), dg (F, N, P)."""
    N, F = dout.shape[:2]
    for n in range(N):
        for f in range(F):
            src, dst = dout[n, f], dg[f, n]
            for p in range(dst.size):
                dst[p] = src[p]
