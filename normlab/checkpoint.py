"""Checkpoints: one ``.npz`` of plain arrays plus a JSON document, written atomically.

Layout of the file (readable with ``np.load(path, allow_pickle=False)``):

- ``__checkpoint__.json``: a uint8 array holding a UTF-8 JSON document with every scalar, list and
  string of the checkpoint (format version, model config, solver config, counters, histories,
  RNG states, optimizer hyperparameters).  Wherever the document had an array it holds
  ``{"__ndarray__": key}``;
- ``key``: that array, e.g. ``model/params/W1``, ``model/buffers/running_mean``,
  ``solver/optimizer/config/m``.

No object arrays and no pickle anywhere.  The file is written to a temporary file in the same
directory, flushed and fsync'ed, then moved over ``path`` with :func:`os.replace`, so a process
killed mid-write leaves the previous checkpoint intact (at worst a stray ``.<name>.tmp-*`` file).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["FORMAT", "VERSION", "Checkpoint", "load_checkpoint", "restore_model", "save_checkpoint"]

FORMAT = "normlab.checkpoint"
VERSION = 1
_DOC_KEY = "__checkpoint__.json"
_ARRAY_TAG = "__ndarray__"


@dataclass
class Checkpoint:
    """The contents of a checkpoint file.

    Attributes
    ----------
    params, buffers : dict of str to ndarray
        The model's trainable parameters and running statistics.
    model_rng_state : dict or None
        ``model.rng.bit_generator.state`` at save time, if the model had an ``rng``.
    model_config : dict or None
        ``model.get_config()`` at save time, if the model had one.
    state : dict
        Whatever the caller saved as training state (the Solver: counters, histories, optimizer
        state, its Generator's state); arrays inside it come back as arrays.
    config : dict
        The caller's JSON configuration (the Solver's keyword arguments).
    """

    params: dict[str, np.ndarray]
    buffers: dict[str, np.ndarray]
    model_rng_state: dict | None = None
    model_config: dict | None = None
    state: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)


def _encode(obj: Any, arrays: dict[str, np.ndarray], key: str) -> Any:
    """Move arrays out of a nested structure into ``arrays``; return the JSON-able rest."""
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise TypeError(f"cannot checkpoint object array at {key!r} without pickle")
        while key in arrays:
            key += "_"
        arrays[key] = obj
        return {_ARRAY_TAG: key}
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str) or k == _ARRAY_TAG:
                raise TypeError(
                    f"expected str keys other than {_ARRAY_TAG!r} at {key!r}, got {k!r}"
                )
            out[k] = _encode(v, arrays, f"{key}/{k}" if key else k)
        return out
    if isinstance(obj, list | tuple):
        return [_encode(v, arrays, f"{key}/{i}") for i, v in enumerate(obj)]
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot checkpoint {type(obj).__name__} at {key!r}; use arrays and JSON types")


def _decode(obj: Any, arrays: Any) -> Any:
    """Inverse of :func:`_encode`: put the arrays back."""
    if isinstance(obj, dict):
        if set(obj) == {_ARRAY_TAG}:
            return arrays[obj[_ARRAY_TAG]]
        return {k: _decode(v, arrays) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v, arrays) for v in obj]
    return obj


def _write_npz(f, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` to the open binary file ``f`` as an uncompressed npz."""
    np.savez(f, **arrays)


