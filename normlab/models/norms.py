"""The built-in normalizations: every name ``normalization=...`` accepts out of the box.

Registered with :func:`normlab.models.registry.register_normalization` when
:mod:`normlab.models` is imported, exactly as a user registers their own.

The options named (``eps=1e-5``...) are the registration's ``defaults``, which a model's
``norm_options`` override. "Both kinds" means a ``'feature'`` and a ``'spatial'`` variant; a
name without a ``'feature'`` variant works in ``ConvNet(hidden_dims=())``. "Folds" means
``test_affine`` is set (:func:`~normlab.models.inference.fold_batchnorm`); "precise" means
``batch_stats`` (:func:`~normlab.models.inference.precise_bn`).

``'batchnorm'``
    Both kinds: :func:`~normlab.layers.batchnorm_forward` /
    :func:`~normlab.layers.batchnorm_backward_alt`,
    :func:`~normlab.layers.spatial_batchnorm_forward` / ``_backward``. Buffers
    ``running_mean``, ``running_var`` (zeros); ``eps=1e-5``, ``momentum=0.9``. Folds; precise.
    ``momentum=None`` (PyTorch's cumulative average) adds the buffer ``num_batches_tracked``
    (shape (1,), checkpointed); ``track_running_stats=False`` keeps no buffers, and test mode
    uses the batch's statistics (then it neither folds nor is precise). Both are checked when
    the model is built (:mod:`normlab.models.bn_options`), here and for the three names below.
``'ghostbatchnorm'``
    ``'batchnorm'`` with ``virtual_batch_size=32`` (Hoffer et al. 2017; Keras's option):
    statistics per consecutive chunk of V samples, which must divide the batch size; set V with
    ``norm_options={'virtual_batch_size': V}``. Test mode is batch norm's: folds; precise (the
    population statistics, where training averages the chunks').
``'batchrenorm'``
    Both kinds: :func:`~normlab.layers.batchrenorm.batchrenorm_forward` / ``_backward`` and the
    spatial pair (Ioffe 2017), options as ``'batchnorm'`` (but ``track_running_stats`` and
    ``virtual_batch_size``, refused when the model is built) plus ``rmax`` and ``dmax`` (the
    layer's defaults 1 and 0 are batch norm: set them), or ``renorm_schedule``: True for the
    paper's schedule (:func:`renorm_limits`), or a dict of its keys to override (``{'warmup':
    100, 'rmax_steps': 800, 'dmax_steps': 500}`` for a short run). Buffers ``running_mean``,
    ``running_var`` (zeros) and ``renorm_step`` (shape (1,): train-mode steps taken, what the
    schedule reads; checkpointed with the others). Test mode is batch norm's: folds; precise.
``'layernorm'``
    feature: :func:`~normlab.layers.layernorm_forward` (per sample over its D features);
    spatial: group norm with G=1, i.e. per sample over all of (C, H, W) -- the usual "layer norm
    of a feature map" (PyTorch ``GroupNorm(1, C)``, not ``LayerNorm([C, H, W])``, whose scale and
    shift are per element rather than per channel).
``'groupnorm'``
    spatial: :func:`~normlab.layers.spatial_groupnorm_forward`; feature: the (N, D) input viewed as
    (N, D, 1, 1), so each sample is normalized over groups of D/G features. The number of groups of
    a layer of width C is ``gcd(groups, C)`` (:func:`~normlab.models.registry.layer_groups`),
    ``groups`` being the model's option (default 4): it always divides C, and equals ``groups``
    whenever ``groups`` divides C.
``'layernorm2d'``
    spatial: :func:`~normlab.layers.spatial_layernorm_forward`, per (sample, position) over the C
    channels (ConvNeXt's ``LayerNorm2d``); feature: :func:`~normlab.layers.layernorm_forward`,
    which is the same thing for an (N, D) input (the ``'layernorm'`` feature variant).
``'rmsnorm'``
    feature: :func:`~normlab.layers.rmsnorm_forward` (parameter ``gamma`` only; ``eps`` None:
    the dtype's machine epsilon, PyTorch's). spatial: the same per (sample, position) over the C
    channels, as RMSNorm normalizes the hidden vector of each token (and as ``'layernorm2d'``);
    not over (C, H, W).
``'instancenorm'``, ``'instancenorm-tracked'``
    spatial only (an (N, D) input has one value per instance and channel: every output would be
    beta): :func:`~normlab.layers.spatial_instancenorm_forward`. ``'instancenorm'`` keeps no
    statistics (PyTorch's ``InstanceNorm2d`` default); ``'instancenorm-tracked'`` sets
    ``track_running_stats=True`` (``eps=1e-5``, ``momentum=0.9``), buffers ``running_mean``,
    ``running_var`` (zeros; means of the instances' statistics), which test mode uses per
    channel: folds.
``'evonorm-b0'``
    spatial only (its instance variance of one value would be 0):
    :func:`~normlab.layers.spatial_evonorm_b0_forward`, parameters ``gamma``, ``beta``, ``v``
    (ones, zeros, ones: timm's), buffer ``running_var`` (zeros, as the layer creates it),
    ``eps=1e-3``, ``momentum=0.9``.
``'evonorm-s0'``
    spatial: :func:`~normlab.layers.spatial_evonorm_s0_forward` with ``gcd(groups, C)`` groups,
    parameters ``gamma``, ``beta``, ``v``, ``eps=1e-5``; feature: the (N, D) input viewed as
    (N, D, 1, 1), as for ``'groupnorm'``.
``'darknet'``
    Both kinds: :func:`~normlab.layers.darknet_batchnorm_forward` / ``_backward`` (darknet's
    formulas and its backward, which is the gradient of another function). Buffers
    ``running_mean``, ``running_var`` (zeros; 0.99/0.01 rolling averages, unbiased variance);
    no options. Folds (``scale = gamma / (sqrt(running_var) + 1e-6)``); not precise (it stores
    the unbiased variance, which ``precise_bn`` does not produce for it).
``'batchnorm-ema'``
    Both kinds: :func:`~normlab.layers.batchnorm_ema.batchnorm_ema_forward`, batch norm that
    normalizes with its running statistics in train mode too (updated from the batch first;
    constants for the gradient). Buffers ``running_mean`` (zeros), ``running_var`` (ones, so
    that the first steps are not divided by ``sqrt(eps)``); options as ``'batchnorm'`` but
    ``track_running_stats=False``. Folds; precise.
``'batchnorm-frozen'``
    Both kinds: :func:`~normlab.layers.batchnorm_ema.frozen_batchnorm_forward`, test-mode batch
    norm in both modes with trainable ``gamma``/``beta`` (torchvision's ``FrozenBatchNorm2d``):
    buffers ``running_mean`` (zeros), ``running_var`` (ones), never updated; ``eps=1e-5``.
    Folds; not precise (its statistics are frozen by definition; set them by hand).

``'noisybatchnorm'``
    Both kinds: batch norm, then per-step noise in train mode (Santurkar et al. 2018, section
    2.1); registered by :mod:`normlab.models.noisy_bn`, whose docstring gives its options.

``None`` (no normalization) is always accepted and is not a registered name.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from normlab.layers import (
    batchnorm_backward_alt,
    batchnorm_forward,
    darknet_batchnorm_backward,
    darknet_batchnorm_forward,
    layernorm_backward,
    layernorm_forward,
    rmsnorm_backward,
    rmsnorm_forward,
    spatial_batchnorm_backward,
    spatial_batchnorm_forward,
    spatial_evonorm_b0_backward,
    spatial_evonorm_b0_forward,
    spatial_evonorm_s0_backward,
    spatial_evonorm_s0_forward,
    spatial_groupnorm_backward,
    spatial_groupnorm_forward,
    spatial_instancenorm_backward,
    spatial_instancenorm_forward,
    spatial_layernorm_backward,
    spatial_layernorm_forward,
)
from normlab.layers.batchnorm_ema import (
    batchnorm_ema_backward,
    batchnorm_ema_forward,
    frozen_batchnorm_backward,
    frozen_batchnorm_forward,
)
from normlab.layers.batchrenorm import (
    batchrenorm_backward,
    batchrenorm_forward,
    spatial_batchrenorm_backward,
    spatial_batchrenorm_forward,
)
from normlab.layers.darknet import FORWARD_EPS as DARKNET_EPS
from normlab.models.bn_options import bn_configure, counted
from normlab.models.registry import note_missing_kind, register_normalization

__all__ = ["RENORM_SCHEDULE", "renorm_limits"]


def _bn_test_affine(params, p):
    """Test-mode batch norm as ``x * scale + shift``: scale = gamma / sqrt(running_var + eps)."""
    scale = params["gamma"] / np.sqrt(p["running_var"].astype(np.float64) + p["eps"])  # (C,)
    return scale, params["beta"] - p["running_mean"] * scale


def _darknet_test_affine(params, p):
    """darknet's test mode as ``x * scale + shift``: scale = gamma / (sqrt(rolling_var) + 1e-6)."""
    std = np.sqrt(p["running_var"].astype(np.float64)) + DARKNET_EPS  # (C,) eps outside the root
    scale = params["gamma"] / std  # (C,)
    return scale, params["beta"] - p["running_mean"] * scale


