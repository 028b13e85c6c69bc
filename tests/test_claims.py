"""normlab claims: the verdict logic, the table, every claim's measure on results shaped by its
experiment's own summary, and the command end to end."""

import contextlib
import io
import json
import math

import pytest

from normlab.claims import CLAIMS, FAILS, HOLDS, INCONCLUSIVE, VERDICTS, ClaimsConfig, plan
from normlab.claims.measures import larger_learning_rate
from normlab.claims.run import claim_row, measured_text, task_specs, verdict_table
from normlab.claims.verdict import all_of, beyond, greater, matches
from normlab.experiments import get_experiment, runner
from normlab.experiments.runner import RunResult

# -- the verdict logic ---------------------------------------------------------------------------


def test_greater_holds_fails_and_is_inconclusive_by_the_interval():
    high, low = [0.90, 0.91, 0.92], [0.50, 0.52, 0.51]
    assert greater(high, low, "bn", "none", n_eval=1000).verdict == HOLDS
    assert greater(low, high, "none", "bn", n_eval=1000).verdict == FAILS
    # 0.01 apart with a seeds' spread of 0.05: within noise either way
    noisy_a, noisy_b = [0.80, 0.85, 0.90], [0.79, 0.86, 0.88]
    f = greater(noisy_a, noisy_b, "a", "b")
    assert f.verdict == INCONCLUSIVE and "within noise" in f.reason
    assert f.difference["value"] == pytest.approx(0.0067, abs=1e-4)
    assert f.measured[0] == {"label": "a", "mean": 0.85, "spread": pytest.approx(0.05), "seeds": 3}


def test_one_seed_or_no_scores_is_inconclusive_whatever_the_gap():
    f = greater([0.99], [0.10], "bn", "none", n_eval=100_000)
    assert f.verdict == INCONCLUSIVE and "one seed" in f.reason
    assert f.measured[0]["spread"] is None
    assert f.difference["bound"] is None  # a binomial-only bound is not the training's noise
    gone = greater([None, None], [0.5, 0.6], "bn", "none")
    assert gone.verdict == INCONCLUSIVE and "no scores" in gone.reason


def test_the_binomial_term_can_make_a_clear_seed_difference_inconclusive():
    # identical per-seed offsets: no spread, but 0.02 apart on 100 images is within noise
    a, b = [0.80, 0.81, 0.82], [0.78, 0.79, 0.80]
    assert greater(a, b, "a", "b").verdict == HOLDS
    assert greater(a, b, "a", "b", n_eval=100).verdict == INCONCLUSIVE


def test_beyond_a_level():
    assert beyond([0.80, 0.82, 0.81], 1.0, "ratio", above=False).verdict == HOLDS
    assert beyond([1.20, 1.22, 1.21], 1.0, "ratio", above=False).verdict == FAILS
    assert beyond([0.9, 1.1, 1.0], 1.0, "ratio", above=False).verdict == INCONCLUSIVE
    # an accuracy's binomial error widens the bound: 0.52 on 100 images is not above 0.5
    assert beyond([0.52, 0.52, 0.52], 0.5, "acc", above=True).verdict == HOLDS
    assert beyond([0.52, 0.52, 0.52], 0.5, "acc", above=True, n_eval=100).verdict == INCONCLUSIVE


def test_matches_needs_the_whole_interval_inside_the_margin():
    base = [0.850, 0.860, 0.855]
    inside = [0.851, 0.862, 0.854]
    assert matches(base, inside, "ln", "rms", 0.02).verdict == HOLDS
    outside = [0.800, 0.810, 0.805]
    assert matches(base, outside, "ln", "rms", 0.02).verdict == FAILS
    straddles = [0.835, 0.850, 0.830]  # about 0.018 below with a spread of its own
    f = matches(base, straddles, "ln", "rms", 0.02)
    assert f.verdict == INCONCLUSIVE and "straddles" in f.reason
    assert matches(base[:1], inside[:1], "ln", "rms", 0.02).verdict == INCONCLUSIVE
    with pytest.raises(ValueError, match="margin > 0"):
        matches(base, inside, "ln", "rms", 0.0)


