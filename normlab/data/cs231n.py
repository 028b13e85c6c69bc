"""``get_CIFAR10_data``: CIFAR-10 split and centred exactly as the CS231n assignments do it.

The assignments' ``cs231n/data_utils.py`` takes the first ``num_training`` training images for
training, the next ``num_validation`` for validation and the first ``num_test`` test images,
keeps the raw pixel values 0..255 as float64 (no scaling), subtracts the training split's mean
image and puts channels first. This function does the same on the files found by
:mod:`normlab.data.discovery` and read by :mod:`normlab.data.cifar` (restricted unpickler).

:func:`normlab.data.load_dataset` is normlab's own policy (a seeded validation permutation,
pixels scaled to [0, 1], float32): use it for experiments, this for reproducing the notebooks.
"""

from __future__ import annotations

import os

import numpy as np

from normlab._validate import check_int

from .discovery import DatasetNotFoundError
from .loaders import load_cifar10

__all__ = ["get_CIFAR10_data"]


def get_CIFAR10_data(
    cifar10_dir: str | os.PathLike | None = None,
    num_training: int = 49000,
    num_validation: int = 1000,
    num_test: int = 1000,
    subtract_mean: bool = True,
    dtype=np.float64,
) -> dict:
    """CIFAR-10 as the assignments' ``get_CIFAR10_data`` returns it.

    Parameters
    ----------
    cifar10_dir : str or path-like, optional
        A ``cifar-10-batches-py`` (or ``-bin``) folder or a directory holding one; when given,
        the only place searched. None searches ``$NORMLAB_DATA``, the user cache and system
        folders (:mod:`normlab.data.discovery`). CIFAR-10 is never downloaded automatically.
    num_training : int, default 49000
        Training images: the first ``num_training`` of the 50000 training images.
    num_validation : int, default 1000
        Validation images: the ``num_validation`` training images after those
        (``num_training + num_validation <= 50000``).
    num_test : int, default 1000
        The first ``num_test`` of the 10000 test images.
    subtract_mean : bool, default True
        Subtract the training split's per-pixel mean image, shape (3, 32, 32), from all three
        splits.
    dtype : floating dtype, default np.float64
        The assignment's (``astype("float")``); np.float32 halves the memory (the default
        split takes 1.2 GB in float64). Not an argument of the assignment's function.

    Returns
    -------
    data : dict
        ``'X_train'`` (num_training, 3, 32, 32), ``'y_train'`` (num_training,),
        ``'X_val'`` (num_validation, 3, 32, 32), ``'y_val'`` (num_validation,),
        ``'X_test'`` (num_test, 3, 32, 32), ``'y_test'`` (num_test,). Images are ``dtype``,
        pixel values 0..255 minus the mean image, channels first; labels int64 in [0, 10).

    Raises
    ------
    DatasetNotFoundError
        (a ``FileNotFoundError``) listing every place looked at and how to get CIFAR-10.
    ValueError
        Sizes out of range, a non-floating ``dtype``, or a corrupt batch file.

    Notes
    -----
    Source: CS231n assignments 1 and 2, ``cs231n/data_utils.py``. The split is by position,
    as there (the CIFAR-10 training batches are already in random order). The mean is taken
    in float64 whatever ``dtype`` is.

    Examples
    --------
    >>> data = get_CIFAR10_data()  # doctest: +SKIP
    >>> {k: v.shape for k, v in data.items()}  # doctest: +SKIP
    {'X_train': (49000, 3, 32, 32), 'y_train': (49000,), 'X_val': (1000, 3, 32, 32),
     'y_val': (1000,), 'X_test': (1000, 3, 32, 32), 'y_test': (1000,)}
    """
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"expected a floating dtype such as np.float64, got {dtype}")
    if not isinstance(subtract_mean, bool | np.bool_):
        raise ValueError(f"expected subtract_mean True or False, got {subtract_mean!r}")
    try:
        raw = load_cifar10(cifar10_dir, download=False)
    except DatasetNotFoundError as err:  # the fix in this function's own terms
        how = (
            f"{err.how_to_get}, or anywhere and pass "
            "get_CIFAR10_data(cifar10_dir='<that folder>/cifar-10-batches-py')"
        )
        fields = (err.name, err.looked_in, err.missing, how, err.downloadable)
        raise DatasetNotFoundError(
            *fields, err.download_dir, err.download_error, err.data_dir, err.expected
        ) from None
    n_train, n_test = len(raw.y_train), len(raw.y_test)
    num_training = check_int("num_training", num_training, 1, n_train)
    num_validation = check_int("num_validation", num_validation, 0, n_train - num_training)
    num_test = check_int("num_test", num_test, 0, n_test)

    train = slice(0, num_training)
    val = slice(num_training, num_training + num_validation)
    data = {
        "X_train": raw.X_train[train].astype(dtype),  # (num_training, 3, 32, 32)
        "y_train": raw.y_train[train].astype(np.int64),
        "X_val": raw.X_train[val].astype(dtype),  # (num_validation, 3, 32, 32)
        "y_val": raw.y_train[val].astype(np.int64),
        "X_test": raw.X_test[:num_test].astype(dtype),  # (num_test, 3, 32, 32)
        "y_test": raw.y_test[:num_test].astype(np.int64),
    }
    if subtract_mean:
        mean_image = data["X_train"].mean(axis=0, dtype=np.float64)  # (3, 32, 32)
        for key in ("X_train", "X_val", "X_test"):
            data[key] -= mean_image.astype(dtype)
    return data
