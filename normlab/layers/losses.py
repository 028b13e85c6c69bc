"""Classification losses returning ``(loss, dx)``."""

from __future__ import annotations

import numpy as np


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
