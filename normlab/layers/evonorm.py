"""EvoNorm-B0 and EvoNorm-S0 (Liu et al., 2020) of (N, C, H, W) input.

Normalization and activation in one layer, found by evolution. Neither is the mean-and-variance
core of ``norm_core``: B0 divides by the larger of a batch and an instance denominator, S0
multiplies by a sigmoid gate before dividing by a group standard deviation, and neither centres
``x``. Both are written plainly here, with backwards derived by hand (``docs/derivations.md``).

The formulas are timm's ``EvoNorm2dB0`` and ``EvoNorm2dS0``; the conventions are normlab's
(``docs/conventions.md``):

* B0's ``momentum`` is the weight of the *old* running value, as in ``bn_param`` (timm's
  ``momentum=0.1`` is normlab's 0.9). The running variance is biased unless
  ``running_var_unbiased=True`` (timm: unbiased, ``m / (m - 1)`` with ``m = N*H*W``), and starts
  at zeros when absent (timm starts it at ones: pass ``running_var=np.ones(C)``).
* ``eps`` defaults to timm's: 1e-3 for B0 (inside both square roots), 1e-5 for S0.
* Normalization always uses biased variances, taken in float64; outputs and gradients come back
  in the dtypes given.
* A train-mode batch whose statistics are not finite is refused with a
  ``NonFiniteStatisticsError``, for B0 before the running variance is touched.
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
    check_momentum,
    check_ndim,
)
from normlab.layers.layernorm import _param_dict
from normlab.layers.norm_core import check_dout

B0_KEYS = frozenset(("mode", "eps", "momentum", "running_var", "running_var_unbiased"))
S0_KEYS = frozenset(("mode", "eps", "groups"))  # 'groups': what the models pass, == G


class EvoNormB0Cache(NamedTuple):
    """What :func:`spatial_evonorm_b0_backward` needs.

    Attributes
    ----------
    x : ndarray of shape (N, C, H, W)
        The input, in its dtype.
    gamma, v : ndarray of shape (C,)
        As given (their dtypes are those of the gradients).
    inst_mean, inst_std : ndarray of shape (N, C), float64
        Mean and ``sqrt(var + eps)`` of each (sample, channel) over its H*W positions.
    batch_mean : ndarray of shape (C,), float64, or None
        Mean of each channel over (N, H, W) in train mode; None in test mode, where the batch
        denominator is a constant.
    left_std : ndarray of shape (C,), float64
        ``sqrt(var + eps)`` of the batch (train) or of the running variance (test).
    beta_dtype : numpy dtype
        The dtype of ``dbeta``.
    """

    x: np.ndarray
    gamma: np.ndarray
    v: np.ndarray
    inst_mean: np.ndarray
    inst_std: np.ndarray
    batch_mean: np.ndarray | None
    left_std: np.ndarray
    beta_dtype: np.dtype


class EvoNormS0Cache(NamedTuple):
    """What :func:`spatial_evonorm_s0_backward` needs.

    Attributes
    ----------
    x : ndarray of shape (N, C, H, W)
        The input, in its dtype.
    gamma, v : ndarray of shape (C,)
        As given (their dtypes are those of the gradients).
    group_mean, group_std : ndarray of shape (N, G), float64
        Mean and ``sqrt(var + eps)`` of each (sample, group) over its (C/G, H, W) values.
    beta_dtype : numpy dtype
        The dtype of ``dbeta``.
    """

    x: np.ndarray
    gamma: np.ndarray
    v: np.ndarray
    group_mean: np.ndarray
    group_std: np.ndarray
    beta_dtype: np.dtype


def _sigmoid(z):
    """``1 / (1 + exp(-z))`` without overflow for large ``|z|``."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _mean_var(x64, axes):
    """Mean and biased variance over ``axes`` (two passes, float64); NaN/inf pass silently."""
    with np.errstate(invalid="ignore", over="ignore"):  # the finite check names them
        mean = x64.mean(axis=axes, keepdims=True)
        var = ((x64 - mean) ** 2).mean(axis=axes)
    return mean.reshape(var.shape), var


def _channel_params(x, params, fn):
    """Check ``gamma``, ``beta``, ``v`` (each (C,)) against the channels of ``x``."""
    C = x.shape[1]
    return [check_channel_param(p, C, fn, name) for name, p in params]


