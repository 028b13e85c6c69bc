"""The Solver: minibatches, updates, histories, callbacks and progress for one model.

It follows the CS231n assignment's ``Solver`` (same keyword arguments, ``train()``,
``check_accuracy``, histories, best parameters restored at the end) with these choices:

- batches come from a fresh permutation of the training set per epoch, drawn from the solver's
  own ``np.random.Generator`` (``seed``); the ragged last batch is dropped, so every batch has
  ``batch_size`` rows (batch-norm statistics of a 3-row batch would be noise) and an epoch is
  ``max(N // batch_size, 1)`` iterations;
- accuracies are measured before training (epoch 0) and after every epoch, so
  ``val_acc_history[e]`` is the accuracy after ``e`` epochs (the assignment measures after the
  first iteration instead);
- an :class:`~normlab.optimizer.Optimizer` updates the parameters in place; a
  :class:`~normlab.train_state.TrainState` saved with model and optimizer in one atomic ``.npz``
  (:mod:`normlab.checkpoint`) resumes the run bit for bit (read, validated, applied once).
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from normlab._validate import check_callbacks, check_int, check_positive
from normlab.augment import Augment, augment_batch, augment_name
from normlab.checkpoint import (
    Checkpoint,
    check_restore,
    load_checkpoint,
    restore_model,
    save_checkpoint,
)
from normlab.divergence import BufferBackup, NonFiniteLossError
from normlab.optim import UPDATE_RULES
from normlab.optimizer import Optimizer
from normlab.train_state import TrainState

__all__ = ["OPTIONS", "NonFiniteLossError", "Solver"]

_DATA_KEYS = ("X_train", "y_train", "X_val", "y_val")
OPTIONS: dict[str, Any] = {  # Solver's keyword arguments and their defaults
    "update_rule": "sgd",  # name in optim.UPDATE_RULES, or rule(w, dw, config) -> (next_w, config)
    "optim_config": None,  # hyperparameters of the rule, e.g. {"learning_rate": 1e-3}
    "lr_decay": 1.0,  # learning_rate *= lr_decay after every epoch
    "batch_size": 100,
    "num_epochs": 10,  # total epochs, counting those of a resumed checkpoint
    "num_iterations": None,  # total iterations (overrides num_epochs for stopping); None: epochs
    "num_train_samples": 1000,  # training rows subsampled for train accuracy (None: all)
    "num_val_samples": None,  # validation rows subsampled for val accuracy (None: all)
    "checkpoint_name": None,  # path prefix; "{epoch}" in it is formatted; None: no checkpoints
    "print_every": 10,  # iterations between loss reports when verbose
    "verbose": True,
    "seed": 0,  # int, None (fresh entropy) or np.random.Generator: batches and subsampling
    # sequence of fn(solver, info) called after every step (see step); drawing from solver.rng
    # in one would make resume inexact
    "callbacks": None,
    "fused": None,  # None: the optimizer's fused kernel where it applies; True/False to force
    "progress": True,  # tqdm bar when verbose
    "resume_from": None,  # checkpoint path to resume from (see Solver.resume)
    # fn(X_batch, rng) -> X_batch on training batches only, e.g. Augment(flip=True, shift=2),
    # drawing only from the rng it is given; checkpoints record its repr (module.qualname when
    # the repr holds an address), and only an Augment is rebuilt from it
    "augment": None,
}
# Solver attributes that are TrainState fields of the same name.
_SHARED = (
    "epoch", "iteration", "loss_history", "train_acc_history", "val_acc_history",
    "best_val_acc", "best_params", "best_buffers",
)  # fmt: skip
# Settings that change the trajectory: a resumed run must use the checkpoint's.
_TRAJECTORY = (
    "update_rule", "lr_decay", "batch_size", "num_train_samples", "num_val_samples", "augment",
)  # fmt: skip


class Solver:
    """Train a classification model with minibatch gradient descent.

    Parameters
    ----------
    model : object
        ``model.params`` (dict of str to ndarray, trainable, updated in place), optionally
        ``model.buffers`` (dict of str to ndarray, running statistics), ``model.loss(X, y=None)``
        returning scores (N, C) when ``y`` is None and ``(loss, grads)`` otherwise, optionally
        ``model.rng`` (np.random.Generator) and ``model.get_config()``.
    data : dict
        ``X_train`` (N, ...), ``y_train`` (N,), ``X_val`` (M, ...), ``y_val`` (M,), ndarrays.
    **kwargs
        The CS231n Solver's keyword arguments and a few more; :data:`OPTIONS` lists them with
        their defaults and meaning (``update_rule``, ``optim_config``, ``lr_decay``,
        ``batch_size``, ``num_epochs``, ``num_iterations``, ``checkpoint_name``, ``seed``,
        ``callbacks``, ``augment``...).

    Attributes
    ----------
    loss_history : list of float
        Loss of every iteration.
    train_acc_history, val_acc_history : list of float
        Accuracies before training and after every epoch.
    best_val_acc : float
        Best entry of ``val_acc_history`` (-inf before the first measurement).
    best_params, best_buffers : dict of str to ndarray
        Copies of the parameters and buffers (batch-norm parameters are only right with their
        running statistics) at ``best_val_acc``; copied back at the end of :meth:`train`.
    epoch, iteration : int
        Epochs and iterations completed.
    rng : np.random.Generator
    optimizer : Optimizer
        The update rule and its state (``optim_configs``).

    Raises
    ------
    ValueError
        Unknown keyword arguments (listing the known ones), missing data keys, mismatched
        lengths, invalid values (naming the argument, what was expected and what was got).

    Examples
    --------
    >>> solver = Solver(model, data, update_rule="adam", optim_config={"learning_rate": 1e-3},
    ...                 num_epochs=5, batch_size=32, seed=0, verbose=False)  # doctest: +SKIP
    >>> solver.train()  # doctest: +SKIP
    """

    def __init__(self, model: Any, data: dict, **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - set(OPTIONS))
        if unknown:
            raise ValueError(
                f"Unrecognized arguments {unknown}; known arguments are {sorted(OPTIONS)}"
            )
        opts = {**OPTIONS, **kwargs}
        self.model = model
        self.X_train, self.y_train, self.X_val, self.y_val = _check_data(data)
        if not isinstance(opts["optim_config"], dict | None):
            raise ValueError(f"expected optim_config a dict or None, got {opts['optim_config']!r}")
        self.optim_config = dict(opts["optim_config"] or {})
        self.lr_decay = check_positive("lr_decay", opts["lr_decay"])
        self.batch_size = check_int("batch_size", opts["batch_size"])
        self.num_epochs = check_int("num_epochs", opts["num_epochs"], minimum=0)
        self.num_iterations = check_int("num_iterations", opts["num_iterations"], allow_none=True)
        for k in ("num_train_samples", "num_val_samples"):
            setattr(self, k, check_int(k, opts[k], allow_none=True))
        self.checkpoint_name = opts["checkpoint_name"]
        self.print_every = check_int("print_every", opts["print_every"])
        self.verbose, self.progress = bool(opts["verbose"]), bool(opts["progress"])
        self.callbacks = check_callbacks(opts["callbacks"])
        if opts["augment"] is not None and not callable(opts["augment"]):
            raise ValueError(f"expected augment a callable or None, got {opts['augment']!r}")
        self.augment = opts["augment"]
        self._seed = opts["seed"]
        self.rng = np.random.default_rng(opts["seed"])
        self.optimizer = Optimizer(
            model.params, opts["update_rule"], self.optim_config, fused=opts["fused"]
        )
        self.rule_name, self.fused = self.optimizer.rule_name, self.optimizer.fused
        self._apply(TrainState(num_train=len(self.X_train), rng_state=self.rng.bit_generator.state))
        self._bar = None  # the tqdm bar while train() shows one
        self._grads_checked = False  # grads' names are checked on the first step
        self._backup = BufferBackup()  # the buffers before the step (see step)
        if opts["resume_from"] is not None:
            self.resume(opts["resume_from"])

    @property
    def optim_configs(self) -> dict[str, dict]:
        """The CS231n per-parameter configs (the optimizer's own)."""
        return self.optimizer.optim_configs

    @property
    def iterations_per_epoch(self) -> int:
        """Full batches per epoch: ``max(N // batch_size, 1)`` (the ragged rest is dropped)."""
        return max(len(self.X_train) // self.batch_size, 1)

    @property
    def total_iterations(self) -> int:
        """Where :meth:`train` stops: ``num_iterations``, else ``num_epochs`` epochs."""
        n = self.num_iterations
        return self.num_epochs * self.iterations_per_epoch if n is None else n

    # -- one iteration -------------------------------------------------------------------------

    def step(self) -> float:
        """Take one minibatch step (loss, gradients, update, history, callbacks); the loss.

        Callbacks get ``fn(solver, info)``, ``info`` holding ``iteration``, ``epoch``, ``batch``,
        ``loss``, ``batch_indices``, ``X_batch`` (augmented), ``y_batch``, ``grads``.

        Raises
        ------
        NonFiniteLossError
            If the loss is NaN or infinite, or ``model.loss`` raised a ``FloatingPointError``
            (its cause), naming the layer where it began (:mod:`normlab.divergence`). Then, as
            after any exception, parameters and buffers are as before the step.
        """
        it, ipe = self.iteration, self.iterations_per_epoch
        if self._perm is None or self._cursor >= ipe:  # a new epoch: a new permutation
            self._perm, self._cursor = self.rng.permutation(len(self.X_train)), 0  # (N,)
        batch, bs = self._cursor, min(self.batch_size, len(self.X_train))
        self._cursor += 1
        idx = self._perm[batch * bs : (batch + 1) * bs]  # (B,)
        X_batch, y_batch = self.X_train[idx], self.y_train[idx]  # (B, ...), (B,)
        if self.augment is not None:
            X_batch = augment_batch(self.augment, X_batch, self.rng)
        self._backup.save(getattr(self.model, "buffers", None))
        try:
            try:
                loss, grads = self.model.loss(X_batch, y_batch)
            except FloatingPointError as err:  # e.g. batch norm refusing NaN statistics
                if isinstance(err, NonFiniteLossError):
                    raise
                what = f"{getattr(err, 'function', 'model.loss')} refused non-finite values"
                raise NonFiniteLossError.at(self, what, batch, X_batch) from err
            loss = float(loss)
            if not math.isfinite(loss):
                raise NonFiniteLossError.at(self, f"non-finite loss {loss}", batch, X_batch)
            if not self._grads_checked and set(grads) != set(self.model.params):
                raise ValueError(
                    f"expected grads for {sorted(self.model.params)}, got {sorted(grads)}"
                )
            self._grads_checked = True
            self.optimizer.step(self.model.params, grads)
        except BaseException:
            self._backup.restore()  # undo the forward pass's update of the running statistics
            raise
        self.loss_history.append(loss)
        self.iteration += 1
        if self.callbacks:  # the info dict costs ~1 us a step: built only when read
            info = {
                "iteration": it, "epoch": it // ipe, "batch": batch, "loss": loss,
                "batch_indices": idx, "X_batch": X_batch, "y_batch": y_batch, "grads": grads,
            }  # fmt: skip
            for fn in self.callbacks:
                fn(self, info)
        return loss

    # -- evaluation and training ---------------------------------------------------------------

    def check_accuracy(
        self, X: np.ndarray, y: np.ndarray, num_samples: int | None = None, batch_size: int = 100
    ) -> float:
        """Fraction of rows of ``X`` (N, ...) whose arg-max score is the label ``y`` (N,).

        Test mode (``model.loss(X)``), ``batch_size`` rows per forward pass; ``num_samples``
        rows drawn without replacement from ``self.rng`` when N is larger.
        """
        n = X.shape[0]
        if num_samples is not None and n > num_samples:
            mask = self.rng.choice(n, num_samples, replace=False)  # (num_samples,)
            X, y, n = X[mask], y[mask], num_samples
        preds = [
            np.argmax(self.model.loss(X[i : i + batch_size]), axis=1)  # (b,)
            for i in range(0, n, batch_size)
        ]
        return float(np.mean(np.concatenate(preds) == y))

    def _record_accuracy(self) -> str:
        """Append train/val accuracies, keep the parameters if val is the best; the report."""
        train_acc = self.check_accuracy(self.X_train, self.y_train, self.num_train_samples)
        val_acc = self.check_accuracy(self.X_val, self.y_val, self.num_val_samples)
        self.train_acc_history.append(train_acc)
        self.val_acc_history.append(val_acc)
        if val_acc > self.best_val_acc:
            self.best_val_acc = val_acc
            self.best_params = _copies(self.model.params)
            self.best_buffers = _copies(getattr(self.model, "buffers", {}))
        return f"train acc: {train_acc:f}; val_acc: {val_acc:f}"  # the assignment's wording

    def train(self) -> None:
        """Train until :attr:`total_iterations`, then restore the best parameters.

        Measures accuracy before the first step (a fresh run) and after every epoch, decays the
        learning rate and writes the checkpoint at every epoch end. Calling it on a resumed
        solver continues from the checkpoint.
        """
        ipe, total = self.iterations_per_epoch, self.total_iterations
        if self.iteration == 0 and not self.val_acc_history:
            self._say(f"(Epoch 0 / {self.num_epochs}) {self._record_accuracy()}")
        show_bar = self.verbose and self.progress
        with tqdm(total=total, initial=min(self.iteration, total), disable=not show_bar) as bar:
            self._bar = bar if show_bar else None
            try:
                while self.iteration < total:
                    loss = self.step()
                    bar.update(1)
                    if self.verbose and (self.iteration - 1) % self.print_every == 0:
                        if self._bar is not None:
                            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                        else:
                            print(f"(Iteration {self.iteration} / {total}) loss: {loss:f}")
                    if self.iteration % ipe == 0:
                        self._end_epoch()
            finally:
                self._bar = None
        for k, v in self.best_params.items():
            np.copyto(self.model.params[k], v)  # in place: the model keeps its arrays
        buffers = getattr(self.model, "buffers", {})
        for k, v in self.best_buffers.items():
            np.copyto(buffers[k], v)  # in place: the layers' bn_param dicts hold these arrays

    def _end_epoch(self) -> None:
        """Count the epoch, decay learning rates, measure accuracy, write the checkpoint."""
        self.epoch = self.iteration // self.iterations_per_epoch
        self.optimizer.decay_learning_rate(self.lr_decay)
        accs = self._record_accuracy()
        if self.checkpoint_name is not None:
            self.save_checkpoint()
        self._say(f"(Epoch {self.epoch} / {self.num_epochs}) {accs}")

    def _say(self, msg: str) -> None:
        """Print ``msg`` when verbose, through the progress bar if one is shown."""
        if self.verbose and self._bar is not None:
            tqdm.write(msg)
        elif self.verbose:
            print(msg)

    # -- checkpoints ---------------------------------------------------------------------------

    def config(self) -> dict:
        """The solver's settings as a JSON-able dict (saved in checkpoints)."""
        return {
            "update_rule": self.rule_name,
            "optim_config": self.optim_config,
            "lr_decay": self.lr_decay,
            "batch_size": self.batch_size,
            "num_epochs": self.num_epochs,
            "num_iterations": self.num_iterations,
            "num_train_samples": self.num_train_samples,
            "num_val_samples": self.num_val_samples,
            "checkpoint_name": None if self.checkpoint_name is None else str(self.checkpoint_name),
            "print_every": self.print_every,
            "seed": _seed_json(self._seed),
            "fused": self.fused,
            "augment": augment_name(self.augment),
        }

    def train_state(self) -> TrainState:
        """Where training stands (counters, histories, RNG, batch order, best parameters)."""
        return TrainState(
            **{k: getattr(self, k) for k in _SHARED},
            num_train=len(self.X_train),
            rng_state=self.rng.bit_generator.state,
            batch_order=self._perm,
            batch_cursor=self._cursor,
        )

    def load_train_state(self, s: TrainState) -> None:
        """Continue from ``s`` (as :meth:`train_state` gave it); ValueError if it does not fit."""
        s.check_fits(len(self.X_train), self.iterations_per_epoch, self.rng, self.model)
        self._apply(s)

    def _apply(self, s: TrainState) -> None:
        """Take a validated TrainState as this solver's own, as copies."""
        for k in _SHARED:
            v = getattr(s, k)
            setattr(self, k, _copies(v) if isinstance(v, dict) else np.array(v).tolist())
        self.rng.bit_generator.state = s.rng_state
        self._perm = None if s.batch_order is None else np.array(s.batch_order)  # (N,)
        self._cursor = s.batch_cursor  # batches of the current epoch already taken

    def checkpoint_path(self) -> str:
        """Path of the checkpoint for the current epoch (requires ``checkpoint_name``)."""
        if self.checkpoint_name is None:
            raise ValueError("expected checkpoint_name to be set, got None")
        name = os.fspath(self.checkpoint_name).replace("{epoch}", str(self.epoch))
        return name if name.endswith(".npz") else name + ".npz"

    def save_checkpoint(self, path: str | os.PathLike | None = None) -> str:
        """Write model, optimizer and :meth:`train_state` atomically (default: checkpoint_path)."""
        path = self.checkpoint_path() if path is None else os.fspath(path)
        state = {**self.train_state().to_dict(), "optimizer": self.optimizer.state_dict()}
        save_checkpoint(path, self.model, state, self.config())
        return path

    @classmethod
    def from_checkpoint(
        cls, model: Any, data: dict, path: str | os.PathLike, **overrides: Any
    ) -> Solver:
        """A solver with a checkpoint's settings and state, ready to continue training.

        ``model`` must have the checkpoint's parameter names, shapes and dtypes, ``data`` is the
        saved run's; ``overrides`` replace saved keyword arguments (``num_epochs``,
        ``verbose``...; a callable ``update_rule`` or ``augment`` must be passed again).
        """
        ckpt = load_checkpoint(path)
        solver = cls(model, data, **_saved_options(ckpt.config, overrides))
        solver.resume(ckpt)
        return solver

    def resume(self, path: str | os.PathLike | Checkpoint) -> Checkpoint:
        """Restore model, optimizer and :class:`TrainState` from a checkpoint (path or loaded).

        The trajectory settings (``_TRAJECTORY``) must equal the checkpoint's; the others are
        this solver's. Then :meth:`train` continues exactly as the uninterrupted run would.
        Returns the :class:`~normlab.checkpoint.Checkpoint`.

        Raises
        ------
        ValueError
            If anything does not fit this solver and model (sizes, settings, names, shapes,
            dtypes, optimizer state, RNG states); checked before anything is modified.
        """
        ckpt = path if isinstance(path, Checkpoint) else load_checkpoint(path)
        if "optimizer" not in ckpt.state:
            raise ValueError(
                f"expected a Solver checkpoint with state ['optimizer'], got {sorted(ckpt.state)}"
            )
        state = TrainState.from_dict({k: v for k, v in ckpt.state.items() if k != "optimizer"})
        self._check_settings(ckpt)
        check_restore(ckpt, self.model)  # params, buffers: names, shapes, dtypes; rng
        state.check_fits(len(self.X_train), self.iterations_per_epoch, self.rng, self.model)
        self.optimizer.load_state_dict(ckpt.state["optimizer"])  # validates, then applies
        restore_model(ckpt, self.model, validate=False)  # validated above
        self._apply(state)
        return ckpt

    def _check_settings(self, ckpt: Checkpoint) -> None:
        """Raise ValueError unless the checkpoint's trajectory settings are this solver's."""
        mine = self.config()
        differ = [k for k in _TRAJECTORY if ckpt.config.get(k) != mine[k]]
        if differ:
            raise ValueError(
                "expected the checkpoint's settings "
                + ", ".join(f"{k}={ckpt.config.get(k)!r}" for k in differ)
                + ", got "
                + ", ".join(f"{k}={mine[k]!r}" for k in differ)
                + "; pass the checkpoint's values or use Solver.from_checkpoint"
            )


def _saved_options(config: dict, overrides: dict) -> dict:
    """The Solver keyword arguments a checkpoint's config records, with ``overrides`` applied."""
    saved = {k: v for k, v in config.items() if k in OPTIONS}
    if not isinstance(saved.get("seed"), int):
        saved.pop("seed", None)  # irrelevant: the Generator's state is restored
    if "update_rule" not in overrides and saved.get("update_rule") not in UPDATE_RULES:
        raise ValueError(
            f"the checkpoint used a custom update rule {saved.get('update_rule')!r}; "
            "pass it again as update_rule=..."
        )
    if isinstance(saved.get("augment"), str) and "augment" not in overrides:
        saved["augment"] = Augment.from_repr(saved["augment"])
    return {**saved, **overrides}


def _check_data(data: dict) -> tuple[np.ndarray, ...]:
    """``X_train, y_train, X_val, y_val`` of ``data``, validated."""
    missing = [k for k in _DATA_KEYS if k not in data]
    if missing:
        raise ValueError(f"expected data with keys {list(_DATA_KEYS)}, missing {missing}")
    out = []
    for split in ("train", "val"):
        X, y = np.asarray(data[f"X_{split}"]), np.asarray(data[f"y_{split}"])
        if X.ndim == 0 or y.shape != (len(X),) or len(X) == 0:
            raise ValueError(
                f"expected X_{split} of shape (N, ...) and y_{split} of shape (N,) with N > 0, "
                f"got {X.shape} and {y.shape}"
            )
        out += [X, y]
    return tuple(out)


def _seed_json(seed: Any) -> int | str | None:
    """What a config records of ``seed``: an int, None, or "Generator"."""
    if isinstance(seed, np.random.Generator):
        return "Generator"
    return None if seed is None else int(seed)


def _copies(arrays: dict) -> dict[str, np.ndarray]:
    """Copies of a dict of arrays."""
    return {k: np.array(v, copy=True) for k, v in arrays.items()}
