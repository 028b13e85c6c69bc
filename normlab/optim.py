"""First-order update rules, the CS231n way: the readable definition of every update.

Every rule has the CS231n signature ``rule(w, dw, config=None) -> (next_w, config)``: ``w`` and
``dw`` are arrays of the same shape, ``config`` is a dict of hyperparameters and optimizer state
(filled with defaults on the first call, updated and returned). The rules never modify ``w`` or
``dw``; they return a new ``next_w``.

State values (velocity, cache, m, v) below the dtype's smallest normal number are flushed to zero
(:func:`_flush_subnormals`): the one departure from the textbook update, invisible in the
parameters and ~100x faster on x86.

The mean squares of RMSProp (``cache``) and Adam (``v``) can leave the dtype's range while the
update stays in it (in float32, ``dw**2`` overflows for ``|dw| > 1.8e19``, but the step is about
``lr``). Where the mean square would exceed the dtype's largest number, or the element already
holds one that does, the rule redoes that element in float64 without squaring anything large
(:func:`_root_mean_square`), and stores minus the root, ``-sqrt(cache)``, in place of the mean
square: a negative ``cache`` or ``v`` is such a root. Every other element takes the textbook
path unchanged, bit for bit.

A training run uses them through :class:`normlab.optimizer.Optimizer`, which owns the state of
all parameters and runs either these rules or their fused kernels (``normlab/kernels/optim.py``,
tested bit for bit against the rules).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = [
    "DEFAULTS",
    "STATE_KEYS",
    "UPDATE_RULES",
    "adam",
    "get_update_rule",
    "rmsprop",
    "sgd",
    "sgd_momentum",
]

# Hyperparameter defaults of each built-in rule (CS231n assignment 2 values).
DEFAULTS: dict[str, dict[str, float | int]] = {
    "sgd": {"learning_rate": 1e-2},
    "sgd_momentum": {"learning_rate": 1e-2, "momentum": 0.9},
    "rmsprop": {"learning_rate": 1e-2, "decay_rate": 0.99, "epsilon": 1e-8},
    "adam": {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "t": 0},
}
# Per-element state arrays of each rule, shaped like the parameter.
STATE_KEYS: dict[str, tuple[str, ...]] = {
    "sgd": (),
    "sgd_momentum": ("velocity",),
    "rmsprop": ("cache",),
    "adam": ("m", "v"),
}


def _flush_subnormals(a: np.ndarray) -> np.ndarray:
    """``a`` with the values below its dtype's smallest normal number set to +0.

    Optimizer state of a parameter whose gradient stays zero (a dead ReLU, an always-black
    pixel) decays into subnormal numbers, on which x86 arithmetic is ~100x slower: a 784-32-32-10
    net without normalization had 14129 of 26506 Adam first moments subnormal after two epochs,
    and its update took 0.40 ms instead of 0.03 ms. A flushed value changes the parameter by less
    than lr * 1e-38 / eps, below what it can represent. The kernels flush the same values.
    """
    a = np.asarray(a)
    return np.where(np.abs(a) < np.finfo(a.dtype).tiny, a.dtype.type(0), a)


def _root_mean_square(prev: np.ndarray, dw: np.ndarray, decay: float) -> np.ndarray:
    """``sqrt(decay * prev + (1 - decay) * dw**2)`` in float64, without squaring a large number.

    ``prev`` is a stored mean square, or minus its root where negative; everything is scaled by
    ``k = max(sqrt(prev), |dw|)`` first. The kernels compute the same operations in the same
    order.
    """
    prev, a = prev.astype(np.float64), np.abs(dw.astype(np.float64))
    s = np.where(prev >= 0, np.sqrt(np.abs(prev)), -prev)  # root of the previous mean square
    k = np.where(s >= a, s, a)  # > 0: an element here has a non-zero root or gradient
    p, q = s / k, a / k
    return k * np.sqrt(decay * (p * p) + (1 - decay) * (q * q))


def _stored_mean_square(root: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The state stored for a mean square ``root**2``: itself if in range, else ``-root``."""
    with np.errstate(over="ignore"):  # an overflow is stored as -root
        ms = root * root
    return np.where(ms <= np.finfo(dtype).max, ms, -root).astype(dtype)


