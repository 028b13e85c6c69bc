"""population-stats: EMA vs precise batch-norm statistics, and the train/test inconsistency.

Y. Wu, J. Johnson, "Rethinking 'Batch' in BatchNorm", arXiv:2105.07576 (2021). Two findings,
at a small scale:

- **§3, population statistics.** The running averages (EMA) of the batch statistics lag behind
  the weights when those change fast (a large learning rate, a slow momentum λ), so a test-mode
  network normalizes with statistics of weights it no longer has; *precise BN* -- the exact
  statistics of the current network over N training images -- does not, and N of 10^3 - 10^4
  suffice. Here: one fully-connected batch-norm net (``hidden_dims``, He initialization),
  trained once per seed for ``num_epochs`` epochs, evaluated after every epoch on the test
  set with EMA statistics of every momentum of ``ema_momenta`` and with precise statistics
  over each count of ``precise_samples`` training images (:func:`~normlab.models.precise_bn`;
  the smaller subsets are prefixes of the larger, drawn once per run). Momenta are in
  normlab's convention (``docs/conventions.md``): λ is the weight of the old value, ``r = λ r +
  (1 − λ) batch``; PyTorch's ``momentum=p`` is λ = 1 − p (0.9, 0.99, 0.999 are PyTorch's 0.1,
  0.01, 0.001). All the EMAs come from the one training run: it is trained with
  ``momentum=0`` (the running statistics are then the last batch's, which changes nothing of
  training, since train mode normalizes with the batch's own), and a callback folds them into
  one float64 EMA per λ after every step, starting from the layer's initial zeros and ones.
- **§4, train/test inconsistency.** With a small normalization batch, a network trained with
  mini-batch statistics is tested with population statistics it never saw in training. Here:
  a small ConvNet ``{conv 3x3 - batch norm - relu - 2x2 pool} x 2 - affine`` trained for
  ``sweep_epochs`` epochs with ``batch_size`` images per step and ghost batch norm over each
  normalization batch V of ``norm_batch_sizes`` (V = ``batch_size``: plain batch norm), every
  run from the same seed. Every normalization is spatial, so that even V = 2 images give
  ``2·H·W`` values per statistic, as the paper's ResNets do (a fully-connected layer's batch
  norm over 2 samples maps every feature to ±γ + β, and cannot learn). At the end of
  training, three errors against V: on (at most ``num_train_eval``) training images with
  mini-batch statistics (each batch of V normalized by its own statistics, as in training),
  on the validation images with mini-batch statistics, and on the validation images with
  population statistics (precise BN over ``population_samples`` training images); and the
  histograms of the last batch-norm layer's outputs (after γ and β; 1024 validation images)
  in train mode (batch statistics) and in eval mode (population statistics).

Both parts train with SGD with momentum at a constant learning rate (the one Solver run of
:func:`~normlab.experiments.training.train_solver`); part 1 is evaluated during training, at
the end of every epoch, and part 2 with the weights the Solver keeps (those of the best
validation epoch, with the model's own λ = 0.9 statistics). Fashion-MNIST by default: the 8x8
digits have 300 validation and test images, too few to resolve differences of a point or two
of accuracy (a binomial standard error of ~2 points), where Fashion-MNIST's 5,000 and 10,000
resolve ~0.5.

Summary keys (what a claims table reads)
----------------------------------------
``ema_momenta`` (list of λ), ``precise_samples`` (list of N), ``epochs`` (1..E);
``final_test_acc_ema`` (one per λ), ``final_test_acc_precise`` (one per N): test accuracy at
the end of training; ``mean_test_acc_ema``, ``mean_test_acc_precise``: the same averaged over
the epochs (during training); ``norm_batch_sizes`` (list of V); ``train_error_batch_stats``,
``val_error_batch_stats``, ``val_error_population_stats``, ``val_error_ema`` (the model's own
EMA, λ = 0.9): one error per V.
"""

from __future__ import annotations

import contextlib
import dataclasses
import statistics
from dataclasses import dataclass

import numpy as np

from normlab.experiments import figspec, noise
from normlab.experiments.base import Experiment, RunSpec
from normlab.experiments.config import ExperimentConfig, field_of, opt, require_nonempty
from normlab.experiments.training import (
    accuracy,
    build_model,
    load_data,
    split_seed,
    train_solver,
)
from normlab.experiments.wording import join, num
from normlab.vocab import color, run_name

