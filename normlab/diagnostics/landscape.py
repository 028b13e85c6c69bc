"""The loss landscape along the gradient, measured during training (Santurkar et al. 2018, §3.2).

:func:`along_gradient` probes any loss-and-gradient function at ``θ − η·g`` for a grid of step
sizes ``η``; :class:`LandscapeProbe` is a Solver callback that does it, every N-th iteration,
from the parameters and the batch gradient of that iteration's step, on the same batch, and
leaves training exactly as it would have been without it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import numpy as np

__all__ = ["LandscapeProbe", "along_gradient"]

_SERIES = ("iterations", "loss", "grad_norm", "losses", "grad_dists", "band", "predictiveness",
           "beta")  # fmt: skip


def along_gradient(
    loss_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray]],
    theta: np.ndarray,
    g: np.ndarray,
    etas,
) -> dict:
    """The loss and the gradient at ``θ − η·g`` for every ``η`` of ``etas``, against ``θ``'s.

    Parameters
    ----------
    loss_and_grad : callable
        ``loss_and_grad(θ') -> (loss, grad)``, ``grad`` of shape (P,): the loss at θ' and its
        gradient, on one fixed batch.
    theta : ndarray of shape (P,)
        The parameters θ, raveled.
    g : ndarray of shape (P,)
        The gradient at θ on the same batch (the step's, not recomputed).
    etas : sequence of K floats > 0
        The step sizes η.

    Returns
    -------
    probe : dict
        ``losses`` (K floats): ``L(θ − η g)``; ``grad_dists`` (K floats): ``‖∇L(θ) −
        ∇L(θ − η g)‖₂``; ``band``: ``max − min`` of ``losses`` (the "loss landscape" variation
        of Santurkar et al., Fig. 4a); ``predictiveness``: ``max`` of ``grad_dists`` (the top of
        their gradient-predictiveness band, Fig. 4b: the smaller, the more predictive the
        gradient); ``beta``: ``max_η ‖∇L(θ) − ∇L(θ − η g)‖₂ / ‖η g‖₂``, the effective
        β-smoothness (Fig. 4c); ``grad_norm``: ``‖g‖₂``. Norms are taken in float64. A
        non-finite loss or gradient at some η makes the quantities it enters ``inf``.

    Notes
    -----
    For ``L(θ) = ½ θᵀAθ`` the gradient change is ``η A g``: ``grad_dists = η ‖A g‖`` and
    ``beta = ‖A g‖ / ‖g‖``, at most the largest eigenvalue of A (reached along its eigenvector):
    the β of a β-smooth function, measured along the gradient only ("effective").
    """
    g64 = np.asarray(g, dtype=np.float64)  # (P,)
    gnorm = float(np.linalg.norm(g64))
    losses, dists, ratios = [], [], []
    for eta in etas:
        loss, grad = loss_and_grad(theta - np.asarray(eta, theta.dtype) * g)
        with np.errstate(all="ignore"):
            dist = float(np.linalg.norm(np.asarray(grad, dtype=np.float64) - g64))
        loss = float(loss)
        losses.append(loss if math.isfinite(loss) else math.inf)
        dists.append(dist if math.isfinite(dist) else math.inf)
        step = eta * gnorm
        ratios.append(dists[-1] / step if step > 0 else math.nan)
    finite_ratios = [r for r in ratios if not math.isnan(r)]
    return {
        "losses": losses,
        "grad_dists": dists,
        "band": max(losses) - min(losses) if math.isfinite(max(losses)) else math.inf,
        "predictiveness": max(dists),
        "beta": max(finite_ratios) if finite_ratios else math.nan,
        "grad_norm": gnorm,
    }


class LandscapeProbe:
    """Santurkar et al.'s loss-landscape measures every N-th training step, as a Solver callback.

    At every iteration ``i`` with ``i % every == 0``, from the parameters θ before that step, the
    step's batch gradient g and its batch, it evaluates (train mode: batch statistics, as the
    step's forward pass) the loss and gradient at ``θ − η·g`` for every ``η`` of ``etas``
    (:func:`along_gradient`), and records the variation band of the loss, the gradient
    predictiveness and the effective β-smoothness.

    Parameters
    ----------
    model : normlab.models.base.Network
        The model being trained (it has ``params``, ``buffers``, ``rng``, ``probe``, ``record``).
    etas : sequence of float
        The step sizes η of the grid (> 0), e.g. the learning rate times (0.25, 0.5, 1, 2, 4).
    every : int, default 10
        Iterations between probes, >= 1.

    Attributes
    ----------
    iterations : list of int
        The probed iterations.
    loss : list of float
        The step's own training loss L(θ) at each probed iteration.
    grad_norm, band, predictiveness, beta : list of float
        Per probed iteration (see :func:`along_gradient`).
    losses, grad_dists : list of list of float
        Per probed iteration, one value per η.

    Raises
    ------
    ValueError
        If ``every`` is not an integer >= 1, ``etas`` is empty or holds a value that is not > 0,
        or ``model`` is not a normlab model.

    Notes
    -----
    Probing never changes training. θ is copied before a probed step (at the callback of the
    step before, or at construction for iteration 0: build the probe right before training);
    the probes' forward passes run with the model's ``rng`` at the state the step drew its
    dropout masks from (the same masks), with ``model.probe`` (a
    :class:`~normlab.diagnostics.Recorder`'s) and ``model.record`` off; afterwards the
    parameters (the step's result), the buffers (running statistics, which train-mode passes
    update), the ``rng`` state, ``probe`` and ``record`` are put back as they were.
    ``tests/test_landscape.py`` checks that a run with the probe is bit-identical to one
    without. Cost: ``len(etas)`` forward-backward passes every ``every`` steps.

    S. Santurkar, D. Tsipras, A. Ilyas, A. Madry, "How Does Batch Normalization Help
    Optimization?", NeurIPS 2018, §3.2 and Figure 4.

    Examples
    --------
    >>> probe = LandscapeProbe(model, etas=[0.025, 0.05, 0.1, 0.2, 0.4], every=10)  # doctest: +SKIP
    >>> Solver(model, data, update_rule="sgd", callbacks=[probe]).train()  # doctest: +SKIP
    >>> probe.to_dict()["beta"][:3]  # doctest: +SKIP
    """

    def __init__(self, model, etas, every: int = 10) -> None:
        if isinstance(every, bool) or not isinstance(every, numbers.Integral) or every < 1:
            raise ValueError(
                f"expected every to be an integer >= 1 (iterations between probes), got {every!r}"
            )
        etas = [float(e) for e in etas]
        if not etas or not all(e > 0 and math.isfinite(e) for e in etas):
            raise ValueError(
                f"expected etas a non-empty list of step sizes > 0, got {etas!r}; pass e.g. the "
                "learning rate times (0.25, 0.5, 1, 2, 4)"
            )
        if not hasattr(model, "params") or not hasattr(model, "probe"):
            raise ValueError(
                f"expected a normlab model (FullyConnectedNet, ConvNet), got a "
                f"{type(model).__name__}; build the model with normlab.models"
            )
        self.model, self.etas, self.every = model, etas, int(every)
        for key in _SERIES:
            setattr(self, key, [])
        self._theta: np.ndarray | None = None  # (P,) θ before the probed step
        self._rng_state = None  # the model rng's state before it
        self._arm()

    def _arm(self) -> None:
        """Copy θ and the model's rng state: the next step is probed."""
        self._theta = _flat(self.model.params.values())  # (P,)
        self._rng_state = self.model.rng.bit_generator.state

    def __call__(self, solver, info: dict) -> None:
        it = info["iteration"]
        if it % self.every == 0 and self._theta is not None:
            self._probe(it, info)
        self._theta = self._rng_state = None
        total = getattr(solver, "total_iterations", None)
        if (it + 1) % self.every == 0 and (total is None or it + 1 < total):
            self._arm()

    def _probe(self, iteration: int, info: dict) -> None:
        """Measure along the step's gradient from θ before it; put the model back."""
        model = self.model
        params, buffers = model.params, model.buffers
        names = list(params)
        shapes = [params[k].shape for k in names]
        splits = np.cumsum([params[k].size for k in names])[:-1]  # (K-1,)
        g = _flat(info["grads"][k] for k in names)  # (P,) copied: the passes below reuse memory
        X, y = info["X_batch"], info["y_batch"]
        after = {k: v.copy() for k, v in params.items()}
        saved = {k: v.copy() for k, v in buffers.items()}
        rng_after = model.rng.bit_generator.state
        probe, record = model.probe, model.record
        model.probe, model.record = None, set()

        def loss_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
            for k, shape, part in zip(names, shapes, np.split(theta, splits), strict=True):
                np.copyto(params[k], part.reshape(shape))
            model.rng.bit_generator.state = self._rng_state  # the step's dropout masks
            try:
                with np.errstate(all="ignore"):
                    loss, grads = model.loss(X, y)
            except FloatingPointError:  # a normalization refusing non-finite statistics
                return math.inf, np.full(len(theta), np.nan)
            return loss, _flat(grads[k] for k in names)

        try:
            out = along_gradient(loss_and_grad, self._theta, g, self.etas)
        finally:
            for k, v in after.items():
                np.copyto(params[k], v)
            for k, v in saved.items():
                np.copyto(buffers[k], v)
            model.rng.bit_generator.state = rng_after
            model.probe, model.record = probe, record
        self.iterations.append(iteration)
        self.loss.append(float(info["loss"]))
        for key in ("grad_norm", "losses", "grad_dists", "band", "predictiveness", "beta"):
            getattr(self, key).append(out[key])

    def to_dict(self) -> dict:
        """Everything recorded, JSON-safe: ``etas``, ``every`` and the lists of the attributes
        (non-finite floats as None)."""
        out = {"etas": list(self.etas), "every": self.every}
        for key in _SERIES:
            out[key] = _finite(getattr(self, key))
        return out


def _flat(arrays) -> np.ndarray:
    """The arrays raveled and laid end to end, copied: (P,)."""
    return np.concatenate([np.ravel(a) for a in arrays])


def _finite(x):
    """``x`` with non-finite floats as None, lists elementwise."""
    if isinstance(x, list):
        return [_finite(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
