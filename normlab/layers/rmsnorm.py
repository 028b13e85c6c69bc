"""Root-mean-square layer normalization (Zhang & Sennrich, 2019) for (N, D) input.

RMSNorm rescales each sample by the root mean square of its features and never centres it, so it
is *not* the mean-and-variance core of ``norm_core``: the statistic is ``mean(x^2)``, not a
variance, and the backward has one projection (along ``xhat``) instead of two. The readable NumPy
version here is the reference; ``normlab.kernels.rms`` computes the same in fused loops (a pass
for the statistic and a pass for the output, row by row) and is used unless
``NORMLAB_BACKEND=numpy``. ``docs/derivations.md`` (section 5) derives the backward.

Conventions are PyTorch's ``torch.nn.RMSNorm`` / ``F.rms_norm``: no shift, ``eps`` added to the
mean square, and ``eps=None`` meaning ``np.finfo(x.dtype).eps``. As for layer norm, train mode
(``mode`` absent or ``'train'``) refuses samples whose statistic is NaN or inf with a
``NonFiniteStatisticsError``; ``mode='test'`` computes the same numbers unchecked.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from normlab.kernels import get_backend
from normlab.kernels import rms as kern
from normlab.kernels.norm import chunks
from normlab.layers._checks import (
    as_float_array,
    check_channel_param,
    check_eps,
    check_finite_stats,
    check_ndim,
)
from normlab.layers.layernorm import _param_dict
from normlab.layers.norm_core import check_dout

RMS_KEYS = frozenset(("mode", "eps"))


class RMSCache(NamedTuple):
    """What :func:`rmsnorm_backward` needs.

    Attributes
    ----------
    x : ndarray of shape (N, D)
        The input, in its dtype.
    gamma : ndarray of shape (D,)
        The scale as given.
    rrms : ndarray of shape (N,), float64
        ``1 / sqrt(mean(x^2, axis=1) + eps)``, eps already inside.
    """

    x: np.ndarray
    gamma: np.ndarray
    rrms: np.ndarray


def rmsnorm_forward(x, gamma, rms_param):
    """RMS normalization of (N, D) input: each sample divided by the root mean square of its row.

    Parameters
    ----------
    x : ndarray of shape (N, D), float32 or float64 (integers become float64)
    gamma : ndarray of shape (D,)
        Scale, initialised to ones (PyTorch's ``RMSNorm.weight``). There is no shift.
    rms_param : dict or None
        ``eps`` : float or None, default None -- added to the mean square; None is
        ``np.finfo(x.dtype).eps`` (1.19e-7 for float32, 2.22e-16 for float64), PyTorch's default;
        ``mode`` : 'train' | 'test', default 'train' -- the same computation; only train mode
        checks that the statistics are finite.

    Returns
    -------
    out : ndarray of shape (N, D), dtype of x
    cache : RMSCache
        For :func:`rmsnorm_backward`.

    Raises
    ------
    NonFiniteStatisticsError
        A ``FloatingPointError``: in train mode, when a sample's mean square is NaN or inf (its
        row holds NaN or inf, or its squares overflow float64); the message names the samples.
    ValueError
        Bad shapes or dtypes, ``D = 0``, bad ``eps`` or ``mode``, or a key of ``rms_param``
        other than ``eps`` and ``mode`` (the message names it and the known keys).

    Notes
    -----
    Zhang & Sennrich 2019, eq. 4, with PyTorch's ``eps`` (statistics in float64)::

        ms_n = mean_d x[n, d]^2,   rrms_n = 1 / sqrt(ms_n + eps),
        out[n, d] = gamma[d] * x[n, d] * rrms_n

    ``out`` does not change when a row of ``x`` is scaled by ``a > 0`` (up to ``eps``).
    Equals ``torch.nn.functional.rms_norm(x, (D,), gamma, eps)``. Runs the fused kernel of
    :mod:`normlab.kernels.rms` (``ms`` summed in float64, the output in x's dtype) unless
    ``NORMLAB_BACKEND=numpy``, which runs this function's float64 NumPy reference.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(3, 2, size=(4, 8))
    >>> out, _ = rmsnorm_forward(x, np.ones(8), {})
    >>> bool(np.allclose((out**2).mean(axis=1), 1))
    True
    """
    fn = "rmsnorm_forward"
    rms_param, train = _param_dict(rms_param, fn, "rms_param", RMS_KEYS)
    x = as_float_array(x, fn)
    check_ndim(x, 2, fn, "(N, D)")
    D = x.shape[1]
    gamma = check_channel_param(gamma, D, fn, "gamma")
    eps = rms_param.get("eps")
    eps = float(np.finfo(x.dtype).eps) if eps is None else check_eps(eps, fn)
    if D == 0:
        raise ValueError(
            f"{fn}: expected at least one feature (D > 0), got input of shape {x.shape}"
        )
    if get_backend() == "numpy":
        out, rrms = _forward_numpy(x, gamma, eps, train)
    else:
        out, ms, rrms, bad = _forward_kernel(x, gamma, eps)
        if train and bad:  # the kernel counted them (np.dot here may wake BLAS threads)
            check_finite_stats(ms, ms, fn, "samples")
    return out, RMSCache(x, gamma, rrms)


def rmsnorm_backward(dout, cache: RMSCache):
    """Backward of :func:`rmsnorm_forward`.

    Parameters
    ----------
    dout : ndarray of shape (N, D)
        Upstream gradient.
    cache : RMSCache
        From the forward.

    Returns
    -------
    dx : ndarray of shape (N, D), dtype of x
    dgamma : ndarray of shape (D,), dtype of gamma

    Notes
    -----
    With ``xhat = x * rrms`` and ``g = dout * gamma`` (the gradient reaching ``xhat``)::

        dx = rrms * (g - xhat * mean_d(g * xhat)),   dgamma = sum_n dout * xhat

    the gradient with its component along ``xhat`` removed (the layer is invariant to a scale of
    the row), divided by the RMS; exact with ``eps`` (docs/derivations.md, section 5). Runs
    the fused kernel of :mod:`normlab.kernels.rms` unless ``NORMLAB_BACKEND=numpy``.
    """
    if not isinstance(cache, RMSCache):
        raise ValueError(
            f"rmsnorm_backward: expected the cache of rmsnorm_forward (an RMSCache), got "
            f"{type(cache).__name__}"
        )
    check_dout(dout, cache.x.shape)
    if get_backend() == "numpy":
        dx, dgamma = _backward_numpy(dout, cache)
    else:
        dx, dgamma = _backward_kernel(dout, cache)
    return dx, dgamma.astype(cache.gamma.dtype, copy=False)


# --- the readable reference -------------------------------------------------------------------


def _forward_numpy(x, gamma, eps, train):
    x64 = x.astype(np.float64)  # (N, D)
    ms = np.einsum("nd,nd->n", x64, x64) / x.shape[1]  # (N,) mean square
    if train:  # before the output, whose inf * 0 would warn first
        check_finite_stats(ms, ms, "rmsnorm_forward", "samples")
    rrms = 1.0 / np.sqrt(ms + eps)  # (N,)
    out = (x64 * rrms[:, None] * gamma).astype(x.dtype)  # (N, D)
    return out, rrms


def _backward_numpy(dout, cache):
    dy = np.asarray(dout, dtype=np.float64)  # (N, D)
    rrms = cache.rrms[:, None]  # (N, 1)
    xhat = cache.x.astype(np.float64) * rrms  # (N, D)
    dgamma = np.einsum("nd,nd->d", dy, xhat)  # (D,)
    g = dy * cache.gamma  # (N, D), dL/dxhat
    proj = np.einsum("nd,nd->n", g, xhat)[:, None] / xhat.shape[1]  # (N, 1), mean(g * xhat)
    dx = rrms * (g - xhat * proj)  # (N, D)
    return dx.astype(cache.x.dtype), dgamma


# --- the fused kernels ------------------------------------------------------------------------


def _forward_kernel(x, gamma, eps):
    x = np.ascontiguousarray(x)  # (N, D)
    g = np.ascontiguousarray(gamma, dtype=x.dtype)  # (D,): one compiled signature per dtype
    out = np.empty_like(x)  # (N, D)
    N = x.shape[0]
    ms, rrms = np.empty(N), np.empty(N)  # (N,) float64
    bad = kern.rms_forward.pick(x.size)(x, g, eps, out, ms, rrms)  # rows with ms NaN or inf
    return out, ms, rrms, bad


def _backward_kernel(dout, cache):
    x = np.ascontiguousarray(cache.x)  # (N, D)
    dy = np.ascontiguousarray(dout, dtype=x.dtype)  # (N, D)
    g = np.ascontiguousarray(cache.gamma, dtype=x.dtype)  # (D,)
    dx = np.empty_like(x)  # (N, D)
    N, D = x.shape
    T = max(1, min(chunks(x.size), N))  # per-chunk partial sums of dgamma
    dgp = np.zeros((T, D))  # (T, D) float64
    kern.rms_backward.pick(x.size)(dy, x, cache.rrms, g, dx, dgp)
    return dx, (dgp[0] if T == 1 else dgp.sum(axis=0))
