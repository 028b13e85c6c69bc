"""The distribution kernel (normlab/kernels/stats.py) against its NumPy reference and NumPy.

``distribution`` runs the kernel unless ``NORMLAB_BACKEND=numpy``. The kernel must give the
reference's (``_distribution``) histogram, outer counts and percentiles bit for bit, and so
NumPy's own: ``np.histogram`` in float64, the order statistics that ``np.partition`` picks,
interpolated as the reference does (``np.percentile`` itself to a rounding: it interpolates
from the upper end where the fraction is >= 0.5). Mean and std are sums in another order: they
agree to 1e-12 of the size of their terms (``mean(|x|)``; for std, plus std itself).
"""

import numpy as np
import pytest

from normlab.diagnostics import stats
from normlab.diagnostics.stats import HIST_EDGES, PERCENTILES, _distribution, distribution

SHAPES = [(100, 100), (100, 10), (64, 32, 7, 7), (1,), (2,)]
DTYPES = [np.float32, np.float64]
EPS = np.finfo(np.float64).eps


def _neighbours(edges: np.ndarray) -> np.ndarray:
    """Each edge and the floats of its dtype just below and just above it."""
    return np.concatenate(
        [edges, np.nextafter(edges, edges.dtype.type(-np.inf)), np.nextafter(edges, np.inf)]
    )


def _edges_of(dtype) -> np.ndarray:
    """The histogram's edges as a ``dtype`` array may hold them, with their neighbours:
    float64 edges (-6, 0, 6 among them) and, for float32 too, the edges rounded to float32."""
    if dtype == np.float64:
        return np.concatenate([_neighbours(HIST_EDGES), HIST_EDGES.astype(np.float32)])
    return _neighbours(HIST_EDGES.astype(np.float32))


# data of a given shape: each case puts many values where a wrong kernel would differ
CASES = {
    "normal": lambda rng, shape, dt: rng.standard_normal(shape),
    "std100": lambda rng, shape, dt: 100 * rng.standard_normal(shape),  # mostly under / over
    "edges": lambda rng, shape, dt: np.where(
        rng.random(shape) < 0.5, rng.choice(_edges_of(dt), shape), rng.standard_normal(shape)
    ),
    "ties": lambda rng, shape, dt: np.round(2 * rng.standard_normal(shape)) / 2,  # on edges
    "constant": lambda rng, shape, dt: np.full(shape, 0.3),
    "zeros": lambda rng, shape, dt: rng.choice([0.0, -0.0], shape),  # dead ReLUs
    "wide": lambda rng, shape, dt: rng.choice([-1, 1], shape) * np.exp(8 * rng.random(shape)),
    "inf": lambda rng, shape, dt: np.where(
        rng.random(shape) < 0.05, rng.choice([-np.inf, np.inf], shape), rng.standard_normal(shape)
    ),
    "nan": lambda rng, shape, dt: np.where(
        np.arange(np.prod(shape)).reshape(shape) == 0, np.nan, rng.standard_normal(shape)
    ),
}


def _kernel(x, monkeypatch) -> dict:
    monkeypatch.setenv("NORMLAB_BACKEND", "numba")
    with np.errstate(all="raise"):  # the kernel path raises no NumPy warning either
        return distribution(x)


def _reference(x) -> dict:
    with np.errstate(all="ignore"):
        return _distribution(x)


def _bits(values) -> np.ndarray:
    """Float64 values as their bit patterns (NaN == NaN, -0.0 != 0.0)."""
    return np.asarray(values, dtype=np.float64).view(np.int64)


def _assert_sums(got: dict, mean: float, std: float, x64: np.ndarray) -> None:
    """Mean and std within 1e-12 of the size of the terms of their sums; equal if not finite."""
    scale = float(np.mean(np.abs(x64))) if np.all(np.isfinite(x64)) else np.inf
    for name, want, tol in [("mean", mean, 1e-12 * scale), ("std", std, 1e-12 * (scale + std))]:
        if np.isfinite(want) and np.isfinite(tol):
            assert abs(got[name] - want) <= tol, (name, got[name], want)
        else:
            assert _bits(got[name]) == _bits(want) or np.isnan(got[name]) & np.isnan(want), name


def _assert_like_reference(got: dict, want: dict, x64: np.ndarray) -> None:
    assert got["hist"] == want["hist"]
    assert (got["under"], got["over"]) == (want["under"], want["over"])
    np.testing.assert_array_equal(_bits(got["percentiles"]), _bits(want["percentiles"]))
    _assert_sums(got, want["mean"], want["std"], x64)


