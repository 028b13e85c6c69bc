"""The naive loops (normlab.layers.naive) are gradient-checked, and the fast conv and pooling
layers (normlab.layers.conv, public API only) are held to them on several geometries."""

import numpy as np
import pytest

from normlab.gradient_check import check_layer
from normlab.layers import (
    conv_backward,
    conv_backward_naive,
    conv_forward,
    conv_forward_naive,
    max_pool_backward,
    max_pool_backward_naive,
    max_pool_forward,
    max_pool_forward_naive,
)

# (x shape, w shape, stride, pad): stride 2, pad 0/1/2, non-square inputs and kernels
CONV_CASES = [
    ((2, 3, 5, 5), (4, 3, 3, 3), 1, 1),
    ((2, 3, 7, 5), (2, 3, 3, 3), 2, 1),
    ((1, 2, 6, 9), (3, 2, 2, 4), 2, 0),
    ((2, 1, 4, 6), (2, 1, 5, 3), 1, 2),
    ((3, 2, 8, 7), (2, 2, 3, 2), 3, 2),
]
# (x shape, pool_height, pool_width, stride): tiling, overlapping, non-square, leftover rows
POOL_CASES = [
    ((2, 3, 4, 4), 2, 2, 2),
    ((2, 2, 5, 7), 2, 2, 2),
    ((1, 2, 6, 5), 3, 2, 1),
    ((2, 1, 7, 8), 3, 3, 2),
    ((1, 3, 4, 9), 1, 4, 3),
]


@pytest.mark.parametrize(("x_shape", "w_shape", "stride", "pad"), CONV_CASES)
def test_fast_conv_matches_the_naive_loops(x_shape, w_shape, stride, pad):
    rng = np.random.default_rng(0)
    x, w, b = rng.normal(size=x_shape), rng.normal(size=w_shape), rng.normal(size=w_shape[0])
    param = {"stride": stride, "pad": pad}
    out, cache = conv_forward(x, w, b, param)
    ref, ref_cache = conv_forward_naive(x, w, b, param)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    dout = rng.normal(size=ref.shape)
    for got, want in zip(
        conv_backward(dout, cache), conv_backward_naive(dout, ref_cache), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("x_shape", "ph", "pw", "stride"), POOL_CASES)
@pytest.mark.parametrize("ties", [False, True])
def test_fast_max_pool_matches_the_naive_loops(x_shape, ph, pw, stride, ties):
    rng = np.random.default_rng(1)
    x = rng.normal(size=x_shape)
    if ties:  # few distinct values: windows with tied maxima, routed to the first in both
        x = np.round(x)
    param = {"pool_height": ph, "pool_width": pw, "stride": stride}
    out, cache = max_pool_forward(x, param)
    ref, ref_cache = max_pool_forward_naive(x, param)
    np.testing.assert_array_equal(out, ref)
    dout = rng.normal(size=ref.shape)
    np.testing.assert_allclose(
        max_pool_backward(dout, cache), max_pool_backward_naive(dout, ref_cache), rtol=1e-14
    )


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "stride", "pad"),
    [((1, 2, 4, 3), (2, 2, 3, 3), 1, 1), ((2, 1, 5, 4), (2, 1, 2, 3), 2, 0)],
)  # small: every numerical derivative runs the loops again
def test_naive_conv_gradcheck(x_shape, w_shape, stride, pad):
    rng = np.random.default_rng(2)
    inputs = [rng.normal(size=x_shape), rng.normal(size=w_shape), rng.normal(size=w_shape[0])]
    rows = check_layer(
        conv_forward_naive, conv_backward_naive, inputs, ["dx", "dw", "db"],
        kwargs={"conv_param": {"stride": stride, "pad": pad}},
    )  # fmt: skip
    assert all(r.passed for r in rows), rows


def test_naive_max_pool_gradcheck():
    x = np.random.default_rng(3).normal(size=(2, 2, 5, 6))
    param = {"pool_height": 3, "pool_width": 2, "stride": 2}
    rows = check_layer(
        max_pool_forward_naive, max_pool_backward_naive, [x], kwargs={"pool_param": param}
    )
    assert all(r.passed for r in rows), rows


def test_naive_conv_assignment_example():
    """The assignment notebook's conv_forward_naive check, its expected output recomputed here
    by a direct sum (the notebook's printed array is not copied)."""
    x = np.linspace(-0.1, 0.5, num=2 * 3 * 4 * 4).reshape((2, 3, 4, 4))
    w = np.linspace(-0.2, 0.3, num=3 * 3 * 4 * 4).reshape((3, 3, 4, 4))
    b = np.linspace(-0.1, 0.2, num=3)
    out, _ = conv_forward_naive(x, w, b, {"stride": 2, "pad": 1})
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    want = np.einsum("ncijkl,fckl->nfij", _windows(xp, 4, 4, 2), w) + b[:, None, None]
    assert out.shape == (2, 3, 2, 2)
    np.testing.assert_allclose(out, want, rtol=1e-12)


def _windows(xp, kh, kw, s):
    """(N, C, H', W', kh, kw) windows of xp at stride s."""
    v = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    return v[:, :, ::s, ::s]


def _conv(x_shape, w_shape, param):
    F = w_shape[0]
    return conv_forward_naive(np.ones(x_shape), np.ones(w_shape), np.ones(F), param)


def _pool(x_shape, param):
    return max_pool_forward_naive(np.ones(x_shape), param)


BAD_INPUTS = [
    (lambda: _conv((1, 2, 3), (1, 2, 1, 1), {}), "x of shape"),
    (lambda: _conv((1, 2, 3, 3), (1, 3, 1, 1), {}), "w of shape"),
    (lambda: _conv((1, 1, 3, 3), (1, 1, 1, 1), {"stride": 0}), "'stride'"),
    (lambda: _conv((1, 1, 2, 2), (1, 1, 3, 3), {}), "kernel"),
    (lambda: _pool((1, 1, 4, 4), {"pool_height": 2, "stride": 2}), "pool_width"),
    (lambda: _pool((1, 1, 2, 2), {"pool_height": 3, "pool_width": 1, "stride": 1}), "window"),
]


@pytest.mark.parametrize(("call", "match"), BAD_INPUTS)
def test_naive_layers_refuse_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
