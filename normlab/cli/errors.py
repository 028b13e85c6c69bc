"""What the ``normlab`` command reports as the user's error, and how: one line, from the fields.

A user error ends the command with one line on stderr, ``normlab: error: ...``, and exit
status 2 (``NORMLAB_DEBUG=1`` raises it instead, with its traceback). Anything else is a bug
in normlab and propagates with its traceback (exit status 1): a ``TypeError`` from deep in a
run is never dressed up as a bad argument. The user's errors (:data:`USER_ERRORS`) are

- :class:`UsageError`: a bad command line that argparse cannot see (``--resume`` without
  ``--checkpoint``, a ``--data-dir`` that does not exist);
- ``ValueError``: by normlab's convention the library raises it at its public boundary for bad
  settings or bad files, with the fix in the message (configs, dataset files, checkpoints,
  ``results.json``); ``ChecksumError`` is one;
- :class:`~normlab.data.DatasetNotFoundError`, printed from its fields (:func:`one_line`);
- the errors of a path the user named: ``FileNotFoundError`` (no checkpoint, no
  ``results.json``), ``FileExistsError``, ``IsADirectoryError``, ``NotADirectoryError``,
  ``PermissionError``; :class:`~normlab._io.OutputExistsError` (a checkpoint or output folder
  of an earlier run) is printed with the flags that resume or replace it;
- ``ConnectionError``: the Dask scheduler of ``--scheduler`` cannot be reached;
- :class:`~normlab.data.RefusedGlobalError`: a CIFAR pickle that tries to load code;
- ``FloatingPointError`` (the Solver's ``NonFiniteLossError``): the loss diverged, printed
  with the usual advice.
"""

from __future__ import annotations

from normlab._io import OutputExistsError
from normlab.data import DatasetNotFoundError, RefusedGlobalError
from normlab.data.discovery import ENV_VAR


class UsageError(Exception):
    """A bad command line that argparse cannot see, reported as one line."""


PATH_ERRORS = (
    FileNotFoundError,
    FileExistsError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)
USER_ERRORS = (
    UsageError,
    ValueError,
    *PATH_ERRORS,
    ConnectionError,
    RefusedGlobalError,
    FloatingPointError,
)


def one_line(err: BaseException) -> str:
    """The line printed after ``normlab: error:`` for a user error ``err``."""
    if isinstance(err, DatasetNotFoundError):
        return _not_found(err)
    if isinstance(err, OutputExistsError):
        return (
            f"{err.what} {err.path} already holds a previous run; pass --resume to continue "
            "it or --overwrite to replace it"
        )
    if isinstance(err, FloatingPointError):
        return f"training diverged: {_flat(str(err))}; try a smaller learning rate"
    return _flat(str(err)) or type(err).__name__


def _not_found(err: DatasetNotFoundError) -> str:
    """Where the dataset was looked for, why a download failed, how to get it: one line."""
    download = f"; {_flat(err.download_outcome)}" if err.download_error is not None else ""
    if err.download_disabled:
        download = "; --no-download was given, so nothing was downloaded"
    if err.data_dir is not None:  # the only folder searched: say what it must hold
        return (
            f"dataset {err.name!r} not found in --data-dir {err.data_dir} (the only folder "
            f"searched; it must hold {', '.join(err.expected)}){download}. To get it: "
            f"{err.how_to_get}."
        )
    return (
        f"dataset {err.name!r} not found (looked in {', '.join(map(str, err.looked_in))})"
        f"{download}. To get it: {err.how_to_get}; or pass --data-dir DIR (the folder holding "
        f"the files) or set ${ENV_VAR} to a directory holding {err.name}/."
    )


def _flat(text: str) -> str:
    """``text``'s non-blank lines, stripped and joined by ``'; '``."""
    return "; ".join(line.strip() for line in text.strip().splitlines() if line.strip())
