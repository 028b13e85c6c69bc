"""darknet's batch norm: its C loops transcribed, PyTorch of its formula, and its gradient mismatch.

The reference functions below repeat darknet's CPU loops (pjreddie/darknet, src/blas.c and
src/batchnorm_layer.c) on flat arrays with darknet's own index arithmetic, one function each.
"""

import copy

import numpy as np
import pytest

from normlab.gradient_check import eval_numerical_gradient_array
from normlab.layers.darknet import (
    DarknetBNCache,
    darknet_batchnorm_backward,
    darknet_batchnorm_forward,
)

# ---------------------------------------------------------------- darknet's loops, transcribed


def mean_cpu(x, batch, filters, spatial):  # blas.c
    mean = np.zeros(filters)
    scale = 1.0 / (batch * spatial)
    for i in range(filters):
        for j in range(batch):
            for k in range(spatial):
                mean[i] += x[j * filters * spatial + i * spatial + k]
        mean[i] *= scale
    return mean


def variance_cpu(x, mean, batch, filters, spatial):  # blas.c
    variance = np.zeros(filters)
    scale = 1.0 / (batch * spatial - 1)
    for i in range(filters):
        for j in range(batch):
            for k in range(spatial):
                variance[i] += (x[j * filters * spatial + i * spatial + k] - mean[i]) ** 2
        variance[i] *= scale
    return variance


def normalize_cpu(x, mean, variance, batch, filters, spatial):  # blas.c
    x = x.copy()
    for b in range(batch):
        for f in range(filters):
            for i in range(spatial):
                index = b * filters * spatial + f * spatial + i
                x[index] = (x[index] - mean[f]) / (np.sqrt(variance[f]) + 0.000001)
    return x


def scale_bias(output, scales, batch, n, size):  # convolutional_layer.c
    output = output.copy()
    for b in range(batch):
        for i in range(n):
            for j in range(size):
                output[(b * n + i) * size + j] *= scales[i]
    return output


def add_bias(output, biases, batch, n, size):  # convolutional_layer.c
    output = output.copy()
    for b in range(batch):
        for i in range(n):
            for j in range(size):
                output[(b * n + i) * size + j] += biases[i]
    return output


def backward_bias(delta, batch, n, size):  # convolutional_layer.c
    bias_updates = np.zeros(n)
    for b in range(batch):
        for i in range(n):
            bias_updates[i] += delta[size * (i + b * n) : size * (i + b * n) + size].sum()
    return bias_updates


def backward_scale_cpu(x_norm, delta, batch, n, size):  # batchnorm_layer.c
    scale_updates = np.zeros(n)
    for f in range(n):
        s = 0.0
        for b in range(batch):
            for i in range(size):
                index = i + size * (f + n * b)
                s += delta[index] * x_norm[index]
        scale_updates[f] += s
    return scale_updates


def mean_delta_cpu(delta, variance, batch, filters, spatial):  # batchnorm_layer.c
    mean_delta = np.zeros(filters)
    for i in range(filters):
        for j in range(batch):
            for k in range(spatial):
                mean_delta[i] += delta[j * filters * spatial + i * spatial + k]
        mean_delta[i] *= -1.0 / np.sqrt(variance[i] + 0.00001)
    return mean_delta


def variance_delta_cpu(x, delta, mean, variance, batch, filters, spatial):  # batchnorm_layer.c
    variance_delta = np.zeros(filters)
    for i in range(filters):
        for j in range(batch):
            for k in range(spatial):
                index = j * filters * spatial + i * spatial + k
                variance_delta[i] += delta[index] * (x[index] - mean[i])
        variance_delta[i] *= -0.5 * (variance[i] + 0.00001) ** (-3.0 / 2.0)
    return variance_delta


def normalize_delta_cpu(x, mean, variance, mean_delta, variance_delta, batch, filters, spatial, d):
    d = d.copy()  # batchnorm_layer.c; `d` is darknet's `delta`, updated in place there
    for j in range(batch):
        for f in range(filters):
            for k in range(spatial):
                index = j * filters * spatial + f * spatial + k
                d[index] = (
                    d[index] * 1.0 / (np.sqrt(variance[f] + 0.00001))
                    + variance_delta[f] * 2.0 * (x[index] - mean[f]) / (spatial * batch)
                    + mean_delta[f] / (spatial * batch)
                )
    return d