NAME = "population-stats"
DESCRIPTION = (
    "batch norm: EMA momentum vs precise-BN sample count; errors with batch vs population "
    "statistics against the normalization batch size (Wu & Johnson 2021)"
)
STATS_RUN = "batchnorm/stats"  # part 1: EMA vs precise BN
GHOST = "ghostbatchnorm"
HIST_ROWS = 1024  # validation images of the train-vs-eval histograms
BLUES = ("#9ecae1", "#4292c6", "#08519c")  # EMA momenta, light (fast) to dark (slow)
REDS = ("#fc9272", "#ef3b2c", "#99000d")  # precise-BN sample counts, light (few) to dark


def _shade(palette: tuple, i: int, n: int) -> str | None:
    """The ``i``-th of ``n`` shades of ``palette`` (None, the default cycle, past its length)."""
    return palette[i + len(palette) - n] if n <= len(palette) else None


@dataclass(frozen=True)
class PopulationStatsConfig(ExperimentConfig):
    """Settings of ``population-stats``."""

    dataset: str = field_of(ExperimentConfig, "dataset", "fashion-mnist")
    normalizations: tuple[str, ...] = field_of(ExperimentConfig, "normalizations", ("batchnorm",))
    hidden_dims: tuple[int, ...] = opt((256, 256, 256), "part 1: widths of the hidden layers")
    num_filters: tuple[int, ...] = opt((8, 16), "part 2: filters of each conv block")
    weight_scale: float | str = opt("he", "initial weights: std, or he | xavier", positive=True)
    learning_rate: float = opt(0.1, "SGD-momentum learning rate (constant)", positive=True)
    momentum: float = opt(0.9, "SGD momentum")
    batch_size: int = opt(64, "images per SGD step (both parts)")
    num_epochs: int = opt(4, "part 1: epochs (test accuracies after each)")
    sweep_epochs: int = opt(1, "part 2: epochs of each normalization batch size")
    num_training: int | None = opt(None, "training images (None: all)")
    ema_momenta: tuple[float, ...] = opt(
        (0.9, 0.99, 0.999), "EMA momenta λ, weight of the old value (PyTorch's 1 - momentum)"
    )
    precise_samples: tuple[int, ...] = opt(
        (100, 1000, 10000), "training images precise BN computes the statistics over"
    )
    norm_batch_sizes: tuple[int, ...] = opt(
        (2, 4, 8, 16, 64), "part 2: normalization (ghost) batch sizes V, divisors of batch_size"
    )
    num_train_eval: int = opt(5000, "part 2: training images of the train error (batch stats)")
    population_samples: int = opt(10000, "part 2: training images of the population statistics")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.normalizations != ("batchnorm",):
            raise ValueError(
                f"PopulationStatsConfig: the experiment is about batch norm's statistics; "
                f"expected normalizations ('batchnorm',), got {self.normalizations!r}"
            )
        require_nonempty(self, "ema_momenta", "precise_samples", "norm_batch_sizes")
        bad = [m for m in self.ema_momenta if not 0 <= m < 1]
        if bad:
            raise ValueError(
                f"PopulationStatsConfig: expected ema_momenta in [0, 1), got {bad}; they are "
                "weights of the old value (PyTorch's momentum=0.1 is 0.9 here)"
            )
        ns = self.precise_samples
        if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in ns) or any(
            not b > a for a, b in zip(ns, ns[1:], strict=False)
        ):
            raise ValueError(
                f"PopulationStatsConfig: expected precise_samples increasing integers >= 1 "
                f"(training images of precise BN, the most last), got {ns!r}"
            )
        bad = [v for v in self.norm_batch_sizes if self.batch_size % v or v < 2]
        if bad:
            raise ValueError(
                f"PopulationStatsConfig: norm_batch_sizes {bad} are not divisors >= 2 of "
                f"batch_size {self.batch_size}; use divisors of it (V = batch_size: plain BN)"
            )


def quick(config: PopulationStatsConfig) -> PopulationStatsConfig:
    """Two hidden layers of 32 (part 1), 4 and 8 filters (part 2), batches of 32, V = 2, 8
    and 32, 2 epochs each; precise BN over 50 and 500 images."""
    return dataclasses.replace(
        config,
        quick=True,
        hidden_dims=(32, 32),
        num_filters=(4, 8),
        batch_size=32,
        num_epochs=2,
        sweep_epochs=2,
        precise_samples=(50, 500),
        norm_batch_sizes=(2, 8, 32),
        num_train_eval=500,
        population_samples=500,
    )


