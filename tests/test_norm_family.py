"""RMSNorm, instance norm and LayerNorm2d: PyTorch parity, gradient checks, properties, errors."""

import numpy as np
import pytest

from normlab import layers as L
from normlab.gradient_check import check_layer

torch = pytest.importorskip("torch")
F = torch.nn.functional

TOL = {np.float64: dict(rtol=1e-10, atol=1e-10), np.float32: dict(rtol=1e-5, atol=1e-5)}
DTYPES = [np.float64, np.float32]


def _t(a):
    return torch.tensor(a, requires_grad=True)


def _close(ours, ref, dtype):
    """assert_allclose, the absolute tolerance scaled to the reference's magnitude."""
    ref = np.asarray(ref)
    tol = TOL[dtype]
    atol = tol["atol"] * max(1.0, float(np.abs(ref).max(initial=0)))
    np.testing.assert_allclose(ours, ref, rtol=tol["rtol"], atol=atol)


def _check_grads(ours, tensors, dtype):
    for a, t in zip(ours, tensors, strict=True):
        assert a.dtype == dtype
        _close(a, t.grad.numpy(), dtype)


def _assert_rows(rows, tol=1e-6):
    for r in rows:
        assert r.rel_error < tol, f"{r.layer} {r.gradient}: {r.rel_error:.2e}"


def _instnorm_torch(x, g, b, rm=None, rv=None, train=True, momentum=0.1, eps=1e-5):
    return F.instance_norm(x, rm, rv, g, b, use_input_stats=train, momentum=momentum, eps=eps)


# -- PyTorch parity ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("eps", [None, 1e-6])
@pytest.mark.parametrize("shape", [(16, 7), (3, 300), (5, 1)])
def test_rmsnorm_matches_torch(rng, dtype, eps, shape):
    D = shape[1]
    x = (1 + 2 * rng.standard_normal(shape)).astype(dtype)
    g = rng.standard_normal(D).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    out, cache = L.rmsnorm_forward(x, g, {"eps": eps})
    xt, gt = _t(x), _t(g)
    yt = F.rms_norm(xt, (D,), gt, eps=eps)  # eps=None: finfo(dtype).eps on both sides
    yt.backward(torch.tensor(dy))
    assert out.dtype == dtype
    _close(out, yt.detach().numpy(), dtype)
    _check_grads(L.rmsnorm_backward(dy, cache), [xt, gt], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 4, 5, 6), (2, 8, 1, 3), (16, 3, 7, 7)])
def test_instancenorm_untracked_matches_torch(backend, rng, dtype, shape):
    C = shape[1]
    x = (-2 + 3 * rng.standard_normal(shape)).astype(dtype)
    g, b = rng.standard_normal(C).astype(dtype), rng.standard_normal(C).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    for mode in ("train", "test"):  # untracked: test mode uses the instance statistics too
        out, cache = L.spatial_instancenorm_forward(x, g, b, {"mode": mode})
        xt, gt, bt = _t(x), _t(g), _t(b)
        yt = _instnorm_torch(xt, gt, bt)
        yt.backward(torch.tensor(dy))
        assert out.dtype == dtype
        _close(out, yt.detach().numpy(), dtype)
        _check_grads(L.spatial_instancenorm_backward(dy, cache), [xt, gt, bt], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_instancenorm_running_statistics_and_test_mode(backend, rng, dtype):
    shape, C = (6, 5, 3, 4), 5
    tdt = torch.float64 if dtype == np.float64 else torch.float32
    m = torch.nn.InstanceNorm2d(C, eps=1e-3, momentum=0.2, affine=True, track_running_stats=True)
    m = m.to(tdt)
    with torch.no_grad():
        m.weight.copy_(torch.tensor(rng.standard_normal(C)))
        m.bias.copy_(torch.tensor(rng.standard_normal(C)))
    g, b = m.weight.detach().numpy().copy(), m.bias.detach().numpy().copy()
    # PyTorch's momentum 0.2 is normlab's 0.8; it stores the unbiased variance, starts it at ones
    in_param = {
        "mode": "train",
        "track_running_stats": True,
        "momentum": 0.8,
        "eps": 1e-3,
        "running_var_unbiased": True,
        "running_mean": np.zeros(C, dtype),
        "running_var": np.ones(C, dtype),
    }
    for step in range(4):
        x = (step + (1 + step) * rng.standard_normal(shape)).astype(dtype)
        out, _ = L.spatial_instancenorm_forward(x, g, b, in_param)
        ref = m.train()(torch.tensor(x))
        _close(out, ref.detach().numpy(), dtype)
        _close(in_param["running_mean"], m.running_mean.numpy(), dtype)
        _close(in_param["running_var"], m.running_var.numpy(), dtype)
    x = (3 + 2 * rng.standard_normal(shape)).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    in_param["mode"] = "test"
    out, cache = L.spatial_instancenorm_forward(x, g, b, in_param)
    xt = _t(x)
    ref = m.eval()(xt)
    ref.backward(torch.tensor(dy))
    _close(out, ref.detach().numpy(), dtype)
    _check_grads(L.spatial_instancenorm_backward(dy, cache), [xt, m.weight, m.bias], dtype)


def test_instancenorm_biased_running_variance_is_the_mean_of_instance_variances(rng):
    x = rng.normal(1, 2, (4, 3, 5, 5))
    p = {"mode": "train", "track_running_stats": True, "momentum": 0.25}
    L.spatial_instancenorm_forward(x, np.ones(3), np.zeros(3), p)
    np.testing.assert_allclose(p["running_mean"], 0.75 * x.mean(axis=(2, 3)).mean(0), rtol=1e-13)
    np.testing.assert_allclose(p["running_var"], 0.75 * x.var(axis=(2, 3)).mean(0), rtol=1e-13)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 4, 5, 6), (2, 96, 7, 7), (4, 3, 1, 1)])
