"""Histogram, percentiles, mean and std of one array without sorting it.

The kernel behind :func:`normlab.diagnostics.stats.distribution`, which calls it unless
``NORMLAB_BACKEND=numpy``; the readable reference is ``normlab.diagnostics.stats._distribution``
(one sort, a binary search of the edges, two passes for mean and std), and this computes the
same numbers: the counts and percentiles bit for bit, mean and std to rounding.

The buckets. Bucket ``b`` of ``B`` holds ``lo[b] <= v < hi[b]``, compared in float64 (for the
diagnostics: below -6, the 60 bins of 0.2, above 6). Its *coordinate* ``g = (v + shift) *
scale + 1`` lies in ``[b, b + 1)`` up to rounding (``< 1e-13`` here, against ``CHECK``), and
``key = floor(FINE * clip(g, 0, B - 1))`` (``FINE`` keys per bucket) is nondecreasing in ``v``.

Passes over the array (n elements):

1. the keys (vectorised), flagged where ``g`` lies within ``CHECK`` of a bound or is NaN;
2. the count per key, and the float64 sum (four partial sums); a flagged element (a NaN, or a
   value on or next to an edge: rare) is compared with the bounds themselves, so the bucket
   counts are exact;
3. ``x - mean`` squared and summed (std, two-pass, ``ddof=0``), and the elements of the few
   buckets holding ``s[k]`` and ``s[k + 1]`` of the sorted ``s`` for each percentile (found
   from the cumulative key counts) gathered;

then, of those, the elements of the ranks' keys: about 100 for 10^4 normalized activations
(keys of width 0.2 / 64), sorted. Where they are many (a spread far beyond the edges puts half
of the array in each outer key; heavy ties) a histogram selection narrows them first:
``_narrow`` over all of them, then ``_order_pair`` per percentile, each level counting in equal
sub-buckets of the finite range and keeping the ranks' sub-buckets (sorting what a bounded
number of levels leaves). A percentile is ``s[k] + (s[k + 1] - s[k]) * frac`` in float64, the
reference's operations in its order (no fastmath: no FMA contraction).

Measured on a (100, 100) float32 N(0, 1) array, one thread: ~31 us against the reference's
~90 us (its ``np.sort`` alone ~45 us): pass 1 ~9 us, pass 2 ~6, pass 3 ~8, the rest ~8. With
std 100 (95% beyond the edges) ~85 us, the reference ~93 us.
"""

from __future__ import annotations

import numba as nb
import numpy as np

FINE = 64  # keys per bucket (a key: 0.2 / 64 of a normalized activation)
CHECK = 1e-9  # a coordinate closer than this to a bound is compared with the bound itself
_FLAG = np.uint16(0x8000)  # a key's bit: compare this element with the bounds (or a NaN)
_NAN_KEY = 4095  # a NaN's key; B * FINE <= _NAN_KEY
_SORT = 256  # gathered elements that are sorted as they are
_NARROW = 64  # sub-buckets of the level over all gathered elements (one bit each)
_SUB = 256  # sub-buckets of a selection level for one percentile
_SMALL = 64  # elements that selection for one percentile sorts
_LEVELS = 8  # selection levels before it sorts what is left (adversarial values)


