"""Random training-time augmentation of image batches: horizontal flips and shifts.

:class:`Augment` is what ``Solver(augment=...)`` takes: a callable ``aug(X, rng) -> X`` applied
to every training batch (never to validation or test data), drawing from the solver's
Generator so that a resumed run draws the same flips and shifts.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from normlab._validate import check_int

__all__ = ["Augment", "augment_batch", "augment_name", "random_flip", "random_shift"]


def _check_images(X: np.ndarray) -> None:
    if not isinstance(X, np.ndarray) or X.ndim != 4:
        got = X.shape if isinstance(X, np.ndarray) else type(X).__name__
        raise ValueError(f"expected images of shape (N, C, H, W), got {got}")


def random_flip(X: np.ndarray, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
    """Mirror each image left-right with probability ``p``.

    Parameters
    ----------
    X : ndarray of shape (N, C, H, W)
    rng : np.random.Generator
    p : float in [0, 1], default 0.5

    Returns
    -------
    out : ndarray of shape (N, C, H, W)
        A new array; ``X`` is not modified.
    """
    _check_images(X)
    flip = rng.random(len(X)) < p  # (N,)
    return np.where(flip[:, None, None, None], X[..., ::-1], X)


def random_shift(X: np.ndarray, rng: np.random.Generator, max_shift: int = 2) -> np.ndarray:
    """Translate each image by whole pixels, up to ``max_shift`` in each direction.

    The image is padded by repeating its border pixels (the background of Fashion-MNIST and
    MNIST, whatever the preprocessing) and a window of the original size is cut at a random
    offset, i.e. the classic "pad and random crop".

    Parameters
    ----------
    X : ndarray of shape (N, C, H, W)
    rng : np.random.Generator
    max_shift : int >= 0, default 2

    Returns
    -------
    out : ndarray of shape (N, C, H, W)
        A new array; ``X`` is not modified.
    """
    _check_images(X)
    s = check_int("max_shift", max_shift, minimum=0)
    if s == 0:
        return X.copy()
    n, _, h, w = X.shape
    padded = np.pad(X, ((0, 0), (0, 0), (s, s), (s, s)), mode="edge")  # (N, C, H+2s, W+2s)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (h, w), axis=(2, 3))
    dy, dx = rng.integers(0, 2 * s + 1, size=(2, n))  # (N,) offsets into the padding
    # windows: (N, C, 2s+1, 2s+1, H, W); indexing image n at (dy[n], dx[n]) -> (N, C, H, W)
    return np.ascontiguousarray(windows[np.arange(n), :, dy, dx])


class Augment:
    """Random flips and shifts of a training batch, as one callable ``aug(X, rng) -> X``.

    Parameters
    ----------
    flip : bool, default False
        Mirror left-right with probability 1/2 (right for clothes, wrong for digits).
    shift : int >= 0, default 0
        Translate by up to this many pixels in each direction (:func:`random_shift`).

    Examples
    --------
    >>> aug = Augment(flip=True, shift=2)
    >>> aug  # its repr is what checkpoints and reports record
    Augment(flip=True, shift=2)
    """

    def __init__(self, flip: bool = False, shift: int = 0) -> None:
        if not isinstance(flip, bool | np.bool_):
            raise ValueError(f"expected flip a bool, got {flip!r}")
        self.flip = bool(flip)
        self.shift = check_int("shift", shift, minimum=0)

    @classmethod
    def from_spec(cls, spec: str) -> Augment:
        """Parse ``"flip"``, ``"shift2"``, ``"flip,shift2"`` or ``"none"`` (command lines)."""
        parts = [p.strip() for p in str(spec).split(",")]
        flip = shift = None
        for part in parts:
            m = re.fullmatch(r"shift([0-9]+)", part)
            if part == "flip" and flip is None:
                flip = True
            elif m is not None and shift is None:
                shift = int(m.group(1))
            elif not (part == "none" and len(parts) == 1):
                raise ValueError(
                    "expected an augmentation spec of 'flip', 'shiftK' (K pixels) or 'none', "
                    f"each at most once, joined by commas, got {spec!r}"
                )
        return cls(flip=bool(flip), shift=shift or 0)

    @property
    def spec(self) -> str:
        """The canonical command-line spec: ``"flip,shift2"``, ``"flip"``, ``"none"``..."""
        parts = (["flip"] if self.flip else []) + ([f"shift{self.shift}"] if self.shift else [])
        return ",".join(parts) or "none"

    @classmethod
    def from_repr(cls, text: str) -> Augment:
        """The inverse of ``repr`` (checkpoints store the repr); other text is refused."""
        m = re.fullmatch(r"Augment\(flip=(True|False), shift=(\d+)\)", text)
        if m is None:
            raise ValueError(
                f"expected 'Augment(flip=..., shift=...)', got the custom augmentation {text!r}; "
                "pass it again as augment=..."
            )
        return cls(flip=m.group(1) == "True", shift=int(m.group(2)))

    def __call__(self, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        _check_images(X)
        if self.shift:
            X = random_shift(X, rng, self.shift)
        if self.flip:
            X = random_flip(X, rng)
        return X

    def __repr__(self) -> str:
        return f"Augment(flip={self.flip}, shift={self.shift})"

    @property
    def active(self) -> bool:
        """Whether it changes anything (``Augment()`` is the identity)."""
        return self.flip or self.shift > 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Augment) and repr(self) == repr(other)

    def __hash__(self) -> int:
        return hash(repr(self))


def augment_batch(fn: Any, X_batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``fn(X_batch, rng)``, checked to keep the batch's shape and dtype."""
    out = fn(X_batch, rng)
    if not isinstance(out, np.ndarray) or (out.shape, out.dtype) != (X_batch.shape, X_batch.dtype):
        got = (out.shape, out.dtype) if isinstance(out, np.ndarray) else type(out).__name__
        raise ValueError(
            f"expected augment to return an array of shape {X_batch.shape} and dtype "
            f"{X_batch.dtype}, got {got}"
        )
    return out


def augment_name(fn: Any) -> str | None:
    """What checkpoints record of ``augment``: its repr, or ``module.qualname`` when the repr
    is Python's default (``<function f at 0x...>`` differs from one process to the next)."""
    if fn is None:
        return None
    text = repr(fn)
    if re.search(r" at 0x[0-9a-fA-F]+>$", text):
        target = fn if hasattr(fn, "__qualname__") else type(fn)
        return f"{getattr(target, '__module__', '?')}.{target.__qualname__}"
    return text
