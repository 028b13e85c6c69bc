"""The experiments of the 2026 family (issue 12): rmsnorm and darknet-mismatch.

Each runs end to end on the digits with tiny settings; its summary is checked value by value
against synthetic run outputs, per seed and folded over seeds; its headline states a difference
beyond noise and calls one inside noise so; darknet's true gradient is checked numerically.
"""

from __future__ import annotations

import dataclasses
import math
import statistics

import numpy as np
import pytest

from normlab.experiments import get_experiment, run_experiment
from normlab.experiments.config import config_to_dict
from normlab.experiments.darknet_mismatch import gradient_task, true_dx
from normlab.experiments.runner import summarize_runs
from normlab.layers import darknet_batchnorm_forward
from normlab.vocab import seed_run_name

RMS = get_experiment("rmsnorm")
DARKNET = get_experiment("darknet-mismatch")


def results_from(exp, config, outputs: dict) -> dict:
    """What the runner builds from task outputs (by task name): summary, then headline."""
    seconds = {name: 1.0 for name in outputs}
    summary = summarize_runs(exp, config, outputs, seconds)
    results = {"config": config_to_dict(config), "seeds": config.seeds, "runs": outputs,
               **summary}  # fmt: skip
    return {**results, "headline": exp.headline(results)}


# ------------------------------------------------------------------ end to end, on the digits


def test_rmsnorm_quick_runs_end_to_end():
    config = RMS.quick(RMS.config_cls(dataset="digits"))
    config = dataclasses.replace(config, num_training=200, num_epochs=1)
    res = run_experiment(RMS, config)
    for n in ("layernorm", "rmsnorm"):
        out = res["runs"][n]
        assert out["steps_timed"] == out["iterations_per_epoch"] - 1  # intervals between steps
        assert out["step_ms"] > 0 and len(out["step_ms_by_epoch"]) == 1
        assert res["time_ratio"][n] == pytest.approx(out["step_ms"] / res["step_ms"]["layernorm"])
    assert "normlab's RMSNorm against its layer norm (both numba kernels)" in res["headline"]
    assert "one seed: no spread to judge it by" in res["headline"]


def test_darknet_mismatch_quick_runs_end_to_end():
    config = DARKNET.quick(DARKNET.config_cls(dataset="digits"))
    config = dataclasses.replace(config, batch_sizes=(2, 64), draws=2, num_training=200,
                                 num_epochs=1)  # fmt: skip
    res = run_experiment(DARKNET, config)
    assert sorted(res["rel_error"]) == ["std=0.001", "std=1"]
    for m, std in [(2, 1.0), (64, 1e-3)]:  # the runs are the task alone: the same numbers
        name = f"gradient/m={m}/std={std:g}"
        seed = res["runs"][name]
        assert len(seed["draw_errors"]) == 2
    big, small = res["rel_error"]["std=1"], res["rel_error"]["std=0.001"]
    assert big[1] < 0.01 < 0.5 < small[1]  # m^-3/2 against the eps term (derivations, sec. 7)
    assert 0 < res["runs"]["darknet"]["final_val_acc"] <= 1
    assert "darknet's dx against the true gradient" in res["headline"]


# ------------------------------------------------------------------ darknet's true gradient


def test_true_dx_is_the_numerical_gradient_of_darknets_forward():
    rng = np.random.default_rng(0)
    m, C = 8, 5
    x = 1.0 + rng.uniform(0.5, 2.0, C) * rng.standard_normal((m, C))
    gamma, beta, dout = rng.standard_normal(C), rng.standard_normal(C), rng.standard_normal((m, C))

    def loss(z):
        return np.sum(darknet_batchnorm_forward(z, gamma, beta, {"mode": "train"})[0] * dout)

    num, h = np.zeros_like(x), 1e-6
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + h
        plus = loss(x)
        x[idx] = old - h
        minus = loss(x)
        x[idx] = old
        num[idx] = (plus - minus) / (2 * h)
    np.testing.assert_allclose(true_dx(x, gamma, dout), num, rtol=1e-6, atol=1e-8)


