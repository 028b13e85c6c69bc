"""The statistics a :class:`~normlab.diagnostics.Recorder` takes of one array, each one pass.

Every function reads its array and keeps nothing of it: no copies of whole activations outlive
a call. Means and variances are accumulated in float64 whatever the array's dtype.
"""

from __future__ import annotations

import math

import numpy as np

from normlab.kernels import get_backend
from normlab.kernels import stats as kern
from normlab.layers import ACTIVATIONS

PERCENTILES = (1, 15, 50, 85, 99)  # the percentiles of every distribution, in percent
_QUANTILES = np.array(PERCENTILES, dtype=np.float64) / 100  # (5,)
# Fixed histogram bins, chosen once so that histograms of any layer, iteration and run can be
# compared bin by bin: 60 bins of width 0.2 over [-6, 6] (61 edges). A normalized
# pre-activation is ~N(0, 1); both saturation thresholds lie inside (tanh |t| > 0.97 beyond
# |x| > 2.09, sigmoid outside [0.03, 0.97] beyond |x| > 3.48); what falls outside is counted.
HIST_RANGE = (-6.0, 6.0)
HIST_BINS = 60
HIST_EDGES = np.linspace(*HIST_RANGE, HIST_BINS + 1)  # (61,)
# what distribution() looks up in a sorted array: the edges, the float after 6, NaN
_SEARCH = np.array([*HIST_EDGES, np.nextafter(HIST_RANGE[1], np.inf), np.nan])  # (63,)
# the same for a float32 array, each bound rounded up to a float32: for a float32 v,
# v < e (compared in float64) exactly when v < the smallest float32 >= e
_SEARCH32 = _SEARCH.astype(np.float32)  # (63,)
_SEARCH32 = np.where(_SEARCH32 < _SEARCH, np.nextafter(_SEARCH32, np.float32(np.inf)), _SEARCH32)
# The 62 buckets of a histogram with its tails, as the distribution kernel and the gradient
# histograms count them: below -6 (0), the 60 bins (1..60, the last closed), above 6 (61).
# _BUCKET_LO[b] is bucket b's lower bound and _BUCKET_LO[b + 1] its upper one (6 itself falls in
# bin 60: the bound above it is the next float after 6). A value's coordinate
# (x + _SHIFT) * _SCALE + 1 = (x + 6) * 5 + 1 lies in [b, b + 1), up to a rounding at the bounds,
# which sit within 1e-14 of the integers 1..61 (checked here); the counters correct it.
_BUCKETS = HIST_BINS + 2
_BUCKET_LO = np.array([-np.inf, *HIST_EDGES[:-1], np.nextafter(HIST_RANGE[1], np.inf), np.inf])
_SHIFT, _SCALE = -HIST_RANGE[0], HIST_BINS / (HIST_RANGE[1] - HIST_RANGE[0])
assert np.all(abs((_BUCKET_LO[1:-1] + _SHIFT) * _SCALE + 1 - np.arange(1, _BUCKETS)) < 1e-12)
# The kernel's (normlab/kernels/stats.py) bounds, (62,) each: bucket b holds
# _KERNEL_LO[b] <= x < _KERNEL_HI[b]; NaN above the last, which no value reaches, so +inf stays in
# the last bucket.
_KERNEL_LO = _BUCKET_LO[:-1]
_KERNEL_HI = np.append(_BUCKET_LO[1:-1], np.nan)
# Saturation of the post-activation t, per activation (Karpathy, makemore part 3).
SATURATION = {
    "tanh": "fraction of units with |t| > 0.97",
    "sigmoid": "fraction of units with t < 0.03 or t > 0.97",
    "relu": "fraction of ReLU outputs that are 0 (about half is usual; near 1: dying ReLUs)",
}
_ACTIVATION_NAMES = {fns[0]: name for name, fns in ACTIVATIONS.items()}  # forward -> name


