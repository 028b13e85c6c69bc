"""rmsnorm: RMSNorm against layer norm, accuracy and time per training step.

Zhang & Sennrich (2019), "Root Mean Square Layer Normalization", drop layer norm's re-centring
and report the same accuracy in 7%-64% less time on their networks (RNNs and Transformers on
GPUs). Scaled to this machine: a fully-connected ReLU network, hidden layers ``[256] * 3``,
He initial weights, Adam with learning rate 1e-3, batches of 100, on Fashion-MNIST (digits with
``--quick``); the same initial weights and batches for every normalization (a paired seed).

What the time compares is normlab's own implementations on this CPU, not the two methods in the
abstract: both layers run on their numba kernels (``normlab/kernels/rms.py`` and
``normlab/kernels/norm.py``; with ``NORMLAB_BACKEND=numpy`` both on their NumPy references, and
the headline says which). The time per step is measured inside the task, after
the runner has compiled the kernels: the interval between consecutive Solver callbacks (one
whole step: batch, forward, backward, update), and its **median** over the run, so the few
intervals that also hold an epoch-end accuracy check do not count. The relative time
(RMSNorm's median over layer norm's) is computed per seed; its spread over seeds is the noise
the headline judges it by (with one seed it says there is none).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass

from normlab.experiments import figspec, noise
from normlab.experiments.base import Experiment
from normlab.experiments.config import ExperimentConfig, field_of, opt
from normlab.experiments.training import paired_runs, train_fc
from normlab.experiments.wording import join, num, with_norm
from normlab.kernels import get_backend
from normlab.vocab import label, seed_outputs, short_label

NAME = "rmsnorm"
DESCRIPTION = "RMSNorm vs layer norm (FC net [256]*3): accuracy and time per training step"

REFERENCE = "layernorm"  # what RMSNorm's time and accuracy are measured against


@dataclass(frozen=True)
class RMSNormConfig(ExperimentConfig):
    """Settings of ``rmsnorm`` (the module docstring's setting by default)."""

    dataset: str = field_of(ExperimentConfig, "dataset", "fashion-mnist")
    normalizations: tuple[str, ...] = field_of(
        ExperimentConfig, "normalizations", ("layernorm", "rmsnorm")
    )
    hidden_dims: tuple[int, ...] = opt((256,) * 3, "widths of the hidden layers")
    weight_scale: float | str = opt("he", "initial weights: std, or he | xavier", positive=True)
    num_training: int | None = opt(10000, "training images (None: all)")
    update_rule: str = opt("adam", "update rule")
    learning_rate: float = opt(1e-3, "learning rate", positive=True)
    batch_size: int = opt(100, "minibatch size")
    num_epochs: int = opt(5, "epochs")

    def __post_init__(self) -> None:
        super().__post_init__()
        missing = [n for n in ("rmsnorm", REFERENCE) if n not in self.normalizations]
        if missing:
            raise ValueError(
                f"RMSNormConfig: expected 'rmsnorm' and 'layernorm' in normalizations, got "
                f"{self.normalizations!r}; add {', '.join(map(repr, missing))}"
            )


def quick(config: RMSNormConfig) -> RMSNormConfig:
    """Three epochs on 1000 images in batches of 50, narrower layers (a second on the digits)."""
    return dataclasses.replace(
        config, quick=True, num_training=1000, num_epochs=3, batch_size=50, hidden_dims=(64, 64)
    )


runs = paired_runs  # one run per normalization, all from the same initial weights


def _cpu() -> str:
    """This machine's CPU, for the headline (the runner's own description of it)."""
    from normlab.experiments.runner import environment

    return environment()["cpu"]


def run_task(config: RMSNormConfig, params: dict, seed: int) -> dict:
    """Train one network and time its steps.

    Returns
    -------
    out : dict
        What :func:`~normlab.experiments.training.train_fc` returns, plus ``step_ms`` (median
        milliseconds between consecutive steps' callbacks: one step each, epoch-end checks
        aside), ``step_ms_by_epoch`` (E,) the same median within each epoch, ``steps_timed``
        ``cpu`` and ``backend`` (``numba`` or ``numpy``, :func:`normlab.kernels.get_backend`).
    """
    stamps: list[float] = []

    def tick(solver, info) -> None:
        stamps.append(time.perf_counter())

    out = train_fc(config, params, seed, [tick])
    ms = [1e3 * (b - a) for a, b in zip(stamps, stamps[1:], strict=False)]  # step k+1 each
    ipe = out["iterations_per_epoch"]
    by_epoch: dict[int, list[float]] = {}
    for k, t in enumerate(ms, start=1):  # interval k ends at step k's callback
        by_epoch.setdefault(k // ipe, []).append(t)
    return {
        **out,
        "step_ms": statistics.median(ms) if ms else None,
        "step_ms_by_epoch": [statistics.median(v) for _, v in sorted(by_epoch.items())],
        "steps_timed": len(ms),
        "cpu": _cpu(),
        "backend": get_backend(),
    }


def summarize(config: RMSNormConfig, outputs: dict, seconds: dict) -> dict:
    """Accuracies and median step time of each network, and the times relative to layer norm's.

    Returns
    -------
    summary : dict
        ``final_val_acc``, ``step_ms`` and ``time_ratio`` (median step time over layer norm's),
        each by normalization; ``table``.
    """
    ref = outputs[REFERENCE]["step_ms"]
    ratio = {
        n: None if o["step_ms"] is None or not ref else o["step_ms"] / ref
        for n, o in outputs.items()
    }
    columns = [
        "normalization",
        "final val acc",
        "best val acc",
        "test acc (best val epoch)",
        "median step time (ms)",
        "step time / layer norm's",
        "time (s)",
    ]
    rows = [
        [
            short_label(n),
            o["final_val_acc"],
            o["best_val_acc"],
            o["test_acc"],
            o["step_ms"],
            ratio[n],
            seconds.get(n),
        ]
        for n, o in outputs.items()
    ]
    return {
        "final_val_acc": {n: o["final_val_acc"] for n, o in outputs.items()},
        "step_ms": {n: o["step_ms"] for n, o in outputs.items()},
        "time_ratio": ratio,
        "table": {"columns": columns, "rows": rows},
    }


def _time_phrase(n: str, ratios: list, seeds: int) -> tuple[str, noise.Difference]:
    """How run ``n``'s median step time compares with layer norm's, judged by the spread of
    the per-seed ratios (a paired test of the ratio against 1)."""
    d = noise.difference([1.0] * len(ratios), ratios, paired=True)
    r = d.b
    if r is None:
        return f"{with_norm(n)}: no time measured", d
    share = f"{abs(1.0 - r) * 100:.0f}% {'less' if r < 1 else 'more'} time"
    if seeds < 2:
        verdict = "one seed: no spread to judge it by, run with --seeds 3"
    elif d.clear:
        verdict = f"beyond noise, ±{num(d.bound)}"
    else:
        verdict = f"within noise, ±{num(d.bound)}"
    return f"{with_norm(n)} {num(r)}x layer norm's ({share}; {verdict})", d


def headline(results: dict) -> str:
    """What is compared (normlab's implementations, this CPU), the median step time relative
    to layer norm's and the final validation accuracy against layer norm's, each difference
    stated only beyond noise (:mod:`normlab.experiments.noise`)."""
    cfg = results["config"]
    seeds = results.get("seeds", 1)
    runs = {n: seed_outputs(results, n) for n in cfg["normalizations"]}
    others = [n for n in runs if n != REFERENCE]
    cpu = runs[REFERENCE][0].get("cpu") or "this CPU"
    how = {"numba": "numba kernels", "numpy": "NumPy references"}
    backend = how.get(runs[REFERENCE][0].get("backend"), "implementations")
    times = [_time_phrase(n, noise.per_seed(results, ["time_ratio", n]), seeds) for n in others]
    sentence = (
        f"normlab's RMSNorm against its layer norm (both {backend}) on {cpu}: "
        f"median time per training step {join([t for t, _ in times])}."
    )
    n_val = runs[REFERENCE][0].get("num_val")
    finals = {n: [o.get("final_val_acc") for o in outs] for n, outs in runs.items()}
    accs = {n: noise.difference(finals[REFERENCE], finals[n], n_val, paired=True) for n in others}
    versus = join(
        [f"{num(d.b)} {with_norm(n)} ({noise.versus(d, 'layer norm')})" for n, d in accs.items()]
    )
    sentence += (
        f" Final validation accuracy {num(accs[others[0]].a)} with {label(REFERENCE)}, {versus}; "
        f"{noise.seeds_phrase(seeds)}."
    )
    diffs = [d for _, d in times] + list(accs.values())
    return noise.qualify(sentence, diffs, cfg.get("quick", False))


def figures(config: RMSNormConfig) -> list[dict]:
    """``curves``: training loss, validation accuracy and the median step time of each epoch,
    one line per normalization."""
    norms = config.normalizations

    def per_run(key: str, title: str, ylabel: str, first: int, legend: bool = False) -> dict:
        lines = [figspec.norm_line(n, key, run=n, first=first) for n in norms]
        return figspec.curves(title, lines, ylabel, legend=legend)

    panels = [
        figspec.loss("Training loss", "loss (moving average over an epoch)", norms),
        per_run("val_acc", "Validation accuracy", "accuracy", 0),
        per_run("step_ms_by_epoch", "Time per step (median of each epoch)", "ms", 1, True),
    ]
    return [figspec.figure("curves", panels)]


EXPERIMENT = Experiment(
    NAME, DESCRIPTION, RMSNormConfig, runs, run_task, summarize, quick, headline, figures
)