def save_checkpoint(
    path: str | os.PathLike,
    model: Any,
    state: dict | None = None,
    config: dict | None = None,
) -> None:
    """Write the model and the training state to ``path`` atomically.

    Parameters
    ----------
    path : str or PathLike
        Destination, conventionally ending in ``.npz`` (used as given).
    model : object
        Has ``params`` (dict of str to ndarray); optionally ``buffers`` (dict of str to ndarray),
        ``rng`` (``np.random.Generator``) and ``get_config()`` (JSON-able dict).
    state : dict, optional
        Training state: nested dicts/lists of JSON scalars, strings and ndarrays.
    config : dict, optional
        Configuration of the training run, same types as ``state``.

    Raises
    ------
    TypeError
        If something in ``state`` or ``config`` is neither an array nor a JSON type.

    Notes
    -----
    The temporary file lives in the destination directory (so :func:`os.replace` is an atomic
    rename on POSIX and Windows) and is removed if writing fails with an exception.
    """
    rng = getattr(model, "rng", None)
    get_config = getattr(model, "get_config", None)
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "model": {
            "params": {k: np.asarray(v) for k, v in model.params.items()},
            "buffers": {k: np.asarray(v) for k, v in getattr(model, "buffers", {}).items()},
            "rng_state": None if rng is None else rng.bit_generator.state,
            "config": None if get_config is None else get_config(),
        },
        "state": state or {},
        "config": config or {},
    }
    arrays: dict[str, np.ndarray] = {}
    encoded = _encode(doc, arrays, "")
    text = json.dumps(encoded, allow_nan=True, sort_keys=True)
    arrays[_DOC_KEY] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)

    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_npz(f, arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(directory)


def _fsync_dir(directory: str) -> None:
    """Make the rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by :func:`save_checkpoint` (never unpickles).

    Parameters
    ----------
    path : str or PathLike
        The ``.npz`` file.

    Returns
    -------
    checkpoint : Checkpoint
        Arrays are loaded into memory (the file is closed on return).

    Raises
    ------
    ValueError
        If the file is not a normlab checkpoint or has a newer format version.
    """
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    if _DOC_KEY not in arrays:
        raise ValueError(
            f"expected a normlab checkpoint with {_DOC_KEY!r}, got keys {sorted(arrays)}"
        )
    doc = json.loads(arrays.pop(_DOC_KEY).tobytes().decode("utf-8"))
    if doc.get("format") != FORMAT or int(doc.get("version", -1)) > VERSION:
        raise ValueError(
            f"expected format {FORMAT!r} version <= {VERSION}, "
            f"got {doc.get('format')!r} version {doc.get('version')!r}"
        )
    doc = _decode(doc, arrays)
    model = doc["model"]
    return Checkpoint(
        params=model["params"],
        buffers=model["buffers"],
        model_rng_state=model["rng_state"],
        model_config=model["config"],
        state=doc["state"],
        config=doc["config"],
    )


def _check_names(what: str, expected: dict, got: dict) -> None:
    """Raise ValueError unless both dicts have the same keys and array shapes."""
    exp = {k: tuple(np.shape(v)) for k, v in expected.items()}
    have = {k: tuple(np.shape(v)) for k, v in got.items()}
    if exp != have:
        raise ValueError(f"expected {what} {exp} (the model's), got {have} (the checkpoint's)")


def restore_model(checkpoint: Checkpoint, model: Any) -> None:
    """Copy a checkpoint's parameters, buffers and RNG state into ``model`` in place.

    Values are copied into the model's existing arrays (``np.copyto``), so views of them, such as
    a :class:`~normlab.optim.FlatOptimizer`'s, stay valid.

    Parameters
    ----------
    checkpoint : Checkpoint
        From :func:`load_checkpoint`.
    model : object
        With ``params`` (and ``buffers`` / ``rng`` where the checkpoint has them) of the same
        names and shapes.

    Raises
    ------
    ValueError
        If names or shapes differ, or one side has an ``rng`` and the other does not.
    """
    buffers = getattr(model, "buffers", {})
    _check_names("params", model.params, checkpoint.params)
    _check_names("buffers", buffers, checkpoint.buffers)
    rng = getattr(model, "rng", None)
    if (rng is None) != (checkpoint.model_rng_state is None):
        raise ValueError(
            f"expected the checkpoint to {'lack' if rng is None else 'have'} model.rng state "
            f"like the model, got {'none' if checkpoint.model_rng_state is None else 'one'}"
        )
    for k, v in checkpoint.params.items():
        np.copyto(model.params[k], v)
    for k, v in checkpoint.buffers.items():
        if isinstance(buffers[k], np.ndarray):
            np.copyto(buffers[k], v)
        else:
            buffers[k] = v.copy()
    if rng is not None:
        rng.bit_generator.state = checkpoint.model_rng_state
