"""The CS231n assignments' model API: TwoLayerNet and ThreeLayerConvNet pass the notebooks' checks.

The TwoLayerNet values (``correct_scores``, ``correct_loss`` 3.4702243556 and 26.5948426952) are
the assignment notebook's own fixed-weight check (FullyConnectedNets.ipynb / two_layer_net.ipynb),
with its tolerances; the ThreeLayerConvNet checks are ConvolutionalNetworks.ipynb's (initial loss
near log 10, numerical gradients in float64, overfitting a small set), kept small.
"""

import math

import numpy as np
import pytest

from normlab.gradient_check import eval_numerical_gradient, rel_error
from normlab.models import (
    ConvNet,
    FullyConnectedNet,
    ParamDict,
    ThreeLayerConvNet,
    TwoLayerNet,
    build_model,
)
from normlab.optimizer import Optimizer
from normlab.solver import Solver

N, D, H, C = 3, 5, 50, 7
CORRECT_SCORES = np.asarray(
    [
        [11.53165108, 12.2917344, 13.05181771, 13.81190102, 14.57198434, 15.33206765, 16.09215096],
        [12.05769098, 12.74614105, 13.43459113, 14.1230412, 14.81149128, 15.49994135, 16.18839143],
        [12.58373087, 13.20054771, 13.81736455, 14.43418138, 15.05099822, 15.66781506, 16.2846319],
    ]
)


def _fixed_two_layer_net():
    """The notebook's model, with its fixed weights assigned as the notebook assigns them."""
    model = TwoLayerNet(input_dim=D, hidden_dim=H, num_classes=C, weight_scale=1e-3, seed=231)
    model.params["W1"] = np.linspace(-0.7, 0.3, num=D * H).reshape(D, H)
    model.params["b1"] = np.linspace(-0.1, 0.9, num=H)
    model.params["W2"] = np.linspace(-0.3, 0.4, num=H * C).reshape(H, C)
    model.params["b2"] = np.linspace(-0.9, 0.1, num=C)
    X = np.linspace(-5.5, 4.5, num=N * D).reshape(D, N).T
    return model, X, np.asarray([0, 5, 1])


# -- TwoLayerNet ---------------------------------------------------------------------------------


def test_two_layer_net_initialization():
    std = 1e-3
    model = TwoLayerNet(input_dim=D, hidden_dim=H, num_classes=C, weight_scale=std, seed=231)
    assert abs(model.params["W1"].std() - std) < std / 10
    assert abs(model.params["W2"].std() - std) < std / 10
    assert np.all(model.params["b1"] == 0) and np.all(model.params["b2"] == 0)
    assert [(k, v.shape) for k, v in model.params.items()] == [
        ("W1", (D, H)), ("b1", (H,)), ("W2", (H, C)), ("b2", (C,)),
    ]  # fmt: skip
    assert model.dtype == np.float64 and model.buffers == {}


def test_two_layer_net_notebook_fixed_weight_checks():
    model, X, y = _fixed_two_layer_net()
    scores = model.loss(X)
    assert np.abs(scores - CORRECT_SCORES).sum() < 1e-6
    loss, _ = model.loss(X, y)
    assert abs(loss - 3.4702243556) < 1e-10
    model.reg = 1.0  # as the notebook: the attribute is read at every call
    loss, _ = model.loss(X, y)
    assert abs(loss - 26.5948426952) < 1e-10


@pytest.mark.parametrize("reg", [0.0, 0.7])
def test_two_layer_net_numerical_gradients(reg):
    model, X, y = _fixed_two_layer_net()
    model.reg = reg
    _, grads = model.loss(X, y)
    assert sorted(grads) == ["W1", "W2", "b1", "b2"]
    for name in sorted(grads):
        num = eval_numerical_gradient(lambda _: model.loss(X, y)[0], model.params[name], False)
        assert rel_error(num, grads[name]) < 1e-6, name  # the notebook: "around e-7 or less"


