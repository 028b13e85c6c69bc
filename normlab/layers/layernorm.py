"""Layer normalization (Ba et al., 2016) and group normalization (Wu & He, 2018).

Both are the normalization core of ``norm_core`` reducing over features instead of over the
batch, so they behave identically in train and test mode and keep no running statistics.
Layer norm is group norm with one group over (N, D) input. The channel-only layer norm of
(N, C, H, W) maps (ConvNeXt's ``LayerNorm2d``) is layer norm of the (N*H*W, C) matrix of
positions: the same core on a transposed copy of the map.

They have no running statistics to protect, but fail the same way as batch norm: in train mode
(``mode`` absent or ``'train'``), a sample or group whose statistics are NaN or inf raises a
``NonFiniteStatisticsError`` naming it, so that the first normalization a NaN reaches reports
it. ``mode='test'`` (what the models pass when evaluating) computes the same numbers without
the check: a diverged model then scores at chance instead of raising mid-evaluation.
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
from normlab.layers.norm_core import GROUP, NormCache, check_dout, norm_backward, norm_forward

LN_KEYS = frozenset(("mode", "eps"))
GN_KEYS = frozenset(("mode", "eps", "groups"))  # 'groups': what the models pass, == G


def _param_dict(p, fn, name, known):
    """The parameter dict (None is {}), its keys checked; whether it asks for train mode."""
    if p is None:
        return {}, True
    if not isinstance(p, dict):
        raise ValueError(f"{fn}: expected {name} to be a dict, got {type(p).__name__}")
    check_keys(p, known, fn, name)
    return p, check_mode(p, fn, required=False) == "train"


def layernorm_forward(x, gamma, beta, ln_param):
    """Layer normalization of (N, D) input: statistics per sample over its D features.

    Parameters
    ----------
    x : ndarray of shape (N, D)
    gamma, beta : ndarray of shape (D,)
    ln_param : dict
        ``eps`` : float, default 1e-5;
        ``mode`` : 'train' | 'test', default 'train' -- the same computation; only train mode
        checks that the statistics are finite.

    Returns
    -------
    out : ndarray of shape (N, D)
    cache : NormCache

    Raises
    ------
    NonFiniteStatisticsError
        A ``FloatingPointError``: in train mode, when a sample's mean or variance is NaN or inf
        (its row holds NaN or inf, or overflows); the message names the samples.
    ValueError
        Bad shapes or dtypes, bad ``eps`` or ``mode``, or a key of ``ln_param`` other than
        ``eps`` and ``mode`` (the message names it and the known keys).

    Notes
    -----
    ``mu_n = mean_d x[n, d]``, ``var_n = mean_d (x[n, d] - mu_n)^2``,
    ``out[n, d] = gamma[d] * (x[n, d] - mu_n) / sqrt(var_n + eps) + beta[d]``.
    """
    fn = "layernorm_forward"
    ln_param, train = _param_dict(ln_param, fn, "ln_param", LN_KEYS)
    x = as_float_array(x, fn)
    check_ndim(x, 2, fn, "(N, D)")
    D = x.shape[1]
    gamma = check_channel_param(gamma, D, fn, "gamma")
    beta = check_channel_param(beta, D, fn, "beta")
    eps = check_eps(ln_param.get("eps", 1e-5), fn)
    if D == 0:
        raise ValueError(
            f"{fn}: expected at least one feature (D > 0), got input of shape {x.shape}"
        )
    out, cache = norm_forward(x, gamma, beta, GROUP, eps, groups=1)
    if train:
        check_finite_stats(cache.mean[:, 0], cache.var[:, 0], fn, "samples")  # (N,)
    return out, cache


layernorm_backward = norm_backward  # closed form, as for every normalization


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    """Group normalization of (N, C, H, W) input: statistics per sample and group of C/G channels.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
    gamma, beta : ndarray of shape (C,) or (1, C, 1, 1)
        Per-channel scale and shift; their gradients come back in the shape given.
    G : int
        Number of groups; must divide C. G=1 is layer norm over (C, H, W); G=C is instance norm.
    gn_param : dict
        ``eps`` : float, default 1e-5;
        ``mode`` : 'train' | 'test', default 'train' -- as for :func:`layernorm_forward`;
        ``groups`` : int, optional -- when present (the models pass it), it must equal ``G``.

    Returns
    -------
    out : ndarray of shape (N, C, H, W)
    cache : NormCache

    Raises
    ------
    NonFiniteStatisticsError
        A ``FloatingPointError``: in train mode, when a (sample, group)'s mean or variance is
        NaN or inf; the message names the (sample, group) pairs.
    ValueError
        Bad shapes, dtypes or ``G``, bad ``eps`` or ``mode``, or an unknown ``gn_param`` key.
    """
    fn = "spatial_groupnorm_forward"
    gn_param, train = _param_dict(gn_param, fn, "gn_param", GN_KEYS)
    x = as_float_array(x, fn)
    check_ndim(x, 4, fn, "(N, C, H, W)")
    C = x.shape[1]
    if not isinstance(G, numbers.Integral) or G <= 0 or C % G:
        raise ValueError(f"{fn}: expected a number of groups G that divides C={C}, got G={G!r}")
    if gn_param.get("groups", G) != G:
        raise ValueError(f"{fn}: gn_param['groups']={gn_param['groups']!r} contradicts G={G!r}")
    gamma = check_channel_param(gamma, C, fn, "gamma", allow_4d=True)
    beta = check_channel_param(beta, C, fn, "beta", allow_4d=True)
    if beta.shape != gamma.shape:
        raise ValueError(
            f"{fn}: expected gamma and beta of the same shape, got {gamma.shape} and {beta.shape}"
        )
    eps = check_eps(gn_param.get("eps", 1e-5), fn)
    if C == 0 or x.shape[2] * x.shape[3] == 0:
        raise ValueError(
            f"{fn}: expected at least one value per group (C, H, W > 0), got input of shape "
            f"{tuple(x.shape)}"
        )
    out, cache = norm_forward(x, gamma, beta, GROUP, eps, groups=int(G))
    if train:
        check_finite_stats(cache.mean, cache.var, fn, "(sample, group) pairs")  # (N, G)
    return out, cache


spatial_groupnorm_backward = norm_backward


class SpatialLayerNormCache(NamedTuple):
    """What :func:`spatial_layernorm_backward` needs.

    Attributes
    ----------
    core : NormCache
        The layer-norm cache of the (N*H*W, C) matrix of positions; its statistics have shape
        (N*H*W, 1), one per (sample, row, column) in that order.
    shape : tuple (N, C, H, W)
        The shape of the input.
    """

    core: NormCache
    shape: tuple


def spatial_layernorm_forward(x, gamma, beta, ln_param):
    """Channel-only layer normalization of (N, C, H, W) maps: statistics per (sample, position).

    Each position ``(n, h, w)`` is normalized over its C channels, ConvNeXt's ``LayerNorm2d``
    (Liu et al., 2022). This is *not* ``GroupNorm(1, C)``, which normalizes over (C, H, W) at
    once: here every pixel has its own mean and variance.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W), float32 or float64 (integers become float64)
    gamma, beta : ndarray of shape (C,)
        Per-channel scale and shift.
    ln_param : dict or None
        ``eps`` : float, default 1e-5 (PyTorch's ``LayerNorm``; ConvNeXt passes 1e-6);
        ``mode`` : 'train' | 'test', default 'train' -- the same computation; only train mode
        checks that the statistics are finite.

    Returns
    -------
    out : ndarray of shape (N, C, H, W), dtype of x
    cache : SpatialLayerNormCache
        For :func:`spatial_layernorm_backward`.

    Raises
    ------
    NonFiniteStatisticsError
        A ``FloatingPointError``: in train mode, when a position's mean or variance is NaN or
        inf; the message names the (sample, row, column) positions.
    ValueError
        Bad shapes or dtypes, ``C = 0``, bad ``eps`` or ``mode``, or a key of ``ln_param``
        other than ``eps`` and ``mode`` (the message names it and the known keys).

    Notes
    -----
    For each ``n, h, w``, over the channels ``c``::

        mu = mean_c x[n, c, h, w],   var = mean_c (x[n, c, h, w] - mu)^2,
        out[n, c, h, w] = gamma[c] * (x[n, c, h, w] - mu) / sqrt(var + eps) + beta[c]

    Computed as timm's ``LayerNorm2d`` does: permute to (N, H, W, C), layer norm of the rows,
    permute back. Equals ``F.layer_norm(x.permute(0, 2, 3, 1), (C,), gamma, beta, eps)
    .permute(0, 3, 1, 2)``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(2, 3, size=(2, 8, 3, 3))
    >>> out, _ = spatial_layernorm_forward(x, np.ones(8), np.zeros(8), {})
    >>> bool(np.allclose(out.mean(axis=1), 0))
    True
    """
    fn = "spatial_layernorm_forward"
    ln_param, train = _param_dict(ln_param, fn, "ln_param", LN_KEYS)
    x = as_float_array(x, fn)
    check_ndim(x, 4, fn, "(N, C, H, W)")
    N, C, H, W = x.shape
    gamma = check_channel_param(gamma, C, fn, "gamma")
    beta = check_channel_param(beta, C, fn, "beta")
    eps = check_eps(ln_param.get("eps", 1e-5), fn)
    if C == 0:
        raise ValueError(
            f"{fn}: expected at least one channel (C > 0), got input of shape {tuple(x.shape)}"
        )
    rows = x.transpose(0, 2, 3, 1).reshape(N * H * W, C)  # (N*H*W, C), a copy
    out, core = norm_forward(rows, gamma, beta, GROUP, eps, groups=1)  # stats (N*H*W, 1)
    if train:
        pos = (N, H, W)
        check_finite_stats(
            core.mean.reshape(pos), core.var.reshape(pos), fn, "(sample, row, column) positions"
        )
    out = np.ascontiguousarray(out.reshape(N, H, W, C).transpose(0, 3, 1, 2))  # (N, C, H, W)
    return out, SpatialLayerNormCache(core, x.shape)


def spatial_layernorm_backward(dout, cache: SpatialLayerNormCache):
    """Backward of :func:`spatial_layernorm_forward`: layer norm's, on the transposed maps.

    Parameters
    ----------
    dout : ndarray of shape (N, C, H, W)
    cache : SpatialLayerNormCache
        From the forward.

    Returns
    -------
    dx : ndarray of shape (N, C, H, W), dtype of x
    dgamma, dbeta : ndarray of shape (C,), dtype of gamma

    Notes
    -----
    Per position, over its C channels, with ``g = dout * gamma``: ``dx = (g - mean_c(g) -
    xhat * mean_c(g * xhat)) / sqrt(var + eps)``; ``dgamma = sum(dout * xhat)``,
    ``dbeta = sum(dout)`` over samples and positions (docs/derivations.md, section 6).
    """
    if not isinstance(cache, SpatialLayerNormCache):
        raise ValueError(
            f"spatial_layernorm_backward: expected the cache of spatial_layernorm_forward (a "
            f"SpatialLayerNormCache), got {type(cache).__name__}"
        )
    check_dout(dout, cache.shape)
    N, C, H, W = cache.shape
    rows = np.asarray(dout).transpose(0, 2, 3, 1).reshape(N * H * W, C)  # (N*H*W, C)
    drows, dgamma, dbeta = norm_backward(rows, cache.core)
    dx = np.ascontiguousarray(drows.reshape(N, H, W, C).transpose(0, 3, 1, 2))  # (N, C, H, W)
    return dx, dgamma, dbeta
