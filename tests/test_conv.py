"""Convolution and max pooling: gradient checks, the PyTorch oracle, dtypes, boundary errors."""

from __future__ import annotations

import numpy as np
import pytest

from normlab.gradient_check import eval_numerical_gradient_array, rel_error
from normlab.layers.conv import (
    conv_backward,
    conv_forward,
    conv_param_grads,
    max_pool_backward,
    max_pool_forward,
)

# (x shape, w shape, stride, pad): stride 1 and larger, a kernel nearly as large as the padded
# input, non-square inputs and kernels, floored sizes.
CONV_CASES = [
    ((2, 3, 7, 6), (4, 3, 3, 3), 1, 1),
    ((2, 3, 7, 6), (4, 3, 3, 2), 1, 0),
    ((2, 2, 9, 7), (3, 2, 3, 3), 2, 1),
    ((2, 2, 8, 9), (3, 2, 2, 3), 3, 2),
    ((1, 2, 5, 5), (2, 2, 4, 4), 1, 0),
    ((2, 3, 6, 5), (2, 3, 1, 1), 2, 0),
]
# (x shape, pool_height, pool_width, stride): tiling, overlapping, gaps, floored sizes.
POOL_CASES = [
    ((2, 3, 8, 6), 2, 2, 2),
    ((2, 2, 9, 7), 3, 3, 2),
    ((2, 2, 7, 8), 2, 3, 1),
    ((2, 2, 7, 7), 2, 2, 3),
    ((1, 2, 5, 7), 2, 2, 2),
]


def _conv_data(rng, xs, ws, dtype=np.float64):
    x = rng.standard_normal(xs).astype(dtype)
    w = rng.standard_normal(ws).astype(dtype)
    b = rng.standard_normal(ws[0]).astype(dtype)
    return x, w, b


def _pool_param(ph, pw, s):
    return {"pool_height": ph, "pool_width": pw, "stride": s}


@pytest.mark.parametrize("xs, ws, stride, pad", CONV_CASES)
def test_conv_gradients_match_numerical(xs, ws, stride, pad):
    rng = np.random.default_rng(0)
    x, w, b = _conv_data(rng, xs, ws)
    cp = {"stride": stride, "pad": pad}
    out, cache = conv_forward(x, w, b, cp)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = conv_backward(dout, cache)
    # The convolution is linear in each argument: a large step has no truncation error and
    # less cancellation than the default h=1e-5.
    h = 1e-3
    dx_num = eval_numerical_gradient_array(lambda v: conv_forward(v, w, b, cp)[0], x, dout, h)
    dw_num = eval_numerical_gradient_array(lambda v: conv_forward(x, v, b, cp)[0], w, dout, h)
    db_num = eval_numerical_gradient_array(lambda v: conv_forward(x, w, v, cp)[0], b, dout, h)
    assert rel_error(dx, dx_num) < 1e-7
    assert rel_error(dw, dw_num) < 1e-7
    assert rel_error(db, db_num) < 1e-7


@pytest.mark.parametrize("xs, ph, pw, stride", POOL_CASES)
def test_max_pool_gradient_matches_numerical(xs, ph, pw, stride):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(xs)  # continuous: no ties, so the gradient is well defined
    pp = _pool_param(ph, pw, stride)
    out, cache = max_pool_forward(x, pp)
    dout = rng.standard_normal(out.shape)
    dx = max_pool_backward(dout, cache)
    dx_num = eval_numerical_gradient_array(lambda v: max_pool_forward(v, pp)[0], x, dout)
    assert rel_error(dx, dx_num) < 1e-7


def test_conv_forward_known_values():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    w = np.array([[[[1.0, 0.0], [0.0, -1.0]]]])  # x[i, j] - x[i+1, j+1] = -5 everywhere
    out, _ = conv_forward(x, w, np.array([2.0]), {"stride": 2, "pad": 0})
    np.testing.assert_array_equal(out, np.full((1, 1, 2, 2), -3.0))
    out, _ = conv_forward(x, np.ones((1, 1, 3, 3)), np.zeros(1), {"stride": 1, "pad": 1})
    assert out[0, 0, 0, 0] == 0 + 1 + 4 + 5  # zero padding: only the 2x2 corner counts
    assert out[0, 0, 1, 1] == x[0, 0, :3, :3].sum()