def _with_defaults(name: str, config: dict | None) -> dict:
    """Return ``config`` (or a new dict) with the defaults of rule ``name`` filled in."""
    config = {} if config is None else config
    for key, value in DEFAULTS[name].items():
        config.setdefault(key, value)
    return config


def sgd(w: np.ndarray, dw: np.ndarray, config: dict | None = None) -> tuple[np.ndarray, dict]:
    """Vanilla stochastic gradient descent.

    Parameters
    ----------
    w : ndarray of any shape
        Current weights.
    dw : ndarray, same shape as ``w``
        Gradient of the loss with respect to ``w``.
    config : dict, optional
        ``learning_rate`` : float, default 1e-2.

    Returns
    -------
    next_w : ndarray, same shape and dtype as ``w``
        Updated weights (a new array; ``w`` is not modified).
    config : dict
        The same dict, with defaults filled in.

    Notes
    -----
    .. math:: w \\leftarrow w - \\eta\\, dw

    Examples
    --------
    >>> next_w, _ = sgd(np.array([1.0]), np.array([2.0]), {"learning_rate": 0.1})
    >>> next_w
    array([0.8])
    """
    config = _with_defaults("sgd", config)
    lr = float(config["learning_rate"])
    next_w = w - lr * dw
    return next_w, config


def sgd_momentum(
    w: np.ndarray, dw: np.ndarray, config: dict | None = None
) -> tuple[np.ndarray, dict]:
    """Stochastic gradient descent with (heavy-ball) momentum.

    Parameters
    ----------
    w : ndarray of any shape
        Current weights.
    dw : ndarray, same shape as ``w``
        Gradient of the loss with respect to ``w``.
    config : dict, optional
        ``learning_rate`` : float, default 1e-2.
        ``momentum`` : float in [0, 1), default 0.9; 0 reduces to :func:`sgd`.
        ``velocity`` : ndarray shaped like ``w``, default zeros (state).

    Returns
    -------
    next_w : ndarray, same shape and dtype as ``w``
        Updated weights.
    config : dict
        The same dict with the new ``velocity``.

    Notes
    -----
    .. math::
        v \\leftarrow \\mu v - \\eta\\, dw, \\qquad w \\leftarrow w + v

    This is the CS231n convention (learning rate inside the velocity).  PyTorch's
    ``SGD(momentum=mu)`` keeps ``b = mu b + dw`` and steps ``w -= lr b``; the two agree while the
    learning rate is constant (``v = -lr b``), and differ after a learning-rate change.

    Examples
    --------
    >>> cfg = {"learning_rate": 0.1, "momentum": 0.5}
    >>> w, cfg = sgd_momentum(np.array([1.0]), np.array([2.0]), cfg)  # v = -0.2
    >>> w, cfg = sgd_momentum(w, np.array([2.0]), cfg)  # v = -0.1 - 0.2
    >>> w
    array([0.5])
    """
    config = _with_defaults("sgd_momentum", config)
    lr, mu = float(config["learning_rate"]), float(config["momentum"])
    v = config.get("velocity")
    v = np.zeros_like(w) if v is None else v  # shape of w
    v = _flush_subnormals(mu * v - lr * dw)  # shape of w
    next_w = w + v
    config["velocity"] = v
    return next_w, config


