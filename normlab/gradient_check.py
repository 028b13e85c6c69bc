"""Numerical gradient checking: centred differences against a layer's analytic backward.

The three helpers of the CS231n assignment (`eval_numerical_gradient`,
`eval_numerical_gradient_array`, `rel_error`) plus `check_layer`, which checks any
forward/backward pair -- one of normlab's or a user's own -- with a random upstream gradient.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np


def rel_error(x, y) -> float:
    """Maximum relative error ``max |x - y| / max(1e-8, |x| + |y|)`` between two arrays."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y))))


def eval_numerical_gradient(f: Callable, x: np.ndarray, verbose: bool = True, h: float = 1e-5):
    """Numerical gradient of a scalar function ``f`` at ``x`` by centred differences.

    Parameters
    ----------
    f : callable
        ``f(x) -> float``; evaluated at perturbed copies of ``x`` (``x`` is modified in place
        and restored).
    x : ndarray of any shape
        The point; must be a floating array (use float64 for meaningful results).
    verbose : bool, default=True
        Print each coordinate's gradient as it is computed.
    h : float, default=1e-5
        Step of the centred difference.

    Returns
    -------
    grad : ndarray, same shape as ``x``
        ``(f(x + h e_i) - f(x - h e_i)) / 2h`` for every coordinate ``i``.
    """
    grad = np.zeros_like(x)
    for ix, fxph, fxmh in _centred(f, x, h):
        grad[ix] = (fxph - fxmh) / (2 * h)
        if verbose:
            print(ix, grad[ix])
    return grad


def eval_numerical_gradient_array(f: Callable, x: np.ndarray, df: np.ndarray, h: float = 1e-5):
    """Numerical gradient of ``sum(f(x) * df)`` with respect to ``x``.

    Parameters
    ----------
    f : callable
        ``f(x) -> ndarray`` of the shape of ``df``.
    x : ndarray of any shape
        The point (modified in place and restored).
    df : ndarray
        Upstream gradient, same shape as ``f(x)``.
    h : float, default=1e-5
        Step of the centred difference.

    Returns
    -------
    grad : ndarray, same shape as ``x``
        ``sum((f(x + h e_i) - f(x - h e_i)) * df) / 2h`` for every coordinate ``i``: the
        gradient that a backward given ``dout = df`` returns.
    """
    grad = np.zeros_like(x)
    # copies: f may return a view of a buffer that its next call overwrites
    for ix, pos, neg in _centred(lambda z: np.array(f(z), copy=True), x, h):
        grad[ix] = np.sum((pos - neg) * df) / (2 * h)
    return grad


def _centred(f: Callable, x: np.ndarray, h: float):
    """``(index, f(x + h e_i), f(x - h e_i))`` for every index of ``x`` (x modified, restored)."""
    it = np.nditer(x, flags=["multi_index"], op_flags=[["readwrite"]])
    while not it.finished:
        ix = it.multi_index
        old = x[ix]
        x[ix] = old + h
        plus = f(x)
        x[ix] = old - h
        minus = f(x)
        x[ix] = old
        yield ix, plus, minus
        it.iternext()


@dataclass(frozen=True)
class GradCheckRow:
    """One line of a gradient-check table."""

    layer: str
    gradient: str
    rel_error: float
    tol: float

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.rel_error) and self.rel_error <= self.tol)


def check_layer(
    forward: Callable,
    backward: Callable,
    inputs: Sequence[np.ndarray],
    names: Sequence[str] | None = None,
    kwargs: dict | None = None,
    seed: int = 0,
    h: float = 1e-5,
    tol: float = 1e-6,
    layer: str = "layer",
) -> list[GradCheckRow]:
    """Check a forward/backward pair against centred differences with a random upstream gradient.

    ``out, cache = forward(*inputs, **kwargs)`` and ``grads = backward(dout, cache)``, where
    ``grads`` holds one gradient per entry of ``inputs`` (a single array if there is one input).
    The loss differentiated is ``sum(out * dout)`` with ``dout`` drawn from a standard normal:
    never all ones, because for a normalization layer the input gradient of a plain sum is
    exactly zero and such a check proves nothing.

    Parameters
    ----------
    forward, backward : callable
        The pair to check, in the ``*_forward -> (out, cache)`` / ``*_backward(dout, cache)``
        convention.
    inputs : sequence of ndarray
        Differentiable inputs, float64 for meaningful results. Copied, never modified.
    names : sequence of str, optional
        Names of the gradients for the table; defaults to ``d0, d1, ...``.
    kwargs : dict, optional
        Non-differentiable arguments passed to ``forward`` (e.g. ``bn_param``), deep-copied for
        every call so that in-place updates (running statistics) neither leak into the caller's
        arrays nor change the function being differentiated.
    seed : int, default=0
        Seed of the upstream gradient.
    h : float, default=1e-5
        Step of the centred difference.
    tol : float, default=1e-6
        Largest relative error that passes.
    layer : str, default="layer"
        Name of the layer for the table.

    Returns
    -------
    rows : list of GradCheckRow
        One row per input: layer, gradient name, relative error, tolerance (``.passed``).

    Examples
    --------
    >>> import numpy as np
    >>> from normlab.layers import affine_forward, affine_backward
    >>> rng = np.random.default_rng(0)
    >>> x, w, b = rng.normal(size=(4, 5)), rng.normal(size=(5, 3)), rng.normal(size=3)
    >>> rows = check_layer(affine_forward, affine_backward, [x, w, b], ["dx", "dw", "db"])
    >>> all(r.passed for r in rows)
    True
    """
    kwargs = dict(kwargs or {})
    inputs = [np.array(a, dtype=np.float64, copy=True) for a in inputs]
    names = list(names) if names is not None else [f"d{i}" for i in range(len(inputs))]
    if len(names) != len(inputs):
        raise ValueError(f"expected {len(inputs)} gradient names, got {len(names)}")

    def run_forward(args):
        # a deep copy per call: in-place updates (running statistics) must not leak
        return forward(*args, **copy.deepcopy(kwargs))

    out, cache = run_forward(inputs)
    dout = np.random.default_rng(seed).standard_normal(np.shape(out))
    grads = backward(dout, cache)
    if not isinstance(grads, tuple):
        grads = (grads,)
    rows = []
    for i, name in enumerate(names):

        def f_i(xi, i=i):
            args = list(inputs)
            args[i] = xi
            return run_forward(args)[0]

        num = eval_numerical_gradient_array(f_i, inputs[i], dout, h=h)
        ana = np.reshape(grads[i], num.shape)
        rows.append(GradCheckRow(layer, name, rel_error(num, ana), tol))
    return rows


