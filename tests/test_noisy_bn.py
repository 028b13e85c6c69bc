"""Noisy batch norm: the layer (gradient-checked), its registration, the shift measure, and the
``noisy-bn`` experiment's summary and headline."""

from __future__ import annotations

import math

import numpy as np
import pytest

from normlab.experiments import noisy_bn
from normlab.experiments.runner import summarize_runs
from normlab.gradient_check import check_layer
from normlab.layers import batchnorm_forward
from normlab.layers.noisy import noisy_batchnorm_backward, noisy_batchnorm_forward
from normlab.models import FullyConnectedNet
from normlab.models.noisy_bn import draw_noise


def _noise(rng, C):
    return {"noise_scale": np.exp(rng.normal(0, 0.5, C)), "noise_shift": rng.normal(0, 1, C)}


@pytest.mark.parametrize("shape", [(12, 5), (4, 3, 2, 3)])
def test_gradients_float64_random_upstream(shape):
    rng = np.random.default_rng(1234)
    C = shape[1]
    x = 4 + 3 * rng.standard_normal(shape)
    gamma, beta = rng.normal(1.0, 0.5, C), rng.normal(0.0, 1.0, C)
    p = {"mode": "train", **_noise(rng, C)}
    rows = check_layer(
        noisy_batchnorm_forward,
        noisy_batchnorm_backward,
        [x, gamma, beta],
        kwargs={"bn_param": p},
        seed=1,
    )
    assert all(r.rel_error < 1e-6 for r in rows), rows