def test_all_of():
    h = greater([0.9, 0.91, 0.92], [0.5, 0.5, 0.51], "a", "b")
    f = greater([0.5, 0.5, 0.51], [0.9, 0.91, 0.92], "b", "a")
    i = greater([0.9], [0.5], "a", "b")
    assert all_of([("x", h), ("y", h)]).verdict == HOLDS
    assert all_of([("x", h), ("y", i)]).verdict == INCONCLUSIVE
    assert all_of([("x", i), ("y", f)]).verdict == FAILS
    both = all_of([("x", h), ("y", f)])
    assert [m["label"] for m in both.measured] == ["a", "b"]  # shared numbers listed once
    assert both.reason.startswith("x: holds")
    with pytest.raises(ValueError, match="at least one part"):
        all_of([])


# -- every claim's measure, on results its experiment's own summary shapes ----------------------

SEEDS = 3


def _fake_output(experiment: str, params: dict, k: int, flip: bool) -> dict:
    """A run output with the keys its experiment's ``run_task`` writes, numbers chosen so that
    the claim the experiment tests holds (``flip``: the opposite), with a spread over seeds."""
    norm = params.get("normalization", "ghostbatchnorm")
    jitter = 0.003 * (k - 1) * (2 if norm == "batchnorm" else 1)
    acc, train, step_ms = 0.80, 0.90, 1.0
    median = [0.0] * 5
    good, bad = (0.8, 0.3) if not flip else (0.3, 0.8)
    if experiment == "bn-vs-baseline":
        acc = good if norm == "batchnorm" else bad
    if experiment == "paper-mnist":
        drift = 2.0 if (norm == "none") != flip else 0.1
        median = [-drift * i / 4 + jitter for i in range(5)]
    if experiment == "weight-scale":
        off = abs(math.log10(params["weight_scale"]) + 2) / 10
        acc = 0.8 - off if (norm == "none") != flip else 0.8 - off / 20
    if experiment == "renorm":
        small = params["batch_size"] <= 4  # the smallest of the sweep
        if small and norm == "batchnorm":
            acc = good - 0.1 if not flip else 0.85
        elif small and norm == "batchrenorm":
            acc = 0.75 if not flip else 0.6
        elif small and flip:
            acc = 0.5
    if experiment == "ghost-bn":
        big = params["virtual_batch_size"] >= 256  # the whole batch: plain batch norm
        train, acc = 0.95, (0.80 if big != flip else 0.88)
    if experiment == "rmsnorm":
        step_ms = (0.8 if not flip else 1.3) if norm == "rmsnorm" else 1.0
        acc = 0.85 if norm == "layernorm" or not flip else 0.75
    extra = {}
    if experiment == "landscape":  # smoother with batch norm: smaller band, change, beta
        scale = (
            (0.3 if norm == "batchnorm" else 1.0) if not flip else (2.0 if norm != "none" else 1)
        )
        extra = {
            f"median_{m}": scale * (1 + jitter) * (1 + params["learning_rate"])
            for m in ("band", "predictiveness", "beta")
        }
    if experiment == "noisy-bn":
        acc = {"none": bad, "batchnorm": 0.85, "noisybatchnorm": 0.85 if not flip else 0.5}[norm]
        extra = {"shift": 0.5 if norm == "noisybatchnorm" else 0.05, "shift_by_layer": [0.1]}
    if experiment == "lr-stability":  # trains (low final loss) up to 1 with BN, 0.03 without
        top = 1.0 if (norm == "batchnorm") != flip else 0.03
        extra = {
            "final_train_loss": 0.5 if params["learning_rate"] <= top else 2.3,
            "act_log10_std": [0.0, 0.1],
            "num_classes": 10,
            "layers": 2,
        }
    if experiment == "population-stats":
        ema, precise = (0.80, 0.84) if not flip else (0.84, 0.80)
        v = params.get("virtual_batch_size", 128)
        pop = 0.30 if v == 2 and not flip else 0.10
        extra = {
            "test_acc_ema": {"0.9": [ema + jitter], "0.99": [ema], "0.999": [ema]},
            "test_acc_precise": {str(n): [precise + jitter] for n in (100, 1000, 10000)},
            "epochs": [1],
            "train_error_batch_stats": 0.1,
            "val_error_batch_stats": 0.12 + jitter,
            "val_error_population_stats": pop + 2 * jitter,
            "val_error_ema": pop,
            "num_val_population": 5000,
        }
    if experiment == "init-diagnostics":  # bad init saturated, batch norm from it is not
        saturated = (norm == "none") != flip and params["weight_scale"] != "kaiming"
        sat = 0.9 if saturated else 0.05
        acc = 0.3 if saturated else 0.8
        hidden = {"activation": "tanh", "saturation": [sat + jitter, sat]}
        extra = {
            "diagnostics": {
                "layers": {"1": hidden, "2": hidden, "3": {"activation": None, "saturation": []}},
                "iterations": [0, 10],
                "params": {"W1": {"update_data_log10": [-3.0, -3.0]}},
            }
        }
    acc += jitter
    epochs = [0.1, *[acc] * 3]
    curve = experiment == "paper-mnist"  # its test_acc is the curve at every measured step
    return {
        "loss": [1.0, 0.8, 0.6],
        "train_acc": [0.1, *[train] * 3],
        "val_acc": epochs,
        "best_val_acc": acc,
        "final_val_acc": acc,
        "best_train_acc": train,
        "final_train_loss": 0.5,
        "test_acc": [0.1, 0.5, acc, acc, acc] if curve else acc,
        "iterations_per_epoch": 10,
        "diverged": False,
        "num_val": 1000,
        "num_test": 10_000,
        "num_train_eval": 10_000,
        "data_dir": None,
        "steps": [100, 200, 300, 400, 500],
        "final_test_acc": acc,
        "percentiles": {"15": [m - 1 for m in median], "50": median, "85": [m + 1 for m in median]},
        "step_ms": step_ms * (1 + jitter),
        "step_ms_by_epoch": [step_ms] * 3,
        "cpu": "test CPU",
        "backend": "numba",
        **{k: v for k, v in params.items() if k != "normalization"},
        **extra,
    }


