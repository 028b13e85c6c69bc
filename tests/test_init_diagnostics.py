"""init-diagnostics: its summary keys from the right records, its headline, its config checks;
``check_summary`` and ``check_quick_results`` are the entries of tests/test_summaries.py and
tests/test_experiments.py (the quick run through the CLI)."""

from __future__ import annotations

import numpy as np
import pytest

from normlab.experiments import get_experiment
from normlab.experiments.config import config_to_dict
from normlab.experiments.runner import summarize_runs

NUM_EVAL = 10**7  # images behind each accuracy: a noise bound far below the differences


def _record(rng, hidden: int, records: int, every: int, saturated: float) -> dict:
    """A Recorder.to_dict()-shaped record: saturation per hidden layer, update ratios per
    parameter (biases and gammas far off, so that a median that took them in would differ)."""
    its = [k * every for k in range(records)]
    layers = {
        str(i): {
            "activation": "tanh" if i <= hidden else None,
            "saturation": (
                list(np.round(rng.uniform(0, 1, records) * saturated, 3))
                if i <= hidden
                else [None] * records
            ),
        }
        for i in range(1, hidden + 2)
    }
    params = {}
    for i in range(1, hidden + 2):
        params[f"W{i}"] = {"update_data_log10": list(np.round(rng.uniform(-5, -1, records), 3))}
        params[f"b{i}"] = {"update_data_log10": [None] + [9.0] * (records - 1)}
    params["W2"]["update_data_log10"][-1] = None  # a non-finite ratio is left out
    return {"format_version": 1, "iterations": its, "layers": layers, "params": params}


def _output(rng, params: dict, config, saturated: float) -> dict:
    epochs, hidden = config.num_epochs, len(config.hidden_dims)
    train = [0.1, *np.round(rng.uniform(0.8, 0.99, epochs), 3)]
    val = [0.12, *np.round(rng.uniform(0.3, 0.7, epochs), 3)]
    val[-1] = round(min(val[1:]) - 0.02, 3)  # the last epoch is not the best: final != best
    return {
        "train_acc": train,
        "val_acc": val,
        "best_val_acc": max(val),
        "final_val_acc": val[-1],
        "num_val": NUM_EVAL,
        "weight_scale": params["weight_scale"],
        "diagnostics": _record(rng, hidden, 7, 10, saturated),
    }


def _median_late(rec: dict) -> tuple[list, float]:
    """Per weight and overall, the median log10 update:data over the second half's records."""
    its = rec["iterations"]
    late = [j for j, it in enumerate(its) if it >= its[-1] / 2]
    ws = [f"W{i}" for i in range(1, len(rec["layers"]) + 1)]
    vals = {w: [rec["params"][w]["update_data_log10"][j] for j in late] for w in ws}
    ok = {w: [v for v in vs if v is not None] for w, vs in vals.items()}
    return [float(np.median(ok[w])) for w in ws], float(np.median(sum(ok.values(), [])))


