"""Checkpoints: one ``.npz`` of plain arrays plus a JSON document, written atomically.

Layout of the file (readable with ``np.load(path, allow_pickle=False)``):

- ``__checkpoint__.json``: a uint8 array holding a UTF-8 JSON document with every scalar, list and
  string of the checkpoint (format version, model config, solver config, counters, histories,
  RNG states, optimizer hyperparameters).  Wherever the document had an array it holds
  ``{"__ndarray__": key}``;
- ``key``: that array, e.g. ``model/params/W1``, ``model/buffers/running_mean``,
  ``solver/optimizer/config/m``.

A Solver's ``state`` is its :class:`~normlab.train_state.TrainState` fields plus ``optimizer``,
the :meth:`~normlab.optimizer.Optimizer.state_dict` (``rule`` and per-parameter ``configs``).
Version 1 files (written before the optimizer became one object) stored that state as ``kind``
``"flat"`` (one array per state key over all parameters) or ``"per_param"``; they are read into
today's layout by :func:`_upgrade_v1`.

No object arrays and no pickle anywhere.  The file is written with
:func:`normlab._io.atomic_write` (a temporary file in the same directory, fsync'ed, then moved over
``path`` with :func:`os.replace`), so a process killed mid-write leaves the previous checkpoint
intact (at worst a stray ``.<name>.tmp-*`` file).
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from normlab._io import atomic_write

__all__ = [
    "FORMAT",
    "VERSION",
    "Checkpoint",
    "check_arrays",
    "check_restore",
    "check_rng_state",
    "load_checkpoint",
    "restore_model",
    "save_checkpoint",
]

FORMAT = "normlab.checkpoint"
VERSION = 2  # 2: the optimizer state as per-parameter configs (1: also 'flat')
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
    Written with :func:`normlab._io.atomic_write`: ``path`` holds either the previous file or the
    complete new one, with the usual permissions (``0o666`` minus the umask).
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

    with atomic_write(path) as f:
        _write_npz(f, arrays)


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
    FileNotFoundError
        If there is no such file.
    ValueError
        ``"<path> is not a normlab checkpoint (<why>)"`` for anything else: a text file, a
        ``.npy``, a truncated zip or one whose CRCs do not match, an ``.npz`` without the JSON
        document or with object arrays; or a newer format version.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":  # np.savez writes a zip; anything else would reach pickle advice
        raise _not_a_checkpoint(path, f"expected a zip (.npz) file, got first bytes {magic!r}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if _DOC_KEY not in npz.files:  # before reading any array of a foreign file
                raise _not_a_checkpoint(
                    path, f"expected an entry {_DOC_KEY!r}, got {sorted(npz.files)}"
                )
            corrupt = npz.zip.testzip()  # CRCs: reading an entry alone does not check them
            if corrupt is not None:
                raise _not_a_checkpoint(path, f"entry {corrupt!r} is corrupt (CRC mismatch)")
            arrays = {k: _read_entry(npz, k, path) for k in npz.files}
    except (zipfile.BadZipFile, EOFError) as err:
        raise _not_a_checkpoint(path, f"not a readable zip file: {err}") from None
    try:
        doc = json.loads(arrays.pop(_DOC_KEY).tobytes().decode("utf-8"))
    except ValueError as err:  # UnicodeDecodeError, JSONDecodeError
        raise _not_a_checkpoint(path, f"unreadable {_DOC_KEY}: {err}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise _not_a_checkpoint(path, f"expected format {FORMAT!r}, got {got!r}")
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise _not_a_checkpoint(path, f"expected an integer format version, got {version!r}")
    if version < 1:
        raise _not_a_checkpoint(path, f"expected a format version >= 1, got {version}")
    if version > VERSION:
        raise ValueError(
            f"{path}: expected a normlab checkpoint of format version <= {VERSION}, got version "
            f"{version!r}; it was written by a newer normlab"
        )
    try:
        doc = _decode(doc, arrays)
        if version == 1:
            _upgrade_v1(doc["state"])
        model = doc["model"]
        return Checkpoint(
            params=dict(model["params"]),
            buffers=dict(model["buffers"]),
            model_rng_state=model["rng_state"],
            model_config=model["config"],
            state=doc["state"],
            config=doc["config"],
        )
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise _not_a_checkpoint(path, f"incomplete document: missing or malformed {err}") from None


def _upgrade_v1(state: dict) -> None:
    """Rewrite a version-1 Solver state in place into today's layout (other states: as is)."""
    opt = state.get("optimizer")
    if not isinstance(opt, dict) or "kind" not in opt:
        return
    state.pop("batch_size", None)  # also in the config, where resume compares it
    state.setdefault("best_buffers", {})  # the first version-1 files had none
    if opt["kind"] not in ("flat", "per_param"):
        raise ValueError(f"optimizer state of kind {opt['kind']!r}")
    configs = opt.get("configs")
    if opt["kind"] == "flat":  # one (P,) array per state key: split into the parameters'
        config, configs, lo = opt["config"], {}, 0
        for name, shape in zip(opt["names"], opt["shapes"], strict=True):
            hi = lo + math.prod(shape)
            configs[name] = {
                k: (v[lo:hi].reshape(shape).copy() if isinstance(v, np.ndarray) else v)
                for k, v in config.items()
            }
            lo = hi
    state["optimizer"] = {"rule": opt.get("rule"), "configs": configs}


