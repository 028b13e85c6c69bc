"""One model from a :class:`~normlab.experiments.config.TrainConfig`: train, resume, evaluate.

The functions behind ``normlab train`` and ``normlab evaluate``. A checkpoint ``run.npz`` (the
Solver's, written at every epoch end) gets its ``TrainConfig`` beside it as ``run.json``, so
that ``--resume`` and ``evaluate`` rebuild the same data split and model without being told.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from normlab.experiments import training
from normlab.experiments.config import TrainConfig, config_from_dict, config_to_dict
from normlab.experiments.training import accuracy

__all__ = ["build_model", "checkpoint_paths", "evaluate", "load_train_data", "train"]


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

    Returns
    -------
    out : dict
        ``config``, ``epochs``, ``val_acc_history``, ``best_val_acc``, ``train_acc``,
        ``val_acc``, ``test_acc`` (test mode, with the best epoch's parameters and running
        statistics, as the Solver leaves them),
        ``checkpoint`` (path or None).

    Raises
    ------
    ValueError
        On resume, a setting other than those above differs from the saved config (it would
        silently change the run: another data split, another model, another batch order).
    """
    from normlab.data import Augment
    from normlab.solver import Solver

    augment = Augment.from_spec(config.augment)
    config = dataclasses.replace(config, augment=augment.spec)  # "shift1,flip" -> "flip,shift1"
    augment = augment if augment.active else None
    if resume and checkpoint is not None:
        _check_resume_config(config, load_sidecar(checkpoint))
    data = load_train_data(config)
    model, solver_seed = build_model(config, data)
    ckpt = cfg_path = None
    if checkpoint is not None:
        ckpt, cfg_path = checkpoint_paths(checkpoint)
        ckpt.parent.mkdir(parents=True, exist_ok=True)
    options = dict(
        num_epochs=config.num_epochs,
        checkpoint_name=None if ckpt is None else str(ckpt),
        verbose=verbose,
        print_every=max(1, (len(data["X_train"]) // config.batch_size) // 4),
    )
    if resume:
        if ckpt is None or not ckpt.is_file():
            raise FileNotFoundError(
                f"cannot resume: no checkpoint at {ckpt}; train without --resume"
            )
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
    if cfg_path is not None:
        cfg_path.write_text(json.dumps(config_to_dict(config), indent=2) + "\n")
    solver.train()
    return {
        "config": config_to_dict(config),
        "epochs": solver.epoch,
        "val_acc_history": solver.val_acc_history,
        "best_val_acc": solver.best_val_acc,
        **_scores(model, data),
        "checkpoint": None if ckpt is None else str(ckpt),
    }


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
