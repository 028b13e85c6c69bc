"""Atomic file writes: a temporary file beside the target, synced, then renamed over it.

Used by the checkpoints (:mod:`normlab.checkpoint`), the dataset downloads
(:mod:`normlab.data.discovery`) and the files of an output folder (:mod:`normlab.report`), so
that a process killed mid-write leaves either the previous file or the new one, never a torn one
(at worst a stray hidden ``.<name>.tmp-*`` file). Also the strict-JSON form of results
(:func:`json_safe`) and the error of a run that would replace an earlier one
(:class:`OutputExistsError`).
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
from collections.abc import Iterator
from typing import BinaryIO


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Open a temporary file for writing ``path``; on success it replaces ``path`` atomically.

    The temporary file lives in ``path``'s directory (so :func:`os.replace` is a rename within
    one file system) and is created with mode ``0o666`` minus the umask, like ``open(path,
    'wb')`` would (:func:`tempfile.mkstemp` would give ``0o600``). When the ``with`` block ends
    normally the file is flushed and fsync'ed, renamed over ``path`` and the directory fsync'ed,
    so the rename survives a power cut; if it raises, the temporary file is removed and ``path``
    is untouched.

    Parameters
    ----------
    path : str or PathLike
        The destination; its directory must exist.

    Yields
    ------
    f : binary file
        Write the new contents to it.

    Examples
    --------
    >>> with atomic_write("out.bin") as f:  # doctest: +SKIP
    ...     f.write(b"all or nothing")
    """
    directory, name = os.path.split(os.path.abspath(os.fspath(path)))
    fd, tmp = _create_beside(directory, name)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def _create_beside(directory: str, name: str) -> tuple[int, str]:
    """Create a new hidden ``.<name>.tmp-<random>`` file (mode 0o666 & ~umask); fd and path."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(directory, f".{name}.tmp-{secrets.token_hex(4)}")
        try:
            return os.open(tmp, flags, 0o666), tmp  # the kernel applies the umask
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file for {name!r} in {directory}")


def fsync_dir(directory: str | os.PathLike) -> None:
    """Make a rename in ``directory`` durable (POSIX); a no-op where directories can't be opened."""
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


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_write`."""
    with atomic_write(path) as f:
        f.write(text.encode("utf-8"))


def json_safe(obj):
    """``obj`` with NaN and infinities replaced by None and tuples by lists (strict JSON)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


class OutputExistsError(FileExistsError):
    """A run would replace what an earlier run wrote at ``path`` (a checkpoint, a results folder).

    Attributes
    ----------
    path : str
        The existing checkpoint file or output folder.
    what : str
        ``"checkpoint"`` or ``"output folder"``, for the message.
    """

    def __init__(self, path: str | os.PathLike, what: str) -> None:
        self.path, self.what = os.fspath(path), what
        super().__init__(
            f"{what} {self.path} already holds a previous run; resume it or overwrite it"
        )
