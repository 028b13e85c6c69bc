"""PyTorch weights both ways, pickle-free: a model in ``nn.Sequential.state_dict()`` layout.

:func:`save_torch_state` writes a :class:`~normlab.models.FullyConnectedNet`,
:class:`~normlab.models.ConvNet`, :class:`~normlab.models.TwoLayerNet` or
:class:`~normlab.models.ThreeLayerConvNet` to a ``.safetensors`` file whose keys and shapes are
those of the equivalent ``nn.Sequential`` (:func:`torch_modules` lists it); PyTorch reads it with
``net.load_state_dict(safetensors.torch.load_file(path))``. :func:`load_torch_state` reads a file
that PyTorch wrote with ``safetensors.torch.save_file(net.state_dict(), path)`` into a normlab
model of the same architecture. Both go through the ``safetensors`` NumPy API: no pickle, no torch.

The Sequential
--------------
Each normlab block (:mod:`normlab.models.base`) becomes, in order, the modules::

    [nn.Flatten()]            before the first affine layer that follows a convolution
    nn.Linear(D, M)           | nn.Conv2d(C, F, k, padding=(k - 1) // 2)
    [norm]                    see the table below
    [nn.ReLU() | nn.Tanh() | nn.Sigmoid()]
    [nn.MaxPool2d(2)]         ConvNet's 2x2 pooling
    [nn.Dropout(1 - keep)]    after a hidden activation when dropout_keep_ratio = keep < 1

numbered from 0 as ``nn.Sequential`` numbers them; a module without parameters or buffers still
takes its number (ReLU, pooling, dropout, flatten). ``FullyConnectedNet([32, 32], input_dim=784,
normalization='batchnorm')`` is ``Sequential(Linear(784, 32), BatchNorm1d(32), ReLU(),
Linear(32, 32), BatchNorm1d(32), ReLU(), Linear(32, 10))``, keys ``0.weight, 0.bias, 1.weight,
1.bias, 1.running_mean, 1.running_var, 1.num_batches_tracked, 3.weight, ...``. The softmax is in
the loss on both sides (``nn.CrossEntropyLoss``), not in the Sequential.

The mapping
-----------
===============================  =======================================  ===============
normlab                          PyTorch key                              conversion
===============================  =======================================  ===============
affine ``W{i}`` (D, M)           ``{j}.weight`` of ``nn.Linear``, (M, D)  transposed
conv ``W{i}`` (F, C, k, k)       ``{j}.weight`` of ``nn.Conv2d``          as is
``b{i}``                         ``{j}.bias``                             as is
norm ``gamma{i}``, ``beta{i}``   ``{j}.weight``, ``{j}.bias``             as is
``running_mean{i}``              ``{j}.running_mean``                     as is
``running_var{i}``               ``{j}.running_var``                      as is (Notes)
``num_batches_tracked{i}`` (1,)  ``{j}.num_batches_tracked`` (), int64    the count, or 0
===============================  =======================================  ===============

The norm module ``{j}`` is ``nn.BatchNorm1d(M)`` after an affine layer and ``nn.BatchNorm2d(F)``
after a convolution for ``'batchnorm'``; ``nn.LayerNorm(M)`` for ``'layernorm'`` after an affine
layer and ``nn.GroupNorm(1, F)`` after a convolution; ``nn.GroupNorm(G, C)`` for ``'groupnorm'``
(``G`` the layer's group count). Only batch norm has buffers, and none with
``track_running_stats=False`` (on either side). The other registered
normalizations (renorm, ghost batch norm, rmsnorm, darknet...) and ConvNet's
``weight_standardization`` have no ``torch.nn`` module that computes the same, and are refused.

Notes
-----
``running_var``: both frameworks normalize with the stored running variance as it is in test
mode, so it is copied unchanged and test-mode scores agree. What differs is how training
accumulates it: PyTorch blends in the *unbiased* batch variance ``m/(m - 1)·σ²_B``, normlab the
biased ``σ²_B`` unless the model was built with ``norm_options={'running_var_unbiased': True}``.
A model trained with that option (and ``momentum = 1 - p`` for PyTorch's ``momentum=p``)
accumulates PyTorch's statistics, up to the initial values (normlab's running variance starts at
0, PyTorch's at 1: a difference that decays as ``momentum**t``). A default (biased) model
exports a variance smaller by about ``(m - 1)/m`` than PyTorch would have accumulated on batches
of ``m``; converting it needs that batch (or ghost batch) size, which the model does not
store, so it is not scaled: the file reproduces normlab's test mode, and PyTorch training on
from it blends its unbiased estimates in (the difference fades at the rate of the momentum).
The same holds in reverse: a PyTorch file loaded into a default model holds unbiased statistics
that normlab's training then blends biased ones into.

``num_batches_tracked``: a normlab model keeps the count only with ``momentum=None`` (PyTorch's
cumulative average, where it is needed); it is written then, and 0 otherwise (PyTorch uses it
only with ``momentum=None``). On loading it is read into a model that keeps it, ignored by one
that does not.

Momentum is not part of a ``state_dict``: build the PyTorch side with ``momentum = 1 - m`` for a
normlab ``momentum=m`` (``None`` on both sides for the cumulative average); both use
``eps=1e-5`` by default. See ``docs/conventions.md``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from normlab._io import atomic_write
from normlab.models.base import Block, Network

__all__ = ["StateMismatchError", "load_torch_state", "save_torch_state", "torch_modules"]

_ACTIVATIONS = {"relu": "nn.ReLU()", "tanh": "nn.Tanh()", "sigmoid": "nn.Sigmoid()"}
_POOL = {"pool_height": 2, "pool_width": 2, "stride": 2}
_COUNT = "num_batches_tracked"


class StateMismatchError(ValueError):
    """A file's keys or shapes differ from the model's Sequential.

    Attributes
    ----------
    key : str
        The first PyTorch key that differs.
    expected, got : tuple of int or None
        Its shape in the model and in the file (None: the key is absent on that side).
    """

    def __init__(self, message: str, key: str, expected, got) -> None:
        super().__init__(message)
        self.key, self.expected, self.got = key, expected, got


@dataclass(frozen=True)
class _Entry:
    """One tensor of the state_dict: its key, shape and where it lives in the model."""

    key: str
    shape: tuple
    module: str  # the module it belongs to, e.g. 'nn.BatchNorm1d(32)'
    name: str | None  # the model's params/buffers name; None: a count the model does not keep
    kind: str  # 'linear' (transposed), 'param', 'buffer' or 'count'


def _norm_modules(model: Network, blk: Block, j: int) -> tuple[str, list[_Entry]]:
    """The torch module of block ``blk``'s normalization at index ``j``, and its tensors."""
    name, spatial = blk.norm.name, blk.conv_param is not None
    p = blk.norm_param
    width = model.params[blk.b].shape[0]
    gamma, beta = blk.norm_params if len(blk.norm_params) == 2 else (None, None)
    eps = p.get("eps", 1e-5)
    if name == "batchnorm":
        m = p.get("momentum", 0.9)
        torch_m = "None" if m is None else f"{1 - m:g}"
        track = p.get("track_running_stats", True)
        untracked = "" if track else ", track_running_stats=False"
        opts = f", eps={eps:g}, momentum={torch_m}{untracked}"
        module = f"nn.BatchNorm{'2' if spatial else '1'}d({width}{opts})"
    elif name == "layernorm" and not spatial:
        module = f"nn.LayerNorm({width}, eps={eps:g})"
    elif name in ("layernorm", "groupnorm"):
        groups = 1 if name == "layernorm" else p["groups"]
        module = f"nn.GroupNorm({groups}, {width}, eps={eps:g})"
    else:
        raise ValueError(
            f"normalization {name!r} has no torch.nn module computing the same; save_torch_state "
            "maps None, 'batchnorm', 'layernorm' and 'groupnorm'"
        )
    entries = [
        _Entry(f"{j}.weight", (width,), module, gamma, "param"),
        _Entry(f"{j}.bias", (width,), module, beta, "param"),
    ]
    buffers = dict(blk.norm_buffers)  # 'running_mean' -> 'running_mean1'
    if "running_mean" in buffers:
        for key in ("running_mean", "running_var"):
            entries.append(_Entry(f"{j}.{key}", (width,), module, buffers[key], "buffer"))
        entries.append(_Entry(f"{j}.{_COUNT}", (), module, buffers.get(_COUNT), "count"))
    return module, entries


