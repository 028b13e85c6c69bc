"""Seeds and honest headlines: runs repeated per seed, summaries folded into mean and spread,
tables and figures that show the spread, and headlines that state a difference only beyond
noise (issue 10, item 5)."""

from __future__ import annotations

import dataclasses
import math
import statistics

import numpy as np
import pytest

from normlab.experiments import EXPERIMENTS, derive_seed
from normlab.experiments.base import RunSpec
from normlab.experiments.config import config_to_dict
from normlab.experiments.noise import binomial_se, difference, qualify
from normlab.experiments.runner import summarize_runs, task_specs
from normlab.experiments.seeds import combine, expand, fold
from normlab.report import text_table
from normlab.report.figures import _mean_std, make_figures
from normlab.vocab import seed_outputs, seed_run_name

# ------------------------------------------------------------------ tasks per seed


def test_one_seed_leaves_the_runs_as_they_are():
    specs = [RunSpec("none", {"normalization": "none"}, seed_key="net")]
    assert expand(specs, 1) == specs


def test_seed_zero_is_the_one_seed_run_and_pairs_stay_paired():
    specs = [
        RunSpec("none", {"normalization": "none"}, seed_key="net"),
        RunSpec("batchnorm", {"normalization": "batchnorm"}, seed_key="net"),
    ]
    tasks = expand(specs, 3)
    assert [t.name for t in tasks] == [
        f"{n}/seed={k}" for k in range(3) for n in ("none", "batchnorm")
    ]
    keys = {t.name: t.seed_key for t in tasks}
    assert keys["none/seed=0"] == keys["batchnorm/seed=0"] == "net"  # the one-seed run's seed
    for k in (1, 2):  # paired at every seed, and every seed its own
        assert keys[f"none/seed={k}"] == keys[f"batchnorm/seed={k}"]
    seeds = {derive_seed(0, keys[f"none/seed={k}"]) for k in range(3)}
    assert len(seeds) == 3
    assert all(t.params == s.params for t, s in zip(tasks, specs * 3, strict=True))


def test_task_specs_follow_the_config():
    exp = EXPERIMENTS["batch-size"]
    config = exp.quick(exp.config_cls(dataset="digits", seeds=2))
    assert len(task_specs(exp, config)) == 2 * len(exp.runs(config))
    with pytest.raises(ValueError, match="seeds >= 1"):
        exp.config_cls(seeds=0)


# ------------------------------------------------------------------ folding the summaries


def test_fold_means_spreads_and_counts():
    trees = [
        {"acc": [0.5, 0.7, 0.1], "bs": [5, 50], "label": "a", "diverged": [False, True]},
        {"acc": [0.7, None, 0.3], "bs": [5, 50], "label": "a", "diverged": [False, False]},
        {"acc": [0.9, 0.8], "bs": [5, 50], "label": "a", "diverged": [False, False]},
    ]
    mean, spread, count = fold(trees)
    np.testing.assert_allclose(mean["acc"], [0.7, 0.75, 0.2])
    np.testing.assert_allclose(spread["acc"][:2], [0.2, statistics.stdev([0.7, 0.8])])
    assert spread["acc"][2] == pytest.approx(statistics.stdev([0.1, 0.3]))
    assert count["acc"] == [3, 2, 2]  # a None and a shorter curve are missing values
    assert mean["bs"] == [5, 50] and all(isinstance(b, int) for b in mean["bs"])  # settings
    assert mean["label"] == "a" and spread["label"] is None
    assert mean["diverged"] == [False, True]  # any seed's divergence shows


def test_combine_keeps_every_seed_and_the_table_spread():
    def summary(v):
        return {"best": {"bn": v}, "table": {"columns": ["norm", "acc"], "rows": [["bn", v]]}}

    one = summary(0.5)
    assert combine([one]) is one
    both = combine([summary(0.5), summary(0.7), summary(None)])
    assert both["best"]["bn"] == pytest.approx(0.6)
    assert both["spread"]["best"]["bn"] == pytest.approx(statistics.stdev([0.5, 0.7]))
    assert [s["best"]["bn"] for s in both["per_seed"]] == [0.5, 0.7, None]
    table = both["table"]
    assert table["seeds"] == 3 and table["count"][0][1] == 2
    assert text_table(table).splitlines()[-1].split() == ["bn", "0.600", "±", "0.141", "(2",
                                                          "of", "3)"]  # fmt: skip


# ------------------------------------------------------------------ the noise bound


def test_one_seed_bound_is_the_binomial_standard_error():
    d = difference([0.52], [0.48], n_eval=300)
    se = math.hypot(binomial_se(0.52, 300), binomial_se(0.48, 300))
    assert d.bound == pytest.approx(2 * se) and not d.clear  # 2 images in 100: noise
    assert difference([0.60], [0.48], n_eval=300).clear
    assert difference([0.60], [0.48]).bound is None  # no seeds, no size: no claim
    assert not difference([0.60], [0.48]).clear


