"""The Solver: minibatches, updates, histories, checkpoints and progress for one model.

It follows the CS231n assignment's ``Solver`` (same keyword arguments, ``train()``,
``check_accuracy``, histories, best parameters restored at the end) with these choices:

- batches come from a fresh permutation of the training set per epoch, drawn from the solver's
  own ``np.random.Generator`` (``seed``); the ragged last batch is dropped, so every batch has
  ``batch_size`` rows (batch-norm statistics of a 3-row batch would be noise) and an epoch is
  ``max(N // batch_size, 1)`` iterations;
- accuracies are measured before training (epoch 0) and after every epoch, so
  ``val_acc_history[e]`` is the accuracy after ``e`` epochs (the assignment measures after the
  first iteration instead);
- built-in update rules run fused over one flat parameter buffer
  (:class:`~normlab.optim.FlatOptimizer`), with the same arithmetic as the per-parameter rules;
- the checkpoint is one atomic ``.npz`` (:mod:`normlab.checkpoint`), and resuming reproduces the
  uninterrupted run bit for bit.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from normlab import checkpoint as _ckpt
from normlab._validate import check_int
from normlab.augment import Augment
from normlab.optim import (
    DEFAULTS,
    STATE_KEYS,
    UPDATE_RULES,
    FlatOptimizer,
    get_update_rule,
    split_flat_state,
)

__all__ = ["NonFiniteLossError", "Solver"]

_DATA_KEYS = ("X_train", "y_train", "X_val", "y_val")
# Keyword arguments of Solver and their defaults.
_OPTIONS: dict[str, Any] = {
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
    "callbacks": None,  # sequence of fn(solver, info), called after every iteration
    "fused": None,  # None: fused for built-in rules with one float dtype; True/False to force
    "progress": True,  # tqdm bar when verbose
    "resume_from": None,  # checkpoint path to resume from (see Solver.resume)
    "augment": None,  # fn(X_batch, rng) -> X_batch on training batches, e.g. data.Augment
}
# What Solver.state_dict saves (and resume restores); best_buffers is optional (older files).
_STATE_KEYS = (
    "epoch", "iteration", "num_train", "batch_size", "loss_history", "train_acc_history",
    "val_acc_history", "best_val_acc", "best_params", "rng_state", "batch_order",
    "batch_cursor", "optimizer",
)  # fmt: skip
# Settings that change the trajectory: a resumed run must use the checkpoint's.
_TRAJECTORY = (
    "update_rule", "lr_decay", "batch_size", "num_train_samples", "num_val_samples", "augment",
)  # fmt: skip


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names the iteration and epoch."""


