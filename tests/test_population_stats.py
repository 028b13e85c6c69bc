"""The ``population-stats`` experiment (Wu & Johnson 2021): its EMA tracker against the model's
own running averages, its batch-statistics evaluation against the training forward pass, its
config checks; the summary and headline (``check_summary``, used by ``test_summaries.py``) and
a ``--quick`` run's results (``check_quick_results``, used by ``test_experiments.py``).
"""

from __future__ import annotations

import numpy as np
import pytest

from normlab.experiments import population_stats as ps
from normlab.experiments.config import config_to_dict
from normlab.experiments.runner import summarize_runs
from normlab.experiments.wording import num
from normlab.models import FullyConnectedNet
from normlab.solver import Solver


def _net(norm="batchnorm", seed=0, **norm_options):
    return FullyConnectedNet(
        [12, 12], input_dim=6, num_classes=3, normalization=norm, weight_scale="he",
        seed=seed, norm_options=norm_options,
    )  # fmt: skip


def _data(n=96):
    rng = np.random.default_rng(3)
    X = (2.0 + 3.0 * rng.standard_normal((n, 6))).astype(np.float32)  # (N, D): mean far from 0
    y = rng.integers(0, 3, n)  # (N,)
    return {"X_train": X, "y_train": y, "X_val": X[:32], "y_val": y[:32]}


def _train(model, callbacks=(), iterations=12):
    solver = Solver(
        model, _data(), update_rule="sgd_momentum", optim_config={"learning_rate": 0.05},
        batch_size=16, num_iterations=iterations, callbacks=list(callbacks), seed=1,
        verbose=False,
    )  # fmt: skip
    for _ in range(iterations):
        solver.step()
    return solver


def test_ema_tracker_equals_the_models_own_running_average():
    """Trained with momentum 0, the tracker's λ = 0.9 and 0.99 averages are what models trained
    with those momenta keep (float32 vs float64), and training itself is the same."""
    base = _net(momentum=0.0)
    tracker = ps.EmaTracker(base, (0.9, 0.99))
    losses = _train(base, [tracker]).loss_history
    for lam in (0.9, 0.99):
        model = _net(momentum=lam)
        assert _train(model).loss_history == losses  # the momentum changes no training step
        for k, v in tracker.stats[lam].items():
            np.testing.assert_allclose(model.buffers[k], v, rtol=2e-5, atol=1e-6)
            assert not np.allclose(v, base.buffers[k])  # an average, not the last batch


def test_twin_with_batch_statistics_is_the_training_forward_pass():
    """The twin built with track_running_stats=False scores each normalization batch of V rows
    as the trained model's train-mode pass does (the last affine output)."""
    v = 4
    model = _net("ghostbatchnorm", virtual_batch_size=v)
    _train(model)
    twin = _net("ghostbatchnorm", seed=5, virtual_batch_size=v, track_running_stats=False)
    for k, p in model.params.items():
        np.copyto(twin.params[k], p)
    X, y = _data()["X_train"][:16], _data()["y_train"][:16]
    seen = {}
    last = model.blocks[-1]
    model.probe = lambda stage, blk, h: seen.update(scores=h.copy()) if blk is last else None
    saved = {k: b.copy() for k, b in model.buffers.items()}
    model.loss(X, y)
    model.probe = None
    np.testing.assert_allclose(twin.loss(X), seen["scores"], rtol=1e-5, atol=1e-6)
    for k, b in saved.items():
        np.copyto(model.buffers[k], b)
    assert not np.allclose(model.loss(X), seen["scores"], atol=1e-3)  # test mode differs


def test_config_is_checked():
    with pytest.raises(ValueError, match="ema_momenta in"):
        ps.PopulationStatsConfig(ema_momenta=(0.9, 1.0))
    with pytest.raises(ValueError, match="not divisors"):
        ps.PopulationStatsConfig(norm_batch_sizes=(2, 48))
    with pytest.raises(ValueError, match="batchnorm"):
        ps.PopulationStatsConfig(normalizations=("layernorm",))
    for ns in ((1000, 100), (100, 100)):
        with pytest.raises(ValueError, match="precise_samples increasing integers >= 1"):
            ps.PopulationStatsConfig(precise_samples=ns)


# -- summary, headline and quick results (test_summaries.py, test_experiments.py) -------------

ERRORS = ("train_error_batch_stats", "val_error_batch_stats", "val_error_population_stats",
          "val_error_ema")  # fmt: skip


