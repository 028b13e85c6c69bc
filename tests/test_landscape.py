"""The landscape probe (Santurkar et al. §3.2) and the ``landscape`` experiment.

The measures against a quadratic, where they are known in closed form, and against a direct
recomputation on a tiny net; probing leaves training bit-identical; the summary and headline
read the right runs (``check_summary``, used by ``test_summaries.py``) and a ``--quick`` run's
results are whole (``check_quick_results``, used by ``test_experiments.py``).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest

from normlab.diagnostics import Recorder
from normlab.diagnostics.landscape import LandscapeProbe, along_gradient
from normlab.experiments import landscape
from normlab.experiments.config import config_to_dict
from normlab.experiments.runner import summarize_runs
from normlab.experiments.wording import join, num
from normlab.models import FullyConnectedNet
from normlab.solver import Solver


def test_along_gradient_on_a_quadratic():
    """L = ½ θᵀAθ: L(θ − ηg) in closed form, ‖∇L(θ) − ∇L(θ − ηg)‖ = η‖Ag‖, β = ‖Ag‖/‖g‖,
    and along A's top eigenvector β is its eigenvalue."""
    A = np.diag([1.0, 4.0, 9.0])
    f = lambda t: (0.5 * t @ A @ t, A @ t)  # noqa: E731
    etas = [0.01, 0.05, 0.1]
    theta = np.array([1.0, -2.0, 0.5])
    g = A @ theta
    out = along_gradient(f, theta, g, etas)
    losses = [0.5 * (theta - e * g) @ A @ (theta - e * g) for e in etas]
    np.testing.assert_allclose(out["losses"], losses, rtol=1e-12)
    np.testing.assert_allclose(out["grad_dists"], [e * np.linalg.norm(A @ g) for e in etas])
    assert out["band"] == pytest.approx(max(losses) - min(losses), rel=1e-12)
    assert out["predictiveness"] == pytest.approx(0.1 * np.linalg.norm(A @ g))
    assert out["beta"] == pytest.approx(np.linalg.norm(A @ g) / np.linalg.norm(g))
    assert out["grad_norm"] == pytest.approx(np.linalg.norm(g))
    top = along_gradient(f, np.array([0.0, 0.0, 3.0]), np.array([0.0, 0.0, 27.0]), etas)
    assert top["beta"] == pytest.approx(9.0, rel=1e-12)  # the largest eigenvalue
    # a step into a non-finite loss is the top of the band, not a NaN hiding it
    bad = along_gradient(lambda t: (math.inf, t * np.nan), theta, g, etas)
    assert bad["band"] == math.inf and bad["predictiveness"] == math.inf