def rmsprop(w: np.ndarray, dw: np.ndarray, config: dict | None = None) -> tuple[np.ndarray, dict]:
    """RMSProp: divide the step by a running root mean square of the gradient.

    Parameters
    ----------
    w : ndarray of any shape
        Current weights.
    dw : ndarray, same shape as ``w``
        Gradient of the loss with respect to ``w``.
    config : dict, optional
        ``learning_rate`` : float, default 1e-2.
        ``decay_rate`` : float in [0, 1), default 0.99.
        ``epsilon`` : float, default 1e-8 (added to the root, not inside it).
        ``cache`` : ndarray shaped like ``w``, default zeros (state): the mean square ``c``, or
        ``-sqrt(c)`` where ``c`` exceeds the dtype's largest number.

    Returns
    -------
    next_w : ndarray, same shape and dtype as ``w``
        Updated weights.
    config : dict
        The same dict with the new ``cache``.

    Notes
    -----
    .. math::
        c \\leftarrow \\rho c + (1 - \\rho)\\, dw^2, \\qquad
        w \\leftarrow w - \\frac{\\eta\\, dw}{\\sqrt{c} + \\epsilon}

    Tieleman & Hinton, Lecture 6.5, COURSERA: Neural Networks for Machine Learning (2012).
    Matches ``torch.optim.RMSprop(alpha=decay_rate, eps=epsilon)``.

    Range: an element whose :math:`c` would exceed the dtype's largest number, or whose
    ``dw**2`` does (float32: ``|dw|`` above about ``1.8e19``), or whose cache is stored as a root,
    is computed in float64: :math:`r = \\sqrt{\\rho c + (1 - \\rho) dw^2}`, scaled by
    :math:`\\max(\\sqrt{c}, |dw|)` so that nothing is squared out of range, and
    :math:`w - \\eta\\, dw / (r + \\epsilon)`, rounded to the dtype at the end; the cache
    stores :math:`r^2` when in range, else :math:`-r`. The step then equals the float64 rule's
    to the dtype's precision. Tiny gradients need nothing: a mean square below the smallest
    normal number is flushed to zero, which changes the step by a relative
    :math:`\\sqrt{c} / \\epsilon \\le 1.1 \\cdot 10^{-11}` in float32 with the default
    ``epsilon``; with ``epsilon`` below about ``2e-12`` (e.g. 0) a gradient under ``1e-19`` is
    divided by ``epsilon`` alone.

    Examples
    --------
    >>> cfg = {"learning_rate": 0.1, "decay_rate": 0.75, "epsilon": 0.0}
    >>> w, cfg = rmsprop(np.array([1.0]), np.array([2.0]), cfg)  # c = 1, step = 0.2
    >>> w
    array([0.8])
    """
    config = _with_defaults("rmsprop", config)
    lr, rho = float(config["learning_rate"]), float(config["decay_rate"])
    eps = float(config["epsilon"])
    cache = config.get("cache")
    cache = np.zeros_like(w) if cache is None else cache  # shape of w
    with np.errstate(over="ignore", invalid="ignore"):  # the elements redone below
        new = rho * cache + (1 - rho) * (dw**2)  # shape of w
        wide = (new > np.finfo(new.dtype).max) | (cache < 0)  # out of range, or held as a root
        new = _flush_subnormals(new)
        next_w = np.asarray(w - lr * dw / (np.sqrt(new) + eps))
    if wide.any():
        r = _root_mean_square(cache[wide], dw[wide], rho)  # (n_wide,) float64
        next_w[wide] = w[wide] - lr * (dw[wide] / (r + eps))
        new[wide] = _stored_mean_square(r, new.dtype)
    config["cache"] = new
    return next_w, config