def _layout(model: Network) -> tuple[list[str], list[_Entry]]:
    """The model's Sequential (module strings) and its state_dict entries, in order."""
    if not isinstance(model, Network):
        raise ValueError(
            f"expected a normlab model (FullyConnectedNet, ConvNet, TwoLayerNet, "
            f"ThreeLayerConvNet), got {type(model).__name__}"
        )
    modules: list[str] = []
    entries: list[_Entry] = []
    after_conv = False
    for blk in model.blocks:
        W = model.params[blk.W]
        if blk.conv_param is None:
            if after_conv:
                modules.append("nn.Flatten()")
                after_conv = False
            j, (D, M) = len(modules), W.shape
            width = M
            module = f"nn.Linear({D}, {M})"
            entries.append(_Entry(f"{j}.weight", (M, D), module, blk.W, "linear"))
        else:
            if blk.ws is not None:
                raise ValueError(
                    "a ConvNet with weight_standardization=True has no plain nn.Conv2d "
                    "equivalent (PyTorch would need a weight-standardized conv); build it with "
                    "weight_standardization=False"
                )
            if blk.conv_param.get("stride", 1) != 1:
                raise ValueError(f"expected stride-1 convolutions, got {blk.conv_param}")
            j, (F, C, k, _) = len(modules), W.shape
            width = F
            module = f"nn.Conv2d({C}, {F}, {k}, padding={blk.conv_param['pad']})"
            entries.append(_Entry(f"{j}.weight", W.shape, module, blk.W, "param"))
            after_conv = True
        entries.append(_Entry(f"{j}.bias", (width,), module, blk.b, "param"))
        modules.append(module)
        if blk.norm is not None:
            module, more = _norm_modules(model, blk, len(modules))
            modules.append(module)
            entries += more
        if blk.act is not None:
            modules.append(_ACTIVATIONS[model.activation])
        if blk.pool is not None:
            if {k: blk.pool[k] for k in _POOL} != _POOL:
                raise ValueError(f"expected 2x2 pooling of stride 2, got {blk.pool}")
            modules.append("nn.MaxPool2d(2)")
        if blk.dropout is not None:
            modules.append(f"nn.Dropout({1 - blk.dropout['p']:g})")
    return modules, entries


