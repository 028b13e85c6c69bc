"""Update rules: hand-computed steps, PyTorch oracle; the Optimizer: fused kernels == the rules."""

import numpy as np
import pytest

from normlab.optim import (
    DEFAULTS,
    STATE_KEYS,
    UPDATE_RULES,
    adam,
    get_update_rule,
    rmsprop,
    sgd,
    sgd_momentum,
)
from normlab.optimizer import Optimizer

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


# -- the Optimizer: fused kernels == the rules, in place --------------------------------------


def per_param_trajectory(name, params, grads_seq):
    configs = {k: dict(CONFIGS[name]) for k in params}
    for grads in grads_seq:
        for k in params:
            params[k], configs[k] = UPDATE_RULES[name](params[k], grads[k], configs[k])
    return params, configs


def packed(params):
    """The parameters as views of one buffer, laid end to end (as a normlab model keeps them)."""
    dtype = next(iter(params.values())).dtype
    flat = np.concatenate([p.ravel() for p in params.values()]).astype(dtype)  # (P,)
    out, lo = {}, 0
    for k, p in params.items():
        out[k] = flat[lo : lo + p.size].reshape(p.shape)
        lo += p.size
    return out


@pytest.mark.parametrize("layout", ["separate", "packed"])
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", RULES)
def test_optimizer_equals_the_rules_bit_for_bit(name, dtype, fused, layout):
    rng = np.random.default_rng(2)
    grads_seq = [make_grads(rng, dtype) for _ in range(6)]
    ref, ref_configs = per_param_trajectory(name, make_params(dtype), grads_seq)
    params = make_params(dtype)
    if layout == "packed":
        params = packed(params)
    held = dict(params)  # what the model holds: the optimizer must update these arrays
    opt = Optimizer(params, name, CONFIGS[name], fused=fused)
    assert opt.fused == fused
    if fused:  # one kernel call per run of parameters laid end to end
        assert len(opt._chunks) == (1 if layout == "packed" else len(SHAPES))
    for grads in grads_seq:
        opt.step(params, grads)
    for k in SHAPES:
        assert params[k] is held[k] and params[k].dtype == dtype  # never rebound
        # same operations in the same order and dtype: bit-identical, not merely close
        np.testing.assert_array_equal(params[k], ref[k], err_msg=k)
        for key in STATE_KEYS[name]:
            np.testing.assert_array_equal(opt.optim_configs[k][key], ref_configs[k][key])
    if name == "adam":
        assert all(c["t"] == 6 for c in opt.optim_configs.values())


def test_fused_default_follows_rule_dtypes_layout_and_backend(monkeypatch):
    assert Optimizer(make_params(np.float32), "adam").fused
    assert not Optimizer(make_params(np.float32), lambda w, dw, c: (w, c)).fused
    mixed = {"a": np.zeros(2, np.float32), "b": np.zeros(2)}
    assert not Optimizer(mixed, "sgd").fused
    with pytest.raises(
        ValueError, match=r"fused=True needs .* got dtypes \['float32', 'float64'\]"
    ):
        Optimizer(mixed, "sgd", fused=True)
    with pytest.raises(ValueError, match=r"fused=True needs a built-in .* a rule without a kernel"):
        Optimizer(mixed, lambda w, dw, c: (w, c), fused=True)
    monkeypatch.setenv("NORMLAB_BACKEND", "numpy")
    assert not Optimizer(make_params(np.float32), "adam").fused  # the readable rules


def test_non_contiguous_params_and_grads_are_updated_in_place():
    base = np.arange(12.0).reshape(3, 4)
    params = {"W": base.T, "b": np.zeros(2)}  # (4, 3) Fortran-ordered view
    opt = Optimizer(params, "sgd", {"learning_rate": 1.0})
    assert not opt.fused  # a kernel cannot run over a strided parameter in place
    with pytest.raises(ValueError, match=r"non-contiguous"):
        Optimizer(params, "sgd", fused=True)
    grad_W = np.arange(12.0).reshape(4, 3)[:, ::-1]  # (4, 3) negative strides
    expected = base.T - grad_W
    opt.step(params, {"W": grad_W, "b": np.ones(2)})
    np.testing.assert_array_equal(params["W"], expected)
    np.testing.assert_array_equal(params["b"], [-1.0, -1.0])
    np.testing.assert_array_equal(base, expected.T)  # in place: the caller's array holds the step
    w = {"b": np.zeros(12)}
    fused = Optimizer(w, "sgd", {"learning_rate": 1.0}, fused=True)
    fused.step(w, {"b": grad_W})  # a strided gradient is flattened in C order
    np.testing.assert_array_equal(w["b"], -grad_W.ravel())