def adam(w: np.ndarray, dw: np.ndarray, config: dict | None = None) -> tuple[np.ndarray, dict]:
    """Adam: momentum on the gradient and on its square, with bias correction.

    Parameters
    ----------
    w : ndarray of any shape
        Current weights.
    dw : ndarray, same shape as ``w``
        Gradient of the loss with respect to ``w``.
    config : dict, optional
        ``learning_rate`` : float, default 1e-3.
        ``beta1`` : float, default 0.9 (decay of the first moment).
        ``beta2`` : float, default 0.999 (decay of the second moment).
        ``epsilon`` : float, default 1e-8 (added to the root, not inside it).
        ``m``, ``v`` : ndarrays shaped like ``w``, default zeros (state); ``v`` holds
        ``-sqrt(v)`` where ``v`` exceeds the dtype's largest number.
        ``t`` : int, default 0 (number of steps taken, state).

    Returns
    -------
    next_w : ndarray, same shape and dtype as ``w``
        Updated weights.
    config : dict
        The same dict with the new ``m``, ``v`` and ``t``.

    Notes
    -----
    ``t`` is incremented *before* the bias correction (CS231n, PyTorch), so the first step uses
    ``t = 1``:

    .. math::
        t \\leftarrow t + 1, \\quad
        m \\leftarrow \\beta_1 m + (1 - \\beta_1) dw, \\quad
        v \\leftarrow \\beta_2 v + (1 - \\beta_2) dw^2,

        w \\leftarrow w - \\frac{\\eta\\, m / (1 - \\beta_1^t)}{\\sqrt{v / (1 - \\beta_2^t)}
        + \\epsilon}

    Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, Algorithm 1.
    Matches ``torch.optim.Adam(betas=(beta1, beta2), eps=epsilon)``.

    Range: as in :func:`rmsprop`, an element whose :math:`v / (1 - \\beta_2^t)` would exceed
    the dtype's largest number (float32: ``|dw|`` from about ``1.8e19``), or whose :math:`v` is
    stored as a root, is computed in float64 from
    :math:`r = \\sqrt{\\beta_2 v + (1 - \\beta_2) dw^2}` (scaled, never squared out of range)
    as :math:`w - \\eta\\, \\hat m / (r / \\sqrt{1 - \\beta_2^t} + \\epsilon)`; ``v`` stores
    :math:`r^2` when in range, else :math:`-r`. ``m`` never leaves the range of ``dw``. A
    gradient below about ``1e-37`` gives a subnormal ``m``, flushed to zero.

    Examples
    --------
    >>> w, cfg = adam(np.array([1.0]), np.array([2.0]), {"learning_rate": 0.1, "epsilon": 0.0})
    >>> w  # the first bias-corrected step is lr * sign(dw)
    array([0.9])
    """
    config = _with_defaults("adam", config)
    lr, eps = float(config["learning_rate"]), float(config["epsilon"])
    beta1, beta2 = float(config["beta1"]), float(config["beta2"])
    m, v = config.get("m"), config.get("v")
    m = np.zeros_like(w) if m is None else m  # shape of w
    v = np.zeros_like(w) if v is None else v  # shape of w
    t = int(config["t"]) + 1
    m = _flush_subnormals(beta1 * m + (1 - beta1) * dw)
    mt = m / (1 - beta1**t)
    with np.errstate(over="ignore", invalid="ignore"):  # the elements redone below
        new = _flush_subnormals(beta2 * v + (1 - beta2) * (dw**2))  # shape of w
        vt = new / (1 - beta2**t)
        wide = (vt > np.finfo(vt.dtype).max) | (v < 0)  # out of range, or held as a root
        next_w = np.asarray(w - lr * mt / (np.sqrt(vt) + eps))
    if wide.any():
        r = _root_mean_square(v[wide], dw[wide], beta2)  # (n_wide,) float64
        mt_wide = m[wide].astype(np.float64) / (1 - beta1**t)
        next_w[wide] = w[wide] - lr * mt_wide / (r / np.sqrt(1 - beta2**t) + eps)
        new[wide] = _stored_mean_square(r, new.dtype)
    config["m"], config["v"], config["t"] = m, new, t
    return next_w, config


UpdateRule = Callable[[np.ndarray, np.ndarray, "dict | None"], "tuple[np.ndarray, dict]"]

UPDATE_RULES: dict[str, UpdateRule] = {
    "sgd": sgd,
    "sgd_momentum": sgd_momentum,
    "rmsprop": rmsprop,
    "adam": adam,
}


def get_update_rule(name: str) -> UpdateRule:
    """Look up a built-in update rule by name.

    Parameters
    ----------
    name : str
        One of ``UPDATE_RULES`` ("sgd", "sgd_momentum", "rmsprop", "adam").

    Returns
    -------
    rule : callable
        ``rule(w, dw, config=None) -> (next_w, config)``.

    Raises
    ------
    ValueError
        If ``name`` is not a built-in rule; the message lists the known ones.
    """
    if name not in UPDATE_RULES:
        raise ValueError(f"unknown update rule {name!r}; known rules are {sorted(UPDATE_RULES)}")
    return UPDATE_RULES[name]
