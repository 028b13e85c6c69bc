"""CIFAR-10 in both of its distributed formats, read without trusting pickle.

``cifar-10-batches-py`` holds Python pickles ``data_batch_1`` ... ``data_batch_5``,
``test_batch`` (dicts with ``b'data'``, an (N, 3072) uint8 array, rows are the red, green
and blue 32x32 planes; and ``b'labels'``, a list of N ints) and ``batches.meta``
(``b'label_names'``). They are read with :class:`RestrictedUnpickler`, which can build
NumPy arrays and nothing else, so a tampered file cannot run code.

``cifar-10-batches-bin`` holds ``data_batch_1.bin`` ... ``data_batch_5.bin``,
``test_batch.bin`` -- records of one label byte followed by 3072 pixel bytes -- and
``batches.meta.txt``, one class name per line. See https://www.cs.toronto.edu/~kriz/cifar.html.

Every batch of both formats holds exactly :data:`RECORDS_PER_BATCH` (10000) images; a batch of
another size is reported as corrupt (a truncated download, or another dataset), and a binary
batch is sized before it is read.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
from numpy._core import multiarray

from .raw import RawDataset, check_labels

CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
PY_FOLDER, BIN_FOLDER = "cifar-10-batches-py", "cifar-10-batches-bin"
TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
TEST_BATCH = "test_batch"
RECORDS_PER_BATCH = 10000  # images in every published batch, training and test alike
_PIXELS = 3 * 32 * 32
_RECORD = 1 + _PIXELS  # label byte + pixels, binary format


class RefusedGlobalError(pickle.UnpicklingError):
    """Raised by :class:`RestrictedUnpickler` for a global outside its allow-list."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild NumPy arrays and refuses every other global.

    The CIFAR batches reference only ``numpy.core.multiarray._reconstruct`` (written by
    Python 2 and NumPy 1; ``numpy._core`` under NumPy 2), ``numpy.ndarray`` and
    ``numpy.dtype``. Those names map to a fixed table; nothing is imported by name, so a
    pickle whose ``__reduce__`` calls ``os.system`` fails before running anything.

    Raises
    ------
    RefusedGlobalError
        (a ``pickle.UnpicklingError``) on any other global.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): multiarray._reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): multiarray._reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str):
        """Return the allowed object for ``module.name`` or raise UnpicklingError."""
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise RefusedGlobalError(
                f"refusing to load global {module}.{name}: a CIFAR batch only needs "
                "numpy array reconstruction"
            ) from None


def restricted_load(path: str | os.PathLike) -> object:
    """Unpickle ``path`` with :class:`RestrictedUnpickler` (``encoding='bytes'``, as CIFAR needs).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    object
        The unpickled object; byte strings from Python 2 stay ``bytes``.

    Raises
    ------
    RefusedGlobalError
        (a ``pickle.UnpicklingError``) naming the file, if it references a forbidden global.
    ValueError
        Naming the file, if it is truncated or otherwise not a pickle.
    """
    with open(path, "rb") as f:
        try:
            return RestrictedUnpickler(f, encoding="bytes").load()
        except RefusedGlobalError as err:
            raise RefusedGlobalError(f"{path}: {err}") from None
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError) as err:
            raise ValueError(f"{path}: not a readable CIFAR pickle ({err!r})") from err


def read_cifar_pickle_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one batch of ``cifar-10-batches-py``.

    Parameters
    ----------
    path : str or path-like
        A ``data_batch_i`` or ``test_batch`` file.

    Returns
    -------
    X : ndarray of shape (10000, 3, 32, 32), uint8
    y : ndarray of shape (10000,), int64

    Raises
    ------
    ValueError
        Naming the file, if the keys, shapes, record count (10000) or labels are wrong (labels
        must be integers in [0, 10): floats or byte strings are refused).
    RefusedGlobalError
        (a ``pickle.UnpicklingError``) if the pickle references anything but NumPy array
        reconstruction.
    """
    batch = restricted_load(path)
    if not isinstance(batch, dict) or not {b"data", b"labels"} <= batch.keys():
        got = type(batch).__name__
        if isinstance(batch, dict):  # sorted reprs: str and bytes keys do not sort together
            got = "keys " + ", ".join(sorted(map(repr, batch)))
        raise ValueError(f"{path}: expected a dict with keys b'data' and b'labels', got {got}")
    data = batch[b"data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise ValueError(f"{path}: expected b'data' as a uint8 array of shape (N, 3072)")
    y = check_labels(batch[b"labels"], len(CIFAR10_CLASSES), path)  # (N,)
    if data.shape[1] != _PIXELS or y.shape != (data.shape[0],):
        raise ValueError(
            f"{path}: expected b'data' of shape (N, {_PIXELS}) and N labels, "
            f"got data {data.shape} and labels {y.shape}"
        )
    _check_records(path, data.shape[0])
    return data.reshape(-1, 3, 32, 32), y  # (N, 3, 32, 32), (N,)


def _check_records(path, n: int) -> None:
    """Raise ValueError naming ``path`` unless a batch holds ``RECORDS_PER_BATCH`` images."""
    if n != RECORDS_PER_BATCH:
        raise ValueError(
            f"{path}: expected {RECORDS_PER_BATCH} images per batch (the published CIFAR-10 "
            f"format), got {n}; the file is truncated or not a CIFAR-10 batch"
        )


def read_cifar_bin_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read one batch of ``cifar-10-batches-bin``.

    Parameters
    ----------
    path : str or path-like
        A ``data_batch_i.bin`` or ``test_batch.bin`` file of 3073-byte records.

    Returns
    -------
    X, y
        As from :func:`read_cifar_pickle_batch`: (10000, 3, 32, 32) uint8 and (10000,) int64.

    Raises
    ------
    ValueError
        Naming the file, if it is not 10000 records of 3073 bytes or a label is not 0-9.
    """
    want = RECORDS_PER_BATCH * _RECORD
    got = os.path.getsize(path)  # checked before reading: a huge file is not loaded
    if got != want:
        raise ValueError(
            f"{path}: expected {RECORDS_PER_BATCH} records of {_RECORD} bytes (1 label + "
            f"{_PIXELS} pixels), {want} bytes, got {got} bytes"
        )
    records = np.fromfile(path, np.uint8, count=want).reshape(-1, _RECORD)  # (10000, 3073)
    y = check_labels(records[:, 0], len(CIFAR10_CLASSES), path)  # (10000,)
    return records[:, 1:].reshape(-1, 3, 32, 32), y  # (10000, 3, 32, 32), (10000,)