class Solver:
    """Train a classification model with minibatch gradient descent.

    Parameters
    ----------
    model : object
        ``model.params`` (dict of str to ndarray, trainable), optionally ``model.buffers``
        (dict of str to ndarray, running statistics), ``model.loss(X, y=None)`` returning scores
        of shape (N, C) when ``y`` is None and ``(loss, grads)`` otherwise, optionally
        ``model.rng`` (np.random.Generator) and ``model.get_config()``. The model must read
        ``self.params[name]`` on every call: the fused path rebinds them to views.
    data : dict
        ``X_train`` (N, ...), ``y_train`` (N,), ``X_val`` (M, ...), ``y_val`` (M,), ndarrays.
    update_rule : str or callable, default "sgd"
        A name in ``normlab.optim.UPDATE_RULES`` or ``rule(w, dw, config) -> (next_w, config)``.
    optim_config : dict, optional
        Hyperparameters of the rule (defaults: the rule's); each parameter gets its own copy.
    lr_decay : float > 0, default 1.0
        Multiplies every ``learning_rate`` at the end of each epoch.
    batch_size : int, default 100
    num_epochs : int, default 10
        Total number of epochs, those of a resumed checkpoint included.
    num_train_samples : int >= 1 or None, default 1000
        Rows of the training set subsampled to measure training accuracy (None: all).
    num_val_samples : int >= 1 or None, default None
        Rows of the validation set subsampled to measure validation accuracy (None: all).
    checkpoint_name : str, optional
        Write a checkpoint at every epoch end to ``checkpoint_name + ".npz"`` (used as is if it
        already ends in ``.npz``), overwritten atomically; ``"{epoch}"`` in the name gives one
        file per epoch.
    print_every : int, default 10
        Report the loss every ``print_every`` iterations when ``verbose``.
    verbose : bool, default True
    seed : int, None or np.random.Generator, default 0
        Source of the batch permutations, the accuracy subsamples and the augmentation draws.
    callbacks : sequence of callables or None, default None
        ``fn(solver, info)`` after every iteration (None: no callbacks), with ``info`` a dict:
        ``iteration`` (0-based, ``loss_history[iteration] == loss``), ``epoch`` (0-based),
        ``batch`` (0-based within the epoch), ``loss``, ``batch_indices`` (B,), ``X_batch`` (as
        augmented), ``y_batch``, ``grads``. Callbacks must not draw from ``solver.rng`` or
        resume will not be exact.
    fused : bool or None, default None
        Update all parameters at once through one flat buffer. None: when ``update_rule`` is a
        built-in name and all parameters share one floating dtype.
    progress : bool, default True
        Show a tqdm bar when ``verbose``.
    resume_from : str or PathLike, optional
        Call :meth:`resume` with this checkpoint at the end of construction.
    augment : callable or None, default None
        ``fn(X_batch, rng) -> X_batch`` applied to every training batch (not to accuracy
        checks), e.g. ``normlab.data.Augment(flip=True, shift=2)``; it must return an array of
        the same shape and dtype and draw only from the ``rng`` it is given (the solver's, so
        that resume is exact). Checkpoints record its ``repr``, or ``module.qualname`` when
        that is Python's default (it holds an address); only an ``Augment`` is rebuilt from it.

    Attributes
    ----------
    loss_history : list of float
        Loss of every iteration.
    train_acc_history, val_acc_history : list of float
        Accuracies before training and after every epoch.
    best_val_acc : float
        Best entry of ``val_acc_history`` (-inf before the first measurement).
    best_params : dict of str to ndarray
        Copies of the parameters that achieved ``best_val_acc``; copied back into the model at
        the end of :meth:`train`.
    best_buffers : dict of str to ndarray
        Copies of the model's buffers (running statistics) at the same moment, restored with
        ``best_params``: batch-norm parameters are only right with the statistics they were
        validated with.
    epoch, iteration : int
        Epochs and iterations completed.
    rng : np.random.Generator
    optimizer : FlatOptimizer or None
        The fused optimizer, or None on the per-parameter path.

    Raises
    ------
    ValueError
        Unknown keyword arguments (the message lists the known ones), missing data keys,
        mismatched lengths, invalid values (the message names the argument, what was expected
        and what was got), or ``fused=True`` with a custom rule.

    Examples
    --------
    >>> solver = Solver(model, data, update_rule="adam", optim_config={"learning_rate": 1e-3},
    ...                 num_epochs=5, batch_size=32, seed=0, verbose=False)  # doctest: +SKIP
    >>> solver.train()  # doctest: +SKIP
    """

    def __init__(self, model: Any, data: dict, **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - set(_OPTIONS))
        if unknown:
            raise ValueError(
                f"Unrecognized arguments {unknown}; known arguments are {sorted(_OPTIONS)}"
            )
        opts = {**_OPTIONS, **kwargs}
        self.model = model
        self._set_data(data)
        if not isinstance(opts["optim_config"], dict | None):
            raise ValueError(f"expected optim_config a dict or None, got {opts['optim_config']!r}")
        self.optim_config = dict(opts["optim_config"] or {})
        self.lr_decay = _check_lr_decay(opts["lr_decay"])
        self.batch_size = check_int("batch_size", opts["batch_size"])
        self.num_epochs = check_int("num_epochs", opts["num_epochs"], minimum=0)
        self.num_iterations = check_int(
            "num_iterations", opts["num_iterations"], allow_none=True
        )
        self.num_train_samples = check_int(
            "num_train_samples", opts["num_train_samples"], allow_none=True
        )
        self.num_val_samples = check_int(
            "num_val_samples", opts["num_val_samples"], allow_none=True
        )
        self.checkpoint_name = opts["checkpoint_name"]
        self.print_every = check_int("print_every", opts["print_every"])
        self.verbose, self.progress = bool(opts["verbose"]), bool(opts["progress"])
        self.callbacks = _check_callbacks(opts["callbacks"])
        if opts["augment"] is not None and not callable(opts["augment"]):
            raise ValueError(f"expected augment a callable or None, got {opts['augment']!r}")
        self.augment = opts["augment"]
        self._seed = opts["seed"]
        self.rng = np.random.default_rng(opts["seed"])

        rule = opts["update_rule"]
        builtin = {fn: name for name, fn in UPDATE_RULES.items()}
        rule = builtin.get(rule, rule) if callable(rule) else rule  # optim.adam -> "adam"
        if isinstance(rule, str):
            self.update_rule, self.rule_name = get_update_rule(rule), rule
            known = set(DEFAULTS[rule])  # state (m, v, velocity...) comes from checkpoints
            bad = sorted(set(self.optim_config) - known)
            if bad:
                raise ValueError(
                    f"unknown optim_config keys {bad} for {rule!r}; known are {sorted(known)}"
                )
        elif callable(rule):
            self.update_rule = rule
            self.rule_name = getattr(rule, "__qualname__", repr(rule))
        else:
            raise ValueError(
                f"expected update_rule to be one of {sorted(UPDATE_RULES)} or a callable, "
                f"got {rule!r}"
            )
        fused = opts["fused"]
        if fused and not isinstance(rule, str):
            raise ValueError("fused=True needs a built-in update rule name; got a callable")
        if fused is None:
            dtypes = {np.asarray(p).dtype for p in model.params.values()}
            fused = (
                isinstance(rule, str)
                and len(dtypes) == 1
                and np.issubdtype(next(iter(dtypes)), np.floating)
            )
        self.fused = bool(fused)

        self.optimizer: FlatOptimizer | None = None
        self._optim_configs: dict[str, dict] = {}
        if self.fused:
            self.optimizer = FlatOptimizer(model.params, self.rule_name, self.optim_config)
        else:
            self._optim_configs = {p: dict(self.optim_config) for p in model.params}
        self.epoch = 0
        self.iteration = 0
        self.loss_history: list[float] = []
        self.train_acc_history: list[float] = []
        self.val_acc_history: list[float] = []
        self.best_val_acc = -math.inf
        self.best_params: dict[str, np.ndarray] = {}
        self.best_buffers: dict[str, np.ndarray] = {}
        self._perm: np.ndarray | None = None  # (N,) batch order of the current epoch
        self._cursor = 0  # batches of the current epoch already taken
        self._grads_checked = False
        self._bar = None  # the tqdm bar while train() shows one
        self._saved_buffers = np.empty(0)  # (B,) all buffers before the step (see _step)
        if opts["resume_from"] is not None:
            self.resume(opts["resume_from"])

    # -- setup ---------------------------------------------------------------------------------

    def _set_data(self, data: dict) -> None:
        """Validate and store the four arrays of ``data``."""
        missing = [k for k in _DATA_KEYS if k not in data]
        if missing:
            raise ValueError(f"expected data with keys {list(_DATA_KEYS)}, missing {missing}")
        for split in ("train", "val"):
            X, y = np.asarray(data[f"X_{split}"]), np.asarray(data[f"y_{split}"])
            if X.ndim == 0 or y.shape != (len(X),) or len(X) == 0:
                raise ValueError(
                    f"expected X_{split} of shape (N, ...) and y_{split} of shape (N,) with N > 0, "
                    f"got {X.shape} and {y.shape}"
                )
            setattr(self, f"X_{split}", X)
            setattr(self, f"y_{split}", y)

    @property
    def iterations_per_epoch(self) -> int:
        """Full batches per epoch: ``max(N // batch_size, 1)`` (the ragged rest is dropped)."""
        return max(len(self.X_train) // self.batch_size, 1)

    @property
    def optim_configs(self) -> dict[str, dict]:
        """Per-parameter optimizer configs (fused path: copies derived from the flat state)."""
        if self.optimizer is not None:
            return self.optimizer.param_configs()
        return self._optim_configs

    # -- one iteration -------------------------------------------------------------------------

    def _next_batch(self) -> np.ndarray:
        """Indices (B,) of the next batch, drawing a new permutation at each epoch start."""
        n = len(self.X_train)
        if self._perm is None or self._cursor >= self.iterations_per_epoch:
            self._perm = self.rng.permutation(n)  # (N,)
            self._cursor = 0
        bs = min(self.batch_size, n)
        j = self._cursor
        self._cursor += 1
        return self._perm[j * bs : (j + 1) * bs]  # (B,)

    def _step(self) -> float:
        """Take one minibatch step: loss, gradients, update, history, callbacks.

        Returns
        -------
        loss : float
            The minibatch loss before the update.

        Raises
        ------
        NonFiniteLossError
            If the loss is NaN or infinite. Then, as after any exception from ``model.loss``,
            the parameters are unchanged and the buffers (running statistics, which the forward
            pass had already updated in place) are restored to their values before the step.
        """
        it, ipe = self.iteration, self.iterations_per_epoch
        idx = self._next_batch()  # (B,)
        batch = self._cursor - 1
        X_batch, y_batch = self.X_train[idx], self.y_train[idx]  # (B, ...), (B,)
        if self.augment is not None:
            X_batch = self._augmented(X_batch)
        buffers = getattr(self.model, "buffers", None)
        saved = self._save_buffers(buffers) if buffers else None
        try:
            loss, grads = self.model.loss(X_batch, y_batch)
            loss = float(loss)
            if not math.isfinite(loss):
                raise NonFiniteLossError(
                    f"non-finite loss {loss} at iteration {it + 1} of {self.num_epochs * ipe} "
                    f"(epoch {it // ipe + 1} of {self.num_epochs}, batch {batch + 1} of {ipe}); "
                    "try a smaller learning_rate or check the data for NaN"
                )
            if not self._grads_checked:
                if set(grads) != set(self.model.params):
                    raise ValueError(
                        f"expected grads for {sorted(self.model.params)}, got {sorted(grads)}"
                    )
                self._grads_checked = True
        except BaseException:
            if saved is not None:  # undo the forward pass's update of the running statistics
                self._restore_buffers(buffers, *saved)
            raise
        if self.optimizer is not None:
            self.optimizer.step(grads)
        else:
            for p, w in list(self.model.params.items()):
                next_w, self._optim_configs[p] = self.update_rule(
                    w, grads[p], self._optim_configs[p]
                )
                self.model.params[p] = next_w
        self.loss_history.append(loss)
        self.iteration += 1
        if self.callbacks:
            info = {
                "iteration": it,
                "epoch": it // ipe,
                "batch": batch,
                "loss": loss,
                "batch_indices": idx,
                "X_batch": X_batch,
                "y_batch": y_batch,
                "grads": grads,
            }
            for fn in self.callbacks:
                fn(self, info)
        return loss

    def _augmented(self, X_batch: np.ndarray) -> np.ndarray:
        """``self.augment(X_batch, self.rng)``, checked to keep the batch's shape and dtype."""
        out = self.augment(X_batch, self.rng)
        if not isinstance(out, np.ndarray) or (out.shape, out.dtype) != (
            X_batch.shape,
            X_batch.dtype,
        ):
            got = (out.shape, out.dtype) if isinstance(out, np.ndarray) else type(out).__name__
            raise ValueError(
                f"expected augment to return an array of shape {X_batch.shape} and dtype "
                f"{X_batch.dtype}, got {got}"
            )
        return out

    def _save_buffers(self, buffers: dict) -> tuple[list, list]:
        """Copy all buffers into one preallocated array; their names and arrays for restoring."""
        names, arrays = list(buffers), list(buffers.values())
        try:  # one NumPy call for all buffers, ~1 us (a copyto per buffer costs more)
            np.concatenate(arrays, axis=None, out=self._saved_buffers)
        except ValueError:  # the first step, or the buffers changed size: allocate
            self._saved_buffers = np.concatenate(arrays, axis=None)  # (B,)
        return names, arrays

    def _restore_buffers(self, buffers: dict, names: list, arrays: list) -> None:
        """Put back the buffers saved at the start of the step (in place, and rebound)."""
        lo = 0
        for name, a in zip(names, arrays, strict=True):
            hi = lo + a.size
            np.copyto(a, self._saved_buffers[lo:hi].reshape(a.shape))
            buffers[name] = a  # in case the model rebound it instead of updating in place
            lo = hi

    # -- evaluation ----------------------------------------------------------------------------

    def check_accuracy(
        self, X: np.ndarray, y: np.ndarray, num_samples: int | None = None, batch_size: int = 100
    ) -> float:
        """Classification accuracy of the model (test mode: ``model.loss(X)``).

        Parameters
        ----------
        X : ndarray of shape (N, ...)
        y : ndarray of shape (N,)
            Integer labels.
        num_samples : int, optional
            Subsample this many rows without replacement (with ``self.rng``) when N is larger.
        batch_size : int, default 100
            Rows per forward pass.

        Returns
        -------
        acc : float
            Fraction of rows whose arg-max score equals the label.
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

    def _record_accuracy(self) -> tuple[float, float]:
        """Append train/val accuracies; keep a copy of the parameters if val is the best."""
        train_acc = self.check_accuracy(self.X_train, self.y_train, self.num_train_samples)
        val_acc = self.check_accuracy(self.X_val, self.y_val, self.num_val_samples)
        self.train_acc_history.append(train_acc)
        self.val_acc_history.append(val_acc)
        if val_acc > self.best_val_acc:
            self.best_val_acc = val_acc
            self.best_params = {k: np.array(v, copy=True) for k, v in self.model.params.items()}
            buffers = getattr(self.model, "buffers", {})
            self.best_buffers = {k: np.array(v, copy=True) for k, v in buffers.items()}
        return train_acc, val_acc

    # -- training ------------------------------------------------------------------------------

    def train(self) -> None:
        """Train until ``num_epochs`` epochs are complete, then restore the best parameters.

        Measures accuracy before the first step (a fresh run) and after every epoch, decays the
        learning rate and writes the checkpoint at every epoch end. Calling it on a resumed
        solver continues from the checkpoint.
        """
        ipe = self.iterations_per_epoch
        total = self.num_epochs * ipe if self.num_iterations is None else self.num_iterations
        if self.iteration == 0 and not self.val_acc_history:
            train_acc, val_acc = self._record_accuracy()
            self._say(f"(Epoch 0 / {self.num_epochs}) {_accs(train_acc, val_acc)}")
        show_bar = self.verbose and self.progress
        with tqdm(total=total, initial=min(self.iteration, total), disable=not show_bar) as bar:
            self._bar = bar if show_bar else None
            try:
                while self.iteration < total:
                    loss = self._step()
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
            np.copyto(self.model.params[k], v)  # into the existing arrays: flat views stay valid
        buffers = getattr(self.model, "buffers", {})
        for k, v in self.best_buffers.items():
            np.copyto(buffers[k], v)  # in place: the layers' bn_param dicts hold these arrays

    def _end_epoch(self) -> None:
        """Count the epoch, decay learning rates, measure accuracy, write the checkpoint."""
        self.epoch = self.iteration // self.iterations_per_epoch
        configs = (
            [self.optimizer.config] if self.optimizer is not None else self._optim_configs.values()
        )
        for config in configs:
            if "learning_rate" in config:
                config["learning_rate"] *= self.lr_decay
        train_acc, val_acc = self._record_accuracy()
        if self.checkpoint_name is not None:
            self.save_checkpoint()
        self._say(f"(Epoch {self.epoch} / {self.num_epochs}) {_accs(train_acc, val_acc)}")

    def _say(self, msg: str) -> None:
        """Print ``msg`` when verbose, through the progress bar if one is shown."""
        if not self.verbose:
            return
        if self._bar is not None:
            tqdm.write(msg)
        else:
            print(msg)

    # -- checkpoints ---------------------------------------------------------------------------

    def checkpoint_path(self) -> str:
        """Path of the checkpoint for the current epoch (requires ``checkpoint_name``)."""
        if self.checkpoint_name is None:
            raise ValueError("expected checkpoint_name to be set, got None")
        name = os.fspath(self.checkpoint_name)
        name = name.replace("{epoch}", str(self.epoch))
        return name if name.endswith(".npz") else name + ".npz"

    def config(self) -> dict:
        """The solver's settings as a JSON-able dict (saved in checkpoints)."""
        seed = self._seed
        if isinstance(seed, np.random.Generator):
            seed = "Generator"
        elif seed is not None:
            seed = int(seed)
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
            "seed": seed,
            "fused": self.fused,
            "augment": _augment_name(self.augment),
        }

    def state_dict(self) -> dict:
        """Everything needed to continue training exactly (besides the model), arrays included."""
        if self.optimizer is not None:
            optimizer = {"kind": "flat", **self.optimizer.state_dict()}
        else:
            optimizer = {
                "kind": "per_param",
                "rule": self.rule_name,
                "configs": self._optim_configs,
            }
        return {
            "epoch": self.epoch,
            "iteration": self.iteration,
            "num_train": len(self.X_train),
            "batch_size": self.batch_size,
            "loss_history": np.asarray(self.loss_history, dtype=np.float64),
            "train_acc_history": np.asarray(self.train_acc_history, dtype=np.float64),
            "val_acc_history": np.asarray(self.val_acc_history, dtype=np.float64),
            "best_val_acc": self.best_val_acc,
            "best_params": self.best_params,
            "best_buffers": self.best_buffers,
            "rng_state": self.rng.bit_generator.state,
            "batch_order": self._perm,
            "batch_cursor": self._cursor,
            "optimizer": optimizer,
        }

    def save_checkpoint(self, path: str | os.PathLike | None = None) -> str:
        """Write model and training state atomically (default path: :meth:`checkpoint_path`).

        Returns
        -------
        path : str
            Where it was written.
        """
        path = self.checkpoint_path() if path is None else os.fspath(path)
        _ckpt.save_checkpoint(path, self.model, self.state_dict(), self.config())
        return path

    @classmethod
    def from_checkpoint(
        cls, model: Any, data: dict, path: str | os.PathLike, **overrides: Any
    ) -> Solver:
        """Build a solver with a checkpoint's settings and state, ready to continue training.

        Parameters
        ----------
        model : object
            A model with the checkpoint's parameter names and shapes (its values are replaced).
        data : dict
            The same data (``X_train``, ``y_train``, ``X_val``, ``y_val``) as the saved run.
        path : str or PathLike
            A checkpoint written by :meth:`save_checkpoint`.
        **overrides
            Keyword arguments replacing the saved ones, typically ``num_epochs``, ``verbose``,
            ``callbacks``; a custom (callable) ``update_rule`` or ``augment`` must be passed
            again.

        Returns
        -------
        solver : Solver
            Resumed: :meth:`train` continues to ``num_epochs``.

        Examples
        --------
        >>> solver = Solver.from_checkpoint(model, data, "run.npz", num_epochs=20)  # doctest: +SKIP
        >>> solver.train()  # doctest: +SKIP
        """
        ckpt = _ckpt.load_checkpoint(path)
        saved = {k: v for k, v in ckpt.config.items() if k in _OPTIONS}
        if not isinstance(saved.get("seed"), int):
            saved.pop("seed", None)  # irrelevant: the Generator's state is restored
        if "update_rule" not in overrides and saved.get("update_rule") not in UPDATE_RULES:
            raise ValueError(
                f"the checkpoint used a custom update rule {saved.get('update_rule')!r}; "
                "pass it again as update_rule=..."
            )
        if isinstance(saved.get("augment"), str) and "augment" not in overrides:
            saved["augment"] = Augment.from_repr(saved["augment"])
        solver = cls(model, data, **{**saved, **overrides})
        solver.resume(ckpt)
        return solver

    def resume(self, path: str | os.PathLike | _ckpt.Checkpoint) -> _ckpt.Checkpoint:
        """Restore model and training state from a checkpoint, in place.

        Parameters, buffers, ``model.rng``, the optimizer state (including decayed learning
        rates), histories, counters, best parameters and the solver's Generator all come from the
        checkpoint. The settings that shape the trajectory (``update_rule``, ``lr_decay``,
        ``batch_size``, ``num_train_samples``, ``num_val_samples``) must equal the checkpoint's;
        the others (``num_epochs``, callbacks, verbosity, ``checkpoint_name``, ``fused``) are
        this solver's. Then :meth:`train` continues to ``num_epochs``, reproducing the
        uninterrupted run bit for bit. :meth:`from_checkpoint` takes the settings from the file.

        Parameters
        ----------
        path : str, PathLike or Checkpoint
            A checkpoint written by :meth:`save_checkpoint` (or already loaded).

        Returns
        -------
        checkpoint : Checkpoint
            The loaded checkpoint (``model_config``, ``config``... for inspection).

        Raises
        ------
        ValueError
            If anything in the checkpoint does not fit this solver and model: training-set
            size, trajectory settings, parameter and buffer names, shapes and dtypes (a float64
            checkpoint is not cast into a float32 model), the optimizer state's rule, layout and
            dtypes, best parameters, RNG states, batch order. Everything is checked before
            anything is modified, so after a ValueError model and solver are unchanged.
        """
        if isinstance(path, _ckpt.Checkpoint):
            ckpt = path
        else:
            ckpt = _ckpt.load_checkpoint(path)
        configs = self._check_checkpoint(ckpt)  # raises ValueError; nothing below can fail
        s = ckpt.state
        _ckpt.restore_model(ckpt, self.model)
        if self.optimizer is not None:
            self.optimizer.load_param_configs(configs)
        else:
            self._optim_configs = configs
        self.epoch, self.iteration = int(s["epoch"]), int(s["iteration"])
        self.loss_history = s["loss_history"].tolist()
        self.train_acc_history = s["train_acc_history"].tolist()
        self.val_acc_history = s["val_acc_history"].tolist()
        self.best_val_acc = float(s["best_val_acc"])
        self.best_params = {k: np.array(v, copy=True) for k, v in s["best_params"].items()}
        self.best_buffers = {
            k: np.array(v, copy=True) for k, v in s.get("best_buffers", {}).items()
        }
        self.rng.bit_generator.state = s["rng_state"]
        self._perm = s["batch_order"]
        self._cursor = int(s["batch_cursor"])
        return ckpt

    def _check_checkpoint(self, ckpt: _ckpt.Checkpoint) -> dict[str, dict]:
        """Validate everything :meth:`resume` will restore; the per-parameter optimizer configs.

        Raises
        ------
        ValueError
            Naming what differs, expected and got.
        """
        s = ckpt.state
        missing = [k for k in _STATE_KEYS if k not in s]
        if missing:
            raise ValueError(f"expected a Solver checkpoint with state {missing}, got {sorted(s)}")
        if s["num_train"] != len(self.X_train):
            raise ValueError(
                f"expected a checkpoint for N_train={len(self.X_train)}, "
                f"got N_train={s['num_train']}"
            )
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
        _ckpt.check_restore(ckpt, self.model)  # params, buffers: names, shapes, dtypes; rng
        configs = self._check_optimizer_state(s["optimizer"])
        params, buffers = self.model.params, getattr(self.model, "buffers", {})
        for what, got, expected in (
            ("best_params", s["best_params"], params),
            ("best_buffers", s.get("best_buffers", {}), buffers),
        ):
            if not isinstance(got, dict):
                raise ValueError(f"expected {what} a dict of arrays, got {type(got).__name__}")
            if got:  # empty before the first accuracy check
                _ckpt.check_arrays(what, expected, got)
        counters = {k: s[k] for k in ("epoch", "iteration", "batch_cursor")}
        for k, v in counters.items():
            check_int(f"the checkpoint's {k}", v, minimum=0)
        if counters["batch_cursor"] > self.iterations_per_epoch:
            raise ValueError(
                f"expected the checkpoint's batch_cursor <= {self.iterations_per_epoch} "
                f"(batches per epoch), got {counters['batch_cursor']}"
            )
        for k in ("loss_history", "train_acc_history", "val_acc_history"):
            h = s[k]
            if not isinstance(h, np.ndarray) or h.ndim != 1 or h.dtype.kind != "f":
                raise ValueError(f"expected {k} a 1-D float array, got {h!r}")
        if not isinstance(s["best_val_acc"], numbers.Real):
            raise ValueError(f"expected best_val_acc a number, got {s['best_val_acc']!r}")
        order = s["batch_order"]
        n = len(self.X_train)
        if order is not None and not (
            isinstance(order, np.ndarray) and order.shape == (n,) and order.dtype.kind in "iu"
        ):
            got = (order.dtype, order.shape) if isinstance(order, np.ndarray) else order
            raise ValueError(f"expected batch_order None or integers of shape ({n},), got {got}")
        _ckpt.check_rng_state("the solver's rng state", self.rng, s["rng_state"])
        return configs

    def _check_optimizer_state(self, opt: Any) -> dict[str, dict]:
        """A checkpoint's optimizer state as validated per-parameter configs (fresh copies).

        Flat (fused) and per-parameter states are both accepted, whatever this solver's path.
        For a built-in rule every state array (``m``, ``velocity``...) must have its parameter's
        shape and dtype (absent ones are zeros, as before the rule's first call), hyperparameters
        must be the rule's, and on the fused path the same for all parameters. A custom rule's
        configs are its own business: only their names are checked.
        """
        params = self.model.params
        kind = opt.get("kind") if isinstance(opt, dict) else None
        if kind not in ("flat", "per_param") or opt.get("rule") != self.rule_name:
            got = (kind, opt.get("rule")) if isinstance(opt, dict) else opt
            raise ValueError(
                f"expected optimizer state ('flat' or 'per_param', {self.rule_name!r}), got {got}"
            )
        rule = self.rule_name if self.rule_name in STATE_KEYS else None
        if kind == "flat":
            names, shapes = opt.get("names", []), [tuple(sh) for sh in opt.get("shapes", [])]
            layout = dict(zip(names, shapes, strict=False))
            expected = {k: np.shape(v) for k, v in params.items()}
            if layout != expected or len(names) != len(shapes) or len(names) != len(layout):
                raise ValueError(
                    f"expected optimizer state for parameters {expected}, got "
                    f"{list(zip(names, shapes, strict=False))}"
                )
            size = sum(math.prod(sh) for sh in shapes)
            if not isinstance(opt.get("config"), dict):
                raise ValueError(
                    f"expected a flat optimizer config dict, got {opt.get('config')!r}"
                )
            for key in STATE_KEYS[self.rule_name]:
                a = opt["config"].get(key)
                if not isinstance(a, np.ndarray) or a.shape != (size,):
                    got = a.shape if isinstance(a, np.ndarray) else a
                    raise ValueError(
                        f"expected optimizer state {key} of shape ({size},), got {got}"
                    )
            configs = split_flat_state(opt)
        else:
            configs = opt.get("configs")
            if not isinstance(configs, dict) or not all(
                isinstance(c, dict) for c in configs.values()
            ):
                raise ValueError(
                    f"expected per-parameter optimizer configs (dicts), got {configs!r}"
                )
        if set(configs) != set(params):
            raise ValueError(
                f"expected optimizer state for {sorted(params)}, got {sorted(configs)}"
            )
        configs = {k: dict(configs[k]) for k in params}  # copies, in the model's order
        if rule is None:
            return configs
        known = set(DEFAULTS[rule])
        for name, c in configs.items():
            w = params[name]
            for key in STATE_KEYS[rule]:
                a = c.get(key)
                if a is None:
                    c[key] = np.zeros_like(w)
                elif not isinstance(a, np.ndarray) or a.shape != w.shape or a.dtype != w.dtype:
                    got = (a.shape, a.dtype.name) if isinstance(a, np.ndarray) else a
                    raise ValueError(
                        f"expected optimizer state {key} of {name} with shape {w.shape} and "
                        f"dtype {w.dtype.name} (the parameter's), got {got}"
                    )
            scalars = {k: v for k, v in c.items() if k not in STATE_KEYS[rule]}
            bad = {
                k: v
                for k, v in scalars.items()
                if k not in known or not isinstance(v, numbers.Real)
            }
            if bad:
                raise ValueError(
                    f"expected {rule} hyperparameters {sorted(known)} (numbers) for {name}, "
                    f"got {bad}"
                )
        if self.optimizer is not None:
            scalars = [{k: v for k, v in c.items() if k in known} for c in configs.values()]
            if any(sc != scalars[0] for sc in scalars):
                raise ValueError(
                    f"expected one set of hyperparameters for all parameters, got {scalars}"
                )
        return configs


