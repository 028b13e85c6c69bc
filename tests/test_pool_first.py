"""A ReLU-then-pool block computed as pool-then-ReLU gives the same loss and gradients."""

from __future__ import annotations

import numpy as np
import pytest

from normlab.models import ConvNet


def _loss_and_grads(model, X, y, pool_first: bool):
    for blk in model.blocks:
        if blk.pool is not None:
            blk.pool_first = pool_first
    return model.loss(X, y)


@pytest.mark.parametrize("normalization", [None, "batchnorm"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_pool_first_equals_relu_then_pool(normalization, dtype):
    rng = np.random.default_rng(0)
    model = ConvNet(
        (2, 8, 8), num_filters=(3, 4), hidden_dims=(5,), normalization=normalization,
        dtype=dtype, seed=0,
    )  # fmt: skip
    assert all(blk.pool_first for blk in model.blocks if blk.pool is not None)
    X = rng.standard_normal((6, 2, 8, 8))
    X[0] = 0.0  # windows of equal values (ties) and of ReLU zeros
    X[1, :, :4] = -1.0
    y = rng.integers(0, 10, 6)
    buffers = {k: v.copy() for k, v in model.buffers.items()}
    loss, grads = _loss_and_grads(model, X, y, pool_first=True)
    for k, v in buffers.items():  # the same running statistics for the second pass
        model.buffers[k][...] = v
    loss_ref, grads_ref = _loss_and_grads(model, X, y, pool_first=False)
    assert loss == loss_ref
    assert grads.keys() == grads_ref.keys()
    for k in grads:
        np.testing.assert_array_equal(grads[k], grads_ref[k], err_msg=k)
    scores = model.loss(X)  # test mode (pool_first False now) takes the same path
    for blk in model.blocks:
        blk.pool_first = blk.pool is not None
    np.testing.assert_array_equal(model.loss(X), scores)


def test_tanh_blocks_keep_their_order():
    model = ConvNet((1, 8, 8), num_filters=(2,), hidden_dims=(), activation="tanh", seed=0)
    assert not any(blk.pool_first for blk in model.blocks)