def _synthetic(config, rng) -> dict:
    """``run_task``-shaped outputs: every accuracy and error apart."""
    E = config.num_epochs
    outputs = {
        ps.STATS_RUN: {
            "part": "stats",
            "epochs": list(range(1, E + 1)),
            "test_acc_ema": {f"{m:g}": list(rng.uniform(0.5, 0.8, E)) for m in config.ema_momenta},
            "test_acc_precise": {
                str(n): list(rng.uniform(0.7, 0.9, E)) for n in config.precise_samples
            },  # fmt: skip
            "num_test": 10**7,
            "diverged": False,
        }
    }
    for v in config.norm_batch_sizes:
        outputs[f"ghostbatchnorm/v={v}"] = {
            "part": "batch",
            "virtual_batch_size": v,
            **{k: float(rng.uniform(0.05, 0.5)) for k in ERRORS},
            "num_val": 10**7,
            "num_val_population": 10**7,
            "diverged": False,
        }
    return outputs


def check_summary(experiment, config):
    """Final and epoch-mean accuracies per source, errors per V, and the headline's numbers."""
    outputs = _synthetic(config, np.random.default_rng(0))
    summary = summarize_runs(experiment, config, outputs, {n: 1.0 for n in outputs})
    results = {"experiment": experiment.name, "config": config_to_dict(config),
               "runs": outputs, **summary}  # fmt: skip
    headline = experiment.headline(results)
    stats = outputs[ps.STATS_RUN]
    ema = [stats["test_acc_ema"][f"{m:g}"] for m in config.ema_momenta]
    precise = [stats["test_acc_precise"][str(n)] for n in config.precise_samples]
    assert summary["final_test_acc_ema"] == [c[-1] for c in ema]
    assert summary["final_test_acc_precise"] == [c[-1] for c in precise]
    assert summary["mean_test_acc_ema"] == pytest.approx([np.mean(c) for c in ema])
    assert summary["mean_test_acc_precise"] == pytest.approx([np.mean(c) for c in precise])
    vs = list(config.norm_batch_sizes)
    assert summary["norm_batch_sizes"] == vs
    for k in ERRORS:
        assert summary[k] == [outputs[f"ghostbatchnorm/v={v}"][k] for v in vs]
    top = precise[-1][-1]
    assert (
        f"precise BN over {config.precise_samples[-1]} images gave test accuracy {num(top)}"
        in headline
    )
    for m, c in zip(config.ema_momenta, ema, strict=True):
        assert f"{num(c[-1])} with EMA λ={m:g} (" in headline
        assert f"{num(np.mean(c))} with EMA λ={m:g} (" in headline
    during = (
        f"averaged over the {config.num_epochs} epochs' evaluations, {num(np.mean(precise[-1]))}"
    )
    assert f"{during} against" in headline
    # a training set smaller than the most precise_samples: the headline says what was used
    used = [min(n, 321) for n in config.precise_samples]
    outputs[ps.STATS_RUN]["precise_samples_used"] = used
    assert f"precise BN over {used[-1]} images gave" in experiment.headline(results)
    small = outputs[f"ghostbatchnorm/v={min(vs)}"]
    assert (f"at V={min(vs)}, {num(small['val_error_population_stats'])} with population "
            f"statistics against {num(small['val_error_batch_stats'])}") in headline  # fmt: skip
    rows = summary["table"]["rows"]
    assert rows[0] == ["final test acc", f"EMA λ={config.ema_momenta[0]:g}", ema[0][-1]]


def check_quick_results(res):
    """A quick run: accuracies after every epoch per source, errors and histograms per V."""
    cfg = res["config"]
    E = cfg["num_epochs"]
    stats = res["runs"][ps.STATS_RUN]
    assert stats["epochs"] == list(range(1, E + 1))
    for curves in (stats["test_acc_ema"], stats["test_acc_precise"]):
        for curve in curves.values():
            assert len(curve) == E and all(0 <= a <= 1 for a in curve)
    assert sorted(stats["test_acc_ema"]) == sorted(f"{m:g}" for m in cfg["ema_momenta"])
    for k in ERRORS:
        assert len(res[k]) == len(cfg["norm_batch_sizes"]) and all(0 <= e <= 1 for e in res[k])
    for v in cfg["norm_batch_sizes"]:
        out = res["runs"][f"ghostbatchnorm/v={v}"]
        assert out["num_val"] % v == 0 and out["num_train_eval"] % v == 0
        for key in ("hist_train", "hist_eval"):
            mass = sum(out[key]) * 0.2  # densities on bins of 0.2: at most 1 inside [-6, 6]
            assert 0.5 < mass <= 1 + 1e-9