def activation_name(act) -> str | None:
    """The name of a block's ``act`` pair in :data:`normlab.layers.ACTIVATIONS` (None: none)."""
    return None if act is None else _ACTIVATION_NAMES.get(act[0], "unknown")


def distribution(x: np.ndarray) -> dict:
    """Mean, std, percentiles and fixed-bin histogram of every element of ``x``.

    Parameters
    ----------
    x : ndarray of any shape
        E.g. a layer's linear output, (N, M) or (N, F, H, W).

    Returns
    -------
    stats : dict
        ``mean``, ``std`` (float, over all elements, float64, ``ddof=0``); ``percentiles``
        (list of 5 floats, :data:`PERCENTILES` by ``np.percentile``'s 'linear' method,
        computed as ``s[k] + (s[k + 1] - s[k]) * frac`` on the sorted ``s``: ``np.percentile``
        itself may differ by a rounding, as it interpolates from ``s[k + 1]`` where
        ``frac >= 0.5``);
        ``hist`` (list of :data:`HIST_BINS` ints: ``np.histogram(x, HIST_EDGES)``, bin ``i``
        holding ``HIST_EDGES[i] <= x < HIST_EDGES[i + 1]``, the last bin closed, compared in
        float64); ``under``, ``over`` (ints: elements ``< -6`` and ``> 6``, infinities
        included). A NaN makes mean, std and percentiles NaN and is counted in no bin
        (``x.size - sum(hist) - under - over`` NaNs).

    Raises
    ------
    ValueError
        If ``x`` has no elements.

    Notes
    -----
    Computed by a numba kernel (:mod:`normlab.kernels.stats`) unless ``NORMLAB_BACKEND=numpy``,
    which runs the readable NumPy reference, ``_distribution``: one sort gives the percentiles
    and, by one binary search of the edges, the whole histogram; mean and std are two passes
    over it. The kernel sorts nothing: it counts every element into fine buckets of the
    histogram's bins, then selects among the elements of the few buckets that hold the
    percentiles (about 100 of 10^4 for a normalized activation). Its counts and percentiles are
    the reference's bit for bit; mean and std agree to rounding (its sums run in another
    order). A float32 array is read as it is, each element compared in float64; other dtypes
    (integers, float16) are converted to float64, as the reference does.

    Cost on a (100, 100) float32 array of N(0, 1) values, one thread: ~31 us, against ~90 us for
    the reference (its ``np.sort`` ~45 us) and ~360 us for ``np.percentile``, ``np.histogram``
    and ``ndarray.std``. It depends on the data: with most values beyond +-6 (std 100) the
    kernel selects among half the array, ~85 us. A Recorder's record of a [100] * 5 batch-norm
    MLP calls it 11 times: ~0.34 ms instead of ~0.98 ms.
    """
    x = np.asarray(x)
    if x.size == 0:
        raise ValueError(
            f"distribution: expected an array with at least one element, got shape {x.shape}"
        )
    if get_backend() == "numpy":  # the reference
        with np.errstate(all="ignore"):  # inf or NaN activations give NaN statistics, no warning
            return _distribution(x)
    flat = np.ravel(x)  # (n,) a copy only where x is not contiguous
    if flat.dtype != np.float32 and flat.dtype != np.float64:
        flat = flat.astype(np.float64)
    counts, pct, mean, std, _ = kern.distribution(
        flat, _KERNEL_LO, _KERNEL_HI, _SHIFT, _SCALE, _QUANTILES
    )
    return {
        "mean": float(mean),
        "std": float(std),
        "percentiles": pct.tolist(),
        "hist": counts[1:-1].tolist(),
        "under": int(counts[0]),
        "over": int(counts[-1]),
    }


