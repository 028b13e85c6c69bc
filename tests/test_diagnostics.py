"""normlab.diagnostics.Recorder: its numbers against a direct NumPy computation, training left
bit for bit as it was, JSON output, the model's probe hook and the errors."""

import json

import numpy as np
import pytest

from normlab.diagnostics import HIST_EDGES, PERCENTILES, Recorder
from normlab.models import ConvNet, FullyConnectedNet
from normlab.solver import Solver

EPS = 1e-5  # batch norm's default eps (normlab/models/norms.py)


def _data(seed=0, n=120, d=6, classes=4):
    rng = np.random.default_rng(seed)
    X, y = rng.normal(size=(n, d)), rng.integers(classes, size=n)
    return {"X_train": X, "y_train": y, "X_val": X[:20], "y_val": y[:20]}


def _fc(activation="tanh", normalization="batchnorm", **kw):
    return FullyConnectedNet(
        [7, 5], input_dim=6, num_classes=4, normalization=normalization, activation=activation,
        weight_scale="xavier", dtype=np.float64, seed=3, **kw,
    )  # fmt: skip


class Spy:
    """A callback keeping each step's batch, gradients and the parameters before and after."""

    def __init__(self, model):
        self.model, self.steps = model, []
        self.prev = {k: v.copy() for k, v in model.params.items()}

    def __call__(self, solver, info):
        after = {k: v.copy() for k, v in self.model.params.items()}
        grads = {k: v.copy() for k, v in info["grads"].items()}
        self.steps.append({"X": info["X_batch"].copy(), "before": self.prev, "after": after,
                           "grads": grads})  # fmt: skip
        self.prev = after


def _train(model, callbacks, iterations=7, **kw):
    solver = Solver(
        model, _data(), update_rule="adam", optim_config={"learning_rate": 1e-2}, batch_size=30,
        num_iterations=iterations, verbose=False, callbacks=callbacks, seed=1, **kw,
    )  # fmt: skip
    solver.train()
    return solver


def _by_hand(X, p, activation, norm=True):
    """Per layer (pre_norm, pre_act, post_act) of a train-mode forward of the 2-hidden-layer net."""
    acts = {"tanh": np.tanh, "relu": lambda x: np.maximum(x, 0),
            "sigmoid": lambda x: 1 / (1 + np.exp(-x))}  # fmt: skip
    out, h = [], X
    for i in (1, 2, 3):
        z = h @ p[f"W{i}"] + p[f"b{i}"]  # (N, M)
        if i == 3:
            out.append((z, z, None))
            break
        a = z
        if norm:
            a = p[f"gamma{i}"] * (z - z.mean(0)) / np.sqrt(z.var(0) + EPS) + p[f"beta{i}"]
        h = acts[activation](a)
        out.append((z, a, h))
    return out


