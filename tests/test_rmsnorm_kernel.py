"""RMSNorm's fused kernel (normlab/kernels/rms.py) against its NumPy reference and PyTorch.

The layer runs the kernel unless ``NORMLAB_BACKEND=numpy``; both paths must agree with each
other (float32 to a few roundings, float64 to 1e-12), with ``torch.nn.functional.rms_norm``,
give the same dtypes for odd inputs, the same bits on one thread and on two, and refuse
non-finite statistics in train mode.
"""

import numpy as np
import pytest

from normlab import layers as L
from normlab.gradient_check import check_layer

torch = pytest.importorskip("torch")
F = torch.nn.functional

# max|kernel - reference| / max|reference| per result: float32 is a few roundings of the output
REL = {np.float32: 1e-6, np.float64: 1e-12}


def _run(x, gamma, dy, backend, monkeypatch, param=None):
    monkeypatch.setenv("NORMLAB_BACKEND", backend)
    out, cache = L.rmsnorm_forward(x, gamma, {} if param is None else param)
    dx, dgamma = L.rmsnorm_backward(dy, cache)
    return out, cache.rrms, dx, dgamma


def _both(x, gamma, dy, monkeypatch, param=None):
    """(kernel results, reference results): out, rrms, dx, dgamma."""
    return tuple(_run(x, gamma, dy, b, monkeypatch, param) for b in ("numba", "numpy"))


def _term_scale(gamma, dy, rrms):
    """The size of the terms whose difference dx is: max |rrms * dy * gamma|. dx itself can be
    far smaller (D = 1: dx = rrms * g * eps / (x^2 + eps), all cancellation)."""
    return float(np.max(np.abs(rrms[:, None] * np.asarray(dy, np.float64) * gamma), initial=0.0))


def _assert_close(got, want, rel, names=("out", "rrms", "dx", "dgamma"), dx_scale=0.0):
    """max|got - want| <= rel * max|want| per result (at least 1e-6 for a float32 one); dx's
    error relative to ``dx_scale`` when that is larger."""
    for name, g, w in zip(names, got, want, strict=True):
        assert g.dtype == w.dtype and g.shape == w.shape, name
        tol = rel if g.dtype == np.float64 else max(rel, REL[np.float32])
        scale = max(float(np.max(np.abs(w), initial=0.0)), np.finfo(np.float64).tiny)
        scale = max(scale, dx_scale) if name == "dx" else scale
        err = float(np.max(np.abs(g.astype(np.float64) - w), initial=0.0)) / scale
        assert err <= tol, f"{name}: max error {err:.1e} of max |value|"


# -- the kernel against the NumPy reference ------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(16, 7), (3, 300), (5, 1), (1, 9), (130, 70), (7, 5000)])
def test_kernel_matches_the_numpy_reference(monkeypatch, rng, dtype, shape):
    """(130, 70): more rows than one flush of the dgamma sums; (7, 5000): rows longer than one
    block of the backward's sum; (5, 1) and (1, 9): D = 1 and N = 1."""
    D = shape[1]
    x = (1 + 2 * rng.standard_normal(shape)).astype(dtype)
    gamma = rng.standard_normal(D).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    got, want = _both(x, gamma, dy, monkeypatch)
    _assert_close(got, want, REL[dtype], dx_scale=_term_scale(gamma, dy, want[1]))


