"""Batch-norm options and batch renorm (issue 12, items 3-5): PyTorch parity, gradient checks,
properties and errors.

momentum=None (cumulative average, num_batches_tracked), track_running_stats=False, ghost batch
norm (virtual_batch_size) and batch renormalization (rmax, dmax).
"""

import copy

import numpy as np
import pytest

from normlab import layers as L
from normlab.gradient_check import check_layer
from normlab.layers.batchrenorm import (
    batchrenorm_backward,
    batchrenorm_forward,
    spatial_batchrenorm_backward,
    spatial_batchrenorm_forward,
)

torch = pytest.importorskip("torch")
F = torch.nn.functional

TOL = {np.float64: dict(rtol=1e-10, atol=1e-10), np.float32: dict(rtol=1e-5, atol=1e-5)}
DTYPES = [np.float64, np.float32]


def _close(ours, ref, dtype):
    """assert_allclose, the absolute tolerance scaled to the reference's magnitude."""
    ref = np.asarray(ref)
    tol = TOL[dtype]
    atol = tol["atol"] * max(1.0, float(np.abs(ref).max(initial=0)))
    np.testing.assert_allclose(ours, ref, rtol=tol["rtol"], atol=atol)


def _t(a, grad=True):
    return torch.tensor(a, requires_grad=grad)


def _inputs(rng, shape, dtype, offset=3.0):
    C = shape[1]
    x = (offset + 2 * rng.standard_normal(shape)).astype(dtype)
    g = rng.standard_normal(C).astype(dtype)
    b = rng.standard_normal(C).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    return x, g, b, dy


def _fwd(spatial):
    return L.spatial_batchnorm_forward if spatial else L.batchnorm_forward


def _rows_ok(rows, tol=1e-6):
    for r in rows:
        assert r.rel_error < tol, f"{r.layer} {r.gradient}: {r.rel_error:.2e}"


# --- momentum=None: PyTorch's cumulative moving average --------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spatial", [False, True])
def test_cumulative_average_matches_pytorch_momentum_none(backend, rng, dtype, spatial):
    shape = (10, 4, 3, 2) if spatial else (10, 4)
    module = (torch.nn.BatchNorm2d if spatial else torch.nn.BatchNorm1d)(4, momentum=None)
    module = module.double() if dtype == np.float64 else module
    p = {
        "mode": "train",
        "momentum": None,
        "running_var_unbiased": True,
        "running_mean": np.zeros(4, dtype),
        "running_var": np.ones(4, dtype),
    }
    for step in range(4):
        x, g, b, _ = _inputs(rng, shape, dtype, offset=step)
        out, _ = _fwd(spatial)(x, np.ones(4, dtype), np.zeros(4, dtype), p)
        ref = module(torch.tensor(x))
        _close(out, ref.detach().numpy(), dtype)
        _close(p["running_mean"], module.running_mean.numpy(), dtype)
        _close(p["running_var"], module.running_var.numpy(), dtype)
        assert p["num_batches_tracked"] == int(module.num_batches_tracked) == step + 1
    module.eval()
    p["mode"] = "test"
    out, _ = _fwd(spatial)(x, np.ones(4, dtype), np.zeros(4, dtype), p)
    _close(out, module(torch.tensor(x)).detach().numpy(), dtype)
    assert p["num_batches_tracked"] == 4  # test mode counts nothing