def _check_distribution(rec, layer, stage, j, x):
    d = rec.layers[str(layer)][stage]
    np.testing.assert_allclose(d["mean"][j], x.mean(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(d["std"][j], x.std(), rtol=1e-9)
    np.testing.assert_allclose(d["percentiles"][j], np.percentile(x, PERCENTILES), rtol=1e-9)
    assert d["hist"][j] == np.histogram(x, bins=HIST_EDGES)[0].tolist()
    assert (d["under"][j], d["over"][j]) == (np.sum(x < -6), np.sum(x > 6))


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid"])
def test_numbers_match_a_direct_computation(activation):
    model = _fc(activation)
    rec = Recorder(model, every=3, grad_hist="every")
    spy = Spy(model)
    _train(model, [rec, spy])
    assert rec.iterations == [0, 3, 6]
    threshold = {"tanh": lambda t: np.abs(t) > 0.97, "relu": lambda t: t == 0,
                 "sigmoid": lambda t: (t < 0.03) | (t > 0.97)}[activation]  # fmt: skip
    for j, it in enumerate(rec.iterations):
        step = spy.steps[it]
        for layer, (z, a, t) in enumerate(_by_hand(step["X"], step["before"], activation), 1):
            _check_distribution(rec, layer, "pre_norm", j, z)
            _check_distribution(rec, layer, "pre_act", j, a)
            sat = rec.layers[str(layer)]["saturation"][j]
            assert sat is None if t is None else sat == pytest.approx(threshold(t).mean())
        for name, out in rec.params.items():
            g, b, a = step["grads"][name], step["before"][name], step["after"][name]
            with np.errstate(divide="ignore", invalid="ignore"):
                want = [g.std(), g.std() / b.std(), np.log10((a - b).std() / b.std())]
            got = [out["grad_std"][j], out["grad_data"][j], out["update_data_log10"][j]]
            np.testing.assert_allclose(got, want, rtol=1e-9)
            tol = 1e-12 * np.abs(g).max()  # a mean that cancels to ~0 (a bias before BN)
            assert out["grad_mean"][j] == pytest.approx(g.mean(), rel=1e-9, abs=tol)
            assert ("grad_hist" in out) == name.startswith("W")  # the weights' histograms
            if name.startswith("W"):  # g on the edges HIST_EDGES * std(g)
                z = g / g.std()
                assert out["grad_hist"][j] == np.histogram(z, bins=HIST_EDGES)[0].tolist()
                assert (out["grad_under"][j], out["grad_over"][j]) == (
                    np.sum(z < -6),
                    np.sum(z > 6),
                )
    assert rec.layers["1"]["activation"] == activation and rec.layers["3"]["activation"] is None
    assert rec.layers["1"]["norm"] == "batchnorm" and rec.layers["3"]["norm"] is None
    assert rec.params["gamma2"]["layer"] == 2 and model.probe is None  # off after training


def test_signal_propagation_at_iteration_0_and_on_a_batch():
    model = _fc("relu")
    X = _data(5)["X_train"][:40]
    before = {k: v.copy() for k, v in model.params.items()}
    buffers = {k: v.copy() for k, v in model.buffers.items()}
    rng_state = model.rng.bit_generator.state
    rec = Recorder(model, every=2, signal_batch=X)
    sp = rec.signal
    for k in before:  # the model is left as it was
        np.testing.assert_array_equal(model.params[k], before[k])
    for k in buffers:
        np.testing.assert_array_equal(model.buffers[k], buffers[k])
    assert model.rng.bit_generator.state == rng_state and model.probe is not None  # armed
    hand = _by_hand(X, before, "relu")
    assert sp["layers"] == [1, 2, 3] and sp["source"] == "signal_batch"
    for stage, col in (("pre_norm", 0), ("pre_act", 1)):
        want_sq = [np.mean(h[col].mean(0) ** 2) for h in hand]
        want_var = [np.mean(h[col].var(0)) for h in hand]
        np.testing.assert_allclose(sp[stage]["mean_sq"], want_sq, rtol=1e-9, atol=1e-15)
        np.testing.assert_allclose(sp[stage]["var"], want_var, rtol=1e-9)
    # without a batch: taken from the training batch of iteration 0, at the initial weights
    model2 = _fc("relu")
    rec2 = Recorder(model2, every=2)
    spy = Spy(model2)
    _train(model2, [rec2, spy], iterations=3)
    hand = _by_hand(spy.steps[0]["X"], spy.steps[0]["before"], "relu")
    assert rec2.signal["source"] == "training batch of iteration 0"
    np.testing.assert_allclose(
        rec2.signal["pre_act"]["var"], [np.mean(h[1].var(0)) for h in hand], rtol=1e-9
    )


def test_convnet_channels_are_planes():
    model = ConvNet(
        input_dim=(1, 6, 6), num_filters=[3], filter_size=3, hidden_dims=[], num_classes=2,
        normalization="batchnorm", dtype=np.float64, seed=0,
    )  # fmt: skip
    X = np.random.default_rng(0).normal(size=(5, 1, 6, 6))
    rec = Recorder(model, every=1, signal_batch=X)
    stages = []
    model.probe = lambda stage, blk, h: stages.append((stage, h.copy()))
    model.loss(X, np.zeros(5, dtype=int))
    pre_act = next(h for s, h in stages if s == "norm")  # (N, C, H, W)
    assert pre_act.ndim == 4
    want = np.mean(pre_act.var(axis=(0, 2, 3)))
    assert rec.signal["pre_act"]["var"][0] == pytest.approx(want, rel=1e-9)
    assert rec.layers["1"]["kind"] == "conv"


@pytest.mark.parametrize("every", [1, 3])
def test_training_is_bit_identical_with_a_recorder(every):
    runs = []
    for with_recorder in (False, True):
        model = _fc("relu", dropout_keep_ratio=0.8)  # dropout draws from model.rng
        callbacks = [Recorder(model, every=every)] if with_recorder else []
        solver = _train(model, callbacks, iterations=9, num_train_samples=50)
        runs.append((model, solver))
    (m0, s0), (m1, s1) = runs
    assert s0.loss_history == s1.loss_history and s0.val_acc_history == s1.val_acc_history
    for k in m0.params:
        np.testing.assert_array_equal(m0.params[k], m1.params[k])
    for k in m0.buffers:
        np.testing.assert_array_equal(m0.buffers[k], m1.buffers[k])
    assert m0.rng.bit_generator.state == m1.rng.bit_generator.state


def test_to_dict_is_json_safe_and_nan_is_none():
    model = _fc("tanh", normalization=None)
    rec = Recorder(model, every=2)
    _train(model, [rec], iterations=5)
    d = json.loads(json.dumps(rec.to_dict(), allow_nan=False))
    assert d["iterations"] == [0, 2, 4] and d["every"] == 2 and len(d["hist_edges"]) == 61
    assert d["percentiles"] == list(PERCENTILES) and d["signal_propagation"]["layers"] == [1, 2, 3]
    # biases start at 0: std(b) = 0, so their ratios at iteration 0 are inf -> None
    assert d["params"]["b1"]["grad_data"][0] is None and d["params"]["b1"]["grad_data"][1] > 0
    assert d["params"]["W1"]["update_data_log10"][0] < 0
    assert set(d["layers"]["2"]) >= {"pre_norm", "pre_act", "saturation", "activation"}
    assert d["layers"]["1"]["pre_norm"] == d["layers"]["1"]["pre_act"]  # no normalization


def test_probe_sees_train_mode_passes_only():
    model = _fc("relu")
    X, y = _data()["X_train"][:10], _data()["y_train"][:10]
    seen = []
    model.probe = lambda stage, blk, h: seen.append((stage, None if blk is None else blk.index))
    model.loss(X)  # test mode: not probed
    assert seen == []
    model.loss(X, y)
    assert seen[0] == ("input", None) and seen[1:4] == [("linear", 1), ("norm", 1), ("act", 1)]
    assert seen[-1] == ("linear", 3)


def test_a_recorded_iteration_skipped_by_a_resume_is_not_recorded():
    model = _fc("relu")
    rec = Recorder(model, every=4)
    rec(None, {"iteration": 5, "grads": {}})  # the first step seen is 5: nothing committed
    assert rec.iterations == [] and model.probe is None
    rec(None, {"iteration": 7, "grads": {}})  # 8 is next: armed
    assert model.probe is not None


@pytest.mark.parametrize("every", [0, -3, 2.5, True, "20", None])
def test_bad_every(every):
    with pytest.raises(ValueError, match=r"expected every to be an integer >= 1.*got.*every=20"):
        Recorder(_fc(), every=every)


def test_a_model_without_blocks():
    class Bare:
        params, blocks, probe = {}, [], None

    with pytest.raises(
        ValueError, match=r"expected a normlab model with blocks.*got a Bare with none; build"
    ):
        Recorder(Bare())
    with pytest.raises(ValueError, match=r"got a object"):
        Recorder(object())


@pytest.mark.parametrize("n", [1, 2, 7, 1000])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_distribution_against_numpy(n, dtype):
    from normlab.diagnostics.stats import distribution

    rng = np.random.default_rng(n)
    x = (rng.standard_normal(n) * 3).astype(dtype)
    x[: n // 3] = rng.choice(HIST_EDGES, n // 3)  # values on the edges, -6 and 6 included
    if n > 7:
        x[-3:] = [-np.inf, np.inf, 7.5]
    with np.errstate(all="raise"):  # it sets its own
        d = distribution(x.reshape(1, -1) if n % 2 else x)
    x64 = x.astype(np.float64)
    assert d["hist"] == np.histogram(x64[np.isfinite(x64)], bins=HIST_EDGES)[0].tolist()
    assert (d["under"], d["over"]) == (np.sum(x64 < -6), np.sum(x64 > 6))
    assert sum(d["hist"]) + d["under"] + d["over"] == n
    with np.errstate(invalid="ignore"):  # inf - inf in np.percentile's interpolation
        want = np.percentile(x64, PERCENTILES)
    np.testing.assert_allclose(d["percentiles"], want, rtol=1e-12)
    if n <= 7:
        assert d["mean"] == pytest.approx(x64.mean(), rel=1e-12)
        assert d["std"] == pytest.approx(x64.std(), rel=1e-12, abs=1e-300)


def test_distribution_of_nan():
    from normlab.diagnostics.stats import distribution

    x = np.array([0.1, np.nan, 7.0, -0.3])
    d = distribution(x)
    assert np.isnan(d["mean"]) and np.isnan(d["std"]) and all(map(np.isnan, d["percentiles"]))
    assert sum(d["hist"]) == 2 and (d["under"], d["over"]) == (0, 1)  # the NaN nowhere


def test_gradient_histograms_against_numpy_at_every_scale():
    # scales 1e-9..1e2 (the bins are each gradient's own std), values a rounding away from
    # an edge, exact zeros, a gradient of std 0 and one holding NaN
    from normlab.diagnostics.stats import param_ratios

    rng = np.random.default_rng(0)
    sizes = [400, 3, 300, 1, 50, 50, 200]
    gs = [rng.standard_normal(n) * 10.0 ** rng.uniform(-9, 2) for n in sizes]
    gs[2][:60] = 0.0
    gs[2][60:] = rng.choice(HIST_EDGES, 240) * 0.37  # z = edge * 0.37 / std: near the edges
    gs[4][:] = 0.0
    gs[5][7] = np.nan
    gs[6][:] = rng.choice(HIST_EDGES, 200)
    g = np.concatenate(gs).astype(np.float32)  # (P,) as a model's float32 gradients
    theta = rng.standard_normal(g.size).astype(np.float32)
    r = param_ratios(g, theta, theta + 1e-3, sizes)
    lo = 0
    for j, n in enumerate(sizes):
        x = g[lo : lo + n].astype(np.float64)
        lo += n
        s = x.std()
        if not (np.isfinite(s) and s > 0):
            assert (r["grad_hist"][j] == -1).all()
            continue
        z = x / s
        assert r["grad_hist"][j, 1:-1].tolist() == np.histogram(z, HIST_EDGES)[0].tolist()
        assert (r["grad_hist"][j, 0], r["grad_hist"][j, -1]) == (np.sum(z < -6), np.sum(z > 6))
        assert r["grad_mean"][j] == pytest.approx(x.mean(), rel=1e-12, abs=1e-300)


def test_gradient_histograms_at_the_first_and_last_record_by_default():
    model = _fc("tanh")
    rec = Recorder(model, every=2)
    _train(model, [rec], iterations=7)  # records 0, 2, 4, 6: 6 is the last the Solver runs
    assert rec.iterations == [0, 2, 4, 6]
    hists = rec.params["W2"]["grad_hist"]
    assert [h is not None for h in hists] == [True, False, False, True]
    assert rec.params["W2"]["grad_under"][1] is None and rec.params["W2"]["grad_std"][1] > 0
    assert "grad_hist" not in rec.params["gamma1"]
    with pytest.raises(ValueError, match=r"grad_hist one of \['ends', 'every'\].*got 'all'"):
        Recorder(model, grad_hist="all")


def test_the_parameters_are_read_as_their_buffer_only_while_they_are_its_views():
    from normlab.diagnostics.recorder import _buffer_of

    model = _fc("tanh")
    base = _buffer_of(model.params)
    assert base is not None and np.shares_memory(base, model.params["W1"])
    np.testing.assert_array_equal(base, np.concatenate([p.ravel() for p in model.params.values()]))
    rec = Recorder(model)
    assert rec._params_flat() is base
    model.params["W1"] = model.params["W1"].copy()  # rebound: no longer a view
    flat = rec._params_flat()
    assert flat is not base and np.array_equal(flat, base)
    assert _buffer_of({"a": np.zeros(3), "b": np.zeros(2)}) is None
    reordered = dict(reversed(list(_fc("tanh").params.items())))
    assert _buffer_of(reordered) is None  # views, but not in params order
