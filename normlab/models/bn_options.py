"""Batch norm's running-statistics options in the models, checked when a model is built.

The ``norm_options`` of ``'batchnorm'``, ``'ghostbatchnorm'``, ``'batchrenorm'`` and
``'batchnorm-ema'`` (both kinds) that decide which buffers a layer keeps:

``momentum`` : float in [0, 1] or None, default 0.9
    Weight of the old running value (PyTorch's ``momentum=p`` is ``1 - p``). None is PyTorch's
    cumulative moving average, which weighs the n-th batch by 1/n: the layer then keeps a third
    buffer, ``num_batches_tracked{i}`` of shape (1,) (the model's dtype, so exact up to 2**24
    batches in float32, past which 1/n is below float32's resolution of the averages anyway),
    which checkpoints save with the running statistics, so that a resumed run continues the
    average exactly. With a number, no count is kept (it would change nothing).
``track_running_stats`` : bool, default True
    False (``'batchnorm'`` and ``'ghostbatchnorm'``) keeps no running statistics, as PyTorch's
    option: no buffers at all, and test mode normalizes with the batch's own statistics. Such a
    model cannot be folded (:func:`~normlab.models.fold_batchnorm`) nor given precise statistics
    (:func:`~normlab.models.precise_bn`): there is nothing fixed to fold or recompute.

A bad value (``momentum=1.5``, ``track_running_stats='yes'``) is one ValueError when the model
is built, not at its first forward pass. ``num_batches_tracked`` itself is not an option: the
model keeps it.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable, Mapping

import numpy as np

__all__ = ["bn_configure", "counted"]

COUNT = "num_batches_tracked"


def _zero_count(C: int) -> np.ndarray:
    """The initial count of a layer of any width: one zero, shape (1,)."""
    return np.zeros(1)


def bn_configure(
    name: str,
    buffers: Mapping,
    *,
    untracked_why: str | None = None,
    refused: Mapping[str, str] | None = None,
) -> Callable[[dict], dict]:
    """The ``configure`` of a batch-norm registration (see the module docstring).

    Parameters
    ----------
    name : str
        The registration's name, for messages.
    buffers : dict
        Its buffers when it tracks running statistics (``{'running_mean': 0.0, ...}``).
    untracked_why : str, optional
        Why ``track_running_stats=False`` is refused; None: it is allowed.
    refused : dict of str to str, optional
        Options the layer does not take, each with the reason.

    Returns
    -------
    configure : callable
        ``configure(options) -> buffers``: ``buffers`` (plus the count with ``momentum=None``),
        or none with ``track_running_stats=False``; ValueError for a bad option.
    """
    buffers, refused = dict(buffers), dict(refused or {})

    def configure(options: dict) -> dict:
        for key, why in refused.items():
            if key in options:
                raise ValueError(
                    f"normalization {name!r} takes no norm_options[{key!r}] ({why}); drop it"
                )
        momentum = options.get("momentum", 0.9)
        if momentum is not None and (
            isinstance(momentum, bool | np.bool_)
            or not isinstance(momentum, numbers.Real)
            or not 0 <= momentum <= 1
        ):
            raise ValueError(
                f"normalization {name!r}: expected norm_options['momentum'] a number in [0, 1] "
                "(the weight of the old running value, default 0.9) or None (PyTorch's "
                f"cumulative average), got {momentum!r}; PyTorch's momentum=p is 1 - p here"
            )
        track = options.get("track_running_stats", True)
        if not isinstance(track, bool | np.bool_):
            raise ValueError(
                f"normalization {name!r}: expected norm_options['track_running_stats'] True or "
                f"False, got {track!r}; pass False to keep no running statistics (test mode "
                "then normalizes with each batch's own), or leave it out"
            )
        if not track and untracked_why is not None:
            raise ValueError(
                f"normalization {name!r} cannot take track_running_stats=False: {untracked_why}; "
                "drop the option, or use 'batchnorm'"
            )
        if COUNT in options:
            raise ValueError(
                f"normalization {name!r}: norm_options may not set {COUNT!r}: the model keeps it "
                "as a buffer when momentum is None (from 0, saved in checkpoints); drop it"
            )
        if not track:
            return {}
        return {**buffers, COUNT: _zero_count} if momentum is None else dict(buffers)

    return configure


def counted(forward: Callable) -> Callable:
    """``forward`` for a model that keeps ``num_batches_tracked`` as a (1,) buffer.

    The layers count in an ``int`` (``bn_param['num_batches_tracked']``, rebound after each
    train-mode batch); the model keeps an array, so that its buffer machinery (checkpoints, the
    Solver's undo of a failed step, best-parameter restores) covers the count. Without the key
    (a numeric ``momentum``) the layer is called as it is.
    """

    @functools.wraps(forward)
    def counted_forward(x, *args):
        p = args[-1]
        count = p.get(COUNT)
        if count is None:
            return forward(x, *args)
        p[COUNT] = int(count[0])
        try:
            out, cache = forward(x, *args)
            count[0] = p[COUNT]  # counted only in train mode, and only if the layer succeeded
        finally:
            p[COUNT] = count
        return out, cache

    return counted_forward
