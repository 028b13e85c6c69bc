"""Update rules: hand-computed steps, PyTorch oracle, fused flat path == per-parameter path."""

import json

import numpy as np
import pytest

from normlab.optim import (
    DEFAULTS,
    STATE_KEYS,
    UPDATE_RULES,
    FlatOptimizer,
    adam,
    get_update_rule,
    rmsprop,
    sgd,
    sgd_momentum,
    split_flat_state,
)

SHAPES = {"W1": (3, 4), "b1": (4,), "W2": (2, 2, 3), "s": ()}
RULES = sorted(UPDATE_RULES)
# hyperparameters away from the defaults so a rule ignoring its config would be caught
CONFIGS = {
    "sgd": {"learning_rate": 0.05},
    "sgd_momentum": {"learning_rate": 0.05, "momentum": 0.8},
    "rmsprop": {"learning_rate": 0.01, "decay_rate": 0.9, "epsilon": 1e-6},
    "adam": {"learning_rate": 0.01, "beta1": 0.8, "beta2": 0.95, "epsilon": 1e-6},
}


def make_params(dtype, seed=0):
    rng = np.random.default_rng(seed)
    return {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}


def make_grads(rng, dtype):
    return {k: rng.standard_normal(s).astype(dtype) for k, s in SHAPES.items()}


# -- hand-computed steps -------------------------------------------------------------------------


def test_sgd_by_hand():
    w, dw = np.array([1.0, -2.0]), np.array([0.5, 1.0])
    next_w, cfg = sgd(w, dw, {"learning_rate": 0.1})
    np.testing.assert_allclose(next_w, [0.95, -2.1], rtol=1e-15)
    np.testing.assert_array_equal(w, [1.0, -2.0])  # the input is not modified


def test_sgd_momentum_by_hand():
    cfg = {"learning_rate": 0.1, "momentum": 0.9}
    w, cfg = sgd_momentum(np.array([1.0]), np.array([1.0]), cfg)  # v = -0.1
    np.testing.assert_allclose(cfg["velocity"], [-0.1], rtol=1e-15)
    np.testing.assert_allclose(w, [0.9], rtol=1e-15)
    w, cfg = sgd_momentum(w, np.array([2.0]), cfg)  # v = 0.9 * -0.1 - 0.1 * 2 = -0.29
    np.testing.assert_allclose(cfg["velocity"], [-0.29], rtol=1e-15)
    np.testing.assert_allclose(w, [0.61], rtol=1e-15)


def test_rmsprop_by_hand():
    cfg = {"learning_rate": 0.1, "decay_rate": 0.75, "epsilon": 0.0}
    w, cfg = rmsprop(np.array([1.0]), np.array([2.0]), cfg)  # c = 0.25 * 4 = 1, step 0.2
    np.testing.assert_allclose(cfg["cache"], [1.0], rtol=1e-15)
    np.testing.assert_allclose(w, [0.8], rtol=1e-15)
    w, cfg = rmsprop(w, np.array([1.0]), cfg)  # c = 0.75 + 0.25 = 1, step 0.1
    np.testing.assert_allclose(w, [0.7], rtol=1e-15)
    w, cfg = rmsprop(w, np.array([0.0]), {**cfg, "epsilon": 1.0})  # zero gradient: no step
    np.testing.assert_allclose(w, [0.7], rtol=1e-15)


def test_adam_by_hand():
    cfg = {"learning_rate": 0.1, "beta1": 0.5, "beta2": 0.75, "epsilon": 0.0}
    # t = 1: m = 0.5 * 2 = 1, v = 0.25 * 4 = 1, m_hat = 1 / 0.5 = 2, v_hat = 1 / 0.25 = 4
    w, cfg = adam(np.array([1.0]), np.array([2.0]), cfg)
    assert cfg["t"] == 1
    np.testing.assert_allclose([cfg["m"][0], cfg["v"][0]], [1.0, 1.0], rtol=1e-15)
    np.testing.assert_allclose(w, [0.9], rtol=1e-15)  # 1 - 0.1 * 2 / 2
    # t = 2: m = 0.5 - 1 = -0.5, v = 0.75 + 1 = 1.75, m_hat = -0.5 / 0.75, v_hat = 1.75 / 0.4375 = 4
    w, cfg = adam(w, np.array([-2.0]), cfg)
    assert cfg["t"] == 2
    np.testing.assert_allclose(w, [0.9 + 0.1 * (0.5 / 0.75) / 2], rtol=1e-15)


@pytest.mark.parametrize("name", RULES)
def test_defaults_filled_and_state_shaped(name):
    w = np.ones((2, 3), np.float32)
    next_w, cfg = UPDATE_RULES[name](w, np.full_like(w, 0.5))
    for key, value in DEFAULTS[name].items():
        if key != "t":
            assert cfg[key] == value
    for key in STATE_KEYS[name]:
        assert cfg[key].shape == w.shape and cfg[key].dtype == np.float32
    assert next_w.dtype == np.float32 and next_w.shape == w.shape
    assert np.all(next_w < 1)  # a positive gradient moves every weight down


