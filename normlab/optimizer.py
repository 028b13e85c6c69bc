"""One optimizer object per training run: a rule, its hyperparameters and state, one step.

:class:`Optimizer` holds the CS231n per-parameter configs (``optim_configs``: hyperparameters and
state arrays of every parameter) and updates the model's parameters **in place**: the model's
arrays are never rebound. A built-in rule runs either as its readable definition in
:mod:`normlab.optim`, parameter by parameter, or fused (:mod:`normlab.kernels.optim`): one
compiled pass over each contiguous run of parameters (a normlab model keeps all its parameters
in one buffer, so that is one pass per step), bit-identical to the rule (tested). A callable
rule runs parameter by parameter.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from normlab.kernels import get_backend
from normlab.kernels.optim import KERNELS
from normlab.optim import DEFAULTS, STATE_KEYS, UPDATE_RULES, get_update_rule

__all__ = ["Optimizer"]


class Optimizer:
    """Apply an update rule to a model's parameters in place; own the rule's state.

    Parameters
    ----------
    params : dict of str to ndarray
        The model's trainable parameters, in the order they are laid out. Updated in place by
        :meth:`step`, never rebound.
    rule : str or callable, default "sgd"
        A name in ``normlab.optim.UPDATE_RULES`` (a built-in passed as a function counts as
        its name), or ``rule(w, dw, config) -> (next_w, config)``.
    config : dict, optional
        Hyperparameters (e.g. ``{"learning_rate": 1e-3}``); every parameter gets its own copy.
        For a built-in rule the missing ones take the rule's defaults and unknown keys are
        refused.
    fused : bool or None, default None
        Run a built-in rule as its fused kernel. None: when the rule is built in, all
        parameters are C-contiguous arrays of one floating dtype and ``NORMLAB_BACKEND`` is not
        ``"numpy"``.

    Attributes
    ----------
    rule_name : str
        The built-in name, or the callable's ``__qualname__``.
    fused : bool
    optim_configs : dict of str to dict
        Per parameter, the rule's config: hyperparameters (and Adam's ``t``) and state arrays
        shaped like the parameter. In fused mode the state arrays are views of one buffer
        per state key; replace their contents, not the arrays (use :meth:`load_state_dict`).

    Raises
    ------
    ValueError
        For an empty ``params``, an unknown rule name, an update_rule that is neither a name
        nor a callable, unknown hyperparameters of a built-in rule, or ``fused=True`` with a
        callable rule or parameters the kernel cannot update in place.

    Notes
    -----
    The fused kernels flush state below the dtype's smallest normal number to zero (see
    :mod:`normlab.kernels.optim`); otherwise both modes give the same bits.

    Examples
    --------
    >>> params = {"W": np.ones((2, 3), np.float32), "b": np.zeros(3, np.float32)}
    >>> opt = Optimizer(params, "sgd", {"learning_rate": 0.5})
    >>> opt.step(params, {"W": np.ones((2, 3), np.float32), "b": np.ones(3, np.float32)})
    >>> params["W"][0, 0], params["b"][0]
    (np.float32(0.5), np.float32(-0.5))
    """

    def __init__(
        self,
        params: Mapping[str, np.ndarray],
        rule: str | Callable = "sgd",
        config: Mapping | None = None,
        *,
        fused: bool | None = None,
    ) -> None:
        if not params:
            raise ValueError("expected at least one parameter, got an empty params dict")
        self.rule_name, self.rule = _resolve(rule)
        self._builtin = self.rule is UPDATE_RULES.get(self.rule_name)
        config = dict(config or {})
        if self._builtin:
            bad = sorted(set(config) - set(DEFAULTS[self.rule_name]))
            if bad:
                raise ValueError(
                    f"unknown optim_config keys {bad} for {self.rule_name!r}; known are "
                    f"{sorted(DEFAULTS[self.rule_name])}"
                )
            config = {**DEFAULTS[self.rule_name], **config}
        why_not = _why_not_fused(params) if self.rule_name in KERNELS else "a rule without a kernel"
        if fused is None:
            fused = why_not is None and get_backend() == "numba"
        elif fused and why_not is not None:
            raise ValueError(
                f"fused=True needs a built-in update rule with a kernel and C-contiguous "
                f"parameters of one floating dtype; got {why_not}; pass fused=False"
            )
        self.fused = bool(fused)
        self.names = list(params)
        # (shape, dtype) of every parameter: what its state arrays must be
        self._layout = _layout(params)
        self.optim_configs = {k: dict(config) for k in self.names}
        self._arrays: list[np.ndarray] = []  # the parameter arrays the chunks were built on
        if self.fused:
            total = sum(math.prod(shape) for shape, _ in self._layout.values())
            dtype = self._layout[self.names[0]][1]
            self._grad = np.empty(total, dtype)  # (P,) all gradients, in names order
            self._state = {key: np.zeros(total, dtype) for key in STATE_KEYS[self.rule_name]}
            lo = 0
            for k, (shape, _) in self._layout.items():
                hi = lo + math.prod(shape)
                for key, flat in self._state.items():  # per-parameter views of the state
                    self.optim_configs[k][key] = flat[lo:hi].reshape(shape)
                lo = hi
            self._chunk(params)

    # -- stepping ------------------------------------------------------------------------------

    def step(self, params: dict[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> None:
        """Update every parameter in place with its gradient.

        Parameters
        ----------
        params : dict of str to ndarray
            The model's parameters (the same names as at construction).
        grads : dict of str to ndarray
            Gradient of the loss for every parameter, shaped like it.
        """
        if not self.fused:
            for k in self.names:
                w = params[k]
                next_w, self.optim_configs[k] = self.rule(w, grads[k], self.optim_configs[k])
                if np.shape(next_w) != w.shape:
                    raise ValueError(
                        f"expected update rule {self.rule_name!r} to return next_w of shape "
                        f"{w.shape} for {k}, got {np.shape(next_w)}"
                    )
                np.copyto(w, next_w)
            return
        if not all(map(operator.is_, map(params.__getitem__, self.names), self._arrays)):
            self._chunk(params)  # someone rebound a parameter: find the runs again
        # one copy of all gradients into the flat buffer (flattening each in C order)
        np.concatenate([grads[k] for k in self.names], axis=None, out=self._grad)
        hyper, kernel = self.optim_configs[self.names[0]], KERNELS[self.rule_name]
        if "t" in hyper:  # a step count, incremented before the update (Adam's bias correction)
            t = int(hyper["t"]) + 1
            for c in self.optim_configs.values():
                c["t"] = t
        for w, g, state in self._chunks:
            kernel(w, g, state, hyper)

    def _chunk(self, params: Mapping[str, np.ndarray]) -> None:
        """Split the parameters into runs laid end to end in memory, one kernel call each.

        A normlab model keeps all its parameters in one buffer: one run. ``self._chunks`` holds
        each run's 1-D view and its slices of the gradient and state buffers.
        """
        why_not = _why_not_fused(params)
        layout = _layout(params)
        if why_not is not None or layout != self._layout:
            raise ValueError(
                f"expected the parameters the optimizer was built for, C-contiguous, of shapes "
                f"and dtypes {self._layout}, got {layout}"
                + (f" ({why_not})" if why_not else "")
                + "; copy new values into the arrays (params[k][...] = x) instead of rebinding"
            )
        self._arrays = [params[k] for k in self.names]
        runs: list[list] = []  # [first array, lo, hi] in the flat layout
        lo = 0
        for i, a in enumerate(self._arrays):
            hi = lo + a.size
            if runs and _adjacent(self._arrays[i - 1], a):
                runs[-1][2] = hi
            else:
                runs.append([a, lo, hi])
            lo = hi
        keys = STATE_KEYS[self.rule_name]
        self._chunks = [
            (_span(first, hi - lo), self._grad[lo:hi], tuple(self._state[k][lo:hi] for k in keys))
            for first, lo, hi in runs
        ]

    def decay_learning_rate(self, factor: float) -> None:
        """Multiply every ``learning_rate`` by ``factor`` (the Solver's ``lr_decay``)."""
        for c in self.optim_configs.values():
            if "learning_rate" in c:
                c["learning_rate"] *= factor

    # -- state ---------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything needed to continue the trajectory: copies, JSON scalars and arrays.

        Returns
        -------
        state : dict
            ``rule`` (the name) and ``configs``: per parameter, the rule's config (hyperparameters,
            ``t``, state arrays shaped like the parameter), copied.
        """
        arrays = STATE_KEYS.get(self.rule_name, ())  # a 0-d state comes back as a NumPy scalar
        configs = {
            k: {
                n: (np.array(v) if n in arrays or isinstance(v, np.ndarray) else v)
                for n, v in c.items()
            }
            for k, c in self.optim_configs.items()
        }
        return {"rule": self.rule_name, "configs": configs}

    def load_state_dict(self, state: Any) -> None:
        """Restore a :meth:`state_dict`, after validating all of it (nothing changes on error).

        Parameters
        ----------
        state : dict
            As :meth:`state_dict` returns it, possibly after a round trip through a checkpoint.
            For a built-in rule every state array must have its parameter's shape and dtype
            (absent ones are zeros, as before the rule's first call) and the hyperparameters
            must be the rule's numbers (the same for all parameters in fused mode). A callable
            rule's configs are its own business: only the parameter names are checked.

        Raises
        ------
        ValueError
            Naming what differs, what was expected and what was got.
        """
        rule = state.get("rule") if isinstance(state, Mapping) else None
        configs = state.get("configs") if isinstance(state, Mapping) else None
        if rule != self.rule_name:
            got = rule if isinstance(state, Mapping) else type(state).__name__
            raise ValueError(f"expected optimizer state for {self.rule_name!r}, got {got!r}")
        if not isinstance(configs, Mapping):
            raise ValueError(f"expected optimizer state with a dict of configs, got {configs!r}")
        if not all(isinstance(c, Mapping) for c in configs.values()):
            raise ValueError(f"expected per-parameter optimizer configs (dicts), got {configs!r}")
        if set(configs) != set(self.names):
            raise ValueError(
                f"expected optimizer state for {sorted(self.names)}, got {sorted(configs)}"
            )
        configs = {k: dict(configs[k]) for k in self.names}  # copies, in the parameters' order
        if self._builtin:
            self._check_builtin(configs)
        if not self.fused:
            self.optim_configs = {
                k: {n: (np.array(v) if isinstance(v, np.ndarray) else v) for n, v in c.items()}
                for k, c in configs.items()
            }
            return
        for k, c in configs.items():
            for key, value in c.items():
                if isinstance(value, np.ndarray):
                    np.copyto(self.optim_configs[k][key], value)
                else:
                    self.optim_configs[k][key] = value

    def _check_builtin(self, configs: dict[str, dict]) -> None:
        """Validate a built-in rule's configs, in place: absent state arrays become zeros."""
        rule, keys, known = (
            self.rule_name,
            STATE_KEYS[self.rule_name],
            set(DEFAULTS[self.rule_name]),
        )
        for name, c in configs.items():
            shape, dtype = self._layout[name]
            for key in keys:
                a = c.get(key)
                if a is None:
                    c[key] = np.zeros(shape, dtype)
                elif not isinstance(a, np.ndarray) or a.shape != shape or a.dtype != dtype:
                    got = (a.shape, a.dtype.name) if isinstance(a, np.ndarray) else a
                    raise ValueError(
                        f"expected optimizer state {key} of {name} with shape {shape} and "
                        f"dtype {dtype.name} (the parameter's), got {got}"
                    )
            bad = {
                k: v
                for k, v in c.items()
                if k not in keys and (k not in known or not _is_hyper(k, v))
            }
            if bad:
                raise ValueError(
                    f"expected {rule} hyperparameters {sorted(known)} (numbers) for {name}, "
                    f"got {bad}"
                )
        scalars = [{k: v for k, v in c.items() if k in known} for c in configs.values()]
        if self.fused and any(sc != scalars[0] for sc in scalars):
            raise ValueError(
                f"expected one set of hyperparameters for all parameters, got {scalars}; "
                "pass fused=False to keep a set per parameter"
            )


def _is_hyper(key: str, value: Any) -> bool:
    """Whether ``value`` can be hyperparameter ``key``: a real number (the step count ``t``: an
    integer >= 0), not a bool."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        return False
    return key != "t" or (isinstance(value, numbers.Integral) and value >= 0)


def _resolve(rule: Any) -> tuple[str, Callable]:
    """``(name, function)`` of an update rule given by name or as a callable.

    A callable is a built-in only if it is one of ``UPDATE_RULES``' functions; any other is
    named by its ``__qualname__`` (``module.qualname`` when that is a built-in's name, so that a
    checkpoint never mistakes a student's own ``adam`` for the built-in).
    """
    builtin = {fn: name for name, fn in UPDATE_RULES.items()}
    if isinstance(rule, str):
        return rule, get_update_rule(rule)
    if callable(rule):
        if rule in builtin:
            return builtin[rule], rule
        name = getattr(rule, "__qualname__", repr(rule))
        if name in UPDATE_RULES:
            name = f"{getattr(rule, '__module__', '?')}.{name}"
        return name, rule
    raise ValueError(
        f"expected update_rule to be one of {sorted(UPDATE_RULES)} or a callable, got {rule!r}"
    )


def _why_not_fused(params: Mapping[str, Any]) -> str | None:
    """Why a kernel cannot update ``params`` in place (None: it can)."""
    arrays = list(params.values())
    if not all(isinstance(a, np.ndarray) for a in arrays):
        return "parameters that are not ndarrays"
    dtypes = sorted({a.dtype.name for a in arrays})
    if len(dtypes) != 1 or not np.issubdtype(arrays[0].dtype, np.floating):
        return f"dtypes {dtypes}"
    if not all(a.flags.c_contiguous and a.flags.writeable for a in arrays):
        return "a non-contiguous or read-only parameter"
    return None


def _layout(params: Mapping[str, Any]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``(shape, dtype)`` of every parameter, in ``params`` order."""
    return {k: (np.shape(p), np.asarray(p).dtype) for k, p in params.items()}


def _address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def _adjacent(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether ``b`` starts where ``a`` ends, inside one C-contiguous buffer of their dtype."""
    base = a.base
    return (
        isinstance(base, np.ndarray)
        and b.base is base
        and base.dtype == a.dtype
        and base.flags.c_contiguous
        and _address(b) == _address(a) + a.nbytes
    )


def _span(first: np.ndarray, size: int) -> np.ndarray:
    """A 1-D view of ``size`` elements from ``first``'s first one (across its base's memory)."""
    if size == first.size:
        return first.reshape(-1)
    base = first.base.reshape(-1)
    offset = (_address(first) - _address(base)) // first.itemsize
    return base[offset : offset + size]