def runs(config: PopulationStatsConfig) -> list[RunSpec]:
    """The EMA-vs-precise run, then one ghost-batch run per V; all from one seed."""
    return [RunSpec(STATS_RUN, {"part": "stats"}, seed_key="net")] + [
        RunSpec(run_name(GHOST, v=v), {"part": "batch", "virtual_batch_size": v}, seed_key="net")
        for v in config.norm_batch_sizes
    ]


class EmaTracker:
    """Solver callback: one float64 EMA of the batch statistics per momentum λ.

    The model must be trained with batch norm's ``momentum=0``, so that after each step its
    running statistics are that step's batch statistics; the tracker folds them into ``r = λ r
    + (1 − λ) batch`` for every λ, from the buffers' initial values (zeros and ones).

    Parameters
    ----------
    model : FullyConnectedNet or ConvNet
        With ``norm_options={'momentum': 0.0}``.
    momenta : sequence of float
        The λ, each in [0, 1).

    Attributes
    ----------
    stats : dict of float to dict of str to ndarray
        Per λ, the running-statistic buffers by name (float64, the buffers' shapes).
    """

    def __init__(self, model, momenta) -> None:
        names = [k for k in model.buffers if k.startswith(("running_mean", "running_var"))]
        self.model = model
        self.stats = {m: {k: model.buffers[k].astype(np.float64) for k in names} for m in momenta}

    def __call__(self, solver, info: dict) -> None:
        buffers = self.model.buffers
        for m, stats in self.stats.items():
            for k, r in stats.items():
                r *= m
                r += (1.0 - m) * buffers[k]


@contextlib.contextmanager
def _buffers_set(model, values: dict | None):
    """The model's buffers replaced by ``values`` (None: left) inside the block, then restored."""
    saved = {k: v.copy() for k, v in model.buffers.items()}
    try:
        for k, v in (values or {}).items():
            np.copyto(model.buffers[k], v, casting="same_kind")
        yield model
    finally:
        for k, v in saved.items():
            np.copyto(model.buffers[k], v)


def _train(config, model, data, seed: int, callbacks, epochs: int) -> dict:
    """The run's training: SGD with momentum at a constant learning rate, ``epochs`` epochs
    (:func:`~normlab.experiments.training.train_solver`, ``--diagnostics`` included)."""
    return train_solver(
        model,
        data,
        seed,
        callbacks,
        diagnostics=config.diagnostics,
        update_rule="sgd_momentum",
        optim_config={"learning_rate": config.learning_rate, "momentum": config.momentum},
        batch_size=config.batch_size,
        num_epochs=epochs,
    )


