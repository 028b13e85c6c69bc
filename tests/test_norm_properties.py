"""Invariants of the normalization layers, with hypothesis-drawn shapes and scales."""

import numpy as np
import pytest
from _layers import layer_calls
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from normlab import layers as L

SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _x(seed, shape, loc=0.0, scale=1.0):
    return loc + scale * np.random.default_rng(seed).standard_normal(shape)


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(4, 40),
    d=st.integers(1, 12),
    a=st.floats(1e-2, 1e3),
    b=st.floats(-1e3, 1e3),
)
def test_batchnorm_is_invariant_to_positive_affine_maps(backend, seed, n, d, a, b):
    x = _x(seed, (n, d))
    g, beta = np.ones(d), np.zeros(d)
    # exact invariance: BN(a*x + b) with eps * a^2 is BN(x) with eps
    out1, _ = L.batchnorm_forward(x, g, beta, {"mode": "train", "eps": 1e-5})
    out2, _ = L.batchnorm_forward(a * x + b, g, beta, {"mode": "train", "eps": 1e-5 * a * a})
    np.testing.assert_allclose(out1, out2, rtol=1e-6, atol=1e-6)


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(2, 6),
    c=st.integers(1, 5),
    h=st.integers(1, 5),
    w=st.integers(1, 5),
    loc=st.floats(-100, 100),
    scale=st.floats(0.1, 100),
)
def test_spatial_train_outputs_have_zero_mean_unit_variance(backend, seed, n, c, h, w, loc, scale):
    x = _x(seed, (n, c, h, w), loc, scale)
    out, _ = L.spatial_batchnorm_forward(
        x, np.ones(c), np.zeros(c), {"mode": "train", "eps": 1e-12}
    )
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-8)
    v = x.var(axis=(0, 2, 3))  # with a tiny spread, eps = 1e-12 is not negligible
    np.testing.assert_allclose(out.var(axis=(0, 2, 3)), v / (v + 1e-12), rtol=1e-9)


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 8),
    d=st.integers(2, 30),
    loc=st.floats(-1e3, 1e3),
)
def test_layernorm_rows_standardised_and_batch_independent(backend, seed, n, d, loc):
    x = _x(seed, (n, d), loc, 3.0)
    out, _ = L.layernorm_forward(x, np.ones(d), np.zeros(d), {"eps": 1e-12})
    np.testing.assert_allclose(out.mean(axis=1), 0, atol=1e-8)
    v = x.var(axis=1)
    np.testing.assert_allclose(out.var(axis=1), v / (v + 1e-12), rtol=1e-9)
    first, _ = L.layernorm_forward(x[:1], np.ones(d), np.zeros(d), {"eps": 1e-12})
    np.testing.assert_allclose(first, out[:1], rtol=1e-12, atol=1e-12)


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    G=st.sampled_from([1, 2, 3, 6]),
    n=st.integers(1, 4),
    hw=st.integers(1, 4),
)
def test_groupnorm_special_cases(backend, seed, G, n, hw):
    """G = 1 is layer norm over (C, H, W); each group is standardised."""
    x = _x(seed, (n, 6, hw, hw), 5.0, 2.0)
    out, _ = L.spatial_groupnorm_forward(x, np.ones(6), np.zeros(6), G, {"eps": 1e-12})
    grouped = out.reshape(n, G, -1)
    np.testing.assert_allclose(grouped.mean(axis=2), 0, atol=1e-8)
    if G == 1:
        ln, _ = L.layernorm_forward(
            x.reshape(n, -1), np.ones(6 * hw * hw), np.zeros(6 * hw * hw), {"eps": 1e-12}
        )
        np.testing.assert_allclose(out.reshape(n, -1), ln, rtol=1e-10, atol=1e-10)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(3, 20), d=st.integers(1, 6))
