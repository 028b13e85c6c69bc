"""One model from a :class:`~normlab.experiments.config.TrainConfig`: train, resume, evaluate.

The functions behind ``normlab train`` and ``normlab evaluate``. A checkpoint ``run.npz`` (the
Solver's, written at every epoch end) gets its ``TrainConfig`` beside it as ``run.json``, so
that ``--resume`` and ``evaluate`` rebuild the same data split and model without being told.

Nothing is replaced silently: an existing checkpoint is continued (``resume=True``) or replaced
(``overwrite=True``), otherwise refused (:class:`~normlab._io.OutputExistsError`). A ``stop``
callable, checked after every step, ends the run early with a checkpoint of the last step
(:class:`TrainingInterrupted`): the command line sets it on SIGINT and SIGTERM.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from normlab._io import OutputExistsError, atomic_write_text
from normlab.experiments import training
from normlab.experiments.config import TrainConfig, config_from_dict, config_to_dict
from normlab.experiments.training import accuracy

__all__ = [
    "TrainingInterrupted",
    "build_model",
    "checkpoint_paths",
    "evaluate",
    "load_train_data",
    "train",
]


class TrainingInterrupted(Exception):
    """Training stopped early, as asked by ``stop``, between two steps.

    Attributes
    ----------
    iteration, total : int
        Steps taken and the steps of the whole run.
    epoch, num_epochs : int
        The epoch it stopped in (1-based) and the run's epochs.
    checkpoint : str or None
        Where the state after the last step was written (None: no checkpoint was asked for).
    """

    def __init__(self, iteration, total, epoch, num_epochs, checkpoint) -> None:
        self.iteration, self.total = iteration, total
        self.epoch, self.num_epochs = epoch, num_epochs
        self.checkpoint = checkpoint
        super().__init__(
            f"stopped in epoch {epoch} of {num_epochs} after iteration {iteration} of {total}"
        )


def checkpoint_paths(checkpoint: str | os.PathLike) -> tuple[Path, Path]:
    """The checkpoint file (``.npz`` appended if missing) and its config ``.json`` beside it."""
    path = Path(checkpoint)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    return path, path.with_suffix(".json")


def load_train_data(config: TrainConfig) -> dict:
    """The dataset split of ``config`` (``dataset``, sizes, ``seed``), as the Solver wants it."""
    return training.load_data(config, config.num_training, config.num_validation, at_most=False)


# The TrainConfig settings of every model, and those of one model only.
_SHARED = ("hidden_dims", "weight_scale", "reg", "activation", "groups")
_OWN = {"fc": ("dropout_keep_ratio",), "conv": ("num_filters", "filter_size")}


def build_model(config: TrainConfig, data: dict):
    """A fresh model for ``config`` whose input and output sizes follow ``data``.

    Parameters
    ----------
    config : TrainConfig
    data : dict
        ``X_train`` of shape (N, C, H, W) and ``y_train`` (N,) (and ``class_names``).

    Returns
    -------
    model : FullyConnectedNet or ConvNet
        Seeded with the first seed split from ``config.seed``.
    solver_seed : int
        The second: the Solver's (:func:`~normlab.experiments.training.build_model`).
    """
    names = _SHARED + _OWN.get(config.model, ())  # an unknown model is refused by the builder
    options = {name: getattr(config, name) for name in names}
    return training.build_model(data, config.seed, config.normalization, config.model, **options)


def _scores(model: Any, data: dict) -> dict:
    """Test-mode accuracy on the three splits."""
    return {
        f"{split}_acc": accuracy(model, data[f"X_{split}"], data[f"y_{split}"])
        for split in ("train", "val", "test")
    }


def train(
    config: TrainConfig,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    verbose: bool = True,
    overwrite: bool = False,
    stop: Callable[[], bool] | None = None,
) -> dict:
    """Train one model as ``config`` says, optionally checkpointing and resuming.

    Parameters
    ----------
    config : TrainConfig
    checkpoint : str or path-like, optional
        Write the Solver's checkpoint there at every epoch end, and the config beside it.
    resume : bool, default False
        Continue the run saved in ``checkpoint`` up to ``config.num_epochs`` epochs; the result
        equals that of an uninterrupted run. Only ``num_epochs``, ``data_dir`` and ``download``
        may differ from the config saved beside the checkpoint.
    verbose : bool, default True
        The Solver's progress bar and per-epoch accuracies.
    overwrite : bool, default False
        Replace an existing ``checkpoint`` (and its config) with a new run; without it (or
        ``resume``) an existing checkpoint is refused before anything is loaded.
    stop : callable, optional
        ``stop() -> bool``, checked after every step; when true, the state after that step is
        written to ``checkpoint`` (a resume continues it exactly) and
        :class:`TrainingInterrupted` is raised. It is not honoured on an epoch's last step
        (the epoch end comes first, with its own checkpoint) or the run's last.

    Returns
    -------
    out : dict
        ``config``, ``epochs``, ``val_acc_history``, ``best_val_acc``, ``train_acc``,
        ``val_acc``, ``test_acc`` (test mode, with the best epoch's parameters and running
        statistics, as the Solver leaves them),
        ``checkpoint`` (path or None), ``data_dir_used`` (the folder the dataset was read
        from; None for the embedded digits).

    Raises
    ------
    ValueError
        On resume, a setting other than those above differs from the saved config (it would
        silently change the run: another data split, another model, another batch order).
    OutputExistsError
        ``checkpoint`` exists and neither ``resume`` nor ``overwrite`` is set.
    TrainingInterrupted
        ``stop()`` returned true.
    """
    from normlab.data import Augment
    from normlab.solver import Solver

    augment = Augment.from_spec(config.augment)
    config = dataclasses.replace(config, augment=augment.spec)  # "shift1,flip" -> "flip,shift1"
    augment = augment if augment.active else None
    if resume and checkpoint is None:
        raise ValueError("expected a checkpoint to resume from, got checkpoint=None")
    ckpt = cfg_path = None
    if checkpoint is not None:
        ckpt, cfg_path = checkpoint_paths(checkpoint)
        if resume:
            if not ckpt.is_file():
                raise FileNotFoundError(
                    f"cannot resume: no checkpoint at {ckpt}; train without --resume"
                )
            _check_resume_config(config, load_sidecar(checkpoint))
        elif ckpt.exists() and not overwrite:
            raise OutputExistsError(ckpt, "checkpoint")
        elif overwrite:
            ckpt.unlink(missing_ok=True)
            cfg_path.unlink(missing_ok=True)
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        # the config beside it, before any data is loaded: a folder we cannot write fails now
        atomic_write_text(cfg_path, json.dumps(config_to_dict(config), indent=2) + "\n")
    data = load_train_data(config)
    model, solver_seed = build_model(config, data)
    options = dict(
        num_epochs=config.num_epochs,
        checkpoint_name=None if ckpt is None else str(ckpt),
        verbose=verbose,
        print_every=max(1, (len(data["X_train"]) // config.batch_size) // 4),
        callbacks=[] if stop is None else [_stopper(stop, ckpt)],
    )
    if resume:
        solver = Solver.from_checkpoint(model, data, ckpt, **options)
    else:
        solver = Solver(
            model,
            data,
            update_rule=config.update_rule,
            optim_config={"learning_rate": config.learning_rate},
            lr_decay=config.lr_decay,
            batch_size=config.batch_size,
            seed=solver_seed,
            augment=augment,
            **options,
        )
    solver.train()
    return {
        "config": config_to_dict(config),
        "epochs": solver.epoch,
        "val_acc_history": solver.val_acc_history,
        "best_val_acc": solver.best_val_acc,
        **_scores(model, data),
        "checkpoint": None if ckpt is None else str(ckpt),
        "data_dir_used": data.get("data_dir"),
    }


def _stopper(stop: Callable[[], bool], ckpt: Path | None) -> Callable:
    """A Solver callback: when ``stop()``, checkpoint the state after this step and raise."""

    def callback(solver, info) -> None:
        it, ipe = solver.iteration, solver.iterations_per_epoch
        if it % ipe == 0 or it >= solver.total_iterations or not stop():
            return  # an epoch end (or the run's end) comes next: let it come
        if ckpt is not None:
            solver.save_checkpoint(ckpt)  # atomic; between steps the state is consistent
        raise TrainingInterrupted(
            it,
            solver.total_iterations,
            it // ipe + 1,
            solver.num_epochs,
            None if ckpt is None else str(ckpt),
        )

    return callback


_RESUME_MAY_CHANGE = ("num_epochs", "data_dir", "download")


def _check_resume_config(config: TrainConfig, saved: TrainConfig | None) -> None:
    """Refuse to resume with settings that differ from the saved run's."""
    if saved is None:
        return
    given, before = config_to_dict(config), config_to_dict(saved)
    changed = [
        f"{k} (saved {before[k]!r}, given {given.get(k)!r})"
        for k in before
        if k not in _RESUME_MAY_CHANGE and given.get(k) != before[k]
    ]
    if changed:
        raise ValueError(
            "cannot resume with changed settings: "
            + "; ".join(changed)
            + "; only "
            + ", ".join(_RESUME_MAY_CHANGE)
            + " may change (train a new run instead)"
        )


