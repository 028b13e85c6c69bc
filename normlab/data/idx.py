"""The IDX format of MNIST and Fashion-MNIST, gzip-compressed or raw.

An IDX file is a 4-byte magic number -- two zero bytes, a type code, the number of
dimensions -- then one big-endian uint32 per dimension, then the values in C order,
big-endian. A dataset directory holds four such files (``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``), each
either as it is or with ``.gz`` appended. See http://yann.lecun.com/exdb/mnist/ (bottom).
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from math import prod
from pathlib import Path

import numpy as np

from .raw import RawDataset, check_labels

# IDX type code -> element type (big-endian on disk).
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# Role -> file stem; each file may also be stored as stem + ".gz".
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file, gzip-compressed or not.

    Parameters
    ----------
    path : str or path-like
        The file. Compression is detected from its first bytes, not its name.

    Returns
    -------
    ndarray of shape (d_0, ..., d_{k-1})
        The values, in native byte order, with the shape the header gives
        (e.g. (60000, 28, 28) uint8 for MNIST training images, (60000,) uint8 for labels).

    Raises
    ------
    ValueError
        Naming the file, if the magic number is wrong, the type code is unknown, or the
        data is shorter or longer than the header says (or the gzip stream is corrupt). The
        data is read and measured before anything the size of the header's shape is
        allocated, so a corrupt header cannot exhaust memory.

    Examples
    --------
    >>> images = read_idx("train-images-idx3-ubyte.gz")  # doctest: +SKIP
    >>> images.shape, images.dtype  # doctest: +SKIP
    ((60000, 28, 28), dtype('uint8'))
    """
    path = Path(path)
    with open(path, "rb") as f:
        compressed = f.read(2) == _GZIP_MAGIC
    opener = gzip.open if compressed else open
    try:
        with opener(path, "rb") as f:
            return _read_idx_stream(f, path)
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise ValueError(f"{path}: corrupt or truncated gzip stream ({err})") from err


def _read_idx_stream(f, path: Path) -> np.ndarray:
    """Parse the header and data of an open binary IDX stream."""
    magic = f.read(4)
    if len(magic) < 4 or magic[:2] != b"\x00\x00":
        raise ValueError(
            f"{path}: not an IDX file: expected a magic number starting with two zero bytes, "
            f"got {magic.hex() or 'an empty file'}"
        )
    code, ndim = magic[2], magic[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise ValueError(f"{path}: unknown IDX type code 0x{code:02X}; expected one of {known}")
    if ndim == 0:
        raise ValueError(f"{path}: IDX header declares 0 dimensions; expected at least 1")
    raw_dims = f.read(4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise ValueError(f"{path}: truncated IDX header: expected {ndim} dimension sizes")
    dims = struct.unpack(f">{ndim}I", raw_dims)

    dtype = IDX_DTYPES[code]
    want = prod(dims) * dtype.itemsize
    # Read what the file holds (at most one byte more than promised) before trusting the header:
    # a corrupt header claiming (2**32 - 1)**3 values must fail here, not in an allocation.
    data = _read_at_most(f, want + 1)
    if len(data) < want:
        raise ValueError(
            f"{path}: truncated IDX data: header promises shape {dims} "
            f"({want} bytes), file holds only {len(data)} bytes"
        )
    if len(data) > want:
        raise ValueError(
            f"{path}: IDX file is longer than its header says: expected {want} bytes of data "
            f"for shape {dims}, got more"
        )
    out = np.frombuffer(data, dtype=dtype).reshape(dims)  # (d_0, ..., d_{k-1}), writable
    return out.astype(dtype.newbyteorder("="), copy=False)


def _read_at_most(f, limit: int, chunk: int = 1 << 24) -> bytearray:
    """Up to ``limit`` bytes from ``f``, read in chunks (memory grows with the data, not limit)."""
    buf = bytearray()
    while len(buf) < limit:
        part = f.read(min(chunk, limit - len(buf)))
        if not part:
            break
        buf += part
    return buf


def find_idx_files(directory: str | os.PathLike) -> dict[str, Path]:
    """Locate the four IDX files of an MNIST-like dataset in ``directory``.

    Parameters
    ----------
    directory : str or path-like
        Where to look. Each file may be raw or ``.gz``; raw wins if both exist.

    Returns
    -------
    dict of str to Path
        Keys ``train_images``, ``train_labels``, ``test_images``, ``test_labels``.

    Raises
    ------
    FileNotFoundError
        If the directory or any of the four files is missing; the message says which.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError("no such directory")
    found, missing = {}, []
    for role, stem in IDX_FILES.items():
        candidates = [directory / stem, directory / f"{stem}.gz"]
        hit = next((p for p in candidates if p.is_file()), None)
        if hit is None:
            missing.append(f"{stem}[.gz]")
        else:
            found[role] = hit
    if missing:
        raise FileNotFoundError(f"missing {', '.join(missing)}")
    return found


def read_idx_pair(
    images_path: Path, labels_path: Path, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Read an images file and its labels file and check that they belong together.

    Parameters
    ----------
    images_path, labels_path : Path
        IDX files with shapes (N, H, W) uint8 and (N,).
    num_classes : int
        Labels must lie in ``[0, num_classes)``.

    Returns
    -------
    X : ndarray of shape (N, 1, H, W), uint8
    y : ndarray of shape (N,), int64
    """
    images = read_idx(images_path)  # (N, H, W)
    labels = read_idx(labels_path)  # (N,)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"{images_path}: expected uint8 images of shape (N, H, W), "
            f"got {images.dtype} of shape {images.shape}"
        )
    if labels.ndim != 1:
        raise ValueError(f"{labels_path}: expected labels of shape (N,), got {labels.shape}")
    if labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{images_path} holds {images.shape[0]} images but {labels_path} holds "
            f"{labels.shape[0]} labels; expected the same count"
        )
    y = check_labels(labels, num_classes, labels_path)  # (N,)
    return images[:, None], y  # (N, 1, H, W), (N,)


def load_idx_dataset(directory: str | os.PathLike, class_names: list[str]) -> RawDataset:
    """Load an MNIST-like dataset (four IDX files) from one directory.

    Parameters
    ----------
    directory : str or path-like
        Holds the four files, raw or ``.gz`` (see :func:`find_idx_files`).
    class_names : list of str
        Name of each label; its length bounds the labels.

    Returns
    -------
    RawDataset
        X_train (N_train, 1, H, W) uint8, y_train (N_train,), X_test (N_test, 1, H, W),
        y_test (N_test,), ``pixel_max=255``.
    """
    files = find_idx_files(directory)
    X_train, y_train = read_idx_pair(files["train_images"], files["train_labels"], len(class_names))
    X_test, y_test = read_idx_pair(files["test_images"], files["test_labels"], len(class_names))
    if X_train.shape[1:] != X_test.shape[1:]:
        raise ValueError(
            f"{files['test_images']}: expected test images of size {X_train.shape[2:]} like the "
            f"training images, got {X_test.shape[2:]}"
        )
    return RawDataset(X_train, y_train, X_test, y_test, list(class_names), pixel_max=255)
