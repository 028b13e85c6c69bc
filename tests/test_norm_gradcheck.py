"""Every normalization backward against centred differences, float64, random upstream gradient."""

import numpy as np
import pytest

from normlab import layers as L
from normlab.gradient_check import check_layer, eval_numerical_gradient_array, rel_error


def _assert_rows(rows, tol=1e-6):
    for r in rows:
        assert r.rel_error < tol, f"{r.layer} {r.gradient}: {r.rel_error:.2e}"


@pytest.mark.parametrize("bwd", [L.batchnorm_backward, L.batchnorm_backward_alt])
@pytest.mark.parametrize("shape", [(8, 5), (3, 4), (33, 17)])
def test_batchnorm(backend, rng, bwd, shape):
    D = shape[1]
    x = 4 + 3 * rng.standard_normal(shape)
    rows = check_layer(
        L.batchnorm_forward,
        bwd,
        [x, rng.standard_normal(D), rng.standard_normal(D)],
        ["dx", "dgamma", "dbeta"],
        {"bn_param": {"mode": "train"}},
        seed=1,
    )
    _assert_rows(rows)


def test_batchnorm_test_mode(backend, rng):
    bn_param = {
        "mode": "test",
        "running_mean": rng.standard_normal(4),
        "running_var": 0.5 + rng.random(4),
        "eps": 1e-3,
    }
    x = rng.standard_normal((6, 4))
    rows = check_layer(
        L.batchnorm_forward,
        L.batchnorm_backward_alt,
        [x, rng.standard_normal(4), rng.standard_normal(4)],
        kwargs={"bn_param": bn_param},
        seed=2,
    )
    _assert_rows(rows)


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (5, 2, 1, 1), (3, 4, 7, 3)])
def test_spatial_batchnorm(backend, rng, shape):
    C = shape[1]
    x = -2 + 2 * rng.standard_normal(shape)
    rows = check_layer(
        L.spatial_batchnorm_forward,
        L.spatial_batchnorm_backward,
        [x, rng.standard_normal(C), rng.standard_normal(C)],
        kwargs={"bn_param": {"mode": "train"}},
        seed=3,
    )
    _assert_rows(rows)


@pytest.mark.parametrize("shape", [(4, 6), (1, 9), (7, 3)])
def test_layernorm(backend, rng, shape):
    D = shape[1]
    x = 1 + 2 * rng.standard_normal(shape)
    rows = check_layer(
        L.layernorm_forward,
        L.layernorm_backward,
        [x, rng.standard_normal(D), rng.standard_normal(D)],
        kwargs={"ln_param": {"eps": 1e-4}},
        seed=4,
    )
    _assert_rows(rows)


@pytest.mark.parametrize(
    "G,shape,pshape",
    [
        (2, (2, 6, 4, 5), (6,)),
        (3, (3, 6, 2, 2), (1, 6, 1, 1)),
        (1, (2, 4, 3, 1), (4,)),
        (4, (2, 4, 3, 3), (4,)),
    ],
)
def test_groupnorm(backend, rng, G, shape, pshape):
    x = 3 * rng.standard_normal(shape)
    rows = check_layer(
        L.spatial_groupnorm_forward,
        L.spatial_groupnorm_backward,
        [x, rng.standard_normal(pshape), rng.standard_normal(pshape)],
        kwargs={"G": G, "gn_param": {}},
        seed=5,
    )
    _assert_rows(rows)


def test_groupnorm_grad_shapes_follow_gamma(rng):
    x = rng.standard_normal((2, 4, 3, 3))
    for pshape in [(4,), (1, 4, 1, 1)]:
        out, cache = L.spatial_groupnorm_forward(x, np.ones(pshape), np.zeros(pshape), 2, {})
        _, dg, db = L.spatial_groupnorm_backward(rng.standard_normal(x.shape), cache)
        assert dg.shape == pshape and db.shape == pshape


def test_graph_and_closed_form_agree(backend, rng):
    x = 10 + rng.standard_normal((50, 20))
    out, cache = L.batchnorm_forward(
        x, rng.standard_normal(20), rng.standard_normal(20), {"mode": "train"}
    )
    dout = rng.standard_normal(out.shape)
    for a, b in zip(
        L.batchnorm_backward(dout, cache), L.batchnorm_backward_alt(dout, cache), strict=True
    ):
        assert rel_error(a, b) < 1e-10


def test_sum_loss_has_zero_input_gradient(rng):
    # Why the checks use a random upstream gradient: d(sum(bn(x)))/dx is exactly zero.
    x = rng.standard_normal((10, 3))
    out, cache = L.batchnorm_forward(x, np.ones(3), np.zeros(3), {"mode": "train"})
    dx, _, _ = L.batchnorm_backward_alt(np.ones_like(out), cache)
    np.testing.assert_allclose(dx, 0, atol=1e-12)


def test_check_layer_catches_a_wrong_backward(rng):
    def bad_backward(dout, cache):
        dx, dg, db = L.batchnorm_backward_alt(dout, cache)
        return dx * 1.01, dg, db

    rows = check_layer(
        L.batchnorm_forward,
        bad_backward,
        [rng.standard_normal((6, 3)), np.ones(3), np.zeros(3)],
        ["dx", "dgamma", "dbeta"],
        {"bn_param": {"mode": "train"}},
    )
    assert not rows[0].passed and rows[1].passed and rows[2].passed


def test_eval_numerical_gradient_array_matches_affine(rng):
    x, w, b = rng.standard_normal((3, 4)), rng.standard_normal((4, 2)), rng.standard_normal(2)
    dout = rng.standard_normal((3, 2))
    num = eval_numerical_gradient_array(lambda w: L.affine_forward(x, w, b)[0], w, dout)
    np.testing.assert_allclose(num, x.T @ dout, rtol=1e-7)
