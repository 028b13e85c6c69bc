"""normlab.layer_utils: the CS231n sandwich layers, gradient-checked in float64 with a random
upstream gradient, and affine_norm_relu with every registered 'feature' normalization."""

import copy

import numpy as np
import pytest

from normlab.gradient_check import check_layer, eval_numerical_gradient_array, rel_error
from normlab.layer_utils import (
    affine_norm_relu_backward,
    affine_norm_relu_forward,
    affine_relu_backward,
    affine_relu_forward,
    conv_bn_relu_backward,
    conv_bn_relu_forward,
    conv_relu_backward,
    conv_relu_forward,
    conv_relu_pool_backward,
    conv_relu_pool_forward,
)
from normlab.layers import batchnorm_forward, relu_forward
from normlab.models import available_normalizations

POOL = {"pool_height": 2, "pool_width": 2, "stride": 2}


def _passed(rows):
    assert all(r.passed for r in rows), "\n".join(map(str, rows))


def _gradcheck(forward, backward, inputs, kwargs=None, tol=1e-6):
    """check_layer's test (random upstream gradient, centred differences), except that a
    gradient whose numerical value is zero must be zero: the bias before a batch-statistics
    normalization, which the normalization removes (the relative error of two values near
    zero would be noise)."""
    kwargs = kwargs or {}
    out, cache = forward(*inputs, **copy.deepcopy(kwargs))
    dout = np.random.default_rng(0).standard_normal(out.shape)
    grads = backward(dout, cache)
    assert len(grads) == len(inputs)
    for i, grad in enumerate(grads):

        def f(xi, i=i):
            args = list(inputs)
            args[i] = xi
            return forward(*args, **copy.deepcopy(kwargs))[0]

        num = eval_numerical_gradient_array(f, inputs[i].copy(), dout)
        if np.abs(num).max() < 1e-8:
            assert np.abs(grad).max() < 1e-10, f"gradient {i}: expected zero"
        else:
            assert rel_error(num, grad) < tol, f"gradient {i}: {rel_error(num, grad):.2e}"


def test_affine_relu_gradcheck():
    rng = np.random.default_rng(0)
    inputs = [rng.normal(size=(2, 3, 4)), rng.normal(size=(12, 10)), rng.normal(size=10)]
    _passed(check_layer(affine_relu_forward, affine_relu_backward, inputs, ["dx", "dw", "db"]))


def test_conv_relu_gradcheck():
    rng = np.random.default_rng(1)
    inputs = [rng.normal(size=(2, 3, 5, 5)), rng.normal(size=(3, 3, 3, 3)), rng.normal(size=3)]
    kwargs = {"conv_param": {"stride": 1, "pad": 1}}
    _passed(check_layer(conv_relu_forward, conv_relu_backward, inputs, kwargs=kwargs))


def test_conv_relu_pool_gradcheck():
    rng = np.random.default_rng(2)
    inputs = [rng.normal(size=(2, 3, 8, 8)), rng.normal(size=(3, 3, 3, 3)), rng.normal(size=3)]
    kwargs = {"conv_param": {"stride": 1, "pad": 1}, "pool_param": POOL}
    _passed(check_layer(conv_relu_pool_forward, conv_relu_pool_backward, inputs, kwargs=kwargs))


def test_conv_bn_relu_gradcheck_and_running_stats():
    rng = np.random.default_rng(3)
    x, w, b = rng.normal(size=(2, 2, 4, 4)), rng.normal(size=(3, 2, 3, 3)), rng.normal(size=3)
    gamma, beta = rng.normal(1, 0.1, 3), rng.normal(0, 0.1, 3)
    conv_param = {"stride": 1, "pad": 1}
    kwargs = {"conv_param": conv_param, "bn_param": {"mode": "train"}}
    _gradcheck(conv_bn_relu_forward, conv_bn_relu_backward, [x, w, b, gamma, beta], kwargs)
    bn_param = {"mode": "train"}
    conv_bn_relu_forward(x, w, b, gamma, beta, conv_param, bn_param)
    assert bn_param["running_mean"].shape == (3,) and np.any(bn_param["running_mean"] != 0)
    bn_param["mode"] = "test"
    out, _ = conv_bn_relu_forward(x, w, b, gamma, beta, conv_param, bn_param)
    assert out.shape == (2, 3, 4, 4) and out.min() >= 0


