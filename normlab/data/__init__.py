"""Datasets for normlab: one reader per file format, one place for discovery.

Entry point: :func:`load_dataset` (``'digits'``, ``'mnist'``, ``'fashion-mnist'``,
``'cifar10'``) returns CS231n-style ``X_train, y_train, X_val, y_val, X_test, y_test``
arrays of shape (N, C, H, W) plus ``class_names``.

:class:`Augment` (random flips and shifts of training batches) lives in :mod:`normlab.augment`,
beside the Solver that applies it, and is re-exported here.

Modules
-------
idx
    IDX files of MNIST / Fashion-MNIST (:func:`read_idx`).
cifar
    CIFAR-10 pickled (with a restricted unpickler) and binary batches.
digits
    the embedded 8x8 digits (UCI optdigits, CC BY 4.0), the offline default.
discovery
    where files are looked for; verified downloads.
splits
    validation carving, subsampling, scaling, mean subtraction.
loaders
    ``load_<name>`` per dataset and :func:`load_dataset`.
cs231n
    :func:`get_CIFAR10_data`, CIFAR-10 split and centred as the CS231n assignments do.
"""

from normlab.augment import Augment, random_flip, random_shift

from .cifar import (
    RefusedGlobalError,
    RestrictedUnpickler,
    read_cifar_bin_batch,
    read_cifar_pickle_batch,
)
from .cs231n import get_CIFAR10_data
from .digits import load_digits
from .discovery import ChecksumError, DatasetNotFoundError
from .idx import read_idx
from .loaders import DATASETS, load_cifar10, load_dataset, load_fashion_mnist, load_mnist
from .raw import RawDataset
from .splits import prepare

__all__ = [
    "Augment",
    "DATASETS",
    "ChecksumError",
    "DatasetNotFoundError",
    "RawDataset",
    "RefusedGlobalError",
    "RestrictedUnpickler",
    "get_CIFAR10_data",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "load_mnist",
    "prepare",
    "random_flip",
    "random_shift",
    "read_cifar_bin_batch",
    "read_cifar_pickle_batch",
    "read_idx",
]
