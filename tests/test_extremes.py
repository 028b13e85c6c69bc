"""Losses and activations at extreme inputs: finite, correct and shift invariant.

Every softmax must subtract the row maximum before exponentiating: without it the logits
``[[100, 0, -5], [800, 1, 2]]`` give an infinite loss instead of 399.5. Both softmax paths (the
readable ``softmax_loss`` and the models' fused ``softmax_cross_entropy``, as numba kernel and
as NumPy) are checked in float32 and float64, as are the SVM loss and the activations at
|x| = 1e4 and 1e30 (no overflow warning, no NaN, the limits' exact values).
"""

from __future__ import annotations

import numpy as np
import pytest

from normlab import layers as L
from normlab.layers.losses import softmax_cross_entropy

DTYPES = (np.float32, np.float64)
EXTREME = [[100.0, 0.0, -5.0], [800.0, 1.0, 2.0]]  # (N=2, C=3)
LABELS = np.array([0, 1])
# Row 0: -log softmax_0 = log(1 + e^-100 + e^-105) ~ 0; row 1: 800 - 1 + log(1 + ...) = 799.
SOFTMAX_LOSS = 399.5
SOFTMAX_GRAD = np.array([[0.0, 0.0, 0.0], [1.0, -1.0, 0.0]]) / 2  # (softmax - onehot) / N


def _fused(backend):
    def loss(x, y, monkeypatch):
        monkeypatch.setenv("NORMLAB_BACKEND", backend)
        return softmax_cross_entropy(x, y)

    return loss


SOFTMAXES = {
    "softmax_loss": lambda x, y, monkeypatch: L.softmax_loss(x, y),
    "fused-numba": _fused("numba"),
    "fused-numpy": _fused("numpy"),
}


@pytest.fixture(autouse=True)
def no_silent_overflow():
    """An overflow, a 0/0 or a division by zero anywhere in a test is an error."""
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        yield


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", SOFTMAXES)
def test_softmax_is_finite_and_right_at_large_logits(impl, dtype, monkeypatch):
    x = np.array(EXTREME, dtype=dtype)
    loss, dx = SOFTMAXES[impl](x, LABELS, monkeypatch)
    assert np.isfinite(loss) and np.isfinite(dx).all()
    assert loss == pytest.approx(SOFTMAX_LOSS, rel=1e-6)
    np.testing.assert_allclose(dx, SOFTMAX_GRAD, atol=1e-7)
    assert dx.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", SOFTMAXES)
@pytest.mark.parametrize("shift", [-1e4, -800.0, 1e3, 1e4])
def test_softmax_is_shift_invariant(impl, dtype, shift, monkeypatch, rng):
    # integer logits, so that x + shift is exact in float32 too
    x = np.vstack([EXTREME, rng.integers(-60, 60, (6, 3))]).astype(dtype)  # (8, 3)
    y = np.array([0, 1, *rng.integers(0, 3, 6)])
    loss, dx = SOFTMAXES[impl](x, y, monkeypatch)
    loss_shifted, dx_shifted = SOFTMAXES[impl](x + dtype(shift), y, monkeypatch)
    assert np.isfinite(loss_shifted) and np.isfinite(dx_shifted).all()
    assert loss_shifted == pytest.approx(loss, rel=1e-6)
    np.testing.assert_allclose(dx_shifted, dx, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_svm_loss_is_finite_right_and_shift_invariant(dtype, rng):
    x = np.array(EXTREME, dtype=dtype)
    loss, dx = L.svm_loss(x, LABELS)
    # Row 0: no margin violated; row 1: (800 - 1 + 1) + (2 - 1 + 1) = 802.
    assert loss == pytest.approx(401.0, rel=1e-7)
    np.testing.assert_allclose(dx, np.array([[0, 0, 0], [1, -2, 1]]) / 2)
    for shift in (-1e4, 1e4):
        shifted, dshifted = L.svm_loss(x + dtype(shift), LABELS)
        assert shifted == pytest.approx(loss, rel=1e-7)
        np.testing.assert_array_equal(dshifted, dx)
    huge = np.array([[1e30, 0.0, -1e30], [-1e30, 1e30, 0.0]], dtype=dtype)  # (2, 3)
    loss, dx = L.svm_loss(huge, LABELS)
    assert np.isfinite(loss) and np.isfinite(dx).all()
    assert loss == pytest.approx(0.0)  # both rows are classified right by a huge margin
    loss, dx = L.svm_loss(huge, np.array([2, 0]))
    assert loss == pytest.approx(3e30, rel=1e-6)  # each row: 2e30 + 1e30 (+ 1 + 1, lost)
    assert np.isfinite(dx).all()


# (forward, backward, value at +big, value at -big, derivative at +-big)
ACTIVATIONS = {
    "relu": (L.relu_forward, L.relu_backward, lambda big: big, 0.0, None),
    "sigmoid": (L.sigmoid_forward, L.sigmoid_backward, lambda big: 1.0, 0.0, 0.0),
    "tanh": (L.tanh_forward, L.tanh_backward, lambda big: 1.0, -1.0, 0.0),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("big", [1e4, 1e30])
@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activations_finite_and_exact_at_extremes(name, big, dtype, rng):
    fwd, bwd, at_plus, at_minus, slope = ACTIVATIONS[name]
    x = np.array([[big, -big, 0.0], [-big, big, 1.0]], dtype=dtype)  # (2, 3)
    out, cache = fwd(x)
    assert out.dtype == dtype and np.isfinite(out).all()
    np.testing.assert_array_equal(out[x == big], dtype(at_plus(dtype(big))))
    np.testing.assert_array_equal(out[x == -big], dtype(at_minus))
    dout = rng.standard_normal(x.shape).astype(dtype)  # (2, 3)
    dx = bwd(dout, cache)
    assert dx.dtype == dtype and np.isfinite(dx).all()
    extreme = np.abs(x) == dtype(big)
    if slope is not None:  # sigmoid and tanh saturate: no gradient flows
        np.testing.assert_array_equal(dx[extreme], 0.0)
    else:  # relu passes dout where x > 0
        np.testing.assert_array_equal(dx[extreme], np.where(x > 0, dout, 0)[extreme])
