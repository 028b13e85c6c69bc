"""paper-mnist: Ioffe & Szegedy (2015), section 4.1, Figure 1 (a-c), on MNIST.

Setting of the paper: a network of three fully-connected hidden layers of 100 sigmoid units,
trained for 50,000 steps with minibatches of 60, with and without batch norm after every hidden
affine layer; (a) test accuracy against the number of training steps; (b, c) the evolution of the
input to a typical sigmoid of the last hidden layer, as its {15, 50, 85}th percentiles.

What the paper leaves open, and what is used here (both networks alike):

- **initial weights**: "small random Gaussian values"; here Glorot's (``weight_scale="xavier"``,
  std ``sqrt(2 / (fan_in + fan_out))``), a scale made for sigmoid units, from the same seed
  for both networks;
- **optimizer**: plain SGD (as in the paper) with a constant learning rate of 0.1, a rate at
  which the baseline trains well too, so that the comparison is not rigged against it;
- **the recorded distribution**: every ``eval_every`` steps, the network in test mode (batch
  norm with its running statistics) runs on ``num_probe`` fixed test images; ``model.record``
  keeps the input of the sigmoids of the last hidden layer (after batch norm), and the
  percentiles are taken over those images for unit ``unit``. Test accuracy is measured on the
  whole test split at the same steps. Both happen in a Solver callback, which never touches the
  Solver's random generator (the batches are those of an uninstrumented run).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from normlab.experiments import figspec, noise
from normlab.experiments.base import Experiment
from normlab.experiments.config import ExperimentConfig, field_of, opt
from normlab.experiments.training import (
    accuracy,
    build_model,
    finite,
    load_data,
    paired_runs,
    train_solver,
)
from normlab.experiments.wording import capital, join, num, with_norm
from normlab.vocab import color, label, seed_outputs, short_label

NAME = "paper-mnist"
DESCRIPTION = "Ioffe & Szegedy 2015 Fig. 1: 3x100 sigmoid net, test accuracy and sigmoid input"
PERCENTILES = (15, 50, 85)


@dataclass(frozen=True)
class PaperMNISTConfig(ExperimentConfig):
    """Settings of ``paper-mnist`` (the paper's where it gives them)."""

    dataset: str = field_of(ExperimentConfig, "dataset", "mnist")
    hidden_dims: tuple[int, ...] = opt((100, 100, 100), "widths of the sigmoid hidden layers")
    weight_scale: float | str = opt("xavier", "initial weights: std, or he | xavier", positive=True)
    learning_rate: float = opt(0.1, "SGD learning rate (constant)", positive=True)
    batch_size: int = opt(60, "minibatch size")
    num_steps: int = opt(50_000, "training steps")
    eval_every: int = opt(500, "steps between measurements of test accuracy and percentiles")
    num_probe: int = opt(1000, "test images whose sigmoid inputs give the percentiles")
    unit: int = opt(0, "which sigmoid of the last hidden layer is tracked", positive=False)
    target_acc: float | None = opt(None, "test accuracy target of the table (None: 95% of best)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hidden_dims and not 0 <= self.unit < self.hidden_dims[-1]:
            raise ValueError(
                f"{type(self).__name__}: expected 0 <= unit < {self.hidden_dims[-1]} "
                f"(last hidden width), got {self.unit}"
            )


def quick(config: PaperMNISTConfig) -> PaperMNISTConfig:
    """300 steps, measured every 50, 300 probe images."""
    return dataclasses.replace(config, quick=True, num_steps=300, eval_every=50, num_probe=300)


runs = paired_runs  # one run per normalization, all from the same initial weights


def run_task(config: PaperMNISTConfig, params: dict, seed: int) -> dict:
    """Train one network for ``num_steps`` steps, measuring as described in the module docs.

    Returns
    -------
    out : dict
        ``steps`` (T,), ``test_acc`` (T,), ``loss`` (T,) mean training loss since the previous
        measurement, ``percentiles`` {"15", "50", "85"} each (T,), ``final_test_acc``,
        ``diverged``.
    """
    data = load_data(config)
    model, solver_seed = build_model(
        data,
        seed,
        params["normalization"],
        hidden_dims=config.hidden_dims,
        weight_scale=config.weight_scale,
        activation="sigmoid",
    )
    last_hidden = len(config.hidden_dims)  # layer number of the last hidden layer
    probe = data["X_test"][: config.num_probe]  # (P, C, H, W)
    steps, test_acc, losses = [], [], []
    pct = {str(p): [] for p in PERCENTILES}
    window: list[float] = []

    def measure(solver, info) -> None:
        window.append(info["loss"])
        step = info["iteration"] + 1
        if step % config.eval_every == 0 or step == config.num_steps:
            model.record = {last_hidden}
            model.loss(probe)  # test mode
            z = model.activations[last_hidden][:, config.unit]  # (P,) inputs of one sigmoid
            model.record = set()
            for p, v in zip(PERCENTILES, np.percentile(z, PERCENTILES), strict=True):
                pct[str(p)].append(float(v))
            steps.append(step)
            test_acc.append(accuracy(model, data["X_test"], data["y_test"]))
            losses.append(float(np.mean(window)))
            window.clear()

    out = train_solver(
        model,
        data,
        solver_seed,
        diagnostics=config.diagnostics,
        callbacks=[measure],
        update_rule="sgd",
        optim_config={"learning_rate": config.learning_rate},
        batch_size=config.batch_size,
        num_iterations=config.num_steps,
    )
    return {
        "steps": steps,
        "test_acc": test_acc,
        "loss": finite(losses),
        "percentiles": {k: finite(v) for k, v in pct.items()},
        "final_test_acc": test_acc[-1] if test_acc else None,
        "num_test": out["num_test"],
        "data_dir": out["data_dir"],
        "diverged": out["diverged"],
    }


def _first_step_reaching(steps: list, acc: list, target: float) -> int | None:
    """The first measured step whose test accuracy is at least ``target``."""
    return next((s for s, a in zip(steps, acc, strict=True) if a >= target), None)


def settle(config: PaperMNISTConfig, per_seed: list[dict]) -> PaperMNISTConfig:
    """The test accuracy target, when automatic: 95% of the best test accuracy any run of any
    seed measured (rounded down to 0.01), one target for every seed's table."""
    if config.target_acc is not None:
        return config
    best = max((max(o["test_acc"], default=0.0) for s in per_seed for o in s.values()), default=0)
    return dataclasses.replace(config, target_acc=round(math.floor(0.95 * best * 100) / 100, 2))


def summarize(config: PaperMNISTConfig, outputs: dict, seconds: dict) -> dict:
    """Final test accuracy, drift of the median sigmoid input, steps to the target accuracy."""
    target = settle(config, [outputs]).target_acc
    columns = [
        "normalization",
        "final test acc",
        f"steps to {target:.2f} test acc",
        "median input: first",
        "median input: last",
        "median input: range",
        "time (s)",
    ]
    rows, drift = [], {}
    for name, o in outputs.items():
        med = [v for v in o["percentiles"]["50"] if v is not None]
        drift[name] = (max(med) - min(med)) if med else None
        rows.append(
            [
                short_label(name),
                o["final_test_acc"],
                _first_step_reaching(o["steps"], o["test_acc"], target),
                med[0] if med else None,
                med[-1] if med else None,
                drift[name],
                seconds.get(name),
            ]
        )
    return {
        "target_acc": target,
        "median_drift": drift,
        "table": {"columns": columns, "rows": rows},
    }


def headline(results: dict) -> str:
    """Final test accuracies (means over the seeds) and whether they differ from batch norm's
    beyond noise (:mod:`normlab.experiments.noise`), and the drift of the tracked sigmoid's
    median input."""
    runs = {n: seed_outputs(results, n) for n in results["config"]["normalizations"]}
    every = {n: all(o.get("diverged") for o in outs) for n, outs in runs.items()}
    gone = [f"the run {with_norm(n)} diverged" for n in runs if every[n]]
    trained = {n: outs for n, outs in runs.items() if not every[n]}
    if not trained:
        return f"{capital(join(gone))}."
    finals = {  # a seed that diverged has no final accuracy
        n: [None if o.get("diverged") else o.get("final_test_acc") for o in outs]
        for n, outs in trained.items()
    }
    lead = "batchnorm" if "batchnorm" in finals else next(iter(finals))
    n_test = trained[lead][0].get("num_test")
    diffs = {
        n: noise.difference(finals[lead], acc, n_test, paired=True)
        for n, acc in finals.items()
        if n != lead
    }
    accs = [f"{num(_mean(finals[lead]), 3)} {with_norm(lead)}"]
    accs += [f"{num(d.b, 3)} {with_norm(n)} ({noise.versus(d)})" for n, d in diffs.items()]
    steps = max(
        (o["steps"][-1] for outs in trained.values() for o in outs if o.get("steps")), default=0
    )
    drift = results.get("median_drift", {})
    moves = [f"{num(drift.get(n))} {with_norm(n)}" for n in trained]
    sentence = (
        f"After {steps} steps, test accuracy was {join(accs)} "
        f"({noise.seeds_phrase(len(trained[lead]))}), and the median input of the "
        f"tracked sigmoid moved over a range of {join(moves)}"
    )
    sentence += f"; {join(gone)}." if gone else "."
    return noise.qualify(
        sentence, list(diffs.values()), results.get("config", {}).get("quick", False)
    )


def _mean(values: list) -> float | None:
    """The mean of the values that are not None (None if none is)."""
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def figures(config: PaperMNISTConfig) -> list[dict]:
    """``figure1``: (a) test accuracy against the steps; (b, c...) the tracked sigmoid's input,
    one panel per run, each on its own scale (the drift, not the width, is the point)."""
    norms = config.normalizations
    lines = [figspec.norm_line(n, "test_acc", run=n, fmt="-", ms=None) for n in norms]
    panels = [
        figspec.curves(
            "(a) Test accuracy", lines, "accuracy", x="steps", xlabel="training steps", legend=True
        )
    ]
    for i, n in enumerate(norms):
        letter = "bcdefghijklmnopqrstuvwxyz"[i % 25]
        lines = [
            figspec.line(["percentiles", p], f"{p}th percentile", color(n) or "k", n, fmt, None)
            for p, fmt in (("15", ":"), ("50", "-"), ("85", ":"))
        ]
        panels.append(
            figspec.curves(
                f"({letter}) Sigmoid input, {label(n)}",
                lines,
                "input of one last-layer sigmoid" if i == 0 else None,
                x="steps",
                xlabel="training steps",
                legend=True,
            )
        )
    return [figspec.figure("figure1", panels)]


EXPERIMENT = Experiment(
    NAME,
    DESCRIPTION,
    PaperMNISTConfig,
    runs,
    run_task,
    summarize,
    quick,
    headline,
    figures,
    settle,
)