def test_spatial_layernorm_matches_torch_on_permuted_maps(backend, rng, dtype, shape):
    C = shape[1]
    x = (2 + 3 * rng.standard_normal(shape)).astype(dtype)
    g, b = rng.standard_normal(C).astype(dtype), rng.standard_normal(C).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    out, cache = L.spatial_layernorm_forward(x, g, b, {"eps": 1e-6})
    xt, gt, bt = _t(x), _t(g), _t(b)
    yt = F.layer_norm(xt.permute(0, 2, 3, 1), (C,), gt, bt, eps=1e-6).permute(0, 3, 1, 2)
    yt.backward(torch.tensor(dy))
    assert out.dtype == dtype and out.flags.c_contiguous
    _close(out, yt.detach().numpy(), dtype)
    _check_grads(L.spatial_layernorm_backward(dy, cache), [xt, gt, bt], dtype)


# -- gradient checks: float64, random upstream gradient -----------------------------------------


@pytest.mark.parametrize("eps", [None, 1e-3])
@pytest.mark.parametrize("shape", [(4, 6), (1, 9), (7, 2)])
def test_rmsnorm_gradcheck(rng, eps, shape):
    x = 0.5 + rng.standard_normal(shape)
    rows = check_layer(
        L.rmsnorm_forward,
        L.rmsnorm_backward,
        [x, rng.standard_normal(shape[1])],
        ["dx", "dgamma"],
        {"rms_param": {"eps": eps}},
        seed=5,
    )
    _assert_rows(rows)


@pytest.mark.parametrize(
    "param",
    [
        {},
        {"mode": "train", "track_running_stats": True, "running_var_unbiased": True},
        {"mode": "test", "track_running_stats": True, "eps": 1e-3},
    ],
)
def test_instancenorm_gradcheck(backend, rng, param):
    shape = (2, 3, 4, 3)
    if param.get("mode") == "test":
        param = param | {"running_mean": rng.standard_normal(3), "running_var": 0.5 + rng.random(3)}
    rows = check_layer(
        L.spatial_instancenorm_forward,
        L.spatial_instancenorm_backward,
        [1 + 2 * rng.standard_normal(shape), rng.standard_normal(3), rng.standard_normal(3)],
        ["dx", "dgamma", "dbeta"],
        {"in_param": param},
        seed=6,
    )
    _assert_rows(rows)


@pytest.mark.parametrize("shape", [(2, 5, 3, 2), (3, 3, 1, 1)])
def test_spatial_layernorm_gradcheck(backend, rng, shape):
    C = shape[1]
    rows = check_layer(
        L.spatial_layernorm_forward,
        L.spatial_layernorm_backward,
        [-1 + 2 * rng.standard_normal(shape), rng.standard_normal(C), rng.standard_normal(C)],
        ["dx", "dgamma", "dbeta"],
        {"ln_param": {"eps": 1e-4}},
        seed=7,
    )
    _assert_rows(rows)


# -- properties ----------------------------------------------------------------------------------


