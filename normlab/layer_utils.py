"""The CS231n "sandwich" layers: common chains of layers as one forward/backward pair.

Names, signatures and cache layouts of ``cs231n/layer_utils.py`` (assignments 1 and 2)::

    affine_relu          affine - ReLU
    conv_relu            conv - ReLU
    conv_relu_pool       conv - ReLU - max-pool
    conv_bn_relu         conv - spatial batch norm - ReLU
    affine_norm_relu     affine - any registered 'feature' normalization - ReLU

Each ``*_forward`` returns ``(out, cache)`` with ``cache`` the tuple of its layers' caches;
each ``*_backward(dout, cache)`` returns the gradients of the forward's array arguments, in
their order. The layers are :mod:`normlab.layers`'s (the fast conv and pooling, not the naive
loops).

This module sits on the models' floor: ``affine_norm_relu`` looks normalizations up in the
registry of :mod:`normlab.models`, so that every name ``normalization=...`` accepts works here
too. The models themselves do not use these functions (:class:`~normlab.models.Network` runs
its own block chain).
"""

from __future__ import annotations

import numpy as np

from normlab.layers import (
    affine_backward,
    affine_forward,
    conv_backward,
    conv_forward,
    max_pool_backward,
    max_pool_forward,
    relu_backward,
    relu_forward,
    spatial_batchnorm_backward,
    spatial_batchnorm_forward,
)
from normlab.models import NormLayer, get_normalization

__all__ = [
    "affine_norm_relu_backward",
    "affine_norm_relu_forward",
    "affine_relu_backward",
    "affine_relu_forward",
    "conv_bn_relu_backward",
    "conv_bn_relu_forward",
    "conv_relu_backward",
    "conv_relu_forward",
    "conv_relu_pool_backward",
    "conv_relu_pool_forward",
]

_GAMMA_BETA = ("gamma", "beta")


def affine_relu_forward(x, w, b):
    """Affine layer followed by a ReLU.

    Parameters
    ----------
    x : ndarray of shape (N, d1, ..., dk)
        Input, each sample flattened to D = d1 * ... * dk features.
    w : ndarray of shape (D, M)
    b : ndarray of shape (M,)

    Returns
    -------
    out : ndarray of shape (N, M)
        ``max(0, x @ w + b)``.
    cache : tuple (fc_cache, relu_cache)

    Raises
    ------
    ValueError
        Shapes that do not fit (from :func:`~normlab.layers.affine_forward`).

    Notes
    -----
    Source: CS231n assignments 1 and 2, ``layer_utils.affine_relu_forward``.

    Examples
    --------
    >>> out, cache = affine_relu_forward(np.ones((2, 3)), np.ones((3, 4)), -np.arange(4.0))
    >>> out[0]
    array([3., 2., 1., 0.])
    >>> [g.shape for g in affine_relu_backward(np.ones((2, 4)), cache)]
    [(2, 3), (3, 4), (4,)]
    """
    a, fc_cache = affine_forward(x, w, b)  # (N, M)
    out, relu_cache = relu_forward(a)  # (N, M)
    return out, (fc_cache, relu_cache)


def affine_relu_backward(dout, cache):
    """Backward of :func:`affine_relu_forward`.

    Parameters
    ----------
    dout : ndarray of shape (N, M)
    cache : tuple from :func:`affine_relu_forward`

    Returns
    -------
    dx : ndarray of the shape of x
    dw : ndarray of shape (D, M)
    db : ndarray of shape (M,)
    """
    fc_cache, relu_cache = cache
    da = relu_backward(dout, relu_cache)  # (N, M)
    return affine_backward(da, fc_cache)


def conv_relu_forward(x, w, b, conv_param):
    """Convolution followed by a ReLU.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
    w : ndarray of shape (F, C, HH, WW)
    b : ndarray of shape (F,)
    conv_param : dict
        ``'stride'`` (default 1) and ``'pad'`` (default 0), as
        :func:`~normlab.layers.conv_forward`.

    Returns
    -------
    out : ndarray of shape (N, F, H', W')
        ``H' = 1 + (H + 2*pad - HH) // stride``, likewise ``W'``.
    cache : tuple (conv_cache, relu_cache)

    Raises
    ------
    ValueError
        Bad shapes or ``conv_param`` (from :func:`~normlab.layers.conv_forward`).

    Notes
    -----
    Source: CS231n assignment 2, ``layer_utils.conv_relu_forward``.
    """
    a, conv_cache = conv_forward(x, w, b, conv_param)  # (N, F, H', W')
    out, relu_cache = relu_forward(a)
    return out, (conv_cache, relu_cache)


def conv_relu_backward(dout, cache):
    """Backward of :func:`conv_relu_forward`.

    Parameters
    ----------
    dout : ndarray of shape (N, F, H', W')
    cache : tuple from :func:`conv_relu_forward`

    Returns
    -------
    dx : ndarray of shape (N, C, H, W)
    dw : ndarray of shape (F, C, HH, WW)
    db : ndarray of shape (F,)
    """
    conv_cache, relu_cache = cache
    da = relu_backward(dout, relu_cache)  # (N, F, H', W')
    return conv_backward(da, conv_cache)


