"""The statistics a :class:`~normlab.diagnostics.Recorder` takes of one array, each one pass.

Every function reads its array and keeps nothing of it: no copies of whole activations outlive
a call. Means and variances are accumulated in float64 whatever the array's dtype.
"""

from __future__ import annotations

import math

import numpy as np

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
        (list of 5 floats: ``np.percentile(x, PERCENTILES)``, linear interpolation);
        ``hist`` (list of :data:`HIST_BINS` ints: ``np.histogram(x, HIST_EDGES)``, bin ``i``
        holding ``HIST_EDGES[i] <= x < HIST_EDGES[i + 1]``, the last bin closed, compared in
        float64); ``under``, ``over`` (ints: elements ``< -6`` and ``> 6``, infinities
        included). A NaN makes mean, std and percentiles NaN and is counted in no bin
        (``x.size - sum(hist) - under - over`` NaNs).

    Notes
    -----
    One sort of a float64 copy gives the percentiles and, by one binary search of the edges,
    the whole histogram; mean and std are two passes over it: about 6x cheaper than
    ``np.percentile``, ``np.histogram`` and ``ndarray.std`` on a (100, 100) float32 array.
    """
    with np.errstate(all="ignore"):  # inf or NaN activations give NaN statistics, no warning
        return _distribution(x)


def _distribution(x: np.ndarray) -> dict:
    """:func:`distribution`, under the caller's ``np.errstate``."""
    s = np.sort(x, axis=None).astype(np.float64, copy=False)  # (n,) NaNs last
    n = s.size
    # elements < each edge; <= 6 (< the next float64 after 6); not NaN (< NaN, sorted last)
    below = np.searchsorted(s, _SEARCH)  # (63,)
    lo, top, not_nan = below[:-2], below[-2], below[-1]
    counts = np.diff(lo)  # (60,) bin i: [e_i, e_i+1)
    counts[-1] += top - lo[-1]  # the last bin is closed: it takes x == 6
    # percentiles, np.percentile's default 'linear' method: s[k] + (s[k+1] - s[k]) * frac
    if not_nan < n:
        pct = [math.nan] * len(PERCENTILES)
    else:
        at = _QUANTILES * (n - 1)  # (5,) virtual indices
        k = np.floor(at).astype(np.intp)
        a, b = s[k], s[np.minimum(k + 1, n - 1)]
        pct = (a + (b - a) * (at - k)).tolist()
    mean = s.sum() / n  # float64 (pairwise summation)
    d = s - mean  # (n,)
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


def param_ratios(grad: np.ndarray, before: np.ndarray, after: np.ndarray, sizes) -> dict:
    """Gradient std, grad:data and update:data ratios of K parameters laid end to end.

    Parameters
    ----------
    grad : ndarray of shape (P,)
        The step's gradients of the K parameters, raveled and concatenated.
    before, after : ndarray of shape (P,)
        The parameters before and after the optimizer step, laid out as ``grad``.
    sizes : sequence of K ints
        The parameters' sizes (``sum(sizes) == P``).

    Returns
    -------
    ratios : dict of str to ndarray of shape (K,)
        ``grad_std`` = std(grad); ``grad_data`` = std(grad) / std(before); ``update_data`` =
        log10(std(after - before) / std(before)), per parameter (stds float64, ``ddof=0``;
        the difference taken in the parameters' dtype). A parameter of std 0 (biases, gammas
        at init) gives inf or NaN ratios; no update gives -inf.
    """
    sizes = np.asarray(sizes, dtype=np.intp)  # (K,)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])  # (K,)
    with np.errstate(all="ignore"):  # x / 0 is inf or NaN, not an error
        data = _segment_std(before, starts, sizes)
        g = _segment_std(grad, starts, sizes)
        u = _segment_std(after - before, starts, sizes)
        return {"grad_std": g, "grad_data": g / data, "update_data": np.log10(u / data)}


def _segment_std(x: np.ndarray, starts: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Std (float64, two passes, ``ddof=0``) of each segment ``x[start:start + size]``: (K,).

    One pass over all parameters instead of one ``ndarray.std`` each (whose overhead is most
    of the cost for a bias): ~4x cheaper for the 22 parameters of a [100] * 5 MLP.
    """
    x = x.astype(np.float64)  # (P,)
    mean = np.add.reduceat(x, starts) / sizes  # (K,)
    x -= np.repeat(mean, sizes)
    return np.sqrt(np.add.reduceat(x * x, starts) / sizes)
