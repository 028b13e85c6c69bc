"""The renorm and ghost-bn experiments: tiny real runs, their configs, and their summaries and
headlines on synthetic results (value by value; differences inside and outside the noise)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from normlab.experiments import ghost_bn, renorm
from normlab.experiments.config import config_to_dict
from normlab.experiments.runner import run_experiment, summarize_runs
from normlab.vocab import run_name

RENORM, GHOST = renorm.EXPERIMENT, ghost_bn.EXPERIMENT


# ------------------------------------------------------------------------------- real, tiny runs


def test_renorm_tiny_run():
    config = renorm.RenormConfig(
        dataset="digits", quick=True, batch_sizes=(4, 8), num_training=48, num_epochs=1,
        num_filters=(2, 4), hidden_dims=(8,),
    )  # fmt: skip
    results = run_experiment(RENORM, config)
    names = ["batchnorm", "batchrenorm", "groupnorm", "groupnorm+ws"]
    assert results["variants"] == names
    assert [r[0] for r in results["table"]["rows"]] == [
        "batch norm", "batch renorm", "group norm", "group norm + WS"
    ]  # fmt: skip
    runs = results["runs"]
    for b in (4, 8):
        out = runs[f"batchrenorm/bs={b}"]
        assert out["steps"] == 48 // b
        assert out["renorm_schedule"] == renorm.renorm_schedule(48 // b, config.renorm_span)
        assert "renorm_schedule" not in runs[f"batchnorm/bs={b}"]
        # the same initial weights and batches: weight standardization alone changes the loss
        assert runs[f"groupnorm+ws/bs={b}"]["loss"] != runs[f"groupnorm/bs={b}"]["loss"]
    assert results["headline"].startswith(("Quick run", "From 8 images per batch to 4"))
    assert [f["name"] for f in results["figures"]] == ["accuracy_vs_batch_size"]


def test_ghost_bn_tiny_run():
    config = ghost_bn.GhostBNConfig(
        dataset="digits", quick=True, batch_size=32, ghost_sizes=(8, 32), num_training=64,
        num_epochs=1, num_filters=(2,), hidden_dims=(8,), num_train_eval=50,
    )  # fmt: skip
    results = run_experiment(GHOST, config)
    a, b = (results["runs"][run_name("ghostbatchnorm", v=v)] for v in (8, 32))
    assert a["num_train_eval"] == 50 and a["virtual_batch_size"] == 8
    assert a["loss"] != b["loss"]  # the same weights and batches; only the statistics differ
    for i, o in enumerate((a, b)):
        assert results["gap"][i] == o["train_acc"][-1] - o["val_acc"][-1]
    assert "ghost batches of 8" in results["headline"]


# ------------------------------------------------------------------------------------- configs


def test_renorm_schedule_keeps_the_papers_proportions():
    assert renorm.renorm_schedule(100_000, 0.4) == {
        "warmup": 5000, "rmax_steps": 40000, "dmax_steps": 25000
    }  # fmt: skip
    assert renorm.renorm_schedule(64, 0.4) == {"warmup": 3, "rmax_steps": 26, "dmax_steps": 16}


def test_config_errors_name_the_fix():
    with pytest.raises(ValueError, match="normalizations .* does not hold"):
        renorm.RenormConfig(normalizations=("batchnorm",), weight_standardized=("groupnorm",))
    with pytest.raises(ValueError, match=r"ghost_sizes \[48\] do not divide batch_size 1024"):
        ghost_bn.GhostBNConfig(ghost_sizes=(16, 48))
    with pytest.raises(ValueError, match="sweep is over ghostbatchnorm"):
        ghost_bn.GhostBNConfig(normalizations=("batchnorm",))
    assert renorm.RenormConfig(weight_standardized=()).weight_standardized == ()


# ------------------------------------------------------- headlines: inside and outside the noise


def _results(experiment, config, outputs):
    summary = summarize_runs(experiment, config, outputs, dict.fromkeys(outputs, 1.0))
    results = {"config": config_to_dict(config), "runs": outputs, "seeds": config.seeds, **summary}
    return results, experiment.headline(results)


def _renorm_outputs(config, acc, n_eval):
    """Runs whose best-epoch test accuracy is ``acc(variant, batch_size, seed)``."""
    out = {}
    for k in range(config.seeds):
        for spec in RENORM.runs(config):
            name = spec.name if config.seeds == 1 else f"{spec.name}/seed={k}"
            n, b = spec.name.split("/bs=")
            out[name] = {"test_acc": acc(n, int(b), k), "final_val_acc": 0.5, "num_test": n_eval}
    return out


def test_renorm_headline_states_only_differences_beyond_noise():
    config = renorm.RenormConfig(batch_sizes=(2, 64))
    small = {"batchnorm": 0.60, "batchrenorm": 0.80, "groupnorm": 0.81, "groupnorm+ws": 0.84}

    def acc(n, b, k):
        return 0.85 if b == 64 else small[n]

    _, head = _results(RENORM, config, _renorm_outputs(config, acc, 10_000))
    assert "fell from 0.85 to 0.60 with batch norm (beyond noise, ±0.01)" in head
    assert "batch renorm 0.80 (higher than batch norm beyond noise, ±0.01)" in head
    assert "group norm + WS 0.84 (higher than batch norm beyond noise" in head
    _, head = _results(RENORM, config, _renorm_outputs(config, acc, 20))  # 20 test images
    assert "went from 0.85 to 0.80 with batch renorm (within noise" in head
    assert "batch renorm 0.80 (within noise of batch norm" in head
    quick = dataclasses.replace(config, quick=True)
    _, head = _results(RENORM, quick, _renorm_outputs(quick, lambda n, b, k: 0.5, 20))
    assert head.startswith("Quick run, too short to conclude: from 64 images per batch to 2")


def test_renorm_headline_pairs_seeds_at_the_smallest_batch():
    config = renorm.RenormConfig(batch_sizes=(2, 64), seeds=3, weight_standardized=())
    rng = np.random.default_rng(0)
    start = rng.uniform(0.4, 0.8, 3)  # each seed's weights: a large spread, shared by the pair

    def acc(n, b, k):
        return float(start[k] + (0.03 if n == "batchrenorm" else 0.0))

    results, head = _results(RENORM, config, _renorm_outputs(config, acc, None))
    assert results["table"]["seeds"] == 3
    assert "batch renorm" in head and "(higher than batch norm beyond noise, ±0.00)" in head
    assert "noise: 95% t-interval over 3 seeds" in head


def _ghost_outputs(config, train, val, n_eval):
    out = {}
    for spec, t, v in zip(GHOST.runs(config), train, val, strict=True):
        out[spec.name] = {
            "train_acc": [0.1, t], "val_acc": [0.1, v], "test_acc": v,
            "num_val": n_eval, "num_train_eval": n_eval,
        }  # fmt: skip
    return out


def test_ghost_headline_states_only_differences_beyond_noise():
    config = ghost_bn.GhostBNConfig(batch_size=1024, ghost_sizes=(16, 128, 1024))
    train, val = [0.95, 0.97, 0.99], [0.92, 0.90, 0.86]  # gaps 0.03, 0.07, 0.13
    results, head = _results(GHOST, config, _ghost_outputs(config, train, val, 100_000))
    np.testing.assert_allclose(results["gap"], [0.03, 0.07, 0.13])
    assert "ghost batches of 16 gave a generalization gap" in head
    assert "of 0.03 against 0.13 with plain batch norm (lower beyond noise, ±0.00)" in head
    assert "accuracy of 0.92 against 0.86 (higher beyond noise" in head
    _, head = _results(GHOST, config, _ghost_outputs(config, train, val, 50))
    assert "(within noise, ±0." in head and "beyond" not in head
    sub = dataclasses.replace(config, ghost_sizes=(16, 128), quick=True)
    _, head = _results(GHOST, sub, _ghost_outputs(sub, train[:2], val[:2], 50))
    assert head.startswith("Quick run") and "with ghost batches of 128" in head
