"""Batch normalization (Ioffe & Szegedy, 2015) for (N, D) and (N, C, H, W) inputs.

Conventions (see ``docs/conventions.md`` for the mapping to PyTorch, Keras and darknet):

* ``momentum`` is the weight of the *old* running value:
  ``running = momentum * running + (1 - momentum) * batch`` (default 0.9, the CS231n
  convention; PyTorch's ``momentum=0.1`` is normlab's ``momentum=0.9``).
* Normalization always uses the biased batch variance ``mean((x - mu)^2)``. The running
  variance stores it as well unless ``running_var_unbiased=True``, which applies the paper's
  ``m / (m - 1)`` Bessel factor, as PyTorch and Keras do.
* ``eps = 1e-5``; running mean starts at zeros and running variance at zeros (CS231n) when the
  caller does not pass them (PyTorch starts the variance at ones: pass
  ``running_var=np.ones(D)`` to reproduce it).
* A train-mode batch whose statistics are not finite (a NaN or inf in a column, or an
  overflow) is refused with a ``NonFiniteStatisticsError`` before the running statistics are
  touched: one bad batch cannot poison them for good. Unknown ``bn_param`` keys are refused.
* Options (``docs/conventions.md``, "Batch-norm options"): ``momentum=None`` is PyTorch's
  cumulative moving average, counted in ``num_batches_tracked``; ``track_running_stats=False``
  keeps no running statistics (test mode then normalizes with the batch's);
  ``virtual_batch_size=V`` is ghost batch norm (Hoffer et al. 2017), statistics per
  consecutive chunk of ``V`` samples, running statistics updated once from the chunks' means.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

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
from normlab.layers.norm_core import BATCH, NormCache, check_dout, norm_backward, norm_forward

BN_KEYS = frozenset(
    (
        "mode",
        "eps",
        "momentum",
        "running_mean",
        "running_var",
        "running_var_unbiased",
        "num_batches_tracked",
        "track_running_stats",
        "virtual_batch_size",
    )
)
_RUNNING_KEYS = ("running_mean", "running_var", "num_batches_tracked")


class GhostCache(NamedTuple):
    """What the backward of ghost batch norm needs: one batch-norm cache per chunk.

    Attributes
    ----------
    x : ndarray
        The input, (N, D) or (N, C, H, W).
    gamma : ndarray of shape (C,)
    chunks : tuple of NormCache
        Chunk ``i`` is samples ``i*V .. (i+1)*V - 1``; its cache holds that view of ``x``.
    virtual_batch_size : int
        ``V``.
    """

    x: np.ndarray
    gamma: np.ndarray
    chunks: tuple
    virtual_batch_size: int


def bn_momentum(bn_param, fn):
    """``bn_param['momentum']`` (default 0.9): a number in [0, 1], or None (cumulative)."""
    momentum = bn_param.get("momentum", 0.9)
    return None if momentum is None else check_momentum(momentum, fn)


def _flag(bn_param, key, default, fn):
    """``bn_param[key]`` as a bool; anything but True/False is refused."""
    v = bn_param.get(key, default)
    if v is True or v is False:  # the common case, fast
        return v
    if not isinstance(v, np.bool_):
        raise ValueError(f"{fn}: expected bn_param[{key!r}] to be True or False, got {v!r}")
    return bool(v)


def running_stats(bn_param, C, dtype, fn, name="bn_param"):
    """``(running_mean, running_var)`` of shape (C,), created as zeros when absent.

    ``name`` is the dict's name in error messages (``in_param`` for instance norm).
    """
    running = []
    for key in ("running_mean", "running_var"):
        r = bn_param.get(key)
        if r is None:
            r = bn_param[key] = np.zeros(C, dtype=dtype)
        elif not isinstance(r, np.ndarray) or r.shape != (C,) or r.dtype.kind != "f":
            got = f"{r.shape} {r.dtype}" if isinstance(r, np.ndarray) else f"{type(r).__name__}"
            raise ValueError(
                f"{fn}: expected {name}[{key!r}] a float array of shape ({C},), got {got}"
            )
        running.append(r)  # updated in place: the caller's array is the statistic
    running = tuple(running)
    if "num_batches_tracked" in bn_param:
        n = bn_param["num_batches_tracked"]
        if not isinstance(n, numbers.Integral) or isinstance(n, bool | np.bool_) or n < 0:
            raise ValueError(
                f"{fn}: expected bn_param['num_batches_tracked'] an integer >= 0, got {n!r}"
            )
    return running


def update_running_stats(bn_param, running, mean, var, m, momentum, fn="batchnorm_forward"):
    """Fold one batch's ``mean``, biased ``var`` (C,) into the running statistics, in place.

    ``m`` values per channel went into each statistic (the Bessel factor ``m / (m - 1)`` when
    ``running_var_unbiased``). ``num_batches_tracked`` is counted when ``momentum`` is None
    (the cumulative average needs it) or when the caller put the key in ``bn_param``; the
    default ``bn_param`` gains no key. Raises :class:`NonFiniteStatisticsError`, changing
    nothing, when a new running value would not be finite in the running arrays' dtype (float64
    statistics of inputs ~1e20 overflow a float32 ``running_var``).
    """
    count = momentum is None or "num_batches_tracked" in bn_param
    n = int(bn_param.get("num_batches_tracked", 0)) + 1
    if momentum is None:  # PyTorch's momentum=None: r += (batch - r) / n
        momentum = 1.0 - 1.0 / n
    factor = m / (m - 1) if bn_param.get("running_var_unbiased", False) else 1.0
    overflowed = ema_update(running[0], running[1], mean, var, momentum, factor)
    if overflowed:
        raise_overflowed_running(fn, overflowed, mean.shape[0], running[1].dtype)
    if count:
        bn_param["num_batches_tracked"] = n


def _virtual_batch_size(V, fn):
    """``bn_param['virtual_batch_size']`` given: an integer >= 1."""
    if not isinstance(V, numbers.Integral) or isinstance(V, bool | np.bool_) or V < 1:
        raise ValueError(
            f"{fn}: expected bn_param['virtual_batch_size'] None or an integer >= 1, got {V!r}"
        )
    return int(V)


def _check_divides(N, V, fn):
    if N % V:
        lower, upper = N - N % V, N - N % V + V
        sizes = f"{lower} or {upper}" if lower else f"{upper}"
        raise ValueError(
            f"{fn}: virtual_batch_size V={V} must divide the batch size N={N} "
            f"(N % V = {N % V}); use a batch of a multiple of {V} samples (e.g. {sizes}), or "
            f"a virtual_batch_size that divides {N}"
        )


def _ghost_forward(x, gamma, beta, eps, V):
    """Batch norm of each chunk of ``V`` consecutive samples: the core on each, in turn."""
    out = np.empty(x.shape, x.dtype)  # (N, C, ...)
    chunks = []
    for i in range(x.shape[0] // V):
        sl = slice(i * V, (i + 1) * V)
        out[sl], cache = norm_forward(x[sl], gamma, beta, BATCH, eps)
        chunks.append(cache)
    return out, GhostCache(x, gamma, tuple(chunks), V)


def _ghost_backward(dout, cache: GhostCache, backward):
    """``backward`` of each chunk; dgamma, dbeta summed over the chunks (in float64)."""
    check_dout(dout, cache.x.shape)
    dout = np.asarray(dout)
    V = cache.virtual_batch_size
    dx = np.empty(cache.x.shape, cache.x.dtype)
    dgamma = np.zeros(cache.gamma.shape)
    dbeta = np.zeros(cache.gamma.shape)
    for i, c in enumerate(cache.chunks):
        sl = slice(i * V, (i + 1) * V)
        dx[sl], dg, db = backward(dout[sl], c)
        dgamma += dg
        dbeta += db
    g = cache.gamma
    return dx, dgamma.astype(g.dtype), dbeta.astype(g.dtype)


def _bn_forward(x, gamma, beta, bn_param, fn, ndim, layout):
    x = as_float_array(x, fn)
    check_ndim(x, ndim, fn, layout)
    C = x.shape[1]
    gamma = check_channel_param(gamma, C, fn, "gamma")
    beta = check_channel_param(beta, C, fn, "beta")
    mode = check_mode(bn_param, fn)
    check_keys(bn_param, BN_KEYS, fn, "bn_param")
    eps = check_eps(bn_param.get("eps", 1e-5), fn)
    momentum = bn_param.get("momentum", 0.9)
    if momentum is not None:
        momentum = check_momentum(momentum, fn)
    track = bn_param.get("track_running_stats", True)
    if track is not True:
        track = _flag(bn_param, "track_running_stats", True, fn)
    V = bn_param.get("virtual_batch_size")
    if V is not None:
        V = _virtual_batch_size(V, fn)
    if track:
        running = running_stats(bn_param, C, x.dtype, fn)
        if mode == "test":  # the running statistics, whatever V is (as Keras)
            return norm_forward(x, gamma, beta, BATCH, eps, stats=running)
    elif any(k in bn_param for k in _RUNNING_KEYS):
        raise ValueError(
            f"{fn}: bn_param holds running statistics but track_running_stats is False, so they "
            f"would be neither updated nor used; pass track_running_stats=True, or drop "
            f"{[k for k in _RUNNING_KEYS if k in bn_param]}"
        )

    # the batch's statistics: train mode, or test mode without running statistics
    N = x.shape[0]
    if V is not None:
        _check_divides(N, V, fn)
    m = (x.size // C if C else 0) // (N // V if V and N else 1)  # values per statistic
    if m < 2:
        where = f" of each virtual batch of {V} samples" if V else ""
        fix = "use a batch of at least 2 samples" if V is None else "use a larger V"
        raise ValueError(
            f"{fn}: expected more than 1 value per channel{where} when "
            f"{'training' if track else 'using batch statistics'}, got input of shape "
            f"{tuple(x.shape)}; {fix}" + (" or mode='test'" if track else "")
        )
    if V is None:
        out, cache = norm_forward(x, gamma, beta, BATCH, eps)
        mean, var = cache.mean, cache.var  # (C,)
        what = "channels"
    else:
        out, cache = _ghost_forward(x, gamma, beta, eps, V)
        mean = np.stack([c.mean for c in cache.chunks])  # (N/V, C)
        var = np.stack([c.var for c in cache.chunks])  # (N/V, C)
        what = "(virtual batch, channel) pairs"
    if mode == "train":
        check_finite_stats(mean, var, fn, what, running=track)  # before the running update
        if track:
            if V is not None:  # Keras: the chunks' means of the mean and biased variance
                mean, var = mean.mean(axis=0), var.mean(axis=0)  # (C,)
            update_running_stats(bn_param, running, mean, var, m, momentum, fn)
    return out, cache


def batchnorm_forward(x, gamma, beta, bn_param):
    """Batch normalization of (N, D) input, statistics per feature over the batch.

    Parameters
    ----------
    x : ndarray of shape (N, D)
    gamma : ndarray of shape (D,)
        Scale, initialised to ones by the models.
    beta : ndarray of shape (D,)
        Shift, initialised to zeros.
    bn_param : dict
        ``mode`` : 'train' | 'test' (required);
        ``eps`` : float, default 1e-5;
        ``momentum`` : float in [0, 1] or None, default 0.9 -- weight of the old running
        value; None is PyTorch's cumulative moving average: the ``n``-th batch has weight
        ``1/n``, so the running statistics are the plain mean of every batch's;
        ``running_mean``, ``running_var`` : ndarray of shape (D,), created as zeros when absent
        and updated in place in train mode;
        ``running_var_unbiased`` : bool, default False -- store the variance with the
        ``m / (m - 1)`` factor (what the paper and PyTorch do);
        ``num_batches_tracked`` : int >= 0 -- batches folded into the running statistics;
        counted in train mode when ``momentum`` is None (created at 0 when absent) or when
        the key is present; absent otherwise, so the default ``bn_param`` gains no key;
        ``track_running_stats`` : bool, default True -- False keeps no running statistics
        (none of the three keys above may be passed): train mode updates nothing, and test
        mode normalizes with the batch's own statistics, exactly as train mode does;
        ``virtual_batch_size`` : int V >= 1 or None (default) -- ghost batch norm: the
        statistics of each consecutive chunk of V samples normalize that chunk; N must be a
        multiple of V when batch statistics are used (test mode with running statistics
        takes any N).

    Returns
    -------
    out : ndarray of shape (N, D), dtype of x
    cache : NormCache, or GhostCache with ``virtual_batch_size``
        For :func:`batchnorm_backward` and :func:`batchnorm_backward_alt`.

    Raises
    ------
    NonFiniteStatisticsError
        A ``FloatingPointError``: in train mode, when a feature's batch mean or variance is NaN
        or inf (its column holds NaN or inf, or overflows). The message names the features;
        ``running_mean`` and ``running_var`` are left unchanged, bit for bit. Test mode does
        not check (NaN in, NaN out).
    ValueError
        Bad shapes, dtypes or ``bn_param`` values, or a key of ``bn_param`` not listed above
        (the message names it and the known keys).

    Notes
    -----
    Train mode, over the batch ``B = {x_1..x_m}`` (Ioffe & Szegedy 2015, Algorithm 1)::

        mu = 1/m sum x_i,   var = 1/m sum (x_i - mu)^2,
        xhat_i = (x_i - mu) / sqrt(var + eps),   y_i = gamma * xhat_i + beta

    Test mode uses ``running_mean``/``running_var`` in place of ``mu``/``var``. The running
    statistics are updated after the batch's are checked finite, with ``p = momentum``::

        running_mean = p * running_mean + (1 - p) * mu
        running_var = p * running_var + (1 - p) * f * var,   f = m/(m - 1) or 1

    and with ``momentum=None``, ``p = 1 - 1/n`` where ``n`` is ``num_batches_tracked`` after
    counting this batch (the first batch replaces the initial values).

    Ghost batch norm (Hoffer et al. 2017, "Train longer, generalize better", Algorithm 1)
    splits the batch into ``N/V`` chunks ``x[k*V:(k+1)*V]``; chunk ``k`` has its own ``mu_k``,
    biased ``var_k`` (over ``V`` values per feature) and is normalized by them, with the
    shared ``gamma``, ``beta``. The running statistics are updated once per call, as Keras's
    ``BatchNormalization(virtual_batch_size=V)`` does: with ``mean_k mu_k`` and ``mean_k
    var_k`` -- the plain means over the chunks of the chunks' means and of their *biased*
    variances -- as the batch statistics in the update above (``f = V/(V - 1)``, the Bessel
    factor of one chunk, when ``running_var_unbiased``). This is not the variance of the
    whole batch (it lacks the spread of the chunk means), and it equals the average of what
    ``N/V`` separate updates from the same starting values would give (PyTorch's
    ``F.batch_norm`` per chunk with a copy of the buffers each). ``V = N`` is batch norm.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(5, 3, size=(64, 4))
    >>> out, _ = batchnorm_forward(x, np.ones(4), np.zeros(4), {"mode": "train"})
    >>> bool(np.allclose(out.mean(0), 0) and np.allclose(out.std(0), 1, atol=1e-4))
    True
    """
    return _bn_forward(x, gamma, beta, bn_param, "batchnorm_forward", 2, "(N, D)")


def batchnorm_backward(dout, cache):
    """Batch-norm backward, step by step through the computational graph.

    Parameters
    ----------
    dout : ndarray of shape (N, D)
    cache : NormCache or GhostCache from :func:`batchnorm_forward`

    Returns
    -------
    dx : ndarray of shape (N, D)
    dgamma, dbeta : ndarray of shape (D,)

    Notes
    -----
    The forward graph is ``xmu = x - mu``, ``sq = xmu^2``, ``var = mean(sq)``,
    ``std = sqrt(var + eps)``, ``istd = 1/std``, ``xhat = xmu * istd``,
    ``y = gamma * xhat + beta``; each line below reverses one node (docs/derivations.md).
    Always NumPy: it is the derivation, not the fast path (that is
    :func:`batchnorm_backward_alt`). Ghost batch norm: the same graph per chunk (the chunks
    share nothing but ``gamma`` and ``beta``, whose gradients add up).
    """
    ok = isinstance(cache, NormCache | GhostCache) and cache.x.ndim == 2
    if not ok or (isinstance(cache, NormCache) and cache.kind != BATCH):
        raise ValueError(
            "batchnorm_backward: expected the cache of batchnorm_forward ((N, D) input); use "
            "spatial_batchnorm_backward, layernorm_backward or spatial_groupnorm_backward for "
            "the others"
        )
    if isinstance(cache, GhostCache):
        return _ghost_backward(dout, cache, _graph_backward)
    check_dout(dout, cache.x.shape)
    if not cache.train:
        return norm_backward(dout, cache)
    return _graph_backward(dout, cache)


def _graph_backward(dout, cache: NormCache):
    """The node-by-node backward of one batch (train-mode cache)."""
    x = cache.x.astype(np.float64)  # (N, D)
    dout = np.asarray(dout, dtype=np.float64)  # (N, D)
    N = x.shape[0]
    mu, var, eps = cache.mean, cache.var, cache.eps  # (D,), (D,)
    gamma = cache.gamma.astype(np.float64)  # (D,)
    # forward nodes
    xmu = x - mu  # (N, D)
    std = np.sqrt(var + eps)  # (D,)
    istd = 1.0 / std  # (D,)
    xhat = xmu * istd  # (N, D)
    # y = gamma * xhat + beta
    dbeta = dout.sum(axis=0)  # (D,)
    dgamma = (dout * xhat).sum(axis=0)  # (D,)
    dxhat = dout * gamma  # (N, D)
    # xhat = xmu * istd
    distd = (dxhat * xmu).sum(axis=0)  # (D,)
    dxmu = dxhat * istd  # (N, D), first path into xmu
    # istd = 1 / std
    dstd = -distd / std**2  # (D,)
    # std = sqrt(var + eps)
    dvar = 0.5 * dstd / std  # (D,)
    # var = mean(sq), sq = xmu^2
    dsq = np.broadcast_to(dvar / N, x.shape)  # (N, D)
    dxmu = dxmu + 2.0 * xmu * dsq  # (N, D), second path into xmu
    # xmu = x - mu, mu = mean(x)
    dmu = -dxmu.sum(axis=0)  # (D,)
    dx = dxmu + dmu / N  # (N, D)
    g = cache.gamma
    return dx.astype(cache.x.dtype), dgamma.astype(g.dtype), dbeta.astype(g.dtype)


def batchnorm_backward_alt(dout, cache):
    """Batch-norm backward in closed form: :func:`~normlab.layers.norm_core.norm_backward`.

    Parameters
    ----------
    dout : ndarray of shape (N, D)
    cache : NormCache or GhostCache from :func:`batchnorm_forward`

    Returns
    -------
    dx : ndarray of shape (N, D)
    dgamma, dbeta : ndarray of shape (D,)

    Notes
    -----
    ``dx = (g - mean(g) - xhat * mean(g * xhat)) / sqrt(var + eps)`` with ``g = dout * gamma``
    (docs/derivations.md); with a ``GhostCache``, per chunk, ``dgamma`` and ``dbeta`` summed
    over the chunks.
    """
    if isinstance(cache, GhostCache):
        return _ghost_backward(dout, cache, norm_backward)
    return norm_backward(dout, cache)


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    """Spatial batch normalization of (N, C, H, W) input, statistics per channel.

    Each channel is normalized over the N*H*W values it has in the batch; otherwise exactly
    :func:`batchnorm_forward` (same ``bn_param`` keys and conventions).

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
    gamma, beta : ndarray of shape (C,)
    bn_param : dict
        As for :func:`batchnorm_forward` (all its options); running statistics have shape
        (C,). With ``virtual_batch_size=V`` each chunk of V samples is normalized over its
        ``V*H*W`` values per channel (the Bessel factor is ``V*H*W / (V*H*W - 1)``).

    Returns
    -------
    out : ndarray of shape (N, C, H, W)
    cache : NormCache, or GhostCache with ``virtual_batch_size``

    Raises
    ------
    NonFiniteStatisticsError
        In train mode, when a channel's batch mean or variance is NaN or inf; the message
        names the channels and the running statistics are left unchanged (as for
        :func:`batchnorm_forward`).
    ValueError
        Bad shapes, dtypes or ``bn_param`` values, or an unknown ``bn_param`` key.
    """
    return _bn_forward(x, gamma, beta, bn_param, "spatial_batchnorm_forward", 4, "(N, C, H, W)")


# The same closed form: the cache knows the axes of its statistics (and its chunks).
spatial_batchnorm_backward = batchnorm_backward_alt