@pytest.mark.parametrize(
    "case",
    ["strided", "fortran", "gamma64", "gamma32", "integers", "dout64", "empty", "eps"],
)
def test_odd_inputs_give_the_references_dtypes_and_values(monkeypatch, rng, case):
    x = rng.standard_normal((9, 12)).astype(np.float32)  # (N, D)
    gamma = rng.standard_normal(12).astype(np.float32)  # (D,)
    dy = rng.standard_normal((9, 12)).astype(np.float32)  # (N, D)
    param = None
    if case == "strided":  # every other feature: not contiguous
        x, gamma, dy = x[:, ::2], gamma[::2], dy[:, ::2]
    elif case == "fortran":
        x, dy = np.asfortranarray(x), np.asfortranarray(dy)
    elif case == "gamma64":  # out, dx float32; dgamma float64 (gamma's dtype)
        gamma = gamma.astype(np.float64)
    elif case == "gamma32":  # float64 x, float32 gamma
        x, dy = x.astype(np.float64), dy.astype(np.float64)
    elif case == "integers":  # integer x becomes float64
        x = rng.integers(-5, 6, size=(9, 12))
    elif case == "dout64":  # a float64 upstream gradient into a float32 layer
        dy = dy.astype(np.float64)
    elif case == "empty":  # N = 0
        x, dy = x[:0], dy[:0]
    elif case == "eps":
        param = {"eps": 1e-3, "mode": "test"}
    got, want = _both(x, gamma, dy, monkeypatch, param)
    rel = 2e-6 if case == "gamma64" else REL[np.float64]  # the kernel rounds gamma to float32
    _assert_close(got, want, rel, dx_scale=_term_scale(gamma, dy, want[1]))
    assert got[3].dtype == np.asarray(gamma).dtype  # dgamma in gamma's dtype


# float32 x at the edges of its exponent range (eps small enough not to mask the statistic),
# against float64 math: rrms itself may not be a float32 number (5e37: a subnormal)
SCALES = [(1e19, 1e-5), (1e25, 1e-5), (1e30, 1e-5), (2e37, 1e-5), (5e37, 1e-5)]
SCALES += [(1e-20, 1e-45), (1e-22, 1e-45)]


@pytest.mark.parametrize("scale, eps", SCALES, ids=[f"{s:.0e}" for s, _ in SCALES])
def test_float32_kernel_matches_float64_math_at_extreme_scales(monkeypatch, scale, eps):
    rng = np.random.default_rng(2024)
    shape = (6, 5000)  # rows longer than one block
    noise = np.clip(rng.standard_normal(shape), -2, 2)
    x = (scale * (3 + noise)).astype(np.float32)
    gamma = (1 + 0.5 * rng.standard_normal(5000)).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    got = _run(x, gamma, dy, "numba", monkeypatch, {"eps": eps})
    f64 = [a.astype(np.float64) for a in (x, gamma, dy)]
    want = _run(*f64, "numpy", monkeypatch, {"eps": eps})
    for g in got:
        assert np.all(np.isfinite(g))
    got = [g.astype(np.float64) for g in got]
    _assert_close(got, want, 1e-6, dx_scale=_term_scale(gamma, dy, want[1]))


def test_a_zero_row_with_an_eps_below_float32s_range(monkeypatch, rng):
    """rrms = 1/sqrt(eps) = 1e45 is inf in float32: that row is done in float64 (out 0, not
    0 * inf = NaN; dx = rrms * g overflows float32 as the reference's does)."""
    x = rng.standard_normal((3, 8)).astype(np.float32)
    x[1] = 0
    dy = rng.standard_normal((3, 8)).astype(np.float32)
    gamma = rng.standard_normal(8).astype(np.float32)
    with np.errstate(over="ignore"):  # the reference's dx, cast to float32
        got, want = _both(x, gamma, dy, monkeypatch, {"eps": 1e-90})
    assert np.all(got[0][1] == 0)
    np.testing.assert_array_equal(got[2][1], want[2][1])  # +-inf
    _assert_close(
        [got[0], got[1], got[3]], [want[0], want[1], want[3]], 1e-6, ("out", "rrms", "dgamma")
    )
    np.testing.assert_allclose(got[2][[0, 2]], want[2][[0, 2]], rtol=1e-5, atol=1e-6)