def torch_modules(model: Network) -> list[str]:
    """The ``nn.Sequential`` that ``model`` corresponds to, one module per entry.

    Parameters
    ----------
    model : Network
        A FullyConnectedNet, ConvNet, TwoLayerNet or ThreeLayerConvNet.

    Returns
    -------
    modules : list of str
        E.g. ``['nn.Linear(784, 32)', 'nn.BatchNorm1d(32, eps=1e-05, momentum=0.1)',
        'nn.ReLU()', 'nn.Linear(32, 10)']``: ``nn.Sequential(*[eval(m) for m in modules])``
        (with ``from torch import nn``) loads the model's :func:`save_torch_state` file.

    Raises
    ------
    ValueError
        For a normalization or option with no ``torch.nn`` equivalent (the module docstring).
    """
    return _layout(model)[0]


def save_torch_state(model: Network, path: str | os.PathLike) -> None:
    """Write ``model`` in PyTorch's ``nn.Sequential.state_dict()`` layout to a safetensors file.

    Parameters
    ----------
    model : Network
        A FullyConnectedNet, ConvNet, TwoLayerNet or ThreeLayerConvNet with no normalization,
        or batch, layer or group norm.
    path : str or os.PathLike
        The ``.safetensors`` file to write (replaced if it exists).

    Raises
    ------
    ValueError
        For a normalization or option with no ``torch.nn`` equivalent.
    FileNotFoundError
        If ``path``'s folder does not exist (nothing is written).

    Notes
    -----
    Keys, shapes and conversions are in the module docstring's table: ``Linear.weight`` is the
    transposed ``W`` (out, in), conv weights (F, C, kh, kw) as they are, ``running_var`` as
    normlab's test mode uses it, ``num_batches_tracked`` an int64 scalar. Tensors keep the
    model's dtype.

    Examples
    --------
    >>> from normlab.models import FullyConnectedNet
    >>> model = FullyConnectedNet([32], input_dim=784, normalization="batchnorm", seed=0)
    >>> save_torch_state(model, "fc.safetensors")  # doctest: +SKIP

    and in PyTorch: ``net = nn.Sequential(nn.Linear(784, 32), nn.BatchNorm1d(32), nn.ReLU(),
    nn.Linear(32, 10)); net.load_state_dict(safetensors.torch.load_file("fc.safetensors"))``.
    """
    from safetensors.numpy import save

    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"save_torch_state: the folder {directory} does not exist; create it first"
        )
    tensors = {}
    for e in _layout(model)[1]:
        if e.kind == "count":
            n = 0 if e.name is None else int(model.buffers[e.name][0])
            tensors[e.key] = np.array(n, np.int64)
            continue
        a = model.buffers[e.name] if e.kind == "buffer" else model.params[e.name]
        tensors[e.key] = np.ascontiguousarray(a.T if e.kind == "linear" else a)
    data = save(tensors, metadata={"format": "pt", "written_by": "normlab"})
    with atomic_write(path) as f:  # the file's mode as open() gives it; never half written
        f.write(data)