def _running_var(bn_param, C, dtype, fn):
    """``bn_param['running_var']`` of shape (C,), created as zeros when absent."""
    r = bn_param.get("running_var")
    if r is None:
        r = bn_param["running_var"] = np.zeros(C, dtype=dtype)
    elif not isinstance(r, np.ndarray) or r.shape != (C,) or r.dtype.kind != "f":
        got = f"{r.shape} {r.dtype}" if isinstance(r, np.ndarray) else type(r).__name__
        raise ValueError(
            f"{fn}: expected bn_param['running_var'] a float array of shape ({C},), got {got}"
        )
    return r  # updated in place: the caller's array is the statistic


def _flag(param, key, fn, name):
    """``param[key]`` as a bool (default False); anything but True/False is refused."""
    val = param.get(key, False)
    if not isinstance(val, bool | np.bool_):
        raise ValueError(f"{fn}: expected {name}[{key!r}] to be True or False, got {val!r}")
    return bool(val)


def spatial_evonorm_b0_forward(x, gamma, beta, v, bn_param):
    """EvoNorm-B0 of (N, C, H, W) input: divide by the larger of a batch and an instance term.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W), float32 or float64 (integers become float64)
    gamma, beta : ndarray of shape (C,)
        Scale and shift (timm's ``weight`` and ``bias``; ones and zeros initially).
    v : ndarray of shape (C,)
        The instance term's weight on ``x`` (ones initially, as in timm).
    bn_param : dict
        ``mode`` : 'train' | 'test' (required);
        ``eps`` : float, default 1e-3 (timm's) -- inside both square roots;
        ``momentum`` : float in [0, 1], default 0.9 -- weight of the old running value;
        ``running_var`` : ndarray of shape (C,), created as zeros when absent, updated in place
        in train mode, used in test mode;
        ``running_var_unbiased`` : bool, default False -- store the batch variance with the
        ``m / (m - 1)`` factor, ``m = N*H*W`` (what timm does).

    Returns
    -------
    out : ndarray of shape (N, C, H, W), dtype of x
    cache : EvoNormB0Cache
        For :func:`spatial_evonorm_b0_backward`.

    Raises
    ------
    NonFiniteStatisticsError
        A ``FloatingPointError``: in train mode, when a channel's batch mean or variance is NaN
        or inf; the message names the channels, and ``running_var`` is left unchanged, bit for
        bit. Test mode does not check.
    ValueError
        Bad shapes, dtypes or ``bn_param`` values; an empty input; one value per channel in
        train mode; or a key of ``bn_param`` not listed above (the message names it and the
        known keys; B0 keeps no running mean).

    Notes
    -----
    Liu et al. 2020, Table 1 (timm's ``EvoNorm2dB0``), biased variances, statistics in float64::

        left[c]        = sqrt(var_{n,h,w} x[:, c] + eps)          train; test: running_var
        right[n, c, :] = v[c] * x[n, c] + sqrt(var_{h,w} x[n, c] + eps)
        out = gamma * x / max(left, right) + beta

    Train mode then updates
    ``running_var = momentum * running_var + (1 - momentum) * f * var_batch``,
    ``f = m / (m - 1)`` if ``running_var_unbiased`` else 1.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(4, 3, 5, 5))
    >>> C = x.shape[1]
    >>> p = {"mode": "train"}
    >>> out, _ = spatial_evonorm_b0_forward(x, np.ones(C), np.zeros(C), np.ones(C), p)
    >>> out.shape, p["running_var"].shape
    ((4, 3, 5, 5), (3,))
    """
    fn = "spatial_evonorm_b0_forward"
    if not isinstance(bn_param, dict):
        raise ValueError(f"{fn}: expected bn_param to be a dict, got {type(bn_param).__name__}")
    check_keys(bn_param, B0_KEYS, fn, "bn_param")
    mode = check_mode(bn_param, fn)
    x = as_float_array(x, fn)
    check_ndim(x, 4, fn, "(N, C, H, W)")
    N, C, H, W = x.shape
    gamma, beta, v = _channel_params(x, [("gamma", gamma), ("beta", beta), ("v", v)], fn)
    eps = check_eps(bn_param.get("eps", 1e-3), fn)
    momentum = check_momentum(bn_param.get("momentum", 0.9), fn)
    unbiased = _flag(bn_param, "running_var_unbiased", fn, "bn_param")
    if x.size == 0:
        raise ValueError(f"{fn}: expected a non-empty input, got shape {tuple(x.shape)}")
    running_var = _running_var(bn_param, C, x.dtype, fn)
    m = N * H * W  # values per channel
    if mode == "train" and m < 2:
        raise ValueError(
            f"{fn}: expected more than 1 value per channel when training, got input of shape "
            f"{tuple(x.shape)}; use a batch of at least 2 samples or mode='test'"
        )

    x64 = x.astype(np.float64)  # (N, C, H, W)
    if mode == "train":
        batch_mean, batch_var = _mean_var(x64, (0, 2, 3))  # (C,), (C,)
        check_finite_stats(batch_mean, batch_var, fn, "channels", running=True)
        factor = m / (m - 1) if unbiased else 1.0
        # in place, after the check: a refused batch leaves the running variance untouched
        running_var[...] = momentum * running_var + (1.0 - momentum) * factor * batch_var
        left_std = np.sqrt(batch_var + eps)  # (C,)
    else:
        batch_mean = None
        left_std = np.sqrt(running_var.astype(np.float64) + eps)  # (C,)
    inst_mean, inst_var = _mean_var(x64, (2, 3))  # (N, C), (N, C)
    inst_std = np.sqrt(inst_var + eps)  # (N, C)

    v64 = v.astype(np.float64)[:, None, None]  # (C, 1, 1)
    right = v64 * x64 + inst_std[:, :, None, None]  # (N, C, H, W)
    denom = np.maximum(left_std[:, None, None], right)  # (N, C, H, W)
    out = gamma.astype(np.float64)[:, None, None] * (x64 / denom) + beta[:, None, None]
    cache = EvoNormB0Cache(x, gamma, v, inst_mean, inst_std, batch_mean, left_std, beta.dtype)
    return out.astype(x.dtype), cache