def _distribution(x: np.ndarray) -> dict:
    """:func:`distribution` in NumPy (the reference), under the caller's ``np.errstate``."""
    s = np.sort(x, axis=None)  # (n,) NaNs last
    if s.dtype != np.float32:
        s = s.astype(np.float64, copy=False)
    n = s.size
    # elements < each edge; <= 6 (< the next float after 6); not NaN (< NaN, sorted last)
    below = np.searchsorted(s, _SEARCH32 if s.dtype == np.float32 else _SEARCH)  # (63,)
    lo, top, not_nan = below[:-2], below[-2], below[-1]
    counts = np.diff(lo)  # (60,) bin i: [e_i, e_i+1)
    counts[-1] += top - lo[-1]  # the last bin is closed: it takes x == 6
    # percentiles, np.percentile's default 'linear' method: s[k] + (s[k+1] - s[k]) * frac
    if not_nan < n:
        pct = [math.nan] * len(PERCENTILES)
    else:
        at = _QUANTILES * (n - 1)  # (5,) virtual indices
        k = np.floor(at).astype(np.intp)
        a, b = s[k].astype(np.float64), s[np.minimum(k + 1, n - 1)].astype(np.float64)
        pct = (a + (b - a) * (at - k)).tolist()
    mean = s.sum(dtype=np.float64) / n  # float64 (pairwise summation)
    d = s - mean  # (n,) float64
    return {
        "mean": float(mean),
        "std": float(np.sqrt(np.dot(d, d) / n)),
        "percentiles": pct,
        "hist": counts.tolist(),
        "under": int(lo[0]),
        "over": int(not_nan - top),
    }


def saturation(name: str | None, t: np.ndarray) -> float | None:
    """The saturated fraction of post-activation ``t`` (any shape) for activation ``name``
    (:data:`SATURATION`); None for no or an unknown activation."""
    if name == "tanh":
        return float(np.count_nonzero(np.abs(t) > 0.97) / t.size)
    if name == "sigmoid":
        return float(np.count_nonzero((t < 0.03) | (t > 0.97)) / t.size)
    if name == "relu":
        return float(np.count_nonzero(t == 0) / t.size)
    return None


def channel_moments(x: np.ndarray) -> tuple[float, float]:
    """Brock et al. 2021's signal-propagation pair of ``x``: the mean over channels of the
    squared channel mean, and the mean over channels of the channel variance (``ddof=0``).

    A channel is a column of (N, D) (statistics over N) or a plane of (N, C, H, W) (statistics
    over N, H, W).
    """
    axes = (0,) if x.ndim == 2 else (0, *range(2, x.ndim))
    with np.errstate(all="ignore"):
        m = x.mean(axis=axes, dtype=np.float64)  # (C,)
        v = x.var(axis=axes, dtype=np.float64)  # (C,)
        return float(np.mean(m * m)), float(np.mean(v))


# Gradient histograms: bins in units of each gradient's own std, the edges of HIST_EDGES (60 bins
# of 0.2 std over [-6 std, 6 std]), counted in the buckets of _BUCKET_LO (of g / std).


