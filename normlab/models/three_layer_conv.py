"""ThreeLayerConvNet: the CS231n assignment's conv - ReLU - pool - affine - ReLU - affine net, as a
ConvNet."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from normlab._validate import check_int
from normlab.models.conv_net import ConvNet
from normlab.models.param_dict import ParamDict


class ThreeLayerConvNet(ConvNet):
    """``conv - [norm] - ReLU - 2x2 max-pool - affine - [norm] - ReLU - affine - softmax``.

    The assignment's names and defaults on a :class:`~normlab.models.ConvNet` with one
    convolution and one hidden layer: the Solver, checkpoints and ``build_model`` work
    unchanged. The convolution has stride 1 and ``pad = (filter_size - 1) // 2``, so it keeps
    the spatial size; the pool (2x2, stride 2) halves it.

    Parameters
    ----------
    input_dim : tuple (C, H, W), default (3, 32, 32)
    num_filters : int, default 32
        F, filters of the convolution.
    filter_size : int, default 7
        Odd (the padding keeps the size only then; the assignment assumes it too).
    hidden_dim : int, default 100
        Width of the hidden affine layer.
    num_classes : int, default 10
    weight_scale : float or {'he', 'xavier'}, default 1e-3
        Standard deviation of the initial weights, ``N(0, weight_scale^2)``; biases zero.
    reg : float, default 0.0
        L2 strength: the loss adds ``0.5 * reg * sum(W**2)`` over ``W1``, ``W2``, ``W3``.
    dtype : dtype, default np.float32
        Of every parameter and activation (np.float64 for numerical gradient checks).
    normalization : str or None, default None
        A registered name (:func:`~normlab.models.available_normalizations`): its
        ``'spatial'`` variant after the convolution and its ``'feature'`` variant after the
        hidden affine layer (the assignment's "spatial batch norm" extension); None for the
        assignment's network.
    seed : int, np.random.Generator or None, default None
        Seeds the initial weights.
    **options
        Any other keyword option of :class:`~normlab.models.ConvNet` (``norm_options``,
        ``groups``, ``dropout_keep_ratio``, ``weight_standardization``...).

    Attributes
    ----------
    params : ParamDict
        ``W1`` (F, C, filter_size, filter_size), ``b1`` (F,); ``W2`` (F * H/2 * W/2,
        hidden_dim), ``b2`` (hidden_dim,); ``W3`` (hidden_dim, num_classes), ``b3``
        (num_classes,) (floored halves for odd H, W); with a normalization ``gamma1``,
        ``beta1`` (F,) and ``gamma2``, ``beta2`` (hidden_dim,). Assigning an array to an entry
        copies it into the model's array (:class:`~normlab.models.param_dict.ParamDict`).
    buffers, rng, reg
        As :class:`~normlab.models.ConvNet`.

    Methods
    -------
    loss(X, y=None)
        ``X`` of shape (N, C, H, W). Without ``y``: the scores, (N, num_classes). With ``y``
        (N,) integer labels: ``(loss, grads)``. ValueError for inputs that do not fit.

    Raises
    ------
    ValueError
        A bad size (an even ``filter_size``, an ``input_dim`` too small to pool), an unknown
        normalization.

    Notes
    -----
    Source: CS231n assignment 2, ``cs231n/classifiers/cnn.py``. Its notebook's checks --
    initial loss about log(10) = 2.303, numerical gradients in float64, overfitting a small
    set -- are in ``tests/test_assignments_api.py``.

    Examples
    --------
    >>> model = ThreeLayerConvNet(input_dim=(3, 8, 8), num_filters=4, filter_size=3,
    ...                           hidden_dim=10, seed=0)
    >>> [(k, v.shape) for k, v in model.params.items() if k.startswith("W")]
    [('W1', (4, 3, 3, 3)), ('W2', (64, 10)), ('W3', (10, 10))]
    >>> loss, grads = model.loss(np.zeros((2, 3, 8, 8)), np.array([0, 1]))
    >>> round(loss, 3)  # log(10): the initial scores are all but equal
    2.303
    """

    def __init__(
        self,
        input_dim: Sequence[int] = (3, 32, 32),
        num_filters: int = 32,
        filter_size: int = 7,
        hidden_dim: int = 100,
        num_classes: int = 10,
        weight_scale: float | str = 1e-3,
        reg: float = 0.0,
        dtype=np.float32,
        normalization: str | None = None,
        seed: int | None = None,
        **options,
    ) -> None:
        super().__init__(
            input_dim,
            num_filters=(check_int("num_filters", num_filters),),
            filter_size=filter_size,
            hidden_dims=(check_int("hidden_dim", hidden_dim),),
            num_classes=num_classes,
            normalization=normalization,
            weight_scale=weight_scale,
            reg=reg,
            dtype=dtype,
            seed=seed,
            **options,
        )
        self.params = ParamDict(self.params)

    def _finish(self, model: str, **architecture) -> None:
        """ConvNet's, recording this class's name and arguments."""
        (num_filters,) = architecture.pop("num_filters")
        (hidden_dim,) = architecture.pop("hidden_dims")
        super()._finish(
            "ThreeLayerConvNet", num_filters=num_filters, hidden_dim=hidden_dim, **architecture
        )
