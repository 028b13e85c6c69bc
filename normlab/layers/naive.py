"""The readable references: convolution and max pooling as the plain loops students write first.

``conv_forward_naive`` / ``conv_backward_naive`` and ``max_pool_forward_naive`` /
``max_pool_backward_naive`` have the names and signatures of the CS231n assignment 2
(``cs231n/layers.py``) and compute exactly what the fast layers of :mod:`normlab.layers.conv`
compute (same defaults, same floored output size, gradient routed to the first maximum of each
pooling window); ``tests/test_naive_layers.py`` holds the fast layers to them. One output
element per loop iteration: slow (seconds on a CIFAR batch), meant to be read and to be the
oracle, never to train with.
"""

from __future__ import annotations

import numpy as np

from normlab.layers._checks import as_float_array, check_ndim

__all__ = [
    "conv_backward_naive",
    "conv_forward_naive",
    "max_pool_backward_naive",
    "max_pool_forward_naive",
]


def _int(param: dict, key: str, fn: str, default: int | None, minimum: int) -> int:
    """``param[key]`` as an int >= ``minimum``; ``default`` when absent (None: required)."""
    if not isinstance(param, dict):
        raise ValueError(f"{fn}: expected a dict of parameters, got {type(param).__name__}")
    value = param.get(key, default)
    if value is None:
        raise ValueError(f"{fn}: expected key {key!r}, got keys {sorted(param)}")
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{fn}: expected {key!r} an integer >= {minimum}, got {value!r}")
    return int(value)


def conv_forward_naive(x, w, b, conv_param):
    """Convolution forward (cross-correlation with zero padding), one output value at a time.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
        Input images.
    w : ndarray of shape (F, C, HH, WW)
        Filters.
    b : ndarray of shape (F,)
        Biases.
    conv_param : dict
        ``'stride'`` (int >= 1, default 1) and ``'pad'`` (int >= 0, default 0 -- zero rows and
        columns added on each side of ``x``).

    Returns
    -------
    out : ndarray of shape (N, F, H', W')
        ``H' = 1 + (H + 2*pad - HH) // stride``, ``W' = 1 + (W + 2*pad - WW) // stride``
        (floored, as :func:`~normlab.layers.conv_forward`; the assignment asserted that the
        division is exact).
    cache : tuple (x, w, b, conv_param)

    Raises
    ------
    ValueError
        Bad shapes, channel counts, or ``conv_param`` values; a kernel larger than the padded
        input.

    Notes
    -----
    ``out[n, f, i, j] = b[f] + sum_{c, k, l} w[f, c, k, l] * xpad[n, c, s*i + k, s*j + l]``.
    Source: CS231n assignment 2, ``conv_forward_naive``.

    Examples
    --------
    >>> x, w, b = np.ones((1, 2, 4, 4)), np.ones((3, 2, 3, 3)), np.zeros(3)
    >>> out, _ = conv_forward_naive(x, w, b, {"stride": 1, "pad": 1})
    >>> out.shape, float(out[0, 0, 0, 0]), float(out[0, 0, 1, 1])
    ((1, 3, 4, 4), 8.0, 18.0)
    """
    fn = "conv_forward_naive"
    x, w, b = (as_float_array(a, fn, name) for a, name in ((x, "x"), (w, "w"), (b, "b")))
    check_ndim(x, 4, fn, "(N, C, H, W)", "x")
    check_ndim(w, 4, fn, "(F, C, HH, WW)", "w")
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    if w.shape[1] != C or b.shape != (F,):
        raise ValueError(
            f"{fn}: expected w of shape (F, {C}, HH, WW) and b of shape (F,) for x of shape "
            f"{x.shape}, got w {w.shape} and b {b.shape}"
        )
    stride = _int(conv_param, "stride", fn, 1, 1)
    pad = _int(conv_param, "pad", fn, 0, 0)
    if HH > H + 2 * pad or WW > W + 2 * pad:
        raise ValueError(
            f"{fn}: expected a kernel no larger than the padded input "
            f"{(H + 2 * pad, W + 2 * pad)}, got {(HH, WW)}"
        )
    H_out = 1 + (H + 2 * pad - HH) // stride
    W_out = 1 + (W + 2 * pad - WW) // stride
    xpad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))  # (N, C, H + 2p, W + 2p)
    out = np.empty((N, F, H_out, W_out), np.result_type(x, w, b))
    for n in range(N):
        for f in range(F):
            for i in range(H_out):
                for j in range(W_out):
                    window = xpad[n, :, i * stride : i * stride + HH, j * stride : j * stride + WW]
                    out[n, f, i, j] = np.sum(window * w[f]) + b[f]  # (C, HH, WW) . (C, HH, WW)
    return out, (x, w, b, {"stride": stride, "pad": pad})