def test_rmsnorm_is_scale_invariant_in_x(rng):
    x, g = rng.normal(1, 2, (6, 10)), rng.standard_normal(10)
    a = np.exp(rng.uniform(-5, 5, (6, 1)))  # one positive scale per sample
    dy = rng.standard_normal((6, 10))
    out, cache = L.rmsnorm_forward(x, g, {})
    out_a, cache_a = L.rmsnorm_forward(a * x, g, {})
    np.testing.assert_allclose(out_a, out, rtol=1e-12, atol=1e-13)
    dx, dg = L.rmsnorm_backward(dy, cache)
    dx_a, dg_a = L.rmsnorm_backward(dy, cache_a)
    scale = np.abs(dx / a).max(axis=1, keepdims=True)  # dx is a difference: atol per row
    assert (np.abs(dx_a - dx / a) <= 1e-12 * scale).all()  # d/d(ax) = (1/a) d/dx
    np.testing.assert_allclose(dg_a, dg, rtol=1e-12)
    # dx is orthogonal to x: scaling a row does not change the output
    np.testing.assert_allclose((dx * x).sum(axis=1), 0, atol=1e-12)


def test_instancenorm_is_groupnorm_with_one_channel_per_group(backend, rng):
    x, g, b = rng.normal(2, 3, (3, 6, 4, 5)), rng.standard_normal(6), rng.standard_normal(6)
    dy = rng.standard_normal(x.shape)
    out, cache = L.spatial_instancenorm_forward(x, g, b, {})
    ref, ref_cache = L.spatial_groupnorm_forward(x, g, b, 6, {})
    np.testing.assert_array_equal(out, ref)
    for a, r in zip(
        L.spatial_instancenorm_backward(dy, cache),
        L.spatial_groupnorm_backward(dy, ref_cache),
        strict=True,
    ):
        np.testing.assert_array_equal(a, r)


def test_spatial_layernorm_is_layernorm_per_position_not_groupnorm(backend, rng):
    x, g, b = rng.normal(2, 3, (2, 4, 3, 3)), rng.standard_normal(4), rng.standard_normal(4)
    out, _ = L.spatial_layernorm_forward(x, g, b, {})
    ref, _ = L.layernorm_forward(x[:, :, 1, 2], g, b, {})  # one position: layer norm over C
    np.testing.assert_allclose(out[:, :, 1, 2], ref, rtol=1e-13, atol=1e-13)
    gn, _ = L.spatial_groupnorm_forward(x, g, b, 1, {})
    assert np.abs(out - gn).max() > 0.1  # GroupNorm(1, C) normalizes over (C, H, W) at once


# -- errors ----------------------------------------------------------------------------------------


def _rms(x=None, g=None, **p):
    x = np.ones((4, 3)) if x is None else x
    return L.rmsnorm_forward(x, np.ones(3) if g is None else g, p)


def _inorm(x=None, g=None, **p):
    x = np.ones((2, 3, 2, 2)) if x is None else x
    return L.spatial_instancenorm_forward(x, np.ones(3) if g is None else g, np.zeros(3), p)


