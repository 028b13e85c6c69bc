"""The normalization registry: the names ``normalization=...`` accepts, in models and experiments.

A normalization is registered once per input kind:

* ``'feature'``: after an affine layer, input of shape (N, D), parameters per feature (D,);
* ``'spatial'``: after a convolution, input of shape (N, C, H, W), parameters per channel (C,).

Each registration is a :class:`NormLayer`: a forward/backward pair in the layer convention,

.. code-block:: python

    out, cache = forward(x, *params, norm_param)      # params in the order of `params`
    dx, *dparams = backward(dout, cache)              # one gradient per parameter, same order

plus how its parameters and running statistics are created from the channel count. The models
call ``forward`` with one persistent dict ``norm_param`` per layer holding:

* ``'mode'``: ``'train'`` or ``'test'`` (always set; a layer that is the same in both ignores it);
* every running statistic named in ``buffers``: the model's buffer array itself, which the layer
  updates in place in train mode (as :func:`~normlab.layers.batchnorm_forward` does);
* ``'groups'``: the number of groups of this layer when the registration says ``groups=True``;
* ``'layer'``: the layer number (1 first, the suffix of its parameter names) when the
  registration says ``layer_index=True`` (a layer whose behaviour depends on its depth);
* the registration's ``defaults`` overridden by the model's ``norm_options`` (``eps``,
  ``momentum``...).

A registration with ``configure`` checks those options when the model is built and chooses the
buffers from them (batch norm keeps no running statistics with ``track_running_stats=False``, and
a ``num_batches_tracked`` count with ``momentum=None``).

The built-in names are registered by :mod:`normlab.models.norms` (its docstring lists
them); ``None`` (no normalization) is always accepted and is not a registered name.

Examples
--------
A per-sample RMS norm over every non-batch axis (the built-in ``'rmsnorm'`` of a feature map is
per position instead), usable as ``normalization='rms_per_sample'``:

>>> def rms_forward(x, gamma, p):
...     axes = tuple(range(1, x.ndim))  # per sample
...     r = 1 / np.sqrt((x * x).mean(axis=axes, keepdims=True) + p["eps"])
...     g = gamma.reshape((1, -1) + (1,) * (x.ndim - 2))
...     return g * x * r, (x * r, r, g, axes)
>>> def rms_backward(dout, cache):
...     xh, r, g, axes = cache
...     dg = (dout * xh).sum(axis=(0,) + axes[1:])
...     gx = dout * g
...     return r * (gx - xh * (gx * xh).mean(axis=axes, keepdims=True)), dg
>>> for kind in ("feature", "spatial"):
...     _ = register_normalization("rms_per_sample", rms_forward, rms_backward, kind=kind,
...                                params={"gamma": 1.0}, defaults={"eps": 1e-6})
>>> "rms_per_sample" in available_normalizations()
True
>>> unregister_normalization("rms_per_sample")
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "KINDS",
    "NormLayer",
    "available_normalizations",
    "get_normalization",
    "layer_groups",
    "note_missing_kind",
    "register_normalization",
    "unregister_normalization",
]

KINDS = ("feature", "spatial")
_NAME = re.compile(r"[A-Za-z_]+\Z")  # no digits: the models append the layer number
_RESERVED = {"W", "b"}  # the models' own parameter prefixes
_RESERVED_KEYS = {"mode", "groups", "layer"}  # keys of norm_param the models set themselves

Init = float | Callable[[int], np.ndarray]


@dataclass(frozen=True)
class NormLayer:
    """One registered normalization for one input kind (see the module docstring).

    Built by :func:`register_normalization`, which documents the fields; checked on
    construction (a ValueError names the bad field).

    Attributes
    ----------
    name : str
    kind : {'feature', 'spatial'}
    forward : callable
        ``forward(x, *params, norm_param) -> (out, cache)``, ``out`` shaped like ``x``.
    backward : callable
        ``backward(dout, cache) -> (dx, *dparams)``.
    params : dict of str to float or callable
        Trainable parameters in the order ``forward`` takes them: a float fills an array of
        shape (C,), a callable ``init(C) -> ndarray`` gives any shape.
    buffers : dict of str to float or callable
        Running statistics (never trained), created the same way; passed in ``norm_param``.
    groups : bool
        Whether ``norm_param['groups']`` is set (to :func:`layer_groups` of the layer width).
    layer_index : bool
        Whether ``norm_param['layer']`` is set to the layer number (1 first).
    defaults : dict
        Options put into ``norm_param`` (the model's ``norm_options`` override them).
    test_affine : callable or None
        ``test_affine(params, norm_param) -> (scale, shift)``, arrays of shape (C,) such that
        the test-mode output is ``x * scale + shift`` per channel; what
        :func:`~normlab.models.inference.fold_batchnorm` folds into the preceding layer.
        ``params`` maps the registration's parameter names (``'gamma'``) to arrays.
    batch_stats : bool
        The layer has batch-norm semantics: the buffers ``running_mean`` and ``running_var``
        estimate per-channel population statistics of its input from train-mode batches
        (biased variance unless ``norm_param['running_var_unbiased']``) and test mode uses them;
        :func:`~normlab.models.inference.precise_bn` recomputes them.
    configure : callable or None
        ``configure(options) -> buffers``, called by the models once per layer with the layer's
        options (``defaults`` overridden by the model's ``norm_options``; a copy): raises
        ValueError for a bad option (what it expected, what it got, how to fix it) and returns
        the buffers the layer keeps under these options, a dict like ``buffers``. None: the
        options are passed on unchecked and every layer keeps ``buffers``.
    """

    name: str
    kind: str
    forward: Callable
    backward: Callable
    params: Mapping[str, Init] | None = None  # None: no parameters
    buffers: Mapping[str, Init] | None = None
    groups: bool = False
    defaults: Mapping[str, Any] | None = None
    test_affine: Callable | None = None
    batch_stats: bool = False
    configure: Callable | None = None
    layer_index: bool = False

    def __post_init__(self) -> None:
        """Check the fields (a ValueError says which is wrong) and keep them as plain dicts."""
        name, kind = self.name, self.kind
        if not isinstance(name, str) or not name:
            raise ValueError(f"expected a non-empty string as normalization name, got {name!r}")
        if kind not in KINDS:
            raise ValueError(f"expected kind in {list(KINDS)}, got {kind!r}")
        if not callable(self.forward) or not callable(self.backward):
            raise ValueError("expected callable forward and backward functions")
        params, buffers = dict(self.params or {}), dict(self.buffers or {})
        _check_inits("parameter", params)
        _check_inits("buffer", buffers, params)
        if self.configure is not None and not callable(self.configure):
            raise ValueError(f"expected configure None or a callable, got {self.configure!r}")
        defaults = dict(self.defaults or {})
        clash = sorted(set(defaults) & (_RESERVED_KEYS | set(buffers)))
        if clash:
            raise ValueError(f"defaults may not set the reserved norm_param keys {clash}")
        if self.batch_stats and not {"running_mean", "running_var"} <= set(buffers):
            raise ValueError(
                "batch_stats=True expects buffers {'running_mean', 'running_var'} (and maybe "
                f"others), got {sorted(buffers)}"
            )
        object.__setattr__(self, "params", params)  # frozen: normalised once, here
        object.__setattr__(self, "buffers", buffers)
        object.__setattr__(self, "groups", bool(self.groups))
        object.__setattr__(self, "layer_index", bool(self.layer_index))
        object.__setattr__(self, "defaults", defaults)
        object.__setattr__(self, "batch_stats", bool(self.batch_stats))

    def init_params(self, C: int, dtype) -> dict[str, np.ndarray]:
        """Initial parameters of a layer of width ``C``, by registration name (``'gamma'``)."""
        return {k: _make(init, C, dtype) for k, init in self.params.items()}

    def buffers_for(self, options: Mapping[str, Any]) -> dict[str, Init]:
        """The buffers a layer with ``options`` keeps: ``configure``'s choice, or ``buffers``.

        Raises
        ------
        ValueError
            From ``configure``, for an option it refuses; or for buffer names it may not use.
        """
        if self.configure is None:
            return dict(self.buffers)
        buffers = self.configure(dict(options))
        if not isinstance(buffers, Mapping):
            raise ValueError(
                f"expected configure of normalization {self.name!r} to return a dict of buffers, "
                f"got {buffers!r}"
            )
        buffers = dict(buffers)
        _check_inits("buffer", buffers, self.params)
        return buffers

    def init_buffers(
        self, C: int, dtype, buffers: Mapping[str, Init] | None = None
    ) -> dict[str, np.ndarray]:
        """Initial running statistics of a layer of width ``C``, by registration name.

        ``buffers`` (default: the registration's) is what :meth:`buffers_for` chose.
        """
        buffers = self.buffers if buffers is None else buffers
        return {k: _make(init, C, dtype) for k, init in buffers.items()}


def _check_inits(what: str, names: Mapping[str, Init], params: Mapping | None = None) -> None:
    """Raise ValueError for a bad parameter or buffer name or init, or a buffer named as a
    parameter."""
    for k, init in names.items():
        if not isinstance(k, str) or not _NAME.match(k) or k in _RESERVED:
            raise ValueError(
                f"expected {what} names made of letters and underscores, other than "
                f"{sorted(_RESERVED)}, got {k!r}"
            )
        if not (callable(init) or isinstance(init, numbers.Real)):
            raise ValueError(
                f"expected a number or a callable init(C) for {what} {k!r}, got {init!r}"
            )
    overlap = sorted(set(names) & set(params or ()))
    if overlap:
        raise ValueError(f"parameter and buffer names overlap: {overlap}")


def _make(init: Init, C: int, dtype) -> np.ndarray:
    """The array an ``Init`` describes for width ``C``."""
    if callable(init):
        return np.array(init(C), dtype=dtype)  # a copy, owned by the model
    return np.full(C, init, dtype=dtype)


_REGISTRY: dict[str, dict[str, NormLayer]] = {}


def register_normalization(
    name: str,
    forward: Callable,
    backward: Callable,
    *,
    kind: str = "feature",
    params: Mapping[str, Init] | None = None,
    buffers: Mapping[str, Init] | None = None,
    groups: bool = False,
    defaults: Mapping[str, Any] | None = None,
    test_affine: Callable | None = None,
    batch_stats: bool = False,
    configure: Callable | None = None,
    layer_index: bool = False,
    overwrite: bool = False,
) -> NormLayer:
    """Register a normalization under ``name`` for one input kind.

    Parameters
    ----------
    name : str
        What ``normalization=`` will accept. Register it once per kind the models need:
        ``FullyConnectedNet`` uses ``'feature'``; ``ConvNet`` uses ``'spatial'`` after its
        convolutions and ``'feature'`` after its hidden affine layers.
    forward : callable
        ``forward(x, *params, norm_param) -> (out, cache)``; ``x`` is (N, D) for
        ``kind='feature'`` and (N, C, H, W) for ``kind='spatial'``; ``out`` has the shape of x.
    backward : callable
        ``backward(dout, cache) -> (dx, *dparams)``, one gradient per parameter, each in the
        parameter's shape and dtype.
    kind : {'feature', 'spatial'}, default 'feature'
    params : dict of str to float or callable, default ``{'gamma': 1.0, 'beta': 0.0}``
        Trainable parameters, in the order ``forward`` takes them. A float fills shape (C,); a
        callable ``init(C) -> ndarray`` gives any initial array. Names are letters and
        underscores (the model appends the layer number: ``gamma1``); not ``W`` or ``b``.
    buffers : dict of str to float or callable, default {}
        Running statistics, created like ``params``, kept in ``model.buffers`` and passed to
        ``forward`` as ``norm_param[name]``; ``forward`` updates them in place in train mode.
    groups : bool, default False
        Pass the layer's number of groups as ``norm_param['groups']``.
    layer_index : bool, default False
        Pass the layer number (1 first) as ``norm_param['layer']``: for a layer whose
        behaviour depends on its depth (``'noisybatchnorm'``'s noise grows with it).
    defaults : dict, optional
        Options for ``norm_param`` (e.g. ``{'eps': 1e-5}``); the models' ``norm_options``
        override them. Keys ``'mode'``, ``'groups'``, ``'layer'`` and the buffer names are reserved.
    test_affine : callable, optional
        ``test_affine(params, norm_param) -> (scale, shift)`` of shape (C,) when test mode is a
        per-channel affine map; lets :func:`~normlab.models.inference.fold_batchnorm` fold it.
    batch_stats : bool, default False
        Batch-norm semantics (buffers ``running_mean``/``running_var`` hold population
        statistics of the input); lets :func:`~normlab.models.inference.precise_bn` recompute
        them.
    configure : callable, optional
        ``configure(options) -> buffers``: checks a layer's options (its ``defaults`` overridden
        by the model's ``norm_options``) when the model is built, raising ValueError for a bad
        one, and returns the buffers the layer keeps under them (a dict like ``buffers``). By
        default the options are not checked before the first forward pass and the layer keeps
        ``buffers``. Built-in batch norm uses it for ``momentum`` and ``track_running_stats``.
    overwrite : bool, default False
        Replace an existing registration of ``name`` for ``kind`` instead of raising.

    Returns
    -------
    layer : NormLayer

    Raises
    ------
    ValueError
        Bad name, kind or parameter names, or ``name`` already registered for ``kind``.
    """
    params = {"gamma": 1.0, "beta": 0.0} if params is None else params
    layer = NormLayer(
        name,
        kind,
        forward,
        backward,
        params,
        buffers,
        groups,
        defaults,
        test_affine,
        batch_stats,
        configure,
        layer_index,
    )
    kinds = _REGISTRY.setdefault(name, {})
    if kind in kinds and not overwrite:
        raise ValueError(
            f"normalization {name!r} is already registered for kind {kind!r}; "
            "pass overwrite=True to replace it"
        )
    kinds[kind] = layer
    return layer


def unregister_normalization(name: str) -> None:
    """Remove every registration of ``name`` (all kinds); unknown names raise ValueError."""
    if name not in _REGISTRY:
        raise ValueError(_unknown(name))
    del _REGISTRY[name]


def available_normalizations(kind: str | None = None) -> list[str]:
    """Registered normalization names, sorted (``None``, no normalization, is always valid too).

    Parameters
    ----------
    kind : {'feature', 'spatial'}, optional
        Only the names registered for this kind.

    Returns
    -------
    names : list of str
    """
    if kind is not None and kind not in KINDS:
        raise ValueError(f"expected kind in {list(KINDS)} or None, got {kind!r}")
    return sorted(n for n, kinds in _REGISTRY.items() if kind is None or kind in kinds)


def _unknown(name) -> str:
    known = [None, *available_normalizations()]
    return f"unknown normalization {name!r}; known normalizations are {known}"


def get_normalization(name: str | None, kind: str) -> NormLayer | None:
    """The registration of ``name`` for ``kind``; ``None`` for ``name=None``.

    Raises
    ------
    ValueError
        Unknown name (the message lists the known ones), or a name without a ``kind`` variant.
    """
    if name is None:
        return None
    kinds = _REGISTRY.get(name) if isinstance(name, str) else None
    if kinds is None:
        raise ValueError(_unknown(name))
    if kind not in kinds:
        why = _NO_VARIANT.get((name, kind))
        fix = (
            f"register one with register_normalization({name!r}, ..., kind={kind!r})"
            if why is None
            else why
        )
        raise ValueError(
            f"normalization {name!r} has no {kind!r} variant (it has {sorted(kinds)}): {fix}; "
            f"the names with one are {available_normalizations(kind)}"
            + ("; a ConvNet with hidden_dims=() needs only 'spatial'" if kind == "feature" else "")
        )
    return kinds[kind]


def layer_groups(groups: int, C: int) -> int:
    """Number of groups of a layer of width ``C``: ``gcd(groups, C)``, which always divides C."""
    return math.gcd(int(groups), int(C))


_NO_VARIANT: dict[tuple[str, str], str] = {}  # why a built-in lacks a kind (note_missing_kind)


def note_missing_kind(name: str, kind: str, why: str) -> None:
    """Say why ``name`` has no ``kind`` variant: :func:`get_normalization`'s message for it."""
    _NO_VARIANT[(name, kind)] = why
