"""Every experiment's summary and headline, checked value by value against its runs' curves.

Synthetic run outputs, shaped like each experiment's ``run_task`` returns, where training,
validation and test differ everywhere (training accuracy high and reached early, validation
lower, peaking before the last epoch, test lower still; the sigmoid percentiles apart), so a
summary or headline that reads one curve where it means another gives a different number. The
expected values are recomputed here from the curves, without the experiments' helpers.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from test_init_diagnostics import check_summary as check_init_diagnostics
from test_landscape import check_summary as check_landscape
from test_lr_stability import check_summary as check_lr_stability
from test_noisy_bn import check_summary as check_noisy_bn
from test_population_stats import check_summary as check_population_stats

from normlab.experiments import EXPERIMENTS
from normlab.experiments.config import config_to_dict
from normlab.experiments.runner import summarize_runs
from normlab.experiments.wording import change, num, with_norm
from normlab.vocab import label, short_label

EPOCHS = 4
NUM_EVAL = 10**7  # images behind each accuracy: a noise bound far below the curves' differences


def fc_output(rng, params: dict, epochs: int, ipe: int = 3) -> dict:
    """What ``training.train_fc`` returns: curves over epochs 0..E, scores, the swept params."""
    train = [0.1, *np.round(np.sort(rng.uniform(0.9, 0.99, epochs)), 3)]  # (E+1,), high
    val = [0.12, *np.round(rng.uniform(0.3, 0.7, epochs), 3)]  # (E+1,), lower
    peak = int(np.argmax(val[1:])) + 1
    val[peak], val[epochs - 1] = val[epochs - 1], val[peak]  # best before the last epoch
    val[-1] = round(min(val[1:]) - 0.02, 3)  # the last epoch is the worst trained one
    loss = list(np.round(rng.uniform(0.5, 2.5, epochs * ipe), 3))  # (E * ipe,)
    out = {
        "loss": loss,
        "train_acc": train,
        "val_acc": val,
        "best_val_acc": max(val),
        "final_val_acc": val[-1],
        "best_train_acc": max(train),
        "final_train_loss": float(np.mean(loss[-ipe:])),
        "test_acc": round(float(rng.uniform(0.15, 0.25)), 3),  # lower than any val
        "iterations_per_epoch": ipe,
        "diverged": False,
        "num_val": NUM_EVAL,
        "num_test": NUM_EVAL,
    }
    return {**out, **{k: v for k, v in params.items() if k != "normalization"}}


def mlp_output(rng, params: dict, epochs: int) -> dict:
    """``mlp_adam.run_task``: ``train_fc``'s output plus per-epoch train and val losses."""
    out = fc_output(rng, params, epochs)
    out["train_loss"] = list(np.round(rng.uniform(0.1, 0.3, epochs), 3))  # (E,)
    out["val_loss"] = list(np.round(rng.uniform(0.8, 1.2, epochs), 3))  # (E,)
    return out