def test_adam_default_first_step_is_lr_times_sign():
    w = np.zeros(3)
    next_w, cfg = adam(w, np.array([3.0, -0.5, 2e-3]))
    assert cfg["t"] == 1 and cfg["learning_rate"] == 1e-3
    np.testing.assert_allclose(next_w, [-1e-3, 1e-3, -1e-3], rtol=1e-5)


def test_get_update_rule_unknown_lists_known():
    assert get_update_rule("adam") is adam
    with pytest.raises(ValueError, match=r"unknown update rule 'adamw'.*'rmsprop'.*'sgd_momentum'"):
        get_update_rule("adamw")


# -- PyTorch oracle ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sgd", "sgd_momentum", "rmsprop", "adam"])
def test_rules_match_torch(name):
    torch = pytest.importorskip("torch")
    cfg = CONFIGS[name]
    makers = {
        "sgd": lambda p: torch.optim.SGD(p, lr=cfg["learning_rate"]),
        # constant lr: CS231n's v = mu v - lr g equals -lr times torch's b = mu b + g
        "sgd_momentum": lambda p: torch.optim.SGD(
            p, lr=cfg["learning_rate"], momentum=cfg["momentum"]
        ),
        "rmsprop": lambda p: torch.optim.RMSprop(
            p, lr=cfg["learning_rate"], alpha=cfg["decay_rate"], eps=cfg["epsilon"]
        ),
        "adam": lambda p: torch.optim.Adam(
            p, lr=cfg["learning_rate"], betas=(cfg["beta1"], cfg["beta2"]), eps=cfg["epsilon"]
        ),
    }
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4, 5))
    tw = torch.tensor(w.copy(), requires_grad=True)
    opt = makers[name]([tw])
    config = dict(cfg)
    for _ in range(5):
        g = rng.standard_normal(w.shape)
        w, config = UPDATE_RULES[name](w, g, config)
        tw.grad = torch.tensor(g)
        opt.step()
    np.testing.assert_allclose(w, tw.detach().numpy(), rtol=1e-12, atol=1e-14)


# -- fused flat path -----------------------------------------------------------------------------


def per_param_trajectory(name, params, grads_seq):
    configs = {k: dict(CONFIGS[name]) for k in params}
    for grads in grads_seq:
        for k in params:
            params[k], configs[k] = UPDATE_RULES[name](params[k], grads[k], configs[k])
    return params, configs


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", RULES)
def test_flat_equals_per_parameter(name, dtype, backend):
    rng = np.random.default_rng(2)
    grads_seq = [make_grads(rng, dtype) for _ in range(6)]
    ref, ref_configs = per_param_trajectory(name, make_params(dtype), grads_seq)
    params = make_params(dtype)
    opt = FlatOptimizer(params, name, CONFIGS[name], backend=backend)
    for grads in grads_seq:
        opt.step(grads)
    for k in SHAPES:
        assert params[k].dtype == dtype
        # same operations in the same order and dtype: bit-identical, not merely close
        np.testing.assert_array_equal(params[k], ref[k], err_msg=k)
        for key in STATE_KEYS[name]:
            np.testing.assert_array_equal(opt.param_configs()[k][key], ref_configs[k][key])
    if name == "adam":
        assert opt.config["t"] == 6


def test_flat_params_are_views_and_model_sees_updates():
    params = make_params(np.float64)
    original = {k: v.copy() for k, v in params.items()}
    opt = FlatOptimizer(params, "sgd", {"learning_rate": 0.5})
    assert opt.flat.shape == (sum(int(np.prod(s)) for s in SHAPES.values()),)
    for k in SHAPES:
        assert np.shares_memory(params[k], opt.flat)
        np.testing.assert_array_equal(params[k], original[k])
    held = params["W1"]  # what a model reads on its next loss call
    opt.step({k: np.ones(s) for k, s in SHAPES.items()})
    np.testing.assert_array_equal(held, original["W1"] - 0.5)


def test_flat_accepts_non_contiguous_params_and_grads():
    base = np.arange(12.0).reshape(3, 4)
    params = {"W": base.T, "b": np.zeros(2)}  # (4, 3) Fortran-ordered view
    opt = FlatOptimizer(params, "sgd", {"learning_rate": 1.0})
    grad_W = np.arange(12.0).reshape(4, 3)[:, ::-1]  # (4, 3) negative strides
    opt.step({"W": grad_W, "b": np.ones(2)})
    np.testing.assert_array_equal(params["W"], base.T - grad_W)
    np.testing.assert_array_equal(params["b"], [-1.0, -1.0])
    np.testing.assert_array_equal(base, np.arange(12.0).reshape(3, 4))  # caller's array untouched


def save_state(path, state):
    """Flat state -> one npz of arrays + one JSON document, no pickle."""
    arrays = {k: v for k, v in state["config"].items() if isinstance(v, np.ndarray)}
    doc = {**state, "config": {k: v for k, v in state["config"].items() if k not in arrays}}
    np.savez(path, json=np.array(json.dumps(doc)), **arrays)