def test_a_rebound_parameter_is_found_again():
    rng = np.random.default_rng(5)
    grads_seq = [make_grads(rng, np.float64) for _ in range(4)]
    ref, _ = per_param_trajectory("adam", make_params(np.float64), grads_seq)
    params = packed(make_params(np.float64))
    opt = Optimizer(params, "adam", CONFIGS["adam"], fused=True)
    opt.step(params, grads_seq[0])
    params["W1"] = params["W1"].copy()  # the user rebinds one parameter
    for grads in grads_seq[1:]:
        opt.step(params, grads)
    for k in SHAPES:
        np.testing.assert_array_equal(params[k], ref[k], err_msg=k)


@pytest.mark.parametrize("fused_first,fused_second", [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize("name", RULES)
def test_state_round_trip_through_a_checkpoint_continues_exactly(
    name, fused_first, fused_second, tmp_path
):
    from types import SimpleNamespace

    from normlab.checkpoint import load_checkpoint, save_checkpoint

    dtype = np.float32
    rng = np.random.default_rng(3)
    grads_seq = [make_grads(rng, dtype) for _ in range(6)]
    params = make_params(dtype)
    opt = Optimizer(params, name, CONFIGS[name], fused=fused_first)
    for grads in grads_seq:
        opt.step(params, grads)
    # interrupted run: 3 steps, save, fresh optimizer, load, 3 more steps
    params2 = make_params(dtype)
    opt2 = Optimizer(params2, name, CONFIGS[name], fused=fused_first)
    for grads in grads_seq[:3]:
        opt2.step(params2, grads)
    save_checkpoint(tmp_path / "c.npz", SimpleNamespace(params=params2), opt2.state_dict())
    state = load_checkpoint(tmp_path / "c.npz").state
    params3 = {k: v.copy() for k, v in params2.items()}
    opt3 = Optimizer(params3, name, {"learning_rate": 123.0}, fused=fused_second)
    opt3.load_state_dict(state)  # the learning rate is overwritten by the state
    for grads in grads_seq[3:]:
        opt3.step(params3, grads)
    for k in SHAPES:
        np.testing.assert_array_equal(params3[k], params[k])


def test_state_dict_is_a_copy_and_load_validates_before_changing_anything():
    params = make_params(np.float64)
    opt = Optimizer(params, "adam", fused=True)
    opt.step(params, make_grads(np.random.default_rng(0), np.float64))
    state = opt.state_dict()
    assert not np.shares_memory(state["configs"]["W1"]["m"], opt.optim_configs["W1"]["m"])
    before = opt.state_dict()

    def broken(fn):
        s = opt.state_dict()
        fn(s)
        return s

    cases = [
        (lambda s: s.update(rule="sgd"), r"expected optimizer state for 'adam', got 'sgd'"),
        (lambda s: s["configs"].update(b9=s["configs"].pop("b1")), r"optimizer state for \["),
        (lambda s: s["configs"]["W1"].update(m=np.zeros((3, 4), np.float32)), r"m of W1 .*float64"),
        (lambda s: s["configs"]["W2"].update(v=np.zeros(3)), r"v of W2 with shape \(2, 2, 3\)"),
        (lambda s: s["configs"]["s"].update(momentum=0.9), r"adam hyperparameters .*'momentum'"),
        (lambda s: s["configs"]["s"].update(beta1=0.5), r"one set of hyperparameters"),
    ]
    for fn, match in cases:
        with pytest.raises(ValueError, match=match):
            opt.load_state_dict(broken(fn))
        after = opt.state_dict()
        for k in SHAPES:
            for key, v in before["configs"][k].items():
                np.testing.assert_array_equal(after["configs"][k][key], v)


def test_optimizer_validation_messages():
    with pytest.raises(ValueError, match=r"unknown optim_config keys \['lr'\] for 'adam'"):
        Optimizer({"a": np.zeros(2)}, "adam", {"lr": 1e-3})
    with pytest.raises(ValueError, match=r"unknown update rule"):
        Optimizer({"a": np.zeros(2)}, "lion")
    with pytest.raises(ValueError, match=r"update_rule to be one of .* or a callable, got 3"):
        Optimizer({"a": np.zeros(2)}, 3)
    with pytest.raises(ValueError, match=r"at least one parameter"):
        Optimizer({}, "sgd")


@pytest.mark.parametrize("rule", ["sgd_momentum", "rmsprop", "adam"])
def test_fused_state_never_goes_subnormal(rule):
    """A gradient that stays zero decays the state towards subnormals, which are ~100x slower."""
    params = {"w": np.ones(64, np.float32)}
    opt = Optimizer(params, rule, {"learning_rate": 1e-3}, fused=True)
    g = {"w": np.full(64, 1e-3, np.float32)}
    opt.step(params, g)
    zero = {"w": np.zeros(64, np.float32)}
    for _ in range(3000):  # 0.9**3000 and 0.99**3000 are far below float32's smallest normal
        opt.step(params, zero)
    tiny = np.finfo(np.float32).tiny
    for key in STATE_KEYS[rule]:
        a = opt.optim_configs["w"][key]
        assert not np.any((a != 0) & (np.abs(a) < tiny)), key
    assert np.all(np.isfinite(params["w"]))


@pytest.mark.parametrize("rule", ["sgd_momentum", "rmsprop", "adam"])
def test_rules_flush_subnormal_state_like_the_kernels(rule):
    """Bit for bit also where the state decays below float32's smallest normal number."""
    runs = []
    for fused in (True, False):
        params = {"w": np.ones(64, np.float32)}
        opt = Optimizer(params, rule, {"learning_rate": 1e-3}, fused=fused)
        opt.step(params, {"w": np.full(64, 1e-3, np.float32)})
        for _ in range(3000):  # zero gradients: the state decays geometrically
            opt.step(params, {"w": np.zeros(64, np.float32)})
        runs.append((params["w"], opt.state_dict()["configs"]["w"]))
    (w1, c1), (w2, c2) = runs
    np.testing.assert_array_equal(w1, w2)
    for key in STATE_KEYS[rule]:
        np.testing.assert_array_equal(c1[key], c2[key])
        tiny = np.finfo(np.float32).tiny
        assert not np.any((c1[key] != 0) & (np.abs(c1[key]) < tiny)), key  # none subnormal


def test_a_students_own_adam_is_not_the_built_in():
    calls = []

    def adam(w, dw, config=None):  # noqa: F811 - the name a student gives their rule
        calls.append(1)
        return w - 1.0, config or {}

    adam.__qualname__ = "adam"  # as if defined at the top of the student's module
    params = {"w": np.zeros(3, np.float32)}
    opt = Optimizer(params, adam, {"lr": 5})  # its config is its own business
    assert not opt.fused and opt.rule_name == f"{__name__}.adam"
    opt.step(params, {"w": np.ones(3, np.float32)})
    assert calls == [1] and params["w"].tolist() == [-1.0, -1.0, -1.0]
    with pytest.raises(ValueError, match=rf"expected optimizer state for '{__name__}.adam', got"):
        opt.load_state_dict({"rule": "adam", "configs": {"w": {}}})


def test_bad_rule_outputs_rebinding_and_hyperparameters_are_refused():
    params = {"w": np.zeros(4)}
    opt = Optimizer(params, lambda w, dw, c: (np.zeros((1, 4)), c))
    with pytest.raises(ValueError, match=r"return next_w of shape \(4,\) for w, got \(1, 4\)"):
        opt.step(params, {"w": np.ones(4)})
    params = {"w": np.zeros(4, np.float32)}
    opt = Optimizer(params, "adam", fused=True)
    params["w"] = np.zeros(5, np.float32)
    with pytest.raises(ValueError, match=r"shapes and dtypes \{'w': \(\(4,\).*rebinding"):
        opt.step(params, {"w": np.ones(5, np.float32)})
    state = Optimizer({"w": np.zeros(4)}, "adam").state_dict()
    for key, value in (("t", -5), ("t", 2.7), ("learning_rate", True), ("beta1", "0.9")):
        bad = {"rule": "adam", "configs": {"w": {**state["configs"]["w"], key: value}}}
        with pytest.raises(ValueError, match=rf"adam hyperparameters .*'{key}'"):
            Optimizer({"w": np.zeros(4)}, "adam").load_state_dict(bad)
    with pytest.raises(ValueError, match=r"a dict of configs, got \[\]"):
        Optimizer({"w": np.zeros(4)}, "adam").load_state_dict({"rule": "adam", "configs": []})