def test_assigned_params_stay_in_the_one_buffer():
    """The notebook's ``model.params['W1'] = ...`` copies into the model's arrays: one buffer,
    the model's dtype, an optimizer that still steps them in one run."""
    model = TwoLayerNet(input_dim=D, hidden_dim=H, num_classes=C, dtype=np.float32, seed=0)
    arrays = dict(model.params)
    optimizer = Optimizer(model.params, "sgd", {"learning_rate": 0.1})
    W1 = np.linspace(-0.7, 0.3, num=D * H).reshape(D, H)  # float64
    model.params["W1"] = W1
    assert isinstance(model.params, ParamDict)
    assert all(model.params[k] is arrays[k] for k in arrays)
    assert model.params["W1"].dtype == np.float32
    np.testing.assert_allclose(model.params["W1"], W1, rtol=1e-7)
    base = model.params["W1"].base
    assert base is not None and all(v.base is base for v in model.params.values())
    before = model.params["W1"].copy()
    _, grads = model.loss(np.ones((2, D), np.float32), np.array([0, 1]))
    optimizer.step(model.params, grads)
    np.testing.assert_allclose(model.params["W1"], before - 0.1 * grads["W1"], rtol=1e-6)
    model.params.update(b1=np.ones(H))
    assert model.params["b1"] is arrays["b1"] and model.params["b1"][0] == 1
    with pytest.raises(ValueError, match=r"params\['W1'\] of shape \(5, 50\)"):
        model.params["W1"] = np.zeros((D, H + 1))


def test_two_layer_net_is_a_fully_connected_net_with_one_hidden_layer():
    two = TwoLayerNet(input_dim=D, hidden_dim=H, num_classes=C, weight_scale=1e-2, reg=0.3, seed=4)
    fc = FullyConnectedNet([H], input_dim=D, num_classes=C, weight_scale=1e-2, reg=0.3,
                           dtype=np.float64, seed=4)  # fmt: skip
    X, y = np.random.default_rng(0).normal(size=(6, D)), np.arange(6) % C
    for k in fc.params:
        np.testing.assert_array_equal(two.params[k], fc.params[k])
    assert two.loss(X, y)[0] == fc.loss(X, y)[0]
    config = two.get_config()
    assert config["model"] == "TwoLayerNet" and config["hidden_dim"] == H
    twin = build_model(config)
    assert type(twin) is TwoLayerNet and twin.get_config() == config
    np.testing.assert_array_equal(twin.params["W2"], two.params["W2"])


def test_two_layer_net_trains_with_the_solver_and_resumes(tmp_path):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 6)), rng.integers(3, size=40)
    data = {"X_train": X, "y_train": y, "X_val": X[:10], "y_val": y[:10]}
    kw = {"update_rule": "adam", "optim_config": {"learning_rate": 1e-2}, "batch_size": 10}

    def model(seed=0):
        return TwoLayerNet(input_dim=6, hidden_dim=16, num_classes=3, weight_scale=0.1, seed=seed)

    whole = Solver(model(), data, num_epochs=3, verbose=False, **kw)
    whole.train()
    first = Solver(model(), data, num_epochs=2, verbose=False, **kw)
    first.train()
    path = first.save_checkpoint(tmp_path / "two.npz")
    resumed = Solver.from_checkpoint(model(seed=1), data, path, num_epochs=3, verbose=False)
    resumed.train()
    for k in whole.model.params:  # the resumed run continued exactly
        np.testing.assert_array_equal(resumed.model.params[k], whole.model.params[k])
    assert whole.loss_history[-1] < whole.loss_history[0]


# -- ThreeLayerConvNet ---------------------------------------------------------------------------


def test_three_layer_conv_net_shapes_and_config():
    model = ThreeLayerConvNet(seed=0)
    shapes = {k: v.shape for k, v in model.params.items()}
    assert shapes == {
        "W1": (32, 3, 7, 7), "b1": (32,), "W2": (32 * 16 * 16, 100), "b2": (100,),
        "W3": (100, 10), "b3": (10,),
    }  # fmt: skip
    assert model.dtype == np.float32 and isinstance(model.params, ParamDict)
    assert model.blocks[0].conv_param == {"stride": 1, "pad": 3}
    config = model.get_config()
    assert (config["model"], config["num_filters"], config["hidden_dim"]) == (
        "ThreeLayerConvNet", 32, 100,
    )  # fmt: skip
    assert type(build_model(config)) is ThreeLayerConvNet
    bn = ThreeLayerConvNet((3, 8, 8), num_filters=4, filter_size=3, normalization="batchnorm")
    assert {"gamma1", "beta1", "gamma2", "beta2"} <= set(bn.params)
    assert bn.params["gamma1"].shape == (4,) and bn.params["gamma2"].shape == (100,)


def test_three_layer_conv_net_is_a_conv_net():
    kw = {"filter_size": 3, "weight_scale": 1e-2, "seed": 5, "dtype": np.float64}
    three = ThreeLayerConvNet((2, 6, 6), num_filters=3, hidden_dim=7, **kw)
    conv = ConvNet((2, 6, 6), num_filters=(3,), hidden_dims=(7,), **kw)
    X, y = np.random.default_rng(0).normal(size=(4, 2, 6, 6)), np.array([0, 1, 2, 3])
    assert three.loss(X, y)[0] == conv.loss(X, y)[0]


