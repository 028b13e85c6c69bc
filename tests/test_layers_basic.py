"""Affine, activations, dropout and losses: gradient checks and PyTorch parity."""

import numpy as np
import pytest

from normlab import layers as L
from normlab.gradient_check import check_layer, eval_numerical_gradient, rel_error
from normlab.layers.basic import affine_forward_unchecked, affine_param_grads


@pytest.mark.parametrize(
    "fwd,bwd",
    [
        (L.relu_forward, L.relu_backward),
        (L.sigmoid_forward, L.sigmoid_backward),
        (L.tanh_forward, L.tanh_backward),
    ],
)
def test_activation_gradients(rng, fwd, bwd):
    (row,) = check_layer(fwd, bwd, [rng.standard_normal((4, 5))])
    assert row.rel_error < 1e-8


def test_affine_gradients_any_input_shape(rng):
    x, w, b = rng.standard_normal((3, 2, 4)), rng.standard_normal((8, 5)), rng.standard_normal(5)
    rows = check_layer(L.affine_forward, L.affine_backward, [x, w, b])
    assert max(r.rel_error for r in rows) < 1e-8
    out, _ = L.affine_forward(x, w, b)
    np.testing.assert_allclose(out, x.reshape(3, 8) @ w + b)


@pytest.mark.parametrize("shape", [(3, 8), (3, 2, 4), (0, 8)])
def test_the_models_unchecked_affine_twin_equals_the_layer(rng, shape):
    x, w, b = rng.standard_normal(shape), rng.standard_normal((8, 5)), rng.standard_normal(5)
    out, cache = L.affine_forward(x, w, b)
    twin, twin_cache = affine_forward_unchecked(x, w, b)
    np.testing.assert_array_equal(twin, out)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = L.affine_backward(dout, cache)
    assert dx.shape == shape
    for got, want in zip(affine_param_grads(dout, twin_cache), (dw, db), strict=True):
        np.testing.assert_array_equal(got, want)


def test_sigmoid_is_overflow_free():
    out, _ = L.sigmoid_forward(np.array([-1000.0, 0.0, 1000.0]))
    np.testing.assert_array_equal(out, [0.0, 0.5, 1.0])


def test_dropout_inverted_scaling_and_test_mode(rng):
    x = np.ones((500, 500))
    out, _ = L.dropout_forward(x, {"mode": "train", "p": 0.3, "seed": 0})
    assert abs(out.mean() - 1) < 0.01  # E[mask / p] = 1
    assert abs((out != 0).mean() - 0.3) < 0.01  # p is the keep probability
    assert set(np.unique(out)) == {0.0, 1 / 0.3}
    out, _ = L.dropout_forward(x, {"mode": "test", "p": 0.3})
    assert out is x


def test_dropout_gradient(rng):
    (row,) = check_layer(
        L.dropout_forward,
        L.dropout_backward,
        [rng.standard_normal((5, 6))],
        kwargs={"dropout_param": {"mode": "train", "p": 0.6, "seed": 3}},
    )
    assert row.rel_error < 1e-8


@pytest.mark.parametrize("loss_fn", [L.softmax_loss, L.svm_loss])
def test_loss_gradients(rng, loss_fn):
    x, y = rng.standard_normal((6, 4)), rng.integers(0, 4, 6)
    _, dx = loss_fn(x, y)
    num = eval_numerical_gradient(lambda x: loss_fn(x, y)[0], x, verbose=False)
    assert rel_error(num, dx) < 1e-7


def test_softmax_loss_matches_torch(rng):
    torch = pytest.importorskip("torch")
    x, y = rng.standard_normal((7, 5)) * 10, rng.integers(0, 5, 7)
    loss, dx = L.softmax_loss(x, y)
    xt = torch.tensor(x, requires_grad=True)
    lt = torch.nn.functional.cross_entropy(xt, torch.tensor(y))
    lt.backward()
    np.testing.assert_allclose(loss, lt.item(), rtol=1e-12)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_svm_loss_matches_torch(rng):
    torch = pytest.importorskip("torch")
    x, y = rng.standard_normal((7, 5)), rng.integers(0, 5, 7)
    loss, _ = L.svm_loss(x, y)
    # multi_margin_loss averages over C classes as well; the assignment's loss does not.
    expected = torch.nn.functional.multi_margin_loss(torch.tensor(x), torch.tensor(y)).item() * 5
    np.testing.assert_allclose(loss, expected, rtol=1e-12)


def test_loss_rejects_bad_labels(rng):
    with pytest.raises(ValueError, match=r"labels in \[0, 4\)"):
        L.softmax_loss(rng.standard_normal((3, 4)), np.array([0, 4, 1]))
    with pytest.raises(ValueError, match=r"expected x \(N, C\) and y \(N,\)"):
        L.softmax_loss(rng.standard_normal((3, 4)), np.array([0, 1]))