def _augment_name(fn: Any) -> str | None:
    """What checkpoints record of ``augment``: its repr, or ``module.qualname`` when the repr
    is Python's default (``<function f at 0x...>`` differs from one process to the next)."""
    if fn is None:
        return None
    text = repr(fn)
    if re.search(r" at 0x[0-9a-fA-F]+>$", text):
        target = fn if hasattr(fn, "__qualname__") else type(fn)
        return f"{getattr(target, '__module__', '?')}.{target.__qualname__}"
    return text


def _accs(train_acc: float, val_acc: float) -> str:
    """The accuracy part of an epoch report (the assignment's wording)."""
    return f"train acc: {train_acc:f}; val_acc: {val_acc:f}"


def _check_lr_decay(value: Any) -> float:
    """``lr_decay`` as a finite float > 0."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)
    if not (ok and 0 < value < math.inf):
        raise ValueError(f"expected lr_decay to be a finite number > 0, got {value!r}")
    return float(value)


def _check_callbacks(value: Any) -> list:
    """``callbacks`` as a list of callables (None: an empty list)."""
    if value is None:
        return []
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        raise ValueError(
            f"expected callbacks to be a sequence of callables or None, got {value!r}"
            + (f"; pass [{getattr(value, '__name__', 'fn')}]" if callable(value) else "")
        )
    bad = [fn for fn in value if not callable(fn)]
    if bad:
        raise ValueError(f"expected callbacks to be callables, got {bad!r}")
    return list(value)
