"""What the experiments' tasks share: one cached data loader, one model builder, one Solver run
(and the CS231n-style run of a fully-connected net), paired runs, curve helpers.

Everything here is a plain function of its arguments; the only state is a per-process cache of
loaded datasets (so that the tasks of a sweep running in one process load a dataset once).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from normlab.experiments.base import RunSpec
from normlab.solver import NonFiniteLossError, Solver

__all__ = [
    "accuracy",
    "auto_threshold",
    "build_model",
    "epochs_to_reach",
    "finite",
    "load_data",
    "paired_runs",
    "preload_data",
    "split_seed",
    "train_fc",
    "train_solver",
]

MODELS = ("fc", "conv")  # FullyConnectedNet, ConvNet


def _model_normalization(name: str | None) -> str | None:
    """A model's ``normalization=`` for a run's normalization (``'none'`` -> None)."""
    return None if name in ("none", "None", "", None) else name


@functools.lru_cache(maxsize=4)
def _load(dataset, data_dir, download, num_training, num_validation, num_test, seed) -> dict:
    from normlab.data import load_dataset

    sizes = (num_training, num_validation, num_test)
    data = load_dataset(dataset, data_dir, *sizes, seed=seed, download=download)
    for v in data.values():
        if isinstance(v, np.ndarray):
            v.setflags(write=False)  # shared by every task of this process: read-only
    return data


def load_data(
    config: Any,
    num_training: int | None = None,
    num_validation: int | None = None,
    num_test: int | None = None,
    at_most: bool = True,
) -> dict:
    """The dataset of ``config`` (``dataset``, ``data_dir``, ``download``, ``seed``), cached.

    Parameters
    ----------
    config : dataclass
        Has ``dataset``, ``data_dir``, ``download`` and ``seed`` (the split's seed).
    num_training, num_validation, num_test : int, optional
        Split sizes, as in :func:`normlab.data.load_dataset`.
    at_most : bool, default True
        ``num_training`` is an upper bound: a dataset with fewer training images (the digits
        against an experiment's default sized for CIFAR-10) gives all it has. False: it is
        the exact size, and too large a size is refused (``normlab train``).

    Returns
    -------
    data : dict
        ``X_train`` (N, C, H, W), ``y_train`` (N,), ``X_val``, ``y_val``, ``X_test``, ``y_test``
        (read-only arrays shared between the calls of one process) and ``class_names``.
    """
    where = (
        config.dataset,
        None if config.data_dir is None else str(config.data_dir),
        bool(config.download),
    )
    if num_training is not None and at_most:
        full = _load(*where, None, num_validation, num_test, int(config.seed))
        if num_training >= len(full["X_train"]):
            return full
    return _load(*where, num_training, num_validation, num_test, int(config.seed))


def preload_data(config: Any, scheduler: str | None = None) -> None:
    """Load ``config``'s data in this process before any run, so that a missing dataset fails
    at once with one clear error (cached: local runs reuse it). Nothing with a Dask
    ``scheduler``: the data must be where its workers are, not here."""
    if scheduler is None:
        load_data(config, num_training=getattr(config, "num_training", None))


def split_seed(seed: int, n: int = 2) -> list[int]:
    """``n`` independent seeds from one run seed (e.g. weights and batches)."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(n)]


def num_classes(data: dict) -> int:
    """Number of classes of the dataset."""
    return len(data.get("class_names") or np.unique(data["y_train"]))


def accuracy(model: Any, X: np.ndarray, y: np.ndarray, batch_size: int = 1000) -> float:
    """Test-mode accuracy of ``model`` on ``X`` (N, ...) with labels ``y`` (N,)."""
    preds = [
        np.argmax(model.loss(X[i : i + batch_size]), axis=1)  # (b,)
        for i in range(0, len(X), batch_size)
    ]
    return float(np.mean(np.concatenate(preds) == y))


def eval_loss(model: Any, X: np.ndarray, y: np.ndarray, batch_size: int = 1000) -> float:
    """Test-mode mean softmax cross-entropy of ``model`` on ``X`` (N, ...), ``y`` (N,)."""
    from normlab.layers import softmax_loss

    total = 0.0
    for i in range(0, len(X), batch_size):
        scores = model.loss(X[i : i + batch_size])  # (b, C)
        total += softmax_loss(scores, y[i : i + batch_size])[0] * len(scores)
    return total / len(X)


def finite(x: Any) -> Any:
    """``x`` as a float, or None when NaN or infinite (JSON has no NaN); lists elementwise."""
    if isinstance(x, list | tuple | np.ndarray):
        return [finite(v) for v in x]
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def paired_runs(config: Any) -> list[RunSpec]:
    """One run per normalization of ``config``, all from the same initial weights."""
    return [RunSpec(n, {"normalization": n}, seed_key="net") for n in config.normalizations]


def build_model(data: dict, seed: int, normalization: str | None, model: str = "fc", **options):
    """The one model builder: a fresh model for ``data``, and the seed left for its Solver.

    Parameters
    ----------
    data : dict
        ``X_train`` of shape (N, C, H, W) and ``y_train`` (N,) (and ``class_names``): they
        give the input size and the number of classes.
    seed : int
        The run's seed, split into the model's (initial weights) and the Solver's.
    normalization : str or None
        A registered name, or ``'none'`` / None for no normalization.
    model : {'fc', 'conv'}, default 'fc'
        :class:`~normlab.models.FullyConnectedNet` (inputs flattened) or
        :class:`~normlab.models.ConvNet`.
    **options
        The model's other constructor arguments (``hidden_dims``, ``weight_scale``...).

    Returns
    -------
    model : FullyConnectedNet or ConvNet
    solver_seed : int

    Raises
    ------
    ValueError
        For an unknown ``model`` (the message lists the known ones).
    """
    from normlab.models import ConvNet, FullyConnectedNet

    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; known models are {list(MODELS)}")
    model_seed, solver_seed = split_seed(seed)
    shape = tuple(int(s) for s in data["X_train"].shape[1:])  # (C, H, W)
    net = FullyConnectedNet if model == "fc" else ConvNet
    built = net(
        input_dim=int(np.prod(shape)) if model == "fc" else shape,
        num_classes=num_classes(data),
        normalization=_model_normalization(normalization),
        seed=model_seed,
        **options,
    )
    return built, solver_seed


def train_solver(
    model: Any, data: dict, seed: int, callbacks=(), diagnostics: int | None = None, **options: Any
) -> dict:
    """Train ``model`` with a Solver; return its curves and scores (divergence included).

    Parameters
    ----------
    model : object
        A normlab model.
    data : dict
        ``X_train``, ``y_train``, ``X_val``, ``y_val``, ``X_test``, ``y_test``.
    seed : int
        The Solver's seed (batch order, accuracy subsamples).
    callbacks : sequence of callables
        Solver callbacks.
    diagnostics : int, optional
        Record training diagnostics every ``diagnostics`` iterations with a
        :class:`~normlab.diagnostics.Recorder` (0 or None: none).
    **options
        Solver keyword arguments (``update_rule``, ``optim_config``, ``batch_size``,
        ``num_epochs``...); ``verbose`` defaults to False.

    Returns
    -------
    out : dict
        ``loss`` (per iteration), ``train_acc`` and ``val_acc`` (per epoch, epoch 0 first),
        ``best_val_acc``, ``final_val_acc``, ``best_train_acc``, ``final_train_loss`` (mean of
        the last epoch's losses), ``test_acc`` (test mode, with the best validation epoch's
        parameters and running statistics, as the Solver leaves them; None if diverged),
        ``diverged`` (the loss became NaN or infinite: the curves stop there and the scores are
        those reached before), ``num_val`` and ``num_test`` (images the validation and test
        accuracies are measured on: the noise bounds of :mod:`~normlab.experiments.noise`),
        ``data_dir`` (the folder the dataset was read from; None for the embedded digits);
        with ``diagnostics``, also ``diagnostics``: the Recorder's ``to_dict()``.
    """
    options.setdefault("verbose", False)
    callbacks = list(callbacks)
    recorder = None
    if diagnostics:  # 0: none (--diagnostics 0 turns off an experiment's default)
        from normlab.diagnostics import Recorder

        recorder = Recorder(model, every=diagnostics)  # θ copied now: right before training
        callbacks.append(recorder)
    solver = Solver(model, data, seed=seed, callbacks=callbacks, **options)
    diverged = False
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # divergence is reported below
            solver.train()
    except NonFiniteLossError:
        diverged = True
    ipe = solver.iterations_per_epoch
    losses = solver.loss_history
    last = losses[-ipe:] if len(losses) >= ipe else losses
    test_acc = None if diverged else accuracy(model, data["X_test"], data["y_test"])
    extra = {} if recorder is None else {"diagnostics": recorder.to_dict()}
    return {
        "loss": finite(losses),
        "train_acc": finite(solver.train_acc_history),
        "val_acc": finite(solver.val_acc_history),
        "best_val_acc": finite(max(solver.val_acc_history)),
        "final_val_acc": finite(solver.val_acc_history[-1]),
        "best_train_acc": finite(max(solver.train_acc_history)),
        "final_train_loss": None if diverged or not last else finite(np.mean(last)),
        "test_acc": test_acc,
        "iterations_per_epoch": ipe,
        "diverged": diverged,
        "num_val": len(data["y_val"]) if solver.num_val_samples is None else solver.num_val_samples,
        "num_test": len(data["y_test"]),
        "data_dir": data.get("data_dir"),
        **extra,
    }


def train_fc(config: Any, params: dict, seed: int, callbacks=(), **options: Any) -> dict:
    """The task of the CS231n-style experiments: their fully-connected net, trained by a Solver.

    The net has ``config.hidden_dims`` and initial weights of ``weight_scale``; it learns from
    ``config.num_training`` images with ``config.update_rule`` (Adam where the config has
    none) at ``config.learning_rate``, in batches of ``batch_size``, for ``config.num_epochs``
    epochs; with ``config.diagnostics`` (where the config has it) a Recorder records every
    that many iterations. A setting the run sweeps (``weight_scale``, ``batch_size``) is in
    its ``params``, beside its ``normalization``; else it is the config's.

    Parameters
    ----------
    config : dataclass
        An experiment's config with the settings above.
    params : dict
        The run's ``normalization`` and the settings it sweeps.
    seed : int
        The run's seed (:func:`build_model` splits it).
    callbacks, **options
        Solver callbacks and other Solver keyword arguments (:func:`train_solver`).

    Returns
    -------
    out : dict
        What :func:`train_solver` returns, then the swept settings of ``params``.
    """

    def setting(name: str) -> Any:
        return params[name] if name in params else getattr(config, name)

    data = load_data(config, num_training=config.num_training)
    model, solver_seed = build_model(
        data,
        seed,
        params["normalization"],
        hidden_dims=config.hidden_dims,
        weight_scale=setting("weight_scale"),
    )
    out = train_solver(
        model,
        data,
        solver_seed,
        callbacks,
        update_rule=getattr(config, "update_rule", "adam"),
        optim_config={"learning_rate": config.learning_rate},
        batch_size=setting("batch_size"),
        num_epochs=config.num_epochs,
        **{"diagnostics": getattr(config, "diagnostics", None), **options},
    )
    return {**out, **{k: v for k, v in params.items() if k != "normalization"}}


def epochs_to_reach(curve: list, threshold: float) -> int | None:
    """The first trained epoch (>= 1) whose value is at least ``threshold`` (None if never).

    Epoch 0 is the untrained network: reaching a target there is no achievement of training.
    """
    for epoch, v in enumerate(curve):
        if epoch >= 1 and v is not None and v >= threshold:
            return epoch
    return None


def auto_threshold(best: float, fraction: float = 0.95, step: float = 0.05) -> float:
    """A round accuracy target: ``fraction * best`` rounded down to a multiple of ``step``."""
    return round(math.floor(fraction * best / step + 1e-9) * step, 4)
