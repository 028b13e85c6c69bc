"""TwoLayerNet: the CS231n assignment's affine - ReLU - affine - softmax, as a FullyConnectedNet."""

from __future__ import annotations

import numpy as np

from normlab._validate import check_int
from normlab.models.fc_net import FullyConnectedNet
from normlab.models.param_dict import ParamDict


class TwoLayerNet(FullyConnectedNet):
    """``affine - ReLU - affine - softmax``, with the assignment's names and defaults.

    A :class:`~normlab.models.FullyConnectedNet` with one hidden layer: the Solver,
    checkpoints, ``build_model`` and the other models' options work unchanged.

    Parameters
    ----------
    input_dim : int, default 3*32*32
        D, features per sample; inputs of shape (N, d1, ..., dk) are flattened.
    hidden_dim : int, default 100
        H, width of the hidden layer.
    num_classes : int, default 10
        C.
    weight_scale : float or {'he', 'xavier'}, default 1e-3
        Standard deviation of the initial weights (``W1``, ``W2`` drawn from
        ``N(0, weight_scale^2)``); biases start at zero.
    reg : float, default 0.0
        L2 strength: the loss adds ``0.5 * reg * (sum(W1**2) + sum(W2**2))``, the assignment's
        convention (as every normlab model). ``model.reg`` may be changed between calls, as
        the assignment's notebook does.
    dtype : dtype, default np.float64
        float64, as the assignment's arrays (its checks compare losses to 1e-10 and use
        numerical gradients): the other models default to float32.
    seed : int, np.random.Generator or None, default None
        Seeds the initial weights (and dropout, if any).
    **options
        Any other keyword option of :class:`~normlab.models.FullyConnectedNet`
        (``normalization``, ``activation``, ``dropout_keep_ratio``, ``norm_options``...);
        none by default, which is the assignment's network.

    Attributes
    ----------
    params : ParamDict
        ``W1`` (D, H), ``b1`` (H,), ``W2`` (H, C), ``b2`` (C,) (plus a normalization's
        ``gamma1``, ``beta1`` when one is asked for). Assigning an array to an entry, as the
        notebook's fixed-weight check does (``model.params['W1'] = np.linspace(...)``),
        copies it into the model's array (:class:`~normlab.models.param_dict.ParamDict`).
    buffers, rng, reg
        As :class:`~normlab.models.FullyConnectedNet`.

    Methods
    -------
    loss(X, y=None)
        ``X`` (N, D) or (N, d1, ..., dk). Without ``y``: the scores, (N, C). With ``y`` (N,)
        integer labels: ``(loss, grads)``, the mean softmax cross-entropy plus the L2 term and
        a dict of gradients shaped like ``params``. ValueError for inputs that do not fit.

    Notes
    -----
    Source: CS231n assignment 1 (``cs231n/classifiers/fc_net.py``, ``TwoLayerNet``; in older
    years assignment 2). Its notebook's checks -- the initial weight scale, the fixed-weight
    scores and losses (3.4702243556 without and 26.5948426952 with ``reg=1``) and numerical
    gradients -- are in ``tests/test_assignments_api.py``.

    Examples
    --------
    >>> model = TwoLayerNet(input_dim=5, hidden_dim=50, num_classes=7, seed=0)
    >>> [(k, v.shape) for k, v in model.params.items()]
    [('W1', (5, 50)), ('b1', (50,)), ('W2', (50, 7)), ('b2', (7,))]
    >>> model.params["b2"] = np.linspace(-0.9, 0.1, num=7)  # copied into the model's array
    >>> model.loss(np.zeros((3, 5))).shape
    (3, 7)
    """

    def __init__(
        self,
        input_dim: int = 3 * 32 * 32,
        hidden_dim: int = 100,
        num_classes: int = 10,
        weight_scale: float | str = 1e-3,
        reg: float = 0.0,
        dtype=np.float64,
        seed: int | None = None,
        **options,
    ) -> None:
        hidden_dim = check_int("hidden_dim", hidden_dim)
        super().__init__(
            [hidden_dim],
            input_dim=input_dim,
            num_classes=num_classes,
            weight_scale=weight_scale,
            reg=reg,
            dtype=dtype,
            seed=seed,
            **options,
        )
        self.params = ParamDict(self.params)

    def _finish(self, model: str, **architecture) -> None:
        """FullyConnectedNet's, recording this class's name and arguments."""
        (hidden_dim,) = architecture.pop("hidden_dims")
        super()._finish("TwoLayerNet", hidden_dim=hidden_dim, **architecture)