def load_sidecar(checkpoint: str | os.PathLike) -> TrainConfig | None:
    """The TrainConfig saved beside ``checkpoint``, or None if there is none."""
    _, cfg_path = checkpoint_paths(checkpoint)
    if not cfg_path.is_file():
        return None
    return config_from_dict(TrainConfig, json.loads(cfg_path.read_text()))


def evaluate(checkpoint: str | os.PathLike, best: bool = False, **overrides: Any) -> dict:
    """Accuracy of a checkpointed model on the train, validation and test splits.

    Parameters
    ----------
    checkpoint : str or path-like
        A checkpoint written by ``train`` (or any Solver checkpoint of a normlab model).
    best : bool, default False
        Evaluate the parameters of the best validation epoch, with the running statistics saved
        with them, instead of the last ones.
    **overrides
        TrainConfig fields replacing those saved beside the checkpoint (``dataset``,
        ``data_dir``...); without a saved config, the defaults of TrainConfig.

    Returns
    -------
    out : dict
        ``train_acc``, ``val_acc``, ``test_acc``, ``epoch``, ``dataset``, ``model_config``.

    Raises
    ------
    FileNotFoundError
        No checkpoint at that path.
    ValueError
        The model's input does not fit the dataset, or the file is not a checkpoint.
    """
    from normlab import checkpoint as ckpt_io
    from normlab.models import build_model as build_from_config

    path, _ = checkpoint_paths(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}; train one with `normlab train`")
    saved = load_sidecar(path) or TrainConfig()
    config = config_from_dict(TrainConfig, {**config_to_dict(saved), **overrides})
    ckpt = ckpt_io.load_checkpoint(path)
    if not ckpt.model_config:
        raise ValueError(f"{path} has no model config; expected a checkpoint of a normlab model")
    model = build_from_config(dict(ckpt.model_config))
    ckpt_io.restore_model(ckpt, model)
    data = load_train_data(config)
    if best and ckpt.state.get("best_params"):
        for k, v in ckpt.state["best_params"].items():
            np.copyto(model.params[k], v)
        for k, v in ckpt.state.get("best_buffers", {}).items():
            np.copyto(model.buffers[k], v)
    shape = tuple(int(s) for s in data["X_train"].shape[1:])
    want = ckpt.model_config.get("input_dim")
    fits = want == int(np.prod(shape)) if isinstance(want, int) else list(want) == list(shape)
    if not fits:
        raise ValueError(
            f"the model expects inputs of size {want}, dataset {config.dataset!r} has {shape}; "
            "pass the --dataset it was trained on"
        )
    return {
        **_scores(model, data),
        "epoch": int(ckpt.state.get("epoch", 0)),
        "dataset": config.dataset,
        "model_config": ckpt.model_config,
    }
