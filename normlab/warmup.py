"""Compile (or load from numba's on-disk cache) every kernel a training run calls, before timing.

numba compiles a kernel on its first call, once per signature (dtype, number of dimensions and
memory layout of each array argument, type of each scalar): without a warm-up the first
training step of a run pays for it, seconds that a timing then reports as training.
:func:`warm_up` makes those first calls through the public layer and optimizer API, on inputs
whose dtypes, dimensions and layouts are the ones the models produce, so that a training step
afterwards compiles nothing.
"""

from __future__ import annotations

import time

import numpy as np

from normlab.kernels import get_backend
from normlab.kernels.norm import PARALLEL_MIN
from normlab.layers import (
    batchnorm_backward,
    batchnorm_backward_alt,
    batchnorm_forward,
    layernorm_backward,
    layernorm_forward,
    rmsnorm_backward,
    rmsnorm_forward,
    spatial_batchnorm_backward,
    spatial_batchnorm_forward,
    spatial_groupnorm_backward,
    spatial_groupnorm_forward,
)
from normlab.layers.conv import conv_backward, conv_forward, max_pool_backward, max_pool_forward
from normlab.layers.losses import softmax_cross_entropy
from normlab.optim import UPDATE_RULES
from normlab.optimizer import Optimizer

__all__ = ["warm_up"]

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _norms(rng, dtype) -> None:
    """Train- and test-mode forwards and the backwards of every normalization layer."""
    x = rng.standard_normal((4, 8), dtype)  # (N, D)
    dout = rng.standard_normal((4, 8), dtype)  # (N, D)
    gamma, beta = np.ones(8, dtype), np.zeros(8, dtype)  # (D,)
    bn = {"mode": "train", "eps": 1e-5, "momentum": 0.9}  # running stats (D,) of x's dtype
    _, cache = batchnorm_forward(x, gamma, beta, bn)
    batchnorm_backward_alt(dout, cache)
    batchnorm_backward(dout, cache)  # NumPy (the derivation): nothing to compile today
    bn["mode"] = "test"
    batchnorm_forward(x, gamma, beta, bn)
    for mode in ("train", "test"):  # the same kernel in both modes
        _, cache = layernorm_forward(x, gamma, beta, {"mode": mode, "eps": 1e-5})
    layernorm_backward(dout, cache)
    # group norm after an affine layer: the models view (N, D) as (N, D, 1, 1)
    x4, dout4 = x.reshape(4, 8, 1, 1), dout.reshape(4, 8, 1, 1)  # (N, D, 1, 1)
    _, cache = spatial_groupnorm_forward(x4, gamma, beta, 2, {"mode": "train", "groups": 2})
    spatial_groupnorm_backward(dout4, cache)
    # RMS norm; of a feature map the models normalize a contiguous (N*H*W, C) copy of it, which
    # takes these same signatures
    for mode in ("train", "test"):
        _, cache = rmsnorm_forward(x, gamma, {"mode": mode, "eps": None})
    rmsnorm_backward(dout, cache)

    x = rng.standard_normal((4, 4, 3, 3), dtype)  # (N, C, H, W)
    dout = rng.standard_normal((4, 4, 3, 3), dtype)  # (N, C, H, W)
    gamma, beta = np.ones(4, dtype), np.zeros(4, dtype)  # (C,)
    bn = {"mode": "train", "eps": 1e-5, "momentum": 0.9}
    _, cache = spatial_batchnorm_forward(x, gamma, beta, bn)
    spatial_batchnorm_backward(dout, cache)
    bn["mode"] = "test"
    spatial_batchnorm_forward(x, gamma, beta, bn)
    for G in (1, 2):  # layer norm of a feature map (one group), group norm
        for mode in ("train", "test"):
            _, cache = spatial_groupnorm_forward(x, gamma, beta, G, {"mode": mode, "eps": 1e-5})
        spatial_groupnorm_backward(dout, cache)


def _norms_parallel(rng, dtype) -> None:
    """One train-mode forward and backward of each kernel's multi-threaded variant, which
    runs on inputs of ``PARALLEL_MIN`` elements or more (the other calls of :func:`_norms`
    are NumPy or the same kernels)."""
    N = PARALLEL_MIN // 64
    x = rng.standard_normal((N, 64), dtype)  # (N, D), also the upstream gradient
    gamma, beta = np.ones(64, dtype), np.zeros(64, dtype)  # (D,)
    _, cache = batchnorm_forward(x, gamma, beta, {"mode": "train"})  # columns
    batchnorm_backward_alt(x, cache)
    _, cache = layernorm_forward(x, gamma, beta, {})  # rows
    layernorm_backward(x, cache)
    _, cache = rmsnorm_forward(x, gamma, {})
    rmsnorm_backward(x, cache)
    x = x.reshape(N, 4, 4, 4)  # (N, C, H, W)
    _, cache = spatial_batchnorm_forward(x, gamma[:4], beta[:4], {"mode": "train"})
    spatial_batchnorm_backward(x, cache)


