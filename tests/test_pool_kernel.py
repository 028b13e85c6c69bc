"""The max-pool kernels (normlab/kernels/pool.py) give the NumPy path's bits.

The layer runs a kernel for 2x2 and 3x3 windows at stride 2 unless ``NORMLAB_BACKEND=numpy``,
and the NumPy path when ``x`` holds a NaN (the kernel's comparisons would drop it). Forward
``out`` and backward ``dx`` must equal the NumPy path's bit for bit (the sign of a zero
included, NaN where it has NaN) on random data, ties, all-negative windows, +-inf, signed
zeros and NaN at every window position, in float32 and float64, for contiguous and strided
inputs and sizes the stride does not divide.
"""

from __future__ import annotations

import numpy as np
import pytest

from normlab.layers.conv import max_pool_backward, max_pool_forward

# (x shape, window): divisible sizes, sizes the stride does not divide (an unused last row or
# column), one-window maps.
CASES = [
    ((3, 4, 8, 8), 2),
    ((2, 3, 9, 11), 2),
    ((2, 2, 7, 6), 2),
    ((2, 2, 2, 2), 2),
    ((3, 4, 9, 9), 3),
    ((2, 3, 10, 7), 3),
    ((2, 2, 3, 3), 3),
]
DTYPES = [np.float32, np.float64]


def _param(k):
    return {"pool_height": k, "pool_width": k, "stride": 2}


def _run(x, dout, k, backend, monkeypatch):
    """(out, dx, cache) of a forward and backward with ``backend``."""
    monkeypatch.setenv("NORMLAB_BACKEND", backend)
    out, cache = max_pool_forward(x, _param(k))
    return out, max_pool_backward(dout, cache), cache


def _assert_same_bits(got, want, name):
    """Same shape and dtype, NaN at the same places, the same bits everywhere else."""
    assert got.shape == want.shape and got.dtype == want.dtype, name
    nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), nan, err_msg=f"{name}: NaN positions")
    bits = np.dtype(f"u{want.dtype.itemsize}")
    g, w = np.ascontiguousarray(got).view(bits), np.ascontiguousarray(want).view(bits)
    np.testing.assert_array_equal(g[~nan], w[~nan], err_msg=f"{name}: bits")


def _check(x, k, monkeypatch, rng, kernel=True, dout=None):
    """Kernel path against the NumPy path; ``kernel``: whether the kernel's result is kept."""
    Ho, Wo = 1 + (x.shape[2] - k) // 2, 1 + (x.shape[3] - k) // 2
    if dout is None:
        dout = rng.standard_normal((*x.shape[:2], Ho, Wo)).astype(x.dtype)
    out, dx, cache = _run(x, dout, k, "numba", monkeypatch)
    out_ref, dx_ref, cache_ref = _run(x, dout, k, "numpy", monkeypatch)
    assert cache_ref[-1] is None  # NORMLAB_BACKEND=numpy: the NumPy path
    assert (cache[-1] is not None) == kernel  # the kernel ran, or fell back on a NaN
    _assert_same_bits(out, out_ref, "out")
    _assert_same_bits(dx, dx_ref, "dx")


def _data(kind, shape, dtype, rng):
    x = rng.standard_normal(shape)
    if kind == "ties":  # integer values: many windows with 2-9 equal maxima
        x = rng.integers(-2, 3, shape).astype(np.float64)
    elif kind == "negative":  # every window's maximum < 0
        x = -np.abs(x) - 1
    elif kind == "inf":
        x[rng.random(shape) < 0.2] = np.inf
        x[rng.random(shape) < 0.2] = -np.inf
        x[:, :, :3, :3] = -np.inf  # whole windows of -inf
    elif kind == "zeros":  # +0 and -0 tie: the maximum's sign is NumPy's order's
        x = np.where(rng.random(shape) < 0.5, 0.0, -0.0)
        x[rng.random(shape) < 0.2] = -1.0
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["normal", "ties", "negative", "inf", "zeros"])
@pytest.mark.parametrize("shape, k", CASES)
def test_kernel_gives_the_numpy_bits(monkeypatch, shape, k, kind, dtype):
    rng = np.random.default_rng(0)
    _check(_data(kind, shape, dtype, rng), k, monkeypatch, rng)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, k", [((2, 3, 8, 8), 2), ((2, 3, 9, 9), 3)])
