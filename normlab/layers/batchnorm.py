"""Batch normalization (Ioffe & Szegedy, 2015) for (N, D) and (N, C, H, W) inputs.

Conventions (see ``docs/conventions.md`` for the mapping to PyTorch, Keras and darknet):

* ``momentum`` is the weight of the *old* running value:
  ``running = momentum * running + (1 - momentum) * batch`` (default 0.9, the CS231n
  convention; PyTorch's ``momentum=0.1`` is normlab's ``momentum=0.9``).
* Normalization always uses the biased batch variance ``mean((x - mu)^2)``. The running
  variance stores it as well unless ``running_var_unbiased=True``, which applies the paper's
  ``m / (m - 1)`` Bessel factor, as PyTorch and Keras do.
* ``eps = 1e-5``; running mean starts at zeros and running variance at zeros (CS231n) when the
  caller does not pass them (PyTorch starts the variance at ones: pass
  ``running_var=np.ones(D)`` to reproduce it).
* A train-mode batch whose statistics are not finite (a NaN or inf in a column, or an
  overflow) is refused with a ``NonFiniteStatisticsError`` before the running statistics are
  touched: one bad batch cannot poison them for good. Unknown ``bn_param`` keys are refused.
"""

from __future__ import annotations

import numpy as np

from normlab.kernels.norm import ema_update
from normlab.layers._checks import (
    as_float_array,
    check_channel_param,
    check_eps,
    check_finite_stats,
    check_keys,
    check_mode,
    check_momentum,
    check_ndim,
)
from normlab.layers.norm_core import BATCH, NormCache, check_dout, norm_backward, norm_forward

BN_KEYS = frozenset(
    ("mode", "eps", "momentum", "running_mean", "running_var", "running_var_unbiased")
)


def _bn_forward(x, gamma, beta, bn_param, fn, ndim, layout):
    x = as_float_array(x, fn)
    check_ndim(x, ndim, fn, layout)
    C = x.shape[1]
    gamma = check_channel_param(gamma, C, fn, "gamma")
    beta = check_channel_param(beta, C, fn, "beta")
    mode = check_mode(bn_param, fn)
    check_keys(bn_param, BN_KEYS, fn, "bn_param")
    eps = check_eps(bn_param.get("eps", 1e-5), fn)
    momentum = check_momentum(bn_param.get("momentum", 0.9), fn)
    running = {}
    for key in ("running_mean", "running_var"):
        r = bn_param.get(key)
        if r is None:
            r = bn_param[key] = np.zeros(C, dtype=x.dtype)
        elif not isinstance(r, np.ndarray) or r.shape != (C,) or r.dtype.kind != "f":
            got = f"{r.shape} {r.dtype}" if isinstance(r, np.ndarray) else f"{type(r).__name__}"
            raise ValueError(
                f"{fn}: expected bn_param[{key!r}] a float array of shape ({C},), got {got}"
            )
        running[key] = r  # updated in place below: the caller's array is the statistic

    if mode == "test":
        stats = (running["running_mean"], running["running_var"])
        return norm_forward(x, gamma, beta, BATCH, eps, stats=stats)

    m = x.size // C if C else 0  # values per channel
    if m < 2:
        raise ValueError(
            f"{fn}: expected more than 1 value per channel when training, got input of shape "
            f"{tuple(x.shape)}; use a batch of at least 2 samples or mode='test'"
        )
    out, cache = norm_forward(x, gamma, beta, BATCH, eps)
    check_finite_stats(
        cache.mean, cache.var, fn, "channels", running=True
    )  # before the running update
    factor = m / (m - 1) if bn_param.get("running_var_unbiased", False) else 1.0
    ema_update(
        running["running_mean"], running["running_var"], cache.mean, cache.var, momentum, factor
    )
    return out, cache


def batchnorm_forward(x, gamma, beta, bn_param):
    """Batch normalization of (N, D) input, statistics per feature over the batch.

    Parameters
    ----------
    x : ndarray of shape (N, D)
    gamma : ndarray of shape (D,)
        Scale, initialised to ones by the models.
    beta : ndarray of shape (D,)
        Shift, initialised to zeros.
    bn_param : dict
        ``mode`` : 'train' | 'test' (required);
        ``eps`` : float, default 1e-5;
        ``momentum`` : float in [0, 1], default 0.9 -- weight of the old running value;
        ``running_mean``, ``running_var`` : ndarray of shape (D,), created as zeros when absent
        and updated in place in train mode;
        ``running_var_unbiased`` : bool, default False -- store the variance with the
        ``m / (m - 1)`` factor (what the paper and PyTorch do).

    Returns
    -------
    out : ndarray of shape (N, D), dtype of x
    cache : NormCache
        For :func:`batchnorm_backward` and :func:`batchnorm_backward_alt`.

    Raises
    ------
    NonFiniteStatisticsError
        A ``FloatingPointError``: in train mode, when a feature's batch mean or variance is NaN
        or inf (its column holds NaN or inf, or overflows). The message names the features;
        ``running_mean`` and ``running_var`` are left unchanged, bit for bit. Test mode does
        not check (NaN in, NaN out).
    ValueError
        Bad shapes, dtypes or ``bn_param`` values, or a key of ``bn_param`` not listed above
        (the message names it and the known keys).

    Notes
    -----
    Train mode, over the batch ``B = {x_1..x_m}`` (Ioffe & Szegedy 2015, Algorithm 1)::

        mu = 1/m sum x_i,   var = 1/m sum (x_i - mu)^2,
        xhat_i = (x_i - mu) / sqrt(var + eps),   y_i = gamma * xhat_i + beta

    Test mode uses ``running_mean``/``running_var`` in place of ``mu``/``var``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(5, 3, size=(64, 4))
    >>> out, _ = batchnorm_forward(x, np.ones(4), np.zeros(4), {"mode": "train"})
    >>> bool(np.allclose(out.mean(0), 0) and np.allclose(out.std(0), 1, atol=1e-4))
    True
    """
    return _bn_forward(x, gamma, beta, bn_param, "batchnorm_forward", 2, "(N, D)")