def conv_relu_pool_forward(x, w, b, conv_param, pool_param):
    """Convolution, ReLU, then max pooling.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
    w : ndarray of shape (F, C, HH, WW)
    b : ndarray of shape (F,)
    conv_param : dict
        ``'stride'``, ``'pad'``, as :func:`~normlab.layers.conv_forward`.
    pool_param : dict
        ``'pool_height'``, ``'pool_width'``, ``'stride'`` (all required), as
        :func:`~normlab.layers.max_pool_forward`.

    Returns
    -------
    out : ndarray of shape (N, F, H'', W'')
        The pooled maps: ``H'' = 1 + (H' - pool_height) // pool stride`` of the conv output's
        ``H'``, likewise ``W''``.
    cache : tuple (conv_cache, relu_cache, pool_cache)

    Raises
    ------
    ValueError
        Bad shapes, ``conv_param`` or ``pool_param``.

    Notes
    -----
    Source: CS231n assignment 2, ``layer_utils.conv_relu_pool_forward``.

    Examples
    --------
    >>> x, w, b = np.ones((2, 3, 8, 8)), np.ones((4, 3, 3, 3)), np.zeros(4)
    >>> pool = {"pool_height": 2, "pool_width": 2, "stride": 2}
    >>> out, cache = conv_relu_pool_forward(x, w, b, {"stride": 1, "pad": 1}, pool)
    >>> out.shape
    (2, 4, 4, 4)
    """
    a, conv_cache = conv_forward(x, w, b, conv_param)  # (N, F, H', W')
    s, relu_cache = relu_forward(a)
    out, pool_cache = max_pool_forward(s, pool_param)  # (N, F, H'', W'')
    return out, (conv_cache, relu_cache, pool_cache)


def conv_relu_pool_backward(dout, cache):
    """Backward of :func:`conv_relu_pool_forward`.

    Parameters
    ----------
    dout : ndarray of shape (N, F, H'', W'')
    cache : tuple from :func:`conv_relu_pool_forward`

    Returns
    -------
    dx : ndarray of shape (N, C, H, W)
    dw : ndarray of shape (F, C, HH, WW)
    db : ndarray of shape (F,)
    """
    conv_cache, relu_cache, pool_cache = cache
    ds = max_pool_backward(dout, pool_cache)  # (N, F, H', W')
    da = relu_backward(ds, relu_cache)
    return conv_backward(da, conv_cache)


def conv_bn_relu_forward(x, w, b, gamma, beta, conv_param, bn_param):
    """Convolution, spatial batch normalization, then a ReLU.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
    w : ndarray of shape (F, C, HH, WW)
    b : ndarray of shape (F,)
    gamma, beta : ndarray of shape (F,)
        Scale and shift of the batch norm, per output channel.
    conv_param : dict
        ``'stride'``, ``'pad'``, as :func:`~normlab.layers.conv_forward`.
    bn_param : dict
        As :func:`~normlab.layers.spatial_batchnorm_forward`: ``'mode'`` ('train' or 'test',
        required), ``'eps'`` (default 1e-5), ``'momentum'`` (default 0.9), ``'running_mean'``
        and ``'running_var'`` of shape (F,) (created as zeros when absent, updated in place in
        train mode).

    Returns
    -------
    out : ndarray of shape (N, F, H', W')
    cache : tuple (conv_cache, bn_cache, relu_cache)

    Raises
    ------
    ValueError
        Bad shapes, ``conv_param`` or ``bn_param``.
    NonFiniteStatisticsError
        In train mode, for a channel whose batch statistics are not finite.

    Notes
    -----
    Source: CS231n assignment 2, ``layer_utils.conv_bn_relu_forward``.
    """
    a, conv_cache = conv_forward(x, w, b, conv_param)  # (N, F, H', W')
    an, bn_cache = spatial_batchnorm_forward(a, gamma, beta, bn_param)
    out, relu_cache = relu_forward(an)
    return out, (conv_cache, bn_cache, relu_cache)


def conv_bn_relu_backward(dout, cache):
    """Backward of :func:`conv_bn_relu_forward`.

    Parameters
    ----------
    dout : ndarray of shape (N, F, H', W')
    cache : tuple from :func:`conv_bn_relu_forward`

    Returns
    -------
    dx : ndarray of shape (N, C, H, W)
    dw : ndarray of shape (F, C, HH, WW)
    db, dgamma, dbeta : ndarray of shape (F,)
    """
    conv_cache, bn_cache, relu_cache = cache
    dan = relu_backward(dout, relu_cache)  # (N, F, H', W')
    da, dgamma, dbeta = spatial_batchnorm_backward(dan, bn_cache)
    dx, dw, db = conv_backward(da, conv_cache)
    return dx, dw, db, dgamma, dbeta


