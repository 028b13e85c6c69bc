"""``ParamDict``: a model's ``params`` whose item assignment writes into the model's arrays.

A normlab model lays its parameters end to end in one buffer (``Network._finish``) and
everything that changes them -- the optimizer, best-parameter restores, checkpoints -- copies
into those arrays. The CS231n notebooks instead rebind entries,
``model.params['W1'] = np.linspace(-0.7, 0.3, num=D*H).reshape(D, H)``. With a plain dict
that works for ``loss`` (which looks parameters up by name) but leaves the one-buffer layout
behind, and an array of another dtype would mix dtypes inside the model. ``ParamDict`` makes
the assignment copy instead, so the notebook's code and the buffer agree.
"""

from __future__ import annotations

import numpy as np


class ParamDict(dict):
    """A dict of parameter arrays; ``d[k] = v`` for an existing ``k`` copies ``v`` into ``d[k]``.

    Assigning to an existing name copies the values into the array already there (cast to its
    dtype, as ``np.copyto(..., casting='same_kind')``), so the model keeps its arrays, its
    dtype and its one parameter buffer; a new name is inserted as in a dict (what ``copy`` and
    ``pickle`` do when they rebuild one). ``update``, ``|=`` and ``setdefault`` go through the
    same assignment.

    Raises
    ------
    ValueError
        On assignment of an array whose shape differs from the parameter's: the architecture
        fixes it (build a new model for other sizes).

    Examples
    --------
    >>> d = ParamDict(W=np.zeros((2, 2), np.float32))
    >>> W = d["W"]
    >>> d["W"] = np.eye(2)  # float64 in: copied into the float32 array
    >>> d["W"] is W, d["W"].dtype, float(W[1, 1])
    (True, dtype('float32'), 1.0)
    """

    def __setitem__(self, key, value) -> None:
        """Copy ``value`` into the existing array ``self[key]``, or insert a new key."""
        if key not in self:
            super().__setitem__(key, value)
            return
        target = super().__getitem__(key)
        value = np.asarray(value)
        if value.shape != target.shape:
            raise ValueError(
                f"expected params[{key!r}] of shape {target.shape}, got {value.shape}; the "
                "architecture fixes each parameter's shape: build a new model for other sizes"
            )
        np.copyto(target, value, casting="same_kind")

    def update(self, *args, **kwargs) -> None:
        """``dict.update`` through :meth:`__setitem__` (copying into existing arrays)."""
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __ior__(self, other):
        """``d |= other`` through :meth:`__setitem__`."""
        self.update(other)
        return self

    def setdefault(self, key, default=None):
        """``dict.setdefault`` through :meth:`__setitem__`."""
        if key not in self:
            self[key] = default
        return self[key]