def test_num_batches_tracked_counted_only_when_asked(rng):
    x = rng.standard_normal((8, 3))
    g, b = np.ones(3), np.zeros(3)
    p = {"mode": "train", "momentum": 0.9}
    L.batchnorm_forward(x, g, b, p)
    assert "num_batches_tracked" not in p  # the default bn_param gains no key
    p["num_batches_tracked"] = 0  # present: counted, as PyTorch counts with a numeric momentum
    rm = p["running_mean"].copy()
    L.batchnorm_forward(x, g, b, p)
    L.batchnorm_forward(x, g, b, p)
    assert p["num_batches_tracked"] == 2
    q = {"mode": "train", "momentum": 0.9, "running_mean": rm}
    L.batchnorm_forward(x, g, b, q)
    L.batchnorm_forward(x, g, b, q)  # counting does not change the update
    assert p["running_mean"].tobytes() == q["running_mean"].tobytes()
    # momentum=None resumes from the count given: the 3rd batch has weight 1/3
    r = {"mode": "train", "momentum": None, "num_batches_tracked": 2, "running_mean": np.ones(3)}
    L.batchnorm_forward(x, g, b, r)
    np.testing.assert_allclose(r["running_mean"], (2 + x.mean(0)) / 3, rtol=1e-14)


# --- track_running_stats=False ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spatial", [False, True])
def test_untracked_uses_batch_statistics_in_both_modes(backend, rng, dtype, spatial):
    shape = (6, 3, 2, 2) if spatial else (6, 3)
    x, g, b, dy = _inputs(rng, shape, dtype)
    module = (torch.nn.BatchNorm2d if spatial else torch.nn.BatchNorm1d)(
        3, track_running_stats=False
    )
    module = module.double() if dtype == np.float64 else module
    with torch.no_grad():
        module.weight.copy_(torch.tensor(g))
        module.bias.copy_(torch.tensor(b))
    module.eval()  # untracked: eval mode normalizes with the batch's statistics too
    xt = _t(x)
    yt = module(xt)
    yt.backward(torch.tensor(dy))
    bwd = L.spatial_batchnorm_backward if spatial else L.batchnorm_backward_alt
    for mode in ("train", "test"):
        p = {"mode": mode, "track_running_stats": False}
        out, cache = _fwd(spatial)(x, g, b, p)
        assert p == {"mode": mode, "track_running_stats": False}  # nothing kept
        _close(out, yt.detach().numpy(), dtype)
        dx, dg, db = bwd(dy, cache)
        _close(dx, xt.grad.numpy(), dtype)
        _close(dg, module.weight.grad.numpy(), dtype)
        _close(db, module.bias.grad.numpy(), dtype)


# --- ghost batch norm ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape,V", [((12, 5), 4), ((12, 5), 3), ((8, 3, 2, 3), 2), ((8, 3, 2, 3), 4)]
)
def test_ghost_matches_pytorch_batch_norm_per_chunk(backend, rng, dtype, shape, V):
    spatial = len(shape) == 4
    C = shape[1]
    x, g, b, dy = _inputs(rng, shape, dtype)
    rm0, rv0 = rng.standard_normal(C).astype(dtype), (0.5 + rng.random(C)).astype(dtype)
    p = {
        "mode": "train",
        "virtual_batch_size": V,
        "momentum": 0.7,  # PyTorch's momentum=0.3
        "running_var_unbiased": True,
        "running_mean": rm0.copy(),
        "running_var": rv0.copy(),
    }
    out, cache = _fwd(spatial)(x, g, b, p)
    assert out.dtype == dtype
    xt, gt, bt = _t(x), _t(g), _t(b)
    ys, rms, rvs = [], [], []
    for xc in torch.split(xt, V):
        rm, rv = torch.tensor(rm0), torch.tensor(rv0)  # each chunk from the same buffers
        ys.append(F.batch_norm(xc, rm, rv, gt, bt, training=True, momentum=0.3, eps=1e-5))
        rms.append(rm)
        rvs.append(rv)
    yt = torch.cat(ys)
    yt.backward(torch.tensor(dy))
    _close(out, yt.detach().numpy(), dtype)
    # Keras's one update from the chunks' mean statistics = the mean of the chunks' updates
    _close(p["running_mean"], torch.stack(rms).mean(0).numpy(), dtype)
    _close(p["running_var"], torch.stack(rvs).mean(0).numpy(), dtype)
    grads = [xt.grad.numpy(), gt.grad.numpy(), bt.grad.numpy()]
    bwds = (
        [L.spatial_batchnorm_backward]
        if spatial
        else [L.batchnorm_backward, L.batchnorm_backward_alt]
    )
    for bwd in bwds:
        for ours, ref in zip(bwd(dy, cache), grads, strict=True):
            assert ours.dtype == dtype
            _close(ours, ref, dtype)


