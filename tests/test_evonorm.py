"""EvoNorm-B0 and -S0: PyTorch autograd of timm's formulas, gradient checks, boundary errors."""

import numpy as np
import pytest

from normlab.gradient_check import check_layer
from normlab.layers import NonFiniteStatisticsError
from normlab.layers.evonorm import (
    spatial_evonorm_b0_backward,
    spatial_evonorm_b0_forward,
    spatial_evonorm_s0_backward,
    spatial_evonorm_s0_forward,
)

TOL = {np.float64: dict(rtol=1e-10, atol=1e-10), np.float32: dict(rtol=1e-5, atol=1e-5)}
DTYPES = [np.float64, np.float32]


def _close(ours, ref, dtype):
    """assert_allclose, the absolute tolerance scaled to the reference's magnitude."""
    ref = np.asarray(ref)
    tol = TOL[dtype]
    atol = tol["atol"] * max(1.0, float(np.abs(ref).max(initial=0)))
    np.testing.assert_allclose(ours, ref, rtol=tol["rtol"], atol=atol)


def _inputs(rng, shape, dtype, scale=1.0):
    """x (N, C, H, W) and gamma, beta, v (C,) of ``dtype``; v of both signs."""
    C = shape[1]
    x = (0.5 + scale * rng.standard_normal(shape)).astype(dtype)
    gamma = (1 + 0.5 * rng.standard_normal(C)).astype(dtype)
    beta = rng.standard_normal(C).astype(dtype)
    v = rng.uniform(-1.5, 1.5, C).astype(dtype)
    return x, gamma, beta, v


def _b0_gap(x, v, left_var, eps):
    """|left - right| of B0 at every element (how far from the max's tie), float64."""
    x = x.astype(np.float64)
    inst = np.sqrt(x.var(axis=(2, 3), keepdims=True) + eps)  # (N, C, 1, 1)
    right = v.astype(np.float64)[:, None, None] * x + inst
    left = np.sqrt(np.asarray(left_var, dtype=np.float64) + eps)[:, None, None]
    return np.abs(left - right), left > right


# --- PyTorch: autograd of the exact formulas (timm's EvoNorm2dB0 / EvoNorm2dS0) -------------


def _b0_torch(torch, x, gamma, beta, v, eps, var=None):
    """timm's EvoNorm2dB0.forward: ``var`` None is train mode (batch variance), else test."""
    shape = (1, -1, 1, 1)
    if var is None:
        var = x.var(dim=(0, 2, 3), unbiased=False)
    left = (var + eps).sqrt().view(shape)
    right = x * v.view(shape) + (x.var(dim=(2, 3), unbiased=False, keepdim=True) + eps).sqrt()
    return x / torch.maximum(left, right) * gamma.view(shape) + beta.view(shape)


def _s0_torch(torch, x, gamma, beta, v, G, eps):
    """timm's EvoNorm2dS0.forward with ``groups=G``."""
    N, C, H, W = x.shape
    shape = (1, -1, 1, 1)
    std = (x.reshape(N, G, -1).var(dim=2, unbiased=False, keepdim=True) + eps).sqrt()
    std = std.expand(N, G, C // G * H * W).reshape(N, C, H, W)
    return x * (x * v.view(shape)).sigmoid() / std * gamma.view(shape) + beta.view(shape)


def _torch_grads(torch, f, arrays, dy):
    """Output and gradients of ``f`` at ``arrays`` (their dtype), upstream gradient ``dy``."""
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    y = f(*ts)
    y.backward(torch.tensor(dy))
    return y.detach().numpy(), [t.grad.numpy() for t in ts]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(6, 4, 5, 3), (2, 3, 1, 7)])