class DarknetLayer:
    """make_batchnorm_layer + forward_batchnorm_layer + backward_batchnorm_layer, CPU path."""

    def __init__(self, c):
        self.scales, self.biases = np.ones(c), np.zeros(c)
        self.rolling_mean, self.rolling_variance = np.zeros(c), np.zeros(c)

    def forward(self, x, train):
        self.batch, self.c = x.shape[0], x.shape[1]
        self.spatial = int(np.prod(x.shape[2:]))  # out_h*out_w (1 for a CONNECTED layer)
        b, c, s = self.batch, self.c, self.spatial
        self.x = x.reshape(-1).copy()
        if train:
            self.mean = mean_cpu(self.x, b, c, s)
            self.variance = variance_cpu(self.x, self.mean, b, c, s)
            self.rolling_mean = self.rolling_mean * 0.99 + 0.01 * self.mean  # scal_cpu, axpy_cpu
            self.rolling_variance = self.rolling_variance * 0.99 + 0.01 * self.variance
            out = normalize_cpu(self.x, self.mean, self.variance, b, c, s)
            self.x_norm = out.copy()
        else:
            out = normalize_cpu(self.x, self.rolling_mean, self.rolling_variance, b, c, s)
            self.x_norm = out.copy()  # darknet leaves a stale x_norm here; normlab uses this one
        out = scale_bias(out, self.scales, b, c, s)
        return add_bias(out, self.biases, b, c, s).reshape(x.shape)

    def backward(self, delta, train):
        shape, b, c, s = delta.shape, self.batch, self.c, self.spatial
        delta = delta.reshape(-1).copy()
        mean, variance = self.mean, self.variance
        if not train:  # backward_batchnorm_layer: l.mean = l.rolling_mean, ...
            mean, variance = self.rolling_mean, self.rolling_variance
        bias_updates = backward_bias(delta, b, c, s)
        scale_updates = backward_scale_cpu(self.x_norm, delta, b, c, s)
        delta = scale_bias(delta, self.scales, b, c, s)
        md = mean_delta_cpu(delta, variance, b, c, s)
        vd = variance_delta_cpu(self.x, delta, mean, variance, b, c, s)
        delta = normalize_delta_cpu(self.x, mean, variance, md, vd, b, c, s, delta)
        return delta.reshape(shape), scale_updates, bias_updates


# ---------------------------------------------------------------- PyTorch of the forward formula


def torch_forward(x, gamma, beta):
    torch = pytest.importorskip("torch")  # the oracle: skipped without it, as README says
    """darknet's train-mode forward in PyTorch: unbiased variance, eps added to the std."""
    dims = (0,) + tuple(range(2, x.dim()))
    shape = (1, -1) + (1,) * (x.dim() - 2)
    var, mean = torch.var_mean(x, dim=dims, keepdim=True, correction=1)
    xn = (x - mean) / (torch.sqrt(var) + 1e-6)
    return gamma.reshape(shape) * xn + beta.reshape(shape)


def true_gradients(x, gamma, beta, dout):
    """Gradients of darknet's own forward (PyTorch autograd, float64)."""
    torch = pytest.importorskip("torch")
    ts = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (x, gamma, beta)]
    torch_forward(*ts).backward(torch.tensor(dout, dtype=torch.float64))
    return [t.grad.numpy() for t in ts]


def _inputs(rng, shape, loc=1.0, scale=2.0):
    C = shape[1]
    x = loc + scale * rng.standard_normal(shape)
    return x, 1 + 0.3 * rng.standard_normal(C), 0.5 * rng.standard_normal(C)


SHAPES = [(5, 3), (3, 2, 2, 3), (2, 4, 3, 1)]

# ---------------------------------------------------------------- forward and rolling statistics