def _read_class_names(folder: Path, fmt: str) -> list[str]:
    """Class names from the folder's meta file, or the standard ten if it has none."""
    if fmt == "py":
        meta_path = folder / "batches.meta"
        if not meta_path.is_file():
            return list(CIFAR10_CLASSES)
        meta = restricted_load(meta_path)
        names = meta.get(b"label_names") if isinstance(meta, dict) else None
        if not isinstance(names, list):
            raise ValueError(f"{meta_path}: expected a dict with a b'label_names' list")
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    else:
        meta_path = folder / "batches.meta.txt"
        if not meta_path.is_file():
            return list(CIFAR10_CLASSES)
        names = [line.strip() for line in meta_path.read_text().splitlines() if line.strip()]
    if len(names) != len(CIFAR10_CLASSES):
        raise ValueError(f"{meta_path}: expected 10 class names, got {len(names)}")
    return names


def find_cifar10(directory: str | os.PathLike) -> tuple[Path, str]:
    """Locate a CIFAR-10 batch folder at or directly under ``directory``.

    Parameters
    ----------
    directory : str or path-like
        Either a batch folder itself or a directory containing ``cifar-10-batches-py`` or
        ``cifar-10-batches-bin``. The pickle format wins if both are present.

    Returns
    -------
    folder : Path
        The folder holding the batch files.
    fmt : {'py', 'bin'}
        Its format.

    Raises
    ------
    FileNotFoundError
        If no complete set of batch files is there; the message says what is missing.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError("no such directory")
    layouts = [
        (directory / PY_FOLDER, "py", ""),
        (directory / BIN_FOLDER, "bin", ".bin"),
        (directory, "py", ""),
        (directory, "bin", ".bin"),
    ]
    for folder, fmt, suffix in layouts:
        names = [n + suffix for n in [*TRAIN_BATCHES, TEST_BATCH]]
        if all((folder / n).is_file() for n in names):
            return folder, fmt
    raise FileNotFoundError(
        f"neither {PY_FOLDER}/ nor {BIN_FOLDER}/ with data_batch_1..5 and test_batch"
    )


def load_cifar10_folder(folder: str | os.PathLike, fmt: str) -> RawDataset:
    """Load all six CIFAR-10 batches from one folder.

    Parameters
    ----------
    folder : str or path-like
        A ``cifar-10-batches-py`` or ``cifar-10-batches-bin`` folder.
    fmt : {'py', 'bin'}
        Its format (see :func:`find_cifar10`).

    Returns
    -------
    RawDataset
        X_train (50000, 3, 32, 32) uint8, y_train (50000,), X_test (10000, 3, 32, 32),
        y_test (10000,), class names from the meta file, ``pixel_max=255``.
    """
    folder = Path(folder)
    if fmt not in ("py", "bin"):
        raise ValueError(f"expected fmt 'py' or 'bin', got {fmt!r}")
    read, suffix = (read_cifar_pickle_batch, "") if fmt == "py" else (read_cifar_bin_batch, ".bin")
    parts = [read(folder / f"{name}{suffix}") for name in TRAIN_BATCHES]
    X_train = np.concatenate([X for X, _ in parts])  # (50000, 3, 32, 32)
    y_train = np.concatenate([y for _, y in parts])  # (50000,)
    X_test, y_test = read(folder / f"{TEST_BATCH}{suffix}")  # (10000, 3, 32, 32), (10000,)
    names = _read_class_names(folder, fmt)
    return RawDataset(X_train, y_train, X_test, y_test, names, pixel_max=255)
