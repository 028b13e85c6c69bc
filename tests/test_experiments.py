"""Experiments: every --quick mode through the CLI, curves in results.json, seeds, configs."""

import dataclasses
import json
import math

import numpy as np
import pytest

from normlab.cli import main
from normlab.experiments import EXPERIMENTS, get_experiment, run_experiment
from normlab.experiments.config import (
    TrainConfig,
    config_from_dict,
    config_to_dict,
    parse_assignment,
)
from normlab.experiments.runner import strip_timings
from normlab.experiments.training import (
    auto_threshold,
    epochs_to_reach,
    finite,
    train_solver,
)


def _finite_list(values, n=None):
    assert isinstance(values, list) and len(values) > 0
    if n is not None:
        assert len(values) == n
    assert all(v is not None and math.isfinite(v) for v in values), values


def _check_fc_curves(res):
    cfg = res["config"]
    for name in cfg["normalizations"]:
        out = res["runs"][name]
        _finite_list(out["val_acc"], cfg["num_epochs"] + 1)
        _finite_list(out["train_acc"], cfg["num_epochs"] + 1)
        _finite_list(out["loss"], cfg["num_epochs"] * out["iterations_per_epoch"])
        assert 0 <= out["test_acc"] <= 1


def _check_weight_scale(res):
    n = res["config"]["num_scales"]
    assert len(res["weight_scales"]) == n
    np.testing.assert_allclose(res["weight_scales"], np.logspace(-4, 0, n))
    for norm in ("none", "batchnorm"):
        for key in ("best_val_acc", "best_train_acc"):
            _finite_list(res["curves"][norm][key], n)


def _check_batch_size(res):
    cfg = res["config"]
    for norm in cfg["normalizations"]:
        _finite_list(res["best_val_acc"][norm], len(cfg["batch_sizes"]))
        for bs in cfg["batch_sizes"]:
            _finite_list(res["runs"][f"{norm}/bs={bs}"]["val_acc"], cfg["num_epochs"] + 1)


def _check_paper_mnist(res):
    cfg = res["config"]
    T = cfg["num_steps"] // cfg["eval_every"]
    for name in cfg["normalizations"]:
        out = res["runs"][name]
        assert out["steps"] == [cfg["eval_every"] * (i + 1) for i in range(T)]
        _finite_list(out["test_acc"], T)
        p15, p50, p85 = (out["percentiles"][k] for k in ("15", "50", "85"))
        for p in (p15, p50, p85):
            _finite_list(p, T)
        assert all(a <= b <= c for a, b, c in zip(p15, p50, p85, strict=True))


def _check_mlp_adam(res):
    E = res["config"]["num_epochs"]
    for name in ("none", "batchnorm"):
        out = res["runs"][name]
        _finite_list(out["train_loss"], E)
        _finite_list(out["val_loss"], E)
        _finite_list(out["val_acc"], E + 1)


def _check_small_batch(res):
    cfg = res["config"]
    assert res["batch_sizes"] == [2, 4, 8, 16, 32, 64]
    for norm in ("none", "batchnorm", "layernorm", "groupnorm"):
        _finite_list(res["best_epoch_test_acc"][norm], 6)
    # the test accuracy is measured at the best validation epoch: labelled so, never "final"
    assert "final_test_acc" not in res
    assert all("(best val epoch)" in c for c in res["table"]["columns"][1:])
    # the learning rate follows the linear scaling rule
    out = res["runs"]["batchnorm/bs=2"]
    assert out["learning_rate"] == pytest.approx(cfg["base_lr"] * 2 / cfg["base_batch"])


CHECKS = {
    "demo": _check_fc_curves,
    "bn-vs-baseline": _check_fc_curves,
    "weight-scale": _check_weight_scale,
    "batch-size": _check_batch_size,
    "paper-mnist": _check_paper_mnist,
    "mlp-adam": _check_mlp_adam,
    "small-batch": _check_small_batch,
}


