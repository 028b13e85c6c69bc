"""The one normalization core behind batch, spatial batch, layer and group norm.

Every input is seen through the view ``x4 (N, G, K, S)``: ``N`` samples, ``G`` groups of ``K``
channels (``C = G*K``), ``S`` positions per channel. The layers differ only in the axes the
statistics are reduced over:

==================  ===========================  =============  ===============
layer               view (N, G, K, S)            reduce axes    statistics
==================  ===========================  =============  ===============
batch norm          (N, D, 1, 1)                 (0, 2, 3)      per channel (C,)
spatial batch norm  (N, C, 1, H*W)               (0, 2, 3)      per channel (C,)
layer norm          (N, 1, D, 1)                 (2, 3)         per sample (N, 1)
group norm          (N, G, C/G, H*W)             (2, 3)         per (N, G)
==================  ===========================  =============  ===============

``gamma``/``beta`` are always per channel: ``gamma.reshape(1, G, K, 1)``. The readable NumPy
version here is the reference; ``normlab.kernels.norm`` computes the same in fused loops and is
used unless ``NORMLAB_BACKEND=numpy``.

Forward: ``mu = mean(x)``, ``var = mean((x - mu)^2)`` (two passes, biased), ``xhat = (x - mu) /
sqrt(var + eps)``, ``y = gamma * xhat + beta``. Backward, with ``m`` elements per statistic and
``g = dy * gamma``: ``dx = (g - mean(g) - xhat * mean(g * xhat)) / sqrt(var + eps)``;
``dgamma = sum(dy * xhat)``, ``dbeta = sum(dy)`` over every axis but the channel.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from normlab.kernels import get_backend
from normlab.kernels import norm as kern

BATCH, GROUP = "batch", "group"
_AXES = {BATCH: (0, 2, 3), GROUP: (2, 3)}
_PARAM_AXES = (0, 3)  # gamma/beta gradients sum over samples and positions


class NormCache(NamedTuple):
    """What a normalization backward needs, and nothing else.

    Attributes
    ----------
    x : ndarray
        The input, in its original shape.
    gamma : ndarray
        The scale as given (its shape is the shape of the returned ``dgamma``).
    mean, var, rstd : ndarray of float64
        Statistics used: shape (C,) for ``kind='batch'``, (N, G) for ``kind='group'``; ``var`` is
        biased; ``rstd = 1 / sqrt(var + eps)``.
    eps : float
    kind : {'batch', 'group'}
    view : tuple (N, G, K, S)
    train : bool
        True when the statistics came from the batch itself (they then depend on ``x`` and the
        backward carries the mean/variance terms); False in test mode (fixed running statistics).
    """

    x: np.ndarray
    gamma: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    rstd: np.ndarray
    eps: float
    kind: str
    view: tuple
    train: bool


def view_of(shape: tuple, kind: str, groups: int = 1) -> tuple:
    """The (N, G, K, S) view of an input of shape (N, C, *spatial)."""
    N, C = shape[0], shape[1]
    S = math.prod(shape[2:])
    return (N, C, 1, S) if kind == BATCH else (N, groups, C // groups, S)


def _stat4(a: np.ndarray, kind: str, view: tuple) -> np.ndarray:
    """Statistics reshaped to broadcast against the (N, G, K, S) view."""
    N, G, K, S = view
    return a.reshape(1, G, 1, 1) if kind == BATCH else a.reshape(N, G, 1, 1)


def norm_forward(x, gamma, beta, kind, eps, groups=1, stats=None):
    """Normalize ``x`` over the axes of ``kind``, then scale and shift per channel.

    Parameters
    ----------
    x : ndarray of shape (N, C, *spatial), floating
    gamma, beta : ndarray with C elements
    kind : {'batch', 'group'}
    eps : float
    groups : int, default=1
        Number of groups G (``kind='group'`` only).
    stats : tuple (mean, var) of ndarray, optional
        Fixed statistics to use instead of the batch's (test mode of batch norm), shape (C,).

    Returns
    -------
    out : ndarray, same shape and dtype as x
    cache : NormCache
    """
    view = view_of(x.shape, kind, groups)
    if stats is not None:
        mean = np.asarray(stats[0], dtype=np.float64)
        var = np.asarray(stats[1], dtype=np.float64)
        rstd = 1.0 / np.sqrt(var + eps)
        scale = (np.ravel(gamma) * rstd).reshape(1, -1, 1, 1)  # (1, C, 1, 1)
        # in float64, x - mean first: x * scale + (beta - mean * scale) cancels in float32
        x4 = x.reshape(view)
        out = ((x4 - mean.reshape(1, -1, 1, 1)) * scale + np.reshape(beta, (1, -1, 1, 1))).astype(
            x.dtype
        )
        cache = NormCache(x, gamma, mean, var, rstd, eps, kind, view, False)
        return out.reshape(x.shape), cache
    if get_backend() == "numpy":
        out, mean, var = _forward_numpy(x, gamma, beta, kind, eps, view)
        rstd = 1.0 / np.sqrt(var + eps)
    else:
        out, mean, var, rstd = _forward_kernel(x, gamma, beta, kind, eps, view)
    return out, NormCache(x, gamma, mean, var, rstd, eps, kind, view, True)


def check_dout(dout, shape) -> None:
    """The upstream gradient must have the shape of the layer's input."""
    if np.shape(dout) != shape:
        raise ValueError(f"expected dout of shape {shape} (the input's), got {np.shape(dout)}")


