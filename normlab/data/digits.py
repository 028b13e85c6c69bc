"""The embedded 8x8 handwritten digits: the dataset that always works offline.

1797 images with 17 grey levels (0-16), ten classes of about 180 each: the test set of UCI's
"Optical Recognition of Handwritten Digits" by E. Alpaydin and C. Kaynak (1998,
https://doi.org/10.24432/C50P49, CC BY 4.0). ``digits.csv.gz`` beside this module is
scikit-learn's copy of it, unchanged (its source, license and checksum: ``DIGITS-LICENSE``);
:func:`digits_arrays` returns what ``sklearn.datasets.load_digits(return_X_y=True)`` returns,
without installing scikit-learn and SciPy for a 58 KB file.

It has no official test split, so :func:`load_digits` fixes one: 300 images, stratified by
class, chosen once with a constant seed so that every experiment, whatever its own seed, is
scored on the same images.
"""

from __future__ import annotations

import gzip
from importlib import resources

import numpy as np

from .raw import RawDataset

DIGITS_NUM_TEST = 300
DIGITS_TEST_SEED = 0  # fixed: the test split is part of the dataset, not of a run


def stratified_holdout(y: np.ndarray, num_holdout: int, seed: int) -> np.ndarray:
    """Pick ``num_holdout`` indices with each class represented in proportion to its size.

    Parameters
    ----------
    y : ndarray of shape (N,)
        Labels.
    num_holdout : int
        How many indices to pick, ``0 <= num_holdout <= N``.
    seed : int
        Seeds the shuffle within each class.

    Returns
    -------
    ndarray of shape (num_holdout,), int64
        Sorted indices into ``y``; each class gets its share of ``num_holdout`` to within one.
    """
    if not 0 <= num_holdout <= len(y):
        raise ValueError(f"expected 0 <= num_holdout <= {len(y)}, got {num_holdout}")
    perm = np.random.default_rng(seed).permutation(len(y))  # (N,)
    by_class = perm[np.argsort(y[perm], kind="stable")]  # (N,) classes in blocks, shuffled within
    # Evenly spaced positions through the class blocks take a proportional share of each.
    positions = (np.arange(num_holdout) * len(y)) // max(num_holdout, 1)  # (num_holdout,)
    return np.sort(by_class[positions]).astype(np.int64)


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Read the embedded digits file, as scikit-learn's ``load_digits(return_X_y=True)``.

    Returns
    -------
    X : ndarray of shape (1797, 64), float64
        Each row one 8x8 image, row by row, values 0-16.
    y : ndarray of shape (1797,), int64
        The digit, 0-9.
    """
    path = resources.files(__package__).joinpath("digits.csv.gz")  # works from a zip too
    with path.open("rb") as f, gzip.open(f) as csv:
        table = np.loadtxt(csv, delimiter=",", dtype=np.float64)  # (1797, 65)
    X = np.ascontiguousarray(table[:, :-1])  # (1797, 64)
    return X, table[:, -1].astype(np.int64)  # (1797, 64), (1797,)


def load_digits() -> RawDataset:
    """Load the embedded 8x8 digits with normlab's fixed stratified test split.

    Returns
    -------
    RawDataset
        X_train (1497, 1, 8, 8) uint8 with values 0-16, y_train (1497,) int64,
        X_test (300, 1, 8, 8), y_test (300,), class names ``'0'``..``'9'``,
        ``pixel_max=16``.

    Examples
    --------
    >>> raw = load_digits()
    >>> raw.X_train.shape, raw.X_test.shape
    ((1497, 1, 8, 8), (300, 1, 8, 8))
    """
    flat, y = digits_arrays()  # (1797, 64), (1797,)
    X = flat.astype(np.uint8).reshape(-1, 1, 8, 8)  # (1797, 1, 8, 8)
    test = stratified_holdout(y, DIGITS_NUM_TEST, DIGITS_TEST_SEED)  # (300,)
    train = np.setdiff1d(np.arange(len(y)), test)  # (1497,)
    names = [str(c) for c in range(10)]
    return RawDataset(X[train], y[train], X[test], y[test], names, pixel_max=16)
