"""Weight standardization: each output filter of a convolution's weights to mean 0, variance 1.

Qiao et al. 2019, "Micro-Batch Training with Batch-Channel Normalization and Weight
Standardization" (arXiv:1903.10520), Eq. 5-7. Applied to the *weights*, not the activations:
``conv(x, w_hat)`` with ``w_hat = weight_standardize_forward(w, ...)``, and the convolution's
``dw_hat`` turned into ``dw`` by :func:`weight_standardize_backward`. Per filter it is layer norm
without scale and shift over the filter's ``C*HH*WW`` weights (docs/derivations.md); weights are
small and standardized once per step, so this is plain NumPy in float64.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from normlab.layers._checks import as_float_array, check_eps, check_keys

WS_KEYS = frozenset(("eps",))


class WSCache(NamedTuple):
    """What :func:`weight_standardize_backward` needs.

    Attributes
    ----------
    shape : tuple
        Shape of ``w``: (F, C, HH, WW) or (F, D).
    dtype : numpy dtype
        Dtype of ``w`` (and of the returned ``dw``).
    w_hat : ndarray of float64, shape (F, K)
        The standardized filters, ``K = C*HH*WW`` (or D).
    rstd : ndarray of float64, shape (F, 1)
        ``1 / sqrt(var + eps)`` per filter (eps included, so the backward never re-types it).
    """

    shape: tuple
    dtype: np.dtype
    w_hat: np.ndarray
    rstd: np.ndarray


def weight_standardize_forward(w, ws_param=None):
    """Standardize each output filter of ``w`` over its inputs: mean 0, variance 1.

    Parameters
    ----------
    w : ndarray of shape (F, C, HH, WW) or (F, D)
        Convolution filters (normlab's ``conv_forward`` layout) or weights stored with one row
        per output unit. Each of the F rows is standardized over its ``K = C*HH*WW`` (or D)
        values. ``affine_forward``'s ``w`` is (D, M), one *column* per output: pass ``w.T``.
    ws_param : dict, optional
        ``eps`` : float > 0, default 1e-5, added to the variance.

    Returns
    -------
    w_hat : ndarray, shape and dtype of w
    cache : WSCache
        For :func:`weight_standardize_backward`.

    Raises
    ------
    ValueError
        ``w`` not 2-D or 4-D or empty, a complex dtype, a bad ``eps``, or a ``ws_param``
        key other than ``eps``.

    Notes
    -----
    Per filter ``f``, over its ``K`` weights (biased variance, eps inside the square root, as in
    the paper's Eq. 6-7 and timm's ``StdConv2d``)::

        mu_f  = 1/K sum_k w_fk,   var_f = 1/K sum_k (w_fk - mu_f)^2
        w_hat_fk = (w_fk - mu_f) / sqrt(var_f + eps)

    The authors' published layer code differs: PyTorch ``(w - mean) / (std + 1e-5)`` with the
    *unbiased* ``std``, TensorFlow the biased ``std`` ``+ 1e-5`` (docs/conventions.md).

    Examples
    --------
    >>> import numpy as np
    >>> w = np.random.default_rng(0).normal(0.3, 0.05, size=(8, 3, 3, 3))
    >>> w_hat, _ = weight_standardize_forward(w, {"eps": 1e-5})
    >>> bool(np.allclose(w_hat.mean(axis=(1, 2, 3)), 0))
    True
    >>> bool(np.all(np.abs(w_hat.var(axis=(1, 2, 3)) - 1) < 1e-2))
    True
    """
    fn = "weight_standardize_forward"
    ws_param = {} if ws_param is None else ws_param
    if not isinstance(ws_param, dict):
        raise ValueError(f"{fn}: expected ws_param a dict, got {type(ws_param).__name__}")
    check_keys(ws_param, WS_KEYS, fn, "ws_param")
    eps = check_eps(ws_param.get("eps", 1e-5), fn)
    w = as_float_array(w, fn, "w")
    if w.ndim not in (2, 4) or w.shape[0] == 0 or w.size == 0:
        raise ValueError(f"{fn}: expected w of shape (F, C, HH, WW) or (F, D), got {w.shape}")
    w2 = w.reshape(w.shape[0], -1).astype(np.float64)  # (F, K)
    mu = w2.mean(axis=1, keepdims=True)  # (F, 1)
    wmu = w2 - mu  # (F, K)
    var = (wmu**2).mean(axis=1, keepdims=True)  # (F, 1) biased
    rstd = 1.0 / np.sqrt(var + eps)  # (F, 1)
    w_hat = wmu * rstd  # (F, K)
    return w_hat.reshape(w.shape).astype(w.dtype), WSCache(w.shape, w.dtype, w_hat, rstd)


def weight_standardize_backward(dw_hat, cache: WSCache):
    """Gradient of the loss with respect to ``w``, given its gradient with respect to ``w_hat``.

    Parameters
    ----------
    dw_hat : ndarray, shape of w
        Upstream gradient (e.g. ``dw`` of ``conv_backward`` run with the standardized filters).
    cache : WSCache from :func:`weight_standardize_forward`

    Returns
    -------
    dw : ndarray, shape and dtype of w

    Notes
    -----
    Layer norm's closed form with ``gamma = 1``, per filter over its K weights::

        dw = rstd * (g - mean_k(g) - w_hat * mean_k(g * w_hat)),   g = dw_hat

    so ``dw`` of every filter sums to 0 and is orthogonal to ``w_hat``: the output does not
    change under a shift or a rescaling of a filter, and neither may the loss.
    """
    if not isinstance(cache, WSCache):
        raise ValueError(
            "weight_standardize_backward: expected the cache of weight_standardize_forward, got "
            f"{type(cache).__name__}"
        )
    if np.shape(dw_hat) != cache.shape:
        raise ValueError(
            f"weight_standardize_backward: expected dw_hat of shape {cache.shape} (w's), got "
            f"{np.shape(dw_hat)}"
        )
    g = np.asarray(dw_hat, dtype=np.float64).reshape(cache.w_hat.shape)  # (F, K)
    w_hat = cache.w_hat  # (F, K)
    mean_g = g.mean(axis=1, keepdims=True)  # (F, 1), the shift direction
    mean_gw = (g * w_hat).mean(axis=1, keepdims=True)  # (F, 1), the scale direction
    dw = cache.rstd * (g - mean_g - w_hat * mean_gw)  # (F, K)
    return dw.reshape(cache.shape).astype(cache.dtype)
