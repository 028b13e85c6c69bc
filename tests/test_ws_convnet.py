"""ConvNet(weight_standardization=True): gradients, the WS convolution, config, checkpoint."""

import json

import numpy as np
import pytest

from normlab.checkpoint import load_checkpoint, restore_model, save_checkpoint
from normlab.gradient_check import eval_numerical_gradient, rel_error
from normlab.layers import conv_forward, weight_standardize_forward
from normlab.models import ConvNet, build_model

NOISE_FLOOR = 1e-9  # as tests/test_models.py: centred-difference rounding of an O(1) loss


def _net(normalization=None, ws=True, **kw):
    return ConvNet(
        (2, 8, 8),
        num_filters=(3, 4),
        hidden_dims=(6,),
        num_classes=3,
        normalization=normalization,
        weight_standardization=ws,
        **{"dtype": np.float64, "seed": 1, **kw},
    )


def _xy(rng, n=4):
    return rng.standard_normal((n, 2, 8, 8)), rng.integers(3, size=n)


@pytest.mark.parametrize("normalization", [None, "batchnorm", "groupnorm"])
def test_gradients_of_the_whole_model(rng, normalization):
    model = _net(normalization, reg=0.05)
    for k in ("W1", "W2"):  # filters far from standardized: mean and scale matter
        model.params[k][...] = 0.4 + 2.0 * model.params[k]
    X, y = _xy(rng)
    _, grads = model.loss(X, y)
    assert set(grads) == set(model.params)
    for name, p in model.params.items():
        num = eval_numerical_gradient(lambda _: model.loss(X, y)[0], p, verbose=False, h=1e-5)
        off = np.abs(num - grads[name]) > NOISE_FLOOR
        if off.any():
            err = rel_error(num[off], grads[name][off])
            assert err < 1e-6, f"{name}: rel_error {err:.2e}"


def test_conv_gradient_of_each_filter_is_orthogonal_to_shift_and_scale(rng):
    model = _net("groupnorm")  # no reg: the loss is invariant to a filter's shift and scale
    X, y = _xy(rng)
    _, grads = model.loss(X, y)
    for k in ("W1", "W2"):
        g = grads[k].reshape(len(grads[k]), -1)  # (F, K)
        w = model.params[k].reshape(len(g), -1)  # (F, K)
        w = w - w.mean(axis=1, keepdims=True)
        np.testing.assert_allclose(g.sum(axis=1), 0, atol=1e-12)  # shift: exactly
        # scale: up to eps / var (the eps inside the root makes the scale matter a little)
        cos = (g * w).sum(axis=1) / np.linalg.norm(g, axis=1) / np.linalg.norm(w, axis=1)
        assert np.all(np.abs(cos) < 1e-3), cos


def test_output_is_the_convolution_with_standardized_filters(rng):
    ws, plain = _net("groupnorm"), _net("groupnorm", ws=False)
    X, y = _xy(rng)
    for k in ("W1", "W2"):  # the same net with W_hat stored as its weights
        np.copyto(plain.params[k], weight_standardize_forward(ws.params[k], {"eps": 1e-5})[0])
    first = ws.blocks[0]
    h, _ = ws._forward(X, "train", stop=first)  # block 1's convolution output
    w_hat, _ = weight_standardize_forward(ws.params["W1"], {"eps": 1e-5})
    ref, _ = conv_forward(X, w_hat, ws.params["b1"], first.conv_param)
    np.testing.assert_array_equal(h, ref)
    np.testing.assert_allclose(ws.loss(X), plain.loss(X), rtol=1e-12)  # test mode
    la, ga = ws.loss(X, y)
    lb, gb = plain.loss(X, y)
    assert la == pytest.approx(lb, rel=1e-12)
    for k in ga:  # every gradient but the standardized filters' is the plain net's
        if k not in ("W1", "W2"):
            np.testing.assert_allclose(ga[k], gb[k], rtol=1e-10, atol=1e-14)


def test_off_by_default_and_affine_layers_untouched():
    assert not ConvNet((1, 8, 8), num_filters=(4,)).get_config()["weight_standardization"]
    model = _net()
    assert [blk.ws is not None for blk in model.blocks] == [True, True, False, False]


def test_float32(rng):
    model = _net("batchnorm", dtype=np.float32)
    X, y = _xy(rng)
    loss, grads = model.loss(X, y)
    assert np.isfinite(loss) and all(g.dtype == np.float32 for g in grads.values())


def test_config_round_trip_and_checkpoint_hold_raw_weights(tmp_path, rng):
    model = _net("groupnorm", dtype=np.float32)
    config = json.loads(json.dumps(model.get_config()))
    assert config["weight_standardization"] is True
    twin = build_model(config)
    X, y = _xy(rng)
    assert twin.loss(X, y)[0] == model.loss(X, y)[0]
    model.params["W1"] *= 3.0  # a raw weight the standardization hides from the output
    save_checkpoint(tmp_path / "ws.npz", model)
    ckpt = load_checkpoint(tmp_path / "ws.npz")
    restored = build_model(ckpt.model_config)
    restore_model(ckpt, restored)
    np.testing.assert_array_equal(restored.params["W1"], model.params["W1"])
    assert restored.get_config()["weight_standardization"] is True
    np.testing.assert_array_equal(restored.loss(X), model.loss(X))


def test_experiment_model_builder_passes_it_on():
    from normlab.experiments.training import build_model as build_for_run

    data = {"X_train": np.zeros((2, 1, 8, 8)), "y_train": np.array([0, 1]), "class_names": "ab"}
    model, _ = build_for_run(data, 0, "groupnorm", "conv", num_filters=(4,),
                             weight_standardization=True)  # fmt: skip
    assert model.blocks[0].ws == {"eps": 1e-5}


def test_bad_value_is_refused():
    with pytest.raises(ValueError, match="weight_standardization True or False"):
        ConvNet((1, 8, 8), num_filters=(4,), weight_standardization="yes")


def test_folding_a_weight_standardized_net_keeps_its_outputs():
    from normlab.models import fold_batchnorm

    rng = np.random.default_rng(3)
    model = ConvNet((2, 6, 6), num_filters=(4,), hidden_dims=(5,), normalization="batchnorm",
                    weight_standardization=True, dtype=np.float64, seed=1)  # fmt: skip
    X = rng.normal(size=(8, 2, 6, 6))
    for _ in range(3):  # running statistics away from their initial values
        model.loss(X, rng.integers(10, size=8))
    folded = fold_batchnorm(model)
    np.testing.assert_allclose(folded.loss(X), model.loss(X), rtol=1e-10, atol=1e-12)
