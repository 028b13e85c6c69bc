"""The four normalization layers as ``(forward, backward, extra forward args)``, for tests."""

from normlab import layers as L


def layer_calls(layer):
    """``(forward, backward, extra)`` of ``layer``; ``extra`` holds a fresh parameter dict."""
    return {
        "batchnorm": (L.batchnorm_forward, L.batchnorm_backward_alt, ({"mode": "train"},)),
        "spatial": (
            L.spatial_batchnorm_forward,
            L.spatial_batchnorm_backward,
            ({"mode": "train"},),
        ),
        "layernorm": (L.layernorm_forward, L.layernorm_backward, ({},)),
        "groupnorm": (L.spatial_groupnorm_forward, L.spatial_groupnorm_backward, (3, {})),
    }[layer]