# -- both backends against PyTorch ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("eps", [None, 1e-6])
@pytest.mark.parametrize("shape", [(16, 7), (3, 300), (5, 1), (1, 8), (70, 4100)])
def test_both_backends_match_torch(backend, rng, dtype, eps, shape):
    D = shape[1]
    x = (1 + 2 * rng.standard_normal(shape)).astype(dtype)
    g = rng.standard_normal(D).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    out, cache = L.rmsnorm_forward(x, g, {"eps": eps})
    dx, dg = L.rmsnorm_backward(dy, cache)
    xt = torch.tensor(x, requires_grad=True)
    gt = torch.tensor(g, requires_grad=True)
    F.rms_norm(xt, (D,), gt, eps=eps).backward(torch.tensor(dy))  # eps=None: finfo(dtype).eps
    want = F.rms_norm(torch.tensor(x), (D,), torch.tensor(g), eps=eps).numpy()
    rel = 1e-10 if dtype == np.float64 else 1e-5
    names = ("out", "dx", "dgamma")
    wants = (want, xt.grad.numpy(), gt.grad.numpy())
    _assert_close((out, dx, dg), wants, rel, names, _term_scale(g, dy, cache.rrms))


@pytest.mark.parametrize("shape", [(4, 6), (1, 9), (7, 1)])
def test_gradcheck_through_both_backends(backend, rng, shape):
    x = 0.5 + rng.standard_normal(shape)
    rows = check_layer(
        L.rmsnorm_forward,
        L.rmsnorm_backward,
        [x, rng.standard_normal(shape[1])],
        ["dx", "dgamma"],
        {"rms_param": {"eps": 1e-3}},
        seed=5,
    )
    for r in rows:
        assert r.rel_error < 1e-6, f"{r.layer} {r.gradient}: {r.rel_error:.2e}"


# -- threads and non-finite statistics -----------------------------------------------------------


def test_same_bits_on_one_thread_and_on_two(monkeypatch):
    """The multi-threaded variants (forced here at a test's size) split dgamma's sum into a
    fixed number of chunks of rows, and each row is one thread's: the thread count changes no
    bit."""
    import numba

    from normlab.kernels import norm as kern

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two numba threads")
    monkeypatch.setattr(kern, "PARALLEL_MIN", 1)
    rng = np.random.default_rng(5)
    x = (3 + rng.standard_normal((301, 70))).astype(np.float32)  # (N, D)
    dy = rng.standard_normal((301, 70)).astype(np.float32)
    g = rng.standard_normal(70).astype(np.float32)
    threads = numba.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            numba.set_num_threads(n)
            results.append(_run(x, g, dy, "numba", monkeypatch))
    finally:
        numba.set_num_threads(threads)
    for one, two in zip(*results, strict=True):
        np.testing.assert_array_equal(one, two, strict=True)


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_refuses_nonfinite_statistics_in_train_mode(monkeypatch, rng, dtype, parallel):
    """The kernel counts the rows whose mean square is NaN or inf (the multi-threaded variant
    too); the layer then names them."""
    from normlab.kernels import norm as kern

    if parallel:
        monkeypatch.setattr(kern, "PARALLEL_MIN", 1)
    monkeypatch.setenv("NORMLAB_BACKEND", "numba")
    x = rng.standard_normal((5, 6)).astype(dtype)
    x[1, 2] = np.nan
    x[3, 0] = np.inf
    with pytest.raises(L.NonFiniteStatisticsError, match=r"2 of 5 samples \(1, 3\)") as e:
        L.rmsnorm_forward(x, np.ones(6, dtype), {})
    assert e.value.indices == [1, 3]
    big = rng.standard_normal((3, 4)) * 1e200  # squares overflow float64: ms = inf
    with pytest.raises(L.NonFiniteStatisticsError, match=r"3 of 3 samples"):
        L.rmsnorm_forward(big, np.ones(4), {"mode": "train"})


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the reference's inf * 0
def test_test_mode_propagates_nonfinite_rows_like_the_reference(monkeypatch, rng):
    x = rng.standard_normal((5, 6)).astype(np.float32)
    x[1, 2] = np.nan
    x[3, 0] = np.inf
    dy = rng.standard_normal((5, 6)).astype(np.float32)
    got, want = _both(x, np.ones(6, np.float32), dy, monkeypatch, {"mode": "test"})
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(np.isfinite(g), np.isfinite(w))
        ok = np.isfinite(w)
        np.testing.assert_allclose(g[ok], w[ok], rtol=2e-6, atol=2e-6)
    assert np.isfinite(got[0][[0, 2, 4]]).all()  # the other rows are unharmed