def _feature_view(spatial_forward, spatial_backward):
    """The (N, D) pair of a spatial pair: the input seen as N maps of shape (D, 1, 1)."""

    def forward(x, *args):
        out, cache = spatial_forward(x.reshape(x.shape + (1, 1)), *args)  # (N, D, 1, 1)
        return out.reshape(x.shape), cache

    def backward(dout, cache):
        dx, *dparams = spatial_backward(dout.reshape(dout.shape + (1, 1)), cache)
        return (dx.reshape(dout.shape), *dparams)

    return forward, backward


def _gn_spatial_forward(x, gamma, beta, p):
    return spatial_groupnorm_forward(x, gamma, beta, p["groups"], p)


def _ln_spatial_forward(x, gamma, beta, p):
    """Layer norm of a feature map: group norm with one group."""
    return spatial_groupnorm_forward(x, gamma, beta, 1, p)


def _rms_spatial_forward(x, gamma, p):
    """RMS norm of (N, C, H, W) maps per (sample, position) over the C channels."""
    N, C, H, W = x.shape
    rows = x.transpose(0, 2, 3, 1).reshape(N * H * W, C)  # (N*H*W, C)
    out, cache = rmsnorm_forward(rows, gamma, p)
    return np.ascontiguousarray(out.reshape(N, H, W, C).transpose(0, 3, 1, 2)), cache


