"""mlp-adam: the PyTorch lecture's small MLP, with and without batch norm, epoch by epoch.

Setting (a PyTorch lecture's batch-norm example): a 784-32-32-10 ReLU network (the input
dimension follows the dataset), Adam with learning rate 0.01, batches of 32, 10 epochs,
``BatchNorm1d`` after each hidden linear layer or nothing. Reported per epoch, as the lecture
plots them: the training loss (mean minibatch loss over the epoch, in train mode), the
validation loss (test mode), and training and validation accuracy (test mode, whole splits;
accuracies also before the first epoch).

PyTorch's ``nn.Linear`` draws its weights from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` (std
``1/sqrt(3 fan_in)``); normlab's Gaussian init closest in spirit is used, ``"xavier"``, the same
for both networks.
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass

import numpy as np

from normlab.experiments import figspec, noise
from normlab.experiments.base import Experiment
from normlab.experiments.config import ExperimentConfig, field_of, opt
from normlab.experiments.training import eval_loss, finite, load_data, paired_runs, train_fc
from normlab.experiments.wording import capital, diverged_at, join, last, num, plural, with_norm
from normlab.vocab import label, seed_outputs, short_label

NAME = "mlp-adam"
DESCRIPTION = "PyTorch lecture MLP 784-32-32-10, Adam 0.01, batch 32: losses and accuracies"


@dataclass(frozen=True)
class MLPAdamConfig(ExperimentConfig):
    """Settings of ``mlp-adam`` (the lecture's by default)."""

    dataset: str = field_of(ExperimentConfig, "dataset", "mnist")
    hidden_dims: tuple[int, ...] = opt((32, 32), "widths of the hidden layers")
    weight_scale: float | str = opt("xavier", "initial weights: std, or he | xavier", positive=True)
    num_training: int | None = opt(None, "training images (None: all)")
    learning_rate: float = opt(0.01, "Adam learning rate", positive=True)
    batch_size: int = opt(32, "minibatch size")
    num_epochs: int = opt(10, "epochs")


def quick(config: MLPAdamConfig) -> MLPAdamConfig:
    """Three epochs on 600 images."""
    return dataclasses.replace(config, quick=True, num_epochs=3, num_training=600)


runs = paired_runs  # one run per normalization, all from the same initial weights


def run_task(config: MLPAdamConfig, params: dict, seed: int) -> dict:
    """Train one network; return per-epoch losses and accuracies.

    Returns
    -------
    out : dict
        What :func:`~normlab.experiments.training.train_solver` returns, plus ``train_loss``
        (E,) mean minibatch loss of each epoch and ``val_loss`` (E,) test-mode validation
        loss after each epoch.
    """
    data = load_data(config, num_training=config.num_training)  # the run's own (cached)
    val_loss: list[float] = []  # after each epoch (an untrained batch-norm net in test mode
    # divides by its zero-initialised running variance: its epoch-0 loss means nothing)

    def at_epoch_end(solver, info) -> None:
        if (info["iteration"] + 1) % solver.iterations_per_epoch == 0:
            val_loss.append(eval_loss(solver.model, data["X_val"], data["y_val"]))

    out = train_fc(config, params, seed, [at_epoch_end], num_train_samples=None)
    ipe = out["iterations_per_epoch"]
    loss = np.array([np.nan if v is None else v for v in out["loss"]])
    epochs = len(loss) // ipe
    train_loss = loss[: epochs * ipe].reshape(epochs, ipe).mean(axis=1)  # (E,)
    return {**out, "train_loss": finite(train_loss), "val_loss": finite(val_loss)}


def summarize(config: MLPAdamConfig, outputs: dict, seconds: dict) -> dict:
    """Final losses and accuracies of each network."""
    columns = [
        "normalization",
        "final train loss",
        "final val loss",
        "final train acc",
        "final val acc",
        "test acc (best val epoch)",
        "time (s)",
    ]
    rows = [
        [
            short_label(name),
            last(o.get("train_loss")),
            last(o.get("val_loss")),
            last(o.get("train_acc")),
            last(o.get("val_acc")),
            o["test_acc"],
            seconds.get(name),
        ]
        for name, o in outputs.items()
    ]
    return {"table": {"columns": columns, "rows": rows}}


def headline(results: dict) -> str:
    """Final validation loss and accuracy of each network (or where it diverged), means over
    the seeds, and whether the others' final validation accuracy differs from batch norm's
    beyond noise (:mod:`normlab.experiments.noise`)."""
    epochs = results["config"]["num_epochs"]
    runs = {n: seed_outputs(results, n) for n in results["config"]["normalizations"]}
    parts, gone, finals = [], [], {}
    for n, outs in runs.items():
        if all(o.get("diverged") for o in outs):
            at = join(sorted({str(diverged_at(o)) for o in outs}))
            gone.append(f"the run {with_norm(n)} diverged at epoch {at}")
            continue
        finals[n] = [None if o.get("diverged") else last(o.get("val_acc")) for o in outs]
        losses = [last(o.get("val_loss")) for o in outs if not o.get("diverged")]
        loss = statistics.fmean(losses) if None not in losses else None
        acc = statistics.fmean([a for a in finals[n] if a is not None])
        parts.append(f"{num(loss, 3)} {with_norm(n)} (accuracy {num(acc, 3)})")
    if not parts:
        return f"{capital(join(gone))}."
    sentence = f"After {plural(epochs, 'epoch')}, the validation loss was {join(parts)}"
    sentence += f"; {join(gone)}." if gone else "."
    lead = "batchnorm" if "batchnorm" in finals else next(iter(finals))
    n_val = runs[lead][0].get("num_val")
    diffs = {
        n: noise.difference(finals[lead], acc, n_val, paired=True)
        for n, acc in finals.items()
        if n != lead
    }
    if not diffs:
        return sentence
    ref = f"{label(lead)}'s"
    versus = join([f"{with_norm(n)} was {noise.versus(d, ref)}" for n, d in diffs.items()])
    sentence += f" Final validation accuracy {versus} ({noise.seeds_phrase(len(runs[lead]))})."
    return noise.qualify(
        sentence, list(diffs.values()), results.get("config", {}).get("quick", False)
    )


def figures(config: MLPAdamConfig) -> list[dict]:
    """``loss_accuracy``: loss and accuracy per epoch, training solid and validation dashed."""
    norms = config.normalizations

    def panel(title: str, ylabel: str, train: str, val: str, first: int) -> dict:
        lines = []
        for n in norms:
            lines.append(figspec.norm_line(n, train, ", train", run=n, first=first))
            lines.append(figspec.norm_line(n, val, ", validation", run=n, fmt="s--", first=first))
        return figspec.curves(title, lines, ylabel, legend=True)

    # losses from epoch 1 (the mean over an epoch, and after it); accuracies from epoch 0
    loss = panel("Loss", "cross-entropy", "train_loss", "val_loss", 1)
    accuracy = panel("Accuracy", "accuracy", "train_acc", "val_acc", 0)
    return [figspec.figure("loss_accuracy", [loss, accuracy])]


EXPERIMENT = Experiment(
    NAME, DESCRIPTION, MLPAdamConfig, runs, run_task, summarize, quick, headline, figures
)
