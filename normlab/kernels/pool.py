"""Max-pool kernels for 2x2 and 3x3 windows at stride 2: x (P, H, W) -> out, argmax (P, H', W').

The same numbers as the NumPy path of ``normlab.layers.conv`` (the readable reference its tests
compare against, bit for bit), for an input without NaN::

    out[p, oh, ow] = max_j max_i x[p, s*oh + i, s*ow + j]     # over i first, as NumPy does
    arg[p, oh, ow] = first i*pw + j, row-major, with x[p, s*oh + i, s*ow + j] == out[p, oh, ow]
    dx[p, s*oh + i, s*ow + j] (+)= dout[p, oh, ow] * (arg[p, oh, ow] == i*pw + j)

Forward: one pass over ``x``, writing ``out`` and the uint8 ``arg``. The maxima use NumPy's
``np.maximum(u, v) = u if u > v else v`` in NumPy's order (rows, then columns), so even the
sign of a zero maximum is NumPy's. These strict comparisons vectorize but drop a NaN, which
``np.maximum`` would propagate, so the pass also reports whether any window element is NaN;
the layer then takes the NumPy path.

Backward: one pass over ``dout`` and ``arg``, writing each element of every window once as
``dout * onehot[arg, i*pw + j]``: the products NumPy's ``dout * hit`` forms (its zeros carry
dout's sign; inf or NaN dout gives NaN), without a branch on the argmax (selecting on it
mispredicted: 8.6 ns a 2x2 window against 1.3-1.6 with the table). Overlapping windows (3x3 at
stride 2) add into a zeroed ``dx``, windows taken in reverse row-major order: an element then
receives its windows' terms in the order of NumPy's loop over window offsets ``(i, j)``, so the
sums round alike. Non-overlapping windows run forwards (reversed, the 2x2 backward took 2.5-3x
as long).

The window and stride are compile-time constants (each entry point inlines :func:`_forward`
or :func:`_backward` with its own): LLVM then unrolls the window and vectorizes across the
windows of a row. With runtime sizes the same loops took 6x (3x3) to 20x (2x2) as long. A row
of fewer than 16 (2x2) or 32 (3x3) windows runs in the scalar remainder of the vectorized
loop, still branch-free: 1-2 ns a 2x2 window, ~6 ns a 3x3 one, against ~0.7 and ~1.9
vectorized (1 thread, AMD EPYC, float32).
"""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True, nogil=True, inline="always")
def _forward(x, ph, pw, s, out, arg):
    """Max and first argmax of each window of x (P, H, W) into out, arg (P, H', W');
    True if a window element is NaN (then out and arg are not NumPy's)."""
    P = x.shape[0]
    Ho, Wo = out.shape[1:]
    nan = False
    for p in range(P):
        for oh in range(Ho):
            h0 = s * oh
            for ow in range(Wo):
                w0 = s * ow
                m = x[p, h0, w0]
                for j in range(pw):
                    c = x[p, h0, w0 + j]  # column j's maximum over the window rows
                    for i in range(1, ph):
                        v = x[p, h0 + i, w0 + j]
                        c = c if c > v else v
                    if j == 0:
                        m = c
                    else:
                        m = m if m > c else c
                k = ph * pw - 1
                for i in range(ph - 1, -1, -1):  # backwards: the last hit is the first maximum
                    for j in range(pw - 1, -1, -1):
                        v = x[p, h0 + i, w0 + j]
                        nan |= v != v
                        k = i * pw + j if v == m else k
                out[p, oh, ow] = m
                arg[p, oh, ow] = k
    return nan


@nb.njit(cache=True, nogil=True, inline="always")
def _backward(dout, arg, ph, pw, s, dx):
    """dout (P, H', W') through arg into dx (P, H, W): written once per window element, or
    added (overlapping windows; dx zeroed by the caller)."""
    P, Ho, Wo = dout.shape
    K = ph * pw
    onehot = np.zeros((K, K), dx.dtype)
    for q in range(K):
        onehot[q, q] = 1
    overlap = s < ph or s < pw
    for p in range(P):
        for u in range(Ho):
            oh = Ho - 1 - u if overlap else u  # overlapping: reverse row-major (NumPy's order)
            h0 = s * oh
            for v in range(Wo):
                ow = Wo - 1 - v if overlap else v
                w0 = s * ow
                d = dout[p, oh, ow]
                k = arg[p, oh, ow]
                for i in range(ph):
                    for j in range(pw):
                        if overlap:
                            dx[p, h0 + i, w0 + j] += d * onehot[k, i * pw + j]
                        else:
                            dx[p, h0 + i, w0 + j] = d * onehot[k, i * pw + j]


@nb.njit(cache=True, nogil=True)
def forward_2x2s2(x, out, arg):
    """:func:`_forward` for 2x2 windows at stride 2."""
    return _forward(x, 2, 2, 2, out, arg)


@nb.njit(cache=True, nogil=True)
def backward_2x2s2(dout, arg, dx):
    """:func:`_backward` for 2x2 windows at stride 2."""
    _backward(dout, arg, 2, 2, 2, dx)


@nb.njit(cache=True, nogil=True)
def forward_3x3s2(x, out, arg):
    """:func:`_forward` for 3x3 windows at stride 2."""
    return _forward(x, 3, 3, 2, out, arg)


@nb.njit(cache=True, nogil=True)
def backward_3x3s2(dout, arg, dx):
    """:func:`_backward` for 3x3 windows at stride 2 (overlapping: dx zeroed)."""
    _backward(dout, arg, 3, 3, 2, dx)


# (pool_height, pool_width, stride) -> (forward, backward); other windows take the NumPy path.
KERNELS = {
    (2, 2, 2): (forward_2x2s2, backward_2x2s2),
    (3, 3, 2): (forward_3x3s2, backward_3x3s2),
}
