"""When a training step fails: the error that says where, and the backup that undoes the step.

A step's forward pass updates the running statistics in place before the loss is known; if the
loss is NaN or infinite, or a layer refuses non-finite statistics, the Solver puts the buffers
back (:class:`BufferBackup`) and raises :class:`NonFiniteLossError`, naming the iteration and,
when the model can tell, the first layer whose output was not finite.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["BufferBackup", "NonFiniteLossError"]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite, or a layer refused non-finite statistics.

    The message names the iteration and epoch and, when the model can tell
    (``model.first_nonfinite(X_batch)``), the layer where non-finite values first appeared.

    Attributes
    ----------
    where : str or None
        That layer, in words (e.g. ``'layer 2 (affine output; W2 holds NaN or inf)'``).
    """

    def __init__(self, message: str, where: str | None = None):
        super().__init__(message)
        self.where = where

    def __reduce__(self):
        return type(self), (self.args[0], self.where)

    @classmethod
    def at(cls, solver: Any, what: str, batch: int, X_batch: np.ndarray) -> NonFiniteLossError:
        """The error for ``solver``'s current step (batch ``batch`` of its epoch) that met NaN
        or inf: where in the run, and where in the model (``model.first_nonfinite(X)``)."""
        it, ipe = solver.iteration, solver.iterations_per_epoch
        locate = getattr(solver.model, "first_nonfinite", None)
        where = locate(X_batch) if callable(locate) else None
        first = f"; first non-finite: {where}" if where else ""
        return cls(
            f"{what} at iteration {it + 1} of {solver.total_iterations} "
            f"(epoch {it // ipe + 1} of {solver.num_epochs}, batch {batch + 1} of {ipe}){first}; "
            "try a smaller learning_rate or check the data for NaN",
            where,
        )


class BufferBackup:
    """The model's buffers at the start of a step, in one preallocated array, to undo it."""

    def __init__(self) -> None:
        self.flat = np.empty(0)  # (B,) all buffers
        self.buffers: dict | None = None
        self.names: list[str] = []
        self.arrays: list[np.ndarray] = []

    def save(self, buffers: dict | None) -> None:
        """Copy all ``buffers`` (None or empty: nothing to save)."""
        self.buffers = buffers
        self.names, self.arrays = list(buffers or {}), list((buffers or {}).values())
        if not self.arrays:
            return
        try:  # one NumPy call for all buffers, ~1 us (a copyto per buffer costs more)
            np.concatenate(self.arrays, axis=None, out=self.flat)
        except ValueError:  # the first step, or the buffers changed size: allocate
            self.flat = np.concatenate(self.arrays, axis=None)  # (B,)

    def restore(self) -> None:
        """Put the saved values back, in place (and rebound, in case the model rebound one)."""
        lo = 0
        for name, a in zip(self.names, self.arrays, strict=True):
            np.copyto(a, self.flat[lo : lo + a.size].reshape(a.shape))
            self.buffers[name] = a
            lo += a.size