def spatial_evonorm_b0_backward(dout, cache: EvoNormB0Cache):
    """Backward of :func:`spatial_evonorm_b0_forward`.

    Parameters
    ----------
    dout : ndarray of shape (N, C, H, W)
        Upstream gradient.
    cache : EvoNormB0Cache
        From the forward.

    Returns
    -------
    dx : ndarray of shape (N, C, H, W), dtype of x
    dgamma, dbeta, dv : ndarray of shape (C,), dtypes of gamma, beta, v

    Notes
    -----
    With ``D = max(left, right)``, ``xn = x / D``, ``g = dout * gamma`` and ``dD = -g * x / D^2``,
    the gradient goes to the larger branch element by element (``a = 1`` where
    ``left > right``, 0 where ``left < right``, 1/2 on a tie, as PyTorch's ``maximum``)::

        dright = (1 - a) * dD,   dv = sum_{n,h,w} dright * x
        dx = g / D + v * dright
             + (x - inst_mean) * sum_{h,w}(dright) / (H*W * inst_std)
             + (x - batch_mean) * sum_{n,h,w}(a * dD) / (N*H*W * left_std)   (train only)

    ``dgamma = sum dout * xn``, ``dbeta = sum dout`` (docs/derivations.md).
    """
    if not isinstance(cache, EvoNormB0Cache):
        raise ValueError(
            f"spatial_evonorm_b0_backward: expected the cache of spatial_evonorm_b0_forward (an "
            f"EvoNormB0Cache), got {type(cache).__name__}"
        )
    check_dout(dout, cache.x.shape)
    N, C, H, W = cache.x.shape
    dy = np.asarray(dout, dtype=np.float64)  # (N, C, H, W)
    x = cache.x.astype(np.float64)  # (N, C, H, W)
    gamma = cache.gamma.astype(np.float64)[:, None, None]  # (C, 1, 1)
    v = cache.v.astype(np.float64)[:, None, None]  # (C, 1, 1)
    inst_std = cache.inst_std[:, :, None, None]  # (N, C, 1, 1)
    left = cache.left_std[:, None, None]  # (C, 1, 1)
    # forward nodes
    right = v * x + inst_std  # (N, C, H, W)
    denom = np.maximum(left, right)  # (N, C, H, W)
    xn = x / denom  # (N, C, H, W)
    # out = gamma * xn + beta
    dbeta = dy.sum(axis=(0, 2, 3))  # (C,)
    dgamma = (dy * xn).sum(axis=(0, 2, 3))  # (C,)
    g = dy * gamma  # (N, C, H, W), dL/dxn
    # xn = x / denom
    dx = g / denom  # (N, C, H, W), direct path
    ddenom = -g * xn / denom  # (N, C, H, W), -g * x / denom^2
    # denom = max(left, right): the larger branch takes it; a tie splits it (PyTorch's rule)
    a = (left > right) + 0.5 * (left == right)  # (N, C, H, W), share of the left branch
    dright = (1.0 - a) * ddenom  # (N, C, H, W)
    # right = v * x + inst_std
    dv = (dright * x).sum(axis=(0, 2, 3))  # (C,)
    dx += v * dright
    dinst_std = dright.sum(axis=(2, 3))  # (N, C)
    # inst_std = sqrt(inst_var + eps), inst_var = mean_{h,w} (x - inst_mean)^2;
    # d(var)/d(mean) = 0, so the mean adds no path
    dinst_var = dinst_std / (2.0 * cache.inst_std)  # (N, C)
    xc = x - cache.inst_mean[:, :, None, None]  # (N, C, H, W)
    dx += xc * (2.0 * dinst_var / (H * W))[:, :, None, None]
    if cache.batch_mean is not None:  # train: left = sqrt(batch_var + eps) depends on x
        dleft = (a * ddenom).sum(axis=(0, 2, 3))  # (C,)
        dbatch_var = dleft / (2.0 * cache.left_std)  # (C,)
        xb = x - cache.batch_mean[:, None, None]  # (N, C, H, W)
        dx += xb * (2.0 * dbatch_var / (N * H * W))[:, None, None]
    return (
        dx.astype(cache.x.dtype),
        dgamma.astype(cache.gamma.dtype),
        dbeta.astype(cache.beta_dtype),
        dv.astype(cache.v.dtype),
    )