def affine_norm_relu_forward(x, w, b, gamma, beta, norm, norm_param):
    """Affine layer, a registered normalization (its ``'feature'`` variant), then a ReLU.

    Parameters
    ----------
    x : ndarray of shape (N, d1, ..., dk)
        Input, each sample flattened to D features.
    w : ndarray of shape (D, M)
    b : ndarray of shape (M,)
    gamma, beta : ndarray of shape (M,) or None
        The normalization's scale and shift. A normalization without a shift (``'rmsnorm'``)
        ignores ``beta`` (pass None).
    norm : str or NormLayer
        A name in ``available_normalizations('feature')`` (``'batchnorm'``, ``'layernorm'``,
        ``'groupnorm'``, a user's...) or its registration.
    norm_param : dict
        The normalization's parameters, kept by the caller between calls as the assignment's
        ``bn_param``: ``'mode'`` ('train' or 'test'; what the normalization requires), its
        options (``'eps'``...), and for a grouped normalization ``'groups'`` (required: a
        divisor of M). Filled in place on the first call with the registration's default
        options and its running statistics (zeros, shape (M,)), which train mode then updates
        in place -- as the models build theirs.

    Returns
    -------
    out : ndarray of shape (N, M)
    cache : tuple (fc_cache, norm_layer, norm_cache, relu_cache)

    Raises
    ------
    ValueError
        An unknown name (the message lists the known ones); a normalization with parameters
        other than ``gamma``/``beta`` (``'evonorm-s0'``: it includes its own nonlinearity, so
        "norm - ReLU" does not apply; call its forward directly); ``'groups'`` missing for a
        grouped one; a bad option or shape (from the normalization).

    Notes
    -----
    The assignment's ``affine_bn_relu`` / ``affine_ln_relu`` helpers (which students write in
    ``fc_net.py``), generalised to the registry of :mod:`normlab.models.registry`.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x, w, b = rng.normal(size=(4, 3)), rng.normal(size=(3, 5)), np.zeros(5)
    >>> gamma, beta, p = np.ones(5), np.zeros(5), {"mode": "train"}
    >>> out, cache = affine_norm_relu_forward(x, w, b, gamma, beta, "batchnorm", p)
    >>> sorted(p)  # the defaults and running statistics, as batch norm keeps them
    ['eps', 'mode', 'momentum', 'running_mean', 'running_var']
    >>> len(affine_norm_relu_backward(np.ones((4, 5)), cache))
    5
    """
    layer = norm if isinstance(norm, NormLayer) else get_normalization(norm, "feature")
    if layer is None or layer.kind != "feature":
        raise ValueError(
            f"expected norm a name in available_normalizations('feature') or its NormLayer, "
            f"got {norm!r}; for no normalization use affine_relu_forward"
        )
    names = tuple(layer.params)
    if not set(names) <= set(_GAMMA_BETA):
        raise ValueError(
            f"normalization {layer.name!r} takes the parameters {list(names)}, not gamma and "
            "beta alone: call its forward function in normlab.layers directly (e.g. "
            "spatial_evonorm_s0_forward)"
        )
    a, fc_cache = affine_forward(x, w, b)  # (N, M)
    _fill_norm_param(layer, norm_param, a.shape[1], a.dtype)
    given = {"gamma": gamma, "beta": beta}
    an, norm_cache = layer.forward(a, *[given[k] for k in names], norm_param)  # (N, M)
    out, relu_cache = relu_forward(an)
    return out, (fc_cache, layer, norm_cache, relu_cache)


def affine_norm_relu_backward(dout, cache):
    """Backward of :func:`affine_norm_relu_forward`.

    Parameters
    ----------
    dout : ndarray of shape (N, M)
    cache : tuple from :func:`affine_norm_relu_forward`

    Returns
    -------
    dx : ndarray of the shape of x
    dw : ndarray of shape (D, M)
    db : ndarray of shape (M,)
    dgamma, dbeta : ndarray of shape (M,), or None
        None for a parameter the normalization does not have (``dbeta`` of ``'rmsnorm'``).
    """
    fc_cache, layer, norm_cache, relu_cache = cache
    dan = relu_backward(dout, relu_cache)  # (N, M)
    da, *dparams = layer.backward(dan, norm_cache)
    grads = dict(zip(layer.params, dparams, strict=True))
    dx, dw, db = affine_backward(da, fc_cache)
    return dx, dw, db, grads.get("gamma"), grads.get("beta")


def _fill_norm_param(layer: NormLayer, norm_param: dict, width: int, dtype) -> None:
    """Put the registration's defaults and missing running statistics into ``norm_param``."""
    if not isinstance(norm_param, dict):
        raise ValueError(f"expected norm_param a dict, got {type(norm_param).__name__}")
    for key, value in layer.defaults.items():
        norm_param.setdefault(key, value)
    if layer.groups and "groups" not in norm_param:
        raise ValueError(
            f"normalization {layer.name!r} needs norm_param['groups'], a divisor of the width "
            f"{width} (the models use gcd(4, {width}) = {np.gcd(4, width)})"
        )
    # arrays are running statistics, everything else options (what configure checks)
    options = {
        k: v
        for k, v in norm_param.items()
        if k not in ("mode", "groups") and not isinstance(v, np.ndarray)
    }
    kept = layer.buffers_for(options)
    for key, value in layer.init_buffers(width, dtype, kept).items():
        norm_param.setdefault(key, value)
