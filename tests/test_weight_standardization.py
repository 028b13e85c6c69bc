"""Weight standardization: PyTorch autograd of the formula, gradient check, invariances, errors."""

import numpy as np
import pytest

from normlab.gradient_check import check_layer
from normlab.layers.weight_standardization import (
    weight_standardize_backward,
    weight_standardize_forward,
)

SHAPES = [(4, 3, 3, 3), (6, 2, 1, 5), (5, 7)]


def _torch_ws(w, eps):
    """The formula in PyTorch: per filter over all but dim 0, biased variance, eps inside."""
    torch = pytest.importorskip("torch")  # the oracle: skipped without it, as README says
    dims = tuple(range(1, w.dim()))
    var, mean = torch.var_mean(w, dim=dims, keepdim=True, correction=0)
    return (w - mean) / torch.sqrt(var + eps)


@pytest.mark.parametrize(
    "dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-5)], ids=["float64", "float32"]
)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("eps", [1e-5, 1e-2])
def test_matches_pytorch_autograd(rng, dtype, tol, shape, eps):
    w = (0.2 + 0.1 * rng.standard_normal(shape)).astype(dtype)
    dw_hat = rng.standard_normal(shape).astype(dtype)
    w_hat, cache = weight_standardize_forward(w, {"eps": eps})
    dw = weight_standardize_backward(dw_hat, cache)
    assert w_hat.dtype == dtype and dw.dtype == dtype and dw.shape == shape

    torch = pytest.importorskip("torch")
    wt = torch.tensor(w, requires_grad=True)
    ref = _torch_ws(wt, eps)
    ref.backward(torch.tensor(dw_hat))
    np.testing.assert_allclose(w_hat, ref.detach().numpy(), rtol=tol, atol=tol)
    scale = np.abs(wt.grad.numpy()).max()  # dw ~ 1/std: compare on its own scale
    np.testing.assert_allclose(dw / scale, wt.grad.numpy() / scale, rtol=tol, atol=tol)


@pytest.mark.parametrize("shape", SHAPES)
def test_gradient_check(rng, shape):
    w = 0.5 * rng.standard_normal(shape)
    rows = check_layer(
        weight_standardize_forward,
        weight_standardize_backward,
        [w],
        ["dw"],
        {"ws_param": {"eps": 1e-5}},
        seed=7,
        layer="weight_standardize",
    )
    assert rows[0].rel_error < 1e-7, rows[0]


def test_each_filter_has_mean_zero_and_unit_variance(rng):
    w = rng.normal(3.0, 0.7, size=(8, 4, 3, 3)) * rng.uniform(0.1, 5, size=(8, 1, 1, 1))
    eps = 1e-5
    w_hat, _ = weight_standardize_forward(w, {"eps": eps})
    np.testing.assert_allclose(w_hat.mean(axis=(1, 2, 3)), 0, atol=1e-14)
    var = w.var(axis=(1, 2, 3))
    # exactly var / (var + eps): 1 up to eps
    np.testing.assert_allclose(w_hat.var(axis=(1, 2, 3)), var / (var + eps), rtol=1e-12)
    np.testing.assert_allclose(w_hat.var(axis=(1, 2, 3)), 1, atol=1e-4)


def test_invariant_to_a_per_filter_affine_change(rng):
    w = rng.standard_normal((6, 3, 3, 3))
    a = rng.uniform(0.5, 4, size=(6, 1, 1, 1))  # positive scale per filter
    b = rng.uniform(-10, 10, size=(6, 1, 1, 1))  # shift per filter
    p = {"eps": 1e-12}  # eps is the only term that sees the scale
    w_hat, cache = weight_standardize_forward(w, p)
    w_hat2, cache2 = weight_standardize_forward(a * w + b, p)
    np.testing.assert_allclose(w_hat2, w_hat, rtol=1e-10, atol=1e-10)
    # and the gradient, the derivative of that invariance: orthogonal to ones and to w_hat
    dw = weight_standardize_backward(rng.standard_normal(w.shape), cache)
    np.testing.assert_allclose(dw.sum(axis=(1, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose((dw * w_hat).sum(axis=(1, 2, 3)), 0, atol=1e-10)


def test_2d_weights_are_rows(rng):
    w = rng.standard_normal((5, 12))
    w_hat, _ = weight_standardize_forward(w)  # ws_param optional, eps 1e-5
    w4, _ = weight_standardize_forward(w.reshape(5, 3, 2, 2), {"eps": 1e-5})
    np.testing.assert_array_equal(w_hat, w4.reshape(5, 12))


def test_constant_filter_maps_to_zeros():
    w = np.full((2, 3, 2, 2), 0.25)
    w_hat, cache = weight_standardize_forward(w, {})
    np.testing.assert_array_equal(w_hat, 0)
    assert np.all(np.isfinite(weight_standardize_backward(np.ones_like(w), cache)))


@pytest.mark.parametrize("shape", [(3,), (2, 3, 4), (2, 3, 4, 5, 6), (0, 4), (3, 0)])
def test_bad_shapes(shape):
    with pytest.raises(ValueError, match=r"expected w of shape \(F, C, HH, WW\) or \(F, D\)"):
        weight_standardize_forward(np.zeros(shape), {})


def test_unknown_key_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown ws_param key 'epsilon'.*\['eps'\]"):
        weight_standardize_forward(np.ones((2, 3)), {"epsilon": 1e-5})


@pytest.mark.parametrize("eps", [0.0, -1e-5, float("nan"), "1e-5"])
def test_bad_eps(eps):
    with pytest.raises(ValueError, match="expected eps > 0"):
        weight_standardize_forward(np.ones((2, 3)), {"eps": eps})


def test_backward_checks_its_arguments(rng):
    _, cache = weight_standardize_forward(rng.standard_normal((4, 2, 3, 3)), {})
    with pytest.raises(ValueError, match=r"expected dw_hat of shape \(4, 2, 3, 3\)"):
        weight_standardize_backward(np.zeros((4, 18)), cache)
    with pytest.raises(ValueError, match="expected the cache of weight_standardize_forward"):
        weight_standardize_backward(np.zeros((4, 2, 3, 3)), {"w_hat": 0})