def spatial_evonorm_s0_forward(x, gamma, beta, v, G, gn_param):
    """EvoNorm-S0 of (N, C, H, W) input: a sigmoid-gated ``x`` over its group standard deviation.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W), float32 or float64 (integers become float64)
    gamma, beta : ndarray of shape (C,)
        Scale and shift (timm's ``weight`` and ``bias``; ones and zeros initially).
    v : ndarray of shape (C,)
        The gate's weight on ``x`` (ones initially, as in timm).
    G : int
        Number of groups; must divide C (timm's ``groups``, default 32 there).
    gn_param : dict or None
        ``eps`` : float, default 1e-5 (timm's);
        ``mode`` : 'train' | 'test', default 'train' -- the same computation; only train mode
        checks that the statistics are finite;
        ``groups`` : int, optional -- when present (the models pass it), it must equal ``G``.

    Returns
    -------
    out : ndarray of shape (N, C, H, W), dtype of x
    cache : EvoNormS0Cache
        For :func:`spatial_evonorm_s0_backward`.

    Raises
    ------
    NonFiniteStatisticsError
        A ``FloatingPointError``: in train mode, when a (sample, group)'s mean or variance is
        NaN or inf; the message names the (sample, group) pairs.
    ValueError
        Bad shapes, dtypes or ``G``, an empty input, bad ``eps`` or ``mode``, or a key of
        ``gn_param`` other than ``eps``, ``mode`` and ``groups`` (the message names it and the
        known keys).

    Notes
    -----
    Liu et al. 2020, Table 1 (timm's ``EvoNorm2dS0``), biased variance, statistics in float64;
    for each sample ``n`` and group ``k`` of C/G channels::

        s[n, k] = sqrt(var_{c in k, h, w} x[n, c] + eps)
        out[n, c] = gamma[c] * x[n, c] * sigmoid(v[c] * x[n, c]) / s[n, k] + beta[c]

    ``x`` is not centred: only the standard deviation is taken from the group.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(2, 4, 3, 3))
    >>> out, _ = spatial_evonorm_s0_forward(x, np.ones(4), np.zeros(4), np.ones(4), 2, {})
    >>> out.shape
    (2, 4, 3, 3)
    """
    fn = "spatial_evonorm_s0_forward"
    gn_param, train = _param_dict(gn_param, fn, "gn_param", S0_KEYS)
    x = as_float_array(x, fn)
    check_ndim(x, 4, fn, "(N, C, H, W)")
    N, C, H, W = x.shape
    if not isinstance(G, numbers.Integral) or G <= 0 or C % G:
        raise ValueError(
            f"{fn}: expected a number of groups G that divides C={C}, got G={G!r}; pick a "
            f"divisor of C"
        )
    if gn_param.get("groups", G) != G:
        raise ValueError(f"{fn}: gn_param['groups']={gn_param['groups']!r} contradicts G={G!r}")
    gamma, beta, v = _channel_params(x, [("gamma", gamma), ("beta", beta), ("v", v)], fn)
    eps = check_eps(gn_param.get("eps", 1e-5), fn)
    if x.size == 0:
        raise ValueError(
            f"{fn}: expected at least one value per group (N, C, H, W > 0), got input of shape "
            f"{tuple(x.shape)}"
        )
    G = int(G)
    x64 = x.astype(np.float64)  # (N, C, H, W)
    xg = x64.reshape(N, G, C // G * H * W)  # (N, G, K), a view
    group_mean, group_var = _mean_var(xg, (2,))  # (N, G), (N, G)
    if train:
        check_finite_stats(group_mean, group_var, fn, "(sample, group) pairs")
    group_std = np.sqrt(group_var + eps)  # (N, G)
    std = np.repeat(group_std, C // G, axis=1)[:, :, None, None]  # (N, C, 1, 1)
    gate = _sigmoid(v.astype(np.float64)[:, None, None] * x64)  # (N, C, H, W)
    out = gamma.astype(np.float64)[:, None, None] * (x64 * gate / std) + beta[:, None, None]
    cache = EvoNormS0Cache(x, gamma, v, group_mean, group_std, beta.dtype)
    return out.astype(x.dtype), cache


def spatial_evonorm_s0_backward(dout, cache: EvoNormS0Cache):
    """Backward of :func:`spatial_evonorm_s0_forward`.

    Parameters
    ----------
    dout : ndarray of shape (N, C, H, W)
        Upstream gradient.
    cache : EvoNormS0Cache
        From the forward.

    Returns
    -------
    dx : ndarray of shape (N, C, H, W), dtype of x
    dgamma, dbeta, dv : ndarray of shape (C,), dtypes of gamma, beta, v

    Notes
    -----
    With ``sg = sigmoid(v * x)``, ``xn = x * sg / s``, ``g = dout * gamma`` and, per (sample,
    group) of ``K = C/G*H*W`` values, ``ds = -sum(g * xn) / s``::

        dnum = g / s                                   (num = x * sg)
        dv = sum_{n,h,w} dnum * x^2 * sg * (1 - sg)
        dx = dnum * (sg + v * x * sg * (1 - sg)) + (x - group_mean) * ds / (K * s)

    ``dgamma = sum dout * xn``, ``dbeta = sum dout`` (docs/derivations.md).
    """
    if not isinstance(cache, EvoNormS0Cache):
        raise ValueError(
            f"spatial_evonorm_s0_backward: expected the cache of spatial_evonorm_s0_forward (an "
            f"EvoNormS0Cache), got {type(cache).__name__}"
        )
    check_dout(dout, cache.x.shape)
    N, C, H, W = cache.x.shape
    G = cache.group_std.shape[1]
    K = C // G * H * W  # values per (sample, group)
    dy = np.asarray(dout, dtype=np.float64)  # (N, C, H, W)
    x = cache.x.astype(np.float64)  # (N, C, H, W)
    gamma = cache.gamma.astype(np.float64)[:, None, None]  # (C, 1, 1)
    v = cache.v.astype(np.float64)[:, None, None]  # (C, 1, 1)
    std = np.repeat(cache.group_std, C // G, axis=1)[:, :, None, None]  # (N, C, 1, 1)
    # forward nodes
    sg = _sigmoid(v * x)  # (N, C, H, W)
    num = x * sg  # (N, C, H, W)
    xn = num / std  # (N, C, H, W)
    # out = gamma * xn + beta
    dbeta = dy.sum(axis=(0, 2, 3))  # (C,)
    dgamma = (dy * xn).sum(axis=(0, 2, 3))  # (C,)
    g = dy * gamma  # (N, C, H, W), dL/dxn
    # xn = num / std
    dnum = g / std  # (N, C, H, W)
    dstd = -(g * xn).reshape(N, G, K).sum(axis=2) / cache.group_std  # (N, G)
    # num = x * sigmoid(v * x); sigmoid' = sg * (1 - sg)
    dsg = sg * (1.0 - sg)  # (N, C, H, W)
    dv = (dnum * x * x * dsg).sum(axis=(0, 2, 3))  # (C,)
    dx = dnum * (sg + v * x * dsg)  # (N, C, H, W)
    # std = sqrt(var + eps), var = mean_K (x - group_mean)^2; d(var)/d(mean) = 0
    dvar = dstd / (2.0 * cache.group_std)  # (N, G)
    xc = x.reshape(N, G, K) - cache.group_mean[:, :, None]  # (N, G, K)
    dx += (xc * (2.0 * dvar / K)[:, :, None]).reshape(N, C, H, W)
    return (
        dx.astype(cache.x.dtype),
        dgamma.astype(cache.gamma.dtype),
        dbeta.astype(cache.beta_dtype),
        dv.astype(cache.v.dtype),
    )
