"""noisy-bn: batch norm with injected covariate shift still trains (Santurkar et al. 2018, §2.1).

Santurkar, Tsipras, Ilyas & Madry 2018, "How Does Batch Normalization Help Optimization?"
(section 2.1, Figure 2): if batch norm helped by keeping each layer's input distribution
stable ("reducing internal covariate shift"), a net whose batch-norm outputs are shifted and
rescaled by noise that changes at every step should lose that benefit. They find it trains
about as well as plain batch norm and better than the unnormalized net. Here, scaled to a CPU:
a deep ReLU MLP (``hidden_dims``, He initial weights) trained with SGD with momentum from the
same initial weights without normalization, with ``'batchnorm'`` and with ``'noisybatchnorm'``
(:mod:`normlab.models.noisy_bn`: after every batch-norm layer ``l``, a per-channel shift
``U(-l * mean_range, l * mean_range)`` and log-scale ``U(-l * log_scale_range, l *
log_scale_range)`` drawn afresh at every training step from a seed derived from the run's; no
noise in test mode).

Default dataset: Fashion-MNIST (``/usr/share/datasets/fashion-mnist`` or a download), not the
embedded digits: with 784 inputs and 60,000 images a deep MLP is far from perfect after a few
epochs, so the three nets can differ, and its 5,000 validation images keep an accuracy's
binomial error near half a point (the digits' 1,797 images leave 300 for validation, an error
of ~2 points, as large as the effects). ``--quick`` runs on the digits (the CLI's default).

The covariate-shift measure
---------------------------
For layer ``l`` and training step ``t``, ``m_t`` and ``s_t`` are the per-unit mean and
standard deviation over the training batch of the layer's pre-activation (the input of its
ReLU: after the normalization and the noise; the affine output without normalization), which
is what the next layer's input is made of. The shift of step ``t`` is
``sqrt(mean_c (m_t - m_{t-1})^2 + mean_c (s_t - s_{t-1})^2)`` (root mean square over the
units), the l2 change of the first two moments of the layer's input distribution between
consecutive steps: the change Santurkar et al.'s Figure 2 shows as moving activation
histograms, measured as numbers. ``shift`` is its mean over the steps and the hidden layers.
It holds the change from one batch to the next as well as from the update (without
normalization about ``sqrt(2 / N)`` times a unit's std per step from sampling alone; batch
norm's batch means are ``beta`` whatever the batch, so only its parameters' updates move it).

Summary keys (what a claims table reads): ``final_val_acc``, ``final_train_acc``,
``mean_val_acc`` (over the trained epochs), ``test_acc`` (at the best validation epoch) and
``shift`` (mean per-step shift), each by run name (``'none'``, ``'batchnorm'``,
``'noisybatchnorm'``); ``shift_by_layer`` (per hidden layer); ``labels``.

Measured at the defaults (one seed, He initial weights; also with Glorot's): the unnormalized
MLP ends within about a point of batch norm on Fashion-MNIST, so the comparison with no
normalization says less here than with the paper's VGG on CIFAR-10.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from normlab.experiments import figspec, noise
from normlab.experiments.base import Experiment
from normlab.experiments.config import ExperimentConfig, field_of, opt
from normlab.experiments.training import (
    build_model,
    load_data,
    paired_runs,
    split_seed,
    train_solver,
)
from normlab.experiments.wording import num
from normlab.models.noisy_bn import NAME as NOISY
from normlab.vocab import label, short_label

NAME = "noisy-bn"
DESCRIPTION = "batch norm + per-step noise (covariate shift) vs BN vs none (Santurkar 2018)"

RUNS = ("none", "batchnorm", NOISY)


@dataclass(frozen=True)
class NoisyBNConfig(ExperimentConfig):
    """Settings of ``noisy-bn``."""

    dataset: str = field_of(ExperimentConfig, "dataset", "fashion-mnist")
    normalizations: tuple[str, ...] = field_of(ExperimentConfig, "normalizations", RUNS)
    hidden_dims: tuple[int, ...] = opt((128,) * 6, "widths of the hidden layers")
    weight_scale: float | str = opt("he", "initial weights: std, or he | xavier", positive=True)
    num_training: int | None = opt(10_000, "training images (None: all)")
    learning_rate: float = opt(0.02, "SGD-momentum learning rate", positive=True)
    momentum: float = opt(0.9, "SGD momentum")
    batch_size: int = opt(128, "minibatch size")
    num_epochs: int = opt(8, "epochs")
    mean_range: float = opt(0.25, "noise: shift per unit ~ U(-l*r, l*r) at layer l, new every step")
    log_scale_range: float = opt(
        0.1, "noise: log scale per unit ~ U(-l*r, l*r) at layer l, new every step"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if set(self.normalizations) != set(RUNS) or len(self.normalizations) != len(RUNS):
            raise ValueError(
                f"NoisyBNConfig: the comparison is none vs batch norm vs noisy batch norm; "
                f"expected normalizations {RUNS}, got {self.normalizations!r}"
            )
        for key in ("mean_range", "log_scale_range"):
            if not getattr(self, key) >= 0:
                raise ValueError(f"NoisyBNConfig: expected {key} >= 0, got {getattr(self, key)}")


def quick(config: NoisyBNConfig) -> NoisyBNConfig:
    """Three epochs on 500 images, three hidden layers of 32 (about a second on the digits)."""
    return dataclasses.replace(
        config, quick=True, num_training=500, num_epochs=3, hidden_dims=(32,) * 3, batch_size=50
    )


runs = paired_runs  # one run per normalization, all from the same initial weights


class ShiftMeter:
    """A Solver callback measuring the per-step shift of each hidden layer's pre-activation
    moments (the module docstring): it sets ``model.record`` and reads ``model.activations``
    after every step (the training batch's, since callbacks run before any evaluation)."""

    def __init__(self, model, layers: list[int]) -> None:
        self.model, self.layers = model, layers
        model.record = set(model.record) | set(layers)
        self.prev: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.total = np.zeros(len(layers))  # (L,) sums of the per-step shifts
        self.count = 0
        self.per_epoch: list[float] = []  # mean over layers and the epoch's steps
        self._epoch_sum, self._epoch_n = 0.0, 0

    def __call__(self, solver, info: dict) -> None:
        shifts = np.empty(len(self.layers))  # (L,)
        have = True
        for i, layer in enumerate(self.layers):
            h = np.asarray(self.model.activations[layer], dtype=np.float64)  # (N, D)
            m, s = h.mean(axis=0), h.std(axis=0)  # (D,), (D,)
            if layer in self.prev:
                pm, ps = self.prev[layer]
                shifts[i] = np.sqrt(np.mean((m - pm) ** 2) + np.mean((s - ps) ** 2))
            else:
                have = False
            self.prev[layer] = (m, s)
        if have:
            self.total += shifts
            self.count += 1
            self._epoch_sum += float(shifts.mean())
            self._epoch_n += 1
        if (info["iteration"] + 1) % solver.iterations_per_epoch == 0 and self._epoch_n:
            self.per_epoch.append(self._epoch_sum / self._epoch_n)
            self._epoch_sum, self._epoch_n = 0.0, 0

    def result(self) -> dict:
        """``shift_by_layer`` (L,), ``shift`` (their mean) and ``shift_by_epoch``."""
        by_layer = (self.total / self.count).tolist() if self.count else [None] * len(self.layers)
        mean = float(np.mean(by_layer)) if self.count else None
        return {"shift_by_layer": by_layer, "shift": mean, "shift_by_epoch": self.per_epoch}


def run_task(config: NoisyBNConfig, params: dict, seed: int) -> dict:
    """Train one MLP; return its curves and scores, and its covariate-shift measure.

    The noisy run's noise seed is derived from the run seed (independent of the initial weights
    and the batches, which all three runs share).
    """
    data = load_data(config, num_training=config.num_training)
    norm = params["normalization"]
    options = {}
    if norm == NOISY:
        options = {
            "noise_seed": split_seed(seed, 3)[2],
            "mean_range": config.mean_range,
            "log_scale_range": config.log_scale_range,
        }
    model, solver_seed = build_model(
        data,
        seed,
        norm,
        hidden_dims=config.hidden_dims,
        weight_scale=config.weight_scale,
        norm_options=options,
    )
    layers = list(range(1, len(config.hidden_dims) + 1))
    meter = ShiftMeter(model, layers)
    out = train_solver(
        model,
        data,
        solver_seed,
        [meter],
        diagnostics=config.diagnostics,
        update_rule="sgd_momentum",
        optim_config={"learning_rate": config.learning_rate, "momentum": config.momentum},
        batch_size=config.batch_size,
        num_epochs=config.num_epochs,
    )
    return {**out, **meter.result(), "layers": layers, "noise": options}


def _mean_trained(out: dict) -> float | None:
    """The mean validation accuracy over the trained epochs 1..E (None if any is missing)."""
    curve = out["val_acc"][1:]
    return None if not curve or None in curve else float(np.mean(curve))


def summarize(config: NoisyBNConfig, outputs: dict, seconds: dict) -> dict:
    """Final accuracies and the covariate-shift measure per run.

    Returns
    -------
    summary : dict
        ``runs`` names in order; ``labels``; by run name: ``final_train_acc``,
        ``final_val_acc``, ``mean_val_acc`` (over the trained epochs: higher when a net learns
        sooner), ``test_acc`` (best validation epoch), ``shift``, ``shift_by_layer``; ``layers``
        (hidden layer numbers); ``table`` (one row per run).
    """
    names = list(outputs)
    picks = {
        "final_train_acc": lambda o: o["train_acc"][-1],
        "final_val_acc": lambda o: o["val_acc"][-1],
        "mean_val_acc": _mean_trained,
        "test_acc": lambda o: o["test_acc"],
        "shift": lambda o: o["shift"],
        "shift_by_layer": lambda o: o["shift_by_layer"],
    }
    values = {k: {n: pick(outputs[n]) for n in names} for k, pick in picks.items()}
    columns = [
        "normalization",
        "final train acc",
        "final val acc",
        "mean val acc (epochs 1..E)",
        "test acc (best val epoch)",
        "input shift per step",
        "time (s)",
    ]
    rows = [
        [
            short_label(n),
            values["final_train_acc"][n],
            values["final_val_acc"][n],
            values["mean_val_acc"][n],
            values["test_acc"][n],
            values["shift"][n],
            seconds.get(n),
        ]
        for n in names
    ]
    return {
        "runs_order": names,
        "labels": {n: label(n) for n in names},
        "layers": list(range(1, len(config.hidden_dims) + 1)),
        **values,
        "table": {"columns": columns, "rows": rows},
    }


def _sig(x) -> str:
    """``x`` to two significant digits (batch norm's shift is ~1e-4: not "0.000"); n/a for
    None."""
    return "n/a" if x is None else f"{x:.2g}"


def headline(results: dict) -> str:
    """Noisy batch norm's final validation accuracy against batch norm's and the unnormalized
    net's (paired, beyond noise or not), and the shift each run's layer inputs saw per step."""
    acc, mean, shift = results["final_val_acc"], results["mean_val_acc"], results["shift"]
    n_val = noise.eval_size(results, "num_val")

    def diff(key: str, ref: str):
        per_seed = noise.per_seed(results, [key])
        a, b = [s[ref] for s in per_seed], [s[NOISY] for s in per_seed]
        return noise.difference(a, b, n_val, paired=True)

    vs_bn, vs_none = diff("final_val_acc", "batchnorm"), diff("final_val_acc", "none")
    m_bn, m_none = diff("mean_val_acc", "batchnorm"), diff("mean_val_acc", "none")
    epochs = results.get("config", {}).get("num_epochs")
    after = f"After {epochs} epochs, " if epochs else ""
    sentence = (
        f"{after}noisy batch norm reached a final validation accuracy of {num(acc[NOISY])} "
        f"(batch norm {num(acc['batchnorm'])}, no normalization {num(acc['none'])}): "
        f"{noise.versus(vs_bn, 'batch norm')}, and {noise.versus(vs_none, 'no normalization')}; "
        f"averaged over the epochs (higher when a net learns sooner) {num(mean[NOISY])} (batch "
        f"norm {num(mean['batchnorm'])}, no normalization {num(mean['none'])}): "
        f"{noise.versus(m_bn, 'batch norm')}, and {noise.versus(m_none, 'no normalization')}; "
        f"yet the moments of its layers' inputs moved {_sig(shift[NOISY])} per step "
        f"against {_sig(shift['batchnorm'])} with batch norm and {_sig(shift['none'])} "
        f"without ({noise.seeds_phrase(results.get('seeds', 1))})."
    )
    quick = results.get("config", {}).get("quick", False)
    return noise.qualify(sentence, [vs_bn, vs_none, m_bn, m_none], quick)


def _lines(config: NoisyBNConfig, y: str, **options) -> list[dict]:
    return [figspec.norm_line(n, y, run=n, **options) for n in config.normalizations]


def figures(config: NoisyBNConfig) -> list[dict]:
    """Accuracy curves; the training loss; the per-step input shift by epoch and by layer."""
    acc = [
        figspec.curves("Validation accuracy", _lines(config, "val_acc"), "accuracy", legend=True),
        figspec.curves("Training accuracy", _lines(config, "train_acc"), "accuracy"),
    ]
    loss = figspec.loss("Training loss", "loss", list(config.normalizations), legend=True)
    shift = [
        figspec.curves(
            "Layer-input shift per step",
            _lines(config, "shift_by_epoch", first=1),
            "rms change of unit mean and std",
            legend=True,
        ),
        figspec.curves(
            "Shift by layer (mean over steps)",
            _lines(config, "shift_by_layer"),
            None,
            x="layers",
            xlabel="hidden layer",
        ),
    ]
    return [
        figspec.figure("accuracy", acc),
        figspec.figure("loss", [loss]),
        figspec.figure("covariate_shift", shift),
    ]


EXPERIMENT = Experiment(
    NAME, DESCRIPTION, NoisyBNConfig, runs, run_task, summarize, quick, headline, figures
)
