"""darknet-mismatch: how far darknet's batch-norm backward is from the gradient of its forward,
and whether training notices.

darknet's layer normalizes with ``(x - mu) / (sqrt(var) + 1e-6)`` (unbiased ``var``) and
differentiates ``(x - mu) / sqrt(v + 1e-5)`` with the biased variance's ``1/m``
(:func:`~normlab.layers.darknet_batchnorm_backward`, docs/derivations.md section 7). Two parts:

(a) **The gradient**, pure computation, one run per (m, input std): ``draws`` independent
    draws of ``x = 1 + std * z`` of shape (m, ``channels``), ``gamma = 1 + 0.3 z'``, a random
    upstream gradient; the relative error ``||dx_darknet - dx_true|| / ||dx_true||`` of each
    draw and over all of them, with ``dx_true`` in closed form (:func:`true_dx`). The two input
    stds at one m start from the same draws (a paired seed), so only the variance's size next
    to darknet's eps differs. Expected (section 7): for a large variance the error shrinks
    about as ``m^-3/2`` (the ``1/m`` against ``1/(m - 1)``); at std 1e-3 the eps terms dominate
    and it tends to ``1 - (s + 1e-6)/sqrt(var + 1e-5)``, about 0.70, at any m.
(b) **Training**: the same fully-connected net (hidden layers ``[256] * 3``, He weights, Adam
    1e-3, 5 epochs on 10,000 Fashion-MNIST images; digits with ``--quick``) with ``'darknet'``
    and with ``'batchnorm'``, from the same initial weights. In a fully-connected net m is the
    batch size; batches of 16 make darknet's backward as wrong as it gets at a usable size.

The headline's noise for (a) is the spread of ``log10`` of the per-draw errors (every draw of
every seed is independent); for (b) as every accuracy comparison (:mod:`.noise`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from normlab.experiments import figspec, noise
from normlab.experiments.base import Experiment, RunSpec
from normlab.experiments.config import ExperimentConfig, field_of, opt, require_nonempty
from normlab.experiments.training import train_fc
from normlab.experiments.wording import join, num, plural, with_norm
from normlab.layers.darknet import (
    FORWARD_EPS,
    darknet_batchnorm_backward,
    darknet_batchnorm_forward,
)
from normlab.vocab import label, run_name, seed_outputs, short_label

NAME = "darknet-mismatch"
DESCRIPTION = "darknet batch norm: backward vs true gradient against m; does training notice"

REFERENCE = "batchnorm"  # what training with darknet's layer is compared with
GRADIENT = "gradient"  # the runs of part (a) are named gradient/m=M/std=S


@dataclass(frozen=True)
class DarknetMismatchConfig(ExperimentConfig):
    """Settings of ``darknet-mismatch`` (the module docstring's setting by default)."""

    dataset: str = field_of(ExperimentConfig, "dataset", "fashion-mnist")
    normalizations: tuple[str, ...] = field_of(
        ExperimentConfig, "normalizations", (REFERENCE, "darknet")
    )
    batch_sizes: tuple[int, ...] = opt((2, 4, 8, 16, 64, 256), "(a): values per channel m")
    input_stds: tuple[float, ...] = opt((1.0, 1e-3), "(a): std of the inputs x = 1 + std * z")
    channels: int = opt(64, "(a): channels of each draw")
    draws: int = opt(8, "(a): independent draws per (m, std); their spread is the noise")
    hidden_dims: tuple[int, ...] = opt((256,) * 3, "(b): widths of the hidden layers")
    weight_scale: float | str = opt("he", "(b): initial weights: std, or he | xavier", True)
    num_training: int | None = opt(10000, "(b): training images (None: all)")
    update_rule: str = opt("adam", "(b): update rule")
    learning_rate: float = opt(1e-3, "(b): learning rate", positive=True)
    batch_size: int = opt(16, "(b): minibatch size (darknet's m)")
    num_epochs: int = opt(5, "(b): epochs")

    def __post_init__(self) -> None:
        super().__post_init__()
        require_nonempty(self, "batch_sizes", "input_stds")
        if min(self.batch_sizes) < 2 or self.batch_size < 2:
            raise ValueError(
                f"DarknetMismatchConfig: expected batch sizes >= 2 (darknet's unbiased variance "
                f"divides by m - 1), got batch_sizes={self.batch_sizes!r}, "
                f"batch_size={self.batch_size!r}"
            )
        if not all(isinstance(s, int | float) and s > 0 for s in self.input_stds):
            raise ValueError(
                f"DarknetMismatchConfig: expected input_stds > 0, got {self.input_stds!r}"
            )
        if "darknet" not in self.normalizations:
            raise ValueError(
                "DarknetMismatchConfig: expected 'darknet' in normalizations, got "
                f"{self.normalizations!r}"
            )


def quick(config: DarknetMismatchConfig) -> DarknetMismatchConfig:
    """(a) at m = 2, 16, 256 with 4 draws; (b) three epochs on 1000 images, narrower layers."""
    return dataclasses.replace(
        config,
        quick=True,
        batch_sizes=(2, 16, 256),
        draws=4,
        num_training=1000,
        num_epochs=3,
        hidden_dims=(64, 64),
    )


def std_key(std: float) -> str:
    """The key of an input std in the summary and the run names: ``'std=0.001'``."""
    return f"std={std:g}"


def runs(config: DarknetMismatchConfig) -> list[RunSpec]:
    """(a) one run per (m, std), the stds of one m from the same draws; (b) one training run
    per normalization, from the same initial weights."""
    grads = [
        RunSpec(
            f"{GRADIENT}/m={m}/{std_key(s)}",
            {"part": "gradient", "m": m, "std": s},
            seed_key=f"m={m}",
        )
        for m in config.batch_sizes
        for s in config.input_stds
    ]
    train = [
        RunSpec(run_name(n), {"part": "train", "normalization": n}, seed_key="net")
        for n in config.normalizations
    ]
    return grads + train


def true_dx(x: np.ndarray, gamma: np.ndarray, dout: np.ndarray) -> np.ndarray:
    """The gradient of darknet's train-mode forward, ``sum(dout * y)`` with respect to ``x``.

    Parameters
    ----------
    x : ndarray of shape (m, C)
    gamma : ndarray of shape (C,)
    dout : ndarray of shape (m, C)

    Returns
    -------
    dx : ndarray of float64, shape (m, C)

    Notes
    -----
    docs/derivations.md section 7, with ``xmu = x - mu``, ``s`` the unbiased std and
    ``g = gamma * dout``::

        dx = (g - mean(g) - xmu * sum(g * xmu) / ((m - 1) s (s + 1e-6))) / (s + 1e-6)
    """
    x = np.asarray(x, np.float64)
    m = x.shape[0]
    xmu = x - x.mean(axis=0)  # (m, C)
    s = np.sqrt((xmu**2).sum(axis=0) / (m - 1))  # (C,)
    g = gamma * np.asarray(dout, np.float64)  # (m, C)
    proj = (g * xmu).sum(axis=0) / ((m - 1) * s * (s + FORWARD_EPS))  # (C,)
    return (g - g.mean(axis=0) - xmu * proj) / (s + FORWARD_EPS)


def gradient_task(m: int, std: float, channels: int, draws: int, seed: int) -> dict:
    """Part (a) for one (m, std): darknet's dx against :func:`true_dx` over ``draws`` draws.

    Returns
    -------
    out : dict
        ``rel_error`` (over every draw's channels together), ``draw_errors`` (draws,) the
        relative error of each draw, ``m``, ``std``, ``channels``.
    """
    rng = np.random.default_rng(seed)
    errors, num2, den2 = [], 0.0, 0.0
    for _ in range(draws):
        z = rng.standard_normal((m, channels))  # (m, C), the same at every std of one m
        gamma = 1.0 + 0.3 * rng.standard_normal(channels)  # (C,)
        beta = rng.standard_normal(channels)  # (C,)
        dout = rng.standard_normal((m, channels))  # (m, C)
        x = 1.0 + std * z  # (m, C)
        _, cache = darknet_batchnorm_forward(x, gamma, beta, {"mode": "train"})
        dx = darknet_batchnorm_backward(dout, cache)[0]  # (m, C)
        true = true_dx(x, gamma, dout)  # (m, C)
        d2, t2 = float(np.sum((dx - true) ** 2)), float(np.sum(true**2))
        errors.append(math.sqrt(d2 / t2))
        num2, den2 = num2 + d2, den2 + t2
    return {
        "rel_error": math.sqrt(num2 / den2),
        "draw_errors": errors,
        "m": m,
        "std": std,
        "channels": channels,
    }


def run_task(config: DarknetMismatchConfig, params: dict, seed: int) -> dict:
    """Part (a), :func:`gradient_task`, or part (b), the net trained
    (:func:`~normlab.experiments.training.train_fc`), as the run's ``part`` says."""
    if params["part"] == "gradient":
        return gradient_task(params["m"], params["std"], config.channels, config.draws, seed)
    return train_fc(config, {"normalization": params["normalization"]}, seed)


def summarize(config: DarknetMismatchConfig, outputs: dict, seconds: dict) -> dict:
    """The relative error per input std against m, and the trained nets' accuracies.

    Returns
    -------
    summary : dict
        ``batch_sizes``; ``rel_error[std_key]`` one per m; ``final_val_acc[norm]``;
        ``table``: one row per run.
    """
    ms = list(config.batch_sizes)
    errors = {
        std_key(s): [outputs[f"{GRADIENT}/m={m}/{std_key(s)}"]["rel_error"] for m in ms]
        for s in config.input_stds
    }
    columns = [
        "run",
        "m (values per channel)",
        "input std",
        "relative error of dx (log scale)",
        "final val acc",
        "test acc (best val epoch)",
        "time (s)",
    ]
    rows = []
    for name, o in outputs.items():
        if name.startswith(f"{GRADIENT}/"):
            rows.append(["darknet dx", o["m"], o["std"], o["rel_error"], None, None])
        else:
            norm = name
            rows.append(
                [
                    short_label(norm),
                    config.batch_size,
                    None,
                    None,
                    o["final_val_acc"],
                    o["test_acc"],
                ]  # fmt: skip
            )
        rows[-1].append(seconds.get(name))
    finals = {n: outputs[run_name(n)]["final_val_acc"] for n in config.normalizations}
    return {
        "batch_sizes": ms,
        "rel_error": errors,
        "final_val_acc": finals,
        "table": {"columns": columns, "rows": rows},
    }


def _sci(x: float | None) -> str:
    """``3.4e-05``; ``0.70`` between 0.01 and 100."""
    if x is None:
        return "n/a"
    return f"{x:.2f}" if 0.01 <= abs(x) < 100 else f"{x:.1e}"


def _log_draws(results: dict, m: int, std: float) -> list[float]:
    """``log10`` of every draw's error of run (m, std), every seed's draws in seed order."""
    name = f"{GRADIENT}/m={m}/{std_key(std)}"
    return [math.log10(e) for o in seed_outputs(results, name) for e in o["draw_errors"]]


def _gradient_sentence(results: dict) -> str:
    """Part (a): the error at the smallest and the largest m per std, and the stds compared at
    the largest m; each change stated only beyond the spread of the draws."""
    cfg = results["config"]
    ms, stds = cfg["batch_sizes"], cfg["input_stds"]
    lo, hi = min(ms), max(ms)
    i_lo, i_hi = ms.index(lo), ms.index(hi)
    parts = []
    for s in stds:
        mean = results["rel_error"][std_key(s)]
        d = noise.difference(_log_draws(results, lo, s), _log_draws(results, hi, s))
        if d.clear:
            words = f"{'fell' if d.b < d.a else 'rose'} from {_sci(mean[i_lo])} at m = {lo}"
        else:
            words = f"went from {_sci(mean[i_lo])} at m = {lo}, within noise,"
        parts.append(f"{words} to {_sci(mean[i_hi])} at m = {hi} with input std {s:g}")
    sentence = "The relative error of darknet's dx against the true gradient of its forward "
    sentence += join(parts)
    if len(stds) > 1:
        small, large = min(stds), max(stds)
        d = noise.difference(
            _log_draws(results, hi, large), _log_draws(results, hi, small), paired=True
        )
        factor = 10 ** (d.b - d.a)
        if d.clear:
            sentence += (
                f"; at m = {hi} the error with std {small:g} is {_sci(factor)} times that with "
                f"std {large:g}, beyond noise"
            )
        else:
            sentence += f"; at m = {hi} the two stds' errors are within noise of each other"
    draws = len(_log_draws(results, lo, stds[0]))
    return sentence + f" (noise: 2 standard errors of log10 error, {draws} draws)."


def _training_sentence(results: dict) -> str:
    """Part (b): darknet's final validation accuracy against batch norm's, beyond noise."""
    cfg = results["config"]
    norms = cfg["normalizations"]
    ref = REFERENCE if REFERENCE in norms else next(n for n in norms if n != "darknet")
    runs = {n: seed_outputs(results, n) for n in norms}
    finals = {n: [o.get("final_val_acc") for o in outs] for n, outs in runs.items()}
    n_val = runs[ref][0].get("num_val")
    diffs = {
        n: noise.difference(finals[ref], finals[n], n_val, paired=True) for n in norms if n != ref
    }
    versus = join(
        [f"{num(d.b)} {with_norm(n)} ({noise.versus(d, label(ref))})" for n, d in diffs.items()]
    )
    seeds = results.get("seeds", 1)
    sentence = (
        f"Training at batch size {cfg['batch_size']} for {plural(cfg['num_epochs'], 'epoch')}, "
        f"final validation accuracy {num(diffs['darknet'].a)} {with_norm(ref)}, {versus}; "
        f"{noise.seeds_phrase(seeds)}."
    )
    return noise.qualify(sentence, list(diffs.values()), cfg.get("quick", False))


def headline(results: dict) -> str:
    """Part (a) then part (b), each difference stated only beyond noise."""
    return f"{_gradient_sentence(results)} {_training_sentence(results)}"


def figures(config: DarknetMismatchConfig) -> list[dict]:
    """``relative_error``: the error against m, one line per input std (log-log);
    ``training``: training loss and validation accuracy of each normalization."""
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e"]
    lines = [
        figspec.line(["rel_error", std_key(s)], f"input std {s:g}", palette[i % len(palette)])
        for i, s in enumerate(config.input_stds)
    ]
    error = figspec.sweep(
        "darknet's dx against the true gradient",
        "values per channel m",
        "||dx_darknet - dx_true|| / ||dx_true||",
        ["batch_sizes"],
        lines,
        log_base=2,
        ticks=True,
        ylog=True,
        legend=True,
    )
    norms = config.normalizations
    val = figspec.curves(
        "Validation accuracy",
        [figspec.norm_line(n, "val_acc", run=n) for n in norms],
        "accuracy",
        legend=True,
    )
    loss = figspec.loss("Training loss", "loss (moving average over an epoch)", norms)
    return [figspec.figure("relative_error", [error]), figspec.figure("training", [loss, val])]


EXPERIMENT = Experiment(
    NAME, DESCRIPTION, DarknetMismatchConfig, runs, run_task, summarize, quick, headline, figures
)