def _tiny(norm="batchnorm", keep=1.0, seed=0):
    """A 2-hidden-layer float64 net on 64 random 8-dim points, and its data."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((64, 8))  # (N, D)
    y = rng.integers(0, 3, 64)  # (N,)
    data = {"X_train": X, "y_train": y, "X_val": X[:16], "y_val": y[:16]}
    model = FullyConnectedNet(
        [10, 10], input_dim=8, num_classes=3, normalization=norm, dtype=np.float64,
        dropout_keep_ratio=keep, weight_scale="he", seed=seed,
    )  # fmt: skip
    return model, data


def _solver(model, data, callbacks):
    return Solver(
        model, data, update_rule="sgd", optim_config={"learning_rate": 0.1}, batch_size=16,
        num_iterations=7, callbacks=callbacks, seed=1, verbose=False,
    )  # fmt: skip


def test_probe_matches_a_direct_computation():
    """Each probe: θ before the step, the step's gradient and batch, measured directly on a
    copy of the model."""
    model, data = _tiny()
    etas = [0.05, 0.1, 0.3]
    thetas, batches = [], []

    def keep(solver, info):  # θ after step i is θ before step i + 1
        batches.append((info["X_batch"].copy(), info["y_batch"].copy()))
        thetas.append({k: v.copy() for k, v in model.params.items()})

    start = {k: v.copy() for k, v in model.params.items()}
    twin = copy.deepcopy(model)
    probe = LandscapeProbe(model, etas, every=3)
    _solver(model, data, [keep, probe]).train()
    assert probe.iterations == [0, 3, 6]
    names = list(start)
    for j, it in enumerate(probe.iterations):
        before = start if it == 0 else thetas[it - 1]
        X, y = batches[it]

        def at(theta, X=X, y=y):
            for k in names:
                np.copyto(twin.params[k], theta[k])
            loss, grads = twin.loss(X, y)
            return loss, np.concatenate([grads[k].ravel() for k in names])

        loss0, g = at(before)
        assert probe.loss[j] == pytest.approx(loss0, rel=1e-12)
        for i, eta in enumerate(etas):
            loss, grad = at({k: before[k] - eta * g[_slice(before, k)].reshape(before[k].shape)
                             for k in names})  # fmt: skip
            assert probe.losses[j][i] == pytest.approx(loss, rel=1e-10)
            dist = np.linalg.norm(grad - g)
            assert probe.grad_dists[j][i] == pytest.approx(dist, rel=1e-8)
        ratios = [
            d / (e * np.linalg.norm(g)) for d, e in zip(probe.grad_dists[j], etas, strict=True)
        ]
        assert probe.beta[j] == pytest.approx(max(ratios))
        assert probe.band[j] == pytest.approx(max(probe.losses[j]) - min(probe.losses[j]))


def _slice(params: dict, name: str) -> slice:
    """Where parameter ``name`` lies when ``params`` are raveled end to end in order."""
    lo = 0
    for k, v in params.items():
        if k == name:
            return slice(lo, lo + v.size)
        lo += v.size
    raise KeyError(name)


def test_probing_leaves_training_bit_identical():
    """With dropout (the rng), batch norm (the running statistics) and a Recorder (the model's
    probe) present, a run with the landscape probe equals one without, bit for bit."""
    runs = []
    for probed in (False, True):
        model, data = _tiny(keep=0.8)
        rec = Recorder(model, every=2)
        callbacks = [LandscapeProbe(model, [0.05, 0.2], every=2), rec] if probed else [rec]
        solver = _solver(model, data, callbacks)
        solver.train()
        runs.append((solver.loss_history, model, rec.to_dict(), solver.val_acc_history))
    (la, ma, ra, va), (lb, mb, rb, vb) = runs
    assert la == lb and ra == rb and va == vb
    for k in ma.params:
        np.testing.assert_array_equal(ma.params[k], mb.params[k])
    for k in ma.buffers:
        np.testing.assert_array_equal(ma.buffers[k], mb.buffers[k])
    assert ma.rng.bit_generator.state == mb.rng.bit_generator.state


def test_bad_arguments_are_refused():
    model, _ = _tiny()
    with pytest.raises(ValueError, match="every"):
        LandscapeProbe(model, [0.1], every=0)
    with pytest.raises(ValueError, match="etas"):
        LandscapeProbe(model, [])
    with pytest.raises(ValueError, match="etas"):
        LandscapeProbe(model, [0.1, -0.1])
    with pytest.raises(ValueError, match="normlab model"):
        LandscapeProbe(object(), [0.1])
    with pytest.raises(ValueError, match="'none'"):
        landscape.LandscapeConfig(normalizations=("batchnorm", "layernorm"))
    with pytest.raises(ValueError, match="learning_rates > 0"):
        landscape.LandscapeConfig(learning_rates=(0.1, -1.0))


# -- summary, headline and quick results (test_summaries.py, test_experiments.py) -------------


def _synthetic(config, rng) -> dict:
    """``run_task``-shaped outputs: medians apart in every run, batch norm's smaller."""
    outputs = {}
    for spec in landscape.runs(config):
        bn = spec.params["normalization"] != "none"
        scale = 0.2 if bn else 1.0
        outputs[spec.name] = {
            "median_band": float(scale * rng.uniform(0.5, 1.5)),
            "median_predictiveness": float(scale * rng.uniform(2.0, 9.0)),
            "median_beta": float(rng.uniform(5.0, 50.0)),
            "final_train_loss": float(rng.uniform(0.2, 0.9)),
            "test_acc": float(rng.uniform(0.6, 0.9)),
            "diverged": False,
            "learning_rate": spec.params["learning_rate"],
        }
    return outputs


