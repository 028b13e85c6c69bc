"""A fused softmax cross-entropy: loss and gradient in one pass per row.

The models' training loss on a small batch is dominated by NumPy's per-call overhead (eleven
calls for a (32, 10) batch cost ~15 us); this kernel does the same math in ~1 us.
``normlab.layers.losses.softmax_cross_entropy`` calls it unless ``NORMLAB_BACKEND=numpy``.
"""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True, nogil=True)
def softmax_xent(scores, y, dscores):
    """Mean softmax cross-entropy and its gradient.

    Parameters
    ----------
    scores : ndarray of shape (N, C)
    y : ndarray of shape (N,), integers
    dscores : ndarray of shape (N, C), dtype of scores
        Written with ``(softmax(scores) - onehot(y)) / N``.

    Returns
    -------
    loss : float
        ``mean(log(sum(exp(s))) - s[y])`` with ``s = scores - max(scores)`` per row (NaN if
        any score is NaN or infinite, as in NumPy).
    bad : int
        The first row whose label is outside [0, C), or -1 (then ``dscores`` is incomplete).
    """
    N, C = scores.shape
    total = 0.0
    for i in range(N):
        yi = y[i]
        if yi < 0 or yi >= C:
            return np.nan, i
        row = scores[i]
        d = dscores[i]
        m = row[0]
        for j in range(1, C):
            if row[j] > m:
                m = row[j]
        z = 0.0
        for j in range(C):
            e = np.exp(row[j] - m)  # in the scores' dtype, as NumPy computes it
            d[j] = e
            z += e
        total += np.log(z) - (row[yi] - m)
        zz = d[0] - d[0] + z  # z in the scores' dtype: softmax = e / z as NumPy divides
        for j in range(C):
            d[j] = d[j] / zz
        d[yi] -= 1
        for j in range(C):
            d[j] = d[j] / N
    return total / N, -1
