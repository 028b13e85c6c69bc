"""One loader per dataset name, and :func:`load_dataset`, the entry point that prepares them.

Each ``load_<name>`` returns the :class:`RawDataset` as stored (uint8 pixels, the dataset's
own train/test parts); :func:`load_dataset` finds it, then splits and preprocesses it with
:func:`normlab.data.splits.prepare`.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from . import discovery
from .cifar import find_cifar10, load_cifar10_folder
from .digits import load_digits
from .idx import IDX_FILES, find_idx_files, load_idx_dataset
from .raw import RawDataset
from .splits import prepare

DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10")

MNIST_CLASSES = [str(c) for c in range(10)]
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
IDX_CLASSES = {"mnist": MNIST_CLASSES, "fashion-mnist": FASHION_MNIST_CLASSES}

# Validation images carved from the training part when num_validation is None:
# CS231n's 1000 for CIFAR-10, the customary 5000 for the MNISTs, 300 of the 1497 digits.
DEFAULT_NUM_VALIDATION = {"digits": 300, "mnist": 5000, "fashion-mnist": 5000, "cifar10": 1000}


def load_mnist(data_dir: str | os.PathLike | None = None, download: bool = True) -> RawDataset:
    """Load MNIST from IDX files (searched as in :mod:`normlab.data.discovery`).

    Parameters
    ----------
    data_dir : str or path-like, optional
        Directory holding the four IDX files (raw or ``.gz``): when given, the only place
        searched (see :mod:`normlab.data.discovery`).
    download : bool, default True
        Fetch missing files: into ``data_dir`` when given, else into the user cache.

    Returns
    -------
    RawDataset
        X_train (60000, 1, 28, 28) uint8, y_train (60000,), X_test (10000, 1, 28, 28),
        y_test (10000,), class names ``'0'``..``'9'``, ``source`` the directory read.
    """
    return _load_idx("mnist", data_dir, download)


def load_fashion_mnist(
    data_dir: str | os.PathLike | None = None, download: bool = True
) -> RawDataset:
    """Load Fashion-MNIST from IDX files (also found where Debian's package puts them).

    Parameters
    ----------
    data_dir, download
        As in :func:`load_mnist`.

    Returns
    -------
    RawDataset
        The shapes of :func:`load_mnist` (60000 training and 10000 test images of 1x28x28
        uint8), with the ten clothing class names.
    """
    return _load_idx("fashion-mnist", data_dir, download)


def load_cifar10(data_dir: str | os.PathLike | None = None, download: bool = True) -> RawDataset:
    """Load CIFAR-10 from ``cifar-10-batches-py`` (safely unpickled) or ``cifar-10-batches-bin``.

    Parameters
    ----------
    data_dir : str or path-like, optional
        A batch folder, or a directory containing one; when given, the only place searched.
    download : bool, default True
        Accepted for symmetry; CIFAR-10 is not downloaded automatically (the error says how
        to get it).

    Returns
    -------
    RawDataset
        X_train (50000, 3, 32, 32) uint8, y_train (50000,), X_test (10000, 3, 32, 32),
        y_test (10000,), class names from ``batches.meta``.
    """
    folder, fmt = discovery.find_dataset(
        "cifar10", find_cifar10, data_dir, download, CIFAR10_LAYOUT
    )
    return dataclasses.replace(load_cifar10_folder(folder, fmt), source=folder)


def _load_idx(name: str, data_dir, download: bool) -> RawDataset:
    """Find and read the IDX dataset ``name`` (a key of :data:`IDX_CLASSES`)."""
    expected = tuple(f"{stem}[.gz]" for stem in IDX_FILES.values())
    directory = discovery.find_dataset(name, _idx_dir, data_dir, download, expected)
    return dataclasses.replace(load_idx_dataset(directory, IDX_CLASSES[name]), source=directory)


def _idx_dir(directory):
    """Probe: ``directory`` itself if it holds the four IDX files."""
    find_idx_files(directory)
    return directory


# What a CIFAR-10 directory holds, for the not-found error.
CIFAR10_LAYOUT = (
    "cifar-10-batches-py/ (or cifar-10-batches-bin/) with data_batch_1..5 and test_batch",
)

_LOADERS = {
    "digits": lambda data_dir, download: load_digits(),
    "mnist": load_mnist,
    "fashion-mnist": load_fashion_mnist,
    "cifar10": load_cifar10,
}


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    num_training: int | None = None,
    num_validation: int | None = None,
    num_test: int | None = None,
    subtract_mean: bool = True,
    scale: bool = True,
    seed: int = 0,
    dtype=np.float32,
    download: bool = True,
) -> dict:
    """Load a dataset split into train/validation/test, ready for a model.

    Parameters
    ----------
    name : str
        One of :data:`DATASETS`: ``'digits'`` (bundled, offline), ``'mnist'``,
        ``'fashion-mnist'``, ``'cifar10'``. Case and ``_``/``-`` are ignored.
    data_dir : str or path-like, optional
        The directory holding the files (ignored for ``'digits'``). When given it is the only
        place searched: a folder without the data is an error, never a silent fallback to
        another copy. None searches ``$NORMLAB_DATA``, the user cache and system folders
        (:mod:`normlab.data.discovery`).
    num_training : int, optional
        Training split size; default all that validation leaves.
    num_validation : int, optional
        Validation split size; default :data:`DEFAULT_NUM_VALIDATION` (1000 CIFAR-10,
        5000 MNIST and Fashion-MNIST, 300 digits), at most N_train - 1.
    num_test : int, optional
        Keep the first ``num_test`` test images; default all.
    subtract_mean : bool, default True
        Subtract the training split's mean image from all splits.
    scale : bool, default True
        Divide pixels by 255 (by 16 for the digits).
    seed : int, default 0
        Seed of the permutation that carves validation from the training part.
    dtype : floating dtype, default np.float32
        dtype of the images.
    download : bool, default True
        Download missing MNIST / Fashion-MNIST files into ``data_dir`` when given, else into
        the user cache.

    Returns
    -------
    dict
        ``X_train`` (N_tr, C, H, W), ``y_train`` (N_tr,) int64, ``X_val`` (N_val, C, H, W),
        ``y_val`` (N_val,), ``X_test`` (N_te, C, H, W), ``y_test`` (N_te,),
        ``class_names`` list of str, ``data_dir`` the absolute directory the files were read
        from as a str (None for the bundled digits) -- record it rather than the argument.
        C, H, W are 1, 8, 8 (digits), 1, 28, 28 (MNISTs) or
        3, 32, 32 (CIFAR-10).

    Raises
    ------
    ValueError
        For an unknown name (the message lists the known ones), bad sizes, or a corrupt file.
    DatasetNotFoundError
        A ``FileNotFoundError`` listing every place looked at and how to get the files.

    Notes
    -----
    The splitting policy (seeded permutation for validation, the dataset's own test split,
    mean of the training split only) is described in :mod:`normlab.data.splits`. With the
    defaults, digits gives 1197/300/300 images (its fixed, stratified test split is
    described in :mod:`normlab.data.digits`); Fashion-MNIST 55000/5000/10000.

    Examples
    --------
    >>> data = load_dataset("digits", num_training=500)
    >>> data["X_train"].shape, data["X_val"].shape, data["X_test"].shape
    ((500, 1, 8, 8), (300, 1, 8, 8), (300, 1, 8, 8))
    """
    key = str(name).lower().replace("_", "-")
    if key not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    raw = _LOADERS[key](data_dir, download)
    if num_validation is None:
        num_validation = min(DEFAULT_NUM_VALIDATION[key], len(raw.y_train) - 1)
    sizes = (num_training, num_validation, num_test)  # prepare's own order
    out = prepare(raw, *sizes, subtract_mean=subtract_mean, scale=scale, seed=seed, dtype=dtype)
    out["data_dir"] = None if raw.source is None else str(raw.source)
    return out