@nb.njit(cache=True, nogil=True)
def distribution(x, lo, hi, shift, scale, q):
    """Bucket counts, percentiles, mean and std of ``x``.

    Parameters
    ----------
    x : ndarray of shape (n,), float32 or float64, contiguous, n >= 1
    lo, hi : ndarray of shape (B,), float64
        Bucket ``b`` holds ``lo[b] <= v < hi[b]``: ``lo[0] = -inf``, ``hi[b] = lo[b + 1]``,
        ``hi[B - 1] = NaN`` (no value is ``>=`` it: the last bucket takes +inf); B * FINE <=
        4095, and each bound ``lo[b]`` within ``CHECK / 1000`` of coordinate ``b``.
    shift, scale : float
        The coordinate ``(v + shift) * scale + 1``.
    q : ndarray of shape (m,), float64
        Quantiles in [0, 1].

    Returns
    -------
    counts : ndarray of shape (B,), int64
    percentiles : ndarray of shape (m,), float64
        np.percentile's 'linear' method; NaN if ``x`` holds a NaN.
    mean, std : float
        float64, ``ddof=0``; std NaN if ``x`` holds a NaN.
    nans : int
    """
    n = x.shape[0]
    nbk = lo.shape[0]
    top = np.float64(nbk - 1)
    key = np.empty(n, np.uint16)  # (n,)
    _keys(x, shift, scale, top, key)
    kc = np.zeros(_NAN_KEY + 1, np.int64)  # (4096,) elements per key
    counts = np.zeros(nbk, np.int64)  # (B,) the flagged elements' moves, then the counts
    mean = _count(x, lo, hi, key, kc, counts) / n
    block = np.zeros(nbk + 1, np.int64)  # (B + 1,) elements of the keys of buckets < b
    for b in range(nbk):
        s = kc[b * FINE : (b + 1) * FINE].sum()
        counts[b] += s
        block[b + 1] = block[b] + s
    m = q.shape[0]
    nans = kc[_NAN_KEY]
    if nans:
        return counts, np.full(m, np.nan), mean, np.nan, nans
    # the ranks k, k + 1 of each percentile in the sorted x (np.percentile's 'linear' method)
    at = np.empty(m)  # (m,) virtual indices
    rank = np.empty(2 * m, np.int64)  # (2m,)
    for j in range(m):
        at[j] = q[j] * (n - 1)
        rank[2 * j] = int(np.floor(at[j]))
        rank[2 * j + 1] = min(rank[2 * j] + 1, n - 1)
    need, mask, local, got = _locate(kc, block, rank)
    near, ss = _gather(x, key, mask, mean)  # (<= n,) the elements of the ranks' buckets
    ours = np.empty(got + 1)  # (got + 1,) those of the ranks' keys (+1: the others' writes)
    p = 0
    for i in range(near.shape[0]):
        v = near[i]
        ours[p] = v
        p += need[np.uint16(_coordinate(v, shift, scale, top)[1] * FINE)]
    ours = ours[:got]
    if got > _SORT:
        ours, local = _narrow(ours, local)
    pct = np.empty(m)
    if ours.shape[0] <= _SORT:
        ours.sort()
        for j in range(m):
            pct[j] = _lerp(ours[local[2 * j]], ours[local[2 * j + 1]], at[j] - rank[2 * j])
    else:
        work = np.empty((2, ours.shape[0]))
        for j in range(m):
            a, c = _order_pair(ours, local[2 * j], local[2 * j + 1], work)
            pct[j] = _lerp(a, c, at[j] - rank[2 * j])
    return counts, pct, mean, np.sqrt(ss / n), nans


@nb.njit(cache=True, nogil=True)
def _locate(kc, block, rank):
    """The keys holding the ranks ``rank`` (2m,) of the sorted x, from the key counts ``kc`` and
    their sums per bucket ``block``: a (4096,) table, 1 for those keys; their buckets as bits;
    each rank's index among the elements of those keys, taken in key order; their number."""
    need = np.zeros(_NAN_KEY + 1, np.uint8)  # (4096,)
    mask = np.uint64(0)
    rkey = np.empty_like(rank)  # (2m,) each rank's key
    local = np.empty_like(rank)  # (2m,) its index within its key, then among all those keys
    for j in range(rank.shape[0]):
        b = 0
        while block[b + 1] <= rank[j]:
            b += 1
        t = b * FINE
        below = block[b]
        while below + kc[t] <= rank[j]:
            below += kc[t]
            t += 1
        rkey[j] = t
        local[j] = rank[j] - below
        need[t] = 1
        mask |= np.uint64(1) << np.uint64(b)
    got = 0  # elements of the needed keys below key t, t ascending over them
    t = rkey.min()
    while t <= _NAN_KEY:
        nxt = _NAN_KEY + 1
        for j in range(rank.shape[0]):
            if rkey[j] == t:
                local[j] += got
            elif t < rkey[j] < nxt:
                nxt = rkey[j]
        got += kc[t]
        t = nxt
    return need, mask, local, got


@nb.njit(cache=True, nogil=True)
def _lerp(a, b, t):
    """np.percentile's linear interpolation as the reference writes it."""
    return a + (b - a) * t


@nb.njit(cache=True, nogil=True)
def _coordinate(v, shift, scale, top):
    """``g = (v + shift) * scale + 1`` and ``g`` clipped to ``[0, top]`` (NaN to 0)."""
    g = (v + shift) * scale + 1.0
    c = g if g > 0.0 else 0.0
    return g, (c if c < top else top)


