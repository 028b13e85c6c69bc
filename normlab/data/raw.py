"""The raw form every loader returns: pixels as stored on disk, before any preprocessing.

Each format module (``idx``, ``cifar``, ``digits``) produces a :class:`RawDataset`;
:func:`normlab.data.splits.prepare` turns it into the float arrays a model trains on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class RawDataset:
    """Images and labels exactly as read, split into the dataset's own train and test parts.

    Parameters
    ----------
    X_train : ndarray of shape (N_train, C, H, W), uint8
        Training images, unscaled.
    y_train : ndarray of shape (N_train,), int64
        Training labels in ``[0, len(class_names))``.
    X_test : ndarray of shape (N_test, C, H, W), uint8
        Test images, unscaled.
    y_test : ndarray of shape (N_test,), int64
        Test labels.
    class_names : list of str
        Name of each class, indexed by label.
    pixel_max : int
        Largest possible pixel value (255 for 8-bit images, 16 for scikit-learn's digits);
        ``scale=True`` divides by it.
    source : Path, optional
        The directory the files were read from (absolute); None for bundled data.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    pixel_max: int
    source: Path | None = None

    def __post_init__(self):
        # Internal invariant: the format modules validate files and raise ValueError first.
        for X, y in ((self.X_train, self.y_train), (self.X_test, self.y_test)):
            assert X.ndim == 4 and y.ndim == 1 and X.shape[0] == y.shape[0], (X.shape, y.shape)
            assert y.dtype == np.int64, y.dtype
        assert self.X_train.shape[1:] == self.X_test.shape[1:]


# How a label error names a non-integer dtype kind.
_KINDS = {"b": "booleans", "f": "floats", "c": "complex numbers", "S": "byte strings",
          "U": "strings", "O": "Python objects"}  # fmt: skip


def check_labels(y, num_classes: int, path) -> np.ndarray:
    """Return ``y`` as int64 (N,); a ValueError naming ``path`` unless integers in [0, C).

    Float labels are refused rather than truncated (``2.7`` is no class), and so are byte
    strings, strings and objects.
    """
    try:
        y = np.asarray(y)
    except ValueError as err:  # a ragged list
        raise ValueError(f"{path}: expected a flat sequence of integer labels ({err})") from None
    if y.dtype.kind not in "iu":
        raise ValueError(
            f"{path}: expected integer labels, got {_KINDS.get(y.dtype.kind, 'values')} "
            f"(dtype {y.dtype}); the file is corrupt or not this dataset"
        )
    y = y.astype(np.int64, copy=False)  # (N,)
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f"{path}: expected labels in [0, {num_classes}), got values in "
            f"[{int(y.min())}, {int(y.max())}]; the file is corrupt or not this dataset"
        )
    return y