def test_gamma_beta_scale_and_shift(backend, seed, n, d):
    x = _x(seed, (n, d))
    rng = np.random.default_rng(seed)
    g, b = rng.standard_normal(d), rng.standard_normal(d)
    plain, _ = L.batchnorm_forward(x, np.ones(d), np.zeros(d), {"mode": "train"})
    out, _ = L.batchnorm_forward(x, g, b, {"mode": "train"})
    np.testing.assert_allclose(out, plain * g + b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("n", [16, 512])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layer", ["batchnorm", "spatial", "layernorm", "groupnorm"])
def test_large_offset_float32_normalises_to_unit_variance(backend, dtype, layer, n):
    """1e4 + 0.1 * noise: E[x^2] - E[x]^2 would lose every digit in float32."""
    rng = np.random.default_rng(0)
    if layer in ("batchnorm", "layernorm"):
        x = (1e4 + 0.1 * rng.standard_normal((n, 64))).astype(dtype)
    else:
        x = (1e4 + 0.1 * rng.standard_normal((n // 8, 8, 12, 12))).astype(dtype)
    C = x.shape[1]
    g, b = np.ones(C, dtype), np.zeros(C, dtype)
    if layer == "batchnorm":
        out, _ = L.batchnorm_forward(x, g, b, {"mode": "train"})
        axes = 0
    elif layer == "spatial":
        out, _ = L.spatial_batchnorm_forward(x, g, b, {"mode": "train"})
        axes = (0, 2, 3)
    elif layer == "layernorm":
        out, _ = L.layernorm_forward(x, g, b, {})
        axes = 1
    else:
        out, _ = L.spatial_groupnorm_forward(x, g, b, 2, {})
        out, axes = out.reshape(x.shape[0], 2, -1), 2
    var = out.astype(np.float64).var(axis=axes)
    # var / (var + eps) = 0.01 / (0.01 + 1e-5) = 0.999 for the population; a batch of 16 has
    # its own variance, so compare with the float64 computation on the same values
    x64 = x.astype(np.float64)
    ax_x = {"batchnorm": 0, "layernorm": 1}.get(layer)
    if ax_x is not None:
        expected = x64.var(axis=ax_x) / (x64.var(axis=ax_x) + 1e-5)
    else:
        expected = 0.999
    np.testing.assert_allclose(var, expected, rtol=0.01)
    assert np.abs(out.astype(np.float64).mean(axis=axes)).max() < 0.01


def test_test_mode_matches_train_mode_under_a_large_offset(backend):
    """Test mode with the batch's own statistics reproduces train mode, in float32 too."""
    rng = np.random.default_rng(0)
    x = (1e4 + 0.1 * rng.standard_normal((256, 8))).astype(np.float32)
    g, b = np.ones(8, np.float32), np.zeros(8, np.float32)
    # running stats := this batch's, kept in float64 (a float32 running mean near 1e4 is itself
    # rounded by 5e-4, i.e. 0.005 standard deviations here)
    bn_param = {
        "mode": "train",
        "momentum": 0.0,
        "running_mean": np.zeros(8),
        "running_var": np.zeros(8),
    }
    train_out, _ = L.batchnorm_forward(x, g, b, bn_param)
    bn_param["mode"] = "test"
    test_out, _ = L.batchnorm_forward(x, g, b, bn_param)
    np.testing.assert_allclose(test_out, train_out, atol=1e-4)
    assert abs(test_out.astype(np.float64).mean()) < 1e-4


def test_constant_features_give_finite_output(backend):
    x = np.full((8, 3), 7.0)
    for out, _ in [
        L.batchnorm_forward(x, np.ones(3), np.zeros(3), {"mode": "train"}),
        L.layernorm_forward(x, np.ones(3), np.zeros(3), {}),
        L.spatial_groupnorm_forward(x.reshape(2, 4, 3, 1), np.ones(4), np.zeros(4), 2, {}),
        L.spatial_batchnorm_forward(
            x.reshape(2, 4, 3, 1), np.ones(4), np.zeros(4), {"mode": "train"}
        ),
    ]:
        assert np.all(np.isfinite(out)) and np.allclose(out, 0)


def test_running_stats_updated_in_place_with_documented_momentum(backend):
    rng = np.random.default_rng(0)
    rm, rv = np.full(3, 1.0), np.full(3, 2.0)
    bn_param = {"mode": "train", "momentum": 0.75, "running_mean": rm, "running_var": rv}
    x = rng.standard_normal((10, 3))
    L.batchnorm_forward(x, np.ones(3), np.zeros(3), bn_param)
    assert bn_param["running_mean"] is rm  # the same array, updated in place
    np.testing.assert_allclose(rm, 0.75 * 1.0 + 0.25 * x.mean(0))
    np.testing.assert_allclose(rv, 0.75 * 2.0 + 0.25 * x.var(0))
    fresh = {"mode": "train", "running_var_unbiased": True}
    L.batchnorm_forward(x, np.ones(3), np.zeros(3), fresh)
    np.testing.assert_allclose(fresh["running_mean"], 0.1 * x.mean(0))
    np.testing.assert_allclose(fresh["running_var"], 0.1 * x.var(0, ddof=1))


@pytest.mark.parametrize("layer", ["batchnorm", "spatial", "layernorm", "groupnorm"])
def test_float32_kernels_match_float64_math_on_hard_inputs(monkeypatch, layer):
    """Offset 1e4, spread 0.1, and outliers of 1e3 standard deviations (the first row and
    scattered ones): the float32 kernels' statistics (float32 blocks, float64 totals) and
    outputs match the same math done in float64 to float32 rounding."""
    monkeypatch.setenv("NORMLAB_BACKEND", "numba")
    rng = np.random.default_rng(7)
    shape = {"batchnorm": (67, 300), "layernorm": (67, 300)}.get(layer, (13, 6, 7, 9))
    x64 = 1e4 + 0.1 * rng.standard_normal(shape)
    x64[0] += 100.0  # 1e3 standard deviations, in the first row (the first block's)
    x64.reshape(-1)[rng.choice(x64.size, 25, replace=False)] -= 100.0
    x = x64.astype(np.float32)
    x64 = x.astype(np.float64)  # the values the kernels see
    dy = rng.standard_normal(shape).astype(np.float32)
    C = shape[1]
    g = (1 + 0.1 * rng.standard_normal(C)).astype(np.float32)
    b = rng.standard_normal(C).astype(np.float32)
    fwd, bwd, extra = layer_calls(layer)
    out, cache = fwd(x, g, b, *extra)
    dx, dg, db = bwd(dy, cache)
    monkeypatch.setenv("NORMLAB_BACKEND", "numpy")  # the float64 reference on float64 input
    ref_out, ref_cache = fwd(x64, g.astype(np.float64), b.astype(np.float64), *extra)
    ref = (ref_out, *bwd(dy.astype(np.float64), ref_cache))
    np.testing.assert_allclose(cache.mean, ref_cache.mean, rtol=1e-12)
    np.testing.assert_allclose(cache.var, ref_cache.var, rtol=1e-5)
    for got, want in zip((out, dx, dg, db), ref, strict=True):
        scale = np.abs(want).max()
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * scale)


@pytest.mark.parametrize("scale", [1e20, 3e35])
@pytest.mark.parametrize("layer", ["batchnorm", "spatial", "layernorm", "groupnorm"])
def test_float32_kernels_survive_values_whose_squares_overflow(monkeypatch, layer, scale):
    """float32 blocks whose sums of squares overflow are redone in float64 (not inf/0)."""
    monkeypatch.setenv("NORMLAB_BACKEND", "numba")
    rng = np.random.default_rng(3)
    shape = {"batchnorm": (40, 300), "layernorm": (5, 300)}.get(layer, (4, 6, 9, 9))
    x = (scale * rng.standard_normal(shape)).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    g, b = np.ones(shape[1], np.float32), np.zeros(shape[1], np.float32)
    fwd, bwd, extra = layer_calls(layer)
    if layer in ("batchnorm", "spatial"):  # float32 running statistics would overflow and are
        C = shape[1]  # refused (tests/test_float32_range.py): keep them in float64 here
        extra[0].update(running_mean=np.zeros(C), running_var=np.zeros(C))
    out, cache = fwd(x, g, b, *extra)
    _, dg, db = bwd(dy, cache)
    monkeypatch.setenv("NORMLAB_BACKEND", "numpy")
    fwd, bwd, extra = layer_calls(layer)
    ref_out, ref = fwd(x.astype(np.float64), g.astype(np.float64), b.astype(np.float64), *extra)
    _, ref_dg, _ = bwd(dy.astype(np.float64), ref)
    assert np.isfinite(cache.var).all()
    np.testing.assert_allclose(cache.var, ref.var, rtol=1e-6)
    np.testing.assert_allclose(out, ref_out, rtol=0, atol=1e-5)
    np.testing.assert_allclose(dg, ref_dg, rtol=0, atol=1e-5 * np.abs(ref_dg).max())


def _sampled_far_from_mean(rng):
    """1e4 + 0.1 * noise (16384, 8) with the 32 rows batch norm's one-pass statistics sample
    for the columns' shift (every 512th) moved 100 up: the sample mean is ~10 standard
    deviations off the mean, where the shifted sums alone would lose the variance's last
    digits."""
    x = 1e4 + 0.1 * rng.standard_normal((16384, 8))
    x[: 32 * 512 : 512] += 100.0
    return x


@pytest.mark.parametrize("layer", ["batchnorm", "spatial", "layernorm", "groupnorm"])
def test_statistics_match_float64_math_on_a_large_offset(monkeypatch, layer):
    """1e4 + 0.1 * noise in float32 (for batch norm with the rows its one-pass statistics
    sample ten standard deviations off, so that their redo must run): the kernels' statistics
    and outputs match float64 math."""
    rng = np.random.default_rng(11)
    if layer == "batchnorm":
        x = _sampled_far_from_mean(rng).astype(np.float32)
    else:
        shape = {"layernorm": (3, 8192), "spatial": (8, 3, 32, 32)}.get(layer, (2, 6, 64, 64))
        x = (1e4 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
    monkeypatch.setenv("NORMLAB_BACKEND", "numba")
    C = x.shape[1]
    g = (1 + 0.1 * rng.standard_normal(C)).astype(np.float32)
    b = rng.standard_normal(C).astype(np.float32)
    fwd, _, extra = layer_calls(layer)
    out, cache = fwd(x, g, b, *extra)
    monkeypatch.setenv("NORMLAB_BACKEND", "numpy")
    fwd, _, extra = layer_calls(layer)
    ref_out, ref = fwd(x.astype(np.float64), g.astype(np.float64), b.astype(np.float64), *extra)
    np.testing.assert_allclose(cache.mean, ref.mean, rtol=1e-12)
    # the shifted sums alone are off by ~5e-6 here; the corrected two-pass by ~1e-7
    np.testing.assert_allclose(cache.var, ref.var, rtol=1e-6)
    np.testing.assert_allclose(out, ref_out, rtol=0, atol=2e-5 * np.abs(ref_out).max())


def test_one_pass_column_statistics_are_refused_when_their_sample_misleads():
    """Batch norm's one-pass column statistics shift by a sample's mean; the test that accepts
    them refuses the shift of :func:`_sampled_far_from_mean` and accepts a plain column."""
    import numba

    from normlab.kernels._blocks import _cols_sample_mean, _shifted_stats

    @numba.njit
    def accepted(x):
        N, D = x.shape
        m0 = np.empty(D, x.dtype)
        _cols_sample_mean(x, m0)
        ok = np.empty(D, np.bool_)
        for j in range(D):
            d = x[:, j].astype(np.float64) - np.float64(m0[j])
            ok[j] = _shifted_stats(m0[j], d.sum(), (d * d).sum(), N)[0]
        return ok

    rng = np.random.default_rng(11)
    assert not accepted(_sampled_far_from_mean(rng).astype(np.float32)).any()
    plain = (1e4 + 0.1 * rng.standard_normal((16384, 8))).astype(np.float32)
    assert accepted(plain).all()


@pytest.mark.parametrize("layer", ["batchnorm", "spatial", "layernorm", "groupnorm"])
def test_kernels_give_the_same_bits_on_one_thread_and_on_two(monkeypatch, layer):
    """The multi-threaded kernels split their reductions into a fixed number of chunks, not
    one per thread, so a sweep gives the same numbers for ``--jobs 1`` (all threads) and
    ``--jobs 2`` (one thread per worker)."""
    import numba

    from normlab.kernels import norm as kern

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two numba threads")
    monkeypatch.setattr(kern, "PARALLEL_MIN", 1)  # the parallel kernels at a test's size
    monkeypatch.setenv("NORMLAB_BACKEND", "numba")
    rng = np.random.default_rng(5)
    shape = {"batchnorm": (301, 70), "layernorm": (301, 70), "groupnorm": (9, 12, 30, 31)}
    shape = shape.get(layer, (9, 8, 30, 31))
    x = (3 + rng.standard_normal(shape)).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    g, b = rng.standard_normal(shape[1]).astype(np.float32), np.zeros(shape[1], np.float32)
    fwd, bwd, extra = layer_calls(layer)
    threads = numba.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            numba.set_num_threads(n)
            out, cache = fwd(x, g, b, *extra)
            results.append((out, cache.mean, cache.var, *bwd(dy, cache)))
    finally:
        numba.set_num_threads(threads)
    for one, two in zip(*results, strict=True):
        np.testing.assert_array_equal(one, two)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the reference's inf - inf
@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("layer", ["batchnorm", "spatial", "layernorm", "groupnorm"])
def test_kernels_propagate_nan_and_inf_like_the_reference(monkeypatch, layer, bad):
    """One NaN (or inf) value: the kernels' fallbacks must not hide it nor spread it further
    than the NumPy reference does (its channel, row or group, and the sums it enters)."""
    rng = np.random.default_rng(2)
    shape = {"batchnorm": (40, 9), "layernorm": (40, 9)}.get(layer, (5, 6, 7, 7))
    x = (5 + rng.standard_normal(shape)).astype(np.float32)
    x.reshape(-1)[17] = bad
    dy = rng.standard_normal(shape).astype(np.float32)
    g, b = np.ones(shape[1], np.float32), np.zeros(shape[1], np.float32)
    from normlab.layers.norm_core import BATCH, GROUP, norm_backward, norm_forward

    # the core the four layers share, below their refusal of non-finite statistics
    kind, groups = {"batchnorm": (BATCH, 1), "spatial": (BATCH, 1), "layernorm": (GROUP, 1)}.get(
        layer, (GROUP, 3)
    )
    results = {}
    for backend in ("numba", "numpy"):
        monkeypatch.setenv("NORMLAB_BACKEND", backend)
        out, cache = norm_forward(x, g, b, kind, 1e-5, groups=groups)
        results[backend] = (out, cache.mean, cache.var, *norm_backward(dy, cache))
    assert np.isfinite(results["numpy"][0]).mean() > 0.5  # the output is mostly unharmed
    for got, want in zip(results["numba"], results["numpy"], strict=True):
        np.testing.assert_array_equal(np.isfinite(got), np.isfinite(want))
        ok = np.isfinite(want)
        np.testing.assert_allclose(got[ok], want[ok], rtol=2e-5, atol=2e-5)


def test_one_pass_statistics_accept_constant_columns():
    """A constant float32 column (a dead unit) is not refused by batch norm's one-pass
    statistics: its sample mean is summed in float64, so it is the value itself and the shifted
    sums are exactly zero."""
    import numba

    from normlab.kernels._blocks import _cols_sample_mean

    @numba.njit
    def col_shift(x):
        m0 = np.empty(x.shape[1], x.dtype)
        _cols_sample_mean(x, m0)
        return m0

    for value in (-0.4242, 0.1, 1e4 + 0.3, 3e-39):  # rounding-prone, offset, subnormal
        cols = np.full((100, 3), value, np.float32)
        np.testing.assert_array_equal(col_shift(cols), cols[0])
