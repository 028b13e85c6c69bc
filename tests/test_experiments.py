"""Experiments: every --quick mode through the CLI, curves in results.json, seeds, configs."""

import dataclasses
import json
import math
import re

import numpy as np
import pytest
from test_init_diagnostics import check_quick_results as check_init_diagnostics_quick
from test_landscape import check_quick_results as check_landscape_quick
from test_lr_stability import check_quick_results as check_lr_stability_quick
from test_noisy_bn import check_quick_results as check_noisy_bn_quick
from test_population_stats import check_quick_results as check_population_stats_quick

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


def _check_rmsnorm(res):
    _check_fc_curves(res)
    for name in res["config"]["normalizations"]:
        out = res["runs"][name]
        assert out["step_ms"] > 0 and out["steps_timed"] > 0
        _finite_list(out["step_ms_by_epoch"], res["config"]["num_epochs"])
    assert res["time_ratio"]["layernorm"] == 1.0 and res["time_ratio"]["rmsnorm"] > 0


def _check_renorm(res):
    cfg = res["config"]
    for name in res["variants"]:
        _finite_list(res["best_epoch_test_acc"][name], len(cfg["batch_sizes"]))
    assert "groupnorm+ws" in res["variants"]


def _check_ghost_bn(res):
    cfg = res["config"]
    assert res["ghost_sizes"] == list(cfg["ghost_sizes"])
    _finite_list(res["gap"], len(cfg["ghost_sizes"]))
    for v in cfg["ghost_sizes"]:
        _finite_list(res["runs"][f"ghostbatchnorm/v={v}"]["val_acc"], cfg["num_epochs"] + 1)


def _check_darknet_mismatch(res):
    cfg = res["config"]
    for key, errors in res["rel_error"].items():
        _finite_list(errors, len(cfg["batch_sizes"]))
        assert key in ("std=1", "std=0.001") and all(e > 0 for e in errors)
    for name in cfg["normalizations"]:
        _finite_list(res["runs"][name]["val_acc"], cfg["num_epochs"] + 1)


CHECKS = {
    "demo": _check_fc_curves,
    "bn-vs-baseline": _check_fc_curves,
    "weight-scale": _check_weight_scale,
    "batch-size": _check_batch_size,
    "paper-mnist": _check_paper_mnist,
    "mlp-adam": _check_mlp_adam,
    "small-batch": _check_small_batch,
    "rmsnorm": _check_rmsnorm,
    "darknet-mismatch": _check_darknet_mismatch,
    "renorm": _check_renorm,
    "ghost-bn": _check_ghost_bn,
    "init-diagnostics": check_init_diagnostics_quick,
    "noisy-bn": check_noisy_bn_quick,
    "lr-stability": check_lr_stability_quick,
    "landscape": check_landscape_quick,
    "population-stats": check_population_stats_quick,
}


def test_every_experiment_has_a_check():
    assert set(CHECKS) == set(EXPERIMENTS)


def _check_quick_run(name, out, stdout, stderr):
    """What a --quick run of experiment ``name`` wrote into ``out`` and printed."""
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
    assert stderr.count("/{}]".format(len(res["runs"]))) == len(res["runs"])
    assert f"report: {out / 'report.html'}" in stdout


