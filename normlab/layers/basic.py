"""Affine, activation and dropout layers in the CS231n functional convention."""

from __future__ import annotations

import numbers

import numpy as np

from normlab.layers._checks import check_mode


def affine_forward(x, w, b):
    """Fully-connected layer ``out = x.reshape(N, D) @ w + b``.

    Parameters
    ----------
    x : ndarray of shape (N, d1, ..., dk)
        Input; each sample is flattened to D = d1 * ... * dk features.
    w : ndarray of shape (D, M)
    b : ndarray of shape (M,)

    Returns
    -------
    out : ndarray of shape (N, M)
    cache : tuple (x, w, b)
    """
    x = np.asarray(x)
    if x.ndim < 1 or w.ndim != 2 or b.shape != (w.shape[1],):
        raise ValueError(
            f"affine_forward: expected x (N, ...), w (D, M), b (M,), got x {x.shape}, "
            f"w {np.shape(w)}, b {np.shape(b)}"
        )
    D = int(np.prod(x.shape[1:], dtype=np.int64))
    if D != w.shape[0]:
        raise ValueError(
            f"affine_forward: x has {D} features per sample {x.shape[1:]}, w expects {w.shape[0]}"
        )
    return affine_forward_unchecked(x, w, b)


def affine_forward_unchecked(x, w, b):
    """:func:`affine_forward` without its checks, for callers whose shapes are fixed (models)."""
    x2 = x if x.ndim == 2 else x.reshape(x.shape[0], w.shape[0])  # (N, D)
    return x2 @ w + b, (x, w, b)  # (N, M)


def affine_backward(dout, cache):
    """Backward of :func:`affine_forward`: dout (N, M) -> dx (shape of x), dw (D, M), db (M,)."""
    x, w, _ = cache
    dw, db = affine_param_grads(dout, cache)
    dx = dout @ w.T  # (N, D)
    return (dx if x.ndim == 2 else dx.reshape(x.shape)), dw, db  # dx (N, d1, ..., dk)


def affine_param_grads(dout, cache):
    """:func:`affine_backward` without dx (a network's input layer): dw (D, M), db (M,)."""
    x, w, _ = cache
    x2 = x if x.ndim == 2 else x.reshape(x.shape[0], w.shape[0])  # (N, D)
    return x2.T @ dout, dout.sum(axis=0)


def relu_forward(x):
    """Rectified linear unit ``max(0, x)``; x of any shape. Returns ``(out, cache=x)``."""
    return np.maximum(x, 0), x


def relu_backward(dout, cache):
    """Backward of :func:`relu_forward`: ``dx = dout * (x > 0)``, shape of x."""
    return dout * (cache > 0)


def sigmoid_forward(x):
    """Logistic sigmoid ``1 / (1 + exp(-x))``, overflow-free; x of any shape.

    Returns ``(out, cache=out)``.
    """
    e = np.exp(-np.abs(x))
    out = np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(np.result_type(x, np.float32))
    return out, out


def sigmoid_backward(dout, cache):
    """Backward of :func:`sigmoid_forward`: ``dx = dout * s * (1 - s)``."""
    return dout * cache * (1 - cache)


def tanh_forward(x):
    """Hyperbolic tangent; x of any shape. Returns ``(out, cache=out)``."""
    out = np.tanh(x)
    return out, out


def tanh_backward(dout, cache):
    """Backward of :func:`tanh_forward`: ``dx = dout * (1 - tanh(x)^2)``."""
    return dout * (1 - cache * cache)


def dropout_forward(x, dropout_param):
    """Inverted dropout.

    Parameters
    ----------
    x : ndarray of any shape
    dropout_param : dict
        ``p`` : float in (0, 1], the probability of *keeping* each unit (required);
        ``mode`` : 'train' | 'test' (required); in test mode the layer is the identity;
        ``seed`` : int, optional; when given the mask is drawn from
        ``np.random.default_rng(seed)`` (reproducible, used by gradient checks);
        ``rng`` : np.random.Generator, optional; used when there is no seed.

    Returns
    -------
    out : ndarray, shape of x
        ``x * mask / p`` in train mode, so that test mode needs no rescaling.
    cache : tuple (dropout_param, mask)
    """
    fn = "dropout_forward"
    mode = check_mode(dropout_param, fn)
    p = dropout_param.get("p")
    if not isinstance(p, numbers.Real) or not 0 < p <= 1:
        raise ValueError(f"{fn}: expected keep probability p in (0, 1], got {p!r}")
    if mode == "test" or p == 1:
        return x, (dropout_param, None)
    x = np.asarray(x)
    if x.dtype.kind != "f":
        x = x.astype(np.float64)
    if dropout_param.get("seed") is not None:
        rng = np.random.default_rng(dropout_param["seed"])
    else:
        rng = dropout_param.get("rng") or np.random.default_rng()
    mask = (rng.random(x.shape) < p) / np.asarray(p, dtype=x.dtype)  # (shape of x)
    return x * mask, (dropout_param, mask)


def dropout_backward(dout, cache):
    """Backward of :func:`dropout_forward`: ``dx = dout * mask / p`` (identity in test mode)."""
    _, mask = cache
    return dout if mask is None else dout * mask


# The nonlinearities by the names the models accept: (forward, backward).
ACTIVATIONS = {
    "relu": (relu_forward, relu_backward),
    "sigmoid": (sigmoid_forward, sigmoid_backward),
    "tanh": (tanh_forward, tanh_backward),
}
