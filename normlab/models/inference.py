"""Inference-time batch norm: fold it into the preceding layer, or recompute its statistics exactly.

Both work on any :class:`~normlab.models.base.Network` (FullyConnectedNet, ConvNet) and any
registered normalization that declares the needed semantics (``test_affine`` for folding,
``batch_stats`` for precise statistics; the built-in ``'batchnorm'`` declares both).
"""

from __future__ import annotations

import numpy as np

from normlab._validate import check_int
from normlab.layers import weight_standardize_forward
from normlab.models.base import Block, Network

__all__ = ["fold_batchnorm", "precise_bn"]


def _norm_state(model: Network, blk: Block) -> tuple[dict, dict]:
    """A block's normalization parameters by registration name, and its norm_param."""
    params = {
        k: model.params[full] for k, full in zip(blk.norm.params, blk.norm_params, strict=True)
    }
    p = dict(blk.norm_param)
    for key, name in blk.norm_buffers:
        p[key] = model.buffers[name]
    return params, p


def fold_batchnorm(model: Network) -> Network:
    """A copy of ``model`` with every batch norm folded into the layer before it.

    Parameters
    ----------
    model : FullyConnectedNet or ConvNet
        Trained (its running statistics are what gets folded). Not modified.

    Returns
    -------
    folded : same class as ``model``
        Built with ``normalization=None`` (no ``gamma``/``beta``, no buffers); its test-mode
        scores equal ``model``'s up to rounding. Its ``rng`` continues ``model``'s; a model
        without normalization comes back as an unnormalized copy.

    Raises
    ------
    ValueError
        If the model's normalization is not a per-channel affine map at test mode (layer and
        group norm use each sample's own statistics; there is nothing to fold), or keeps no
        running statistics (batch norm with ``track_running_stats=False`` normalizes each test
        batch with its own).

    Notes
    -----
    Test-mode batch norm is ``y = x * s + t`` per channel with ``s = gamma / sqrt(running_var +
    eps)`` and ``t = beta - running_mean * s``. Following ``z = x W + b`` (affine, W of shape
    (D, M)) or a convolution (W of shape (F, C, k, k)), it folds into

    ``W' = W * s`` (scaling output column / filter ``j`` by ``s_j``) and
    ``b' = (b - running_mean) * s + beta``.

    The folded weights are computed in float64 and rounded once to the model's dtype.

    Examples
    --------
    >>> from normlab.models import FullyConnectedNet
    >>> m = FullyConnectedNet([8], input_dim=4, normalization="batchnorm", seed=0)
    >>> sorted(fold_batchnorm(m).params)
    ['W1', 'W2', 'b1', 'b2']
    """
    normed = [blk for blk in model.blocks if blk.norm is not None]
    for blk in normed:
        if blk.norm.test_affine is None:
            raise ValueError(
                f"cannot fold normalization {blk.norm.name!r} of layer {blk.index}: its test "
                "mode is not a fixed per-channel affine map (register it with test_affine=... "
                "if it is)"
            )
        _check_tracked(model, blk, "fold", "fold it")
    config = model.get_config()
    config.pop("model", None)
    config["normalization"] = None
    config["norm_options"] = {}
    if config.get("weight_standardization"):  # the folded net holds the standardized filters
        config["weight_standardization"] = False
    folded = type(model)(**config)
    for blk, new in zip(model.blocks, folded.blocks, strict=True):
        W = model.params[blk.W]
        if blk.ws is not None:
            W = weight_standardize_forward(W, blk.ws)[0]  # what the conv sees
        W = W.astype(np.float64)  # (D, M) or (F, C, k, k)
        b = model.params[blk.b].astype(np.float64)  # (M,) or (F,)
        if blk.norm is not None:
            scale, shift = blk.norm.test_affine(*_norm_state(model, blk))  # (M,), (M,)
            scale = np.asarray(scale, dtype=np.float64)
            W = W * (scale.reshape(-1, 1, 1, 1) if blk.conv_param is not None else scale)
            b = b * scale + shift
        np.copyto(folded.params[new.W], W, casting="same_kind")
        np.copyto(folded.params[new.b], b, casting="same_kind")
    folded.rng.bit_generator.state = model.rng.bit_generator.state
    return folded


