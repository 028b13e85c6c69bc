"""PyTorch as the oracle: batch, spatial batch, layer and group norm, both backends."""

import numpy as np
import pytest
from _layers import layer_calls

from normlab import layers as L

torch = pytest.importorskip("torch")
F = torch.nn.functional

TOL = {np.float64: dict(rtol=1e-10, atol=1e-10), np.float32: dict(rtol=1e-5, atol=1e-5)}
DTYPES = [np.float64, np.float32]


def _t(a):
    return torch.tensor(a, requires_grad=True)


def _close(ours, ref, dtype):
    """assert_allclose with the absolute tolerance scaled to the reference's magnitude.

    PyTorch's own float32 rounding grows with the size of the gradient (e.g. layer norm over
    three features with a small variance); normlab accumulates in float64.
    """
    ref = np.asarray(ref)
    tol = TOL[dtype]
    atol = tol["atol"] * max(1.0, float(np.abs(ref).max(initial=0)))
    np.testing.assert_allclose(ours, ref, rtol=tol["rtol"], atol=atol)


def _check_grads(ours, tensors, dtype):
    for a, t in zip(ours, tensors, strict=True):
        _close(a, t.grad.numpy(), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(16, 7), (3, 300), (500, 4)])
def test_batchnorm_train_forward_and_both_backwards(backend, rng, dtype, shape):
    D = shape[1]
    x = (5 + 3 * rng.standard_normal(shape)).astype(dtype)
    g, b = rng.standard_normal(D).astype(dtype), rng.standard_normal(D).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    out, cache = L.batchnorm_forward(x, g, b, {"mode": "train"})
    xt, gt, bt = _t(x), _t(g), _t(b)
    yt = F.batch_norm(xt, None, None, gt, bt, training=True, eps=1e-5)
    yt.backward(torch.tensor(dy))
    assert out.dtype == dtype
    _close(out, yt.detach().numpy(), dtype)
    _check_grads(L.batchnorm_backward(dy, cache), [xt, gt, bt], dtype)
    _check_grads(L.batchnorm_backward_alt(dy, cache), [xt, gt, bt], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spatial", [False, True])
def test_running_statistics_and_test_mode(backend, rng, dtype, spatial):
    shape = (12, 5, 3, 4) if spatial else (12, 5)
    fwd = L.spatial_batchnorm_forward if spatial else L.batchnorm_forward
    bwd = L.spatial_batchnorm_backward if spatial else L.batchnorm_backward_alt
    bn = (torch.nn.BatchNorm2d if spatial else torch.nn.BatchNorm1d)(5, momentum=0.2, eps=1e-3)
    bn = bn.to(torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(rng.standard_normal(5)))
        bn.bias.copy_(torch.tensor(rng.standard_normal(5)))
    g = bn.weight.detach().numpy().copy()
    b = bn.bias.detach().numpy().copy()
    # PyTorch's momentum 0.2 is normlab's 0.8; PyTorch stores the unbiased variance and starts
    # it at ones.
    bn_param = {
        "mode": "train",
        "momentum": 0.8,
        "eps": 1e-3,
        "running_var_unbiased": True,
        "running_mean": np.zeros(5, dtype),
        "running_var": np.ones(5, dtype),
    }
    for step in range(4):
        x = (step + 2 * rng.standard_normal(shape)).astype(dtype)
        out, _ = fwd(x, g, b, bn_param)
        ref = bn.train()(torch.tensor(x))
        np.testing.assert_allclose(out, ref.detach().numpy(), **TOL[dtype])
        np.testing.assert_allclose(bn_param["running_mean"], bn.running_mean.numpy(), **TOL[dtype])
        np.testing.assert_allclose(bn_param["running_var"], bn.running_var.numpy(), **TOL[dtype])
    x = rng.standard_normal(shape).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    bn_param["mode"] = "test"
    out, cache = fwd(x, g, b, bn_param)
    bn.eval()
    xt = _t(x)
    ref = bn(xt)
    ref.backward(torch.tensor(dy))
    np.testing.assert_allclose(out, ref.detach().numpy(), **TOL[dtype])
    dx, dg, db = bwd(dy, cache)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **TOL[dtype])
    np.testing.assert_allclose(dg, bn.weight.grad.numpy(), **TOL[dtype])
    np.testing.assert_allclose(db, bn.bias.grad.numpy(), **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (2, 8, 1, 1), (70, 16, 7, 7)])
