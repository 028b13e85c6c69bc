"""Convolution and max-pooling layers, vectorised: im2col + one GEMM, col2im by kernel offsets.

Convolution (cross-correlation, as in CS231n and PyTorch) lowers to one matrix product::

    cols[(c, i, j), (n, oh, ow)] = xpad[n, c, s*oh + i, s*ow + j]      # im2col, one copy
    out[n, f, oh, ow] = sum_k w[f, k] * cols[k, (n, oh, ow)] + b[f]   # one GEMM, K = C*HH*WW

and the backward is two GEMMs plus col2im, which adds ``dcols`` back into the input, kernel
offset ``(i, j)`` by kernel offset::

    dw = dout2 @ cols.T        db = dout2.sum(1)        dcols = w2.T @ dout2

The GEMMs run on the (F, N, H', W') grid, F first, and two copies move it to and from
(N, F, H', W'). col2im runs a numba kernel (:func:`normlab.kernels.conv.col2im`: one pass over
``dcols``, each (n, c) plane of ``dx`` in L1, the padding never written); under
``NORMLAB_BACKEND=numpy`` the strided adds below, with the same bits. im2col stays a
NumPy strided copy: a numba version was faster alone but not by 10 % at the layer
(``benchmarks/README.md``, "Stop 20").

Max pooling takes the maximum separably (over the window rows, then the columns) and routes
the gradient to the first maximum of each window in row-major order, as PyTorch does. 2x2 and
3x3 windows at stride 2 run numba kernels (:mod:`normlab.kernels.pool`) that give the same bits.
"""

from __future__ import annotations

import operator

import numpy as np
from numpy.lib.stride_tricks import as_strided

from normlab.kernels import conv as conv_kernels
from normlab.kernels import get_backend
from normlab.kernels import pool as pool_kernels
from normlab.layers._checks import as_float_array, check_ndim


def _int_param(param: dict, key: str, fn: str, name: str, default=None, minimum: int = 1) -> int:
    """``param[key]`` as an int >= ``minimum`` (``default`` when absent and not None)."""
    if key not in param:
        if default is None:
            raise ValueError(f"{fn}: expected key {key!r} in {name}, got keys {sorted(param)}")
        return default
    try:
        value = operator.index(param[key])
    except TypeError:
        raise ValueError(f"{fn}: expected integer {name}[{key!r}], got {param[key]!r}") from None
    if value < minimum:
        raise ValueError(f"{fn}: expected {name}[{key!r}] >= {minimum}, got {value}")
    return value


def _check_keys(param, known: tuple[str, ...], fn: str, name: str) -> None:
    """``param`` must be a dict whose keys are all in ``known``."""
    if not isinstance(param, dict):
        raise ValueError(f"{fn}: expected {name} to be a dict, got {type(param).__name__}")
    unknown = sorted(set(param) - set(known))
    if unknown:
        raise ValueError(f"{fn}: unknown {name} keys {unknown}, known keys are {list(known)}")


def _windows(buf: np.ndarray, HH: int, WW: int, Ho: int, Wo: int, stride: int, writeable=False):
    """View (C, HH, WW, N, Ho, Wo) of buf (N, C, Hp, Wp): ``buf[n, c, s*oh + i, s*ow + j]``."""
    sN, sC, sH, sW = buf.strides
    N, C = buf.shape[:2]
    return as_strided(
        buf,
        shape=(C, HH, WW, N, Ho, Wo),
        strides=(sC, sH, sW, sN, stride * sH, stride * sW),
        writeable=writeable,
    )