def _study_results(seeds: int, flip: bool) -> dict:
    """Every study's results, summarized by its experiment from fake run outputs."""
    studies = plan(ClaimsConfig(seeds=seeds))
    out = {}
    for key, study in studies.items():
        exp = get_experiment(study.experiment)
        done = {}
        for spec in runner.task_specs(exp, study.config):
            k = int(spec.name.rpartition("seed=")[2] or 0) if "seed=" in spec.name else 0
            output = _fake_output(study.experiment, spec.params, k, flip)
            done[spec.name] = RunResult(spec.name, output, 1.0)
        out[key] = (study, runner.collect(exp, study.config, done))
    return out


@pytest.fixture(scope="module")
def studies():
    return {flip: _study_results(SEEDS, flip) for flip in (False, True)}


@pytest.mark.parametrize("claim", CLAIMS, ids=lambda c: c.name)
def test_every_claim_measures_its_experiments_results(claim, studies):
    rows = {}
    for flip in (False, True):
        key = next(k for k, (s, _) in studies[flip].items() if claim.name in s.claims)
        study, results = studies[flip][key]
        rows[flip] = claim_row(claim, study, results)
    assert rows[False]["verdict"] == HOLDS, rows[False]["reason"]
    assert rows[True]["verdict"] == FAILS, rows[True]["reason"]
    row = rows[False]
    assert row["dataset"] == study.config.dataset and row["seeds"] == SEEDS
    assert all(m["seeds"] == SEEDS and m["mean"] is not None for m in row["measured"])
    json.dumps(row, allow_nan=False)  # what results.json stores


def test_one_seed_gives_no_verdict():
    for study, results in _study_results(1, False).values():
        for claim in (c for c in CLAIMS if c.name in study.claims):
            row = claim_row(claim, study, results)
            assert row["verdict"] == INCONCLUSIVE and "one seed" in row["reason"], claim.name


def test_small_batch_drops_carry_the_binomial_error_of_their_four_accuracies():
    from normlab.claims.measures import small_batch_degrades

    def results(n_test):
        bn_lo, other_lo = (0.800, 0.801, 0.799), 0.830  # drops 0.10 vs 0.07, seeds agree
        per_seed = [
            {"best_epoch_test_acc": {"batchnorm": [lo, 0.9], "layernorm": [other_lo, 0.9],
                                     "groupnorm": [other_lo, 0.9]}}
            for lo in bn_lo
        ]  # fmt: skip
        runs = {"r": {"num_test": n_test}}
        return {"batch_sizes": [2, 64], "seeds": 3, "per_seed": per_seed, "runs": runs}

    # a difference of drops of 0.03: beyond the seeds' spread, within the binomial error of
    # four accuracies on 1,000 images (2 * sqrt(sum se^2) ~ 0.04), clear on 10^6
    small = small_batch_degrades(results(1000))
    assert small.verdict == INCONCLUSIVE and "drop BN - drop layer norm" in small.reason
    assert small_batch_degrades(results(10**6)).verdict == HOLDS