def test_spatial_batchnorm(backend, rng, dtype, shape):
    C = shape[1]
    x = (-3 + 2 * rng.standard_normal(shape)).astype(dtype)
    g, b = rng.standard_normal(C).astype(dtype), rng.standard_normal(C).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    out, cache = L.spatial_batchnorm_forward(x, g, b, {"mode": "train"})
    xt, gt, bt = _t(x), _t(g), _t(b)
    yt = F.batch_norm(xt, None, None, gt, bt, training=True, eps=1e-5)
    yt.backward(torch.tensor(dy))
    _close(out, yt.detach().numpy(), dtype)
    _check_grads(L.spatial_batchnorm_backward(dy, cache), [xt, gt, bt], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(4, 9), (300, 3), (2, 3000)])
def test_layernorm(backend, rng, dtype, shape):
    D = shape[1]
    x = (2 + rng.standard_normal(shape)).astype(dtype)
    g, b = rng.standard_normal(D).astype(dtype), rng.standard_normal(D).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    out, cache = L.layernorm_forward(x, g, b, {"eps": 1e-5})
    xt, gt, bt = _t(x), _t(g), _t(b)
    yt = F.layer_norm(xt, (D,), gt, bt, eps=1e-5)
    yt.backward(torch.tensor(dy))
    _close(out, yt.detach().numpy(), dtype)
    _check_grads(L.layernorm_backward(dy, cache), [xt, gt, bt], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "G,shape", [(2, (3, 4, 5, 5)), (1, (2, 6, 3, 3)), (6, (2, 6, 2, 3)), (4, (40, 32, 6, 6))]
)
def test_groupnorm(backend, rng, dtype, G, shape):
    C = shape[1]
    x = (1 + 3 * rng.standard_normal(shape)).astype(dtype)
    g, b = rng.standard_normal(C).astype(dtype), rng.standard_normal(C).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    out, cache = L.spatial_groupnorm_forward(x, g, b, G, {"eps": 1e-5})
    xt, gt, bt = _t(x), _t(g), _t(b)
    yt = F.group_norm(xt, G, gt, bt, eps=1e-5)
    yt.backward(torch.tensor(dy))
    _close(out, yt.detach().numpy(), dtype)
    _check_grads(L.spatial_groupnorm_backward(dy, cache), [xt, gt, bt], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", ["small", "large"])
@pytest.mark.parametrize("layer", ["batchnorm", "spatial", "layernorm", "groupnorm"])
def test_kernels_equal_numpy_reference(monkeypatch, rng, layer, size, dtype):
    """Both paths compute the same float64 numbers to rounding error, forward and backward;
    "large" runs the multi-threaded kernels (threshold lowered, two threads: chunk merges and
    per-thread partial sums), "small" the single-threaded ones, on shapes with remainders
    (N not a multiple of 4 or 16, D not a multiple of the column tile)."""
    import numba

    from normlab.kernels import norm as kern

    monkeypatch.setattr(kern, "PARALLEL_MIN", 1 if size == "large" else 1 << 62)
    threads = numba.get_num_threads()
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    shapes = {
        "batchnorm": (37, 70000 // 37),
        "spatial": (9, 8, 30, 31),
        "layernorm": (33, 2100),
        "groupnorm": (5, 12, 33, 41),
    }
    shape = shapes[layer]
    C = shape[1]
    x = (700 + rng.standard_normal(shape)).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    g, b = rng.standard_normal(C).astype(dtype), rng.standard_normal(C).astype(dtype)
    fwd, bwd, extra = layer_calls(layer)
    results = {}
    try:
        for backend in ["numba", "numpy"]:
            monkeypatch.setenv("NORMLAB_BACKEND", backend)
            out, cache = fwd(x, g, b, *extra)
            results[backend] = (out, *bwd(dy, cache))
    finally:
        numba.set_num_threads(threads)
    tol = 1e-10 if dtype == np.float64 else 2e-6  # float32: one rounding of the output
    for a, c in zip(results["numba"], results["numpy"], strict=True):
        assert a.dtype == c.dtype
        np.testing.assert_allclose(a, c, rtol=tol, atol=tol * max(1.0, float(np.abs(c).max())))