def norm_backward(dout, cache: NormCache):
    """Closed-form backward of every normalization: batch, spatial batch, layer and group norm.

    ``layernorm_backward`` and ``spatial_groupnorm_backward`` are this function, and
    ``batchnorm_backward_alt`` and ``spatial_batchnorm_backward`` call it (once per chunk for
    ghost batch norm): the cache says which axes the statistics were taken over.

    Parameters
    ----------
    dout : ndarray, shape of the forward's input ``x``
    cache : NormCache
        From the forward.

    Returns
    -------
    dx : ndarray, shape and dtype of ``x``
    dgamma, dbeta : ndarray, shape and dtype of ``gamma`` as given ((C,), or (1, C, 1, 1) for
        group norm)

    Notes
    -----
    With ``g = dout * gamma`` and means over the ``m`` values of each statistic: ``dx = (g -
    mean(g) - xhat * mean(g * xhat)) / sqrt(var + eps)``; ``dgamma = sum(dout * xhat)``,
    ``dbeta = sum(dout)`` over every axis but the channel (docs/derivations.md). In test mode
    (fixed running statistics) ``dx = g / sqrt(var + eps)``. Runs the fused kernels unless
    ``NORMLAB_BACKEND=numpy``.
    """
    if not isinstance(cache, NormCache):
        raise ValueError(
            f"expected the cache of a normalization forward (a NormCache), got "
            f"{type(cache).__name__}"
        )
    dout = np.asarray(dout)
    check_dout(dout, cache.x.shape)
    if not cache.train:
        return _backward_fixed(dout, cache)
    if get_backend() == "numpy":
        dx, dgamma, dbeta = _backward_numpy(dout, cache)
    else:
        dx, dgamma, dbeta = _backward_kernel(dout, cache)
    g = cache.gamma
    if dgamma.shape != g.shape or dgamma.dtype != g.dtype:
        dgamma = dgamma.reshape(g.shape).astype(g.dtype)
        dbeta = dbeta.reshape(g.shape).astype(g.dtype)
    return dx, dgamma, dbeta


# --- the readable reference -------------------------------------------------------------------


def _forward_numpy(x, gamma, beta, kind, eps, view):
    axes = _AXES[kind]
    x4 = x.reshape(view).astype(np.float64)  # (N, G, K, S)
    mean = x4.mean(axis=axes, keepdims=True)
    xc = x4 - mean
    var = (xc * xc).mean(axis=axes, keepdims=True)  # two-pass: stable for large offsets
    xhat = xc / np.sqrt(var + eps)
    _, G, K, _ = view
    out = xhat * np.reshape(gamma, (1, G, K, 1)) + np.reshape(beta, (1, G, K, 1))
    return out.astype(x.dtype).reshape(x.shape), _squeeze(mean, kind), _squeeze(var, kind)


def _squeeze(a4, kind):
    return a4.reshape(-1) if kind == BATCH else a4.reshape(a4.shape[0], a4.shape[1])


