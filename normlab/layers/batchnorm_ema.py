"""Batch norm that normalizes with its running statistics in train mode too: EMA and frozen.

Two variants of :func:`~normlab.layers.batchnorm_forward` that normalize, in *both* modes, with
the per-channel running statistics rather than the batch's:

* :func:`batchnorm_ema_forward` -- train mode first updates the running statistics from the
  batch exactly as batch norm does (same ``momentum``, same checks), then normalizes with the
  updated values. The gradient treats them as constants, so the loss no longer sees that a
  batch is centred and scaled by its own statistics: nothing stops a layer's input from
  drifting faster than the averages follow. It is the design Equinox's ``BatchNorm`` once
  shipped and reverted (issue 12); normlab keeps it to make that failure visible.
* :func:`frozen_batchnorm_forward` -- never updates them (torchvision's ``FrozenBatchNorm2d``,
  how pretrained detectors are fine-tuned): a fixed per-channel affine map whose ``gamma`` and
  ``beta`` still train.

Both take (N, D) or (N, C, H, W) input and the ``bn_param`` keys of ``batchnorm_forward``
(``track_running_stats=False`` is refused: they have nothing else to normalize with). Their
backward is test-mode batch norm's, ``dx = dout * gamma / sqrt(running_var + eps)``.
"""

from __future__ import annotations

import numpy as np

from normlab.layers._checks import check_mode
from normlab.layers.batchnorm import (
    batchnorm_backward_alt,
    batchnorm_forward,
    spatial_batchnorm_forward,
)

__all__ = [
    "batchnorm_ema_backward",
    "batchnorm_ema_forward",
    "frozen_batchnorm_backward",
    "frozen_batchnorm_forward",
]


def _batchnorm_for(x, bn_param, fn):
    """``batchnorm_forward`` or ``spatial_batchnorm_forward`` for ``x``; checks ``bn_param``."""
    check_mode(bn_param, fn)
    if bn_param.get("track_running_stats", True) is False:
        raise ValueError(
            f"{fn}: normalizes with the running statistics, which track_running_stats=False "
            "does not keep; drop the option, or use batchnorm_forward"
        )
    ndim = np.ndim(x)
    if ndim not in (2, 4):
        raise ValueError(f"{fn}: expected x of shape (N, D) or (N, C, H, W), got {np.shape(x)}")
    return batchnorm_forward if ndim == 2 else spatial_batchnorm_forward


def batchnorm_ema_forward(x, gamma, beta, bn_param):
    """Batch norm normalizing with its running statistics, updated first from the batch.

    Parameters
    ----------
    x : ndarray of shape (N, D) or (N, C, H, W)
    gamma, beta : ndarray of shape (D,) or (C,)
    bn_param : dict
        As for :func:`~normlab.layers.batchnorm_forward` (``mode`` required; ``eps``,
        ``momentum``, ``running_mean``, ``running_var``...); ``track_running_stats=False`` is
        refused.

    Returns
    -------
    out : ndarray, shape and dtype of x
    cache : NormCache
        A test-mode batch-norm cache, for :func:`batchnorm_ema_backward`.

    Raises
    ------
    NonFiniteStatisticsError
        In train mode, as ``batchnorm_forward`` (the running statistics are left unchanged).
    ValueError
        Bad shapes or ``bn_param``, as ``batchnorm_forward``.

    Notes
    -----
    Train mode, per channel, with ``mu_B``, ``var_B`` the batch's statistics::

        running_mean = momentum * running_mean + (1 - momentum) * mu_B
        running_var = momentum * running_var + (1 - momentum) * var_B
        out = gamma * (x - running_mean) / sqrt(running_var + eps) + beta

    Test mode is the last line alone. The update is batch norm's own (it computes one
    normalized output that is discarded: simpler than a second copy of its update, and this
    variant exists to be compared, not to be fast).

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(3, 1, size=(8, 2))
    >>> p = {"mode": "train", "running_var": np.ones(2)}
    >>> out, _ = batchnorm_ema_forward(x, np.ones(2), np.zeros(2), p)
    >>> bool(abs(out.mean()) > 2)  # the running mean has moved only 10% of the way to 3
    True
    """
    bn = _batchnorm_for(x, bn_param, "batchnorm_ema_forward")
    if bn_param["mode"] == "train":
        bn(x, gamma, beta, bn_param)  # updates the running statistics in place, or raises
    return bn(x, gamma, beta, {**bn_param, "mode": "test"})


def frozen_batchnorm_forward(x, gamma, beta, bn_param):
    """Batch norm with frozen statistics: test-mode batch norm in both modes.

    Parameters
    ----------
    x : ndarray of shape (N, D) or (N, C, H, W)
    gamma, beta : ndarray of shape (D,) or (C,)
        Trainable scale and shift.
    bn_param : dict
        As for :func:`~normlab.layers.batchnorm_forward`; ``running_mean`` and ``running_var``
        are read, never updated (``momentum`` is unused).

    Returns
    -------
    out : ndarray, shape and dtype of x
        ``gamma * (x - running_mean) / sqrt(running_var + eps) + beta`` per channel.
    cache : NormCache
        For :func:`frozen_batchnorm_backward`.

    Examples
    --------
    >>> x = np.arange(6.0).reshape(3, 2)
    >>> p = {"mode": "train", "running_mean": np.ones(2), "running_var": np.full(2, 4.0)}
    >>> out, _ = frozen_batchnorm_forward(x, np.ones(2), np.zeros(2), p)
    >>> bool(np.allclose(out, (x - 1) / 2, atol=1e-5)), p["running_mean"].tolist()
    (True, [1.0, 1.0])
    """
    bn = _batchnorm_for(x, bn_param, "frozen_batchnorm_forward")
    return bn(x, gamma, beta, {**bn_param, "mode": "test"})


# Both caches are test-mode batch norm's: the statistics are constants of the backward.
batchnorm_ema_backward = frozen_batchnorm_backward = batchnorm_backward_alt
