"""TrainState: where a training run stands, everything the Solver needs to continue it exactly.

The Solver gives one (:meth:`normlab.solver.Solver.train_state`) and takes one
(:meth:`~normlab.solver.Solver.resume`); :mod:`normlab.checkpoint` saves it with the model and the
optimizer state. :meth:`TrainState.from_dict` checks the types of what a file holds; whether it
fits a given Solver and model (sizes, shapes, dtypes) is the Solver's check.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from normlab._validate import check_int
from normlab.checkpoint import check_arrays, check_rng_state

__all__ = ["TrainState"]

_HISTORIES = ("loss_history", "train_acc_history", "val_acc_history")


@dataclass
class TrainState:
    """Counters, histories, random state and best parameters of a training run.

    Attributes
    ----------
    epoch, iteration : int
        Epochs and iterations completed.
    num_train : int
        Rows of the training set the run was made on.
    loss_history : ndarray of shape (iteration,), float64
    train_acc_history, val_acc_history : ndarray of shape (E,), float64
        Accuracies before training and after every completed epoch.
    best_val_acc : float
        Best entry of ``val_acc_history`` (-inf before the first measurement).
    best_params, best_buffers : dict of str to ndarray
        The model's parameters and buffers when ``best_val_acc`` was measured (empty before).
    rng_state : dict
        The Solver's ``rng.bit_generator.state``.
    batch_order : ndarray of shape (num_train,) of ints, or None
        The permutation of the current epoch (None before the first batch); its shape is the
        Solver's check.
    batch_cursor : int
        Batches of the current epoch already taken.
    """

    epoch: int = 0
    iteration: int = 0
    num_train: int = 0
    loss_history: np.ndarray = field(default_factory=lambda: np.zeros(0))
    train_acc_history: np.ndarray = field(default_factory=lambda: np.zeros(0))
    val_acc_history: np.ndarray = field(default_factory=lambda: np.zeros(0))
    best_val_acc: float = -np.inf
    best_params: dict[str, np.ndarray] = field(default_factory=dict)
    best_buffers: dict[str, np.ndarray] = field(default_factory=dict)
    rng_state: dict = field(default_factory=dict)
    batch_order: np.ndarray | None = None
    batch_cursor: int = 0

    def to_dict(self) -> dict:
        """The fields as a dict of JSON scalars and arrays (what a checkpoint stores)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for k in _HISTORIES:
            out[k] = np.asarray(out[k], dtype=np.float64)  # (len,)
        return out

    @classmethod
    def from_dict(cls, state: Any) -> TrainState:
        """Build a TrainState from :meth:`to_dict`'s dict, checking every field's type.

        Raises
        ------
        ValueError
            For a missing field (the message lists them) or a value of the wrong type.
        """
        names = [f.name for f in dataclasses.fields(cls)]
        got = sorted(state) if isinstance(state, dict) else type(state).__name__
        missing = [k for k in names if not isinstance(state, dict) or k not in state]
        if missing:
            raise ValueError(f"expected a Solver checkpoint with state {missing}, got {got}")
        for k in ("epoch", "iteration", "num_train", "batch_cursor"):
            check_int(f"the checkpoint's {k}", state[k], minimum=0)
        for k in _HISTORIES:
            h = state[k]
            if not isinstance(h, np.ndarray) or h.ndim != 1 or h.dtype.kind != "f":
                raise ValueError(f"expected {k} a 1-D float array, got {h!r}")
        if not isinstance(state["best_val_acc"], numbers.Real):
            raise ValueError(f"expected best_val_acc a number, got {state['best_val_acc']!r}")
        for k in ("best_params", "best_buffers"):
            if not isinstance(state[k], dict):
                raise ValueError(f"expected {k} a dict of arrays, got {type(state[k]).__name__}")
        ints = {k: int(state[k]) for k in ("epoch", "iteration", "num_train", "batch_cursor")}
        best = float(state["best_val_acc"])
        return cls(**{**{k: state[k] for k in names}, **ints, "best_val_acc": best})

    def check_fits(
        self, num_train: int, iterations_per_epoch: int, rng: np.random.Generator, model: Any
    ) -> None:
        """Raise ValueError unless this state can continue a run on ``model``.

        Checks the training-set size, the batch cursor and order, the RNG state's kind and the
        best parameters' and buffers' names, shapes and dtypes against the model's.
        """
        if self.num_train != num_train:
            raise ValueError(
                f"expected a checkpoint for N_train={num_train}, got N_train={self.num_train}"
            )
        for what, got, expected in (
            ("best_params", self.best_params, model.params),
            ("best_buffers", self.best_buffers, getattr(model, "buffers", {})),
        ):
            if got:  # empty before the first accuracy check
                check_arrays(what, expected, got)
        if self.batch_cursor > iterations_per_epoch:
            raise ValueError(
                f"expected the checkpoint's batch_cursor <= {iterations_per_epoch} "
                f"(batches per epoch), got {self.batch_cursor}"
            )
        order = self.batch_order
        if order is not None and not (
            isinstance(order, np.ndarray)
            and order.shape == (num_train,)
            and order.dtype.kind in "iu"
        ):
            got = (order.dtype, order.shape) if isinstance(order, np.ndarray) else order
            raise ValueError(
                f"expected batch_order None or integers of shape ({num_train},), got {got}"
            )
        check_rng_state("the solver's rng state", rng, self.rng_state)
