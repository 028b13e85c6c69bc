"""``lr-stability``: the "trains" criterion, the largest trainable rate, the activation-std
callback, and the summary and headline read from the right runs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from normlab.experiments import get_experiment, lr_stability
from normlab.experiments.runner import summarize_runs


def test_trains_criterion_is_finite_and_below_the_threshold():
    thr = 0.5 * math.log(10)
    assert lr_stability.trains({"diverged": False, "final_train_loss": thr}, thr)
    assert not lr_stability.trains({"diverged": False, "final_train_loss": thr + 1e-9}, thr)
    assert not lr_stability.trains({"diverged": True, "final_train_loss": None}, thr)
    assert not lr_stability.trains({"diverged": False, "final_train_loss": None}, thr)


def test_config_refuses_rates_out_of_order():
    with pytest.raises(ValueError, match="increasing"):
        lr_stability.LRStabilityConfig(learning_rates=(0.1, 0.01))


def test_activation_std_callback_against_direct_computation():
    rng = np.random.default_rng(0)

    class Block:
        def __init__(self, i):
            self.index = i

    class Model:
        blocks = [Block(1), Block(2)]
        record: set = set()
        activations: dict = {}

    model = Model()
    meter = lr_stability.ActivationStd(model)
    assert model.record == {1, 2}
    steps = [{i: rng.normal(0, 10.0**i, (8, 4)) for i in (1, 2)} for _ in range(3)]
    for t, acts in enumerate(steps):
        model.activations = acts
        meter(None, {"iteration": t})
    assert meter.first == [float(np.std(steps[0][i])) for i in (1, 2)]
    assert meter.last == [float(np.std(steps[-1][i])) for i in (1, 2)]


# ------------------------------------------------------ summary and headline (test_summaries)


def _last_ok(norm, n):
    """The largest rate index at which the synthetic run trains: batch norm the largest rate,
    none three below it (then one rate where it fails without diverging, then divergence)."""
    return n - 1 if norm == "batchnorm" else max(1, n - 3)


def _run_output(norm, i, n, layers):
    ok_up_to = _last_ok(norm, n)
    diverged = i > ok_up_to + 1
    loss = None if diverged else (0.3 + 0.05 * i if i <= ok_up_to else 2.0)
    if i == 0:
        loss = 2.2  # too slow at the smallest rate: does not train either
    std = [float(j) * (i + 1) for j in range(1, len(layers) + 1)]
    return {
        "loss": [2.3, 1.0],
        "train_acc": [0.1, 0.5],
        "val_acc": [0.1, None if diverged else 0.4 + 0.01 * i],
        "final_train_loss": loss,
        "diverged": diverged,
        "num_val": 10**7,
        "num_classes": 10,
        "layers": layers,
        "act_log10_std": [math.log10(s) for s in std],
        "act_log10_std_init": [0.0] * len(layers),
    }


def check_summary(experiment, config):
    """For tests/test_summaries.py: trains, losses and the largest trainable rate per
    normalization, from the right runs; the headline quoting them."""
    lrs = list(config.learning_rates)
    layers = list(range(1, len(config.hidden_dims) + 2))
    outputs, seconds = {}, {}
    for k, spec in enumerate(experiment.runs(config)):
        norm, lr = spec.params["normalization"], spec.params["learning_rate"]
        outputs[spec.name] = _run_output(norm, lrs.index(lr), len(lrs), layers)
        seconds[spec.name] = 1.0 + k
    s = summarize_runs(experiment, config, outputs, seconds)
    thr = config.loss_fraction * math.log(10)
    assert s["loss_threshold"] == thr
    for norm in config.normalizations:
        runs = [outputs[f"{norm}/lr={lr:g}"] for lr in lrs]
        ok = [not o["diverged"] and o["final_train_loss"] <= thr for o in runs]
        assert s["trains"][norm] == [float(t) for t in ok]
        assert s["final_loss"][norm] == [o["final_train_loss"] for o in runs]
        assert s["diverged"][norm] == [o["diverged"] for o in runs]
        assert s["final_val_acc"][norm] == [None if o["diverged"] else o["val_acc"][-1]
                                            for o in runs]  # fmt: skip
        want = max((lr for lr, t in zip(lrs, ok, strict=True) if t), default=None)
        assert s["largest_trainable_lr"][norm] == want
    assert s["largest_trainable_lr"]["none"] == lrs[_last_ok("none", len(lrs))]
    assert s["largest_trainable_lr"]["batchnorm"] == lrs[-1]
    for i, row in enumerate(s["table"]["rows"]):
        assert row[0] == lrs[i]
        assert row[1:4] == [s["trains"]["none"][i], s["final_loss"]["none"][i],
                            s["final_val_acc"]["none"][i]]  # fmt: skip
    results = {"config": {"num_epochs": config.num_epochs, "quick": config.quick},
               "runs": outputs, **s}  # fmt: skip
    h = lr_stability.headline(results)
    big = s["largest_trainable_lr"]
    assert (
        f"the largest that trained was {big['none']:g} without normalization and "
        f"{big['batchnorm']:g} with batch norm" in h
    )
    fail = lrs[_last_ok("none", len(lrs)) + 1]  # the first rate above none's largest: fails
    a = outputs[f"none/lr={fail:g}"]["act_log10_std"]
    assert f"At {fail:g}, where the net without normalization failed to train" in h
    assert f"10^{a[0]:.1f} in layer 1 and 10^{a[-1]:.1f} in the last (the scores" in h
    assert h.startswith("Quick run, too short") == config.quick


def check_quick_results(res):
    """For tests/test_experiments.py: every (normalization, rate) run is there, diverged ones
    recorded as such (the sweep went on), and the summary agrees with the runs."""
    cfg = res["config"]
    lrs = cfg["learning_rates"]
    assert res["learning_rates"] == lrs
    L = len(cfg["hidden_dims"]) + 1
    for norm in cfg["normalizations"]:
        for i, lr in enumerate(lrs):
            out = res["runs"][f"{norm}/lr={lr:g}"]
            assert res["diverged"][norm][i] == out["diverged"]
            if out["diverged"]:
                assert out["final_train_loss"] is None and res["trains"][norm][i] == 0.0
            assert len(out["act_log10_std"]) == L
    # at the largest quick rate (10) the unnormalized net diverges: recorded, not a crash
    assert res["diverged"]["none"][-1] is True
    assert res["largest_trainable_lr"]["batchnorm"] is not None


def test_headline_skips_the_depth_sentence_when_a_std_was_not_finite():
    """A layer-1 std that overflowed (None in act_log10_std) leaves the depth sentence out
    instead of failing to format it."""
    experiment = get_experiment("lr-stability")
    config = lr_stability.quick(lr_stability.LRStabilityConfig())
    lrs = list(config.learning_rates)
    layers = list(range(1, len(config.hidden_dims) + 2))
    outputs = {}
    for spec in experiment.runs(config):
        norm, lr = spec.params["normalization"], spec.params["learning_rate"]
        outputs[spec.name] = _run_output(norm, lrs.index(lr), len(lrs), layers)
    fail = lrs[_last_ok("none", len(lrs)) + 1]
    outputs[f"none/lr={fail:g}"]["act_log10_std"][0] = None
    s = summarize_runs(experiment, config, outputs, {n: 1.0 for n in outputs})
    h = lr_stability.headline({"config": {"num_epochs": 3, "quick": True}, "runs": outputs, **s})
    assert "the largest that trained was" in h and "in layer 1" not in h


def _two_seed_results(per_seed: list, **summary) -> dict:
    """A 2-seed lr-stability results dict on the rates 0.1, 1 and 10, for headline tests."""
    return {
        "config": {"num_epochs": 3, "quick": False},
        "seeds": 2,
        "per_seed": per_seed,
        "learning_rates": [0.1, 1.0, 10.0],
        "normalizations": ["none", "batchnorm"],
        "loss_threshold": 1.15,
        **summary,
    }


def test_headline_says_when_a_seed_had_no_trainable_rate():
    """With seeds, the largest trainable rate is the mean over the seeds that had one: the
    headline says how many did, rather than quoting it as every seed's."""
    per_seed = [
        {"largest_trainable_lr": {"none": 1.0, "batchnorm": 1.0},
         "log10_largest_trainable_lr": {"none": 0.0, "batchnorm": 0.0}},
        {"largest_trainable_lr": {"none": None, "batchnorm": 1.0},
         "log10_largest_trainable_lr": {"none": None, "batchnorm": 0.0}},
    ]  # fmt: skip
    results = _two_seed_results(
        per_seed,
        largest_trainable_lr={"none": 1.0, "batchnorm": 1.0},
        trains={"none": [0.0, 0.5, 0.0], "batchnorm": [1.0, 1.0, 0.0]},
        diverged={"none": [False, False, True], "batchnorm": [False, False, True]},
        act_log10_std={"none": [None] * 3, "batchnorm": [None] * 3},
    )
    h = lr_stability.headline(results)
    assert "was 1 (the mean of the 1 of 2 seeds in which a rate trained) without" in h
    assert "and 1 with batch norm" in h  # every seed had one: no qualifier


def test_headline_says_in_how_many_seeds_the_net_diverged():
    """Combined over seeds a run's ``diverged`` is "any seed"; the headline counts them."""
    per_seed = [
        {"largest_trainable_lr": {"none": 0.1, "batchnorm": 1.0},
         "log10_largest_trainable_lr": {"none": -1.0, "batchnorm": 0.0},
         "diverged": {"none": [False, d, True], "batchnorm": [False, False, True]}}
        for d in (True, False)
    ]  # fmt: skip
    results = _two_seed_results(
        per_seed,
        largest_trainable_lr={"none": 0.1, "batchnorm": 1.0},
        trains={"none": [1.0, 0.0, 0.0], "batchnorm": [1.0, 1.0, 0.0]},
        diverged={"none": [False, True, True], "batchnorm": [False, False, True]},
        act_log10_std={"none": [[0.0, 1.0]] * 3, "batchnorm": [[0.0, 0.5]] * 3},
    )
    h = lr_stability.headline(results)
    assert "At 1, where the net without normalization diverged in 1 of 2 seeds" in h
