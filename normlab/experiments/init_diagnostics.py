"""init-diagnostics: the makemore-part-3 lesson on a deep tanh MLP -- bad init, fixed init, batch
norm -- seen through the training diagnostics.

Setting (A. Karpathy, "Building makemore part 3: activations & gradients, BatchNorm", 2022,
scaled to this machine): five hidden tanh layers of 100 (``hidden_dims=[100] * 5``), plain SGD
at learning rate 0.1, batches of 32, three initializations of the same network from the same
normals (a paired seed):

- ``bad-init``: weights ``N(0, bad_weight_scale^2)`` with ``bad_weight_scale=1.0`` (the
  lesson's ``torch.randn`` without scaling): the tanh units saturate, their gradients vanish;
- ``fixed-init``: weights ``gain / sqrt(fan_in)`` (``weight_scale='kaiming'``, gain 5/3 for
  tanh and 1 for the scores layer, :func:`normlab.models.base.init_std`);
- one run per entry of ``normalizations`` (batch norm by default): the network with that
  normalization after every hidden affine layer, from the fixed init (``norm_init='bad'``: from
  the bad one).

Every run records its diagnostics (:class:`normlab.diagnostics.Recorder`, every ``diagnostics``
iterations, by default about 40 records a run): the report draws, runs side by side, the
activation and gradient histograms per layer, the saturation per layer over time, the
update:data ratio against 1e-3 and the signal propagation at initialization. The lesson
trained 200,000 steps on character embeddings; here it is two epochs of Fashion-MNIST (3,436
steps), at one constant learning rate (no step decay).

Summary keys (what a claims table reads)
----------------------------------------
``results["per_run"][name]`` for each run ``name`` in ``results["run_order"]`` (mean over the
seeds; ``results["spread"]["per_run"][name]`` the std, ``results["per_seed"][k]["per_run"]``
each seed's):

- ``saturation_init``: list of floats, one per hidden layer (the first is the first tanh
  layer): the saturated fraction of its post-activation units (tanh ``|t| > 0.97``) on the
  first training batch, at the initial weights (iteration 0);
- ``saturation_final``: the same at the last recorded iteration;
- ``final_train_acc``, ``final_val_acc``: accuracies at the end of training (the last epoch's
  check; training accuracy on the Solver's 1,000-image subsample);
- ``update_data_log10_median``: the median of log10 std(update) / std(W) over the weight
  matrices ``W1..WL`` and the records of the second half of training (Karpathy's rule of
  thumb: about -3); ``update_data_log10``: that median per weight matrix (list of L floats);
- ``update_data_distance``: ``|update_data_log10_median + 3|``, decades from the rule of thumb;

and ``init`` (the weight scale, a number or ``'kaiming'``) and ``normalization`` (``'none'``
or its name) of the run, ``labels[name]`` its label in words.
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass

from normlab.experiments import figspec, noise
from normlab.experiments.base import Experiment, RunSpec
from normlab.experiments.config import ExperimentConfig, field_of, opt
from normlab.experiments.training import build_model, load_data, train_solver
from normlab.experiments.wording import capital, join, num
from normlab.vocab import color, label, seed_outputs

NAME = "init-diagnostics"
DESCRIPTION = (
    "makemore part 3: tanh MLP [100]*5, bad vs fixed (gain/sqrt(fan_in)) init vs batch norm: "
    "saturation, histograms, update:data"
)

BAD, FIXED = "bad-init", "fixed-init"  # the two unnormalized runs
RULE_OF_THUMB = -3.0  # log10 update:data, Karpathy's 1e-3
_COLORS = {BAD: "tab:red", FIXED: "tab:gray"}


@dataclass(frozen=True)
class InitDiagnosticsConfig(ExperimentConfig):
    """Settings of ``init-diagnostics`` (the lesson's, scaled to this machine)."""

    dataset: str = field_of(ExperimentConfig, "dataset", "fashion-mnist")
    normalizations: tuple[str, ...] = field_of(ExperimentConfig, "normalizations", ("batchnorm",))
    diagnostics: int | None = opt(
        None,
        "record diagnostics every N iterations (None: about 40 records a run); this "
        "experiment always records",
        False,
    )
    hidden_dims: tuple[int, ...] = opt((100,) * 5, "widths of the hidden layers")
    activation: str = opt("tanh", "tanh | sigmoid | relu")
    bad_weight_scale: float = opt(1.0, "std of the bad init's weights", positive=True)
    norm_init: str = opt("fixed", "initial weights of the normalized runs: fixed | bad")
    num_training: int | None = opt(None, "training images (None: all)")
    update_rule: str = opt("sgd", "update rule")
    learning_rate: float = opt(0.1, "learning rate (constant)", positive=True)
    batch_size: int = opt(32, "minibatch size")
    num_epochs: int = opt(2, "epochs")

    def __post_init__(self) -> None:
        super().__post_init__()
        from normlab.layers import ACTIVATIONS

        if self.diagnostics == 0:
            raise ValueError(
                f"{type(self).__name__}: expected diagnostics >= 1 or None (about 40 records "
                f"a run): this experiment is its diagnostics, got {self.diagnostics!r}"
            )
        if "none" in self.normalizations:
            raise ValueError(
                f"{type(self).__name__}: normalizations lists the normalized runs; the "
                f"unnormalized ones ({BAD}, {FIXED}) always run: drop 'none' from "
                f"{list(self.normalizations)}"
            )
        if self.norm_init not in ("fixed", "bad"):
            raise ValueError(
                f"{type(self).__name__}: expected norm_init 'fixed' or 'bad', got "
                f"{self.norm_init!r}"
            )
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"{type(self).__name__}: unknown activation {self.activation!r}; known are "
                f"{sorted(ACTIVATIONS)}"
            )


