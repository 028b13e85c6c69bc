"""The convolution's col2im kernel (normlab/kernels/conv.py) gives the NumPy path's bits.

``conv_backward`` runs the numba col2im unless ``NORMLAB_BACKEND=numpy``. The layer's ``out``,
``dx``, ``dw`` and ``db`` must equal the NumPy path's bit for bit: col2im adds the kernel
offsets in the NumPy path's order, and drops the padding instead of adding into it. Cases:
strides smaller than, equal to and larger than the kernel (input elements that no window covers
get 0), padding wider than the kernel, sizes the stride does not divide, 1x1 and non-square
kernels, float32 and float64, strided and other-dtype ``dout``.
"""

from __future__ import annotations

import numpy as np
import pytest

from normlab.kernels import conv as conv_kernels
from normlab.layers.conv import conv_backward, conv_forward

# (x shape, w shape, stride, pad)
CASES = [
    ((2, 3, 8, 8), (4, 3, 3, 3), 1, 1),
    ((2, 3, 9, 7), (4, 3, 3, 2), 2, 1),
    ((3, 2, 7, 10), (5, 2, 3, 3), 1, 0),
    ((2, 2, 10, 9), (3, 2, 2, 2), 3, 0),  # stride > kernel: uncovered rows and columns
    ((2, 2, 5, 6), (3, 2, 3, 3), 3, 2),
    ((2, 3, 4, 4), (2, 3, 3, 3), 1, 4),  # pad wider than the kernel: all-padding windows
    ((2, 4, 6, 6), (3, 4, 1, 1), 1, 0),
    ((2, 3, 11, 11), (4, 3, 5, 5), 2, 2),
    ((1, 1, 3, 3), (1, 1, 3, 3), 1, 0),  # one window
]


def _run(x, w, b, dout, stride, pad, backend, monkeypatch):
    monkeypatch.setenv("NORMLAB_BACKEND", backend)
    out, cache = conv_forward(x, w, b, {"stride": stride, "pad": pad})
    return (out, *conv_backward(dout, cache))


def _same_bits(got, want, name):
    assert got.shape == want.shape and got.dtype == want.dtype, name
    bits = np.dtype(f"u{want.dtype.itemsize}")
    np.testing.assert_array_equal(
        np.ascontiguousarray(got).view(bits), np.ascontiguousarray(want).view(bits), err_msg=name
    )


def _data(rng, xs, ws, stride, pad, dtype):
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    Ho = 1 + (xs[2] + 2 * pad - ws[2]) // stride
    Wo = 1 + (xs[3] + 2 * pad - ws[3]) // stride
    dout = rng.standard_normal((xs[0], ws[0], Ho, Wo)).astype(dtype)
    return x, w, b, dout