def _rms_spatial_backward(dout, cache):
    N, C, H, W = dout.shape
    rows = dout.transpose(0, 2, 3, 1).reshape(N * H * W, C)  # (N*H*W, C)
    dx, dgamma = rmsnorm_backward(rows, cache)
    return np.ascontiguousarray(dx.reshape(N, H, W, C).transpose(0, 3, 1, 2)), dgamma


def _s0_spatial_forward(x, gamma, beta, v, p):
    return spatial_evonorm_s0_forward(x, gamma, beta, v, p["groups"], p)


# Ioffe 2017, section 4: rmax = 1, dmax = 0 for 5000 steps, then relaxed to 3 at 40k and 5 at 25k.
RENORM_SCHEDULE = {
    "warmup": 5000,
    "rmax_steps": 40000,
    "dmax_steps": 25000,
    "rmax": 3.0,
    "dmax": 5.0,
}


def renorm_limits(step: int, schedule: Mapping[str, float] | bool = True) -> tuple[float, float]:
    """``(rmax, dmax)`` of batch renorm at training step ``step`` under the paper's schedule.

    Parameters
    ----------
    step : int
        Train-mode steps taken before this one (0 first).
    schedule : True or dict
        True for :data:`RENORM_SCHEDULE` (Ioffe 2017, section 4); a dict overrides some of its
        keys: ``warmup`` (steps at ``rmax=1, dmax=0``), ``rmax_steps``, ``dmax_steps`` (the
        steps at which the final values are reached), ``rmax``, ``dmax`` (the final values).

    Returns
    -------
    rmax, dmax : float
        ``1`` and ``0`` up to ``warmup``, then linear in the step up to their final values.

    Examples
    --------
    >>> renorm_limits(0), renorm_limits(10**6)
    ((1.0, 0.0), (3.0, 5.0))
    >>> renorm_limits(15, {"warmup": 5, "rmax_steps": 25, "dmax_steps": 15})
    (2.0, 5.0)
    """
    given = {} if schedule is True else schedule
    if not isinstance(given, Mapping) or set(given) - set(RENORM_SCHEDULE):
        raise ValueError(
            f"expected renorm_schedule True or a dict with keys among {sorted(RENORM_SCHEDULE)}, "
            f"got {schedule!r}"
        )
    s = {**RENORM_SCHEDULE, **given}
    warmup = s["warmup"]

    def ramp(end, final, start_value):
        if step <= warmup or end <= warmup:
            return final if step > warmup else start_value
        return start_value + (final - start_value) * min(1.0, (step - warmup) / (end - warmup))

    rmax, dmax = ramp(s["rmax_steps"], s["rmax"], 1.0), ramp(s["dmax_steps"], s["dmax"], 0.0)
    return float(rmax), float(dmax)


