"""Models for the Solver: FullyConnectedNet and ConvNet, with any registered normalization, and
the CS231n assignments' TwoLayerNet and ThreeLayerConvNet built on them.

All follow the Solver's model contract (:mod:`normlab.solver`): ``params`` (trainable),
``buffers`` (running statistics, never trained), ``loss(X, y=None)``, ``rng`` and
``get_config()``; :func:`build_model` recreates a model from its config.
"""

from __future__ import annotations

import numpy as np

from normlab.models import (  # noqa: F401  (each registers its normalizations)
    noisy_bn,  # 'noisybatchnorm'
    norms,  # the built-ins
)
from normlab.models.base import Network
from normlab.models.conv_net import ConvNet
from normlab.models.fc_net import FullyConnectedNet
from normlab.models.inference import fold_batchnorm, precise_bn
from normlab.models.norms import RENORM_SCHEDULE, renorm_limits  # and registers the built-ins
from normlab.models.param_dict import ParamDict
from normlab.models.registry import (
    NormLayer,
    available_normalizations,
    get_normalization,
    register_normalization,
    unregister_normalization,
)
from normlab.models.three_layer_conv import ThreeLayerConvNet
from normlab.models.two_layer import TwoLayerNet

MODELS = {
    "FullyConnectedNet": FullyConnectedNet,
    "ConvNet": ConvNet,
    "TwoLayerNet": TwoLayerNet,
    "ThreeLayerConvNet": ThreeLayerConvNet,
}

__all__ = [
    "MODELS",
    "RENORM_SCHEDULE",
    "ConvNet",
    "FullyConnectedNet",
    "Network",
    "NormLayer",
    "ParamDict",
    "ThreeLayerConvNet",
    "TwoLayerNet",
    "available_normalizations",
    "build_model",
    "fold_batchnorm",
    "get_normalization",
    "precise_bn",
    "register_normalization",
    "renorm_limits",
    "unregister_normalization",
]


def build_model(config: dict) -> Network:
    """A fresh model from ``model.get_config()`` (same architecture and initial weights).

    Parameters
    ----------
    config : dict
        ``'model'`` names the class (a key of ``MODELS``); the other entries are its constructor
        arguments. ``'dtype'`` may be a string (``'float32'``).

    Returns
    -------
    model : Network
        A FullyConnectedNet, ConvNet, TwoLayerNet or ThreeLayerConvNet.
        With ``seed`` given, the very same initial parameters as the model the config came
        from; load trained values with :func:`normlab.checkpoint.restore_model`.

    Examples
    --------
    >>> model = FullyConnectedNet([8], input_dim=4, normalization="batchnorm", seed=0)
    >>> twin = build_model(model.get_config())
    >>> bool(np.array_equal(twin.params["W1"], model.params["W1"]))
    True
    """
    if not isinstance(config, dict) or "model" not in config:
        raise ValueError(f"expected a config dict with a 'model' key, got {config!r}")
    kwargs = dict(config)
    name = kwargs.pop("model")
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models are {sorted(MODELS)}")
    if "dtype" in kwargs:
        kwargs["dtype"] = np.dtype(kwargs["dtype"])
    try:
        return MODELS[name](**kwargs)
    except TypeError as e:  # unexpected keyword
        raise ValueError(f"bad {name} config {sorted(kwargs)}: {e}") from None