def load_state(path):
    with np.load(path, allow_pickle=False) as npz:
        doc = json.loads(str(npz["json"]))
        doc["config"].update({k: npz[k] for k in npz.files if k != "json"})
    return doc


@pytest.mark.parametrize("name", RULES)
def test_flat_state_roundtrip_through_npz_json_continues_exactly(name, tmp_path):
    dtype = np.float32
    rng = np.random.default_rng(3)
    grads_seq = [make_grads(rng, dtype) for _ in range(6)]
    params = make_params(dtype)
    opt = FlatOptimizer(params, name, CONFIGS[name])
    for grads in grads_seq:
        opt.step(grads)
    # interrupted run: 3 steps, save, fresh optimizer, load, 3 more steps
    params2 = make_params(dtype)
    opt2 = FlatOptimizer(params2, name, CONFIGS[name])
    for grads in grads_seq[:3]:
        opt2.step(grads)
    save_state(tmp_path / "opt.npz", opt2.state_dict())
    saved_params = {k: v.copy() for k, v in params2.items()}
    params3 = make_params(dtype, seed=99)
    opt3 = FlatOptimizer(params3, name, {"learning_rate": 123.0})  # overwritten by the state
    opt3.load_state_dict(load_state(tmp_path / "opt.npz"))
    for k in params3:
        params3[k][...] = saved_params[k]
    for grads in grads_seq[3:]:
        opt3.step(grads)
    for k in SHAPES:
        np.testing.assert_array_equal(params3[k], params[k])


@pytest.mark.parametrize("name", ["sgd_momentum", "adam"])
def test_param_configs_roundtrip_between_paths(name):
    rng = np.random.default_rng(4)
    grads_seq = [make_grads(rng, np.float64) for _ in range(4)]
    params = make_params(np.float64)
    opt = FlatOptimizer(params, name, CONFIGS[name])
    for grads in grads_seq[:2]:
        opt.step(grads)
    # continue on the per-parameter path from the flat state ...
    configs = split_flat_state(opt.state_dict())
    for k, shape in SHAPES.items():
        for key in STATE_KEYS[name]:
            assert configs[k][key].shape == shape
            assert not np.shares_memory(configs[k][key], opt.config[key])  # copies
    ref = {k: v.copy() for k, v in params.items()}
    for grads in grads_seq[2:]:
        for k in ref:
            ref[k], configs[k] = UPDATE_RULES[name](ref[k], grads[k], configs[k])
    # ... and on a second flat optimizer loaded from per-parameter configs
    params2 = {k: v.copy() for k, v in params.items()}
    opt2 = FlatOptimizer(params2, name, CONFIGS[name])
    opt2.load_param_configs(opt.param_configs())
    for grads in grads_seq[2:]:
        opt2.step(grads)
    for k in SHAPES:
        np.testing.assert_array_equal(params2[k], ref[k])


def test_flat_validation_messages():
    with pytest.raises(ValueError, match=r"one floating dtype.*float32.*float64"):
        FlatOptimizer({"a": np.zeros(2, np.float32), "b": np.zeros(2)}, "sgd")
    with pytest.raises(ValueError, match=r"unknown adam config keys \['lr'\].*'learning_rate'"):
        FlatOptimizer({"a": np.zeros(2)}, "adam", {"lr": 1e-3})
    with pytest.raises(ValueError, match=r"unknown backend 'cuda'.*'numba'"):
        FlatOptimizer({"a": np.zeros(2)}, "adam", backend="cuda")
    with pytest.raises(ValueError, match=r"unknown update rule"):
        FlatOptimizer({"a": np.zeros(2)}, "lion")
    opt = FlatOptimizer({"a": np.zeros(2)}, "adam")
    bad = {**opt.state_dict(), "shapes": [[3]]}
    with pytest.raises(ValueError, match=r"expected optimizer state for parameters \['a'\]"):
        opt.load_state_dict(bad)
    with pytest.raises(ValueError, match=r"state of dtype float64, got float32"):
        opt.load_state_dict({**opt.state_dict(), "dtype": "float32"})
    with pytest.raises(ValueError, match=r"expected optimizer state for 'adam', got 'sgd'"):
        opt.load_state_dict({**opt.state_dict(), "rule": "sgd"})


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("rule", ["sgd_momentum", "rmsprop", "adam"])
def test_flat_state_never_goes_subnormal(rule, backend):
    """A gradient that stays zero decays the state towards subnormals, which are ~100x slower."""
    from normlab.optim import FlatOptimizer

    params = {"w": np.ones(64, np.float32)}
    opt = FlatOptimizer(params, rule, {"learning_rate": 1e-3}, backend=backend)
    g = {"w": np.full(64, 1e-3, np.float32)}
    opt.step(g)
    zero = {"w": np.zeros(64, np.float32)}
    for _ in range(3000):  # 0.9**3000 and 0.99**3000 are far below float32's smallest normal
        opt.step(zero)
    tiny = np.finfo(np.float32).tiny
    for key in ("velocity", "cache", "m", "v"):
        if key in opt.config:
            a = opt.config[key]
            assert not np.any((a != 0) & (np.abs(a) < tiny)), key
    assert np.all(np.isfinite(params["w"]))