@pytest.mark.parametrize("shape", [(12, 5), (4, 3, 2, 3)])
def test_matches_pytorch_autograd(shape):
    """The outside oracle: torch's batch norm (batch statistics, eps 1e-5), then the step's
    per-channel scale and shift, differentiated by autograd (float64, random upstream)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    C = shape[1]
    x, dout = 4 + 3 * rng.standard_normal(shape), rng.standard_normal(shape)
    gamma, beta = rng.normal(1.0, 0.5, C), rng.normal(0.0, 1.0, C)
    noise = _noise(rng, C)
    out, cache = noisy_batchnorm_forward(x, gamma, beta, {"mode": "train", **noise})
    dx, dgamma, dbeta = noisy_batchnorm_backward(dout, cache)
    view = (1, C) + (1,) * (len(shape) - 2)
    ts = [torch.tensor(a, requires_grad=True) for a in (x, gamma, beta)]
    y = torch.nn.functional.batch_norm(ts[0], None, None, ts[1], ts[2], True, 0.1, 1e-5)
    ref = y * torch.tensor(noise["noise_scale"]).reshape(view)
    ref = ref + torch.tensor(noise["noise_shift"]).reshape(view)
    ref.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, ref.detach().numpy(), rtol=1e-10, atol=1e-10)
    for ours, t in zip((dx, dgamma, dbeta), ts, strict=True):
        np.testing.assert_allclose(ours, t.grad.numpy(), rtol=1e-9, atol=1e-10)


def test_train_mode_moves_each_channel_test_mode_is_batch_norm():
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 2.0, (256, 4))
    gamma, beta = np.array([1.0, -2.0, 0.5, 1.5]), np.array([0.0, 1.0, -1.0, 0.5])
    noise = _noise(rng, 4)
    out, _ = noisy_batchnorm_forward(x, gamma, beta, {"mode": "train", **noise})
    scale, shift = noise["noise_scale"], noise["noise_shift"]
    np.testing.assert_allclose(out.mean(axis=0), scale * beta + shift, atol=1e-10)
    np.testing.assert_allclose(out.std(axis=0), scale * np.abs(gamma), rtol=1e-4)
    stats = {"running_mean": rng.normal(size=4), "running_var": rng.uniform(1, 2, 4)}
    test, _ = noisy_batchnorm_forward(x, gamma, beta, {"mode": "test", **stats, **noise})
    plain, _ = batchnorm_forward(x, gamma, beta, {"mode": "test", **stats})
    np.testing.assert_array_equal(test, plain)


def test_bad_noise_is_refused():
    x = np.ones((4, 3)) * np.arange(4)[:, None]
    with pytest.raises(ValueError, match=r"noise_scale.*shape \(3,\)"):
        noisy_batchnorm_forward(x, np.ones(3), np.zeros(3), {"mode": "train", "noise_scale": [1]})


def _net(**options):
    return FullyConnectedNet(
        [8, 8], input_dim=6, normalization="noisybatchnorm", norm_options=options, seed=0,
        dtype=np.float64,
    )  # fmt: skip


def test_model_noise_per_layer_and_step_reproducible_and_only_in_training():
    X = np.random.default_rng(2).normal(size=(16, 6))
    y = np.arange(16) % 10
    a, b = _net(noise_seed=5), _net(noise_seed=5)
    losses_a = [a.loss(X, y)[0] for _ in range(3)]
    assert losses_a == [b.loss(X, y)[0] for _ in range(3)]  # same seed, same noise
    assert len(set(losses_a)) == 3  # new noise at every step (the weights do not change)
    assert a.buffers["noise_step1"][0] == 3 and a.buffers["noise_step2"][0] == 3
    a.loss(X)  # test mode: no noise drawn, no step counted
    assert a.buffers["noise_step1"][0] == 3
    assert _net(noise_seed=6).loss(X, y)[0] != losses_a[0]
    # the layers' noise differs, and layer 2's range is twice layer 1's
    s1, c1 = draw_noise(5, 1, 0, 1000, 0.25, 0.1)
    s2, c2 = draw_noise(5, 2, 0, 1000, 0.25, 0.1)
    assert np.abs(s1).max() <= 0.25 < np.abs(s2).max() <= 0.5
    assert np.abs(np.log(c1)).max() <= 0.1 < np.abs(np.log(c2)).max() <= 0.2
    # zero ranges: batch norm, bit for bit
    quiet = _net(mean_range=0.0, log_scale_range=0.0)
    bn = FullyConnectedNet([8, 8], input_dim=6, normalization="batchnorm", seed=0, dtype=np.float64)
    la, ga = quiet.loss(X, y)
    lb, gb = bn.loss(X, y)
    assert la == lb and all(np.array_equal(ga[k], gb[k]) for k in gb)


def test_cumulative_average_counts_through_the_noise():
    net = _net(momentum=None)  # PyTorch's cumulative average: a num_batches_tracked buffer
    X, y = np.random.default_rng(4).normal(size=(16, 6)), np.arange(16) % 10
    for _ in range(2):
        net.loss(X, y)
    assert net.buffers["num_batches_tracked1"][0] == 2 and net.buffers["noise_step1"][0] == 2


@pytest.mark.parametrize(
    "options, match",
    [({"noise_seed": -1}, "noise_seed"), ({"mean_range": -0.5}, "mean_range"),
     ({"noise_scale": 1.0}, "draws"), ({"layer": 1}, "layer number")],
)  # fmt: skip
def test_bad_options_are_refused_when_built(options, match):
    with pytest.raises(ValueError, match=match):
        _net(**options)


class _FakeModel:
    record: set = set()
    activations: dict = {}


def test_shift_meter_against_direct_computation():
    rng = np.random.default_rng(3)
    batches = [rng.normal(rng.normal(size=5), rng.uniform(0.5, 2, 5), (20, 5)) for _ in range(4)]
    model = _FakeModel()
    meter = noisy_bn.ShiftMeter(model, [1])
    assert model.record == {1}

    class Solver:
        iterations_per_epoch = 2

    for t, h in enumerate(batches):
        model.activations = {1: h}
        meter(Solver, {"iteration": t})
    direct = [
        math.sqrt(np.mean((b.mean(0) - a.mean(0)) ** 2) + np.mean((b.std(0) - a.std(0)) ** 2))
        for a, b in zip(batches, batches[1:], strict=False)
    ]  # steps 1, 2, 3 (step 0 has no predecessor)
    res = meter.result()
    assert res["shift"] == pytest.approx(np.mean(direct))
    assert res["shift_by_epoch"] == pytest.approx([direct[0], np.mean(direct[1:])])


# ------------------------------------------------------ summary and headline (test_summaries)


def _output(rng, params, epochs, layers):
    acc = {"none": 0.5, "batchnorm": 0.8, "noisybatchnorm": 0.78}[params["normalization"]]
    val = [0.1, *np.round(acc + rng.uniform(-0.05, 0.0, epochs - 1), 3), acc]
    train = [0.1, *np.round(np.sort(rng.uniform(0.85, 0.95, epochs)), 3)]
    shift_by_layer = list(np.round(rng.uniform(0.01, 1.0, len(layers)), 4))
    return {
        "loss": list(np.round(rng.uniform(0.2, 2.0, epochs * 3), 3)),
        "train_acc": train,
        "val_acc": val,
        "test_acc": round(float(rng.uniform(0.15, 0.25)), 3),
        "iterations_per_epoch": 3,
        "diverged": False,
        "num_val": 10**7,
        "num_test": 10**7,
        "shift_by_layer": shift_by_layer,
        "shift": float(np.mean(shift_by_layer)),
        "shift_by_epoch": list(np.round(rng.uniform(0.01, 1.0, epochs), 3)),
        "layers": layers,
    }


def check_summary(experiment, config):
    """For tests/test_summaries.py: every summary number from the right curve of the right
    run, and the headline quoting them."""
    rng = np.random.default_rng(0)
    layers = list(range(1, len(config.hidden_dims) + 1))
    specs = experiment.runs(config)
    outputs = {s.name: _output(rng, s.params, config.num_epochs, layers) for s in specs}
    seconds = {s.name: 1.0 + i for i, s in enumerate(specs)}
    summary = summarize_runs(experiment, config, outputs, seconds)
    for row, (name, o) in zip(summary["table"]["rows"], outputs.items(), strict=True):
        mean = float(np.mean(o["val_acc"][1:]))
        assert row[1:] == [o["train_acc"][-1], o["val_acc"][-1], mean, o["test_acc"], o["shift"],
                           seconds[name]]  # fmt: skip
        assert summary["mean_val_acc"][name] == mean
        assert summary["final_val_acc"][name] == o["val_acc"][-1]
        assert summary["final_train_acc"][name] == o["train_acc"][-1]
        assert summary["shift_by_layer"][name] == o["shift_by_layer"]
    results = {"config": {"num_epochs": config.num_epochs, "quick": config.quick},
               "runs": outputs, **summary}  # fmt: skip
    h = experiment.headline(results)
    noisy, bn, none = (outputs[n] for n in ("noisybatchnorm", "batchnorm", "none"))
    assert f"accuracy of {noisy['val_acc'][-1]:.2f} (batch norm {bn['val_acc'][-1]:.2f}, " \
           f"no normalization {none['val_acc'][-1]:.2f})" in h  # fmt: skip
    means = [float(np.mean(o["val_acc"][1:])) for o in (noisy, bn, none)]
    assert "averaged over the epochs (higher when a net learns sooner) {:.2f} (batch norm " \
           "{:.2f}, no normalization {:.2f})".format(*means) in h  # fmt: skip
    assert "lower than batch norm beyond noise" in h  # 0.78 vs 0.80 on 10^7 images
    assert "higher than no normalization beyond noise" in h
    assert f"moved {noisy['shift']:.2g} per step against {bn['shift']:.2g} with batch norm " \
           f"and {none['shift']:.2g} without" in h  # fmt: skip
    assert h.startswith("Quick run, too short") == config.quick


def check_quick_results(res):
    """For tests/test_experiments.py: the quick run's three runs, curves and shift measures."""
    cfg = res["config"]
    assert res["runs_order"] == ["none", "batchnorm", "noisybatchnorm"]
    L = len(cfg["hidden_dims"])
    for name in res["runs_order"]:
        out = res["runs"][name]
        assert len(out["val_acc"]) == cfg["num_epochs"] + 1 and not out["diverged"]
        assert len(out["shift_by_layer"]) == L and len(out["shift_by_epoch"]) == cfg["num_epochs"]
        assert all(v > 0 for v in out["shift_by_layer"])
    # the injected noise moves the layer inputs far more than batch norm's own updates do
    assert res["shift"]["noisybatchnorm"] > 10 * res["shift"]["batchnorm"]
    assert res["runs"]["noisybatchnorm"]["noise"]["noise_seed"] >= 0
