"""darknet's batch-norm layer, reproduced exactly: forward, rolling statistics and backward.

A transcription of pjreddie/darknet's CPU path (``src/batchnorm_layer.c``: forward_batchnorm_layer,
backward_batchnorm_layer, backward_scale_cpu, mean_delta_cpu, variance_delta_cpu,
normalize_delta_cpu; ``src/blas.c``: mean_cpu, variance_cpu, normalize_cpu, scal_cpu, axpy_cpu;
``src/convolutional_layer.c``: scale_bias, add_bias, backward_bias), so that what people read
about it can be run. It is *not* normlab's batch norm, and its backward is not the gradient of
its forward: the forward normalizes with the unbiased variance and adds ``1e-6`` to the standard
deviation, the backward differentiates ``(x - mu) / sqrt(var + 1e-5)`` with the biased variance's
``1/m`` (docs/derivations.md, "darknet's batch norm"). Use :func:`batchnorm_forward` to train;
use this to reproduce darknet or to measure what its backward costs.

Each line below names the darknet function it comes from. darknet computes in float32 with
some intermediate products in double; this transcription computes in float64 and returns the
input's dtype, so it matches darknet's formulas, not its float32 rounding.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from normlab.layers._checks import (
    as_float_array,
    check_channel_param,
    check_finite_stats,
    check_keys,
    check_mode,
)
from normlab.layers.norm_core import check_dout

# darknet's constants: fixed in its source, so not bn_param keys
ROLLING_OLD = 0.99  # forward_batchnorm_layer: scal_cpu(l.out_c, .99, l.rolling_mean, 1)
ROLLING_NEW = 0.01  # forward_batchnorm_layer: axpy_cpu(l.out_c, .01, l.mean, 1, l.rolling_mean, 1)
FORWARD_EPS = 1e-6  # normalize_cpu: (x - mean) / (sqrt(variance) + .000001f)
BACKWARD_EPS = 1e-5  # mean_delta_cpu, variance_delta_cpu, normalize_delta_cpu: variance + .00001f

DARKNET_BN_KEYS = frozenset(("mode", "running_mean", "running_var"))


class DarknetBNCache(NamedTuple):
    """What :func:`darknet_batchnorm_backward` needs (darknet's ``l.x``, ``l.x_norm``, ...).

    Attributes
    ----------
    x : ndarray
        The input as given, (N, D) or (N, C, H, W) (darknet's ``l.x``).
    gamma : ndarray of shape (C,)
        The scale (darknet's ``l.scales``).
    mean, var : ndarray of float64, shape (C,)
        The statistics the forward normalized with: the batch mean and *unbiased* variance in
        train mode, ``running_mean`` / ``running_var`` in test mode (what
        backward_batchnorm_layer substitutes when ``!net.train``).
    x_norm : ndarray of float64, shape (N, C, S)
        The normalized input (darknet's ``l.x_norm``), S = H*W (1 for (N, D) input).
    eps : float
        The backward's eps, added to the variance (``BACKWARD_EPS``).
    train : bool
    """

    x: np.ndarray
    gamma: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    x_norm: np.ndarray
    eps: float
    train: bool


def _running(bn_param: dict, C: int, dtype, fn: str) -> tuple[np.ndarray, np.ndarray]:
    """``running_mean``, ``running_var`` of bn_param, created as zeros (make_batchnorm_layer)."""
    out = []
    for key in ("running_mean", "running_var"):
        r = bn_param.get(key)
        if r is None:
            r = bn_param[key] = np.zeros(C, dtype=dtype)  # calloc in make_batchnorm_layer
        elif not isinstance(r, np.ndarray) or r.shape != (C,) or r.dtype.kind != "f":
            got = f"{r.shape} {r.dtype}" if isinstance(r, np.ndarray) else type(r).__name__
            raise ValueError(
                f"{fn}: expected bn_param[{key!r}] a float array of shape ({C},), got {got}"
            )
        out.append(r)  # updated in place: the caller's array is darknet's l.rolling_*
    return out[0], out[1]


def darknet_batchnorm_forward(x, gamma, beta, bn_param):
    """darknet's batch normalization (forward_batchnorm_layer), per channel over N, H, W.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W) or (N, D)
        (N, D) is darknet's CONNECTED layer with ``batch_normalize``: D channels of 1x1.
    gamma : ndarray of shape (C,)
        Scale (darknet's ``scales``, initialised to ones).
    beta : ndarray of shape (C,)
        Shift (darknet's ``biases``, initialised to zeros).
    bn_param : dict
        ``mode`` : 'train' | 'test' (required);
        ``running_mean``, ``running_var`` : ndarray of shape (C,), created as zeros when absent
        (darknet's ``rolling_mean``, ``rolling_variance``) and updated in place in train mode.
        No other key: darknet's momentum and eps are fixed in its source.

    Returns
    -------
    out : ndarray, shape and dtype of x
    cache : DarknetBNCache
        For :func:`darknet_batchnorm_backward`.

    Raises
    ------
    NonFiniteStatisticsError
        In train mode, when a channel's batch mean or variance is NaN or inf; the running
        statistics are left unchanged.
    ValueError
        Bad shapes or dtypes, fewer than 2 values per channel in train mode (the unbiased
        variance divides by m - 1), or a ``bn_param`` key other than the three above.

    Notes
    -----
    Train mode, with ``m = N*H*W`` values per channel::

        mu  = 1/m sum x_i                              (blas.c mean_cpu)
        var = 1/(m - 1) sum (x_i - mu)^2               (blas.c variance_cpu: unbiased)
        rolling = 0.99 * rolling + 0.01 * batch        (forward_batchnorm_layer; var unbiased)
        x_norm = (x - mu) / (sqrt(var) + 1e-6)         (blas.c normalize_cpu)
        y = gamma * x_norm + beta                      (scale_bias, add_bias)

    Test mode normalizes with the rolling statistics in the same formula (eps still added to
    the standard deviation). normlab's ``batchnorm_forward`` with ``momentum=0.99`` and
    ``running_var_unbiased=True`` keeps the same running statistics but normalizes with the
    biased variance and ``sqrt(var + eps)`` (docs/conventions.md).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(2, 3, size=(8, 4, 5, 5))
    >>> bn_param = {"mode": "train"}
    >>> out, _ = darknet_batchnorm_forward(x, np.ones(4), np.zeros(4), bn_param)
    >>> bool(np.allclose(out.std(axis=(0, 2, 3), ddof=1), 1, atol=1e-5))
    True
    >>> bool(np.allclose(bn_param["running_mean"], 0.01 * x.mean(axis=(0, 2, 3))))
    True
    """
    fn = "darknet_batchnorm_forward"
    x = as_float_array(x, fn)
    if x.ndim not in (2, 4):
        raise ValueError(f"{fn}: expected x of shape (N, D) or (N, C, H, W), got {x.shape}")
    N, C = x.shape[:2]
    gamma = check_channel_param(gamma, C, fn, "gamma")
    beta = check_channel_param(beta, C, fn, "beta")
    mode = check_mode(bn_param, fn)
    check_keys(bn_param, DARKNET_BN_KEYS, fn, "bn_param")
    rolling_mean, rolling_var = _running(bn_param, C, x.dtype, fn)

    x3 = x.reshape(N, C, -1).astype(np.float64)  # (N, C, S): batch, filters, spatial
    if mode == "train":
        m = x3.shape[0] * x3.shape[2]  # batch * spatial
        if m < 2:
            raise ValueError(
                f"{fn}: expected more than 1 value per channel when training (the unbiased "
                f"variance divides by m - 1), got input of shape {x.shape}; use a batch of at "
                "least 2 samples or mode='test'"
            )
        mean = x3.sum(axis=(0, 2)) * (1.0 / m)  # (C,) mean_cpu: scale = 1./(batch*spatial)
        xmu = x3 - mean[:, None]  # (N, C, S)
        var = (xmu**2).sum(axis=(0, 2)) * (1.0 / (m - 1))  # (C,) variance_cpu: 1./(m - 1)
        check_finite_stats(mean, var, fn, "channels", running=True)  # before the rolling update
        # forward_batchnorm_layer: scal_cpu(.99, rolling) then axpy_cpu(.01, batch, rolling)
        rolling_mean *= ROLLING_OLD
        rolling_mean += ROLLING_NEW * mean
        rolling_var *= ROLLING_OLD
        rolling_var += ROLLING_NEW * var
    else:
        mean = rolling_mean.astype(np.float64)  # (C,) normalize_cpu(..., l.rolling_mean, ...)
        var = rolling_var.astype(np.float64)  # (C,) ... l.rolling_variance
        xmu = x3 - mean[:, None]  # (N, C, S)
    x_norm = xmu / (np.sqrt(var)[:, None] + FORWARD_EPS)  # (N, C, S) normalize_cpu
    g = gamma.astype(np.float64)[:, None]  # (C, 1)
    out = g * x_norm + beta.astype(np.float64)[:, None]  # (N, C, S) scale_bias, add_bias
    cache = DarknetBNCache(x, gamma, mean, var, x_norm, BACKWARD_EPS, mode == "train")
    return out.reshape(x.shape).astype(x.dtype), cache


def darknet_batchnorm_backward(dout, cache: DarknetBNCache):
    """darknet's batch-norm backward (backward_batchnorm_layer), line for line.

    Parameters
    ----------
    dout : ndarray, shape of the forward's x
        The gradient of the loss with respect to the output. (darknet's ``l.delta`` holds the
        *negative* gradient; every step below is linear in it, so the sign carries through.)
    cache : DarknetBNCache from :func:`darknet_batchnorm_forward`

    Returns
    -------
    dx : ndarray, shape and dtype of x
        darknet's ``net.delta`` for this layer: **not** the gradient of the forward (Notes).
    dgamma, dbeta : ndarray of shape (C,)
        darknet's ``scale_updates``, ``bias_updates`` for this batch; these two are the exact
        gradients of the forward.

    Notes
    -----
    With ``g = gamma * dout``, ``m = N*H*W`` and ``var`` the unbiased variance of the forward::

        dbeta      = sum dout                                   (backward_bias)
        dgamma     = sum dout * x_norm                          (backward_scale_cpu)
        mean_delta = -sum g / sqrt(var + 1e-5)                  (mean_delta_cpu)
        var_delta  = -1/2 (var + 1e-5)^(-3/2) sum g (x - mu)    (variance_delta_cpu)
        dx = g / sqrt(var + 1e-5) + var_delta * 2 (x - mu) / m + mean_delta / m
                                                                (normalize_delta_cpu)

    That is the gradient of ``(x - mu) / sqrt(v + 1e-5)`` with ``v = 1/m sum (x - mu)^2``,
    evaluated at the unbiased ``var`` in place of ``v``. The gradient of the forward actually
    computed, ``(x - mu) / (sqrt(var) + 1e-6)``, has ``1/((m - 1) s (s + 1e-6))`` where this
    has ``1/(m (var + 1e-5))`` in front of the ``x_norm`` term (``s = sqrt(var)``): for
    ``var >> 1e-5`` the two differ by ``gamma/s * xhat * sum(dout * xhat) / (m (m - 1))``,
    ``xhat = (x - mu)/s``, a relative error of order ``m^-3/2`` for a random ``dout``; for
    ``var`` near or below ``1e-5`` the eps terms dominate and the error does not shrink with
    ``m`` (docs/derivations.md). In test mode darknet substitutes the rolling statistics and
    keeps the mean and variance terms, although its statistics no longer depend on ``x``;
    this does the same.
    """
    if not isinstance(cache, DarknetBNCache):
        raise ValueError(
            "darknet_batchnorm_backward: expected the cache of darknet_batchnorm_forward, got "
            f"{type(cache).__name__}"
        )
    x_in = cache.x
    check_dout(dout, x_in.shape)
    N, C = x_in.shape[:2]
    x = x_in.reshape(N, C, -1).astype(np.float64)  # (N, C, S) l.x
    delta = np.asarray(dout, dtype=np.float64).reshape(x.shape)  # (N, C, S) l.delta
    m = x.shape[0] * x.shape[2]  # spatial * batch
    mean, var, eps = cache.mean[:, None], cache.var[:, None], cache.eps  # (C, 1)
    dbeta = delta.sum(axis=(0, 2))  # (C,) backward_bias
    dgamma = (delta * cache.x_norm).sum(axis=(0, 2))  # (C,) backward_scale_cpu
    delta = delta * cache.gamma.astype(np.float64)[:, None]  # (N, C, S) scale_bias(l.delta, ...)
    # mean_delta_cpu: sum of delta, times -1./sqrt(variance + .00001f)
    mean_delta = delta.sum(axis=(0, 2))[:, None] * (-1.0 / np.sqrt(var + eps))  # (C, 1)
    # variance_delta_cpu: sum of delta * (x - mean), times -.5 * pow(variance + .00001f, -3./2.)
    variance_delta = (delta * (x - mean)).sum(axis=(0, 2))[:, None] * (
        -0.5 * (var + eps) ** -1.5
    )  # (C, 1)
    # normalize_delta_cpu
    dx = delta / np.sqrt(var + eps) + variance_delta * 2.0 * (x - mean) / m + mean_delta / m
    g = cache.gamma
    return dx.reshape(x_in.shape).astype(x_in.dtype), dgamma.astype(g.dtype), dbeta.astype(g.dtype)