def conv_forward(x, w, b, conv_param):
    """Convolution forward (cross-correlation, zero padding), as ``torch.nn.functional.conv2d``.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
        Input images.
    w : ndarray of shape (F, C, HH, WW)
        Filters.
    b : ndarray of shape (F,)
        Biases.
    conv_param : dict
        ``'stride'`` (int >= 1, default 1) and ``'pad'`` (int >= 0, default 0): the number of
        zero rows/columns added on each side of ``x``.

    Returns
    -------
    out : ndarray of shape (N, F, H', W')
        ``H' = 1 + (H + 2*pad - HH) // stride``, ``W' = 1 + (W + 2*pad - WW) // stride``
        (floored like PyTorch: trailing rows/columns that fit no window are ignored). Dtype of
        ``x`` and ``w`` (float32 in, float32 out; integers become float64).
    cache : tuple
        What :func:`conv_backward` needs: the im2col matrix, ``w`` and the geometry.

    Notes
    -----
    ``out[n, f, oh, ow] = b[f] + sum_{c, i, j} w[f, c, i, j] * xpad[n, c, s*oh + i, s*ow + j]``,
    computed as im2col (one strided copy) and a single GEMM of shape
    ``(F, C*HH*WW) @ (C*HH*WW, N*H'*W')``; see the module docstring.

    Examples
    --------
    >>> import numpy as np
    >>> x, w, b = np.ones((2, 3, 5, 5)), np.ones((4, 3, 3, 3)), np.zeros(4)
    >>> out, _ = conv_forward(x, w, b, {"stride": 2, "pad": 1})
    >>> out.shape, float(out[0, 0, 1, 1])
    ((2, 4, 3, 3), 27.0)
    """
    fn = "conv_forward"
    x = as_float_array(x, fn, "x")
    w = as_float_array(w, fn, "w")
    check_ndim(x, 4, fn, "(N, C, H, W)", "x")
    check_ndim(w, 4, fn, "(F, C, HH, WW)", "w")
    N, C, H, W = x.shape
    F, Cw, HH, WW = w.shape
    if Cw != C:
        raise ValueError(
            f"{fn}: expected w with C={C} input channels (x has shape {x.shape}), "
            f"got w of shape {w.shape}"
        )
    b = as_float_array(b, fn, "b")
    if b.shape != (F,):
        raise ValueError(f"{fn}: expected b of shape ({F},), got {b.shape}")
    _check_keys(conv_param, ("stride", "pad"), fn, "conv_param")
    stride = _int_param(conv_param, "stride", fn, "conv_param", default=1, minimum=1)
    pad = _int_param(conv_param, "pad", fn, "conv_param", default=0, minimum=0)
    Hp, Wp = H + 2 * pad, W + 2 * pad
    if HH > Hp or WW > Wp:
        raise ValueError(
            f"{fn}: expected a kernel no larger than the padded input {(Hp, Wp)} "
            f"(x {x.shape}, pad {pad}), got kernel {(HH, WW)}"
        )

    dtypes = (x.dtype, w.dtype, b.dtype)  # gradients are returned in these
    dtype = np.result_type(x, w)
    x, w = x.astype(dtype, copy=False), w.astype(dtype, copy=False)
    Ho, Wo = 1 + (Hp - HH) // stride, 1 + (Wp - WW) // stride
    if pad:
        xp = np.zeros((N, C, Hp, Wp), dtype)  # (N, C, Hp, Wp)
        xp[:, :, pad : pad + H, pad : pad + W] = x
    else:
        xp = x

    K = C * HH * WW
    M = N * Ho * Wo
    cols = np.ascontiguousarray(_windows(xp, HH, WW, Ho, Wo, stride)).reshape(K, M)  # (K, M)
    og = w.reshape(F, K) @ cols  # (F, N*Ho*Wo)
    og += b[:, None]  # along contiguous rows: faster than broadcasting in the copy below
    out = np.empty((N, F, Ho, Wo), dtype)
    np.copyto(out, og.reshape(F, N, Ho, Wo).transpose(1, 0, 2, 3))  # N first
    cache = (cols, w, x.shape, (Ho, Wo), stride, pad, dtypes)
    return out, cache


def conv_backward(dout, cache):
    """Backward of :func:`conv_forward`.

    Parameters
    ----------
    dout : ndarray of shape (N, F, H', W')
        Upstream gradient.
    cache : tuple from :func:`conv_forward`

    Returns
    -------
    dx : ndarray of shape (N, C, H, W)
    dw : ndarray of shape (F, C, HH, WW)
    db : ndarray of shape (F,)

    Raises
    ------
    ValueError
        If ``dout`` is not of shape (N, F, H', W').

    Notes
    -----
    With ``dout2`` the upstream gradient as (F, N*H'*W'): ``db = dout2.sum(1)``,
    ``dw = dout2 @ cols.T`` and ``dcols = w2.T @ dout2``; col2im scatters ``dcols`` back into
    the input, kernel offset by kernel offset (HH*WW adds per element at most).
    """
    dg2 = _grid_gradient(dout, cache, "conv_backward")
    dw, db = _param_grads(dg2, cache)
    return _input_grad(dg2, cache), dw, db


def conv_param_grads(dout, cache):
    """:func:`conv_backward` without dx (a network's input layer): ``dw`` (F, C, HH, WW) and
    ``db`` (F,), the same arrays :func:`conv_backward` returns, one GEMM and the col2im fewer.

    Raises
    ------
    ValueError
        If ``dout`` is not of shape (N, F, H', W').
    """
    return _param_grads(_grid_gradient(dout, cache, "conv_param_grads"), cache)