def conv_backward_naive(dout, cache):
    """Backward of :func:`conv_forward_naive`, one output value's contribution at a time.

    Parameters
    ----------
    dout : ndarray of shape (N, F, H', W')
        Upstream gradient.
    cache : tuple
        From :func:`conv_forward_naive`.

    Returns
    -------
    dx : ndarray of shape (N, C, H, W)
    dw : ndarray of shape (F, C, HH, WW)
    db : ndarray of shape (F,)

    Notes
    -----
    Each output ``out[n, f, i, j]`` saw one window of ``xpad`` through ``w[f]``, so its
    gradient adds ``dout[n, f, i, j] * w[f]`` to that window of ``dxpad`` and ``dout[n, f, i, j]
    * window`` to ``dw[f]``; the padding is cut off ``dxpad`` at the end.
    """
    x, w, b, conv_param = cache
    stride, pad = conv_param["stride"], conv_param["pad"]
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    dout = np.asarray(dout)
    H_out = 1 + (H + 2 * pad - HH) // stride
    W_out = 1 + (W + 2 * pad - WW) // stride
    if dout.shape != (N, F, H_out, W_out):
        raise ValueError(
            f"conv_backward_naive: expected dout of shape {(N, F, H_out, W_out)}, got {dout.shape}"
        )
    xpad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))  # (N, C, H + 2p, W + 2p)
    dxpad = np.zeros_like(xpad)
    dw = np.zeros_like(w)  # (F, C, HH, WW)
    db = dout.sum(axis=(0, 2, 3)).astype(b.dtype)  # (F,)
    for n in range(N):
        for f in range(F):
            for i in range(H_out):
                for j in range(W_out):
                    rows = slice(i * stride, i * stride + HH)
                    cols = slice(j * stride, j * stride + WW)
                    dxpad[n, :, rows, cols] += dout[n, f, i, j] * w[f]
                    dw[f] += dout[n, f, i, j] * xpad[n, :, rows, cols]
    dx = dxpad[:, :, pad : pad + H, pad : pad + W]  # (N, C, H, W)
    return dx.copy(), dw, db


def max_pool_forward_naive(x, pool_param):
    """Max pooling forward, one window at a time.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
    pool_param : dict
        ``'pool_height'``, ``'pool_width'`` and ``'stride'``, ints >= 1, all required.

    Returns
    -------
    out : ndarray of shape (N, C, H', W')
        ``H' = 1 + (H - pool_height) // stride``, ``W' = 1 + (W - pool_width) // stride``.
    cache : tuple (x, pool_param)

    Raises
    ------
    ValueError
        ``x`` not 4-D, a missing or bad ``pool_param`` entry, a window larger than ``x``.

    Notes
    -----
    ``out[n, c, i, j] = max_{k, l} x[n, c, s*i + k, s*j + l]``.
    Source: CS231n assignment 2, ``max_pool_forward_naive``.

    Examples
    --------
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> max_pool_forward_naive(x, {"pool_height": 2, "pool_width": 2, "stride": 2})[0][0, 0]
    array([[ 5.,  7.],
           [13., 15.]])
    """
    fn = "max_pool_forward_naive"
    x = as_float_array(x, fn, "x")
    check_ndim(x, 4, fn, "(N, C, H, W)", "x")
    ph, pw, s = (_int(pool_param, k, fn, None, 1) for k in ("pool_height", "pool_width", "stride"))
    N, C, H, W = x.shape
    if ph > H or pw > W:
        raise ValueError(
            f"{fn}: expected a window no larger than the input {(H, W)}, got {(ph, pw)}"
        )
    H_out, W_out = 1 + (H - ph) // s, 1 + (W - pw) // s
    out = np.empty((N, C, H_out, W_out), x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    out[n, c, i, j] = x[n, c, i * s : i * s + ph, j * s : j * s + pw].max()
    return out, (x, {"pool_height": ph, "pool_width": pw, "stride": s})


def max_pool_backward_naive(dout, cache):
    """Backward of :func:`max_pool_forward_naive`.

    Parameters
    ----------
    dout : ndarray of shape (N, C, H', W')
    cache : tuple
        From :func:`max_pool_forward_naive`.

    Returns
    -------
    dx : ndarray of shape (N, C, H, W)
        Each window's ``dout`` goes to its maximum -- the first in row-major order when several
        elements tie (``np.argmax``; PyTorch's and :func:`~normlab.layers.max_pool_backward`'s
        choice) -- summed where windows overlap.
    """
    x, pool_param = cache
    ph, pw, s = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    N, C, H, W = x.shape
    H_out, W_out = 1 + (H - ph) // s, 1 + (W - pw) // s
    dout = np.asarray(dout)
    if dout.shape != (N, C, H_out, W_out):
        raise ValueError(
            f"max_pool_backward_naive: expected dout of shape {(N, C, H_out, W_out)}, "
            f"got {dout.shape}"
        )
    dx = np.zeros_like(x)  # (N, C, H, W)
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    window = x[n, c, i * s : i * s + ph, j * s : j * s + pw]  # (ph, pw)
                    k, l = np.unravel_index(np.argmax(window), window.shape)
                    dx[n, c, i * s + k, j * s + l] += dout[n, c, i, j]
    return dx