@nb.njit(cache=True, nogil=True)
def _keys(x, shift, scale, top, key):
    """Pass 1: each element's key, flagged where a bound lies within ``CHECK`` of its
    coordinate (bounds sit at the integers 1..top; below 0.5 and above top + 0.5 the bucket is
    the first or last for sure) or where it is NaN."""
    for i in range(x.shape[0]):
        g, c = _coordinate(np.float64(x[i]), shift, scale, top)
        check = (abs(g - np.rint(g)) < CHECK) & (g > 0.5) & (g < top + 0.5) | (g != g)
        key[i] = np.uint16(c * FINE) | (_FLAG if check else np.uint16(0))


@nb.njit(cache=True, nogil=True)
def _count(x, lo, hi, key, kc, fix):
    """Pass 2: count the keys into ``kc``, settling the flagged ones (:func:`_settle`); the
    float64 sum of ``x``."""
    n = x.shape[0]
    body = n - n % 4
    s0 = s1 = s2 = s3 = 0.0  # four partial sums: the additions overlap
    for i in range(0, body, 4):
        s0 += np.float64(x[i])
        s1 += np.float64(x[i + 1])
        s2 += np.float64(x[i + 2])
        s3 += np.float64(x[i + 3])
        for u in range(i, i + 4):
            w = key[u]
            if w & _FLAG:
                w = key[u] = _settle(np.float64(x[u]), w, lo, hi, fix)
            kc[w] += 1
    for u in range(body, n):
        s0 += np.float64(x[u])
        w = key[u]
        if w & _FLAG:
            w = key[u] = _settle(np.float64(x[u]), w, lo, hi, fix)
        kc[w] += 1
    return (s0 + s1) + (s2 + s3)


@nb.njit(cache=True, nogil=True)
def _settle(v, w, lo, hi, fix):
    """The key of flagged value ``v`` (flagged key ``w``): ``_NAN_KEY`` for NaN; else ``w``
    unflagged, and ``v`` moved in ``fix`` from its key's bucket to the one its bounds give."""
    if v != v:
        return np.uint16(_NAN_KEY)
    w ^= _FLAG
    b = w // FINE
    e = b
    while v < lo[e]:
        e -= 1
    while v >= hi[e]:
        e += 1
    fix[b] -= 1
    fix[e] += 1
    return w