def test_a_net_that_fails_at_every_weight_scale_is_not_insensitive():
    from normlab.claims.measures import weight_scale_insensitive

    # without normalization chance at every scale (flat), batch norm good at most scales
    per_seed = [
        {"curves": {"none": {"best_val_acc": [0.10 + j, 0.11, 0.10]},
                    "batchnorm": {"best_val_acc": [0.80, 0.85 + j, 0.60]}}}
        for j in (0.0, 0.005, -0.004)
    ]  # fmt: skip
    finding = weight_scale_insensitive({"seeds": 3, "per_seed": per_seed})
    assert finding.verdict == HOLDS, finding.reason  # from each net's own best: does not hold


def test_evaluation_sizes_come_from_the_runs_that_have_them():
    from normlab.experiments.noise import eval_size

    # population-stats: the first run (EMA vs precise) has no num_val_population
    runs = {"stats": {"num_test": 10_000}, "v=2": {"num_val_population": 5000}}
    assert eval_size({"runs": runs}, "num_val_population") == 5000
    assert eval_size({"runs": runs}, "num_test") == 10_000
    assert eval_size({"runs": runs}, "num_val") is None


def test_claims_of_one_experiment_and_setting_share_its_runs():
    config = ClaimsConfig(seeds=2, only=("bn-small-batch", "renorm-small-batch"))
    studies = plan(config)
    assert list(studies) == ["renorm"]
    assert studies["renorm"].claims == ("bn-small-batch", "renorm-small-batch")
    specs = task_specs(studies)
    alone = runner.task_specs(get_experiment("renorm"), studies["renorm"].config)
    assert [s.name for s in specs] == [f"renorm:{s.name}" for s in alone]
    # the same seed key, so the same seeds as `normlab experiment renorm` with these settings
    assert [s.seed_key for s in specs] == [s.seed_key or s.name for s in alone]


def test_the_readme_lists_every_claim():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    missing = [c.name for c in CLAIMS if f"`{c.name}`" not in readme]
    assert not missing, f"README.md's claims table lacks {missing}"


def test_unknown_claims_are_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="unknown claim 'nope'; known claims are bn-trains"):
        ClaimsConfig(only=("nope",))
    with pytest.raises(ValueError, match="seeds an integer >= 1"):
        ClaimsConfig(seeds=0)


# -- the table -----------------------------------------------------------------------------------


def test_measured_text_and_table():
    f = greater([0.90, 0.91, 0.92], [0.50, 0.52, 0.51], "batch norm", "none", n_eval=1000)
    row = {"claim": "c", "source": "s", "setting": "x on y", **f.to_dict()}
    text = measured_text(row)
    assert text.startswith("batch norm 0.910 ± 0.010; none 0.510 ± 0.010; difference 0.400 ± ")
    assert text.endswith("(95%)")
    one = {**row, **greater([0.9], [0.5], "a", "b").to_dict()}
    assert measured_text(one) == "a 0.900; b 0.500; difference 0.400 no noise estimate"
    table = verdict_table([row], 3)
    assert table["columns"][3] == "measured (mean ± std over 3 seeds)"
    assert table["rows"] == [["c", "s", "x on y", text, "holds"]]


# -- the command ---------------------------------------------------------------------------------


def _main(argv):
    from normlab.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main(argv)
    return rc, stdout.getvalue(), stderr.getvalue()


def test_bad_only_and_diagnostics_are_refused_before_any_run(tmp_path):
    out = tmp_path / "claims"
    for argv, expected in (
        (["--only", ","], "expected --only a comma-separated list of claim names, got ','"),
        (["--only", ""], "expected --only a comma-separated list of claim names, got ''"),
        (["--diagnostics", "0"], "expected diagnostics an integer >= 1"),
    ):
        rc, _, stderr = _main(["claims", *argv, "--out", str(out)])
        assert rc != 0 and expected in stderr, stderr
    assert not out.exists()  # nothing ran (an empty --only once meant every claim, full size)