@pytest.mark.parametrize("name", sorted(set(EXPERIMENTS) - {"demo"}))
def test_quick_mode_through_the_cli(name, tmp_path, capsys):
    out = tmp_path / name
    assert main(["experiment", name, "--quick", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    _check_quick_run(name, out, captured.out, captured.err)


def test_quick_demo_through_its_command(demo_run):
    """The demo through ``normlab demo --quick`` (conftest's run, which test_cli and test_report
    read too); ``normlab experiment NAME`` is the path of every other experiment above."""
    assert demo_run.rc == 0
    _check_quick_run("demo", demo_run.out, demo_run.stdout, demo_run.stderr)


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


# --- headlines: each experiment words its own, from its results ---------------------------------


def headline(results):
    """The headline the experiment named in ``results`` computes from them."""
    return get_experiment(results["experiment"]).headline(results)


def _curves_results(val_none, val_bn, threshold=0.9, epochs=4):
    return {
        "experiment": "bn-vs-baseline",
        "threshold": threshold,
        "config": {"num_epochs": epochs, "normalizations": ["none", "batchnorm"]},
        "runs": {"none": {"val_acc": val_none}, "batchnorm": {"val_acc": val_bn}},
    }


def test_curves_headline_wording():
    r = _curves_results([0.1, 0.5, 0.8, 0.92, 0.95], [0.1, 0.91, 0.95, 0.96, 0.97])
    assert headline(r) == (
        "Batch norm reached 0.90 validation accuracy in 1 epoch, the baseline in 3 epochs."
    )
    r = _curves_results([0.1, 0.2, 0.3, 0.4, 0.5], [0.1, 0.5, 0.92, 0.9, 0.9])
    assert headline(r) == (
        "Batch norm reached 0.90 validation accuracy in 2 epochs, "
        "the baseline did not reach it in 4 epochs."
    )


MEASURED_ON_MANY = {"run": {"num_val": 10**9, "num_test": 10**9}}  # noise far below 0.01


def test_batch_size_and_small_batch_headlines():
    r = {
        "experiment": "batch-size",
        "config": {},
        "runs": MEASURED_ON_MANY,
        "batch_sizes": [5, 10, 50],
        "best_val_acc": {"batchnorm": [0.6, 0.7, 0.8], "layernorm": [0.801, 0.79, 0.797]},
    }
    assert headline(r) == (
        "From batch size 50 to 5, best validation accuracy fell from 0.80 to 0.60 with batch "
        "norm (beyond noise, ±0.00) and went from 0.797 to 0.801 with layer norm (beyond noise, "
        "±0.00) "
        "(noise: 2 binomial standard errors, one seed)."
    )
    r = {
        "experiment": "small-batch",
        "config": {},
        "runs": MEASURED_ON_MANY,
        "batch_sizes": [2, 64],
        "best_epoch_test_acc": {"none": [0.5, 0.6], "groupnorm": [0.9, 0.91]},
    }
    assert headline(r).startswith(
        "From 64 images per batch to 2, test accuracy at the best validation epoch fell from "
        "0.60 to 0.50 without normalization (beyond noise, ±0.00) and fell from 0.91 to 0.90 with "
        "group norm"
    )
    r["runs"] = {"none": {"num_test": 300}}  # a 1-point fall on 300 images is noise
    assert "went from 0.91 to 0.90 with group norm (within noise, ±0.05)" in headline(r)


def test_weight_scale_headline_counts_scales():
    r = {
        "experiment": "weight-scale",
        "weight_scales": [1e-4, 1e-2, 1.0],
        "curves": {
            "none": {"best_val_acc": [0.1, 0.9, 0.3]},
            "batchnorm": {"best_val_acc": [0.85, 0.95, 0.8]},
        },
    }
    assert headline(r).startswith(
        "Best validation accuracy was at least 0.75 at 1 of 3 weight scales without "
        "normalization (scale 1.0e-02) and 3 of 3 weight scales with batch norm "
        "(scales 1.0e-04 to 1.0e+00)."
    )
    r.update(config={}, runs=MEASURED_ON_MANY)
    assert headline(r).endswith(
        "Batch norm's was higher beyond noise at 3, lower beyond noise at 0 and within noise at "
        "0 of the 3 scales than without normalization (noise: 2 binomial standard errors, one "
        "seed)."
    )


def test_curves_headline_names_divergence_and_ignores_epoch_0():
    r = _curves_results([0.1], [0.1, 0.5, 0.91, 0.92], threshold=0.9, epochs=3)
    r["runs"]["none"]["diverged"] = True
    assert headline(r) == (
        "Batch norm reached 0.90 validation accuracy in 2 epochs, the baseline diverged at epoch 1."
    )
    r = _curves_results([0.1, 0.1], [0.1, 0.1, 0.1], threshold=0.1, epochs=2)
    assert "in 0 epochs" not in headline(r)
    assert "never beat its untrained 0.10" in headline(r)


def test_headlines_when_a_value_stays_or_diverges():
    r = {
        "experiment": "small-batch",
        "config": {},
        "runs": MEASURED_ON_MANY,
        "batch_sizes": [2, 64],
        "best_epoch_test_acc": {
            "none": [0.8, 0.8],
            "batchnorm": [None, 0.9],
            "groupnorm": [0.9, 0.7],
        },
    }
    assert headline(r).startswith(
        "From 64 images per batch to 2, test accuracy at the best validation epoch stayed at "
        "0.80 without normalization (within noise, ±0.00), fell from 0.90 to n/a (diverged) with "
        "batch norm (no noise estimate) and rose from 0.70 to 0.90 with group norm (beyond "
        "noise, ±0.00)"
    )


def test_weight_scale_headline_lists_scales_that_are_not_contiguous():
    r = {
        "experiment": "weight-scale",
        "weight_scales": [1e-4, 1e-2, 1.0],
        "curves": {"none": {"best_val_acc": [0.9, 0.1, 0.9]}},
    }
    assert headline(r).endswith("(scales 1.0e-04 and 1.0e+00).")


def test_diverged_mlp_adam_and_paper_mnist_headlines():
    r = {
        "experiment": "mlp-adam",
        "config": {"num_epochs": 3, "normalizations": ["none", "batchnorm"]},
        "runs": {
            "none": {"val_loss": [], "val_acc": [0.1], "diverged": True},
            "batchnorm": {"val_loss": [0.5, 0.4], "val_acc": [0.1, 0.8, 0.9], "diverged": False},
        },
    }
    assert headline(r) == (
        "After 3 epochs, the validation loss was 0.400 with batch norm (accuracy 0.900); "
        "the run without normalization diverged at epoch 1."
    )
    r = {
        "experiment": "paper-mnist",
        "config": {"normalizations": ["none"]},
        "runs": {"none": {"steps": [10, 20], "final_test_acc": 0.1, "diverged": True}},
    }
    assert headline(r) == "The run without normalization diverged."


# --- declarations, configs, the shared builder and loader ---------------------------------------


def test_every_experiment_declares_its_figures_as_data():
    from normlab.report.figures import PANELS

    for exp in EXPERIMENTS.values():
        specs = exp.figures(exp.quick(exp.config_cls()))
        assert json.loads(json.dumps(specs)) == specs, exp.name  # plain JSON
        names = [s["name"] for s in specs]
        assert names and len(set(names)) == len(names), exp.name
        assert {p["kind"] for s in specs for p in s["panels"]} <= set(PANELS), exp.name


def _fields(cls):
    return {f.name: f for f in dataclasses.fields(cls)}


def test_configs_declare_a_shared_setting_once():
    from normlab.experiments.config import ExperimentConfig

    base = _fields(ExperimentConfig)
    for exp in EXPERIMENTS.values():
        fields = _fields(exp.config_cls)
        assert list(fields)[: len(base)] == list(base), exp.name  # its place (and flag) kept
        for name in ("dataset", "normalizations", "seed"):
            assert fields[name].metadata["help"] == base[name].metadata["help"], exp.name
    dataset = {e.name: e.config_cls().dataset for e in EXPERIMENTS.values()}
    assert dataset == {
        "demo": "digits", "bn-vs-baseline": "cifar10", "weight-scale": "cifar10",
        "batch-size": "cifar10", "paper-mnist": "mnist", "mlp-adam": "mnist",
        "small-batch": "cifar10", "rmsnorm": "fashion-mnist", "darknet-mismatch": "fashion-mnist",
        "renorm": "cifar10", "ghost-bn": "fashion-mnist",
        "noisy-bn": "fashion-mnist", "lr-stability": "fashion-mnist",
        "landscape": "fashion-mnist", "population-stats": "fashion-mnist",
        "init-diagnostics": "fashion-mnist",
    }  # fmt: skip
    assert _fields(TrainConfig)["dataset"].metadata == base["dataset"].metadata


@pytest.mark.parametrize(
    "name, settings, message",
    [
        ("demo", {"num_epochs": 0}, "DemoConfig: expected num_epochs >= 1, got 0"),
        ("batch-size", {"batch_sizes": (5, 0)}, "expected batch_sizes >= 1, got (5, 0)"),
        ("batch-size", {"batch_sizes": ()}, "expected at least one entry in batch_sizes, got ()"),
        ("small-batch", {"batch_sizes": ()}, "expected at least one entry in batch_sizes"),
        ("demo", {"normalizations": ()}, "expected at least one entry in normalizations"),
        ("mlp-adam", {"normalizations": ("batchnorm", "bogus")},
         "unknown normalization 'bogus' in normalizations; known: none, batchnorm"),
        ("bn-vs-baseline", {"learning_rate": 0.0}, "expected learning_rate > 0, got 0.0"),
        ("mlp-adam", {"weight_scale": -1.0}, "expected weight_scale > 0, got -1.0"),
        ("small-batch", {"base_lr": -0.1}, "expected base_lr > 0, got -0.1"),
        ("weight-scale", {"scale_min": 0.0}, "expected scale_min > 0, got 0.0"),
        ("weight-scale", {"num_scales": 0}, "expected num_scales >= 1, got 0"),
        ("paper-mnist", {"eval_every": 0}, "expected eval_every >= 1, got 0"),
        ("paper-mnist", {"unit": 100},
         "PaperMNISTConfig: expected 0 <= unit < 100 (last hidden width), got 100"),
        ("paper-mnist", {"unit": -1}, "expected 0 <= unit < 100 (last hidden width), got -1"),
        ("small-batch", {"hidden_dims": (64, 0)}, "expected hidden_dims >= 1, got (64, 0)"),
    ],
)  # fmt: skip
def test_configs_validate_themselves(name, settings, message):
    cls = get_experiment(name).config_cls
    with pytest.raises(ValueError, match=re.escape(message)):
        cls(**settings)


def test_what_configs_accept():
    pm = get_experiment("paper-mnist").config_cls(unit=0, seed=0)  # an index and a seed: 0 is fine
    assert pm.unit == 0
    assert get_experiment("small-batch").config_cls(weight_scale="xavier").weight_scale == "xavier"
    assert get_experiment("demo").config_cls(threshold=0.0).threshold == 0.0


def test_one_model_builder():
    from normlab.experiments.training import build_model, load_data, split_seed
    from normlab.models import ConvNet, FullyConnectedNet

    data = load_data(get_experiment("demo").config_cls())
    fc, solver_seed = build_model(data, 7, "none", hidden_dims=(8,))
    assert isinstance(fc, FullyConnectedNet) and fc.normalization is None
    assert fc.params["W1"].shape == (64, 8) and solver_seed == split_seed(7)[1]
    twin, _ = build_model(data, 7, None, hidden_dims=(8,))
    np.testing.assert_array_equal(twin.params["W1"], fc.params["W1"])  # seeded: same weights
    conv, _ = build_model(data, 7, "groupnorm", "conv", num_filters=(4,), hidden_dims=(8,))
    assert isinstance(conv, ConvNet) and conv.normalization == "groupnorm"
    with pytest.raises(ValueError, match=r"unknown model 'mlp'; known models are \['fc', 'conv'\]"):
        build_model(data, 7, "none", "mlp")


def test_the_loader_is_cached_and_read_only():
    from normlab.experiments.config import ExperimentConfig
    from normlab.experiments.training import load_data

    config = ExperimentConfig(dataset="digits")
    data = load_data(config, num_training=100)
    assert load_data(config, num_training=100) is data
    assert not data["X_train"].flags.writeable
    with pytest.raises(ValueError, match="num_training"):  # exact: normlab train's sizes
        load_data(config, num_training=10_000, at_most=False)


def test_train_builds_through_the_shared_builder_and_loader():
    from normlab.experiments import train as train_mod
    from normlab.experiments.training import load_data

    config = TrainConfig(hidden_dims=(8,), num_training=100, normalization=None)
    data = train_mod.load_train_data(config)
    assert data is load_data(config, 100, None, at_most=False) and len(data["X_train"]) == 100
    model, _ = train_mod.build_model(config, data)
    assert model.normalization is None and model.params["W1"].shape == (64, 8)
    conv, _ = train_mod.build_model(
        dataclasses.replace(config, model="conv", num_filters=(4,)), data
    )
    assert conv.get_config()["num_filters"] == [4]


def test_vocabulary():
    from normlab import vocab

    assert vocab.run_name("batchnorm", bs=5) == "batchnorm/bs=5"
    assert vocab.run_name("none", scale=3) == "none/scale=3"
    assert [vocab.label(n) for n in ("none", "batchnorm", "mystery")] == [
        "no normalization", "batch norm", "mystery"]  # fmt: skip
    assert vocab.short_label("none") == "none" and vocab.color("mystery") is None