def test_b0_matches_torch_train_and_test_and_running_var(rng, dtype, shape):
    torch = pytest.importorskip("torch")
    C, eps, n = shape[1], 1e-3, shape[0] * shape[2] * shape[3]
    # timm: momentum 0.1 on the new value, unbiased, from ones == ours 0.9, unbiased, ones
    p = {"mode": "train", "running_var": np.ones(C, dtype), "running_var_unbiased": True}
    ref_running = np.ones(C)
    for step in range(3):
        x, gamma, beta, v = _inputs(rng, shape, dtype, scale=1 + step)
        dy = rng.standard_normal(shape).astype(dtype)
        out, cache = spatial_evonorm_b0_forward(x, gamma, beta, v, p)
        ref, grads = _torch_grads(
            torch, lambda *t: _b0_torch(torch, *t, eps), [x, gamma, beta, v], dy
        )
        assert out.dtype == dtype
        _close(out, ref, dtype)
        for ours, theirs in zip(spatial_evonorm_b0_backward(dy, cache), grads, strict=True):
            assert ours.dtype == dtype
            _close(ours, theirs, dtype)
        var = x.astype(np.float64).var(axis=(0, 2, 3))
        ref_running = ref_running * (1 - 0.1) + var * 0.1 * (n / (n - 1))  # timm's line
        _close(p["running_var"], ref_running, dtype)
    # test mode: the running variance, a constant, in place of the batch's
    p["mode"] = "test"
    running = p["running_var"].copy()
    out, cache = spatial_evonorm_b0_forward(x, gamma, beta, v, p)
    rv = torch.tensor(running.astype(np.float64))
    ref, grads = _torch_grads(
        torch, lambda *t: _b0_torch(torch, *t, eps, var=rv.to(t[0].dtype)), [x, gamma, beta, v], dy
    )
    _close(out, ref, dtype)
    for ours, theirs in zip(spatial_evonorm_b0_backward(dy, cache), grads, strict=True):
        _close(ours, theirs, dtype)
    assert np.array_equal(p["running_var"], running)  # test mode leaves it alone


def test_b0_biased_running_var_by_default(rng):
    x, gamma, beta, v = _inputs(rng, (4, 3, 2, 2), np.float64)
    p = {"mode": "train", "momentum": 0.75}
    spatial_evonorm_b0_forward(x, gamma, beta, v, p)
    np.testing.assert_allclose(p["running_var"], 0.25 * x.var(axis=(0, 2, 3)), rtol=1e-14)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("G,shape", [(2, (3, 4, 5, 3)), (1, (2, 3, 4, 4)), (6, (2, 6, 1, 5))])
@pytest.mark.parametrize("mode", ["train", "test"])
def test_s0_matches_torch(rng, dtype, G, shape, mode):
    torch = pytest.importorskip("torch")
    x, gamma, beta, v = _inputs(rng, shape, dtype, scale=2.0)
    dy = rng.standard_normal(shape).astype(dtype)
    out, cache = spatial_evonorm_s0_forward(x, gamma, beta, v, G, {"mode": mode})
    ref, grads = _torch_grads(
        torch, lambda *t: _s0_torch(torch, *t, G, 1e-5), [x, gamma, beta, v], dy
    )
    assert out.dtype == dtype
    _close(out, ref, dtype)
    for ours, theirs in zip(spatial_evonorm_s0_backward(dy, cache), grads, strict=True):
        assert ours.dtype == dtype
        _close(ours, theirs, dtype)


# --- gradient checks: float64, random upstream gradient -------------------------------------

NAMES = ["dx", "dgamma", "dbeta", "dv"]


def _assert_rows(rows, tol=1e-6):
    for r in rows:
        assert r.rel_error < tol, f"{r.layer} {r.gradient}: {r.rel_error:.2e}"


@pytest.mark.parametrize("mode", ["train", "test"])
@pytest.mark.parametrize("shape", [(3, 4, 3, 3), (2, 2, 1, 5)])
def test_b0_gradcheck(rng, mode, shape):
    x, gamma, beta, v = _inputs(rng, shape, np.float64)
    C, eps = shape[1], 1e-2
    p = {"mode": mode, "eps": eps, "running_var": 0.5 + rng.random(C)}
    left_var = x.var(axis=(0, 2, 3)) if mode == "train" else p["running_var"]
    gap, left_wins = _b0_gap(x, v, left_var, eps)
    assert gap.min() > 1e-3  # far from the max's tie: centred differences stay on one branch
    assert 0 < left_wins.mean() < 1  # both branches carry gradient
    rows = check_layer(
        spatial_evonorm_b0_forward,
        spatial_evonorm_b0_backward,
        [x, gamma, beta, v],
        NAMES,
        {"bn_param": p},
        seed=5,
        layer="evonorm_b0",
    )
    _assert_rows(rows)


@pytest.mark.parametrize("G,shape", [(2, (2, 4, 3, 3)), (1, (3, 2, 2, 3)), (3, (2, 3, 1, 4))])
def test_s0_gradcheck(rng, G, shape):
    x, gamma, beta, v = _inputs(rng, shape, np.float64, scale=2.0)

    def forward(x, gamma, beta, v, gn_param):
        return spatial_evonorm_s0_forward(x, gamma, beta, v, G, gn_param)

    rows = check_layer(
        forward,
        spatial_evonorm_s0_backward,
        [x, gamma, beta, v],
        NAMES,
        {"gn_param": {"eps": 1e-3}},
        seed=6,
        layer="evonorm_s0",
    )
    _assert_rows(rows)