def test_gradient_task_measures_the_two_mismatches():
    large = gradient_task(1024, 1.0, 64, 2, seed=0)
    small = gradient_task(1024, 1e-3, 64, 2, seed=0)
    assert large["rel_error"] == pytest.approx(1024**-1.5, rel=0.5)  # the Bessel term
    s = 1e-3 * math.sqrt(1024 / 1023)  # eps: 1 - (s + 1e-6) / sqrt(var + 1e-5), about 0.70
    assert small["rel_error"] == pytest.approx(1 - (s + 1e-6) / math.sqrt(s * s + 1e-5), rel=0.02)
    total = math.sqrt(sum(e**2 for e in large["draw_errors"]) / 2)  # equal-sized draws
    assert large["rel_error"] == pytest.approx(total, rel=0.3)


# ------------------------------------------------------------------ summaries, per seed


def rms_outputs(config, step_ms: dict, final: dict, n_val: int = 1000) -> dict:
    """Task outputs of ``rmsnorm``: ``step_ms[norm][k]``, ``final[norm][k]`` per seed k."""
    outputs = {}
    for k in range(config.seeds):
        for n in config.normalizations:
            acc = final[n][k]
            outputs[seed_run_name(n, k, config.seeds)] = {
                "val_acc": [0.1, acc], "train_acc": [0.1, acc], "loss": [1.0, 1.0],
                "best_val_acc": acc, "final_val_acc": acc, "test_acc": acc - 0.01,
                "iterations_per_epoch": 2, "diverged": False, "num_val": n_val,
                "step_ms": step_ms[n][k], "step_ms_by_epoch": [step_ms[n][k]],
                "steps_timed": 1, "cpu": "cpu X",
            }  # fmt: skip
    return outputs


def test_rmsnorm_ratio_is_per_seed_then_averaged():
    config = RMS.config_cls(seeds=2, num_epochs=1)
    step = {"layernorm": [10.0, 2.0], "rmsnorm": [5.0, 3.0]}
    res = results_from(RMS, config, rms_outputs(config, step, {"layernorm": [0.8, 0.8],
                                                               "rmsnorm": [0.8, 0.8]}))  # fmt: skip
    assert [s["time_ratio"]["rmsnorm"] for s in res["per_seed"]] == [0.5, 1.5]
    assert res["time_ratio"]["rmsnorm"] == pytest.approx(1.0)  # not 8 / 12
    assert res["spread"]["time_ratio"]["rmsnorm"] == pytest.approx(statistics.stdev([0.5, 1.5]))
    assert res["table"]["rows"][1][4:6] == [pytest.approx(4.0), pytest.approx(1.0)]


def test_rmsnorm_headline_states_a_time_difference_only_beyond_noise():
    config = RMS.config_cls(seeds=3, num_epochs=1)
    ln = [10.0, 12.0, 8.0]
    clear = {"layernorm": ln, "rmsnorm": [8.0, 9.6, 6.4]}  # 0.80x in every seed
    noisy = {"layernorm": ln, "rmsnorm": [7.0, 15.6, 8.0]}  # 0.70, 1.30, 1.00
    acc = {"layernorm": [0.80, 0.81, 0.82], "rmsnorm": [0.60, 0.61, 0.62]}
    h = results_from(RMS, config, rms_outputs(config, clear, acc))["headline"]
    assert "with RMSNorm 0.80x layer norm's (20% less time; beyond noise, ±0.00)" in h
    assert "accuracy 0.81 with layer norm, 0.61 with RMSNorm (lower than layer norm beyond" in h
    assert "on cpu X" in h and "3 seeds" in h
    same = {"layernorm": [0.80, 0.81, 0.82], "rmsnorm": [0.81, 0.80, 0.82]}
    h = results_from(RMS, config, rms_outputs(config, noisy, same))["headline"]
    assert "(0% more time; within noise, ±0.75)" in h and "1.00x" in h
    assert "0.81 with RMSNorm (within noise of layer norm" in h
    one = dataclasses.replace(config, seeds=1)
    h = results_from(RMS, one, rms_outputs(one, clear, acc))["headline"]
    assert "(20% less time; one seed: no spread to judge it by, run with --seeds 3)" in h
    assert "lower than layer norm beyond noise" in h  # 0.20 on 1000 images: binomial


