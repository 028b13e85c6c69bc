"""Noisy batch norm (Santurkar et al. 2018, section 2.1): batch norm, then a per-channel affine
map given for this step, in train mode only.

Santurkar, Tsipras, Ilyas & Madry 2018, "How Does Batch Normalization Help Optimization?"
(section 2.1, Figure 2): to test whether batch norm helps by keeping each layer's input
distribution stable, they inject time-varying noise of non-zero mean and non-unit variance after
every batch-norm layer, so that the distributions shift at every step, and find that the net
still trains about as well as with plain batch norm. Here the noise of one step is an affine map
per channel, ``out = scale * bn(x) + shift``: the output of channel ``c`` gets mean
``scale[c] * beta[c] + shift[c]`` and standard deviation ``scale[c] * |gamma[c]|`` instead of
batch norm's ``beta[c]`` and ``|gamma[c]|``. The caller draws ``scale`` and ``shift`` afresh at
every step (the registered ``'noisybatchnorm'`` does:
:mod:`normlab.models.noisy_bn`); within a step they are constants, so the backward is batch
norm's applied to ``dout * scale``.

Test mode is batch norm's (running statistics, no noise): the noise models a training-time
perturbation.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from normlab.layers._checks import check_mode
from normlab.layers.batchnorm import (
    batchnorm_backward_alt,
    batchnorm_forward,
    spatial_batchnorm_forward,
)

__all__ = ["NOISE_KEYS", "noisy_batchnorm_backward", "noisy_batchnorm_forward"]

NOISE_KEYS = ("noise_scale", "noise_shift")


class NoisyCache(NamedTuple):
    """What the noisy batch-norm backward needs.

    Attributes
    ----------
    bn : NormCache or GhostCache
        Batch norm's cache.
    scale : ndarray of shape (C,) or None
        The step's noise scale (None: no noise was applied, test mode).
    """

    bn: tuple
    scale: np.ndarray | None


def _channel_noise(bn_param: dict, key: str, C: int, fn: str) -> np.ndarray | None:
    """``bn_param[key]`` as a finite float64 array of shape (C,), or None when absent."""
    v = bn_param.get(key)
    if v is None:
        return None
    a = np.asarray(v, dtype=np.float64)
    if a.shape != (C,) or not np.isfinite(a).all():
        raise ValueError(
            f"{fn}: expected bn_param[{key!r}] a finite array of shape ({C},), one value per "
            f"channel, got {a.shape if a.shape != (C,) else 'non-finite values'}"
        )
    return a


def noisy_batchnorm_forward(x, gamma, beta, bn_param):
    """Batch norm of (N, D) or (N, C, H, W) input, then ``scale * out + shift`` per channel in
    train mode.

    Parameters
    ----------
    x : ndarray of shape (N, D) or (N, C, H, W)
    gamma, beta : ndarray of shape (D,) or (C,)
    bn_param : dict
        Every key of :func:`~normlab.layers.batchnorm_forward` (``mode`` required; ``eps``,
        ``momentum``, ``running_mean``...), plus:

        - ``noise_scale`` : array of shape (C,), optional (default ones): the step's scale,
          > 0 in practice (any finite value is accepted);
        - ``noise_shift`` : array of shape (C,), optional (default zeros): the step's shift.

        Both are ignored in test mode.

    Returns
    -------
    out : ndarray, shape and dtype of x
    cache : NoisyCache

    Raises
    ------
    ValueError
        Bad shapes or ``bn_param`` (as batch norm), or noise of the wrong shape or non-finite.
    NonFiniteStatisticsError
        In train mode, as batch norm (the running statistics are left unchanged).

    Notes
    -----
    ``out = scale * (gamma * xhat + beta) + shift``, with batch norm's ``xhat``; ``scale`` and
    ``shift`` are constants of the step, so ``d out / d y = scale`` and the input and parameter
    gradients are batch norm's with ``dout * scale`` as the upstream gradient
    (Santurkar et al. 2018, section 2.1).

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(3, 2, (64, 4))
    >>> p = {"mode": "train", "noise_scale": np.full(4, 2.0), "noise_shift": np.ones(4)}
    >>> out, _ = noisy_batchnorm_forward(x, np.ones(4), np.zeros(4), p)
    >>> np.round(out.mean(axis=0), 6), np.round(out.std(axis=0), 3)
    (array([1., 1., 1., 1.]), array([2., 2., 2., 2.]))
    """
    fn = "noisy_batchnorm_forward"
    mode = check_mode(bn_param, fn)
    ndim = np.ndim(x)
    if ndim not in (2, 4):
        raise ValueError(f"{fn}: expected x of shape (N, D) or (N, C, H, W), got {np.shape(x)}")
    bn = {k: v for k, v in bn_param.items() if k not in NOISE_KEYS}
    forward = batchnorm_forward if ndim == 2 else spatial_batchnorm_forward
    y, cache = forward(x, gamma, beta, bn)
    if "num_batches_tracked" in bn:  # an int batch norm rebinds (momentum=None)
        bn_param["num_batches_tracked"] = bn["num_batches_tracked"]
    C = y.shape[1]
    scale = _channel_noise(bn_param, "noise_scale", C, fn)
    shift = _channel_noise(bn_param, "noise_shift", C, fn)
    if mode == "test" or (scale is None and shift is None):
        return y, NoisyCache(cache, None)
    view = (1, C) + (1,) * (ndim - 2)  # broadcast per channel: (1, C) or (1, C, 1, 1)
    scale = np.ones(C) if scale is None else scale  # (C,)
    out = y * scale.astype(y.dtype).reshape(view)
    if shift is not None:
        out += shift.astype(y.dtype).reshape(view)
    return out, NoisyCache(cache, scale)


def noisy_batchnorm_backward(dout, cache: NoisyCache):
    """Backward of :func:`noisy_batchnorm_forward`.

    Parameters
    ----------
    dout : ndarray, shape of x
    cache : NoisyCache

    Returns
    -------
    dx : ndarray, shape and dtype of x
    dgamma, dbeta : ndarray of shape (C,)

    Notes
    -----
    Batch norm's closed form (:func:`~normlab.layers.batchnorm_backward_alt`) of ``dout *
    scale``: the step's affine map is a constant, so its Jacobian is ``diag(scale)``.
    """
    if not isinstance(cache, NoisyCache):
        raise ValueError(
            "noisy_batchnorm_backward: expected the cache of noisy_batchnorm_forward (a "
            f"NoisyCache), got {type(cache).__name__}"
        )
    if cache.scale is not None:
        dout = np.asarray(dout)
        view = (1, -1) + (1,) * (dout.ndim - 2)
        dout = dout * cache.scale.astype(dout.dtype).reshape(view)
    return batchnorm_backward_alt(dout, cache.bn)