RECORDS = 40  # records a run with diagnostics=None


def quick(config: InitDiagnosticsConfig) -> InitDiagnosticsConfig:
    """Two epochs on 500 images."""
    return dataclasses.replace(config, quick=True, num_training=500, num_epochs=2)


def record_every(config: InitDiagnosticsConfig, num_train: int) -> int:
    """``config.diagnostics``, or for None the interval that gives about :data:`RECORDS`
    records over the run's ``num_epochs * (num_train // batch_size)`` iterations."""
    if config.diagnostics is not None:
        return config.diagnostics
    total = config.num_epochs * max(num_train // config.batch_size, 1)
    return max(1, round(total / RECORDS))


def _init(config: InitDiagnosticsConfig, setting: str) -> float | str:
    """The ``weight_scale`` of the ``'bad'`` or ``'fixed'`` init."""
    return config.bad_weight_scale if setting == "bad" else "kaiming"


def runs(config: InitDiagnosticsConfig) -> list[RunSpec]:
    """The bad and the fixed init without normalization, then each normalization; all from the
    same normals (one seed key), so the runs differ only in their scale and normalization."""
    specs = [
        RunSpec(BAD, {"normalization": "none", "weight_scale": _init(config, "bad")}, "net"),
        RunSpec(FIXED, {"normalization": "none", "weight_scale": "kaiming"}, "net"),
    ]
    scale = _init(config, config.norm_init)
    specs += [
        RunSpec(n, {"normalization": n, "weight_scale": scale}, "net")
        for n in config.normalizations
    ]
    return specs


def run_task(config: InitDiagnosticsConfig, params: dict, seed: int) -> dict:
    """Train one run with a Recorder; :func:`~normlab.experiments.training.train_solver`'s
    output (``diagnostics`` included) and the run's ``weight_scale``."""
    data = load_data(config, num_training=config.num_training)
    model, solver_seed = build_model(
        data,
        seed,
        params["normalization"],
        hidden_dims=config.hidden_dims,
        weight_scale=params["weight_scale"],
        activation=config.activation,
    )
    out = train_solver(
        model,
        data,
        solver_seed,
        update_rule=config.update_rule,
        optim_config={"learning_rate": config.learning_rate},
        batch_size=config.batch_size,
        num_epochs=config.num_epochs,
        diagnostics=record_every(config, len(data["X_train"])),
    )
    return {**out, "weight_scale": params["weight_scale"]}


def run_label(config: InitDiagnosticsConfig, name: str) -> str:
    """A run in words: ``'bad init (N(0, 1^2))'``, ``'batch norm (fixed init)'``."""
    if name == BAD:
        return f"bad init (N(0, {config.bad_weight_scale:g}^2))"
    if name == FIXED:
        return "fixed init (gain/sqrt(fan_in))"
    return f"{label(name)} ({config.norm_init} init)"


def _median(values) -> float | None:
    """The median of the finite values (None: none)."""
    ok = [v for v in values if v is not None]
    return statistics.median(ok) if ok else None


def run_numbers(out: dict) -> dict:
    """The numbers of one run's output that the summary keeps (module docstring)."""
    rec = out["diagnostics"]
    layers = [rec["layers"][k] for k in sorted(rec["layers"], key=int)]
    hidden = [layer for layer in layers if layer["activation"] is not None]
    its = rec["iterations"]
    half = its[-1] / 2 if its else 0
    late = [j for j, it in enumerate(its) if it >= half]  # the second half of training
    weights = sorted((p for p in rec["params"] if p.startswith("W")), key=lambda p: int(p[1:]))
    per_w = [_median([rec["params"][w]["update_data_log10"][j] for j in late]) for w in weights]
    med = _median([rec["params"][w]["update_data_log10"][j] for w in weights for j in late])
    return {
        "saturation_init": [h["saturation"][0] if its else None for h in hidden],
        "saturation_final": [h["saturation"][-1] if its else None for h in hidden],
        "final_train_acc": out["train_acc"][-1] if out["train_acc"] else None,
        "final_val_acc": out["final_val_acc"],
        "update_data_log10": per_w,
        "update_data_log10_median": med,
        "update_data_distance": None if med is None else abs(med - RULE_OF_THUMB),
    }


def summarize(config: InitDiagnosticsConfig, outputs: dict, seconds: dict) -> dict:
    """Per run the numbers of :func:`run_numbers`, and a table of them."""
    per_run, rows = {}, []
    for name, out in outputs.items():
        nums = run_numbers(out)
        per_run[name] = {
            "normalization": "none" if name in (BAD, FIXED) else name,
            "init": out["weight_scale"],
            **nums,
        }
        sat0, sat1 = nums["saturation_init"], nums["saturation_final"]
        rows.append(
            [
                run_label(config, name),
                sat0[0] if sat0 else None,
                sat1[0] if sat1 else None,
                _mean(sat1),
                nums["final_train_acc"],
                nums["final_val_acc"],
                nums["update_data_log10_median"],
                seconds.get(name),
            ]
        )
    columns = [
        "run",
        "layer 1 saturated at init",
        "layer 1 saturated at end",
        "all layers saturated at end",
        "final train acc",
        "final val acc",
        "median log10 update:data (2nd half)",
        "time (s)",
    ]
    labels = {name: run_label(config, name) for name in outputs}
    return {
        "run_order": list(outputs),
        "labels": labels,
        "per_run": per_run,
        "table": {"columns": columns, "rows": rows},
    }


def _mean(values) -> float | None:
    """The mean of the values that are not None (None: none)."""
    ok = [v for v in values if v is not None]
    return statistics.fmean(ok) if ok else None


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def headline(results: dict) -> str:
    """The saturation of the first hidden layer (and the mean over the hidden layers) at init
    and at the end per run, the final validation accuracy of each run against the fixed
    init's, and the median update:data ratio against 1e-3, each comparison beyond or within
    noise (:mod:`normlab.experiments.noise`; the runs of a seed share its normals, so
    comparisons are paired)."""
    order, per_run = results["run_order"], results["per_run"]
    seeds = results.get("seeds", 1)
    act = results["config"].get("activation", "tanh")
    words = {"tanh": "|t| > 0.97", "sigmoid": "t outside [0.03, 0.97]", "relu": "t = 0"}

    def sat(n: str) -> str:
        r = per_run[n]
        first = f"{_pct(r['saturation_init'][0])} -> {_pct(r['saturation_final'][0])}"
        every = f"{_pct(_mean(r['saturation_init']))} -> {_pct(_mean(r['saturation_final']))}"
        return f"{first} (all hidden layers {every}) {_with(n)}"

    sentence = (
        f"Saturated units ({words.get(act, act)}) of the first {act} layer, at init -> after "
        f"training: {join([sat(n) for n in order])}."
    )

    def seeds_of(name: str, key: str) -> list:
        return [s[name][key] for s in noise.per_seed(results, ["per_run"])]

    n_val = seed_outputs(results, order[0])[0].get("num_val")
    ref = FIXED
    diffs, parts = [], []
    for n in order:
        if n == ref:
            continue
        d = noise.difference(
            seeds_of(ref, "final_val_acc"), seeds_of(n, "final_val_acc"), n_val, paired=True
        )
        diffs.append(d)
        parts.append(f"{num(d.b)} {_with(n)} ({noise.versus(d, 'the fixed init')})")
    fixed_acc = per_run[ref]["final_val_acc"]
    sentence += f" Final validation accuracy: {num(fixed_acc)} {_with(ref)}, {join(parts)}."
    ratio_parts = []
    for n in order:
        values = seeds_of(n, "update_data_log10_median")
        d = noise.difference([RULE_OF_THUMB] * len(values), values, paired=True)
        verdict = f" ({noise.versus(d, '-3')})" if seeds > 1 else ""
        ratio_parts.append(f"{num(per_run[n]['update_data_log10_median'], 1)} {_with(n)}{verdict}")
    against = "against the rule of thumb -3" + (
        "" if seeds > 1 else ", one seed: no noise estimate"
    )
    sentence += (
        f" Median log10 update:data ratio in the second half of training: {join(ratio_parts)}"
        f" ({against}; {noise.seeds_phrase(seeds)})."
    )
    quick = results.get("config", {}).get("quick", False)
    return noise.qualify(capital(sentence), diffs, quick)


def _with(name: str) -> str:
    """A run as a phrase: ``'with the bad init'``, ``'with batch norm'``."""
    return {BAD: "with the bad init", FIXED: "with the fixed init"}.get(name, f"with {label(name)}")


def figures(config: InitDiagnosticsConfig) -> list[dict]:
    """``curves``: the training loss and the training and validation accuracy of each run (the
    diagnostics figures, runs side by side, are drawn from the runs' records by the report)."""
    names = [s.name for s in runs(config)]

    def line(name: str, y: str) -> dict:
        return figspec.line(y, run_label(config, name), _COLORS.get(name) or color(name), run=name)

    loss = {
        **figspec.loss("Training loss", "loss (moving average over an epoch)", []),
        "lines": [line(n, "loss") for n in names],
    }
    panels = [
        loss,
        figspec.curves("Training accuracy", [line(n, "train_acc") for n in names], "accuracy"),
        figspec.curves(
            "Validation accuracy", [line(n, "val_acc") for n in names], "accuracy", legend=True
        ),
    ]
    return [figspec.figure("curves", panels)]


EXPERIMENT = Experiment(
    NAME, DESCRIPTION, InitDiagnosticsConfig, runs, run_task, summarize, quick, headline, figures
)