# evonorm-s0 is refused (below); darknet's backward is by design the gradient of another
# function (tests/test_registry_family.py), so it is only run here
FEATURE_NORMS = [
    n for n in available_normalizations("feature") if n not in ("evonorm-s0", "darknet")
]
OPTIONS = {  # what a layer needs beyond the registration's defaults, for a batch of 8
    "groupnorm": {"groups": 2},
    "ghostbatchnorm": {"virtual_batch_size": 4},
    "batchnorm-ema": {"momentum": 1.0},  # its statistics are constants of the gradient
}


@pytest.mark.parametrize("name", FEATURE_NORMS)
def test_affine_norm_relu_gradcheck_every_feature_normalization(name):
    rng = np.random.default_rng(4)
    x, w, b = rng.normal(size=(8, 3)), rng.normal(size=(3, 6)), rng.normal(size=6)
    gamma, beta = rng.normal(1, 0.1, 6), rng.normal(0, 0.1, 6)
    norm_param = {"mode": "train", **OPTIONS.get(name, {})}
    if name == "rmsnorm":  # no shift: beta is ignored, dbeta is None

        def forward(x, w, b, gamma):
            return affine_norm_relu_forward(x, w, b, gamma, None, name, dict(norm_param))

        def backward(dout, cache):
            *grads, dbeta = affine_norm_relu_backward(dout, cache)
            assert dbeta is None
            return tuple(grads)

        _gradcheck(forward, backward, [x, w, b, gamma])
        return
    kwargs = {"norm": name, "norm_param": norm_param}
    _gradcheck(affine_norm_relu_forward, affine_norm_relu_backward, [x, w, b, gamma, beta], kwargs)


def test_affine_norm_relu_runs_darknet():
    rng = np.random.default_rng(6)
    x, w, b, g = rng.normal(size=(8, 3)), rng.normal(size=(3, 6)), np.zeros(6), np.ones(6)
    p = {"mode": "train"}
    out, cache = affine_norm_relu_forward(x, w, b, g, 0 * g, "darknet", p)
    grads = affine_norm_relu_backward(rng.normal(size=out.shape), cache)
    assert [d.shape for d in grads] == [(8, 3), (3, 6), (6,), (6,), (6,)]
    assert sorted(p) == ["mode", "running_mean", "running_var"]


def test_affine_norm_relu_is_the_chain_it_names():
    rng = np.random.default_rng(5)
    x, w, b = rng.normal(size=(5, 3)), rng.normal(size=(3, 4)), rng.normal(size=4)
    gamma, beta = rng.normal(1, 0.1, 4), rng.normal(0, 0.1, 4)
    p, q = {"mode": "train"}, {"mode": "train"}
    out, _ = affine_norm_relu_forward(x, w, b, gamma, beta, "batchnorm", p)
    want = relu_forward(batchnorm_forward(x @ w + b, gamma, beta, q)[0])[0]
    np.testing.assert_allclose(out, want, rtol=1e-14)
    np.testing.assert_allclose(p["running_var"], q["running_var"], rtol=1e-14)
    p["mode"] = "test"  # now the running statistics the first call filled in
    mean, var = p["running_mean"].copy(), p["running_var"]
    out, _ = affine_norm_relu_forward(x, w, b, gamma, beta, "batchnorm", p)
    a = (x @ w + b - mean) / np.sqrt(var + 1e-5)
    np.testing.assert_allclose(out, np.maximum(gamma * a + beta, 0), rtol=1e-12)


@pytest.mark.parametrize(
    ("norm", "norm_param", "match"),
    [
        ("no-such-norm", {"mode": "train"}, "known normalizations are"),
        ("evonorm-s0", {"mode": "train"}, "call its forward"),
        ("instancenorm", {"mode": "train"}, "no 'feature' variant"),
        ("groupnorm", {"mode": "train"}, r"norm_param\['groups'\]"),
        ("batchnorm", {"mode": "train", "momentum": 2.0}, "momentum"),
        (None, {"mode": "train"}, "affine_relu_forward"),
    ],
)
def test_affine_norm_relu_refuses_with_the_fix(norm, norm_param, match):
    x, w, b, g = np.ones((2, 3)), np.ones((3, 4)), np.zeros(4), np.ones(4)
    with pytest.raises(ValueError, match=match):
        affine_norm_relu_forward(x, w, b, g, g, norm, norm_param)