def check_summary(experiment, config):
    """For tests/test_summaries.py: every summary key from the right record and curve, and the
    headline quoting them."""
    rng = np.random.default_rng(0)
    specs = experiment.runs(config)
    assert [s.name for s in specs] == ["bad-init", "fixed-init", *config.normalizations]
    saturated = {"bad-init": 1.0, "fixed-init": 0.05}
    outputs = {s.name: _output(rng, s.params, config, saturated.get(s.name, 0.1)) for s in specs}
    seconds = {s.name: 1.0 + i for i, s in enumerate(specs)}
    summary = summarize_runs(experiment, config, outputs, seconds)
    assert summary["run_order"] == list(outputs)
    for row, (name, o) in zip(summary["table"]["rows"], outputs.items(), strict=True):
        rec, got = o["diagnostics"], summary["per_run"][name]
        sat = [rec["layers"][str(i)]["saturation"] for i in range(1, len(config.hidden_dims) + 1)]
        assert got["saturation_init"] == [s[0] for s in sat]
        assert got["saturation_final"] == [s[-1] for s in sat]
        assert got["final_train_acc"] == o["train_acc"][-1]
        assert got["final_val_acc"] == o["val_acc"][-1] != o["best_val_acc"]
        per_w, med = _median_late(rec)
        np.testing.assert_allclose(got["update_data_log10"], per_w)
        np.testing.assert_allclose(got["update_data_log10_median"], med)
        np.testing.assert_allclose(got["update_data_distance"], abs(med + 3))
        assert got["init"] == o["weight_scale"]
        assert got["normalization"] == ("none" if name.endswith("-init") else name)
        assert row[1:3] == [sat[0][0], sat[0][-1]] and row[4:6] == [
            o["train_acc"][-1],
            o["val_acc"][-1],
        ]
        np.testing.assert_allclose(row[3], np.mean([s[-1] for s in sat]))
        assert row[-1] == seconds[name]
    assert summary["per_run"]["bad-init"]["init"] == config.bad_weight_scale
    assert summary["per_run"]["fixed-init"]["init"] == "kaiming"
    results = {"config": config_to_dict(config), "runs": outputs, "seeds": 1, **summary}
    h = experiment.headline(results)
    bad, fixed, bn = (summary["per_run"][n] for n in ("bad-init", "fixed-init", "batchnorm"))
    pct = "{:.0f}%".format
    every = [np.mean(bad[k]) for k in ("saturation_init", "saturation_final")]
    assert (
        f"{pct(100 * bad['saturation_init'][0])} -> {pct(100 * bad['saturation_final'][0])} "
        f"(all hidden layers {pct(100 * every[0])} -> {pct(100 * every[1])}) with the bad init" in h
    )
    assert f"{fixed['final_val_acc']:.2f} with the fixed init, " in h
    word = "lower" if bad["final_val_acc"] < fixed["final_val_acc"] else "higher"
    assert f"{bad['final_val_acc']:.2f} with the bad init ({word} than the fixed init beyond" in h
    assert f"{bn['update_data_log10_median']:.1f} with batch norm (against" in h
    assert "one seed: no noise estimate" in h
    assert h.startswith("Quick run, too short") == config.quick


def check_quick_results(res):
    """For tests/test_experiments.py: the quick run's three runs, their records and the summary
    keys; the bad init saturates the tanh units at init and the fixed init does not."""
    cfg = res["config"]
    assert res["run_order"] == ["bad-init", "fixed-init", "batchnorm"]
    hidden = len(cfg["hidden_dims"])
    for name in res["run_order"]:
        out, got = res["runs"][name], res["per_run"][name]
        assert len(out["val_acc"]) == cfg["num_epochs"] + 1 and not out["diverged"]
        rec = out["diagnostics"]
        every = max(1, round(cfg["num_epochs"] * (500 // cfg["batch_size"]) / 40))
        assert rec["every"] == every and rec["iterations"][:2] == [0, every]
        assert len(got["saturation_init"]) == len(got["saturation_final"]) == hidden
        assert all(0 <= s <= 1 for s in got["saturation_init"] + got["saturation_final"])
        assert -8 < got["update_data_log10_median"] < 1
    bad, fixed = res["per_run"]["bad-init"], res["per_run"]["fixed-init"]
    assert np.mean(bad["saturation_init"]) > 0.5 > 0.1 > np.mean(fixed["saturation_init"])


def test_config_refuses_what_the_experiment_cannot_run():
    cls = get_experiment("init-diagnostics").config_cls
    for bad, match in (
        ({"normalizations": ("none", "batchnorm")}, "drop 'none'"),
        ({"norm_init": "he"}, "'fixed' or 'bad'"),
        ({"activation": "gelu"}, "known are"),
        ({"diagnostics": 0}, "diagnostics >= 1 or None"),
    ):
        with pytest.raises(ValueError, match=match):
            cls(**bad)