@pytest.mark.parametrize("xs, ws, stride, pad", CONV_CASES)
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-10), (np.float32, 1e-4)])
def test_conv_matches_torch(xs, ws, stride, pad, dtype, tol):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x, w, b = _conv_data(rng, xs, ws, dtype)
    out, cache = conv_forward(x, w, b, {"stride": stride, "pad": pad})
    dout = rng.standard_normal(out.shape).astype(dtype)
    dx, dw, db = conv_backward(dout, cache)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    y = torch.nn.functional.conv2d(xt, wt, bt, stride=stride, padding=pad)
    y.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, y.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(dw, wt.grad.numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(db, bt.grad.numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("xs, ph, pw, stride", POOL_CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_max_pool_matches_torch_with_ties(xs, ph, pw, stride, dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    # Few distinct values, many zeros (as after a ReLU): most windows have tied maxima.
    x = np.maximum(rng.integers(-2, 3, size=xs), 0).astype(dtype)
    pp = _pool_param(ph, pw, stride)
    out, cache = max_pool_forward(x, pp)
    dout = rng.standard_normal(out.shape).astype(dtype)
    dx = max_pool_backward(dout, cache)
    xt = torch.tensor(x, requires_grad=True)
    y = torch.nn.functional.max_pool2d(xt, (ph, pw), stride)
    y.backward(torch.tensor(dout))
    np.testing.assert_array_equal(out, y.detach().numpy())
    grad = xt.grad.numpy()
    np.testing.assert_array_equal(dx != 0, grad != 0)  # the same element of each window
    np.testing.assert_allclose(dx, grad, rtol=1e-12 if dtype == np.float64 else 1e-6, atol=0)
    assert np.count_nonzero(dx) <= out.size


def test_max_pool_routes_ties_to_first_maximum():
    x = np.zeros((1, 1, 2, 2))
    out, cache = max_pool_forward(x, _pool_param(2, 2, 2))
    dx = max_pool_backward(np.array([[[[3.0]]]]), cache)
    np.testing.assert_array_equal(dx, [[[[3.0, 0.0], [0.0, 0.0]]]])


def test_max_pool_forward_output_owns_its_memory():
    x = np.arange(12.0).reshape(1, 1, 3, 4)
    out, _ = max_pool_forward(x, _pool_param(1, 1, 1))
    np.testing.assert_array_equal(out, x)
    assert not np.shares_memory(out, x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_preserved(dtype):
    rng = np.random.default_rng(4)
    x, w, b = _conv_data(rng, (2, 3, 6, 6), (4, 3, 3, 3), dtype)
    out, cache = conv_forward(x, w, b, {"stride": 1, "pad": 1})
    grads = conv_backward(np.ones_like(out), cache)
    assert out.dtype == dtype and all(g.dtype == dtype for g in grads)
    assert all(g.shape == a.shape for g, a in zip(grads, (x, w, b), strict=True))
    pooled, pcache = max_pool_forward(out, _pool_param(2, 2, 2))
    assert pooled.dtype == dtype and max_pool_backward(pooled, pcache).dtype == dtype


def test_conv_mixed_dtypes_return_gradients_in_input_dtypes():
    rng = np.random.default_rng(5)
    x, w, b = _conv_data(rng, (1, 2, 5, 5), (3, 2, 3, 3), np.float32)
    out, cache = conv_forward(x, w.astype(np.float64), b, {"pad": 1})
    dx, dw, db = conv_backward(np.ones_like(out), cache)
    assert out.dtype == np.float64
    assert (dx.dtype, dw.dtype, db.dtype) == (np.float32, np.float64, np.float32)


def test_conv_param_defaults_are_stride_1_pad_0():
    rng = np.random.default_rng(6)
    x, w, b = _conv_data(rng, (1, 2, 6, 5), (3, 2, 3, 2))
    out, _ = conv_forward(x, w, b, {})
    ref, _ = conv_forward(x, w, b, {"stride": 1, "pad": 0})
    assert out.shape == (1, 3, 4, 4)
    np.testing.assert_array_equal(out, ref)


X4, W4, B4 = np.zeros((2, 3, 5, 5)), np.zeros((4, 3, 3, 3)), np.zeros(4)


@pytest.mark.parametrize(
    "x, w, b, cp, message",
    [
        (np.zeros((3, 4)), W4, B4, {}, r"expected x of shape \(N, C, H, W\), got \(3, 4\)"),
        (X4, np.zeros((4, 3, 3)), B4, {}, r"expected w of shape \(F, C, HH, WW\), got \(4, 3, 3\)"),
        (X4, np.zeros((4, 2, 3, 3)), B4, {}, r"expected w with C=3 input channels"),
        (X4, W4, np.zeros(3), {}, r"expected b of shape \(4,\), got \(3,\)"),
        (X4, W4, np.zeros((4, 1)), {}, r"expected b of shape \(4,\), got \(4, 1\)"),
        (X4, np.zeros((4, 3, 6, 3)), B4, {}, r"padded input \(5, 5\).*got kernel \(6, 3\)"),
        (X4, np.zeros((4, 3, 8, 8)), B4, {"pad": 1}, r"padded input \(7, 7\)"),
        (X4, W4, B4, {"stride": 0}, r"expected conv_param\['stride'\] >= 1, got 0"),
        (X4, W4, B4, {"pad": -1}, r"expected conv_param\['pad'\] >= 0, got -1"),
        (X4, W4, B4, {"stride": 1.5}, r"expected integer conv_param\['stride'\], got 1.5"),
        (X4, W4, B4, {"padding": 1}, r"unknown conv_param keys \['padding'\], known keys"),
    ],
)
def test_conv_forward_rejects_bad_input(x, w, b, cp, message):
    with pytest.raises(ValueError, match=message):
        conv_forward(x, w, b, cp)


def test_conv_allows_floored_output_size_like_torch():
    out, _ = conv_forward(
        np.zeros((1, 1, 6, 6)), np.zeros((1, 1, 3, 3)), np.zeros(1), {"stride": 2}
    )
    assert out.shape == (1, 1, 2, 2)  # 1 + (6 - 3) // 2


def test_backward_rejects_wrong_dout_shape():
    out, cache = conv_forward(X4, W4, B4, {"pad": 1})
    with pytest.raises(ValueError, match=r"expected dout of shape \(2, 4, 5, 5\), got \(2, 4, 5\)"):
        conv_backward(out[..., 0], cache)
    pooled, pcache = max_pool_forward(X4, _pool_param(2, 2, 2))
    with pytest.raises(ValueError, match=r"expected dout of shape \(2, 3, 2, 2\), got \(3, 2, 2\)"):
        max_pool_backward(pooled[0], pcache)


@pytest.mark.parametrize("stride, pad", [(1, 1), (2, 0), (1, 0)])
def test_conv_param_grads_equal_conv_backward(stride, pad):
    """The input layer's shortcut returns conv_backward's dw and db, bit for bit (stride 1 and
    2, padded and not), so a model that skips dx trains the same."""
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((3, 2, 7, 7)), rng.standard_normal((4, 2, 3, 3)), rng.random(4)
    out, cache = conv_forward(x, w, b, {"stride": stride, "pad": pad})
    dout = rng.standard_normal(out.shape)
    _, dw, db = conv_backward(dout, cache)
    dw2, db2 = conv_param_grads(dout, cache)
    np.testing.assert_array_equal(dw2, dw)
    np.testing.assert_array_equal(db2, db)
    with pytest.raises(ValueError, match=r"conv_param_grads: expected dout of shape"):
        conv_param_grads(out[..., 0], cache)


@pytest.mark.parametrize(
    "x, pp, message",
    [
        (np.zeros((3, 4, 4)), _pool_param(2, 2, 2), r"expected x of shape \(N, C, H, W\)"),
        (X4, _pool_param(6, 2, 2), r"no larger than the input \(5, 5\), got \(6, 2\)"),
        (X4, _pool_param(2, 2, 0), r"expected pool_param\['stride'\] >= 1, got 0"),
        (X4, _pool_param(0, 2, 1), r"expected pool_param\['pool_height'\] >= 1, got 0"),
        (X4, {"pool_height": 2, "pool_width": 2}, r"expected key 'stride' in pool_param"),
        (X4, {**_pool_param(2, 2, 2), "pad": 1}, r"unknown pool_param keys \['pad'\]"),
    ],
)
def test_max_pool_forward_rejects_bad_input(x, pp, message):
    with pytest.raises(ValueError, match=message):
        max_pool_forward(x, pp)