def test_nan_at_every_window_position_takes_the_numpy_path(monkeypatch, shape, k, dtype):
    rng = np.random.default_rng(1)
    for i in range(k):
        for j in range(k):
            x = rng.standard_normal(shape).astype(dtype)
            x[0, 1, 2 + i, 2 + j] = np.nan  # window (1, 1)'s offset (i, j)
            if i == j == k - 1:  # also in a window of ties, and of -inf
                x[1, 0, :k, :k] = 1.0
                x[1, 0, k - 1, k - 1] = np.nan
                x[1, 2, :k, :k] = -np.inf
                x[1, 2, i, j] = np.nan
            _check(x, k, monkeypatch, rng, kernel=False)


def test_nan_outside_every_window_keeps_the_kernel(monkeypatch):
    """No window reads the last column of an odd width: out and dx are NumPy's anyway."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 2, 6, 7))
    x[:, :, :, -1] = np.nan
    _check(x, 2, monkeypatch, rng, kernel=True)


@pytest.mark.parametrize("k", [2, 3])
def test_strided_input_and_upstream_gradient(monkeypatch, k):
    rng = np.random.default_rng(3)
    base = rng.integers(-2, 3, (4, 6, 11, 20)).astype(np.float32)
    x = base[::2, 1::2, :, ::2]  # (2, 3, 11, 10), no axis contiguous
    assert not x.flags.c_contiguous
    Ho, Wo = 1 + (11 - k) // 2, 1 + (10 - k) // 2
    dout = rng.standard_normal((2, 3, Wo, Ho)).astype(np.float32).transpose(0, 1, 3, 2)
    _check(x, k, monkeypatch, rng, dout=dout)
    _check(np.asfortranarray(x), k, monkeypatch, rng, dout=dout)


@pytest.mark.filterwarnings("ignore:invalid value encountered in multiply:RuntimeWarning")
@pytest.mark.parametrize("k", [2, 3])
def test_non_finite_and_other_dtype_upstream_gradient(monkeypatch, k):
    """inf * 0 is NaN: every element of an inf window's gradient is NaN on both paths; a
    float64 dout for float32 x is rounded to float32 first on both."""
    rng = np.random.default_rng(4)
    x = rng.integers(-2, 3, (2, 3, 9, 9)).astype(np.float32)
    Ho = 1 + (9 - k) // 2
    dout = rng.standard_normal((2, 3, Ho, Ho))
    dout[0, 0, 1, 1] = np.inf
    dout[1, 2, 0, 0] = -np.inf
    dout[1, 1, 2, 2] = np.nan
    dout[0, 2] = -0.0
    _check(x, k, monkeypatch, rng, dout=dout)


@pytest.mark.parametrize("pp", [(2, 2, 1), (3, 3, 3), (2, 3, 2), (1, 1, 2)])
def test_other_windows_take_the_numpy_path(monkeypatch, pp):
    ph, pw, s = pp
    x = np.random.default_rng(5).standard_normal((2, 2, 7, 7))
    monkeypatch.setenv("NORMLAB_BACKEND", "numba")
    _, cache = max_pool_forward(x, {"pool_height": ph, "pool_width": pw, "stride": s})
    assert cache[-1] is None


def test_kernel_cache_with_the_numpy_backend_gives_the_same_gradient(monkeypatch):
    """NORMLAB_BACKEND=numpy set between forward and backward: the NumPy backward runs."""
    rng = np.random.default_rng(6)
    x = rng.integers(-2, 3, (2, 3, 8, 8)).astype(np.float64)
    dout = rng.standard_normal((2, 3, 4, 4))
    monkeypatch.setenv("NORMLAB_BACKEND", "numba")
    _, cache = max_pool_forward(x, _param(2))
    assert cache[-1] is not None
    dx = max_pool_backward(dout, cache)
    monkeypatch.setenv("NORMLAB_BACKEND", "numpy")
    _assert_same_bits(max_pool_backward(dout, cache), dx, "dx")


@pytest.mark.parametrize("k", [2, 3])
def test_empty_and_read_only_inputs(monkeypatch, k):
    """An empty batch or channel axis, and read-only x and dout (numba types them apart)."""
    rng = np.random.default_rng(7)
    for shape in [(0, 3, 9, 9), (2, 0, 9, 9)]:
        _check(np.zeros(shape, np.float32), k, monkeypatch, rng)
    x = rng.integers(-2, 3, (2, 3, 9, 9)).astype(np.float32)
    x.setflags(write=False)
    Ho = 1 + (9 - k) // 2
    dout = rng.standard_normal((2, 3, Ho, Ho)).astype(np.float32)
    dout.setflags(write=False)
    _check(x, k, monkeypatch, rng, dout=dout)