def _renorm(forward):
    """Batch renorm with the option ``renorm_schedule`` (``rmax``/``dmax`` from the step count)."""

    def renorm_forward(x, gamma, beta, p):
        schedule = p.get("renorm_schedule")
        q = {k: v for k, v in p.items() if k not in ("renorm_schedule", "renorm_step")}
        step = p["renorm_step"]  # (1,) train-mode steps so far
        if schedule not in (None, False):
            if "rmax" in q or "dmax" in q:
                raise ValueError(
                    "batch renorm: pass rmax/dmax or renorm_schedule in norm_options, not both"
                )
            q["rmax"], q["dmax"] = renorm_limits(int(step[0]), schedule)
        out, cache = forward(x, gamma, beta, q)
        if "num_batches_tracked" in q:  # an int the layer rebinds (momentum=None)
            p["num_batches_tracked"] = q["num_batches_tracked"]
        if p["mode"] == "train":
            step += 1
        return out, cache

    return renorm_forward


def _register_builtins() -> None:
    def both(name, forward, backward, spatial_forward=None, spatial_backward=None, **kw):
        register_normalization(name, forward, backward, **kw)
        spatial = (spatial_forward or forward, spatial_backward or backward)
        register_normalization(name, *spatial, kind="spatial", **kw)

    # batchnorm_forward's own defaults, written out so that folding reads the eps in use;
    # momentum (or None, with a count) and track_running_stats checked when a model is built
    stats = {"running_mean": 0.0, "running_var": 0.0}
    bn = dict(
        buffers=stats,
        defaults={"eps": 1e-5, "momentum": 0.9},
        test_affine=_bn_test_affine,
        batch_stats=True,
    )
    both(
        "batchnorm",
        counted(batchnorm_forward),
        batchnorm_backward_alt,
        counted(spatial_batchnorm_forward),
        spatial_batchnorm_backward,
        **bn,
        configure=bn_configure("batchnorm", stats),
    )
    ghost = {**bn, "defaults": {**bn["defaults"], "virtual_batch_size": 32}}
    both(
        "ghostbatchnorm",
        counted(batchnorm_forward),
        batchnorm_backward_alt,
        counted(spatial_batchnorm_forward),
        spatial_batchnorm_backward,
        **ghost,
        configure=bn_configure("ghostbatchnorm", stats),
    )
    renorm_stats = {**stats, "renorm_step": lambda C: np.zeros(1)}
    both(
        "batchrenorm",
        counted(_renorm(batchrenorm_forward)),
        batchrenorm_backward,
        counted(_renorm(spatial_batchrenorm_forward)),
        spatial_batchrenorm_backward,
        **{**bn, "buffers": renorm_stats},
        configure=bn_configure(
            "batchrenorm",
            renorm_stats,
            refused={
                "track_running_stats": "r and d are computed from the running statistics, "
                "so it always keeps them",
                "virtual_batch_size": "batch renorm has no ghost batches",
            },
        ),
    )
    both(
        "layernorm",
        layernorm_forward,
        layernorm_backward,
        _ln_spatial_forward,
        spatial_groupnorm_backward,
    )
    gn_feature = _feature_view(_gn_spatial_forward, spatial_groupnorm_backward)
    both("groupnorm", *gn_feature, _gn_spatial_forward, spatial_groupnorm_backward, groups=True)

    # statistics in both modes from the running averages (ones: identity at initialisation)
    fixed = {"running_mean": 0.0, "running_var": 1.0}
    both(
        "batchnorm-ema",
        counted(batchnorm_ema_forward),
        batchnorm_ema_backward,
        **{**bn, "buffers": fixed},
        configure=bn_configure(
            "batchnorm-ema",
            fixed,
            untracked_why="it normalizes with its running statistics in train mode too",
        ),
    )
    both(
        "batchnorm-frozen",
        frozen_batchnorm_forward,
        frozen_batchnorm_backward,
        buffers=fixed,
        defaults={"eps": 1e-5},
        test_affine=_bn_test_affine,
    )
    both(
        "darknet",
        darknet_batchnorm_forward,
        darknet_batchnorm_backward,
        buffers={"running_mean": 0.0, "running_var": 0.0},
        test_affine=_darknet_test_affine,
    )
    both(
        "rmsnorm",
        rmsnorm_forward,
        rmsnorm_backward,
        _rms_spatial_forward,
        _rms_spatial_backward,
        params={"gamma": 1.0},
    )
    both(
        "layernorm2d",
        layernorm_forward,
        layernorm_backward,
        spatial_layernorm_forward,
        spatial_layernorm_backward,
    )
    register_normalization(
        "instancenorm", spatial_instancenorm_forward, spatial_instancenorm_backward, kind="spatial"
    )
    register_normalization(
        "instancenorm-tracked",
        spatial_instancenorm_forward,
        spatial_instancenorm_backward,
        kind="spatial",
        buffers={"running_mean": 0.0, "running_var": 0.0},
        defaults={"eps": 1e-5, "momentum": 0.9, "track_running_stats": True},
        test_affine=_bn_test_affine,
    )
    evo = {"gamma": 1.0, "beta": 0.0, "v": 1.0}  # timm's EvoNorm2dB0/S0 initialisation
    register_normalization(
        "evonorm-b0",
        spatial_evonorm_b0_forward,
        spatial_evonorm_b0_backward,
        kind="spatial",
        params=evo,
        buffers={"running_var": 0.0},
        defaults={"eps": 1e-3, "momentum": 0.9},
    )
    s0_feature = _feature_view(_s0_spatial_forward, spatial_evonorm_s0_backward)
    both(
        "evonorm-s0",
        *s0_feature,
        _s0_spatial_forward,
        spatial_evonorm_s0_backward,
        params=evo,
        groups=True,
        defaults={"eps": 1e-5},
    )

    # why a built-in lacks a kind, for get_normalization's message
    single = (
        "the instance statistics of an (N, D) input are over a single value each, so every "
        "output would be beta"
    )
    note_missing_kind("instancenorm", "feature", single)
    note_missing_kind("instancenorm-tracked", "feature", single)
    note_missing_kind(
        "evonorm-b0",
        "feature",
        "its instance variance over a single value is 0, so the instance term would be "
        "v * x + sqrt(eps) alone",
    )


_register_builtins()
