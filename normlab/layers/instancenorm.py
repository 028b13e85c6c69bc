"""Instance normalization (Ulyanov et al., 2016) of (N, C, H, W) input.

Instance norm is group norm with one channel per group (``G = C``): the core of ``norm_core`` on
the view ``(N, C, 1, H*W)``, reducing over the positions of each (sample, channel). Its backward
is the core's.

Conventions, with the mapping to PyTorch's ``InstanceNorm2d`` (``docs/conventions.md``):

* ``track_running_stats`` defaults to False, as in PyTorch: no running statistics, and test mode
  normalizes each instance by its own statistics, exactly as train mode does.
* With ``track_running_stats=True``, train mode updates ``running_mean``/``running_var`` with
  the *batch mean* of the instances' means and (biased) variances, as PyTorch does; test mode
  normalizes with them. ``momentum`` is the weight of the *old* value, as in ``bn_param``
  (PyTorch's ``momentum=0.1`` is normlab's 0.9); the running variance is biased unless
  ``running_var_unbiased=True`` (PyTorch: unbiased, ``H*W / (H*W - 1)``); running statistics
  start at zeros (PyTorch starts the variance at ones: pass ``running_var=np.ones(C)``).
* A train-mode batch whose statistics are not finite is refused with a
  ``NonFiniteStatisticsError`` before the running statistics are touched.
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
    raise_overflowed_running,
)
from normlab.layers.batchnorm import running_stats
from normlab.layers.norm_core import BATCH, GROUP, norm_backward, norm_forward

IN_KEYS = frozenset(
    (
        "mode",
        "eps",
        "momentum",
        "track_running_stats",
        "running_mean",
        "running_var",
        "running_var_unbiased",
    )
)


def _flag(param, key, fn):
    """``param[key]`` as a bool (default False); anything but True/False is refused."""
    v = param.get(key, False)
    if not isinstance(v, bool | np.bool_):
        raise ValueError(f"{fn}: expected in_param[{key!r}] to be True or False, got {v!r}")
    return bool(v)


def spatial_instancenorm_forward(x, gamma, beta, in_param):
    """Instance normalization of (N, C, H, W) input: statistics per (sample, channel).

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W), float32 or float64 (integers become float64)
    gamma, beta : ndarray of shape (C,)
        Per-channel scale and shift (PyTorch's ``affine=True`` weight and bias).
    in_param : dict
        ``mode`` : 'train' | 'test' -- required when ``track_running_stats`` is True (as in
        ``bn_param``), default 'train' otherwise (train and test are then the same computation;
        only train mode checks that the statistics are finite);
        ``eps`` : float, default 1e-5;
        ``track_running_stats`` : bool, default False (PyTorch's ``InstanceNorm2d`` default);
        ``momentum`` : float in [0, 1], default 0.9 -- weight of the old running value;
        ``running_mean``, ``running_var`` : ndarray of shape (C,) -- only with
        ``track_running_stats=True``; created as zeros when absent, updated in place in train
        mode, used in test mode;
        ``running_var_unbiased`` : bool, default False -- store the instances' variances with
        the ``H*W / (H*W - 1)`` factor (what PyTorch does).

    Returns
    -------
    out : ndarray of shape (N, C, H, W), dtype of x
    cache : NormCache
        For :func:`spatial_instancenorm_backward`.

    Raises
    ------
    NonFiniteStatisticsError
        A ``FloatingPointError``: in train mode, when a (sample, channel)'s mean or variance is
        NaN or inf; the message names the pairs, and the running statistics are left unchanged,
        bit for bit.
    ValueError
        Bad shapes, dtypes or ``in_param`` values; an empty input; ``H*W = 1`` where instance
        statistics are taken (the output would be ``beta``; PyTorch refuses it too); running
        statistics passed without ``track_running_stats=True``; or an unknown ``in_param`` key
        (the message names it and the known keys).

    Notes
    -----
    Ulyanov et al. 2016, eq. 2: for each sample ``n`` and channel ``c``, over the ``m = H*W``
    positions::

        mu_nc = mean x[n, c],   var_nc = mean (x[n, c] - mu_nc)^2,
        out[n, c] = gamma[c] * (x[n, c] - mu_nc) / sqrt(var_nc + eps) + beta[c]

    Tracked running statistics (PyTorch's ``F.instance_norm``, normlab's momentum direction)::

        running_mean = momentum * running_mean + (1 - momentum) * mean_n mu_nc
        running_var = momentum * running_var + (1 - momentum) * f * mean_n var_nc

    with ``f = m / (m - 1)`` if ``running_var_unbiased`` else 1. It is group norm with ``G = C``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(2, 3, size=(2, 3, 4, 4))
    >>> out, _ = spatial_instancenorm_forward(x, np.ones(3), np.zeros(3), {})
    >>> bool(np.allclose(out.mean(axis=(2, 3)), 0))
    True
    """
    fn = "spatial_instancenorm_forward"
    if not isinstance(in_param, dict):
        raise ValueError(f"{fn}: expected in_param to be a dict, got {type(in_param).__name__}")
    check_keys(in_param, IN_KEYS, fn, "in_param")
    track = _flag(in_param, "track_running_stats", fn)
    mode = check_mode(in_param, fn, required=track)
    x = as_float_array(x, fn)
    check_ndim(x, 4, fn, "(N, C, H, W)")
    N, C, H, W = x.shape
    gamma = check_channel_param(gamma, C, fn, "gamma")
    beta = check_channel_param(beta, C, fn, "beta")
    eps = check_eps(in_param.get("eps", 1e-5), fn)
    momentum = check_momentum(in_param.get("momentum", 0.9), fn)
    unbiased = _flag(in_param, "running_var_unbiased", fn)
    if x.size == 0:
        raise ValueError(f"{fn}: expected a non-empty input, got shape {tuple(x.shape)}")

    if track:
        running_mean, running_var = running_stats(in_param, C, x.dtype, fn, "in_param")
        if mode == "test":
            stats = (running_mean, running_var)  # per channel (C,), as batch norm's
            return norm_forward(x, gamma, beta, BATCH, eps, stats=stats)
    elif "running_mean" in in_param or "running_var" in in_param:
        raise ValueError(
            f"{fn}: in_param holds running statistics but track_running_stats is False, so they "
            f"would be neither updated nor used; pass track_running_stats=True, or drop them"
        )
    m = H * W  # values per instance
    if m < 2:
        raise ValueError(
            f"{fn}: expected more than 1 value per channel (H*W > 1) for instance statistics, "
            f"got input of shape {tuple(x.shape)}; every output would be beta"
        )
    out, cache = norm_forward(x, gamma, beta, GROUP, eps, groups=C)  # stats (N, C)
    if mode == "train":
        check_finite_stats(cache.mean, cache.var, fn, "(sample, channel) pairs", running=track)
        if track:  # after the check: a refused batch leaves them untouched
            factor = m / (m - 1) if unbiased else 1.0
            mean_c, var_c = cache.mean.mean(axis=0), cache.var.mean(axis=0)  # (C,)
            overflowed = ema_update(running_mean, running_var, mean_c, var_c, momentum, factor)
            if overflowed:
                raise_overflowed_running(fn, overflowed, C, running_var.dtype)
    return out, cache


# The closed form of norm_core: G = C groups in train mode, fixed statistics in test mode.
spatial_instancenorm_backward = norm_backward