def test_three_layer_conv_net_initial_loss_is_log_10():
    rng = np.random.default_rng(231)
    X, y = rng.normal(size=(10, 3, 32, 32)), rng.integers(10, size=10)  # the notebook: 50
    model = ThreeLayerConvNet(seed=0)  # the notebook's default model
    loss, _ = model.loss(X, y)
    assert abs(loss - math.log(10)) < 1e-3
    model.reg = 0.5
    loss_reg, _ = model.loss(X, y)
    l2 = sum(float(np.sum(model.params[k].astype(np.float64) ** 2)) for k in ("W1", "W2", "W3"))
    assert loss_reg - loss == pytest.approx(0.5 * 0.5 * l2, rel=1e-5)  # ~0.2 here


NOISE_FLOOR = 1e-9  # centred differences of an order-1 float64 loss carry ~1e-11 of noise


def _grad_errors(model, X, y, h=1e-6, samples=None):
    """rel_error of each analytic gradient against centred differences, over the entries where
    the two differ by more than the noise floor (a bias before batch norm has gradient 0).
    ``samples``: check that many random entries of each parameter, not all."""
    _, grads = model.loss(X, y)
    rng = np.random.default_rng(0)
    errors = {}
    for name in sorted(model.params):
        p, grad = model.params[name].reshape(-1), grads[name].reshape(-1)
        idx = np.arange(p.size)
        if samples is not None and p.size > samples:
            idx = rng.choice(p.size, samples, replace=False)
        num = np.empty(idx.size)
        for n, i in enumerate(idx):
            old = p[i]
            p[i] = old + h
            plus = model.loss(X, y)[0]
            p[i] = old - h
            minus = model.loss(X, y)[0]
            p[i] = old
            num[n] = (plus - minus) / (2 * h)
        off = np.abs(num - grad[idx]) > NOISE_FLOOR
        errors[name] = rel_error(num[off], grad[idx][off]) if off.any() else 0.0
    return errors


def test_three_layer_conv_net_numerical_gradients_notebook_setup():
    """The notebook's check: 2 inputs of 3x16x16, 3 filters of 3x3, hidden 7, float64, its
    weight scale 1e-3 and h=1e-6 (its tolerance: errors "around 1e-2 or less"); 30 entries of
    each parameter. The check below, with larger weights, is the strict one."""
    rng = np.random.default_rng(231)
    X, y = rng.normal(size=(2, 3, 16, 16)), rng.integers(10, size=2)
    model = ThreeLayerConvNet(num_filters=3, filter_size=3, input_dim=(3, 16, 16), hidden_dim=7,
                              dtype=np.float64, seed=0)  # fmt: skip
    errors = _grad_errors(model, X, y, samples=30)
    assert max(errors.values()) < 1e-2, errors


@pytest.mark.parametrize("normalization", [None, "batchnorm", "layernorm"])
def test_three_layer_conv_net_numerical_gradients(normalization):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(4, 2, 6, 6)), rng.integers(5, size=4)
    model = ThreeLayerConvNet((2, 6, 6), num_filters=3, filter_size=3, hidden_dim=6,
                              num_classes=5, weight_scale=0.3, reg=0.1, dtype=np.float64,
                              normalization=normalization, seed=1)  # fmt: skip
    errors = _grad_errors(model, X, y, h=1e-5)
    assert max(errors.values()) < 1e-6, errors


def test_three_layer_conv_net_overfits_small_data():
    """The notebook overfits 100 CIFAR images; here 20 random 3x8x8 images, a few dozen steps."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 3, 8, 8)), rng.integers(10, size=20)
    data = {"X_train": X, "y_train": y, "X_val": X[:5], "y_val": y[:5]}
    model = ThreeLayerConvNet((3, 8, 8), num_filters=8, filter_size=3, hidden_dim=50,
                              weight_scale=1e-1, seed=0)  # fmt: skip
    solver = Solver(model, data, update_rule="adam", optim_config={"learning_rate": 1e-2},
                    num_epochs=15, batch_size=10, verbose=False)  # fmt: skip
    solver.train()
    assert solver.train_acc_history[-1] == 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"filter_size": 4}, "odd filter_size"),
        ({"num_filters": (8, 16)}, "num_filters"),
        ({"hidden_dim": 0}, "hidden_dim"),
        ({"normalization": "nope"}, "known normalizations"),
    ],
)
def test_three_layer_conv_net_refuses_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ThreeLayerConvNet((3, 8, 8), **kwargs)