def _assert_like_numpy(got: dict, x64: np.ndarray) -> None:
    """Against NumPy's histogram, comparisons, order statistics and moments, in float64."""
    finite = x64[np.isfinite(x64)]
    assert got["hist"] == np.histogram(finite, bins=HIST_EDGES)[0].tolist()
    assert (got["under"], got["over"]) == (np.sum(x64 < -6), np.sum(x64 > 6))
    n = x64.size
    at = np.array(PERCENTILES) / 100 * (n - 1)  # (5,) virtual indices
    k = np.floor(at).astype(np.intp)
    if np.isnan(x64).any():
        want = np.full(len(PERCENTILES), np.nan)
    else:
        s = np.partition(x64, np.unique(np.concatenate([k, np.minimum(k + 1, n - 1)])))
        a, b = s[k], s[np.minimum(k + 1, n - 1)]  # (5,) the order statistics
        with np.errstate(invalid="ignore"):  # inf - inf
            want = a + (b - a) * (at - k)
        if finite.size == n:  # np.percentile: a rounding away where it interpolates from b
            tol = 4 * EPS * np.maximum(np.abs(a), np.abs(b))
            assert np.all(np.abs(got["percentiles"] - np.percentile(x64, PERCENTILES)) <= tol)
    np.testing.assert_array_equal(_bits(got["percentiles"]), _bits(want))
    with np.errstate(invalid="ignore"):
        _assert_sums(got, x64.mean(), x64.std(), x64)


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_kernel_matches_the_reference_and_numpy(monkeypatch, rng, dtype, shape, case):
    x = CASES[case](rng, shape, dtype).astype(dtype)
    x64 = x.astype(np.float64).ravel()  # (n,)
    got = _kernel(x, monkeypatch)
    _assert_like_reference(got, _reference(x), x64)
    _assert_like_numpy(got, x64)
    assert sum(got["hist"]) + got["under"] + got["over"] == np.count_nonzero(~np.isnan(x64))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_every_edge_and_its_neighbours(monkeypatch, dtype):
    """Each value a rounding away from a bound, alone in an array: one count in the right bin."""
    for v in _edges_of(dtype).astype(dtype):
        got = _kernel(np.array([v]), monkeypatch)
        x64 = np.array([v], dtype=np.float64)
        assert got["hist"] == np.histogram(x64, bins=HIST_EDGES)[0].tolist(), v
        assert (got["under"], got["over"]) == (int(v < -6), int(v > 6)), v
        assert _bits(got["percentiles"]).tolist() == _bits([v] * len(PERCENTILES)).tolist()


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_non_contiguous_views(monkeypatch, rng, dtype):
    x = rng.standard_normal((64, 32, 7, 7)).astype(dtype)
    x[0, 0, 0] = HIST_EDGES[:7]  # (7,)
    for view in [x[:, ::3], x.transpose(0, 2, 3, 1), x[::-1, :, 1], np.asfortranarray(x)]:
        got = _kernel(view, monkeypatch)
        _assert_like_reference(got, _reference(view), view.astype(np.float64).ravel())


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int8, np.uint8, np.bool_, np.float16])
def test_other_dtypes_are_read_as_float64(monkeypatch, rng, dtype):
    x = rng.integers(-10, 10, (100, 10)).astype(dtype)  # (100, 10) ties, values on edges
    got = _kernel(x, monkeypatch)
    x64 = x.astype(np.float64).ravel()
    _assert_like_reference(got, _reference(x), x64)
    _assert_like_numpy(got, x64)


def test_the_numpy_backend_runs_the_reference(monkeypatch, rng):
    calls = []

    def spy(x):
        calls.append("reference")
        return _distribution(x)

    def no_kernel(*args):
        raise AssertionError("the kernel ran under NORMLAB_BACKEND=numpy")

    x = rng.standard_normal((100, 10)).astype(np.float32)
    monkeypatch.setattr(stats, "_distribution", spy)
    monkeypatch.setattr(stats.kern, "distribution", no_kernel)
    monkeypatch.setenv("NORMLAB_BACKEND", "numpy")
    assert stats.distribution(x) == _distribution(x) and calls == ["reference"]
    monkeypatch.setenv("NORMLAB_BACKEND", "numba")
    with pytest.raises(AssertionError, match="the kernel ran"):
        stats.distribution(x)
    assert calls == ["reference"]


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_an_empty_array_is_a_value_error(monkeypatch, backend):
    monkeypatch.setenv("NORMLAB_BACKEND", backend)
    with pytest.raises(ValueError, match=r"at least one element, got shape \(0, 3\)"):
        distribution(np.zeros((0, 3), np.float32))