def test_b0_tie_splits_the_gradient(rng):
    """At an exact tie each branch gets half, as PyTorch's maximum does."""
    # one sample, v = 0: right = instance std = batch std = left, exactly (one 2-value channel)
    x = np.array([[[[1.0, 3.0]]]])  # (1, 1, 1, 2)
    one, zero = np.ones(1), np.zeros(1)
    dy = np.array([[[[0.3, -1.1]]]])
    out, cache = spatial_evonorm_b0_forward(x, one, zero, zero, {"mode": "train"})
    assert cache.left_std[0] == cache.inst_std[0, 0]  # the tie is exact
    dx, _, _, dv = spatial_evonorm_b0_backward(dy, cache)
    torch = pytest.importorskip("torch")
    _, grads = _torch_grads(torch, lambda *t: _b0_torch(torch, *t, 1e-3), [x, one, zero, zero], dy)
    np.testing.assert_allclose(dx, grads[0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(dv, grads[3], rtol=1e-12, atol=1e-15)


# --- errors at the boundary -----------------------------------------------------------------


def _b0(x, p, C=None, **kw):
    C = x.shape[1] if C is None else C
    params = {"gamma": np.ones(C), "beta": np.zeros(C), "v": np.ones(C)} | kw
    return spatial_evonorm_b0_forward(x, params["gamma"], params["beta"], params["v"], p)


def _s0(x, G, p, **kw):
    C = x.shape[1]
    params = {"gamma": np.ones(C), "beta": np.zeros(C), "v": np.ones(C)} | kw
    return spatial_evonorm_s0_forward(x, params["gamma"], params["beta"], params["v"], G, p)


X = np.random.default_rng(0).standard_normal((2, 4, 3, 3))


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: _b0(X[0], {"mode": "train"}, C=3), r"expected x of shape \(N, C, H, W\)"),
        (lambda: _b0(X, {"mode": "train"}, gamma=np.ones(3)), r"gamma of shape \(4,\)"),
        (lambda: _b0(X, {"mode": "train"}, v=np.ones((1, 4, 1, 1))), r"v of shape \(4,\)"),
        (lambda: _b0(X, {}), "expected 'mode'"),
        (lambda: _b0(X, {"mode": "train", "momentom": 0.9}), "did you mean 'momentum'"),
        (lambda: _b0(X, {"mode": "train", "running_mean": np.zeros(4)}), "known keys"),
        (lambda: _b0(X, {"mode": "train", "running_var": np.zeros(3)}), r"shape \(4,\)"),
        (lambda: _b0(X, {"mode": "train", "running_var_unbiased": 1}), "True or False"),
        (lambda: _b0(X, {"mode": "train", "eps": 0.0}), "eps > 0"),
        (lambda: _b0(X[:1, :, :1, :1], {"mode": "train"}), "more than 1 value per channel"),
        (lambda: _b0(X.astype(np.float16), {"mode": "train"}), "float32 or float64"),
        (lambda: _s0(X, 3, {}), "G that divides C=4"),
        (lambda: _s0(X, 0, {}), "G that divides C=4"),
        (lambda: _s0(X, 2.0, {}), "G that divides C=4"),
        (lambda: _s0(X, 2, {"groups": 4}), "contradicts"),
        (lambda: _s0(X, 2, {"epsilon": 1e-5}), "did you mean 'eps'"),
        (lambda: _s0(X, 2, {}, beta=np.zeros(2)), r"beta of shape \(4,\)"),
        (lambda: _s0(X[:, :, :0], 2, {}), "at least one value per group"),
        (lambda: spatial_evonorm_b0_backward(X, None), "EvoNormB0Cache"),
        (lambda: spatial_evonorm_s0_backward(X, _b0(X, {"mode": "train"})[1]), "EvoNormS0Cache"),
        (lambda: spatial_evonorm_s0_backward(X[:1], _s0(X, 2, {})[1]), "dout of shape"),
    ],
)
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_b0_nan_batch_leaves_running_var_bit_identical():
    running = np.array([0.5, np.nextafter(1.0, 2.0), 3.0, 1e-30])
    p = {"mode": "train", "running_var": running}
    before = running.copy()
    x = X.copy()
    x[1, 2, 0, 1] = np.nan
    with pytest.raises(NonFiniteStatisticsError, match="channels") as err:
        _b0(x, p)
    assert err.value.indices == [2] and err.value.running
    assert p["running_var"] is running and running.tobytes() == before.tobytes()


def test_s0_nan_raises_in_train_mode_only():
    x = X.copy()
    x[1, 3, 2, 2] = np.inf
    with pytest.raises(NonFiniteStatisticsError, match="sample, group") as err:
        _s0(x, 2, {})
    assert err.value.indices == [(1, 1)]
    out, _ = _s0(x, 2, {"mode": "test"})
    assert np.isfinite(out[0]).all()