@pytest.mark.parametrize("xs, ws, stride, pad", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_give_the_numpy_paths_bits(xs, ws, stride, pad, dtype, monkeypatch, rng):
    x, w, b, dout = _data(rng, xs, ws, stride, pad, dtype)
    got = _run(x, w, b, dout, stride, pad, "numba", monkeypatch)
    want = _run(x, w, b, dout, stride, pad, "numpy", monkeypatch)
    for name, g, r in zip(("out", "dx", "dw", "db"), got, want, strict=True):
        _same_bits(g, r, name)


def test_uncovered_inputs_get_zero_gradient(monkeypatch, rng):
    """Stride 3 with a 2x2 kernel: rows and columns 2, 5, 8 are in no window."""
    x, w, b, dout = _data(rng, (2, 2, 9, 9), (3, 2, 2, 2), 3, 0, np.float32)
    dx = _run(x, w, b, dout, 3, 0, "numba", monkeypatch)[1]
    assert np.all(dx[:, :, 2::3, :] == 0) and np.all(dx[:, :, :, 2::3] == 0)
    assert np.all(dx[:, :, :2, :2] != 0)


def test_strided_and_other_dtype_dout(monkeypatch, rng):
    """dout as a strided view and as float64 for a float32 layer: the contiguous float32 bits."""
    x, w, b, dout = _data(rng, (2, 3, 8, 8), (4, 3, 3, 3), 1, 1, np.float32)
    big = np.zeros((2, 8, 8, 16), np.float64)
    big[:, ::2, :, ::2] = dout
    view = big[:, ::2, :, ::2]  # float64, strided
    got = _run(x, w, b, view, 1, 1, "numba", monkeypatch)
    want = _run(x, w, b, dout, 1, 1, "numpy", monkeypatch)
    for name, g, r in zip(("out", "dx", "dw", "db"), got, want, strict=True):
        _same_bits(g, r, name)


def test_col2im_writes_every_element(rng):
    """dx is written, not added to: garbage in the buffer does not leak into the result."""
    dcols = rng.standard_normal((2, 3, 3, 2, 4, 4)).astype(np.float32)
    clean = np.zeros((2, 2, 4, 4), np.float32)
    dirty = np.full((2, 2, 4, 4), np.nan, np.float32)
    conv_kernels.col2im(dcols, 1, 1, clean)
    conv_kernels.col2im(dcols, 1, 1, dirty)
    _same_bits(dirty, clean, "dx")


def test_col2im_writes_uncovered_elements_too(rng):
    """Stride 3, a 2x2 kernel, pad 1: rows and columns 1, 4, 7 of dx are in no window; a
    NaN-filled buffer must come out with them 0 and the rest as from a zeroed buffer."""
    dcols = rng.standard_normal((2, 2, 2, 2, 4, 4)).astype(np.float32)  # (C, HH, WW, N, Ho, Wo)
    dx = np.full((2, 2, 10, 9), np.nan, np.float32)  # H' = 1 + (10 + 2 - 2) // 3 = 4, W' = 4
    clean = np.zeros_like(dx)
    conv_kernels.col2im(dcols, 3, 1, dx)
    conv_kernels.col2im(dcols, 3, 1, clean)
    _same_bits(dx, clean, "dx")
    assert np.all(dx[:, :, 1::3, :] == 0) and np.all(dx[:, :, :, 1::3] == 0)
    assert np.all(dx[:, :, 0, 0] != 0)


@pytest.mark.parametrize("view", ["transposed", "reversed"])
def test_strided_x_without_padding(view, monkeypatch, rng):
    """pad 0 takes windows of x itself (no padded copy): a strided view gives the contiguous
    array's bits."""
    x, w, b, dout = _data(rng, (2, 3, 7, 7), (4, 3, 3, 3), 1, 0, np.float32)
    if view == "transposed":
        xv = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    else:
        xv = np.ascontiguousarray(x[:, :, ::-1, ::-1])[:, :, ::-1, ::-1]
    assert not xv.flags.c_contiguous and np.array_equal(xv, x)
    got = _run(xv, w, b, dout, 1, 0, "numba", monkeypatch)
    want = _run(x, w, b, dout, 1, 0, "numba", monkeypatch)
    for name, g, r in zip(("out", "dx", "dw", "db"), got, want, strict=True):
        _same_bits(g, r, name)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("xs, ws", [((0, 3, 6, 6), (4, 3, 3, 3)), ((2, 0, 6, 6), (4, 0, 3, 3))])
def test_empty_batch_or_channels(xs, ws, backend, monkeypatch, rng):
    """N = 0 or C = 0: empty outputs and gradients (C = 0: out is the bias), no reshape error."""
    x, w, b, dout = _data(rng, xs, ws, 1, 1, np.float32)
    out, dx, dw, db = _run(x, w, b, dout, 1, 1, backend, monkeypatch)
    assert out.shape == (xs[0], 4, 6, 6) and dx.shape == xs and dw.shape == ws
    np.testing.assert_array_equal(out, np.broadcast_to(b[:, None, None], out.shape))
    assert not dw.any() and db.shape == (4,)
