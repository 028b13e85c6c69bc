"""FullyConnectedNet: the CS231n assignment-2 multi-layer net, with any registered normalization."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from normlab._validate import check_int
from normlab.models.base import Network, shared_options
from normlab.models.registry import get_normalization


class FullyConnectedNet(Network):
    """``{affine - [norm] - activation - [dropout]} x (L - 1) - affine - softmax``.

    Parameters
    ----------
    hidden_dims : sequence of int
        Width of each hidden layer (L - 1 of them; may be empty).
    input_dim : int, default 3*32*32
        Features per sample; inputs of shape (N, d1, ..., dk) are flattened.
    num_classes : int, default 10
    dropout_keep_ratio : float in (0, 1], default 1
        Probability of keeping a unit after each hidden activation; 1 disables dropout.
    normalization : str or None, default None
        A name in :func:`~normlab.models.registry.available_normalizations` ('batchnorm',
        'layernorm', 'groupnorm' or a user's), its ``'feature'`` variant after every hidden
        affine layer; None for none.
    reg : float, default 0.0
        L2 strength: the loss adds ``0.5 * reg * sum(W**2)`` over the weights.
    weight_scale : float or {'he', 'xavier', 'kaiming'}, default 1e-2
        Weights are drawn from ``N(0, std^2)`` with ``std = weight_scale`` or the named rule
        (``'he'``: ``sqrt(2 / fan_in)``; ``'xavier'``: ``sqrt(2 / (fan_in + fan_out))``;
        ``'kaiming'``: ``gain / sqrt(fan_in)``, the gain of the layer's activation, 5/3 for
        tanh, sqrt(2) for ReLU, 1 for sigmoid and the last layer, as PyTorch's
        ``kaiming_normal_(w, nonlinearity=activation)``; see ``models.base.init_std``).
        Biases and ``beta`` start at zero, ``gamma`` at one.
    dtype : dtype, default np.float32
        Of every parameter, buffer, activation and gradient (float64 for gradient checks).
    seed : int, np.random.Generator or None, default None
        Seeds ``self.rng``, which draws the weights (``W1``, ``W2``, ... in order) and then,
        unless ``dropout_seed`` is given, fresh dropout masks at every training pass: training
        is reproducible, and a checkpoint saves ``self.rng`` so a resumed run is exact.
    dropout_seed : int or None, default None
        An int fixes the dropout masks: every training pass draws them from
        ``np.random.default_rng(dropout_seed)`` (the same seed in every layer), so the loss is
        a deterministic function of the parameters, as a numerical gradient check needs.
        None draws fresh masks from ``self.rng``. In the CS231n assignment ``seed`` did both
        jobs (``FullyConnectedNet(..., seed=123)`` put it into the dropout parameters, fixing
        the masks); here ``seed`` seeds the weights and the mask stream and ``dropout_seed``
        fixes the masks, so the notebook's dropout gradient check is ``seed=123,
        dropout_seed=123``.
    activation : {'relu', 'sigmoid', 'tanh'}, default 'relu'
    groups : int, default 4
        Groups of a group-normalized layer of width C: ``gcd(groups, C)``.
    norm_options : dict, optional
        Options of every normalization layer (e.g. ``{'momentum': 0.99, 'eps': 1e-3}`` for batch
        norm), overriding the registration's defaults. Batch norm's ``momentum`` (a number, or
        None for PyTorch's cumulative average, counted in the buffers
        ``num_batches_tracked{i}``) and ``track_running_stats`` (False: no running statistics)
        are checked here (:mod:`normlab.models.bn_options`); other options at the first
        forward pass.

    Attributes
    ----------
    params : dict of str to ndarray
        ``W{i}`` (D_{i-1}, D_i), ``b{i}`` (D_i,) for i = 1..L; with normalization, its
        parameters for i = 1..L-1, e.g. ``gamma{i}``, ``beta{i}`` (D_i,).
    buffers : dict of str to ndarray
        Running statistics, e.g. ``running_mean{i}``, ``running_var{i}`` (D_i,) for batch norm;
        empty otherwise.
    rng : np.random.Generator
    record : set of int, activations : dict of int to ndarray
        Set ``model.record = {i}`` to keep the pre-activation of hidden layer ``i`` (after the
        normalization, before the nonlinearity), shape (N, D_i), in ``model.activations[i]``
        after every forward pass.

    Examples
    --------
    >>> model = FullyConnectedNet([32, 32], input_dim=784, normalization="batchnorm", seed=0)
    >>> sorted(model.params)[:4], sorted(model.buffers)[:2]
    (['W1', 'W2', 'W3', 'b1'], ['running_mean1', 'running_mean2'])
    >>> X, y = np.zeros((4, 784), np.float32), np.array([0, 1, 2, 3])
    >>> loss, grads = model.loss(X, y)
    >>> model.loss(X).shape, grads["gamma1"].dtype
    ((4, 10), dtype('float32'))

    The assignment's dropout gradient check (fixed masks, float64):

    >>> net = FullyConnectedNet([20, 30], input_dim=15, dropout_keep_ratio=0.75,
    ...                         dtype=np.float64, seed=123, dropout_seed=123)
    >>> X = np.random.default_rng(0).standard_normal((2, 15))
    >>> bool(net.loss(X, y[:2])[0] == net.loss(X, y[:2])[0])  # the same masks at every call
    True
    """

    def __init__(
        self,
        hidden_dims: Sequence[int],
        input_dim: int = 3 * 32 * 32,
        num_classes: int = 10,
        dropout_keep_ratio: float = 1,
        normalization: str | None = None,
        reg: float = 0.0,
        weight_scale: float | str = 1e-2,
        dtype=np.float32,
        seed: int | None = None,
        activation: str = "relu",
        groups: int = 4,
        norm_options: dict | None = None,
        dropout_seed: int | None = None,
    ) -> None:
        super().__init__(**shared_options(locals()))  # normalization, reg, ... dropout_seed
        if isinstance(hidden_dims, numbers.Integral | str):
            raise ValueError(f"expected hidden_dims a sequence of ints, got {hidden_dims!r}")
        hidden = [check_int("every hidden_dims entry", h) for h in hidden_dims]
        input_dim = check_int("input_dim", input_dim)
        num_classes = check_int("num_classes", num_classes)
        norm = get_normalization(normalization, "feature")

        self._input_shape = (input_dim,)
        dims = [input_dim, *hidden, num_classes]
        L = len(dims) - 1
        for i in range(L):
            hidden_layer = i < L - 1
            self._add_block(
                (dims[i], dims[i + 1]),
                norm=norm if hidden_layer else None,
                activation=hidden_layer,
                keep=self.dropout_keep_ratio if hidden_layer else 1.0,
            )
        self.num_layers = L
        self._finish(
            "FullyConnectedNet", hidden_dims=hidden, input_dim=input_dim, num_classes=num_classes
        )