def batchnorm_backward(dout, cache: NormCache):
    """Batch-norm backward, step by step through the computational graph.

    Parameters
    ----------
    dout : ndarray of shape (N, D)
    cache : NormCache from :func:`batchnorm_forward`

    Returns
    -------
    dx : ndarray of shape (N, D)
    dgamma, dbeta : ndarray of shape (D,)

    Notes
    -----
    The forward graph is ``xmu = x - mu``, ``sq = xmu^2``, ``var = mean(sq)``,
    ``std = sqrt(var + eps)``, ``istd = 1/std``, ``xhat = xmu * istd``,
    ``y = gamma * xhat + beta``; each line below reverses one node (docs/derivations.md).
    Always NumPy: it is the derivation, not the fast path (that is
    :func:`batchnorm_backward_alt`).
    """
    if not isinstance(cache, NormCache) or cache.kind != BATCH or cache.x.ndim != 2:
        raise ValueError(
            "batchnorm_backward: expected the cache of batchnorm_forward ((N, D) input); use "
            "spatial_batchnorm_backward, layernorm_backward or spatial_groupnorm_backward for "
            "the others"
        )
    check_dout(dout, cache.x.shape)
    if not cache.train:
        return norm_backward(dout, cache)
    x = cache.x.astype(np.float64)  # (N, D)
    dout = np.asarray(dout, dtype=np.float64)  # (N, D)
    N = x.shape[0]
    mu, var, eps = cache.mean, cache.var, cache.eps  # (D,), (D,)
    gamma = cache.gamma.astype(np.float64)  # (D,)
    # forward nodes
    xmu = x - mu  # (N, D)
    std = np.sqrt(var + eps)  # (D,)
    istd = 1.0 / std  # (D,)
    xhat = xmu * istd  # (N, D)
    # y = gamma * xhat + beta
    dbeta = dout.sum(axis=0)  # (D,)
    dgamma = (dout * xhat).sum(axis=0)  # (D,)
    dxhat = dout * gamma  # (N, D)
    # xhat = xmu * istd
    distd = (dxhat * xmu).sum(axis=0)  # (D,)
    dxmu = dxhat * istd  # (N, D), first path into xmu
    # istd = 1 / std
    dstd = -distd / std**2  # (D,)
    # std = sqrt(var + eps)
    dvar = 0.5 * dstd / std  # (D,)
    # var = mean(sq), sq = xmu^2
    dsq = np.broadcast_to(dvar / N, x.shape)  # (N, D)
    dxmu = dxmu + 2.0 * xmu * dsq  # (N, D), second path into xmu
    # xmu = x - mu, mu = mean(x)
    dmu = -dxmu.sum(axis=0)  # (D,)
    dx = dxmu + dmu / N  # (N, D)
    g = cache.gamma
    return dx.astype(cache.x.dtype), dgamma.astype(g.dtype), dbeta.astype(g.dtype)


# The closed-form backwards are norm_backward itself, as for every normalization: the cache
# knows the axes of its statistics.
batchnorm_backward_alt = norm_backward


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    """Spatial batch normalization of (N, C, H, W) input, statistics per channel.

    Each channel is normalized over the N*H*W values it has in the batch; otherwise exactly
    :func:`batchnorm_forward` (same ``bn_param`` keys and conventions).

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
    gamma, beta : ndarray of shape (C,)
    bn_param : dict
        As for :func:`batchnorm_forward`; running statistics have shape (C,).

    Returns
    -------
    out : ndarray of shape (N, C, H, W)
    cache : NormCache

    Raises
    ------
    NonFiniteStatisticsError
        In train mode, when a channel's batch mean or variance is NaN or inf; the message
        names the channels and the running statistics are left unchanged (as for
        :func:`batchnorm_forward`).
    ValueError
        Bad shapes, dtypes or ``bn_param`` values, or an unknown ``bn_param`` key.
    """
    return _bn_forward(x, gamma, beta, bn_param, "spatial_batchnorm_forward", 4, "(N, C, H, W)")


spatial_batchnorm_backward = norm_backward
