"""bn-vs-baseline: the CS231n notebook's deep network trained with and without batch norm.

Setting (CS231n assignment 2, ``BatchNormalization.ipynb``, "Batchnorm for deep networks"): a
six-layer ReLU network, hidden layers ``[100] * 5``, weights ``N(0, 0.02^2)``, 1000 training
images of CIFAR-10, Adam with learning rate 1e-3, batches of 50, 10 epochs. The two networks
start from the same weights (a paired seed); only the normalization differs.

The same task compares any list of normalizations; ``normlab demo`` is this experiment on the
embedded digits with batch, layer and group norm added (:mod:`normlab.experiments.demo`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from normlab.experiments import figspec, noise
from normlab.experiments.base import Experiment
from normlab.experiments.config import ExperimentConfig, field_of, opt
from normlab.experiments.training import auto_threshold, epochs_to_reach, paired_runs, train_fc
from normlab.experiments.wording import capital, diverged_at, join, num, plural, with_norm
from normlab.vocab import label, seed_outputs, short_label

NAME = "bn-vs-baseline"
DESCRIPTION = "CS231n deep net [100]*5, weight scale 2e-2, with and without batch norm: curves"


@dataclass(frozen=True)
class BNvsBaselineConfig(ExperimentConfig):
    """Settings of ``bn-vs-baseline`` (the notebook's by default)."""

    dataset: str = field_of(ExperimentConfig, "dataset", "cifar10")
    hidden_dims: tuple[int, ...] = opt((100,) * 5, "widths of the hidden layers")
    weight_scale: float = opt(2e-2, "std of the Gaussian initial weights", positive=True)
    num_training: int | None = opt(1000, "training images (None: all)")
    update_rule: str = opt("adam", "update rule")
    learning_rate: float = opt(1e-3, "learning rate", positive=True)
    batch_size: int = opt(50, "minibatch size")
    num_epochs: int = opt(10, "epochs")
    threshold: float | None = opt(None, "accuracy target of the table (None: 95% of the best)")


def quick(config: BNvsBaselineConfig) -> BNvsBaselineConfig:
    """Three epochs on 500 images (about a second on the digits)."""
    return dataclasses.replace(config, quick=True, num_training=500, num_epochs=3)


runs = paired_runs  # one run per normalization, all from the same initial weights
run_task = train_fc  # the net above, trained


def comparison_table(outputs: dict, seconds: dict, threshold: float) -> dict:
    """One row per run: final/best validation accuracy, test accuracy, epochs to ``threshold``."""
    rows = []
    for name, out in outputs.items():
        reached = epochs_to_reach(out["val_acc"], threshold)
        rows.append(
            [
                short_label(name),
                out["final_val_acc"],
                out["best_val_acc"],
                out["test_acc"],
                reached,
                seconds.get(name),
            ]
        )
    columns = [
        "normalization",
        "final val acc",
        "best val acc",
        "test acc (best val epoch)",
        f"epochs to {threshold:.2f} val acc",
        "time (s)",
    ]
    return {"columns": columns, "rows": rows}


def settle(config: BNvsBaselineConfig, per_seed: list[dict]) -> BNvsBaselineConfig:
    """The accuracy target, when automatic: 95% of the best trained validation accuracy of any
    run of any seed (rounded down to 0.05), one target for every seed's table."""
    if config.threshold is not None:
        return config
    # from trained epochs only (>= 1): epoch 0 is before training
    trained = [v for o in per_seed for r in o.values() for v in r["val_acc"][1:] if v is not None]
    return dataclasses.replace(config, threshold=auto_threshold(max(trained, default=0.0)))


def summarize(config: BNvsBaselineConfig, outputs: dict, seconds: dict) -> dict:
    """The comparison table, with the accuracy target used for "epochs to reach"."""
    threshold = settle(config, [outputs]).threshold
    return {"threshold": threshold, "table": comparison_table(outputs, seconds, threshold)}


def _reach_one(run: dict, thr: float, epochs: int, first: bool) -> str:
    """How one run (one seed) fared against the target ``thr``.

    Diverged runs are named as such; epoch 0 (before training) never counts as reaching the
    target, and a run that never beat its untrained accuracy says so.
    """
    curve = run.get("val_acc") or []
    k = diverged_at(run)
    e = epochs_to_reach(curve, thr)
    trained = [v for v in curve[1:] if v is not None]
    start = curve[0] if curve else None
    if e is None and k is not None:
        return f"diverged at epoch {k}"
    if e is not None and start is not None and max(trained) <= start:
        return f"never beat its untrained {num(start)} validation accuracy"
    tail = f" (then diverged at epoch {k})" if k is not None else ""
    if e is None:
        target = f"reach {thr:.2f} validation accuracy" if first else "reach it"
        return f"did not {target} in {plural(epochs, 'epoch')}"
    target = f"reached {thr:.2f} validation accuracy " if first else ""
    return f"{target}in {plural(e, 'epoch')}{tail}"


def _reach(runs: list[dict], thr: float, epochs: int, first: bool) -> str:
    """How a run fared against the target over its seeds: epochs to reach it, mean and range."""
    if len(runs) == 1:
        return _reach_one(runs[0], thr, epochs, first)
    n = len(runs)
    reached = [e for r in runs if (e := epochs_to_reach(r.get("val_acc") or [], thr))]
    target = f"reached {thr:.2f} validation accuracy " if first else "reached it "
    if not reached:
        if all(r.get("diverged") for r in runs):
            return f"diverged in all {n} seeds"
        what = f"{thr:.2f} validation accuracy" if first else "it"
        return f"did not reach {what} in {plural(epochs, 'epoch')} in any of {n} seeds"
    mean = sum(reached) / len(reached)
    if len(reached) < n:
        return f"{target}in {len(reached)} of {n} seeds (in {mean:.1f} epochs on average)"
    if min(reached) == max(reached):
        return f"{target}in {plural(reached[0], 'epoch')} in all {n} seeds"
    return f"{target}in {mean:.1f} epochs (mean of {n} seeds, {min(reached)} to {max(reached)})"


def _versus(other: str, d: noise.Difference) -> str:
    """``"0.88 without normalization (lower beyond noise ±0.03)"``."""
    return f"{num(d.b)} {with_norm(other)} ({noise.versus(d)})"


def headline(results: dict) -> str:
    """Epochs each run took to reach the validation accuracy target (``results["threshold"]``),
    then the best validation accuracy of the others against the lead's (batch norm's), each
    difference stated only beyond noise (:mod:`normlab.experiments.noise`)."""
    names, thr = list(results["config"]["normalizations"]), results["threshold"]
    epochs = results["config"]["num_epochs"]
    runs = {n: seed_outputs(results, n) for n in names}
    lead = "batchnorm" if "batchnorm" in runs else names[0]
    sentence = f"{capital(label(lead))} {_reach(runs[lead], thr, epochs, True)}"
    others = [n for n in names if n != lead]
    parts = [f"the baseline {_reach(runs['none'], thr, epochs, False)}"] if "none" in runs else []
    parts += [f"{label(n)} {_reach(runs[n], thr, epochs, False)}" for n in others if n != "none"]
    if parts:
        sentence += ", " + join(parts)
    if not others:
        return sentence + "."

    def best(n: str) -> list:
        return [r.get("best_val_acc") for r in runs[n]]

    n_val = runs[lead][0].get("num_val")
    diffs = {n: noise.difference(best(lead), best(n), n_val, paired=True) for n in others}
    main = [diffs["none"]] if "none" in diffs else list(diffs.values())  # the finding
    if main[0].a is not None:
        versus = join([_versus(n, d) for n, d in diffs.items()])
        sentence += (
            f". Best validation accuracy: {num(main[0].a)} {with_norm(lead)}, {versus}"
            f" ({noise.seeds_phrase(len(runs[lead]))})"
        )
    return noise.qualify(sentence + ".", main, results.get("config", {}).get("quick", False))


def figures(config: BNvsBaselineConfig) -> list[dict]:
    """``curves``: training loss, training and validation accuracy, one line per run."""
    norms = config.normalizations

    def accuracy(key: str, title: str, **options) -> dict:
        lines = [figspec.norm_line(n, key, run=n) for n in norms]
        return figspec.curves(title, lines, "accuracy", **options)

    panels = [
        figspec.loss("Training loss", "loss (moving average over an epoch)", norms),
        accuracy("train_acc", "Training accuracy"),
        accuracy("val_acc", "Validation accuracy", target="threshold", legend=True),
    ]
    return [figspec.figure("curves", panels)]


EXPERIMENT = Experiment(
    NAME,
    DESCRIPTION,
    BNvsBaselineConfig,
    runs,
    run_task,
    summarize,
    quick,
    headline,
    figures,
    settle,
)