def _convs_and_pools(rng, dtype) -> None:
    """Forward and backward of a convolution (its col2im kernel) and of the max
    pools with kernels (2x2 and 3x3 windows, stride 2)."""
    x = rng.standard_normal((2, 2, 5, 5), dtype)  # (N, C, H, W)
    w, b = rng.standard_normal((3, 2, 3, 3), dtype), np.zeros(3, dtype)  # (F, C, HH, WW), (F,)
    out, cache = conv_forward(x, w, b, {"stride": 1, "pad": 1})
    conv_backward(np.ones_like(out), cache)
    for size in (2, 3):
        out, cache = max_pool_forward(x, {"pool_height": size, "pool_width": size, "stride": 2})
        max_pool_backward(np.ones_like(out), cache)


def _loss_and_optimizers(rng, dtype) -> None:
    """The fused softmax cross-entropy, and one step of every built-in update rule."""
    scores = rng.standard_normal((4, 3), dtype)  # (N, classes)
    softmax_cross_entropy(scores, np.array([0, 1, 2, 0], np.int64))  # int64 labels, as loaded
    # parameters as a model lays them out: views of one buffer, end to end
    flat = np.zeros(6 * 3 + 3, dtype)  # (P,)
    params = {"W": flat[:18].reshape(6, 3), "b": flat[18:]}  # (6, 3), (3,)
    grads = {k: np.ones_like(p) for k, p in params.items()}
    for rule in UPDATE_RULES:
        Optimizer(params, rule).step(params, grads)


def warm_up(dtypes=(np.float32, np.float64), *, parallel: bool = True) -> float:
    """Compile, or load from numba's on-disk cache, every kernel that training calls.

    Runs each normalization layer (batch, spatial batch, layer, group and RMS norm: the forward
    in train and test mode, both backward variants), a convolution, the max pools that have
    kernels (2x2 and 3x3 windows at stride 2), the fused softmax cross-entropy and one step
    of every built-in update rule through :class:`~normlab.optimizer.Optimizer`, on small
    inputs laid out as :class:`~normlab.models.FullyConnectedNet` and
    :class:`~normlab.models.ConvNet` lay out theirs. numba compiles one specialization per
    signature (dtypes, dimensions and memory layout of the arguments), so a training step of
    those models in one of ``dtypes`` afterwards compiles nothing, and a timing of it measures
    training alone.

    Parameters
    ----------
    dtypes : sequence of dtype, default (np.float32, np.float64)
        The model dtypes to compile for (each float32 or float64).
    parallel : bool, default True
        Also compile the multi-threaded variants of the normalization kernels, which run on
        inputs of at least ``normlab.kernels.norm.PARALLEL_MIN`` (2**20) elements: the warm-up
        then normalizes such inputs once (a few megabytes each). Pass False when no layer of the
        run sees an input that large (e.g. batch 64 of width 100): on a cold cache their
        compilation takes about three times as long as the single-threaded variants'.

    Returns
    -------
    seconds : float
        Wall-clock time spent.

    Raises
    ------
    ValueError
        If a dtype is not float32 or float64.

    Notes
    -----
    Labels are compiled for int64, the dtype the data loaders give. With
    ``NORMLAB_BACKEND=numpy`` the layers and the optimizer run NumPy, and the warm-up costs
    milliseconds: it then loads only the kernel of the batch-norm running statistics, which
    both backends use. The compiled code is cached in memory for the process (and on disk for
    the next one): worker processes need their own warm-up.

    Examples
    --------
    >>> seconds = warm_up((np.float32,), parallel=False)
    >>> seconds >= 0
    True
    """
    if isinstance(dtypes, str | type | np.dtype):
        dtypes = (dtypes,)  # one dtype
    wanted = []
    for d in dtypes:
        try:
            dtype = np.dtype(d)
        except TypeError:
            dtype = None
        # d is None: np.dtype(None) is float64
        if d is None or dtype is None or dtype not in _DTYPES:
            raise ValueError(
                f"expected dtypes among float32 and float64, got {d!r}; e.g. pass (np.float32,)"
            )
        wanted.append(dtype)
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    for dtype in wanted:
        _norms(rng, dtype)
        if parallel and get_backend() == "numba":  # NumPy has no multi-threaded variants
            _norms_parallel(rng, dtype)
        _convs_and_pools(rng, dtype)
        _loss_and_optimizers(rng, dtype)
    return time.perf_counter() - t0