def test_ghost_test_mode_uses_running_statistics_for_any_batch_size(rng):
    x = rng.standard_normal((7, 3))  # 7 is no multiple of V: fine without batch statistics
    rm, rv = rng.standard_normal(3), 0.5 + rng.random(3)
    p = {"mode": "test", "virtual_batch_size": 4, "running_mean": rm, "running_var": rv}
    out, _ = L.batchnorm_forward(x, np.ones(3), np.zeros(3), p)
    q = {"mode": "test", "running_mean": rm, "running_var": rv}
    assert out.tobytes() == L.batchnorm_forward(x, np.ones(3), np.zeros(3), q)[0].tobytes()


def test_ghost_untracked_test_mode_normalizes_per_chunk(rng):
    x = rng.standard_normal((8, 3))
    p = {"virtual_batch_size": 4, "track_running_stats": False}
    train, _ = L.batchnorm_forward(x, np.ones(3), np.zeros(3), dict(p, mode="train"))
    test, _ = L.batchnorm_forward(x, np.ones(3), np.zeros(3), dict(p, mode="test"))
    assert train.tobytes() == test.tobytes()
    np.testing.assert_allclose(test[4:].mean(0), 0, atol=1e-12)


# --- batch renormalization -------------------------------------------------------------------


def _renorm_torch(x, g, b, rm, rv, eps, rmax, dmax):
    """Ioffe 2017, Algorithm 1, by PyTorch autograd with r and d detached."""
    dims = [0] + list(range(2, x.ndim))
    shp = (1, -1) + (1,) * (x.ndim - 2)
    xt, gt, bt = _t(x), _t(g), _t(b)
    mu = xt.mean(dims, keepdim=True)
    var = ((xt - mu) ** 2).mean(dims, keepdim=True)
    sd = torch.sqrt(var + eps)
    sigma = torch.sqrt(torch.tensor(rv).reshape(shp) + eps)
    r = torch.clamp(sd.detach() / sigma, 1 / rmax, rmax)
    d = torch.clamp((mu.detach() - torch.tensor(rm).reshape(shp)) / sigma, -dmax, dmax)
    y = gt.reshape(shp) * ((xt - mu) / sd * r + d) + bt.reshape(shp)
    return y, (xt, gt, bt), (r.reshape(-1).numpy(), d.reshape(-1).numpy())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(16, 6), (5, 6, 3, 2)])
def test_renorm_matches_pytorch_autograd_with_r_d_detached(backend, rng, dtype, shape):
    spatial = len(shape) == 4
    x, g, b, dy = _inputs(rng, shape, dtype, offset=1.0)
    # running statistics near and far from the batch's: some channels clipped, some not
    rm = np.array([1.0, 1.2, -3.0, 1.1, 9.0, 0.9], dtype)
    rv = np.array([4.0, 3.0, 0.2, 5.0, 40.0, 4.4], dtype)
    rmax, dmax, eps = 1.5, 0.5, 1e-3
    p = {"mode": "train", "running_mean": rm.copy(), "running_var": rv.copy(), "eps": eps}
    fwd = spatial_batchrenorm_forward if spatial else batchrenorm_forward
    bwd = spatial_batchrenorm_backward if spatial else batchrenorm_backward
    out, cache = fwd(x, g, b, dict(p, rmax=rmax, dmax=dmax))
    y, tensors, (r, d) = _renorm_torch(x, g, b, rm, rv, eps, rmax, dmax)
    assert np.any((r > 1 / rmax) & (r < rmax)) and np.any((r == rmax) | (r == 1 / rmax))
    assert np.any(np.abs(d) == dmax) and np.any(np.abs(d) < dmax)
    y.backward(torch.tensor(dy))
    _close(out, y.detach().numpy(), dtype)
    _close(cache.r, r, dtype)
    _close(cache.d, d, dtype)
    for ours, t in zip(bwd(dy, cache), tensors, strict=True):
        assert ours.dtype == dtype
        _close(ours, t.grad.numpy(), dtype)
    # the running statistics are updated as batch norm's
    q = {"mode": "train", "running_mean": rm.copy(), "running_var": rv.copy(), "eps": eps}
    _fwd(spatial)(x, g, b, q)
    assert p.keys() == q.keys()  # (dict(p, ...) shares p's arrays, updated in place)
    assert p["running_mean"].tobytes() == q["running_mean"].tobytes()
    assert p["running_var"].tobytes() == q["running_var"].tobytes()