def test_claims_quick_end_to_end(tmp_path):
    from normlab.report import load_results

    out = tmp_path / "claims"
    argv = ["claims", "--quick", "--only", "bn-trains-faster", "--seeds", "2", "--out", str(out)]
    rc, stdout, stderr = _main(argv)
    assert rc == 0, stderr
    assert "1 claim from 1 experiment, 4 runs (quick, on the digits)" in stderr
    first = stdout.strip().splitlines()[0]
    assert first.split()[0] == "1" and "Batch norm trains faster" in first
    assert "bn-vs-baseline on digits" in stdout and f"report: {out / 'report.html'}" in stdout
    results = load_results(out)
    (row,) = results["claims"]
    assert row["verdict"] in VERDICTS and row["seeds"] == 2 and len(row["measured"]) == 2
    assert row["setting"].endswith("; quick variant, too short to conclude)")  # every row says so
    assert results["headline"] in stdout
    study = results["studies"]["bn-vs-baseline"]
    assert len(study["runs"]) == 4 and len(list((out / "runs").glob("*.json"))) == 4
    page = (out / "report.html").read_text()
    assert page.index("<h2>Verdicts</h2>") < page.index('id="bn-trains-faster"')
    assert page.index('id="bn-trains-faster"') < page.index("data:image/png;base64,")
    # the finished runs are kept: --resume reruns none; the report redraws from results.json
    rc, _, stderr = _main([*argv, "--resume"])
    assert rc == 0 and "4 kept from" in stderr and "[" not in stderr.split("kept")[1]
    (out / "report.html").unlink()
    assert _main(["report", str(out)])[0] == 0 and (out / "report.html").is_file()
    # another command's folder is refused; --list names every claim
    rc, _, stderr = _main(["experiment", "demo", "--quick", "--out", str(out)])
    assert rc == 2 and "already holds a previous run" in stderr
    rc, stdout, _ = _main(["claims", "--list"])
    assert rc == 0 and all(c.name in stdout for c in CLAIMS)


def test_claims_on_a_dask_cluster_give_the_experiments_own_numbers():
    distributed = pytest.importorskip("distributed")
    from normlab.claims import run_claims
    from normlab.experiments import run_experiment

    config = ClaimsConfig(quick=True, only=("bn-trains-faster",))
    with distributed.LocalCluster(
        n_workers=2, processes=False, threads_per_worker=1, dashboard_address=None
    ) as cluster:
        remote = run_claims(config, scheduler=cluster.scheduler_address)
    assert remote["scheduler"] == cluster.scheduler_address
    # the study is `normlab experiment bn-vs-baseline --quick`, run here: the same seeds
    study = plan(config)["bn-vs-baseline"]
    alone = run_experiment(get_experiment("bn-vs-baseline"), study.config)
    strip = runner.strip_timings
    assert strip(remote["studies"]["bn-vs-baseline"]) == strip(alone)


def test_diagnostics_reach_every_study_only_when_asked():
    own = get_experiment("init-diagnostics").config_cls().diagnostics
    assert plan(ClaimsConfig())["init-diagnostics"].config.diagnostics == own
    assert {s.config.diagnostics for s in plan(ClaimsConfig(diagnostics=7)).values()} == {7}


def test_larger_learning_rate_counts_a_seed_that_trained_at_no_rate():
    """A baseline that trains at no rate of the grid is the strongest evidence for the claim:
    it counts one grid step below the smallest rate instead of being dropped."""
    per_seed = [
        {"log10_largest_trainable_lr": {"batchnorm": bn, "none": None}} for bn in (0.0, 0.0, 0.5)
    ]
    results = {"learning_rates": [0.01, 0.1, 1.0, 10.0], "per_seed": per_seed}
    finding = larger_learning_rate(results)
    assert finding.verdict == "holds", finding.reason
    assert finding.difference["value"] == pytest.approx(3.0 + 0.5 / 3)  # none at log10 = -3


def test_a_quick_variant_never_concludes(studies):
    """A quick run's numbers may point one way, but it is too short to conclude: the row is
    inconclusive and its reason says where the numbers point."""
    import dataclasses

    claim = next(c for c in CLAIMS if c.name == "bn-trains-faster")
    study, results = next(v for v in studies[False].values() if claim.name in v[0].claims)
    assert claim_row(claim, study, results)["verdict"] == HOLDS
    quick = dataclasses.replace(study, config=dataclasses.replace(study.config, quick=True))
    row = claim_row(claim, quick, results)
    assert row["verdict"] == INCONCLUSIVE
    assert row["reason"].startswith("quick variant, too short to conclude; its numbers point to")