@pytest.mark.parametrize("shape", SHAPES)
def test_forward_equals_darknet_loops(rng, shape):
    x, gamma, beta = _inputs(rng, shape)
    layer = DarknetLayer(shape[1])
    layer.scales, layer.biases = gamma, beta
    out, _ = darknet_batchnorm_forward(x, gamma, beta, {"mode": "train"})
    np.testing.assert_allclose(out, layer.forward(x, train=True), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize(
    "dtype,tol", [(np.float64, 1e-10), (np.float32, 1e-5)], ids=["float64", "float32"]
)
@pytest.mark.parametrize("shape", [(16, 5), (4, 3, 5, 5)])
def test_forward_matches_pytorch(rng, dtype, tol, shape):
    x, gamma, beta = (a.astype(dtype) for a in _inputs(rng, shape, loc=3.0))
    out, _ = darknet_batchnorm_forward(x, gamma, beta, {"mode": "train"})
    torch = pytest.importorskip("torch")
    ref = torch_forward(*(torch.tensor(a) for a in (x, gamma, beta))).numpy()
    assert out.dtype == dtype
    np.testing.assert_allclose(out, ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("shape", [(6, 3), (2, 3, 2, 2)])
def test_rolling_statistics_and_test_mode(rng, shape):
    C = shape[1]
    layer = DarknetLayer(C)
    bn_param = {"mode": "train"}
    gamma, beta = np.ones(C), np.zeros(C)
    for _ in range(5):
        x = rng.normal(3.0, 2.0, size=shape)
        darknet_batchnorm_forward(x, gamma, beta, bn_param)
        layer.forward(x, train=True)
    np.testing.assert_allclose(bn_param["running_mean"], layer.rolling_mean, rtol=1e-14)
    np.testing.assert_allclose(bn_param["running_var"], layer.rolling_variance, rtol=1e-14)
    # from zeros, five steps of 0.99 r + 0.01 batch: about 5% of the statistics
    assert np.all(bn_param["running_mean"] < 0.06 * 3.0 * 1.5)

    bn_param["mode"] = "test"
    before = copy.deepcopy(bn_param)
    x = rng.normal(3.0, 2.0, size=shape)
    out, cache = darknet_batchnorm_forward(x, gamma, beta, bn_param)
    np.testing.assert_allclose(out, layer.forward(x, train=False), rtol=1e-13)
    rm, rv = before["running_mean"], before["running_var"]
    axes = (1, -1) + (1,) * (len(shape) - 2)
    expect = (x - rm.reshape(axes)) / (np.sqrt(rv).reshape(axes) + 1e-6)
    np.testing.assert_allclose(out, expect, rtol=1e-13)
    np.testing.assert_array_equal(bn_param["running_mean"], rm)  # test mode: untouched
    assert not cache.train


def test_float32_statistics_stay_float32(rng):
    x = rng.standard_normal((8, 3, 2, 2)).astype(np.float32)
    bn_param = {"mode": "train"}
    out, _ = darknet_batchnorm_forward(x, np.ones(3, np.float32), np.zeros(3, np.float32), bn_param)
    assert out.dtype == np.float32 and bn_param["running_var"].dtype == np.float32


# ---------------------------------------------------------------- backward


@pytest.mark.parametrize("train", [True, False], ids=["train", "test"])
@pytest.mark.parametrize("shape", SHAPES)
def test_backward_equals_darknet_loops(rng, shape, train):
    x, gamma, beta = _inputs(rng, shape)
    dout = rng.standard_normal(shape)
    layer = DarknetLayer(shape[1])
    layer.scales, layer.biases = gamma, beta
    bn_param = {"mode": "train"}
    layer.forward(x, train=True)
    darknet_batchnorm_forward(x, gamma, beta, bn_param)
    if not train:
        bn_param["mode"] = "test"
        layer.forward(x, train=False)
    _, cache = darknet_batchnorm_forward(x, gamma, beta, bn_param)
    got = darknet_batchnorm_backward(dout, cache)
    ref = layer.backward(dout, train=train)
    for name, g, r in zip(("dx", "dgamma", "dbeta"), got, ref, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("shape", [(6, 4), (3, 2, 2, 2)])
def test_dgamma_and_dbeta_are_the_true_gradients(rng, shape):
    x, gamma, beta = _inputs(rng, shape)
    dout = rng.standard_normal(shape)
    _, cache = darknet_batchnorm_forward(x, gamma, beta, {"mode": "train"})
    _, dgamma, dbeta = darknet_batchnorm_backward(dout, cache)
    _, tg, tb = true_gradients(x, gamma, beta, dout)
    np.testing.assert_allclose(dgamma, tg, rtol=1e-10)
    np.testing.assert_allclose(dbeta, tb, rtol=1e-10)


# ---------------------------------------------------------------- the mismatch, measured


def numerical_dx(x, gamma, beta, dout, h):
    """Centred differences of sum(out * dout) for an (m, D) input, all D columns at once.

    Columns are independent (statistics per column), so perturbing row i of every column and
    reading each column's own loss gives D partial derivatives per pair of forwards.
    """
    x = x.copy()
    grad = np.zeros_like(x)

    def losses(z):
        return (darknet_batchnorm_forward(z, gamma, beta, {"mode": "train"})[0] * dout).sum(0)

    for i in range(x.shape[0]):
        old = x[i].copy()
        x[i] = old + h
        plus = losses(x)
        x[i] = old - h
        minus = losses(x)
        x[i] = old
        grad[i] = (plus - minus) / (2 * h)
    return grad


def _measure(seed, m, D, std):
    """darknet's dx, the numerical gradient of its forward, and the inputs: x = 1 + std * z.

    The same seed gives the same z, gamma and dout at every std, so that a sweep over std
    changes nothing but how large the variance is next to darknet's eps.
    """
    rng = np.random.default_rng(seed)
    x = 1.0 + std * rng.standard_normal((m, D))
    gamma, beta = 1 + 0.3 * rng.standard_normal(D), rng.standard_normal(D)
    dout = rng.standard_normal((m, D))
    _, cache = darknet_batchnorm_forward(x, gamma, beta, {"mode": "train"})
    dx = darknet_batchnorm_backward(dout, cache)[0]
    return dx, numerical_dx(x, gamma, beta, dout, h=1e-5 * std), (x, gamma, dout)


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_numerical_gradient_is_the_true_gradient(rng):
    x, gamma, beta = _inputs(rng, (7, 3))
    dout = rng.standard_normal((7, 3))
    num = numerical_dx(x, gamma, beta, dout, h=1e-5)
    true_dx = true_gradients(x, gamma, beta, dout)[0]
    np.testing.assert_allclose(num, true_dx, rtol=1e-7, atol=1e-9)

    def f(z):  # the library's own checker agrees with the column-wise shortcut
        return darknet_batchnorm_forward(z, gamma, beta, {"mode": "train"})[0]

    np.testing.assert_allclose(eval_numerical_gradient_array(f, x.copy(), dout), num, atol=1e-9)


def test_with_two_samples_darknets_dx_is_all_error():
    # m = 2: the output is +-gamma/sqrt(2) + beta whatever x is, so the true dx is ~0 (eps
    # effects only, ~1e-6/s^2: std 1e3 makes them negligible); darknet's is not
    dx, num, _ = _measure(0, 2, 50, std=1e3)
    assert np.linalg.norm(num) < 1e-6 * np.linalg.norm(dx)
    assert _rel(num, dx) > 0.999


def test_mismatch_is_the_bessel_term_when_eps_vanishes():
    # var >> 1e-5 (std 1e3: the eps terms are ~1e-9 of dx): what is left is 1/(m - 1) against
    # 1/m in front of the x_norm term,
    # dx_darknet - dx_true = gamma/s * xhat * sum(dout * xhat) / (m (m - 1)), xhat = (x - mu)/s
    errors = {}
    for m in (4, 8, 16, 32, 64, 128, 256):
        dx, num, (x, gamma, dout) = _measure(m, m, 100, std=1e3)
        s = x.std(axis=0, ddof=1)
        xhat = (x - x.mean(axis=0)) / s
        predicted = gamma / s * xhat * (dout * xhat).sum(axis=0) / (m * (m - 1))
        np.testing.assert_allclose(dx - num, predicted, rtol=1e-5, atol=1e-8 * np.abs(dx).max())
        errors[m] = _rel(dx, num)
    ms = np.array(list(errors))
    rel = np.array(list(errors.values()))
    assert rel[0] > 0.05  # m = 4: real
    assert np.all(np.diff(rel) < 0)  # shrinks with every doubling
    slope = np.polyfit(np.log(ms), np.log(rel), 1)[0]
    assert -1.7 < slope < -1.3, slope  # ~ m^(-3/2) for a random dout
    assert rel[-1] < 1e-3


def test_mismatch_stays_when_the_variance_is_near_eps():
    # std 1e-3 (var 1e-6 < 1e-5): forward divides by s + 1e-6, backward by sqrt(s^2 + 1e-5);
    # the error tends to 1 - (s + 1e-6)/sqrt(s^2 + 1e-5) ~ 0.70 and does not shrink with m
    floor = 1 - (1e-3 + 1e-6) / np.sqrt(1e-6 + 1e-5)
    for m in (64, 256):
        dx, num, _ = _measure(m, m, 100, std=1e-3)
        assert abs(_rel(dx, num) - floor) < 0.02
    # and it fades as the variance grows past eps, down to the Bessel term alone
    rel = [_rel(*_measure(1, 64, 100, std)[:2]) for std in (1e-3, 1e-2, 1e-1, 1.0, 10.0)]
    assert np.all(np.diff(rel) < 0), rel
    assert rel[-1] < 3e-3 and rel[0] > 0.6


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("shape", [(4,), (4, 3, 2), (2, 3, 2, 2, 1)])
def test_bad_input_shape(shape):
    with pytest.raises(ValueError, match=r"expected x of shape \(N, D\) or \(N, C, H, W\)"):
        darknet_batchnorm_forward(np.zeros(shape), np.ones(3), np.zeros(3), {"mode": "train"})


def test_bad_parameter_shapes():
    x = np.zeros((4, 3, 2, 2))
    with pytest.raises(ValueError, match=r"expected gamma of shape \(3,\)"):
        darknet_batchnorm_forward(x, np.ones(4), np.zeros(3), {"mode": "train"})
    with pytest.raises(ValueError, match=r"expected beta of shape \(3,\)"):
        darknet_batchnorm_forward(x, np.ones(3), np.zeros((1, 3, 1, 1)), {"mode": "train"})
    with pytest.raises(ValueError, match=r"bn_param\['running_var'\] a float array of shape"):
        p = {"mode": "train", "running_var": np.zeros(4)}
        darknet_batchnorm_forward(x, np.ones(3), np.zeros(3), p)


@pytest.mark.parametrize("key", ["momentum", "eps", "running_var_unbiased"])
def test_unknown_keys_list_the_known_ones(key):
    with pytest.raises(ValueError, match=rf"unknown bn_param key '{key}'.*'running_var'"):
        darknet_batchnorm_forward(
            np.zeros((4, 3)), np.ones(3), np.zeros(3), {"mode": "train", key: 0.9}
        )


def test_mode_is_required_and_one_value_per_channel_is_refused():
    with pytest.raises(ValueError, match="expected 'mode'"):
        darknet_batchnorm_forward(np.zeros((4, 3)), np.ones(3), np.zeros(3), {})
    with pytest.raises(ValueError, match="expected more than 1 value per channel"):
        darknet_batchnorm_forward(np.zeros((1, 3)), np.ones(3), np.zeros(3), {"mode": "train"})
    out, _ = darknet_batchnorm_forward(np.zeros((1, 3)), np.ones(3), np.zeros(3), {"mode": "test"})
    assert out.shape == (1, 3)


def test_non_finite_batch_leaves_the_rolling_statistics_alone():
    x = np.ones((4, 3))
    x[0, 1] = np.nan
    p = {"mode": "train", "running_mean": np.full(3, 0.5), "running_var": np.full(3, 2.0)}
    with pytest.raises(FloatingPointError, match="channels"):
        darknet_batchnorm_forward(x, np.ones(3), np.zeros(3), p)
    np.testing.assert_array_equal(p["running_mean"], 0.5)
    np.testing.assert_array_equal(p["running_var"], 2.0)


def test_backward_checks_its_arguments(rng):
    _, cache = darknet_batchnorm_forward(
        rng.standard_normal((4, 3)), np.ones(3), np.zeros(3), {"mode": "train"}
    )
    assert isinstance(cache, DarknetBNCache)
    with pytest.raises(ValueError, match=r"expected dout of shape \(4, 3\)"):
        darknet_batchnorm_backward(np.zeros((3, 4)), cache)
    with pytest.raises(ValueError, match="expected the cache of darknet_batchnorm_forward"):
        darknet_batchnorm_backward(np.zeros((4, 3)), (1, 2))