def test_renorm_unclipped_is_test_mode(rng):
    x = 2 + 3 * rng.standard_normal((32, 4))
    p = {"mode": "test", "running_mean": rng.standard_normal(4), "running_var": 1 + rng.random(4)}
    test, _ = batchrenorm_forward(x, np.ones(4), np.zeros(4), p)
    p.update(mode="train", rmax=np.inf, dmax=np.inf)
    train, _ = batchrenorm_forward(x, np.ones(4), np.zeros(4), p)
    np.testing.assert_allclose(train, test, rtol=1e-12, atol=1e-12)


# --- properties: the defaults are batch norm ---------------------------------------------------


def _same_bits(a, b):
    assert len(a) == len(b)
    for u, v in zip(a, b, strict=True):
        assert u.dtype == v.dtype and u.tobytes() == v.tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(9, 5), (4, 5, 3, 3)])
def test_renorm_defaults_and_ghost_with_V_equal_N_are_batch_norm(backend, rng, dtype, shape):
    spatial = len(shape) == 4
    x, g, b, dy = _inputs(rng, shape, dtype)
    base = {"mode": "train", "momentum": 0.8, "running_var_unbiased": True}
    ref_p = copy.deepcopy(base)
    ref_out, ref_cache = _fwd(spatial)(x, g, b, ref_p)
    bwd = L.spatial_batchnorm_backward if spatial else L.batchnorm_backward_alt
    ref = (ref_out, *bwd(dy, ref_cache), ref_p["running_mean"], ref_p["running_var"])
    # renorm, rmax=1 and dmax=0 (explicit, then the defaults)
    rfwd = spatial_batchrenorm_forward if spatial else batchrenorm_forward
    for extra in ({"rmax": 1.0, "dmax": 0.0}, {}):
        p = dict(copy.deepcopy(base), **extra)
        out, cache = rfwd(x, g, b, p)
        _same_bits(ref, (out, *batchrenorm_backward(dy, cache), *_running(p)))
    # ghost batch norm with one chunk
    p = dict(copy.deepcopy(base), virtual_batch_size=shape[0])
    out, cache = _fwd(spatial)(x, g, b, p)
    _same_bits(ref, (out, *bwd(dy, cache), *_running(p)))
    if not spatial:  # and through the graph backward
        _same_bits(L.batchnorm_backward(dy, ref_cache), L.batchnorm_backward(dy, cache))


def _running(p):
    return p["running_mean"], p["running_var"]


def test_renorm_defaults_are_batch_norm_with_nontrivial_running_statistics(rng):
    x = rng.standard_normal((8, 3))
    p = {"mode": "train", "running_mean": np.full(3, 5.0), "running_var": np.full(3, 0.01)}
    q = copy.deepcopy(p)
    out, _ = batchrenorm_forward(x, np.ones(3), np.zeros(3), p)  # r, d clipped to 1, 0
    assert out.tobytes() == L.batchnorm_forward(x, np.ones(3), np.zeros(3), q)[0].tobytes()


# --- gradient checks: float64, random upstream gradient ---------------------------------------