def _read_entry(npz, key: str, path: str) -> np.ndarray:
    """One array of an open npz; a ValueError of :func:`load_checkpoint`'s kind if unreadable."""
    try:
        return npz[key]
    except (ValueError, EOFError, zipfile.BadZipFile):  # object array, bad .npy header or CRC
        raise _not_a_checkpoint(path, f"entry {key!r} is not a readable plain array") from None


def _not_a_checkpoint(path: str, why: str) -> ValueError:
    """The error of :func:`load_checkpoint` for a file that is no normlab checkpoint."""
    return ValueError(f"{path} is not a normlab checkpoint ({why})")


def check_arrays(what: str, expected: dict, got: dict) -> None:
    """Raise ValueError unless both dicts have the same keys, array shapes and dtypes.

    Parameters
    ----------
    what : str
        How the message names them (``'params'``).
    expected : dict of str to ndarray
        The model's (or solver's) arrays.
    got : dict of str to ndarray
        The checkpoint's.
    """
    exp = {k: tuple(np.shape(v)) for k, v in expected.items()}
    have = {k: tuple(np.shape(v)) for k, v in got.items()}
    if exp != have:
        raise ValueError(f"expected {what} {exp} (the model's), got {have} (the checkpoint's)")
    differ = [k for k in exp if np.asarray(expected[k]).dtype != np.asarray(got[k]).dtype]
    if differ:
        raise ValueError(
            f"expected {what} of dtypes "
            + str({k: np.asarray(expected[k]).dtype.name for k in differ})
            + " (the model's), got "
            + str({k: np.asarray(got[k]).dtype.name for k in differ})
            + " (the checkpoint's); build the model with the checkpoint's dtype"
        )


def check_rng_state(what: str, rng: np.random.Generator, state: Any) -> None:
    """Raise ValueError unless ``state`` can be loaded into ``rng``'s bit generator.

    Tried on a fresh bit generator of the same type, so ``rng`` itself is not touched.
    """
    kind = type(rng.bit_generator)
    try:
        kind().state = state
    except (TypeError, ValueError, KeyError) as err:
        got = state.get("bit_generator") if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"expected {what} of a {kind.__name__} bit generator, got {got!r} ({err})"
        ) from None


