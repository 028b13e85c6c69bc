"""fold_batchnorm and precise_bn: same scores as the unfolded model, exact population statistics."""

import numpy as np
import pytest

from normlab.layers.conv import conv_forward, max_pool_forward
from normlab.models import ConvNet, FullyConnectedNet, fold_batchnorm, precise_bn
from normlab.solver import Solver


def _trained(model, X, epochs=2):
    """A few Adam steps, so that weights, gamma/beta and running statistics are non-trivial."""
    y = np.random.default_rng(1).integers(model.params[f"b{len(model.blocks)}"].size, size=len(X))
    data = {"X_train": X, "y_train": y, "X_val": X[:10], "y_val": y[:10]}
    Solver(
        model,
        data,
        update_rule="adam",
        optim_config={"learning_rate": 1e-2},
        batch_size=10,
        num_epochs=epochs,
        verbose=False,
    ).train()
    return model


def _fc(**kw):
    return FullyConnectedNet(
        [16, 12],
        input_dim=8,
        num_classes=5,
        normalization="batchnorm",
        weight_scale="he",
        seed=0,
        **kw,
    )


def _conv(**kw):
    return ConvNet(
        (2, 8, 8),
        num_filters=(4, 6),
        hidden_dims=(10,),
        num_classes=5,
        normalization="batchnorm",
        seed=0,
        **kw,
    )


# -- folding ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("make, shape", [(_fc, (8,)), (_conv, (2, 8, 8))], ids=["fc", "conv"])
def test_fold_matches_test_mode_scores(make, shape):
    rng = np.random.default_rng(0)
    X = (3 + 2 * rng.standard_normal((60, *shape))).astype(np.float32)  # off-centre inputs
    model = _trained(make(), X)
    before = {k: v.copy() for k, v in model.params.items()}
    folded = fold_batchnorm(model)
    assert set(folded.params) == {k for k in model.params if not k.startswith(("gamma", "beta"))}
    assert folded.buffers == {} and folded.get_config()["normalization"] is None
    assert all(v.dtype == np.float32 for v in folded.params.values())
    scores = model.loss(X)  # (60, 5)
    assert np.abs(scores).max() > 1  # a non-trivial comparison
    np.testing.assert_allclose(folded.loss(X), scores, rtol=1e-5, atol=1e-5)
    for k, v in model.params.items():  # the original is untouched
        np.testing.assert_array_equal(v, before[k])


def test_fold_formula_on_one_layer():
    model = FullyConnectedNet(
        [3],
        input_dim=2,
        num_classes=2,
        normalization="batchnorm",
        dtype=np.float64,
        seed=0,
        norm_options={"eps": 0.5},
    )
    P, B = model.params, model.buffers
    P["b1"][:] = [1.0, 2.0, 3.0]
    P["gamma1"][:] = [2.0, -1.0, 0.5]
    P["beta1"][:] = [0.0, 1.0, -1.0]
    B["running_mean1"][:] = [1.0, 0.0, -1.0]
    B["running_var1"][:] = [3.5, 0.5, 1.5]  # + eps: 4, 1, 2
    s = np.array([2.0 / 2, -1.0 / 1, 0.5 / np.sqrt(2)])
    folded = fold_batchnorm(model)
    np.testing.assert_allclose(folded.params["W1"], P["W1"] * s)
    np.testing.assert_allclose(folded.params["b1"], (P["b1"] - B["running_mean1"]) * s + P["beta1"])
    np.testing.assert_array_equal(folded.params["W2"], P["W2"])


def test_fold_other_normalizations():
    plain = FullyConnectedNet([4], input_dim=3, seed=0)
    copy = fold_batchnorm(plain)
    assert copy is not plain and copy.params["W1"] is not plain.params["W1"]
    np.testing.assert_array_equal(copy.params["W1"], plain.params["W1"])
    with pytest.raises(ValueError, match="cannot fold normalization 'layernorm'"):
        fold_batchnorm(FullyConnectedNet([4], input_dim=3, normalization="layernorm"))


# -- precise batch-norm statistics ---------------------------------------------------------------


def test_precise_bn_fc_equals_full_data_statistics():
    rng = np.random.default_rng(2)
    X = (1 + 2 * rng.standard_normal((103, 8))).astype(np.float32)
    model = _trained(_fc(dropout_keep_ratio=0.7), X[:50], epochs=1)
    P = model.params
    precise_bn(model, X, batch_size=16)  # ragged last batch
    B = {k: v.copy() for k, v in model.buffers.items()}
    # directly, on the whole set in float64, layer by layer in test mode
    X64 = X.astype(np.float64)
    h = X64 @ P["W1"] + P["b1"]  # (103, 16)
    np.testing.assert_allclose(B["running_mean1"], h.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(B["running_var1"], h.var(0), rtol=1e-5)
    a = (h - h.mean(0)) / np.sqrt(h.var(0) + 1e-5) * P["gamma1"] + P["beta1"]
    h = np.maximum(a, 0) @ P["W2"] + P["b2"]  # (103, 12)
    np.testing.assert_allclose(B["running_mean2"], h.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(B["running_var2"], h.var(0), rtol=1e-5)
    # independent of the batch size
    precise_bn(model, X, batch_size=1000)
    for k, v in model.buffers.items():
        np.testing.assert_allclose(v, B[k], rtol=1e-6)


def test_precise_bn_conv_equals_full_data_statistics():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((37, 2, 8, 8)).astype(np.float32)
    model = _trained(_conv(norm_options={"running_var_unbiased": True}), X, epochs=1)
    P = model.params
    precise_bn(model, X, batch_size=10)
    X64 = X.astype(np.float64)
    h, _ = conv_forward(X64, P["W1"], P["b1"], {"stride": 1, "pad": 1})  # (37, 4, 8, 8)
    mean, var = h.mean((0, 2, 3)), h.var((0, 2, 3), ddof=1)  # unbiased, as configured
    np.testing.assert_allclose(model.buffers["running_mean1"], mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.buffers["running_var1"], var, rtol=1e-5)
    c = (slice(None), None, None)  # per channel
    a = (h - mean[c]) / np.sqrt(var[c] + 1e-5) * P["gamma1"][c] + P["beta1"][c]
    a, _ = max_pool_forward(np.maximum(a, 0), {"pool_height": 2, "pool_width": 2, "stride": 2})
    h, _ = conv_forward(a, P["W2"], P["b2"], {"stride": 1, "pad": 1})  # (37, 6, 4, 4)
    np.testing.assert_allclose(model.buffers["running_mean2"], h.mean((0, 2, 3)), atol=1e-5)
    np.testing.assert_allclose(model.buffers["running_var2"], h.var((0, 2, 3), ddof=1), rtol=1e-4)
    assert not np.allclose(model.buffers["running_mean3"], 0)  # the affine layer too


def test_precise_bn_leaves_params_and_other_norms_alone():
    X = np.random.default_rng(4).standard_normal((20, 8)).astype(np.float32)
    model = _fc()
    before = {k: v.copy() for k, v in model.params.items()}
    model.record = {1}
    assert precise_bn(model, X) is model
    assert model.record == {1} and model.activations == {}
    for k, v in model.params.items():
        np.testing.assert_array_equal(v, before[k])
    ln = FullyConnectedNet([4], input_dim=8, normalization="layernorm", seed=0)
    precise_bn(ln, X)  # nothing to recompute
    with pytest.raises(ValueError, match="batch_size"):
        precise_bn(model, X, batch_size=0)