def _check_tracked(model: Network, blk: Block, verb: str, fix: str) -> None:
    """Raise ValueError if ``blk`` keeps none of its registration's running statistics."""
    kept = {key for key, _ in blk.norm_buffers}
    missing = [k for k in blk.norm.buffers if k not in kept]
    if missing:
        raise ValueError(
            f"cannot {verb} normalization {blk.norm.name!r} of layer {blk.index}: with "
            f"norm_options {model.norm_options} it keeps no {missing}, so its test mode "
            "normalizes each batch with the batch's own statistics; build the model without "
            f"track_running_stats=False (train it with running statistics) to {fix}"
        )


def _merge(n, mean, m2, h: np.ndarray):
    """Chan et al.'s update of per-channel (count, mean, M2) with the values of batch ``h``."""
    axes = (0,) if h.ndim == 2 else (0, *range(2, h.ndim))  # all but the channel axis
    h = h.astype(np.float64)
    nb = h.size // h.shape[1]
    bm = h.mean(axis=axes)  # (C,)
    d = h - bm.reshape((1, -1) + (1,) * (h.ndim - 2))
    bq = (d * d).sum(axis=axes)  # (C,) two-pass within the batch
    tot = n + nb
    delta = bm - mean
    return tot, mean + delta * (nb / tot), m2 + bq + delta * delta * (n * nb / tot)


def precise_bn(model: Network, X, batch_size: int = 256) -> Network:
    """Replace the running statistics of every batch norm by exact statistics over ``X``.

    Parameters
    ----------
    model : FullyConnectedNet or ConvNet
        Modified in place (only its batch-norm buffers).
    X : ndarray of shape (N, ...)
        The data set, e.g. the whole training set.
    batch_size : int, default 256
        Rows per forward pass; the result does not depend on it (up to float64 rounding).

    Returns
    -------
    model : the same object

    Raises
    ------
    ValueError
        If a batch norm keeps no running statistics (``track_running_stats=False``); nothing
        is changed then.

    Notes
    -----
    Layer by layer: for the k-th batch-norm layer, one pass over ``X`` in batches runs the
    network in test mode up to that layer's input (so the layers before it already use their
    new statistics: the statistics describe the inputs the test-mode network actually sees),
    and per-batch moments (count, mean, sum of squared deviations, each batch two-pass in
    float64) are merged exactly with Chan et al.'s pairwise formula. The stored values are the
    population mean and the biased variance ``mean((x - mu)^2)`` over all N samples (times
    positions for a convolution), or ``N/(N-1)`` times it when the layer has
    ``running_var_unbiased=True``. A network with K batch-norm layers costs K passes. The
    count ``num_batches_tracked`` of ``momentum=None`` is left as it is.

    PyTorch's / fvcore's ``update_bn_stats`` instead averages the batch statistics of train-mode
    passes, which approximates these values (exact only for the first layer, with equal batches,
    for the mean).
    """
    batch_size = check_int("batch_size", batch_size)
    X = np.asarray(X)
    if X.ndim < 2 or len(X) == 0:
        raise ValueError(f"expected X of shape (N, ...) with N > 0, got {X.shape}")
    record, model.record = model.record, set()  # no activation recording meanwhile
    try:
        blocks = [blk for blk in model.blocks if blk.norm is not None and blk.norm.batch_stats]
        for blk in blocks:
            _check_tracked(model, blk, "recompute the statistics of", "recompute them")
        for blk in blocks:
            n, mean, m2 = 0, 0.0, 0.0
            for i in range(0, len(X), batch_size):
                h, _ = model._forward(X[i : i + batch_size], "test", stop=blk)
                n, mean, m2 = _merge(n, mean, m2, h)
            unbiased = blk.norm_param.get("running_var_unbiased", False)
            var = m2 / (n - 1 if unbiased and n > 1 else n)
            buffers = dict(blk.norm_buffers)
            np.copyto(model.buffers[buffers["running_mean"]], mean, casting="same_kind")
            np.copyto(model.buffers[buffers["running_var"]], var, casting="same_kind")
    finally:
        model.record = record
    return model
