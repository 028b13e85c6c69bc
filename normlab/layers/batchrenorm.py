"""Batch renormalization (Ioffe, 2017) for (N, D) and (N, C, H, W) inputs.

Batch norm whose train-mode output is corrected towards what test mode computes: with the batch
statistics ``mu_B``, ``sigma_B = sqrt(var_B + eps)`` and the running ones ``mu``,
``sigma = sqrt(running_var + eps)`` (before this step's update),
``r = clip(sigma_B / sigma, 1/rmax, rmax)`` and ``d = clip((mu_B - mu) / sigma, -dmax, dmax)``
rescale and shift the normalized batch, and are constants for the backward. ``rmax=1, dmax=0``
(the defaults) is batch norm, bit for bit.

Conventions are batch norm's (``normlab.layers.batchnorm``, ``docs/conventions.md``):
``momentum`` weights the old running value (or None: cumulative), the running variance is
biased unless ``running_var_unbiased=True``, running statistics start at zeros, a non-finite
batch is refused before they are touched. ``sigma`` is built from the *stored* ``running_var``,
biased or unbiased as the caller chose: the variance test mode divides by, so that an unclipped
``r, d`` make train mode compute exactly test mode's output.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

from normlab.layers._checks import (
    as_float_array,
    check_channel_param,
    check_eps,
    check_finite_stats,
    check_keys,
    check_mode,
    check_ndim,
)
from normlab.layers.batchnorm import BN_KEYS, bn_momentum, running_stats, update_running_stats
from normlab.layers.norm_core import BATCH, NormCache, norm_backward, norm_forward

_NOT_FOR_RENORM = ("track_running_stats", "virtual_batch_size")
RENORM_KEYS = (BN_KEYS - frozenset(_NOT_FOR_RENORM)) | frozenset(("rmax", "dmax"))


class RenormCache(NamedTuple):
    """What the batch-renorm backward needs.

    Attributes
    ----------
    norm : NormCache
        Batch norm's train-mode cache: x, gamma, the batch statistics, eps.
    r, d : ndarray of shape (C,), float64
        The corrections used (constants of the backward).
    """

    norm: NormCache
    r: np.ndarray
    d: np.ndarray


def _limit(bn_param, key, default, low, fn, meaning):
    """``bn_param[key]``: a real number >= ``low`` (inf allowed: no clipping)."""
    v = bn_param.get(key, default)
    if isinstance(v, bool | np.bool_) or not isinstance(v, numbers.Real) or not v >= low:
        raise ValueError(f"{fn}: expected bn_param[{key!r}] >= {low} ({meaning}), got {v!r}")
    return float(v)


def _renorm_forward(x, gamma, beta, bn_param, fn, ndim, layout):
    x = as_float_array(x, fn)
    check_ndim(x, ndim, fn, layout)
    C = x.shape[1]
    gamma = check_channel_param(gamma, C, fn, "gamma")
    beta = check_channel_param(beta, C, fn, "beta")
    mode = check_mode(bn_param, fn)
    for key in _NOT_FOR_RENORM:
        if key in bn_param:
            raise ValueError(
                f"{fn}: bn_param[{key!r}] is a batch-norm option that batch renorm does not "
                f"take (renorm needs running statistics of whole batches); drop it, or use "
                f"{fn.replace('batchrenorm', 'batchnorm')}"
            )
    check_keys(bn_param, RENORM_KEYS, fn, "bn_param")
    eps = check_eps(bn_param.get("eps", 1e-5), fn)
    momentum = bn_momentum(bn_param, fn)
    rmax = _limit(bn_param, "rmax", 1.0, 1.0, fn, "1 is batch norm; the paper raises it to 3")
    dmax = _limit(bn_param, "dmax", 0.0, 0.0, fn, "0 is batch norm; the paper raises it to 5")
    running = running_stats(bn_param, C, x.dtype, fn)
    if mode == "test":  # batch norm's test mode
        return norm_forward(x, gamma, beta, BATCH, eps, stats=running)

    m = x.size // C if C else 0  # values per channel
    if m < 2:
        raise ValueError(
            f"{fn}: expected more than 1 value per channel when training, got input of shape "
            f"{tuple(x.shape)}; use a batch of at least 2 samples or mode='test'"
        )
    out, cache = norm_forward(x, gamma, beta, BATCH, eps)  # batch norm: r = 1, d = 0
    check_finite_stats(cache.mean, cache.var, fn, "channels", running=True)
    sigma = np.sqrt(running[1].astype(np.float64) + eps)  # (C,), before the update
    r = np.clip(np.sqrt(cache.var + eps) / sigma, 1.0 / rmax, rmax)  # (C,)
    d = np.clip((cache.mean - running[0]) / sigma, -dmax, dmax)  # (C,)
    update_running_stats(bn_param, running, cache.mean, cache.var, m, momentum, fn)
    if np.any(r != 1.0) or np.any(d != 0.0):
        # y = (gamma r) xhat + (gamma d + beta): an affine map of xhat with the batch statistics
        g = gamma.reshape(-1).astype(np.float64)
        shift = g * d + beta.reshape(-1)  # (C,)
        out, _ = norm_forward(x, g * r, shift, BATCH, eps, stats=(cache.mean, cache.var))
    return out, RenormCache(cache, r, d)


def batchrenorm_forward(x, gamma, beta, bn_param):
    """Batch renormalization of (N, D) input (Ioffe 2017), statistics per feature.

    Parameters
    ----------
    x : ndarray of shape (N, D)
    gamma, beta : ndarray of shape (D,)
    bn_param : dict
        Batch norm's keys (:func:`~normlab.layers.batchnorm.batchnorm_forward`): ``mode``
        (required), ``eps`` (1e-5), ``momentum`` (0.9, or None), ``running_mean``,
        ``running_var`` (zeros when absent; updated in place in train mode),
        ``running_var_unbiased`` (False), ``num_batches_tracked``; plus
        ``rmax`` : float >= 1, default 1 -- the largest correction of the scale;
        ``dmax`` : float >= 0, default 0 -- the largest correction of the shift.
        (``inf`` removes the clipping.) ``track_running_stats`` and ``virtual_batch_size`` are
        refused: renorm is defined by running statistics of whole batches.

    Returns
    -------
    out : ndarray of shape (N, D), dtype of x
    cache : RenormCache (train mode) or NormCache (test mode)
        For :func:`batchrenorm_backward`.

    Raises
    ------
    NonFiniteStatisticsError
        In train mode, when a feature's batch mean or variance is NaN or inf; the running
        statistics (and ``num_batches_tracked``) are left unchanged, bit for bit.
    ValueError
        Bad shapes, dtypes or ``bn_param`` values (``rmax < 1``, ``dmax < 0``), or an unknown
        ``bn_param`` key.

    Notes
    -----
    Ioffe 2017, Algorithm 1, over the batch, with ``mu``, ``running_var`` the running
    statistics *before* this step's update::

        mu_B = mean x,   var_B = mean (x - mu_B)^2,   sigma_B = sqrt(var_B + eps)
        sigma = sqrt(running_var + eps)
        r = clip(sigma_B / sigma, 1/rmax, rmax),   d = clip((mu_B - mu) / sigma, -dmax, dmax)
        y = gamma * ((x - mu_B) / sigma_B * r + d) + beta

    ``r`` and ``d`` are treated as constants by the backward (the paper's ``stop_gradient``).
    The running statistics are then updated exactly as batch norm's (on ``mu_B``, ``var_B``;
    the paper's moving average of ``sigma_B`` is replaced by batch norm's of ``var_B``, so that
    test mode and ``sigma`` share one stored variance). Test mode is batch norm's. With the
    CS231n zero initial running variance, ``sigma = sqrt(eps)`` is tiny at first and ``r``,
    ``d`` sit at their clipping limits: start with ``rmax=1, dmax=0`` (the paper's schedule
    raises them after warm-up) or pass ``running_var=np.ones(D)``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(5, 3, size=(32, 4))
    >>> p = {"mode": "train", "running_mean": np.full(4, 5.0), "running_var": np.full(4, 9.0)}
    >>> test, _ = batchrenorm_forward(x, np.ones(4), np.zeros(4), dict(p, mode="test"))
    >>> out, _ = batchrenorm_forward(x, np.ones(4), np.zeros(4), dict(p, rmax=3.0, dmax=5.0))
    >>> bool(np.allclose(out, test))  # r, d unclipped: train mode computes test mode's output
    True
    """
    return _renorm_forward(x, gamma, beta, bn_param, "batchrenorm_forward", 2, "(N, D)")


def spatial_batchrenorm_forward(x, gamma, beta, bn_param):
    """Batch renormalization of (N, C, H, W) input, statistics per channel over N*H*W values.

    Exactly :func:`batchrenorm_forward` (same ``bn_param`` keys, ``rmax``, ``dmax``) with
    statistics, ``r`` and ``d`` per channel.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
    gamma, beta : ndarray of shape (C,)
    bn_param : dict

    Returns
    -------
    out : ndarray of shape (N, C, H, W)
    cache : RenormCache (train mode) or NormCache (test mode)
        For :func:`spatial_batchrenorm_backward`.
    """
    return _renorm_forward(
        x, gamma, beta, bn_param, "spatial_batchrenorm_forward", 4, "(N, C, H, W)"
    )


def batchrenorm_backward(dout, cache):
    """Backward of batch renormalization, ``r`` and ``d`` held constant.

    Parameters
    ----------
    dout : ndarray, shape of the forward's ``x`` ((N, D) or (N, C, H, W))
    cache : RenormCache or NormCache
        From :func:`batchrenorm_forward` or :func:`spatial_batchrenorm_forward`.

    Returns
    -------
    dx : ndarray, shape and dtype of x
    dgamma, dbeta : ndarray of shape (C,)

    Notes
    -----
    ``y = (gamma r) xhat + (gamma d + beta)`` is batch norm with the scale ``gamma r``, so
    ``dx`` is batch norm's closed form with ``g = dout * gamma * r``::

        dx = (g - mean(g) - xhat * mean(g * xhat)) / sigma_B
        dgamma = r * sum(dout * xhat) + d * sum(dout),   dbeta = sum(dout)

    (sums over every axis but the channel; docs/derivations.md). Test mode: batch norm's.
    """
    if isinstance(cache, NormCache) and not cache.train:
        return norm_backward(dout, cache)
    if not isinstance(cache, RenormCache):
        raise ValueError(
            f"batchrenorm_backward: expected the cache of batchrenorm_forward or "
            f"spatial_batchrenorm_forward (a RenormCache), got {type(cache).__name__}"
        )
    nc, r, d = cache
    g = nc.gamma  # (C,)
    scaled = (g.astype(np.float64) * r).astype(g.dtype)  # gamma r, as batch norm's gamma
    dx, dg, db = norm_backward(dout, nc._replace(gamma=scaled))  # dg = sum(dout * xhat)
    dgamma = (r * dg + d * db).astype(g.dtype)
    return dx, dgamma, db


# One backward for both: the cache knows the layout.
spatial_batchrenorm_backward = batchrenorm_backward