def _backward_numpy(dout, cache):
    kind, view = cache.kind, cache.view
    axes = _AXES[kind]
    _, G, K, _ = view
    x4 = cache.x.reshape(view).astype(np.float64)  # (N, G, K, S)
    dy = dout.reshape(view).astype(np.float64)  # (N, G, K, S)
    rstd = _stat4(cache.rstd, kind, view)
    xhat = (x4 - _stat4(cache.mean, kind, view)) * rstd
    dbeta = dy.sum(axis=_PARAM_AXES)  # (G, K)
    dgamma = (dy * xhat).sum(axis=_PARAM_AXES)  # (G, K)
    g = dy * np.reshape(cache.gamma, (1, G, K, 1))  # dL/dxhat
    dx = rstd * (
        g - g.mean(axis=axes, keepdims=True) - xhat * (g * xhat).mean(axis=axes, keepdims=True)
    )
    return dx.astype(cache.x.dtype).reshape(cache.x.shape), dgamma, dbeta


def _backward_fixed(dout, cache):
    """Backward with fixed statistics (test mode): dx = dy * gamma * rstd."""
    view, g = cache.view, cache.gamma
    dy = dout.reshape(view).astype(np.float64)
    rstd = _stat4(cache.rstd, cache.kind, view)
    xhat = (cache.x.reshape(view) - _stat4(cache.mean, cache.kind, view)) * rstd
    dx = dy * np.reshape(g, (1, view[1], view[2], 1)) * rstd
    dgamma = (dy * xhat).sum(axis=_PARAM_AXES)
    dbeta = dy.sum(axis=_PARAM_AXES)
    return (
        dx.astype(cache.x.dtype).reshape(cache.x.shape),
        dgamma.reshape(g.shape).astype(g.dtype),
        dbeta.reshape(g.shape).astype(g.dtype),
    )


# --- the fused kernels ------------------------------------------------------------------------


def _forward_kernel(x, gamma, beta, kind, eps, view):
    N, G, K, S = view
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)
    g = np.ascontiguousarray(gamma).reshape(-1)  # (C,)
    b = np.ascontiguousarray(beta).reshape(-1)  # (C,)
    if kind == BATCH:
        mean, var, rstd = np.empty(G), np.empty(G), np.empty(G)
        if S == 1:
            sh = (N, G)
            fn = kern.cols_forward.pick(x.size)
            fn(x.reshape(sh), g, b, eps, out.reshape(sh), mean, var, rstd, kern.chunks(x.size))
        else:
            sh = (N, G, S)
            fn = kern.spatial_forward.pick(x.size)
            fn(x.reshape(sh), g, b, eps, out.reshape(sh), mean, var, rstd)
        return out, mean, var, rstd
    R = N * G
    mean, var, rstd = np.empty(R), np.empty(R), np.empty(R)
    sh = (R, K * S)
    fn = kern.rows_forward.pick(x.size)
    fn(x.reshape(sh), g, b, G, K, S, eps, out.reshape(sh), mean, var, rstd)
    return out, mean.reshape(N, G), var.reshape(N, G), rstd.reshape(N, G)


def _backward_kernel(dout, cache):
    N, G, K, S = cache.view
    x = np.ascontiguousarray(cache.x)
    dy = np.ascontiguousarray(dout, dtype=x.dtype)
    dx = np.empty_like(x)
    g = np.ascontiguousarray(cache.gamma).reshape(-1)  # (C,)
    T = kern.chunks(x.size)
    if cache.kind == BATCH:
        dgamma, dbeta = np.empty(G), np.empty(G)
        stats = (cache.mean, cache.rstd, g)
        if S == 1:
            sh = (N, G)
            fn = kern.cols_backward.pick(x.size)
            fn(dy.reshape(sh), x.reshape(sh), *stats, dx.reshape(sh), dgamma, dbeta, T)
        else:
            sh = (N, G, S)
            fn = kern.spatial_backward.pick(x.size)
            fn(dy.reshape(sh), x.reshape(sh), *stats, dx.reshape(sh), dgamma, dbeta)
        return dx, dgamma, dbeta
    T = min(T, N * G)  # per-chunk partial sums of dgamma, dbeta
    dgp, dbp = np.zeros((T, G * K)), np.zeros((T, G * K))
    sh = (N * G, K * S)
    kern.rows_backward.pick(x.size)(
        dy.reshape(sh),
        x.reshape(sh),
        cache.mean.reshape(-1),
        cache.rstd.reshape(-1),
        g,
        G,
        K,
        S,
        dx.reshape(sh),
        dgp,
        dbp,
    )
    if T == 1:  # one chunk: its partials are the sums (saves two NumPy reductions)
        return dx, dgp[0], dbp[0]
    return dx, dgp.sum(axis=0), dbp.sum(axis=0)
