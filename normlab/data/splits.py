"""From a :class:`RawDataset` to train/validation/test float arrays, CS231n-style.

The policy, written once:

* **Validation** is carved from the dataset's training part with a seeded permutation:
  ``perm = np.random.default_rng(seed).permutation(N_train)``; the first
  ``num_validation`` indices of ``perm`` are the validation split and the next
  ``num_training`` the training split. A seeded permutation rather than CS231n's
  "the images after the first 49000" keeps the splits unbiased even if a file is ordered,
  and makes ``seed`` the one knob that changes them. Both splits keep ``perm``'s order.
* **Test** is the dataset's own test part, never shuffled; ``num_test`` keeps its first
  ``num_test`` images (as CS231n does), so every seed is scored on the same images.
* **Scaling** (``scale=True``) divides pixels by the format's maximum (255, or 16 for the
  digits), giving values in [0, 1].
* **Mean subtraction** (``subtract_mean=True``) subtracts the per-pixel mean image of the
  training split only -- after subsampling and scaling -- from all three splits, so nothing
  about validation or test leaks into preprocessing.
"""

from __future__ import annotations

import numpy as np

from normlab._validate import check_int

from .raw import RawDataset


def _count(value, name: str, available: int, default: int) -> int:
    """An optional split size in ``[0, available]``; ``default`` for None."""
    n = check_int(name, value, 0, available, allow_none=True)
    return default if n is None else n


def train_val_indices(
    num_available: int, num_training: int | None, num_validation: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(num_available)`` into training and validation indices by a seeded shuffle.

    Parameters
    ----------
    num_available : int
        Size of the dataset's training part.
    num_training : int or None
        Training split size; None takes all that validation leaves.
    num_validation : int
        Validation split size.
    seed : int
        Seed of the permutation.

    Returns
    -------
    train : ndarray of shape (num_training,), int64
    val : ndarray of shape (num_validation,), int64
        Disjoint; ``val = perm[:num_validation]``, ``train`` follows it in ``perm``.
    """
    num_validation = _count(num_validation, "num_validation", num_available, 0)
    rest = num_available - num_validation
    num_training = _count(num_training, "num_training", rest, rest)
    if num_training == 0:
        raise ValueError(
            f"expected num_training >= 1, got 0 (num_validation={num_validation} leaves "
            f"{rest} of {num_available} training images)"
        )
    perm = np.random.default_rng(seed).permutation(num_available)  # (num_available,)
    val = perm[:num_validation]  # (num_validation,)
    train = perm[num_validation : num_validation + num_training]  # (num_training,)
    return train, val


def prepare(
    raw: RawDataset,
    num_training: int | None = None,
    num_validation: int = 0,
    num_test: int | None = None,
    subtract_mean: bool = True,
    scale: bool = True,
    seed: int = 0,
    dtype=np.float32,
) -> dict:
    """Split, subsample, scale and center a raw dataset (policy in the module docstring).

    Parameters
    ----------
    raw : RawDataset
        X_train (N_train, C, H, W), X_test (N_test, C, H, W), integer pixels.
    num_training : int, optional
        Training split size; default all that validation leaves.
    num_validation : int, default 0
        Validation split size, carved from ``raw.X_train``.
    num_test : int, optional
        Keep the first ``num_test`` test images; default all.
    subtract_mean : bool, default True
        Subtract the training split's mean image (shape (C, H, W)) from every split.
    scale : bool, default True
        Divide pixels by ``raw.pixel_max``.
    seed : int, default 0
        Seed of the train/validation permutation.
    dtype : floating dtype, default np.float32
        dtype of the returned images.

    Returns
    -------
    dict
        ``X_train`` (num_training, C, H, W), ``y_train`` (num_training,) int64,
        ``X_val`` (num_validation, C, H, W), ``y_val`` (num_validation,),
        ``X_test`` (num_test, C, H, W), ``y_test`` (num_test,), ``class_names`` list of str.
    """
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.floating):
        raise ValueError(f"expected a floating dtype such as np.float32, got {dtype}")
    n_test = _count(num_test, "num_test", len(raw.y_test), len(raw.y_test))
    train, val = train_val_indices(len(raw.y_train), num_training, num_validation, seed)

    splits = {
        "train": (raw.X_train[train], raw.y_train[train]),  # (num_training, C, H, W)
        "val": (raw.X_train[val], raw.y_train[val]),  # (num_validation, C, H, W)
        "test": (raw.X_test[:n_test], raw.y_test[:n_test]),  # (num_test, C, H, W)
    }
    out = {}
    for key, (X, y) in splits.items():
        X = X.astype(dtype)  # (n, C, H, W), a fresh array: the raw data is never modified
        if scale:
            X /= raw.pixel_max
        out[f"X_{key}"], out[f"y_{key}"] = X, y.astype(np.int64)
    if subtract_mean:
        mean_image = out["X_train"].mean(axis=0, dtype=np.float64).astype(dtype)  # (C, H, W)
        for key in ("train", "val", "test"):
            out[f"X_{key}"] -= mean_image
    out["class_names"] = list(raw.class_names)
    return out