@pytest.mark.parametrize(
    "fwd,bwd,shape,param",
    [
        (L.batchnorm_forward, L.batchnorm_backward, (12, 4), {"virtual_batch_size": 3}),
        (L.batchnorm_forward, L.batchnorm_backward_alt, (12, 4), {"virtual_batch_size": 4}),
        (
            L.spatial_batchnorm_forward,
            L.spatial_batchnorm_backward,
            (6, 3, 2, 3),
            {"virtual_batch_size": 2},
        ),
        (L.batchnorm_forward, L.batchnorm_backward, (6, 4), {"momentum": None}),
        (L.batchnorm_forward, L.batchnorm_backward, (6, 4), {"track_running_stats": False}),
        (
            L.batchnorm_forward,
            L.batchnorm_backward_alt,
            (8, 4),
            {"track_running_stats": False, "virtual_batch_size": 4},
        ),
        (
            L.spatial_batchnorm_forward,
            L.spatial_batchnorm_backward,
            (3, 2, 2, 3),
            {"track_running_stats": False},
        ),
        (batchrenorm_forward, batchrenorm_backward, (10, 6), {"rmax": 2.0, "dmax": 1.0}),
        (spatial_batchrenorm_forward, spatial_batchrenorm_backward, (4, 6, 2, 3), {}),
    ],
)
@pytest.mark.parametrize("mode", ["train", "test"])
def test_gradients(rng, fwd, bwd, shape, param, mode):
    C = shape[1]
    x = 1 + 2 * rng.standard_normal(shape)
    if mode == "test" and param.get("track_running_stats", True):
        param = dict(param, running_mean=rng.standard_normal(C), running_var=0.5 + rng.random(C))
    rows = check_layer(
        fwd,
        bwd,
        [x, rng.standard_normal(C), rng.standard_normal(C)],
        ["dx", "dgamma", "dbeta"],
        {"bn_param": dict(param, mode=mode)},
        seed=5,
    )
    _rows_ok(rows)


# Batch renorm's backward is, by definition, the gradient with r and d held constant -- not
# the gradient of the forward where r, d are unclipped (they depend on x there). Checked
# (1) against the layer's own forward where every r, d is clipped (locally constant), and
# (2) on every channel, against the forward with r, d frozen at their values.
RENORM_RUNNING = {  # near the batch's statistics (unclipped) and far from them (clipped)
    "mixed": (np.array([1.0, 1.2, -3.0, 1.1, 9.0, 0.9]), np.array([4.0, 3.0, 0.2, 5, 40, 4.4])),
    "clipped": (np.array([11.0, -9, 11, -9, 11, -9]), np.full(6, 0.01)),
}