def test_every_experiment_has_a_check():
    assert set(CHECKS) == set(EXPERIMENTS)


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_quick_mode_through_the_cli(name, tmp_path, capsys):
    out = tmp_path / name
    assert main(["experiment", name, "--quick", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    for f in ("results.json", "config.json", "report.html"):
        assert (out / f).is_file(), f
    pngs = sorted(out.glob("*.png"))
    assert pngs
    res = json.loads((out / "results.json").read_text())
    assert res["experiment"] == name and res["config"]["quick"] is True
    assert res["config"]["dataset"] == "digits"
    CHECKS[name](res)
    saved = json.loads((out / "config.json").read_text())
    assert saved == {"experiment": name, "config": res["config"]}
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(pngs)
    assert "<table" in page and res["environment"]["numpy"] in page
    # progress: one line per run on stderr; the table, headline and report path on stdout
    assert captured.err.count("/{}]".format(len(res["runs"]))) == len(res["runs"])
    assert f"report: {out / 'report.html'}" in captured.out


def test_quick_variants_are_reduced_and_flagged():
    for exp in EXPERIMENTS.values():
        full, quick = exp.config_cls(), exp.quick(exp.config_cls())
        assert quick.quick and not full.quick
        assert quick != dataclasses.replace(full, quick=True), exp.name


def test_same_seed_same_numbers_and_another_seed_differs():
    exp = get_experiment("bn-vs-baseline")
    config = exp.quick(exp.config_cls(dataset="digits"))
    a = strip_timings(run_experiment(exp, config))
    b = strip_timings(run_experiment(exp, config))
    assert a == b
    c = strip_timings(run_experiment(exp, dataclasses.replace(config, seed=1)))
    assert c["runs"]["batchnorm"]["loss"] != a["runs"]["batchnorm"]["loss"]


def test_paired_runs_start_from_the_same_weights():
    from normlab.experiments.runner import derive_seed

    exp = get_experiment("batch-size")
    specs = exp.runs(exp.config_cls())
    seeds = {s.name: derive_seed(0, s.seed_key or s.name) for s in specs}
    assert seeds["none/bs=5"] == seeds["batchnorm/bs=5"] == seeds["groupnorm/bs=5"]
    assert seeds["batchnorm/bs=5"] != seeds["batchnorm/bs=10"]


def test_published_defaults():
    cfg = get_experiment("bn-vs-baseline").config_cls()
    assert (cfg.hidden_dims, cfg.num_training, cfg.weight_scale) == ((100,) * 5, 1000, 2e-2)
    assert (cfg.learning_rate, cfg.batch_size, cfg.num_epochs) == (1e-3, 50, 10)
    ws = get_experiment("weight-scale").config_cls()
    assert (ws.hidden_dims, ws.num_scales, ws.scale_min, ws.scale_max) == ((50,) * 7, 20, 1e-4, 1)
    bs = get_experiment("batch-size").config_cls()
    assert bs.batch_sizes == (5, 10, 50) and bs.learning_rate == 10**-3.5
    pm = get_experiment("paper-mnist").config_cls()
    assert (pm.hidden_dims, pm.batch_size, pm.num_steps) == ((100,) * 3, 60, 50_000)
    ma = get_experiment("mlp-adam").config_cls()
    assert (ma.hidden_dims, ma.learning_rate, ma.batch_size, ma.num_epochs) == (
        (32, 32), 0.01, 32, 10)  # fmt: skip
    assert get_experiment("small-batch").config_cls().batch_sizes == (2, 4, 8, 16, 32, 64)


def test_config_round_trip_and_assignments():
    cfg = TrainConfig(hidden_dims=(8, 4), normalization=None, weight_scale="he")
    d = config_to_dict(cfg)
    assert d["hidden_dims"] == [8, 4]
    assert config_from_dict(TrainConfig, json.loads(json.dumps(d))) == cfg
    assert parse_assignment(TrainConfig, "hidden_dims=3,5") == ("hidden_dims", (3, 5))
    assert parse_assignment(TrainConfig, "normalization=none") == ("normalization", None)
    assert parse_assignment(TrainConfig, "weight_scale=0.1") == ("weight_scale", 0.1)
    assert parse_assignment(TrainConfig, "weight_scale=xavier") == ("weight_scale", "xavier")
    assert parse_assignment(TrainConfig, "download=false") == ("download", False)
    with pytest.raises(ValueError, match="unknown TrainConfig setting 'nope'.*batch_size"):
        parse_assignment(TrainConfig, "nope=1")
    with pytest.raises(ValueError, match="expected batch_size to be an integer, got 'x'"):
        parse_assignment(TrainConfig, "batch_size=x")
    with pytest.raises(ValueError, match="unknown TrainConfig settings"):
        config_from_dict(TrainConfig, {"bogus": 1})


def test_curve_helpers():
    assert epochs_to_reach([0.1, 0.5, None, 0.91, 0.95], 0.9) == 3
    assert epochs_to_reach([0.1, 0.5], 0.9) is None
    assert auto_threshold(0.97) == 0.9 and auto_threshold(0.5) == 0.45
    assert finite([1.0, float("nan"), float("inf"), 2]) == [1.0, None, None, 2.0]


def test_divergence_is_recorded_not_raised():
    from normlab.experiments.training import load_data
    from normlab.models import FullyConnectedNet

    cfg = get_experiment("bn-vs-baseline").config_cls(dataset="digits")
    data = load_data(cfg, num_training=200)
    model = FullyConnectedNet([50] * 4, input_dim=64, weight_scale=3.0, seed=0)
    out = train_solver(
        model, data, 0, update_rule="sgd", optim_config={"learning_rate": 10.0},
        batch_size=50, num_epochs=3,
    )  # fmt: skip
    assert out["diverged"] is True
    assert out["final_train_loss"] is None and out["test_acc"] is None
    json.dumps(out, allow_nan=False)  # strict JSON: no NaN anywhere


def test_num_training_is_an_upper_bound():
    """A default sized for CIFAR-10 (small-batch: 10,000) gives all the digits have."""
    from normlab.experiments.config import ExperimentConfig
    from normlab.experiments.training import load_data

    config = ExperimentConfig(dataset="digits")
    full = load_data(config)
    capped = load_data(config, num_training=10_000)
    assert len(capped["X_train"]) == len(full["X_train"]) < 10_000
    assert len(load_data(config, num_training=100)["X_train"]) == 100
