"""Classification losses returning ``(loss, dx)``."""

from __future__ import annotations

import numpy as np

from normlab.kernels import get_backend
from normlab.kernels.loss import softmax_xent


def _check(x, y, fn):
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"{fn}: expected x (N, C) and y (N,), got x {x.shape}, y {y.shape}")
    if y.dtype.kind not in "iu":
        raise ValueError(f"{fn}: expected integer labels, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= x.shape[1]):
        raise ValueError(
            f"{fn}: expected integer labels in [0, {x.shape[1]}), got values from {y.min()} "
            f"to {y.max()}"
        )
    return x, y


def softmax_loss(x, y):
    """Mean cross-entropy of the softmax of the scores.

    Parameters
    ----------
    x : ndarray of shape (N, C)
        Class scores.
    y : ndarray of shape (N,)
        Integer labels in [0, C).

    Returns
    -------
    loss : float
    dx : ndarray of shape (N, C)
        ``(softmax(x) - onehot(y)) / N``.
    """
    x, y = _check(x, y, "softmax_loss")
    N = x.shape[0]
    shifted = x - x.max(axis=1, keepdims=True)  # (N, C), for numerical stability
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -float(log_probs[np.arange(N), y].mean())
    dx = np.exp(log_probs)
    dx[np.arange(N), y] -= 1
    dx /= N
    return loss, dx


def svm_loss(x, y):
    """Mean multiclass hinge loss with margin 1.

    Parameters
    ----------
    x : ndarray of shape (N, C)
    y : ndarray of shape (N,)

    Returns
    -------
    loss : float
    dx : ndarray of shape (N, C)
    """
    x, y = _check(x, y, "svm_loss")
    N = x.shape[0]
    correct = x[np.arange(N), y][:, None]  # (N, 1)
    margins = np.maximum(0, x - correct + 1)  # (N, C)
    margins[np.arange(N), y] = 0
    loss = float(margins.sum() / N)
    dx = (margins > 0).astype(x.dtype)
    dx[np.arange(N), y] -= dx.sum(axis=1)
    dx /= N
    return loss, dx


def softmax_cross_entropy(scores: np.ndarray, y) -> tuple[float, np.ndarray]:
    """:func:`softmax_loss` for the models' training step: one fused pass, cheap label checks.

    Parameters
    ----------
    scores : ndarray of shape (N, C)
    y : ndarray of shape (N,)
        Integer labels in [0, C).

    Returns
    -------
    loss : float
        ``mean(log(sum(exp(s))) - s[y])``, with ``s = scores - max(scores)`` per row.
    dscores : ndarray of shape (N, C)
        ``(softmax(scores) - onehot(y)) / N``.

    Raises
    ------
    ValueError
        If ``y`` is not of shape (N,), not integers, or has a label outside [0, C); the
        messages are ``softmax_loss``'s.

    Notes
    -----
    The same math as ``softmax_loss`` (its tests are the oracle, ``tests/test_models.py``).
    A model's loss on a small batch is dominated by per-call overhead: the numba kernel
    ``normlab.kernels.loss.softmax_xent`` does it in one call (and checks the labels as it
    goes); with ``NORMLAB_BACKEND=numpy``, 11 NumPy calls instead of ``softmax_loss``'s 16.
    """
    N, C = scores.shape
    y = np.asarray(y)
    if y.shape != (N,):
        raise ValueError(
            f"expected scores (N, C) and y (N,), got scores {scores.shape}, y {y.shape}"
        )
    if y.dtype.kind not in "iu":
        raise ValueError(f"expected integer labels, got dtype {y.dtype}")
    if N and get_backend() == "numba":  # one fused pass; labels checked inside
        dscores = np.empty_like(scores)
        loss, bad = softmax_xent(scores, y, dscores)
        if bad < 0:
            return float(loss), dscores
    if N and (y.min() < 0 or y.max() >= C):
        raise ValueError(
            f"expected integer labels in [0, {C}), got values from {y.min()} to {y.max()}"
        )
    shifted = scores - scores.max(axis=1, keepdims=True)  # (N, C)
    e = np.exp(shifted)  # (N, C)
    z = e.sum(axis=1, keepdims=True)  # (N, 1)
    rows = np.arange(N)
    loss = float(np.log(z).sum() - shifted[rows, y].sum()) / N
    e /= z  # softmax
    e[rows, y] -= 1
    e /= N
    return loss, e