def param_ratios(
    grad: np.ndarray, before: np.ndarray, after: np.ndarray, sizes, hist: bool = True
) -> dict:
    """Gradient statistics, grad:data and update:data ratios of K parameters laid end to end.

    Parameters
    ----------
    grad : ndarray of shape (P,)
        The step's gradients of the K parameters, raveled and concatenated.
    before, after : ndarray of shape (P,)
        The parameters before and after the optimizer step, laid out as ``grad``.
    sizes : sequence of K ints
        The parameters' sizes (``sum(sizes) == P``).
    hist : bool, default True
        Whether to take the gradient histograms (``grad_hist`` None otherwise).

    Returns
    -------
    ratios : dict of str to ndarray
        Per parameter, (K,): ``grad_mean`` = mean(grad), ``grad_std`` = std(grad),
        ``grad_data`` = std(grad) / std(before) and ``update_data`` = log10(std(after -
        before) / std(before)) (float64, ``ddof=0``; the difference taken in the parameters'
        dtype). A parameter of std 0 (biases, gammas at init) gives inf or NaN ratios; no
        update gives -inf. And ``grad_hist``, (K, 62) int64: per parameter the counts of
        ``z = grad / std(grad)`` (float64) below -6 (column 0), in the 60 bins of
        :data:`HIST_EDGES` (columns 1..60, ``np.histogram(z, HIST_EDGES)``) and above 6
        (column 61): a gradient histogram on edges ``HIST_EDGES * std(grad)``; a row of -1 for
        a gradient of std 0 or non-finite.

    Notes
    -----
    Why bins in units of each gradient's own std: gradient scales differ by orders of
    magnitude between layers and networks (a saturated tanh net's first layers get gradients
    1e-6 of its last layer's; a normalized net's are far larger than a badly initialized
    one's), so fixed bins would put a whole histogram into one bin and a fixed range would
    cut most of another's; a symmetric log scale would keep every scale but distort the
    shape around zero, where most of a gradient's mass is. Standardized bins show every
    histogram's shape at the same resolution (and its tails beyond 6 std as counts), and its
    scale is the recorded ``grad_std``: a figure draws it on ``HIST_EDGES * grad_std``.

    The buckets come from one vectorized pass over all parameters (float arithmetic, then a
    correction against the bucket bounds so that values at an edge land where
    ``np.histogram`` puts them): no sort, about a tenth of ``np.histogram`` per parameter.
    """
    sizes = np.asarray(sizes, dtype=np.intp)  # (K,)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])  # (K,)
    with np.errstate(all="ignore"):  # x / 0 is inf or NaN, not an error
        data = _segment_std(before, starts, sizes)[1]
        g_mean, g = _segment_std(grad, starts, sizes)
        u = _segment_std(after - before, starts, sizes)[1]
        return {
            "grad_mean": g_mean,
            "grad_std": g,
            "grad_data": g / data,
            "update_data": np.log10(u / data),
            "grad_hist": _grad_buckets(grad.astype(np.float64), g, sizes) if hist else None,
        }


def _segment_std(
    x: np.ndarray, starts: np.ndarray, sizes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (float64, two passes, ``ddof=0``) of each segment ``x[start:start + size]``
    of ``x`` (P,), any float dtype: two (K,) arrays. Summed in float64 from ``x`` as it is (no
    float64 copy of a float32 ``x``: the same numbers, one pass fewer).

    One pass over all parameters instead of one ``ndarray.std`` each (whose overhead is most
    of the cost for a bias): ~4x cheaper for the 22 parameters of a [100] * 5 MLP.
    """
    mean = np.add.reduceat(x, starts, dtype=np.float64) / sizes  # (K,)
    d = x - np.repeat(mean, sizes)  # (P,) float64
    np.multiply(d, d, out=d)
    return mean, np.sqrt(np.add.reduceat(d, starts) / sizes)


def _grad_buckets(g: np.ndarray, std: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """(K, 62) counts of ``g / std`` per segment in the buckets of ``_BUCKET_LO``; rows of -1
    where the std is 0 or not finite (see :func:`param_ratios`)."""
    k = len(sizes)
    ok = np.isfinite(std) & (std > 0)  # (K,) a finite std: every element finite
    z = g / np.repeat(np.where(ok, std, 1.0), sizes)  # (P,) float64
    if not ok.all():  # NaN or inf in a segment: its row is dropped, its z must not stray
        z = np.where(np.repeat(ok, sizes), z, 0.0)
    f = (z + _SHIFT) * _SCALE + 1.0  # bucket
    np.clip(f, 0.0, _BUCKETS - 1.0, out=f)
    b = f.astype(np.intp)  # (P,) the bucket, maybe one off where rounding crossed an edge
    b -= z < _BUCKET_LO[b]
    b += z >= _BUCKET_LO[b + 1]
    b += np.repeat(np.arange(k) * _BUCKETS, sizes)
    counts = np.bincount(b, minlength=k * _BUCKETS).reshape(k, _BUCKETS)
    counts[~ok] = -1
    return counts