def dk_outputs(config, draws: dict, final: dict, n_val: int = 1000) -> dict:
    """Task outputs of ``darknet-mismatch``: ``draws[(m, std)][k]`` the draws' errors of seed
    k, ``final[norm][k]`` the final validation accuracies."""
    outputs = {}
    for k in range(config.seeds):
        for spec in DARKNET.runs(config):
            name = seed_run_name(spec.name, k, config.seeds)
            p = spec.params
            if p["part"] == "gradient":
                errs = draws[(p["m"], p["std"])][k]
                outputs[name] = {"rel_error": float(np.sqrt(np.mean(np.square(errs)))),
                                 "draw_errors": errs, "m": p["m"], "std": p["std"],
                                 "channels": 4}  # fmt: skip
            else:
                acc = final[p["normalization"]][k]
                outputs[name] = {"val_acc": [0.1, acc], "train_acc": [0.1, acc],
                                 "loss": [1.0, 1.0], "best_val_acc": acc, "final_val_acc": acc,
                                 "test_acc": acc, "iterations_per_epoch": 2, "diverged": False,
                                 "num_val": n_val}  # fmt: skip
    return outputs


def test_darknet_summary_follows_each_seed():
    config = DARKNET.config_cls(seeds=2, batch_sizes=(2, 8), num_epochs=1)
    draws = {(m, s): [[0.1 * m * s, 0.2 * m * s], [0.3 * m * s, 0.3 * m * s]]
             for m in (2, 8) for s in (1.0, 1e-3)}  # fmt: skip
    acc = {"batchnorm": [0.8, 0.7], "darknet": [0.6, 0.5]}
    res = results_from(DARKNET, config, dk_outputs(config, draws, acc))
    for k in range(2):
        rms = [float(np.sqrt(np.mean(np.square(draws[(m, 1.0)][k])))) for m in (2, 8)]
        assert res["per_seed"][k]["rel_error"]["std=1"] == rms
    assert res["final_val_acc"] == {"batchnorm": pytest.approx(0.75),
                                    "darknet": pytest.approx(0.55)}  # fmt: skip
    assert res["table"]["rows"][-1][:6] == ["darknet batch norm", 16, None, None,
                                            pytest.approx(0.55), pytest.approx(0.55)]  # fmt: skip


def test_darknet_headline_states_differences_only_beyond_noise():
    config = DARKNET.config_cls(seeds=2, batch_sizes=(2, 256), num_epochs=1)
    draws = {
        (2, 1.0): [[1e3, 2e3, 3e3], [1e3, 1.5e3, 2e3]],
        (256, 1.0): [[2e-4, 3e-4, 2.5e-4], [2.4e-4, 2.6e-4, 2.5e-4]],  # fell: a finding
        (2, 1e-3): [[0.1, 10.0, 0.5], [3.0, 0.05, 1.0]],
        (256, 1e-3): [[0.7, 0.71, 0.69], [0.70, 0.70, 0.70]],  # the spread at m = 2: noise
    }
    acc = {"batchnorm": [0.80, 0.90], "darknet": [0.81, 0.89]}
    h = results_from(DARKNET, config, dk_outputs(config, draws, acc))["headline"]
    assert "fell from 1.9e+03 at m = 2 to 2.5e-04 at m = 256 with input std 1" in h
    assert "went from 3.80" in h and "at m = 2, within noise, to 0.70 at m = 256" in h
    assert "the error with std 0.001 is 2.8e+03 times that with std 1, beyond noise" in h
    assert "6 draws" in h and "for 1 epoch," in h
    assert "0.85 with darknet batch norm (within noise of batch norm" in h
    worse = {"batchnorm": [0.80, 0.90], "darknet": [0.40, 0.50]}
    h = results_from(DARKNET, config, dk_outputs(config, draws, worse))["headline"]
    assert "0.45 with darknet batch norm (lower than batch norm beyond noise" in h
    quick = dataclasses.replace(config, quick=True)
    h = results_from(DARKNET, quick, dk_outputs(quick, draws, acc))["headline"]
    assert "Quick run, too short to conclude: training at batch size 16" in h
    assert h.startswith("The relative error")  # the computation is no quick guess


# ------------------------------------------------------------------ configs


def test_configs_refuse_what_the_experiments_cannot_compare():
    with pytest.raises(ValueError, match="expected 'rmsnorm' and 'layernorm'.*add 'layernorm'"):
        RMS.config_cls(normalizations=("rmsnorm", "none"))
    with pytest.raises(ValueError, match="batch sizes >= 2"):
        DARKNET.config_cls(batch_sizes=(1, 4))
    with pytest.raises(ValueError, match="input_stds > 0"):
        DARKNET.config_cls(input_stds=(1.0, 0.0))
    with pytest.raises(ValueError, match="expected 'darknet' in normalizations"):
        DARKNET.config_cls(normalizations=("batchnorm",))