def _key_order(key: str) -> tuple:
    """Sort keys as the Sequential numbers them: '2.weight' before '10.weight'."""
    head = key.split(".")[0]
    return (int(head) if head.isdigit() else float("inf"), key)


def _check(file: dict, modules: list[str], entries: list[_Entry], path) -> None:
    """Raise StateMismatchError for the first key or shape of ``entries`` that ``file`` lacks."""
    seq = "nn.Sequential(" + ", ".join(modules) + ")"
    fix = (
        f"the model corresponds to {seq}; build the normlab model with the architecture the "
        "file was saved from (hidden_dims, num_filters, normalization...)"
    )
    for e in entries:
        if e.key not in file:
            raise StateMismatchError(
                f"{os.fspath(path)}: missing key {e.key!r} (expected shape {e.shape} of "
                f"{e.module}); {fix}",
                e.key, e.shape, None,
            )  # fmt: skip
        got = tuple(file[e.key].shape)
        if got != e.shape and not (e.kind == "count" and got in ((), (1,))):
            raise StateMismatchError(
                f"{os.fspath(path)}: key {e.key!r} has shape {got}, expected {e.shape} "
                f"({e.module}); {fix}",
                e.key, e.shape, got,
            )  # fmt: skip
    known = {e.key for e in entries}
    extra = [k for k in file if k not in known]
    if extra:
        first = min(extra, key=_key_order)
        got = tuple(file[first].shape)
        raise StateMismatchError(
            f"{os.fspath(path)}: unexpected key {first!r} of shape {got} "
            f"({len(extra)} extra in all); {fix}",
            first, None, got,
        )  # fmt: skip


def load_torch_state(model: Network, path: str | os.PathLike) -> None:
    """Copy a PyTorch ``nn.Sequential`` state_dict from a safetensors file into ``model``.

    Parameters
    ----------
    model : Network
        A normlab model whose :func:`torch_modules` is the Sequential the file was saved from;
        its arrays are overwritten in place (cast to its dtype).
    path : str or os.PathLike
        A ``.safetensors`` file, e.g. ``safetensors.torch.save_file(net.state_dict(), path)``.

    Raises
    ------
    StateMismatchError
        A ValueError naming the first key that is missing, has another shape, or is not the
        model's (with the expected and the file's shapes, and the model's Sequential). Nothing
        is copied then.
    ValueError
        For a model with no ``torch.nn`` equivalent.

    Notes
    -----
    The inverse of :func:`save_torch_state` (the module docstring's table). ``running_var`` is
    copied as PyTorch's eval mode uses it, so test-mode scores agree; ``num_batches_tracked``
    is read only by a model that keeps the count (``momentum=None``).
    """
    from safetensors.numpy import load_file

    modules, entries = _layout(model)
    file = load_file(os.fspath(path))
    _check(file, modules, entries, path)
    for e in entries:
        a = file[e.key]
        if e.kind == "count":
            if e.name is not None:
                model.buffers[e.name][...] = int(a.reshape(()))
            continue
        target = model.buffers[e.name] if e.kind == "buffer" else model.params[e.name]
        np.copyto(target, a.T if e.kind == "linear" else a, casting="unsafe")