def _grid_gradient(dout, cache, fn: str) -> np.ndarray:
    """``dout`` (N, F, H', W') on the output grid, F first: (F, N*H'*W') in the layer's dtype."""
    _, w, x_shape, (Ho, Wo), *_ = cache
    N, F = x_shape[0], w.shape[0]
    dout = np.asarray(dout)
    if dout.shape != (N, F, Ho, Wo):
        raise ValueError(f"{fn}: expected dout of shape {(N, F, Ho, Wo)}, got {tuple(dout.shape)}")
    return np.ascontiguousarray(dout.transpose(1, 0, 2, 3), w.dtype).reshape(F, N * Ho * Wo)


def _param_grads(dg2, cache):
    """``dw`` (F, C, HH, WW) and ``db`` (F,) from the grid gradient (F, N*H'*W')."""
    cols, w, *_, (_, w_dtype, b_dtype) = cache
    # (F,): a GEMV with a vector of ones is ~3x faster than dg2.sum(axis=1)
    db = (dg2 @ np.ones(dg2.shape[1], dg2.dtype)).astype(b_dtype, copy=False)
    dw = (cols @ dg2.T).T.reshape(w.shape).astype(w_dtype, copy=False)  # (F, C, HH, WW)
    return dw, db


def _input_grad(dg2, cache) -> np.ndarray:
    """``dx`` (N, C, H, W): ``dcols = w2.T @ dg2``, then col2im (the numba kernel, or under
    ``NORMLAB_BACKEND=numpy`` one strided add per kernel offset)."""
    _, w, x_shape, (Ho, Wo), stride, pad, (x_dtype, *_) = cache
    N, C, H, W = x_shape
    F, _, HH, WW = w.shape
    dcols = (w.reshape(F, C * HH * WW).T @ dg2).reshape(C, HH, WW, N, Ho, Wo)
    if get_backend() != "numpy":
        dx = np.empty(x_shape, w.dtype)  # (N, C, H, W)
        conv_kernels.col2im(dcols, stride, pad, dx)
        return dx.astype(x_dtype, copy=False)
    dxp = np.zeros((N, C, H + 2 * pad, W + 2 * pad), w.dtype)  # (N, C, Hp, Wp)
    dwin = _windows(dxp, HH, WW, Ho, Wo, stride, writeable=True)  # (C, HH, WW, N, Ho, Wo)
    for i in range(HH):
        for j in range(WW):
            # One offset's windows never overlap each other, so the in-place add is exact.
            dwin[:, i, j] += dcols[:, i, j]  # (C, N, Ho, Wo)
    dx = dxp[:, :, pad : pad + H, pad : pad + W] if pad else dxp
    return np.ascontiguousarray(dx, dtype=x_dtype)


def _pool_geometry(x, pool_param, fn: str):
    """Validated ``(x, pool_height, pool_width, stride, H', W')``."""
    x = as_float_array(x, fn, "x")
    check_ndim(x, 4, fn, "(N, C, H, W)", "x")
    keys = ("pool_height", "pool_width", "stride")
    _check_keys(pool_param, keys, fn, "pool_param")
    ph, pw, s = (_int_param(pool_param, k, fn, "pool_param") for k in keys)
    H, W = x.shape[2:]
    if ph > H or pw > W:
        raise ValueError(
            f"{fn}: expected a pool window no larger than the input {(H, W)}, got {(ph, pw)}"
        )
    return x, ph, pw, s, 1 + (H - ph) // s, 1 + (W - pw) // s