def _stats_task(config, data, seed: int) -> dict:
    """Part 1: test accuracy after every epoch with each EMA and each precise-BN count."""
    from normlab.models import precise_bn

    model, solver_seed = build_model(
        data,
        seed,
        "batchnorm",
        hidden_dims=config.hidden_dims,
        weight_scale=config.weight_scale,
        norm_options={"momentum": 0.0},  # buffers = the last batch's statistics (see EmaTracker)
    )
    tracker = EmaTracker(model, config.ema_momenta)
    order = np.random.default_rng(split_seed(seed, 3)[2]).permutation(len(data["X_train"]))
    X_test, y_test = data["X_test"], data["y_test"]
    ema = {f"{m:g}": [] for m in config.ema_momenta}
    precise = {str(n): [] for n in config.precise_samples}
    epochs = []

    def evaluate(solver, info: dict) -> None:  # a callback: after the epoch's last step
        if (info["iteration"] + 1) % solver.iterations_per_epoch:
            return
        epochs.append((info["iteration"] + 1) // solver.iterations_per_epoch)
        for m, stats in tracker.stats.items():
            with _buffers_set(model, stats):
                ema[f"{m:g}"].append(accuracy(model, X_test, y_test))
        for n in config.precise_samples:
            with _buffers_set(model, None):
                precise_bn(model, data["X_train"][np.sort(order[:n])])
                precise[str(n)].append(accuracy(model, X_test, y_test))

    out = _train(config, model, data, solver_seed, [tracker, evaluate], config.num_epochs)
    # the Solver's own accuracy checks used the last batch's statistics (momentum 0): left out
    kept = ("loss", "iterations_per_epoch", "diverged", "diagnostics")
    return {
        "part": "stats",
        "epochs": epochs,
        "test_acc_ema": ema,
        "test_acc_precise": precise,
        **{k: out[k] for k in kept if k in out},
        "num_test": len(y_test),
        "precise_samples_used": [min(n, len(order)) for n in config.precise_samples],
        "data_dir": data.get("data_dir"),
    }


def _batch_stats_error(twin, X, y, v: int, rng) -> tuple[float, int]:
    """Error of ``twin`` (test mode normalizing each chunk of ``v`` rows with its own
    statistics) on ``X`` shuffled and cut to a multiple of ``v``; and the rows used."""
    n = len(X) // v * v
    idx = rng.permutation(len(X))[:n]  # (n,)
    rows = v * max(1, 1024 // v)  # whole normalization batches per forward pass
    preds = [np.argmax(twin.loss(X[idx[i : i + rows]]), axis=1) for i in range(0, n, rows)]
    return 1.0 - float(np.mean(np.concatenate(preds) == y[idx])), n


def _histogram(model, X, layer: int) -> list[float]:
    """The density, on :data:`~normlab.diagnostics.HIST_EDGES`, of block ``layer``'s
    normalization output in ``model``'s test-mode pass of ``X``."""
    from normlab.diagnostics.stats import HIST_EDGES, distribution

    record, model.record = model.record, {layer}
    try:
        model.loss(X)
        h = model.activations.pop(layer)
    finally:
        model.record = record
    counts = np.asarray(distribution(h)["hist"], dtype=np.float64)  # (60,)
    return (counts / (h.size * np.diff(HIST_EDGES))).tolist()


def _batch_task(config, data, params: dict, seed: int) -> dict:
    """Part 2: ghost batches of V; the three errors and the train/eval histograms at the end."""
    from normlab.diagnostics.stats import HIST_EDGES
    from normlab.models import precise_bn

    v = params["virtual_batch_size"]
    options = dict(num_filters=config.num_filters, hidden_dims=(), weight_scale=config.weight_scale)
    model, solver_seed = build_model(
        data, seed, GHOST, "conv", norm_options={"virtual_batch_size": v}, **options
    )
    out = {
        **_train(config, model, data, solver_seed, [], config.sweep_epochs),
        "part": "batch",
        "virtual_batch_size": v,
        "batch_size": config.batch_size,
    }
    if out["diverged"]:
        return out
    # test mode of the twin = each normalization batch of v rows by its own statistics
    twin, _ = build_model(
        data,
        seed,
        GHOST,
        "conv",
        norm_options={"virtual_batch_size": v, "track_running_stats": False},
        **options,
    )
    for k, p in model.params.items():
        np.copyto(twin.params[k], p)
    rng = np.random.default_rng(split_seed(seed, 3)[2])
    X_train = data["X_train"][: config.num_train_eval]  # (n, ...)
    y_train = data["y_train"][: config.num_train_eval]  # (n,)
    train_err, n_train = _batch_stats_error(twin, X_train, y_train, v, rng)
    val_err, n_val = _batch_stats_error(twin, data["X_val"], data["y_val"], v, rng)
    val_ema = 1.0 - accuracy(model, data["X_val"], data["y_val"])
    population = rng.permutation(len(data["X_train"]))[: config.population_samples]  # (n,)
    precise_bn(model, data["X_train"][np.sort(population)])
    val_pop = 1.0 - accuracy(model, data["X_val"], data["y_val"])
    layer = max(b.index for b in model.blocks if b.norm is not None)
    rows = rng.permutation(len(data["X_val"]))[: min(HIST_ROWS, len(data["X_val"])) // v * v]
    X_hist = data["X_val"][np.sort(rows)]
    return {
        **out,
        "train_error_batch_stats": train_err,
        "val_error_batch_stats": val_err,
        "val_error_population_stats": val_pop,
        "val_error_ema": val_ema,
        "num_train_eval": n_train,
        "num_val": n_val,
        "num_val_population": len(data["y_val"]),
        "hist_layer": layer,
        "hist_centers": ((HIST_EDGES[:-1] + HIST_EDGES[1:]) / 2).tolist(),
        "hist_train": _histogram(twin, X_hist, layer),
        "hist_eval": _histogram(model, X_hist, layer),
        "data_dir": data.get("data_dir"),
    }


def run_task(config: PopulationStatsConfig, params: dict, seed: int) -> dict:
    """Part 1 (``params['part'] == 'stats'``) or one normalization batch size of part 2."""
    data = load_data(config, num_training=config.num_training)
    if params["part"] == "stats":
        return _stats_task(config, data, seed)
    return _batch_task(config, data, params, seed)


def _mean(values: list) -> float | None:
    """The mean of the values that are not None (None if none are)."""
    ok = [v for v in values if v is not None]
    return statistics.fmean(ok) if ok else None


def summarize(config: PopulationStatsConfig, outputs: dict, seconds: dict) -> dict:
    """The final and epoch-mean test accuracies per statistics source, and the errors per V.

    Returns
    -------
    summary : dict
        The keys of the module docstring, and ``table`` (one row per quantity and setting).
    """
    stats = outputs[STATS_RUN]
    lams, ns, vs = list(config.ema_momenta), list(config.precise_samples), config.norm_batch_sizes
    ema = [stats["test_acc_ema"][f"{m:g}"] for m in lams]
    precise = [stats["test_acc_precise"][str(n)] for n in ns]
    batch = [outputs[run_name(GHOST, v=v)] for v in vs]
    errors = ("train_error_batch_stats", "val_error_batch_stats", "val_error_population_stats",
              "val_error_ema")  # fmt: skip
    summary = {
        "ema_momenta": lams,
        "precise_samples": ns,
        "epochs": stats["epochs"],
        "final_test_acc_ema": [c[-1] if c else None for c in ema],
        "final_test_acc_precise": [c[-1] if c else None for c in precise],
        "mean_test_acc_ema": [_mean(c) for c in ema],
        "mean_test_acc_precise": [_mean(c) for c in precise],
        "norm_batch_sizes": list(vs),
        **{k: [o.get(k) for o in batch] for k in errors},
    }
    words = {
        "train_error_batch_stats": "train error, batch statistics",
        "val_error_batch_stats": "val error, batch statistics",
        "val_error_population_stats": "val error, population statistics",
        "val_error_ema": "val error, EMA statistics (λ=0.9)",
    }
    rows = [
        ["final test acc", f"EMA λ={m:g}", a]
        for m, a in zip(lams, summary["final_test_acc_ema"], strict=True)
    ]
    rows += [
        ["final test acc", f"precise BN, {n} images", a]
        for n, a in zip(ns, summary["final_test_acc_precise"], strict=True)
    ]
    rows += [
        ["mean test acc over epochs", f"EMA λ={m:g}", a]
        for m, a in zip(lams, summary["mean_test_acc_ema"], strict=True)
    ]
    rows += [
        ["mean test acc over epochs", f"precise BN, {n} images", a]
        for n, a in zip(ns, summary["mean_test_acc_precise"], strict=True)
    ]
    for k in errors:
        rows += [[words[k], f"V={v}", e] for v, e in zip(vs, summary[k], strict=True)]
    table = {"columns": ["quantity", "statistics / normalization batch", "value"], "rows": rows}
    return {**summary, "table": table}


def _against_emas(results: dict, when: str, n_test: int | None) -> tuple[str, list]:
    """Precise BN (the most images) against every EMA in the summary's ``{when}_test_acc_*``
    (``'final'`` or ``'mean'``): the phrase and the differences (paired: one run per seed)."""
    top = len(results["precise_samples"]) - 1
    precise = noise.per_seed(results, [f"{when}_test_acc_precise"])
    emas = noise.per_seed(results, [f"{when}_test_acc_ema"])
    parts, diffs = [], []
    for i, m in enumerate(results["ema_momenta"]):
        d = noise.difference([p[top] for p in precise], [e[i] for e in emas], n_test, paired=True)
        diffs.append(d)
        acc = num(results[f"{when}_test_acc_ema"][i])
        parts.append(f"{acc} with EMA λ={m:g} ({noise.versus(d, 'precise BN')})")
    return f"{num(results[f'{when}_test_acc_precise'][top])} against {join(parts)}", diffs


def headline(results: dict) -> str:
    """Precise BN (most images) against every EMA at the end of training and averaged over the
    epochs; at the smallest and the largest V, the validation error with population against
    batch statistics."""
    vs = results["norm_batch_sizes"]
    runs_ = results.get("runs", {})
    n_test = noise.eval_size(results, "num_test")
    n_val = noise.eval_size(results, "num_val_population")
    final, diffs = _against_emas(results, "final", n_test)
    during, more = _against_emas(results, "mean", n_test)
    diffs += more
    # the images precise BN used: fewer than asked when the training set is smaller
    key = "precise_samples_used"
    used = next((o[key] for o in runs_.values() if o.get(key)), results["precise_samples"])
    sentence = (
        f"At the end of training, precise BN over {used[-1]} images gave "
        f"test accuracy {final}; averaged over the {len(results['epochs'])} epochs' "
        f"evaluations, {during}"
    )
    pop = noise.per_seed(results, ["val_error_population_stats"])
    bat = noise.per_seed(results, ["val_error_batch_stats"])
    incons = []
    for v in sorted({min(vs), max(vs)}):
        i = vs.index(v)
        d = noise.difference([b[i] for b in bat], [p[i] for p in pop], n_val, paired=True)
        diffs.append(d)
        incons.append(
            f"at V={v}, {num(results['val_error_population_stats'][i])} with population "
            f"statistics against {num(results['val_error_batch_stats'][i])} with the batch's "
            f"own ({noise.versus(d)})"
        )
    sentence += (
        f"; validation error {join(incons)} ({noise.seeds_phrase(results.get('seeds', 1))})."
    )
    return noise.qualify(sentence, diffs, results.get("config", {}).get("quick", False))


def figures(config: PopulationStatsConfig) -> list[dict]:
    """Test accuracy per epoch for every EMA and precise-BN count; the three errors against V;
    the train-vs-eval histograms at the smallest and the largest V."""
    lams, ns = config.ema_momenta, config.precise_samples
    ema = [
        figspec.line(["test_acc_ema", f"{m:g}"], f"EMA λ={m:g}", _shade(BLUES, i, len(lams)),
                     run=STATS_RUN, fmt="o--", first=1)
        for i, m in enumerate(lams)
    ]  # fmt: skip
    precise = [
        figspec.line(["test_acc_precise", str(n)], f"precise BN, {n} images",
                     _shade(REDS, i, len(ns)), run=STATS_RUN, first=1)
        for i, n in enumerate(ns)
    ]  # fmt: skip
    acc = figspec.curves("Test accuracy, EMA vs precise BN", ema + precise, "accuracy", legend=True)
    errors = figspec.sweep(
        "Error against the normalization batch",
        "normalization batch size V",
        "error",
        ["norm_batch_sizes"],
        [
            figspec.line("train_error_batch_stats", "train, batch stats", "#2ca02c"),
            figspec.line("val_error_batch_stats", "val, batch stats", "#1f77b4"),
            figspec.line("val_error_population_stats", "val, population stats", "#d62728"),
            figspec.line("val_error_ema", "val, EMA λ=0.9", "#7f7f7f", fmt="s:"),
        ],
        log_base=2,
        ticks=True,
        legend=True,
    )
    hists = []
    for v in sorted({min(config.norm_batch_sizes), max(config.norm_batch_sizes)}):
        run = run_name(GHOST, v=v)
        hists.append(
            figspec.curves(
                f"Normalized outputs, V={v}",
                [
                    figspec.line(
                        "hist_train",
                        "train mode (batch stats)",
                        color("batchnorm"),
                        run=run,
                        fmt="-",
                        ms=None,
                    ),
                    figspec.line(
                        "hist_eval",
                        "eval mode (population stats)",
                        color(GHOST),
                        run=run,
                        fmt="-",
                        ms=None,
                    ),
                ],
                "density",
                x="hist_centers",
                xlabel="value (last batch-norm layer, after γ, β)",
                legend=True,
            )
        )
    return [
        figspec.figure("ema_vs_precise_bn", [acc]),
        figspec.figure("error_vs_norm_batch", [errors]),
        figspec.figure("train_vs_eval_histograms", hists),
    ]


EXPERIMENT = Experiment(
    NAME, DESCRIPTION, PopulationStatsConfig, runs, run_task, summarize, quick, headline, figures
)