def paper_output(rng, params: dict, config) -> dict:
    """``paper_mnist.run_task``: test accuracy and sigmoid-input percentiles per measurement."""
    steps = list(range(config.eval_every, config.num_steps + 1, config.eval_every))
    T = len(steps)
    acc = list(np.round(rng.uniform(0.5, 0.9, T), 3))  # (T,)
    acc[T // 2] = round(max(acc) + 0.05, 3)  # the best is not the last
    med = list(np.round(rng.normal(0.0, 1.0, T), 3))  # (T,)
    pct = {"15": [m - 2.0 - k for k, m in enumerate(med)], "50": med,
           "85": [m + 3.0 + 2 * k for k, m in enumerate(med)]}  # fmt: skip
    return {
        "steps": steps,
        "test_acc": acc,
        "loss": list(np.round(rng.uniform(0.1, 2.0, T), 3)),
        "percentiles": pct,
        "final_test_acc": acc[-1],
        "num_test": NUM_EVAL,
        "diverged": False,
    }


def rmsnorm_output(rng, params: dict, epochs: int) -> dict:
    """``rmsnorm.run_task``: ``train_fc``'s output plus the median step times."""
    out = fc_output(rng, params, epochs)
    out["step_ms_by_epoch"] = list(np.round(rng.uniform(1.0, 20.0, epochs), 3))  # (E,)
    out["step_ms"] = round(float(rng.uniform(1.0, 20.0)), 3)  # not any epoch's
    return {**out, "steps_timed": 10, "cpu": "a test CPU"}


def darknet_output(rng, params: dict, config) -> dict:
    """``darknet_mismatch.run_task``: a gradient run's errors, or a training run's curves."""
    if params["part"] == "train":
        return fc_output(rng, params, config.num_epochs)
    draws = list(10.0 ** rng.uniform(-5, 1, config.draws))  # (draws,)
    rel = float(10.0 ** rng.uniform(-5, 1))  # over all draws: not their mean
    return {"rel_error": rel, "draw_errors": draws, "m": params["m"], "std": params["std"],
            "channels": config.channels}  # fmt: skip


def synthetic(experiment, config, seed=0):
    """``outputs`` and ``seconds`` by run name, in ``runs`` order, as the runner passes them."""
    rng = np.random.default_rng(seed)
    outputs, seconds = {}, {}
    for i, spec in enumerate(experiment.runs(config)):
        if experiment.name == "paper-mnist":
            outputs[spec.name] = paper_output(rng, spec.params, config)
        elif experiment.name == "mlp-adam":
            outputs[spec.name] = mlp_output(rng, spec.params, config.num_epochs)
        elif experiment.name == "rmsnorm":
            outputs[spec.name] = rmsnorm_output(rng, spec.params, config.num_epochs)
        elif experiment.name == "darknet-mismatch":
            outputs[spec.name] = darknet_output(rng, spec.params, config)
        else:
            outputs[spec.name] = fc_output(rng, spec.params, config.num_epochs)
        seconds[spec.name] = 1.5 + i
    return outputs, seconds


def results_of(experiment, config, seed=0):
    """What the runner builds: the runs, the summary, then the headline from both."""
    outputs, seconds = synthetic(experiment, config, seed)
    summary = summarize_runs(experiment, config, outputs, seconds)
    results = {
        "experiment": experiment.name,
        "config": config_to_dict(config),
        "runs": outputs,
        "run_seconds": seconds,
        **summary,
    }
    headline = experiment.headline(results)
    if config.quick:  # one seed: a quick run never concludes, whatever its curves say
        prefix = "Quick run, too short to conclude: "
        assert prefix in headline  # darknet-mismatch: before its training part only
        i = headline.index(prefix) + len(prefix)
        headline = headline[: i - len(prefix)] + headline[i].upper() + headline[i + 1 :]
    return outputs, seconds, summary, headline


def first_epoch(curve, threshold):
    """The first trained epoch (>= 1) at or above ``threshold``, else None."""
    return next((e for e in range(1, len(curve)) if curve[e] >= threshold), None)


def outcome(name, reached, thr, epochs):
    """What the curves headline says of run ``name`` (batch norm leads and names the target)."""
    who = {"batchnorm": "Batch norm", "none": "the baseline"}.get(name, label(name))
    target = f" {thr:.2f} validation accuracy" if name == "batchnorm" else ""
    if reached is None:
        return f"{who} did not reach{target or ' it'} in {epochs} epochs"
    return f"{who} {'reached' + target + ' ' if target else ''}in {reached} epoch" + (
        "" if reached == 1 else "s"
    )


# ---------------------------------------------------------------- one check per experiment


def check_curves(experiment, config):
    """bn-vs-baseline and demo: the threshold from validation, epochs to reach it."""
    for threshold in (None, 0.5):
        cfg = dataclasses.replace(config, threshold=threshold)
        outputs, seconds, summary, headline = results_of(experiment, cfg)
        best_trained_val = max(v for o in outputs.values() for v in o["val_acc"][1:])
        thr = threshold
        if thr is None:
            thr = round(math.floor(0.95 * best_trained_val / 0.05 + 1e-9) * 0.05, 4)
        assert summary["threshold"] == thr
        rows = summary["table"]["rows"]
        assert [r[0] for r in rows] == [short_label(n) for n in outputs]
        for row, (name, o) in zip(rows, outputs.items(), strict=True):
            reached = first_epoch(o["val_acc"], thr)
            assert row[1:] == [o["val_acc"][-1], max(o["val_acc"]), o["test_acc"], reached,
                               seconds[name]]  # fmt: skip
            assert outcome(name, reached, thr, cfg.num_epochs) in headline


def check_batch_size(experiment, config):
    outputs, _, summary, headline = results_of(experiment, config)
    bss = list(config.batch_sizes)
    assert summary["batch_sizes"] == bss
    for row, n in zip(summary["table"]["rows"], config.normalizations, strict=True):
        runs = [outputs[f"{n}/bs={b}"] for b in bss]
        best_val = [max(o["val_acc"]) for o in runs]
        final_train = [o["train_acc"][-1] for o in runs]
        assert summary["best_val_acc"][n] == best_val
        assert summary["final_train_acc"][n] == final_train
        assert row == [short_label(n), *best_val, *final_train]
        hi, lo = bss.index(max(bss)), bss.index(min(bss))
        assert f"{change(best_val[hi], best_val[lo])} {with_norm(n)}" in headline


def check_small_batch(experiment, config):
    outputs, _, summary, headline = results_of(experiment, config)
    bss = list(config.batch_sizes)
    for row, n in zip(summary["table"]["rows"], config.normalizations, strict=True):
        runs = [outputs[f"{n}/bs={b}"] for b in bss]
        test = [o["test_acc"] for o in runs]
        assert summary["final_val_acc"][n] == [o["val_acc"][-1] for o in runs]
        assert summary["best_epoch_test_acc"][n] == test
        assert row == [short_label(n), *test]
        hi, lo = bss.index(max(bss)), bss.index(min(bss))
        assert f"{change(test[hi], test[lo])} {with_norm(n)}" in headline


def check_weight_scale(experiment, config):
    outputs, _, summary, headline = results_of(experiment, config)
    scales = summary["weight_scales"]
    np.testing.assert_allclose(
        scales, np.logspace(np.log10(config.scale_min), np.log10(config.scale_max), len(scales))
    )
    runs = {n: [outputs[f"{n}/scale={i}"] for i in range(len(scales))]
            for n in config.normalizations}  # fmt: skip
    for n, outs in runs.items():
        assert summary["curves"][n]["best_val_acc"] == [max(o["val_acc"]) for o in outs]
        assert summary["curves"][n]["best_train_acc"] == [max(o["train_acc"]) for o in outs]
        assert summary["curves"][n]["final_train_loss"] == [o["final_train_loss"] for o in outs]
    for i, row in enumerate(summary["table"]["rows"]):
        cells = [row[0]]
        for n in config.normalizations:
            o = runs[n][i]
            cells += [max(o["val_acc"]), max(o["train_acc"]), o["final_train_loss"]]
        assert row == cells and row[0] == scales[i]
    best = max(max(o["val_acc"]) for outs in runs.values() for o in outs)
    thr = math.floor(0.8 * best * 20 + 1e-9) / 20
    assert f"at least {thr:.2f}" in headline
    for n, outs in runs.items():
        good = sum(max(o["val_acc"]) >= thr for o in outs)
        assert f"{good} of {len(scales)} weight scales {with_norm(n)}" in headline


def check_mlp_adam(experiment, config):
    outputs, seconds, summary, headline = results_of(experiment, config)
    for row, (name, o) in zip(summary["table"]["rows"], outputs.items(), strict=True):
        last = [o[k][-1] for k in ("train_loss", "val_loss", "train_acc", "val_acc")]
        assert row == [short_label(name), *last, o["test_acc"], seconds[name]]
        phrase = (
            f"{num(o['val_loss'][-1], 3)} {with_norm(name)} (accuracy {num(o['val_acc'][-1], 3)})"
        )
        assert phrase in headline


def check_paper_mnist(experiment, config):
    outputs, seconds, summary, headline = results_of(experiment, config)
    best = max(max(o["test_acc"]) for o in outputs.values())
    target = round(math.floor(0.95 * best * 100) / 100, 2)
    assert summary["target_acc"] == target
    for row, (name, o) in zip(summary["table"]["rows"], outputs.items(), strict=True):
        med = o["percentiles"]["50"]
        step = next(
            (s for s, a in zip(o["steps"], o["test_acc"], strict=True) if a >= target), None
        )
        drift = max(med) - min(med)
        assert row == [short_label(name), o["test_acc"][-1], step, med[0], med[-1], drift,
                       seconds[name]]  # fmt: skip
        assert summary["median_drift"][name] == drift
        assert f"{num(o['test_acc'][-1], 3)} {with_norm(name)}" in headline
        assert f"{num(drift)} {with_norm(name)}" in headline
    assert f"After {config.num_steps} steps" in headline


def check_rmsnorm(experiment, config):
    outputs, seconds, summary, headline = results_of(experiment, config)
    ref = outputs["layernorm"]["step_ms"]
    for row, (name, o) in zip(summary["table"]["rows"], outputs.items(), strict=True):
        ratio = o["step_ms"] / ref
        assert row == [short_label(name), o["val_acc"][-1], max(o["val_acc"]), o["test_acc"],
                       o["step_ms"], ratio, seconds[name]]  # fmt: skip
        assert summary["step_ms"][name] == o["step_ms"]
        assert summary["time_ratio"][name] == ratio
        assert summary["final_val_acc"][name] == o["val_acc"][-1]
    r = outputs["rmsnorm"]["step_ms"] / ref
    assert f"with RMSNorm {num(r)}x layer norm's" in headline
    assert f"{abs(1 - r) * 100:.0f}% {'less' if r < 1 else 'more'} time" in headline
    assert f"accuracy {num(outputs['layernorm']['val_acc'][-1])} with layer norm" in headline
    assert f"{num(outputs['rmsnorm']['val_acc'][-1])} with RMSNorm (" in headline
    assert "a test CPU" in headline


def check_darknet_mismatch(experiment, config):
    outputs, seconds, summary, headline = results_of(experiment, config)
    ms = list(config.batch_sizes)
    assert summary["batch_sizes"] == ms
    for s in config.input_stds:
        errors = [outputs[f"gradient/m={m}/std={s:g}"]["rel_error"] for m in ms]
        assert summary["rel_error"][f"std={s:g}"] == errors
        for m in (min(ms), max(ms)):
            e = errors[ms.index(m)]
            assert (f"{e:.2f}" if 0.01 <= e < 100 else f"{e:.1e}") + f" at m = {m}" in headline
    for row, (name, o) in zip(summary["table"]["rows"], outputs.items(), strict=True):
        if name.startswith("gradient/"):
            cells = ["darknet dx", o["m"], o["std"], o["rel_error"], None, None]
        else:
            cells = [short_label(name), config.batch_size, None, None, o["val_acc"][-1],
                     o["test_acc"]]  # fmt: skip
            assert summary["final_val_acc"][name] == o["val_acc"][-1]
        assert row == [*cells, seconds[name]]
    assert f"{num(outputs['darknet']['val_acc'][-1])} with darknet batch norm (" in headline
    assert f"accuracy {num(outputs['batchnorm']['val_acc'][-1])} with batch norm" in headline


def check_renorm(experiment, config):
    outputs, _, summary, headline = results_of(experiment, config)
    bss = list(config.batch_sizes)
    names = [*config.normalizations, *(f"{n}+ws" for n in config.weight_standardized)]
    labels = {"batchnorm": "batch norm", "batchrenorm": "batch renorm", "groupnorm": "group norm",
              "groupnorm+ws": "group norm + WS"}  # fmt: skip
    assert summary["variants"] == names and summary["batch_sizes"] == bss
    for row, n in zip(summary["table"]["rows"], names, strict=True):
        runs = [outputs[f"{n}/bs={b}"] for b in bss]
        test = [o["test_acc"] for o in runs]
        assert summary["final_val_acc"][n] == [o["val_acc"][-1] for o in runs]
        assert summary["best_epoch_test_acc"][n] == test
        assert row == [labels[n], *test]
        hi, lo = bss.index(max(bss)), bss.index(min(bss))
        assert f"{change(test[hi], test[lo])} with {labels[n]}" in headline
        if n != "batchnorm":
            assert f"{labels[n]} {num(test[lo])} (" in headline
    ref = outputs[f"batchnorm/bs={min(bss)}"]["test_acc"]
    assert f"against batch norm's {num(ref)}:" in headline


def check_ghost_bn(experiment, config):
    outputs, _, summary, headline = results_of(experiment, config)
    vs = list(config.ghost_sizes)
    runs = [outputs[f"ghostbatchnorm/v={v}"] for v in vs]
    train = [o["train_acc"][-1] for o in runs]
    val = [o["val_acc"][-1] for o in runs]
    gap = [t - v for t, v in zip(train, val, strict=True)]
    assert summary["ghost_sizes"] == vs
    assert summary["final_train_acc"] == train and summary["final_val_acc"] == val
    assert summary["gap"] == gap
    for row, v, o, t, a, g in zip(summary["table"]["rows"], vs, runs, train, val, gap, strict=True):
        assert row == [v, t, a, g, o["test_acc"]]
    big, small = vs.index(max(vs)), vs.index(min(vs))
    assert f"gap (final train minus validation accuracy) of {num(gap[small])} against " \
           f"{num(gap[big])} with plain batch norm" in headline  # fmt: skip
    assert f"accuracy of {num(val[small])} against {num(val[big])}" in headline


CHECKS = {
    "bn-vs-baseline": check_curves,
    "demo": check_curves,
    "batch-size": check_batch_size,
    "small-batch": check_small_batch,
    "weight-scale": check_weight_scale,
    "mlp-adam": check_mlp_adam,
    "paper-mnist": check_paper_mnist,
    "rmsnorm": check_rmsnorm,
    "renorm": check_renorm,
    "ghost-bn": check_ghost_bn,
    "init-diagnostics": check_init_diagnostics,
    "darknet-mismatch": check_darknet_mismatch,
    "noisy-bn": check_noisy_bn,
    "lr-stability": check_lr_stability,
    "landscape": check_landscape,
    "population-stats": check_population_stats,
}


def test_every_experiment_has_a_summary_check():
    assert sorted(CHECKS) == sorted(EXPERIMENTS)


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
@pytest.mark.parametrize("quick", [False, True])
def test_summary_and_headline_read_the_right_curves(name, quick):
    experiment = EXPERIMENTS[name]
    config = experiment.config_cls()
    if quick or name == "paper-mnist":  # 50_000 steps measured every 500: the quick 300 / 50
        config = experiment.quick(config)
    CHECKS[name](experiment, config)