def max_pool_forward(x, pool_param):
    """Max pooling forward, as ``torch.nn.functional.max_pool2d`` without padding.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W)
    pool_param : dict
        ``'pool_height'``, ``'pool_width'`` and ``'stride'``, all ints >= 1 and required.

    Returns
    -------
    out : ndarray of shape (N, C, H', W')
        ``H' = 1 + (H - pool_height) // stride``, ``W' = 1 + (W - pool_width) // stride``;
        dtype of ``x``.
    cache : tuple (x, out, pool_height, pool_width, stride, arg)
        ``arg``: uint8 (N, C, H', W'), each window's first maximum ``i * pool_width + j``,
        from the kernel; None from the NumPy path.

    Notes
    -----
    ``out[n, c, oh, ow] = max_{i, j} x[n, c, s*oh + i, s*ow + j]``, taken separably: first over
    the ``pool_height`` strided row views (contiguous runs of W), then over the ``pool_width``
    strided column views, ``pool_height + pool_width - 2`` elementwise maxima in all.

    2x2 and 3x3 windows at stride 2 run a numba kernel (:mod:`normlab.kernels.pool`) that also
    stores each window's argmax for the backward, with the same bits as the NumPy path; an
    input holding a NaN (which the kernel's comparisons would drop), other windows, and
    ``NORMLAB_BACKEND=numpy`` take the NumPy path.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> max_pool_forward(x, {"pool_height": 2, "pool_width": 2, "stride": 2})[0][0, 0]
    array([[ 5.,  7.],
           [13., 15.]])
    """
    x, ph, pw, s, Ho, Wo = _pool_geometry(x, pool_param, "max_pool_forward")
    kernel = pool_kernels.KERNELS.get((ph, pw, s))
    if kernel is not None and get_backend() != "numpy":
        N, C, H, W = x.shape
        out = np.empty((N, C, Ho, Wo), x.dtype)
        arg = np.empty((N, C, Ho, Wo), np.uint8)
        x3 = np.ascontiguousarray(x).reshape(N * C, H, W)
        if not kernel[0](x3, out.reshape(N * C, Ho, Wo), arg.reshape(N * C, Ho, Wo)):  # no NaN
            return out, (x, out, ph, pw, s, arg)
    rows = _max_of([x[:, :, i : i + s * (Ho - 1) + 1 : s, :] for i in range(ph)])  # (N, C, Ho, W)
    out = _max_of([rows[..., j : j + s * (Wo - 1) + 1 : s] for j in range(pw)])  # (N, C, Ho, Wo)
    if out.base is not None:  # a view of x or rows when a pool side is 1
        out = out.copy()
    return out, (x, out, ph, pw, s, None)


def _max_of(views: list[np.ndarray]) -> np.ndarray:
    """Elementwise maximum of same-shaped views (the single view itself if there is one)."""
    if len(views) == 1:
        return views[0]
    out = np.maximum(views[0], views[1])
    for v in views[2:]:
        np.maximum(out, v, out=out)
    return out


def max_pool_backward(dout, cache):
    """Backward of :func:`max_pool_forward`.

    Parameters
    ----------
    dout : ndarray of shape (N, C, H', W')
    cache : tuple from :func:`max_pool_forward`

    Returns
    -------
    dx : ndarray of shape (N, C, H, W)
        ``dout`` of each window routed to its first maximum in row-major order (one element
        per window, as PyTorch does for ties), summed where windows overlap.

    Notes
    -----
    One pass per window offset ``(i, j)``: the offset's elements equal to the window maximum
    whose window has not been served yet receive ``dout``. When the windows tile ``x``
    (stride equal to the pool size, divisible dims) every ``dx`` element is written exactly
    once, so ``dx`` needs no zero fill and the writes are assignments. A cache with the
    kernel's ``arg`` takes the kernel's backward instead, one pass writing every window element
    once (the same products and sums, so the same bits).
    """
    x, out, ph, pw, s, arg = cache
    N, C, H, W = x.shape
    Ho, Wo = out.shape[2:]
    dout = np.asarray(dout)
    if dout.shape != out.shape:
        raise ValueError(
            f"max_pool_backward: expected dout of shape {out.shape}, got {tuple(dout.shape)}"
        )
    tiles = s == ph == pw and H % ph == 0 and W % pw == 0
    overlap = s < ph or s < pw
    if arg is not None and get_backend() != "numpy":
        dx = (np.empty if tiles else np.zeros)(x.shape, x.dtype)  # (N, C, H, W)
        d3 = np.ascontiguousarray(dout, dtype=x.dtype).reshape(N * C, Ho, Wo)
        pool_kernels.KERNELS[ph, pw, s][1](d3, arg.reshape(N * C, Ho, Wo), dx.reshape(N * C, H, W))
        return dx
    dout = dout.astype(x.dtype, copy=False)
    dx = np.empty_like(x) if tiles else np.zeros_like(x)  # (N, C, H, W)
    unserved = np.ones(out.shape, dtype=bool)  # (N, C, Ho, Wo) windows not yet routed
    for i in range(ph):
        for j in range(pw):
            sl = np.s_[:, :, i : i + s * (Ho - 1) + 1 : s, j : j + s * (Wo - 1) + 1 : s]
            hit = x[sl] == out  # (N, C, Ho, Wo)
            hit &= unserved
            np.greater(unserved, hit, out=unserved)  # unserved &= ~hit
            if overlap:
                dx[sl] += dout * hit
            else:
                np.multiply(dout, hit, out=dx[sl])
    return dx
