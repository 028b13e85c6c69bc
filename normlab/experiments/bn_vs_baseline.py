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

from normlab.experiments import figspec
from normlab.experiments.base import Experiment
from normlab.experiments.config import ExperimentConfig, field_of, opt
from normlab.experiments.training import auto_threshold, epochs_to_reach, paired_runs, train_fc
from normlab.experiments.wording import capital, diverged_at, join, num, plural
from normlab.vocab import label, short_label

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


def summarize(config: BNvsBaselineConfig, outputs: dict, seconds: dict) -> dict:
    """The comparison table, with the accuracy target used for "epochs to reach"."""
    threshold = config.threshold
    if threshold is None:
        # from trained epochs only (>= 1): epoch 0 is before training
        trained = [v for o in outputs.values() for v in o["val_acc"][1:] if v is not None]
        threshold = auto_threshold(max(trained, default=0.0))
    return {"threshold": threshold, "table": comparison_table(outputs, seconds, threshold)}


def headline(results: dict) -> str:
    """Epochs each run took to reach the validation accuracy target (``results["threshold"]``).

    Diverged runs are named as such; epoch 0 (before training) never counts as reaching the
    target, and a run that never beat its untrained accuracy says so.
    """
    by_run, thr = results["runs"], results["threshold"]
    epochs = results["config"]["num_epochs"]

    def outcome(name: str, first: bool) -> str:
        run = by_run[name]
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

    lead = "batchnorm" if "batchnorm" in by_run else next(iter(by_run))
    sentence = f"{capital(label(lead))} {outcome(lead, True)}"
    others = [n for n in by_run if n != lead]
    parts = []
    if "none" in others:
        parts.append(f"the baseline {outcome('none', False)}")
    parts += [f"{label(n)} {outcome(n, False)}" for n in others if n != "none"]
    if parts:
        sentence += ", " + join(parts)
    return sentence + "."


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
    NAME, DESCRIPTION, BNvsBaselineConfig, runs, run_task, summarize, quick, headline, figures
)