def check_summary(experiment, config):
    """The summary's keys read each run's medians; ratios and headline factors from them."""
    outputs = _synthetic(config, np.random.default_rng(0))
    seconds = {name: 1.0 for name in outputs}
    summary = summarize_runs(experiment, config, outputs, seconds)
    results = {"experiment": experiment.name, "config": config_to_dict(config),
               "runs": outputs, **summary}  # fmt: skip
    headline = experiment.headline(results)
    lrs = list(config.learning_rates)
    assert summary["learning_rates"] == lrs
    for n in config.normalizations:
        runs = [outputs[f"{n}/lr={lr}"] for lr in lrs]
        for key in ("median_band", "median_predictiveness", "median_beta", "test_acc"):
            assert summary[key][n] == [o[key] for o in runs]
    for m in ("band", "predictiveness", "beta"):
        key = f"median_{m}"
        expect = [a / b for a, b in zip(summary[key]["none"], summary[key]["batchnorm"],
                                         strict=True)]  # fmt: skip
        assert summary[f"ratio_{m}"]["batchnorm"] == pytest.approx(expect)
        words = [f"{num(f, 1)}x smaller" if f >= 1 else f"{num(1 / f, 1)}x larger" for f in expect]
        assert f"the median {landscape.MEASURES[m]} was {join(words)}" in headline
    rows = summary["table"]["rows"]
    assert rows[0][:3] == ["no normalization", lrs[0], outputs[f"none/lr={lrs[0]}"]["median_band"]]
    assert "beyond" not in headline and "(one seed: no noise estimate)." in headline


def test_headline_with_seeds_states_factors_beyond_noise():
    """Three seeds with batch norm's band 5x smaller in each: beyond noise, and the factor."""
    config = landscape.LandscapeConfig(seeds=3)
    per_seed = []
    for k in range(3):
        outputs = _synthetic(config, np.random.default_rng(k))
        for name, o in outputs.items():
            if name.startswith("batchnorm"):
                o["median_band"] = outputs[name.replace("batchnorm", "none")]["median_band"] / 5
        per_seed.append(landscape.summarize(config, outputs, {}))
    from normlab.experiments.seeds import combine

    results = {"config": config_to_dict(config), "seeds": 3, **combine(per_seed)}
    d = landscape.factor(results, "band", "batchnorm", 0)
    assert d.clear and 10 ** (d.a - d.b) == pytest.approx(5.0)
    text = landscape.headline(results)
    band = "the median loss band was 5.0x smaller, 5.0x smaller and 5.0x smaller"
    assert f"{band} (beyond noise at every learning rate)" in text


def check_quick_results(res):
    """A quick run's results: every run probed at 0, k, 2k..., finite measures, medians."""
    cfg = res["config"]
    k = cfg["probe_every"]
    for n in cfg["normalizations"]:
        for lr in cfg["learning_rates"]:
            out = res["runs"][f"{n}/lr={lr}"]
            its = out["probe_iterations"]
            total = cfg["num_epochs"] * out["iterations_per_epoch"]
            assert its == list(range(0, total, k))
            assert out["etas"] == pytest.approx([lr * m for m in cfg["step_multiples"]])
            for key in ("band", "predictiveness", "beta", "loss_min", "loss_max", "grad_norm"):
                values = out[key]
                assert len(values) == len(its) and all(v is not None and v >= 0 for v in values)
            assert all(a <= b for a, b in zip(out["loss_min"], out["loss_max"], strict=True))
            assert out["median_band"] == pytest.approx(float(np.median(out["band"])))
            assert out["median_beta"] == pytest.approx(float(np.median(out["beta"])))
    for m in ("band", "predictiveness", "beta"):
        assert all(r > 0 for r in res[f"ratio_{m}"]["batchnorm"])
