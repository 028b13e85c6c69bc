"""weight-scale: sensitivity to the initial weight scale, with and without batch norm.

Setting (CS231n assignment 2, ``BatchNormalization.ipynb``, "Batch normalization and
initialization"): an eight-layer ReLU network, hidden layers ``[50] * 7``, 1000 training images,
20 weight scales ``np.logspace(-4, 0, 20)``, Adam with learning rate 1e-3, batches of 50,
10 epochs; for each scale the networks with and without batch norm start from the same
weights. A run whose loss becomes NaN or infinite is recorded as diverged (its final loss is
None) with the accuracies it reached until then.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from normlab.experiments import figspec, noise
from normlab.experiments.base import Experiment, RunSpec
from normlab.experiments.config import ExperimentConfig, field_of, opt
from normlab.experiments.training import train_fc
from normlab.experiments.wording import capital, join, with_norm
from normlab.vocab import label, run_name, short_label

NAME = "weight-scale"
DESCRIPTION = "deep net [50]*7 at 20 weight scales 1e-4..1, with and without batch norm"


@dataclass(frozen=True)
class WeightScaleConfig(ExperimentConfig):
    """Settings of ``weight-scale`` (the notebook's by default)."""

    dataset: str = field_of(ExperimentConfig, "dataset", "cifar10")
    hidden_dims: tuple[int, ...] = opt((50,) * 7, "widths of the hidden layers")
    scale_min: float = opt(1e-4, "smallest weight scale", positive=True)
    scale_max: float = opt(1.0, "largest weight scale", positive=True)
    num_scales: int = opt(20, "weight scales, log-spaced from scale_min to scale_max")
    num_training: int | None = opt(1000, "training images (None: all)")
    learning_rate: float = opt(1e-3, "Adam learning rate", positive=True)
    batch_size: int = opt(50, "minibatch size")
    num_epochs: int = opt(10, "epochs")


def quick(config: WeightScaleConfig) -> WeightScaleConfig:
    """Five scales, two epochs, 300 images."""
    return dataclasses.replace(config, quick=True, num_scales=5, num_epochs=2, num_training=300)


def weight_scales(config: WeightScaleConfig) -> list[float]:
    """The swept scales, ``np.logspace(log10(scale_min), log10(scale_max), num_scales)``."""
    lo, hi = np.log10(config.scale_min), np.log10(config.scale_max)
    return [float(s) for s in np.logspace(lo, hi, config.num_scales)]


def runs(config: WeightScaleConfig) -> list[RunSpec]:
    """One run per (normalization, scale); both normalizations of a scale share the seed."""
    return [
        RunSpec(
            run_name(n, scale=i), {"normalization": n, "weight_scale": s}, seed_key=f"scale={i}"
        )
        for n in config.normalizations
        for i, s in enumerate(weight_scales(config))
    ]


run_task = train_fc  # the net above, its weights drawn at the run's scale, trained


def summarize(config: WeightScaleConfig, outputs: dict, seconds: dict) -> dict:
    """Per normalization, the three notebook curves against the scale; a table per scale.

    Returns
    -------
    summary : dict
        ``weight_scales`` (S,); ``curves[norm]``: ``best_val_acc``, ``best_train_acc``,
        ``final_train_loss`` (None where diverged), ``diverged``, each of length S; ``table``.
    """
    scales = weight_scales(config)
    curves = {}
    for n in config.normalizations:
        outs = [outputs[run_name(n, scale=i)] for i in range(len(scales))]
        curves[n] = {
            key: [o[key] for o in outs]
            for key in ("best_val_acc", "best_train_acc", "final_train_loss", "diverged")
        }
    columns = ["weight scale"] + [
        f"{short_label(n)}: {what}"
        for n in config.normalizations
        for what in ("best val acc", "best train acc", "final train loss")
    ]
    rows = [
        [s]
        + [
            curves[n][key][i]
            for n in config.normalizations
            for key in ("best_val_acc", "best_train_acc", "final_train_loss")
        ]
        for i, s in enumerate(scales)
    ]
    return {"weight_scales": scales, "curves": curves, "table": {"columns": columns, "rows": rows}}


def _scale_list(good: list, scales: list) -> str:
    """ " (scales a to b)" when ``good`` is a contiguous run of ``scales``, else each listed."""
    if not good:
        return ""
    if len(good) == 1:
        return f" (scale {good[0]:.1e})"
    i = scales.index(good[0])
    if scales[i : i + len(good)] == good:
        return f" (scales {good[0]:.1e} to {good[-1]:.1e})"
    return f" (scales {join([f'{s:.1e}' for s in good])})"


def headline(results: dict) -> str:
    """At how many scales each network stayed near the best accuracy (80% of it, rounded),
    then at how many scales the others' best validation accuracy differed from batch norm's
    beyond noise (:mod:`normlab.experiments.noise`; the networks of a scale share seeds)."""
    curves, scales = results["curves"], results["weight_scales"]
    best = max((v for c in curves.values() for v in c["best_val_acc"] if v is not None), default=0)
    thr = math.floor(0.8 * best * 20 + 1e-9) / 20
    parts = []
    for norm, c in curves.items():
        good = [
            s for s, v in zip(scales, c["best_val_acc"], strict=True) if v is not None and v >= thr
        ]
        where = _scale_list(good, list(scales))
        parts.append(f"{len(good)} of {len(scales)} weight scales {with_norm(norm)}{where}")
    sentence = f"Best validation accuracy was at least {thr:.2f} at {join(parts)}."
    lead = "batchnorm" if "batchnorm" in curves else next(iter(curves))
    others = [n for n in curves if n != lead]
    if not others:
        return sentence
    n_val = noise.eval_size(results, "num_val")
    lead_acc = noise.per_seed(results, ["curves", lead, "best_val_acc"])  # (seeds, S)
    diffs, counts = [], []
    for n in others:
        acc = noise.per_seed(results, ["curves", n, "best_val_acc"])
        ds = [
            noise.difference([a[i] for a in lead_acc], [b[i] for b in acc], n_val, paired=True)
            for i in range(len(scales))
        ]
        above = sum(d.clear and d.a > d.b for d in ds)
        below = sum(d.clear and d.a < d.b for d in ds)
        counts.append(
            f"higher beyond noise at {above}, lower beyond noise at {below} and within noise "
            f"at {len(scales) - above - below} of the {len(scales)} scales than {with_norm(n)}"
        )
        diffs += ds
    sentence += (
        f" {capital(label(lead))}'s was {join(counts)} "
        f"({noise.seeds_phrase(results.get('seeds', 1))})."
    )
    return noise.qualify(sentence, diffs, results.get("config", {}).get("quick", False))


def figures(config: WeightScaleConfig) -> list[dict]:
    """``weight_scale``: the notebook's three panels against the weight scale (log x-axis); the
    final loss on a log y-axis too (a diverging baseline's loss spans decades), diverged runs
    marked."""

    def panel(key: str, title: str, ylabel: str, loss: bool = False, legend: bool = False):
        lines = []
        for n in config.normalizations:
            flags = ["curves", n, "diverged"] if loss else None
            lines.append(figspec.norm_line(n, ["curves", n, key], diverged=flags))
        xlabel, x = "weight initialization scale", ["weight_scales"]
        return figspec.sweep(
            title, xlabel, ylabel, x, lines, ylog=loss, minor_grid=True, legend=legend
        )

    panels = [
        panel("best_val_acc", "Best validation accuracy", "accuracy", legend=True),
        panel("best_train_acc", "Best training accuracy", "accuracy"),
        panel("final_train_loss", "Final training loss", "loss", loss=True),
    ]
    return [figspec.figure("weight_scale", panels)]


EXPERIMENT = Experiment(
    NAME, DESCRIPTION, WeightScaleConfig, runs, run_task, summarize, quick, headline, figures
)