@pytest.mark.parametrize("shape", [(10, 6), (4, 6, 2, 3)])
@pytest.mark.parametrize("running", ["mixed", "clipped"])
def test_renorm_gradients_with_r_d_constant(rng, shape, running):
    spatial = len(shape) == 4
    fwd = spatial_batchrenorm_forward if spatial else batchrenorm_forward
    bwd = spatial_batchrenorm_backward if spatial else batchrenorm_backward
    x = 1 + 2 * rng.standard_normal(shape)
    rm, rv = RENORM_RUNNING[running]
    p = {"mode": "train", "rmax": 1.5, "dmax": 0.5, "running_mean": rm, "running_var": rv}
    _, c0 = fwd(x, np.ones(6), np.zeros(6), copy.deepcopy(p))
    r0, d0 = c0.r, c0.d
    if running == "clipped":
        assert np.all(r0 == 1.5) and np.all(np.abs(d0) == 0.5)

        def forward(x, g, b, bn_param):
            return fwd(x, g, b, bn_param)
    else:
        assert np.any((r0 > 1 / 1.5) & (r0 < 1.5)) and np.any(np.abs(d0) < 0.5)

        def forward(x, g, b, bn_param):  # the output with r, d frozen; renorm's own cache
            _, cache = fwd(x, g, b, bn_param)
            out, _ = _fwd(spatial)(x, g * r0, g * d0 + b, {"mode": "train"})
            return out, cache

    rows = check_layer(
        forward,
        bwd,
        [x, rng.standard_normal(6), rng.standard_normal(6)],
        ["dx", "dgamma", "dbeta"],
        {"bn_param": p},
        seed=6,
    )
    _rows_ok(rows)


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call,match",
    [
        (
            lambda: L.batchnorm_forward(
                np.ones((10, 3)),
                np.ones(3),
                np.zeros(3),
                {"mode": "train", "virtual_batch_size": 4},
            ),
            r"virtual_batch_size V=4 must divide the batch size N=10 \(N % V = 2\); use a batch "
            r"of a multiple of 4 samples \(e\.g\. 8 or 12\), or a virtual_batch_size that divides",
        ),
        (
            lambda: L.spatial_batchnorm_forward(
                np.ones((2, 3, 2, 2)),
                np.ones(3),
                np.zeros(3),
                {"mode": "train", "virtual_batch_size": 3},
            ),
            r"spatial_batchnorm_forward: virtual_batch_size V=3 must divide the batch size N=2 "
            r".*\(e\.g\. 3\)",
        ),
        (
            lambda: L.batchnorm_forward(
                np.ones((4, 3)), np.ones(3), np.zeros(3), {"mode": "train", "virtual_batch_size": 1}
            ),
            r"more than 1 value per channel of each virtual batch of 1 samples when training.*"
            r"use a larger V",
        ),
        *[
            (
                lambda v=v: L.batchnorm_forward(
                    np.ones((4, 3)),
                    np.ones(3),
                    np.zeros(3),
                    {"mode": "train", "virtual_batch_size": v},
                ),
                r"expected bn_param\['virtual_batch_size'\] None or an integer >= 1, got",
            )
            for v in (0, 2.0, True, "2")
        ],
        (
            lambda: L.batchnorm_forward(
                np.ones((4, 3)),
                np.ones(3),
                np.zeros(3),
                {"mode": "train", "track_running_stats": False, "running_mean": np.zeros(3)},
            ),
            r"track_running_stats is False, so they would be neither updated nor used; pass "
            r"track_running_stats=True, or drop \['running_mean'\]",
        ),
        (
            lambda: L.batchnorm_forward(
                np.ones((4, 3)),
                np.ones(3),
                np.zeros(3),
                {"mode": "train", "track_running_stats": 0},
            ),
            r"expected bn_param\['track_running_stats'\] to be True or False, got 0",
        ),
        *[
            (
                lambda n=n: L.batchnorm_forward(
                    np.ones((4, 3)),
                    np.ones(3),
                    np.zeros(3),
                    {"mode": "train", "num_batches_tracked": n},
                ),
                r"expected bn_param\['num_batches_tracked'\] an integer >= 0, got",
            )
            for n in (-1, 1.0, None)
        ],
        (
            lambda: L.batchnorm_forward(
                np.ones((4, 3)), np.ones(3), np.zeros(3), {"mode": "train", "momentum": 1.5}
            ),
            r"expected momentum in \[0, 1\], got 1.5",
        ),
        (
            lambda: L.batchnorm_forward(
                np.ones((4, 3)), np.ones(3), np.zeros(3), {"mode": "train", "virtual_bs": 2}
            ),
            r"unknown bn_param key 'virtual_bs' \(did you mean 'virtual_batch_size'\?\); known "
            r"keys are \['eps', 'mode', 'momentum', 'num_batches_tracked', 'running_mean', "
            r"'running_var', 'running_var_unbiased', 'track_running_stats', "
            r"'virtual_batch_size'\]",
        ),
        (
            lambda: L.batchnorm_forward(
                np.ones((4, 3)), np.ones(3), np.zeros(3), {"mode": "train", "rmax": 2.0}
            ),
            r"unknown bn_param key 'rmax'",
        ),
        *[
            (
                lambda k=k, v=v: batchrenorm_forward(
                    np.ones((4, 3)), np.ones(3), np.zeros(3), {"mode": "train", k: v}
                ),
                rf"batchrenorm_forward: expected bn_param\['{k}'\] >= {low} \(",
            )
            for k, v, low in [
                ("rmax", 0.5, 1.0),
                ("rmax", np.nan, 1.0),
                ("rmax", True, 1.0),
                ("dmax", -1.0, 0.0),
                ("dmax", "5", 0.0),
            ]
        ],
        *[
            (
                lambda k=k: spatial_batchrenorm_forward(
                    np.ones((2, 3, 2, 2)), np.ones(3), np.zeros(3), {"mode": "train", k: 2}
                ),
                rf"spatial_batchrenorm_forward: bn_param\['{k}'\] is a batch-norm option that "
                rf"batch renorm does not take .* use spatial_batchnorm_forward",
            )
            for k in ("virtual_batch_size", "track_running_stats")
        ],
        (
            lambda: batchrenorm_forward(
                np.ones((4, 3)), np.ones(3), np.zeros(3), {"mode": "train", "dmx": 2.0}
            ),
            r"unknown bn_param key 'dmx' \(did you mean 'dmax'\?\)",
        ),
        (
            lambda: batchrenorm_backward(
                np.ones((4, 3)),
                L.batchnorm_forward(np.eye(4, 3), np.ones(3), np.zeros(3), {"mode": "train"})[1],
            ),
            r"expected the cache of batchrenorm_forward or spatial_batchrenorm_forward",
        ),
        (
            lambda: L.batchnorm_backward(
                np.ones((4, 3, 1, 1)),
                L.spatial_batchnorm_forward(
                    np.ones((4, 3, 1, 1)),
                    np.ones(3),
                    np.zeros(3),
                    {"mode": "train", "virtual_batch_size": 2},
                )[1],
            ),
            r"batchnorm_backward: expected the cache of batchnorm_forward",
        ),
    ],
)
def test_bad_options_are_refused_with_the_fix(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize(
    "fwd,extra,what,indices",
    [
        (
            L.batchnorm_forward,
            {"virtual_batch_size": 4},
            "(virtual batch, channel) pairs",
            [(1, 2)],
        ),
        (L.batchnorm_forward, {"momentum": None, "num_batches_tracked": 3}, "channels", [2]),
        (batchrenorm_forward, {"rmax": 3.0, "dmax": 5.0, "momentum": None}, "channels", [2]),
    ],
)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_batch_leaves_running_statistics_bit_identical(backend, fwd, extra, what, indices, bad):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 4))
    x[5, 2] = bad
    rm, rv = rng.standard_normal(4), rng.random(4)
    p = {"mode": "train", "running_mean": rm, "running_var": rv, **extra}
    before = copy.deepcopy(p)
    with (
        np.errstate(invalid="ignore"),
        pytest.raises(L.NonFiniteStatisticsError, match="running statistics were not updated") as e,
    ):
        fwd(x, np.ones(4), np.zeros(4), p)
    assert (e.value.what, e.value.indices, e.value.count) == (what, indices, 1)
    assert p.keys() == before.keys()
    for k, v in before.items():
        assert (p[k].tobytes() if isinstance(v, np.ndarray) else p[k]) == (
            v.tobytes() if isinstance(v, np.ndarray) else v
        )
    assert p["running_mean"] is rm and p["running_var"] is rv


def test_untracked_nan_batch_refused_in_train_mode_only():
    x = np.ones((4, 3)) + np.arange(12).reshape(4, 3)
    x[0, 1] = np.nan
    p = {"track_running_stats": False}
    with pytest.raises(L.NonFiniteStatisticsError) as e:
        L.batchnorm_forward(x, np.ones(3), np.zeros(3), dict(p, mode="train"))
    assert not e.value.running and "not updated" not in str(e.value)
    with np.errstate(invalid="ignore"):
        out, _ = L.batchnorm_forward(x, np.ones(3), np.zeros(3), dict(p, mode="test"))
    assert np.isnan(out[:, 1]).all() and np.isfinite(out[:, [0, 2]]).all()
