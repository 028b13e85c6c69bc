"""ConvNet: conv - [spatial norm] - relu - pool blocks, then a fully-connected head; the
convolutions' filters optionally weight-standardized."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from normlab._validate import check_int
from normlab.models.base import Network, shared_options
from normlab.models.registry import get_normalization

_POOL = {"pool_height": 2, "pool_width": 2, "stride": 2}
WS_PARAM = {"eps": 1e-5}  # weight standardization of the filters (Qiao et al. 2019's eps)


def _int_tuple(name: str, value) -> list[int]:
    """A sequence of positive ints as a list (for the JSON config)."""
    if isinstance(value, numbers.Integral | str):
        raise ValueError(f"expected {name} a sequence of ints, got {value!r}")
    return [check_int(f"every {name} entry", v) for v in value]


class ConvNet(Network):
    """``{conv - [norm] - relu - 2x2 pool} x K - {affine - [norm] - relu} x H - affine - softmax``.

    Every convolution has stride 1 and ``pad = (filter_size - 1) // 2`` zeros on each side, so
    it keeps the spatial size; every pool halves it (floored: 7 -> 3).

    Parameters
    ----------
    input_dim : tuple (C, H, W), default (1, 28, 28)
    num_filters : sequence of int, default (16, 32)
        Filters of each convolution (K blocks).
    filter_size : int, default 3
        Odd, so that padding keeps the size.
    hidden_dims : sequence of int, default (100,)
        Widths of the hidden affine layers (may be empty).
    num_classes : int, default 10
    normalization : str or None, default None
        A registered name: its ``'spatial'`` variant after every convolution and its
        ``'feature'`` variant after every hidden affine layer; None for none.
    weight_scale : float or {'he', 'xavier', 'kaiming'}, default 'he'
        As in :class:`~normlab.models.FullyConnectedNet`; for a convolution ``fan_in = C *
        filter_size**2`` and ``fan_out = F * filter_size**2``. 'he' by default: with a small
        fixed scale an unnormalized ReLU conv net starts with vanishing activations.
    reg : float, default 0.0
        L2 strength on the weights (conv and affine).
    dtype : dtype, default np.float32
    seed : int, np.random.Generator or None, default None
        Seeds ``self.rng`` (weights ``W1``, ``W2``, ... in order).
    groups : int, default 4
        Groups of a group-normalized layer of width C: ``gcd(groups, C)``.
    norm_options : dict, optional
        Options of every normalization layer, overriding the registration's defaults; as in
        :class:`~normlab.models.FullyConnectedNet` (batch norm's ``momentum=None`` and
        ``track_running_stats=False`` included).
    activation : {'relu', 'sigmoid', 'tanh'}, default 'relu'
    dropout_keep_ratio : float in (0, 1], default 1
        Probability of keeping a unit after each hidden affine layer's activation (not after
        the convolutions); 1 disables dropout.
    dropout_seed : int or None, default None
        As in :class:`~normlab.models.FullyConnectedNet`: an int fixes the masks (gradient
        checks), None draws fresh masks from ``self.rng``.
    weight_standardization : bool, default False
        Standardize every convolution's filters before it is applied (Qiao et al. 2019): each
        output filter of ``W{i}`` to mean 0 and variance 1 over its ``C*k*k`` weights,
        :func:`~normlab.layers.weight_standardize_forward` with ``eps=1e-5``, and the gradient
        mapped back by :func:`~normlab.layers.weight_standardize_backward`. The parameters (and
        checkpoints) stay the raw ``W{i}``; the affine layers are not standardized. With group
        norm it is Wu & He's GN+WS, batch-size independent.

    Attributes
    ----------
    params : dict of str to ndarray
        Layers are numbered on through the network: convolutions ``W{i}`` (F_i, F_{i-1}, k, k),
        ``b{i}`` (F_i,) for i = 1..K; hidden affine layers ``W{K+j}``, ``b{K+j}`` for j = 1..H
        (the first takes the flattened ``F_K * H' * W'`` features); the output layer
        ``W{K+H+1}``, ``b{K+H+1}``. Normalization parameters (``gamma{i}``, ``beta{i}``, per
        channel or feature) for i = 1..K+H.
    buffers : dict of str to ndarray
        Running statistics (``running_mean{i}``, ``running_var{i}`` for batch norm).
    record : set of int, activations : dict of int to ndarray
        As in :class:`~normlab.models.FullyConnectedNet`; a conv layer's pre-activation has
        shape (N, F_i, H_i, W_i).

    Examples
    --------
    >>> model = ConvNet((1, 8, 8), num_filters=(4,), hidden_dims=(16,), normalization="batchnorm")
    >>> [(k, v.shape) for k, v in model.params.items() if k.startswith("W")]
    [('W1', (4, 1, 3, 3)), ('W2', (64, 16)), ('W3', (16, 10))]
    """

    def __init__(
        self,
        input_dim: Sequence[int] = (1, 28, 28),
        num_filters: Sequence[int] = (16, 32),
        filter_size: int = 3,
        hidden_dims: Sequence[int] = (100,),
        num_classes: int = 10,
        normalization: str | None = None,
        weight_scale: float | str = "he",
        reg: float = 0.0,
        dtype=np.float32,
        seed: int | None = None,
        groups: int = 4,
        norm_options: dict | None = None,
        activation: str = "relu",
        dropout_keep_ratio: float = 1.0,
        dropout_seed: int | None = None,
        weight_standardization: bool = False,
    ) -> None:
        super().__init__(**shared_options(locals()))  # normalization, reg, ... dropout_seed
        input_dim = _int_tuple("input_dim", input_dim)
        if len(input_dim) != 3:
            raise ValueError(f"expected input_dim (C, H, W), got {input_dim!r}")
        filters = _int_tuple("num_filters", num_filters)
        hidden = _int_tuple("hidden_dims", hidden_dims)
        k = check_int("filter_size", filter_size)
        if k % 2 == 0:
            raise ValueError(f"expected an odd filter_size (padding keeps the size), got {k}")
        num_classes = check_int("num_classes", num_classes)
        if not isinstance(weight_standardization, bool | np.bool_):
            raise ValueError(
                f"expected weight_standardization True or False, got {weight_standardization!r}"
            )
        ws = bool(weight_standardization)
        # with no filters the spatial variant is not needed, but the name is still validated
        spatial_norm = (
            get_normalization(normalization, "spatial") if filters or not hidden else None
        )
        feature_norm = get_normalization(normalization, "feature") if hidden else None

        self._input_shape = tuple(input_dim)
        C, H, W = input_dim
        for F in filters:
            if H < 2 or W < 2:
                raise ValueError(
                    f"input_dim {tuple(input_dim)} is too small for {len(filters)} 2x2 poolings; "
                    "use fewer num_filters or larger inputs"
                )
            conv_param = {"stride": 1, "pad": (k - 1) // 2}
            blk = self._add_block(
                (F, C, k, k), conv_param=conv_param, norm=spatial_norm, activation=True, pool=_POOL
            )
            blk.ws = dict(WS_PARAM) if ws else None
            C, H, W = F, H // 2, W // 2
        dims = [C * H * W, *hidden]
        for D, M in zip(dims[:-1], dims[1:], strict=True):
            self._add_block(
                (D, M), norm=feature_norm, activation=True, keep=self.dropout_keep_ratio
            )
        self._add_block((dims[-1], num_classes))
        self._finish(
            "ConvNet",
            input_dim=input_dim,
            num_filters=filters,
            filter_size=k,
            hidden_dims=hidden,
            num_classes=num_classes,
            weight_standardization=ws,
        )