def check_restore(checkpoint: Checkpoint, model: Any) -> None:
    """Raise ValueError unless :func:`restore_model` can restore ``checkpoint`` into ``model``.

    Checks names, shapes and dtypes of the parameters and buffers and the ``rng`` state; it
    modifies nothing.
    """
    check_arrays("params", model.params, checkpoint.params)
    _check_counts(getattr(model, "buffers", {}), checkpoint.buffers)
    check_arrays("buffers", getattr(model, "buffers", {}), checkpoint.buffers)
    rng = getattr(model, "rng", None)
    if (rng is None) != (checkpoint.model_rng_state is None):
        raise ValueError(
            f"expected the checkpoint to {'lack' if rng is None else 'have'} model.rng state "
            f"like the model, got {'none' if checkpoint.model_rng_state is None else 'one'}"
        )
    if rng is not None:
        check_rng_state("model.rng state", rng, checkpoint.model_rng_state)


_COUNT = "num_batches_tracked"  # a batch norm's count of momentum=None (normlab.models)


def _check_counts(expected: dict, got: dict) -> None:
    """Raise ValueError, saying why, when only one side keeps batch norm's batch counts.

    A model whose batch norm has ``momentum=None`` (a cumulative average: the n-th batch
    weighs 1/n) keeps ``num_batches_tracked{i}``; without the count the next update's weight is
    unknown, so a checkpoint lacking it (saved before normlab saved it, or from a model with a
    numeric momentum) is refused rather than restarted at 0. Other differences are
    :func:`check_arrays`'s to report.
    """
    lacking = sorted(k for k in expected if k.startswith(_COUNT) and k not in got)
    if lacking:
        raise ValueError(
            f"the checkpoint lacks the buffers {lacking} of the model: its batch norm averages "
            "with momentum=None (the n-th batch weighs 1/n), which needs the count n of the "
            "batches averaged so far, and the checkpoint has none (it was saved by a normlab "
            "that did not save the count, or from a model with a numeric momentum); load it "
            "into a model built with a numeric momentum, as an exponential average from here"
        )
    extra = sorted(k for k in got if k.startswith(_COUNT) and k not in expected)
    if extra:
        raise ValueError(
            f"the checkpoint holds the buffers {extra}, which the model lacks: it was saved "
            "from a batch norm with momentum=None (a cumulative average); build the model with "
            "norm_options={'momentum': None}, as its saved config says"
        )


def restore_model(checkpoint: Checkpoint, model: Any, *, validate: bool = True) -> None:
    """Copy a checkpoint's parameters, buffers and RNG state into ``model`` in place.

    Values are copied into the model's existing arrays (``np.copyto``): the model keeps its
    arrays (and a normlab model its one parameter buffer). ``validate=False`` skips
    :func:`check_restore` for a caller that has run it. Everything is validated first
    (:func:`check_restore`): on a ValueError the model is unchanged.

    Parameters
    ----------
    checkpoint : Checkpoint
        From :func:`load_checkpoint`.
    model : object
        With ``params`` (and ``buffers`` / ``rng`` where the checkpoint has them) of the same
        names, shapes and dtypes.

    Raises
    ------
    ValueError
        If names, shapes or dtypes differ (a float64 checkpoint is not cast into a float32
        model: build the model with the checkpoint's dtype), or one side has an ``rng`` and the
        other does not, or the ``rng`` states are of different bit generators. A model whose
        batch norm uses ``momentum=None`` needs the checkpoint's ``num_batches_tracked{i}``
        buffers (the count of its cumulative average); a checkpoint without them is refused,
        with the reason.
    """
    if validate:  # False: the caller ran check_restore already
        check_restore(checkpoint, model)
    buffers = getattr(model, "buffers", {})
    for k, v in checkpoint.params.items():
        np.copyto(model.params[k], v)
    for k, v in checkpoint.buffers.items():
        if isinstance(buffers[k], np.ndarray):
            np.copyto(buffers[k], v)
        else:
            buffers[k] = v.copy()
    rng = getattr(model, "rng", None)
    if rng is not None:
        rng.bit_generator.state = checkpoint.model_rng_state