def _ln2d(x=None, g=None, **p):
    x = np.ones((2, 3, 2, 2)) if x is None else x
    return L.spatial_layernorm_forward(x, np.ones(3) if g is None else g, np.zeros(3), p)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: _rms(x=np.ones((4, 3, 2))), r"expected x of shape \(N, D\), got \(4, 3, 2\)"),
        (lambda: _rms(g=np.ones(4)), r"expected gamma of shape \(3,\), got \(4,\)"),
        (lambda: _rms(x=np.ones((4, 0)), g=np.ones(0)), r"at least one feature"),
        (lambda: _rms(eps=0.0), r"expected eps > 0"),
        (lambda: _rms(epsilon=1e-6), r"unknown rms_param key 'epsilon' \(did you mean 'eps'\?\)"),
        (lambda: _inorm(x=np.ones((2, 3))), r"expected x of shape \(N, C, H, W\), got \(2, 3\)"),
        (lambda: _inorm(g=np.ones((1, 3, 1, 1))), r"expected gamma of shape \(3,\)"),
        (lambda: _inorm(momentm=0.9), r"unknown in_param key 'momentm' \(did you mean"),
        (lambda: _inorm(momentum=1.5), r"expected momentum in \[0, 1\]"),
        (lambda: _inorm(track_running_stats=1), r"'track_running_stats'\] to be True or False"),
        (lambda: _inorm(track_running_stats=True), r"expected 'mode' in the parameter dict"),
        (
            lambda: _inorm(running_mean=np.zeros(3)),
            r"running statistics but track_running_stats is False",
        ),
        (
            lambda: _inorm(mode="train", track_running_stats=True, running_var=np.zeros(4)),
            r"expected in_param\['running_var'\] a float array of shape \(3,\), got \(4,\)",
        ),
        (lambda: _inorm(x=np.ones((2, 3, 1, 1))), r"more than 1 value per channel \(H\*W > 1\)"),
        (lambda: _inorm(x=np.ones((0, 3, 2, 2))), r"expected a non-empty input"),
        (lambda: _ln2d(x=np.ones((2, 3))), r"expected x of shape \(N, C, H, W\), got \(2, 3\)"),
        (lambda: _ln2d(g=np.ones(2)), r"expected gamma of shape \(3,\), got \(2,\)"),
        (
            lambda: _ln2d(groups=1),
            r"unknown ln_param key 'groups'; known keys are \['eps', 'mode'\]",
        ),
    ],
)
def test_bad_input_is_a_value_error_saying_what_was_expected(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_backwards_refuse_a_foreign_cache_or_a_misshaped_dout(rng):
    x = rng.standard_normal((2, 3, 2, 2))
    _, ln_cache = _ln2d(x=x)
    _, in_cache = _inorm(x=x)
    _, rms_cache = _rms(x=x[:, :, 0, 0])
    with pytest.raises(ValueError, match="expected the cache of rmsnorm_forward"):
        L.rmsnorm_backward(np.ones((2, 3)), in_cache)
    with pytest.raises(ValueError, match="expected the cache of spatial_layernorm_forward"):
        L.spatial_layernorm_backward(x, in_cache)
    with pytest.raises(ValueError, match="expected the cache of a normalization forward"):
        L.spatial_instancenorm_backward(x, ln_cache)
    with pytest.raises(ValueError, match=r"expected dout of shape \(2, 3\)"):
        L.rmsnorm_backward(np.ones((3, 2)), rms_cache)
    with pytest.raises(ValueError, match=r"expected dout of shape \(2, 3, 2, 2\)"):
        L.spatial_layernorm_backward(np.ones((2, 2, 2, 3)), ln_cache)


def test_nan_batch_leaves_instancenorm_running_stats_bit_identical(backend, rng):
    g, b = np.ones(3), np.zeros(3)
    param = {"mode": "train", "track_running_stats": True, "running_var_unbiased": True}
    L.spatial_instancenorm_forward(rng.standard_normal((2, 3, 2, 2)), g, b, param)
    before = param["running_mean"].copy(), param["running_var"].copy()
    x = rng.standard_normal((2, 3, 2, 2))
    x[1, 2, 0, 1] = np.nan
    with pytest.raises(L.NonFiniteStatisticsError, match=r"1 of 6 \(sample, channel\) pairs") as e:
        L.spatial_instancenorm_forward(x, g, b, param)
    assert e.value.indices == [(1, 2)] and e.value.running
    np.testing.assert_array_equal(param["running_mean"], before[0], strict=True)
    np.testing.assert_array_equal(param["running_var"], before[1], strict=True)
    # test mode is not checked: with running statistics, NaN in, NaN out, at that value only
    out, _ = L.spatial_instancenorm_forward(x, g, b, param | {"mode": "test"})
    np.testing.assert_array_equal(np.isnan(out), np.isnan(x))


def test_nonfinite_statistics_name_the_sample_or_position(backend, rng):
    x = rng.standard_normal((3, 4))
    x[2, 1] = np.inf
    with pytest.raises(L.NonFiniteStatisticsError, match=r"1 of 3 samples \(2\)"):
        L.rmsnorm_forward(x, np.ones(4), {})
    with np.errstate(invalid="ignore"):  # inf * 0
        out, _ = L.rmsnorm_forward(x, np.ones(4), {"mode": "test"})
    assert np.isnan(out[2, 1]) and np.isfinite(out[:2]).all()  # inf * rrms = inf * 0
    m = rng.standard_normal((2, 3, 4, 5))
    m[1, 0, 3, 2] = np.nan
    with pytest.raises(L.NonFiniteStatisticsError, match=r"1 of 40 \(sample, row, column\)") as e:
        L.spatial_layernorm_forward(m, np.ones(3), np.zeros(3), {})
    assert e.value.indices == [(1, 3, 2)]