@nb.njit(cache=True, nogil=True)
def _gather(x, key, mask, mean):
    """Pass 3: the elements whose key's bucket is in ``mask``, in x's order (float64), and the
    sum of ``(x - mean)^2``."""
    n = x.shape[0]
    out = np.empty(n + 1)  # (n + 1,) an element not kept is written after the kept ones
    p = np.uint64(0)
    one = np.uint64(1)
    body = n - n % 4
    s0 = s1 = s2 = s3 = 0.0
    for i in range(0, body, 4):
        for u in range(i, i + 4):
            out[p] = x[u]
            p += (mask >> np.uint64(key[u] // FINE)) & one
        d0 = np.float64(x[i]) - mean
        d1 = np.float64(x[i + 1]) - mean
        d2 = np.float64(x[i + 2]) - mean
        d3 = np.float64(x[i + 3]) - mean
        s0 += d0 * d0
        s1 += d1 * d1
        s2 += d2 * d2
        s3 += d3 * d3
    for u in range(body, n):
        out[p] = x[u]
        p += (mask >> np.uint64(key[u] // FINE)) & one
        d0 = np.float64(x[u]) - mean
        s0 += d0 * d0
    return out[:p], (s0 + s1) + (s2 + s3)


@nb.njit(cache=True, nogil=True)
def _narrow(a, local):
    """One selection level over all of ``a`` (m,): the elements of the sub-buckets (``_NARROW``
    equal ones over the finite range) that hold the ranks ``local``, and the ranks' indices
    among them; ``a`` and ``local`` as they are where the range cannot be split."""
    lo, hi, neg, pos = _finite_range(a)
    if neg + pos == a.shape[0] or lo == hi or not 0.0 < _NARROW / (hi - lo) < np.inf:
        return a, local
    sc = _NARROW / (hi - lo)
    below = np.zeros(_NARROW + 1, np.int64)  # (65,) elements of the sub-buckets < u
    for i in range(a.shape[0]):
        below[_sub(a[i], lo, sc, _NARROW) + 1] += 1
    for u in range(_NARROW):
        below[u + 1] += below[u]
    mask = np.uint64(0)
    one = np.uint64(1)
    at = np.empty_like(local)  # (2m,) each rank's sub-bucket
    for j in range(local.shape[0]):
        u = 0
        while below[u + 1] <= local[j]:
            u += 1
        at[j] = u
        mask |= np.uint64(1) << np.uint64(u)
    kept = np.zeros(_NARROW + 1, np.int64)  # (65,) kept elements of the sub-buckets < u
    for u in range(_NARROW):
        kept[u + 1] = kept[u] + ((below[u + 1] - below[u]) if (mask >> np.uint64(u)) & one else 0)
    out = np.empty(kept[_NARROW] + 1)
    p = np.uint64(0)
    for i in range(a.shape[0]):
        v = a[i]
        out[p] = v
        p += (mask >> np.uint64(_sub(v, lo, sc, _NARROW))) & one
    return out[:p], local - below[at] + kept[at]


@nb.njit(cache=True, nogil=True)
def _order_pair(a, k, k2, work):
    """``(s[k], s[k2])`` for ``s`` the sorted ``a`` (m,) (no NaN), ``k2`` in ``(k, k + 1)``:
    each level counts the values in ``_SUB`` equal sub-buckets of their finite range and keeps
    the ranks' sub-bucket. ``work`` (2, >= m) scratch; ``a`` is left as it was."""
    src = a
    side = 0  # the row of ``work`` the next level writes
    for _ in range(_LEVELS):
        m = src.shape[0]
        if m <= _SMALL:
            break
        lo, hi, neg, pos = _finite_range(src)
        if neg + pos == m or lo == hi:  # at most one finite value: known by the counts
            return _by_count(k, m, lo, neg, pos), _by_count(k2, m, lo, neg, pos)
        sc = _SUB / (hi - lo)
        if not 0.0 < sc < np.inf:  # the range overflows
            break
        counts = np.zeros(_SUB, np.int64)
        for i in range(m):
            counts[_sub(src[i], lo, sc, _SUB)] += 1
        below = 0
        s = 0
        while below + counts[s] <= k:
            below += counts[s]
            s += 1
        if k2 - below >= counts[s]:  # s[k] ends sub-bucket s, s[k2] starts the next nonempty
            t = s + 1
            while counts[t] == 0:
                t += 1
            v0, v1 = -np.inf, np.inf
            for i in range(m):
                v = src[i]
                u = _sub(v, lo, sc, _SUB)
                if u == s and v > v0:
                    v0 = v
                elif u == t and v < v1:
                    v1 = v
            return v0, v1
        dst = work[side, : counts[s] + 1]  # (kept + 1,)
        p = 0
        for i in range(m):
            v = src[i]
            dst[p] = v
            p += _sub(v, lo, sc, _SUB) == s
        src = dst[: counts[s]]
        k -= below
        k2 -= below
        side = 1 - side
    srt = work[side, : src.shape[0]]
    srt[:] = src
    srt.sort()
    return srt[k], srt[k2]


@nb.njit(cache=True, nogil=True)
def _sub(v, lo, sc, size):
    """The sub-bucket of ``v``: ``(v - lo) * sc`` clipped to ``[0, size - 1]``, nondecreasing in
    ``v`` (the infinities in the end ones)."""
    return np.int64(min(max((v - lo) * sc, 0.0), size - 1.0))


@nb.njit(cache=True, nogil=True)
def _finite_range(a):
    """Smallest and largest finite value of ``a`` (inf and -inf if none), the -infs, the +infs."""
    lo, hi = np.inf, -np.inf
    neg = pos = 0
    for i in range(a.shape[0]):
        v = a[i]
        if v == -np.inf:
            neg += 1
        elif v == np.inf:
            pos += 1
        else:
            lo = min(lo, v)
            hi = max(hi, v)
    return lo, hi, neg, pos


@nb.njit(cache=True, nogil=True)
def _by_count(r, m, value, neg, pos):
    """Element ``r`` of ``neg`` -infs, then ``m - neg - pos`` copies of ``value``, then infs."""
    return -np.inf if r < neg else (np.inf if r >= m - pos else value)
