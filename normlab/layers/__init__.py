"""The functional layer API: ``*_forward(...) -> (out, cache)`` and ``*_backward(dout, cache)``.

Names and signatures follow the Stanford CS231n assignments 1 and 2.
"""

from normlab.layers._checks import NonFiniteStatisticsError
from normlab.layers.basic import (
    ACTIVATIONS,
    affine_backward,
    affine_forward,
    dropout_backward,
    dropout_forward,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_forward,
    tanh_backward,
    tanh_forward,
)
from normlab.layers.batchnorm import (
    GhostCache,
    batchnorm_backward,
    batchnorm_backward_alt,
    batchnorm_forward,
    spatial_batchnorm_backward,
    spatial_batchnorm_forward,
)
from normlab.layers.batchrenorm import (
    RenormCache,
    batchrenorm_backward,
    batchrenorm_forward,
    spatial_batchrenorm_backward,
    spatial_batchrenorm_forward,
)
from normlab.layers.conv import (
    conv_backward,
    conv_forward,
    max_pool_backward,
    max_pool_forward,
)
from normlab.layers.darknet import darknet_batchnorm_backward, darknet_batchnorm_forward
from normlab.layers.evonorm import (
    EvoNormB0Cache,
    EvoNormS0Cache,
    spatial_evonorm_b0_backward,
    spatial_evonorm_b0_forward,
    spatial_evonorm_s0_backward,
    spatial_evonorm_s0_forward,
)
from normlab.layers.instancenorm import (
    spatial_instancenorm_backward,
    spatial_instancenorm_forward,
)
from normlab.layers.layernorm import (
    SpatialLayerNormCache,
    layernorm_backward,
    layernorm_forward,
    spatial_groupnorm_backward,
    spatial_groupnorm_forward,
    spatial_layernorm_backward,
    spatial_layernorm_forward,
)
from normlab.layers.losses import softmax_loss, svm_loss
from normlab.layers.naive import (
    conv_backward_naive,
    conv_forward_naive,
    max_pool_backward_naive,
    max_pool_forward_naive,
)
from normlab.layers.norm_core import NormCache
from normlab.layers.rmsnorm import RMSCache, rmsnorm_backward, rmsnorm_forward
from normlab.layers.weight_standardization import (
    weight_standardize_backward,
    weight_standardize_forward,
)

__all__ = [
    "ACTIVATIONS",
    "EvoNormB0Cache",
    "EvoNormS0Cache",
    "GhostCache",
    "NonFiniteStatisticsError",
    "NormCache",
    "RMSCache",
    "RenormCache",
    "SpatialLayerNormCache",
    "affine_backward",
    "affine_forward",
    "batchnorm_backward",
    "batchnorm_backward_alt",
    "batchnorm_forward",
    "batchrenorm_backward",
    "batchrenorm_forward",
    "conv_backward",
    "conv_backward_naive",
    "conv_forward",
    "conv_forward_naive",
    "darknet_batchnorm_backward",
    "darknet_batchnorm_forward",
    "dropout_backward",
    "dropout_forward",
    "layernorm_backward",
    "layernorm_forward",
    "max_pool_backward",
    "max_pool_backward_naive",
    "max_pool_forward",
    "max_pool_forward_naive",
    "relu_backward",
    "relu_forward",
    "rmsnorm_backward",
    "rmsnorm_forward",
    "sigmoid_backward",
    "sigmoid_forward",
    "softmax_loss",
    "spatial_batchnorm_backward",
    "spatial_batchnorm_forward",
    "spatial_batchrenorm_backward",
    "spatial_batchrenorm_forward",
    "spatial_evonorm_b0_backward",
    "spatial_evonorm_b0_forward",
    "spatial_evonorm_s0_backward",
    "spatial_evonorm_s0_forward",
    "spatial_groupnorm_backward",
    "spatial_groupnorm_forward",
    "spatial_instancenorm_backward",
    "spatial_instancenorm_forward",
    "spatial_layernorm_backward",
    "spatial_layernorm_forward",
    "svm_loss",
    "tanh_backward",
    "tanh_forward",
    "weight_standardize_backward",
    "weight_standardize_forward",
]