def test_paired_seeds_cancel_what_the_pairs_share():
    a = [0.50, 0.60, 0.70, 0.80]
    b = [0.52, 0.62, 0.72, 0.82]  # always 0.02 higher; the seeds alone spread by 0.13
    assert difference(a, b, paired=True).clear
    assert not difference(a, b, paired=False).clear
    d = difference(a, b, paired=False)
    q = 3.1824463052837078  # t(0.975, 3): 4 seeds a side, the smaller side's dof (cautious)
    assert d.bound == pytest.approx(q * math.sqrt(2 * statistics.variance(a) / 4))


def test_quick_runs_say_they_are_too_short_unless_clear():
    within, clear = difference([0.5], [0.51], 100), difference([0.2], [0.9], 100)
    assert qualify("A rose.", [within], quick=True).startswith("Quick run, too short")
    assert qualify("A rose.", [within, clear], quick=True).startswith("Quick run")
    assert qualify("A rose.", [within], quick=False) == "A rose."


# ------------------------------------------------------------------ headlines with seeds


def sweep_results(exp, config, best_val):
    """Synthetic batch-sweep results: ``best_val[norm][bs]`` the best validation accuracies of
    the seeds (one list per batch size)."""
    outputs, seconds = {}, {}
    for k in range(config.seeds):
        for spec in exp.runs(config):
            n, b = spec.params["normalization"], spec.params["batch_size"]
            acc = best_val[n][b][k]
            name = seed_run_name(spec.name, k, config.seeds)
            outputs[name] = {"val_acc": [0.1, acc], "train_acc": [0.1, acc], "best_val_acc": acc,
                             "final_val_acc": acc, "test_acc": acc, "num_val": 1000,
                             "num_test": 1000, "batch_size": b}  # fmt: skip
            seconds[name] = 1.0
    summary = summarize_runs(exp, config, outputs, seconds)
    return {"config": config_to_dict(config), "seeds": config.seeds, "runs": outputs, **summary}


@pytest.mark.parametrize("name", ["batch-size", "small-batch"])
def test_a_trend_inside_the_seed_spread_is_within_noise(name):
    exp = EXPERIMENTS[name]
    config = exp.config_cls(seeds=3, normalizations=("none", "batchnorm"), batch_sizes=(5, 50))
    spread = {5: [0.50, 0.70, 0.90], 50: [0.60, 0.80, 0.62]}  # means 0.70 -> 0.673: noise
    clear = {5: [0.40, 0.41, 0.42], 50: [0.80, 0.81, 0.82]}  # 0.81 -> 0.41: a finding
    results = sweep_results(exp, config, {"none": spread, "batchnorm": clear})
    headline = exp.headline(results)
    assert "went from 0.67 to 0.70 without normalization (within noise, ±" in headline
    assert "fell from 0.81 to 0.41 with batch norm (beyond noise, ±" in headline
    assert "3 seeds" in headline
    assert results["table"]["spread"][0][1] == pytest.approx(0.2)  # none, bs=5


def curves_results(exp, config, best):
    """Synthetic bn-vs-baseline results: ``best[norm]`` the per-seed best validation accuracy,
    reached at epoch 1."""
    outputs, seconds = {}, {}
    for k in range(config.seeds):
        for n in config.normalizations:
            v = best[n][k]
            name = seed_run_name(n, k, config.seeds)
            outputs[name] = {"val_acc": [0.1, v, v], "train_acc": [0.1, v, v], "loss": [1.0] * 4,
                             "best_val_acc": v, "final_val_acc": v, "test_acc": v,
                             "num_val": 1000, "iterations_per_epoch": 2,
                             "diverged": False}  # fmt: skip
            seconds[name] = 1.0
    summary = summarize_runs(exp, config, outputs, seconds)
    return {"config": config_to_dict(config), "seeds": config.seeds, "runs": outputs, **summary}


def test_a_difference_between_normalizations_is_stated_only_beyond_noise():
    exp = EXPERIMENTS["bn-vs-baseline"]
    config = exp.config_cls(
        seeds=3, normalizations=("none", "batchnorm", "layernorm"), num_epochs=2, threshold=0.3
    )
    best = {
        "batchnorm": [0.80, 0.82, 0.84],
        "none": [0.40, 0.42, 0.44],  # 0.40 below, every seed: beyond noise
        "layernorm": [0.81, 0.90, 0.75],  # 0.0 apart on average, spread 0.08: within noise
    }
    headline = exp.headline(curves_results(exp, config, best))
    assert "0.42 without normalization (lower beyond noise" in headline
    assert "0.82 with layer norm (within noise" in headline
    assert "reached 0.30 validation accuracy in 1 epoch in all 3 seeds" in headline
    # one seed: a 2-point difference on 1000 images is noise, a 40-point one is not
    one = dataclasses.replace(config, seeds=1)
    headline = exp.headline(curves_results(exp, one, {n: v[:1] for n, v in best.items()}))
    assert "lower beyond noise" in headline and "within noise" in headline
    assert "one seed" in headline


# ------------------------------------------------------------------ figures with seeds