def format_table(rows: Sequence[GradCheckRow]) -> str:
    """Render gradient-check rows as a fixed-width text table."""
    lines = [f"{'layer':<28} {'gradient':<10} {'rel. error':>11}  result"]
    for r in rows:
        lines.append(
            f"{r.layer:<28} {r.gradient:<10} {r.rel_error:>11.2e}  {'pass' if r.passed else 'FAIL'}"
        )
    return "\n".join(lines)


def check_all_layers(seed: int = 0) -> list[GradCheckRow]:
    """Gradient-check every layer of ``normlab.layers`` in float64 on small random inputs.

    Parameters
    ----------
    seed : int, default=0
        Seed of the inputs and of the upstream gradients.

    Returns
    -------
    rows : list of GradCheckRow
        One row per (layer, gradient); ``normlab gradcheck`` prints them.
    """
    from normlab import layers as L

    rng = np.random.default_rng(seed)

    def r(*shape, scale=1.0, loc=0.0):
        return loc + scale * rng.standard_normal(shape)

    cases = [
        ("affine", L.affine_forward, L.affine_backward, [r(4, 3, 2), r(6, 5), r(5)], {}),
        ("relu", L.relu_forward, L.relu_backward, [r(5, 7)], {}),
        ("sigmoid", L.sigmoid_forward, L.sigmoid_backward, [r(5, 7)], {}),
        ("tanh", L.tanh_forward, L.tanh_backward, [r(5, 7)], {}),
        (
            "dropout (p=0.7)",
            L.dropout_forward,
            L.dropout_backward,
            [r(6, 8)],
            {"dropout_param": {"mode": "train", "p": 0.7, "seed": seed}},
        ),
    ]
    bn = {"bn_param": {"mode": "train"}}
    bn_test = {"bn_param": {"mode": "test", "running_mean": r(5), "running_var": 1 + r(5) ** 2}}
    x_bn, x_sp = r(8, 5, scale=3, loc=2), r(3, 4, 3, 2, scale=2, loc=-1)
    cases += [
        ("batchnorm (graph)", L.batchnorm_forward, L.batchnorm_backward, [x_bn, r(5), r(5)], bn),
        (
            "batchnorm (closed form)",
            L.batchnorm_forward,
            L.batchnorm_backward_alt,
            [x_bn, r(5), r(5)],
            bn,
        ),
        (
            "batchnorm (test mode)",
            L.batchnorm_forward,
            L.batchnorm_backward_alt,
            [x_bn, r(5), r(5)],
            bn_test,
        ),
        (
            "spatial_batchnorm",
            L.spatial_batchnorm_forward,
            L.spatial_batchnorm_backward,
            [x_sp, r(4), r(4)],
            {"bn_param": {"mode": "train"}},
        ),
        (
            "layernorm",
            L.layernorm_forward,
            L.layernorm_backward,
            [r(4, 6, scale=2, loc=1), r(6), r(6)],
            {"ln_param": {}},
        ),
        (
            "spatial_groupnorm (G=2)",
            L.spatial_groupnorm_forward,
            L.spatial_groupnorm_backward,
            [r(2, 6, 3, 2, scale=2, loc=1), r(1, 6, 1, 1), r(1, 6, 1, 1)],
            {"G": 2, "gn_param": {}},
        ),
    ]
    cases += [
        (
            "conv (stride 2, pad 1)",
            L.conv_forward,
            L.conv_backward,
            [r(2, 3, 5, 5), r(4, 3, 3, 3), r(4)],
            {"conv_param": {"stride": 2, "pad": 1}},
        ),
        (
            "max_pool (2x2, stride 2)",
            L.max_pool_forward,
            L.max_pool_backward,
            [r(2, 3, 4, 4)],
            {"pool_param": {"pool_height": 2, "pool_width": 2, "stride": 2}},
        ),
    ]
    names = {1: ["dx"], 3: ["dx", "dgamma", "dbeta"]}
    rows = []
    for name, fwd, bwd, inputs, kwargs in cases:
        grad_names = names[len(inputs)]
        if fwd in (L.affine_forward,) or name.startswith("conv"):
            grad_names = ["dx", "dw", "db"]
        rows += check_layer(fwd, bwd, inputs, grad_names, kwargs, seed=seed, layer=name, tol=1e-6)
    return rows