def test_curves_are_the_mean_over_seeds_with_their_spread():
    mean, std = _mean_std([[1.0, 2.0, 3.0], [3.0, 4.0], [2.0, None, 6.0]])
    np.testing.assert_allclose(mean, [2.0, 3.0, 4.5])
    np.testing.assert_allclose(std, [1.0, math.sqrt(2.0), math.sqrt(4.5)])
    mean, std = _mean_std([[1.0, None]])
    assert std is None and np.isnan(mean[1])


def test_figures_draw_bands_from_the_seeds():
    exp = EXPERIMENTS["bn-vs-baseline"]
    config = exp.config_cls(seeds=2, num_epochs=2, threshold=0.3)
    results = curves_results(exp, config, {"none": [0.3, 0.5], "batchnorm": [0.8, 0.9]})
    results["figures"] = exp.figures(config)
    results["experiment"] = exp.name
    fig = make_figures(results)["curves"]
    val = fig.axes[2]
    assert len(val.collections) == 2  # one band per normalization
    np.testing.assert_allclose(val.lines[0].get_ydata(), [0.1, 0.4, 0.4])  # mean of none
    assert [o["best_val_acc"] for o in seed_outputs(results, "none")] == [0.3, 0.5]


# ------------------------------------------------------------------ end to end


def test_seed_zero_of_several_is_the_one_seed_run():
    from normlab.experiments import run_experiment

    exp = EXPERIMENTS["bn-vs-baseline"]
    config = exp.config_cls(dataset="digits", num_epochs=1, num_training=100, hidden_dims=(16,))
    one = run_experiment(exp, config)
    two = run_experiment(exp, dataclasses.replace(config, seeds=2))
    assert sorted(two["runs"]) == ["batchnorm/seed=0", "batchnorm/seed=1", "none/seed=0",
                                   "none/seed=1"]  # fmt: skip
    for n in ("none", "batchnorm"):
        assert two["runs"][f"{n}/seed=0"] == one["runs"][n]
        assert two["runs"][f"{n}/seed=1"]["loss"] != one["runs"][n]["loss"]
    assert two["seeds"] == 2 and len(two["per_seed"]) == 2
    one_table = [row[:-1] for row in one["table"]["rows"]]  # without the time column
    assert [row[:-1] for row in two["per_seed"][0]["table"]["rows"]] == one_table
    best = [two["runs"][f"batchnorm/seed={k}"]["best_val_acc"] for k in range(2)]
    assert two["table"]["rows"][1][2] == pytest.approx(sum(best) / 2)
    assert "2 seeds" in two["headline"]


def test_few_seeds_widen_the_bound_as_student_t_says():
    a, b = [0.80, 0.82], [0.86, 0.87]  # paired differences 0.06 and 0.05
    d = difference(a, b, paired=True)
    se = statistics.stdev([0.06, 0.05]) / math.sqrt(2)
    assert d.bound == pytest.approx(12.706204736174694 * se)  # t(0.975, 1): 12.7 SEs
    assert not d.clear  # two seeds agreeing to 0.01 say little about their spread
    assert difference(a * 3, b * 3, paired=True).bound < d.bound  # 6 seeds: tighter


def test_no_bound_is_no_claim():
    from normlab.experiments.noise import versus

    none = difference([None, None], [0.9, 0.91], n_eval=300)
    assert none.bound is None and not none.clear
    assert versus(none) == "no noise estimate"
    assert versus(difference([0.5], [0.9])) == "no noise estimate"  # one seed, no size


def test_a_quick_run_needs_three_seeds_to_conclude():
    big = [difference([0.2, 0.21, 0.22], [0.9, 0.91, 0.92], 1000, paired=True)]
    assert qualify("A rose.", big, quick=True) == "A rose."
    one = [difference([0.2], [0.9], 1000)]  # clear on one seed: evaluation noise only
    assert one[0].clear and qualify("A rose.", one, quick=True).startswith("Quick run")


# t(0.975, df) as SciPy 1.17's t.ppf gives it (and printed tables, to their 3 decimals)
_T975 = {1: 12.706204736174694, 2: 4.302652729749462, 3: 3.1824463052837078,
         4: 2.7764451051977934, 5: 2.5705818356363146, 9: 2.262157162798205,
         29: 2.045229642132703, 99: 1.9842169515864174, 1000: 1.9623390808264083}  # fmt: skip


@pytest.mark.parametrize("df", sorted(_T975))
def test_student_t_quantile_without_scipy(df):
    from normlab.experiments.noise import _t975

    assert _t975(df) == pytest.approx(_T975[df], rel=1e-11)


def test_student_t_quantile_matches_scipy_where_installed():
    stats = pytest.importorskip("scipy.stats")
    from normlab.experiments.noise import _t975

    for df in range(1, 60):
        assert _t975(df) == pytest.approx(stats.t.ppf(0.975, df), rel=1e-11)


def test_student_t_quantile_refuses_no_degrees_of_freedom():
    from normlab.experiments.noise import _t975

    with pytest.raises(ValueError, match="at least 1 degree of freedom"):
        _t975(0)
