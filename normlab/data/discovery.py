"""Where dataset files are looked for, and how missing ones are downloaded and verified.

**An explicit** ``data_dir`` **is the only place searched.** A caller who names a folder gets
the data from that folder or an error that says what it lacks -- never another copy found
elsewhere, since results and configs record the folder given. If it lacks files and
downloading is allowed, the missing files are downloaded *into that folder* (created if
needed; as torchvision's ``root=..., download=True``), and nothing is written anywhere else.

Without a ``data_dir``, the search order for a dataset ``name`` (the first directory that
holds a complete copy wins) is

1. ``$NORMLAB_DATA/<name>``;
2. the user cache, ``$XDG_CACHE_HOME/normlab/<name>`` or ``~/.cache/normlab/<name>``;
3. system directories from distribution packages, e.g. ``/usr/share/datasets/fashion-mnist``
   (Debian's ``dataset-fashion-mnist``);

and if none has the files and downloading is allowed, they are fetched into the user cache.

Places are searched, reported and returned as absolute paths (a relative ``data_dir`` is
taken relative to the working directory), so an error and a recorded config say exactly
which folder was meant.

Files come from the official mirrors. Each download goes to a temporary file beside its
target, its MD5 is checked against the published value below, and only then is it fsync'ed
and renamed into place (:func:`normlab._io.atomic_write`), so an interrupted or corrupted
download never leaves a file that looks complete. Files found on disk are not checksummed:
distributions recompress them (Debian's Fashion-MNIST ``.gz`` files differ byte-for-byte from
the upstream ones but decompress to the same data), and the format readers validate every
file anyway.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from normlab._io import atomic_write

T = TypeVar("T")

ENV_VAR = "NORMLAB_DATA"
DOWNLOAD_TIMEOUT = 30.0  # seconds without data before a mirror is given up


@dataclass(frozen=True)
class Remote:
    """Download source of a dataset: mirrors tried in order, and ``(filename, md5)`` pairs."""

    mirrors: tuple[str, ...]
    files: tuple[tuple[str, str], ...]


# MD5s as published by the dataset authors and listed in torchvision's MNIST/FashionMNIST.
REMOTES = {
    "mnist": Remote(
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",),
        files=(
            ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
            ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
            ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
            ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"),
        ),
    ),
    "fashion-mnist": Remote(
        mirrors=(
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
            # Plain HTTP (S3 website endpoint); the MD5 check still guards the content.
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        ),
        files=(
            ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
            ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
            ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310"),
        ),
    ),
}

# Directories that distribution packages install datasets into.
SYSTEM_DIRS: dict[str, tuple[Path, ...]] = {
    "fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),),
}

# How a person gets the files when nothing worked, ``{dir}`` being where they must go (the
# explicit data_dir, else $NORMLAB_DATA/<name>); shown in the not-found error. Neutral wording:
# no Python argument or command-line flag names, which the caller adds (see the CLI).
HOW_TO_GET = {
    "mnist": (
        "download train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
        "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz from "
        "https://ossci-datasets.s3.amazonaws.com/mnist/ into {dir}"
    ),
    "fashion-mnist": (
        "download the four *-ubyte.gz files from https://github.com/zalandoresearch/fashion-mnist "
        "(data/fashion/) into {dir}, or run `apt-get install dataset-fashion-mnist` "
        "(Debian/Ubuntu) and use /usr/share/datasets/fashion-mnist"
    ),
    "cifar10": (
        "download cifar-10-python.tar.gz (or the binary version) from "
        "https://www.cs.toronto.edu/~kriz/cifar.html and extract it into {dir}"
    ),
}


def how_to_get(name: str, directory: str | os.PathLike | None = None) -> str:
    """How to get dataset ``name`` into ``directory`` (default ``$NORMLAB_DATA/<name>``)."""
    where = f"${ENV_VAR}/{name}" if directory is None else str(directory)
    return HOW_TO_GET.get(name, "see the normlab.data docs ({dir})").format(dir=where)


class DatasetNotFoundError(FileNotFoundError):
    """No complete copy of a dataset was found or could be downloaded.

    The fields say what happened; ``str(err)`` is the full multi-line message (every place
    looked in with what it lacked, the download outcome and how to get the files), and a caller
    such as the ``normlab`` command formats its own shorter line from the fields, adding its own
    names for ``data_dir`` and ``download`` (the library's wording names neither).

    Parameters
    ----------
    name : str
        The dataset, e.g. ``'mnist'``.
    looked_in : sequence of Path
        Every directory searched, in search order, as absolute paths.
    missing : sequence of str
        What each directory of ``looked_in`` lacked, in the same order
        (e.g. ``'no such directory'``, ``'missing t10k-labels-idx1-ubyte[.gz]'``).
    how_to_get : str
        What to run or download, and where to put the files.
    downloadable : bool, default False
        Whether normlab can download this dataset itself.
    download_dir : Path, optional
        Where a download was tried; None if none was.
    download_error : str, optional
        Why that download failed (every mirror's error); None if none was tried.
    data_dir : Path, optional
        The explicit directory the caller gave, absolute; when set it is the only place
        searched (``looked_in == (data_dir,)``). None: the default places were searched.
    expected : sequence of str, default ()
        What a directory holding the dataset contains, e.g. the four IDX file names.

    Examples
    --------
    >>> err = DatasetNotFoundError("cifar10", [Path("/data")], ["no such directory"], "see docs")
    >>> err.looked_in[0].name, err.download_outcome, isinstance(err, FileNotFoundError)
    ('data', 'cifar10 cannot be downloaded automatically', True)
    """

    def __init__(
        self,
        name: str,
        looked_in=(),
        missing=(),
        how_to_get: str = "",
        downloadable: bool = False,
        download_dir: Path | None = None,
        download_error: str | None = None,
        data_dir: Path | None = None,
        expected=(),
    ):
        self.name = name
        self.looked_in = tuple(Path(d) for d in looked_in)
        self.missing = tuple(missing)
        self.how_to_get = how_to_get
        self.downloadable = downloadable
        self.download_dir = None if download_dir is None else Path(download_dir)
        self.download_error = download_error
        self.data_dir = None if data_dir is None else Path(data_dir)
        self.expected = tuple(expected)
        super().__init__(self._message())

    def __reduce__(self):
        # rebuilt from the fields when it crosses a process boundary (worker pools, Dask)
        fields = (self.name, self.looked_in, self.missing, self.how_to_get, self.downloadable)
        return type(self), (*fields, self.download_dir, self.download_error, self.data_dir,
                            self.expected)  # fmt: skip

    def __str__(self) -> str:
        return self._message()

    @property
    def download_disabled(self) -> bool:
        """True when the dataset could have been downloaded but downloading was turned off."""
        return self.downloadable and self.download_dir is None and self.download_error is None

    @property
    def download_outcome(self) -> str:
        """Why no download helped, as one phrase."""
        if self.download_error is not None:
            return f"download into {self.download_dir} failed: {self.download_error}"
        if self.downloadable:
            return "downloading was turned off, so no download was tried"
        return f"{self.name} cannot be downloaded automatically"

    def _message(self) -> str:
        """The full message: one line per place looked in, the download, how to get it."""
        places = [f"  {d}: {why}" for d, why in zip(self.looked_in, self.missing, strict=True)]
        if self.data_dir is not None:
            head = (
                f"dataset {self.name!r} not found in the directory given (the only one searched):\n"
            )
            tail = ""
        else:
            head = f"dataset {self.name!r} not found. Looked in, in order:\n"
            tail = f"; or set ${ENV_VAR} to a directory holding {self.name}/"
        expected = f"Expected there: {', '.join(self.expected)}\n" if self.expected else ""
        return (
            head
            + "".join(line + "\n" for line in places)
            + expected
            + f"{self.download_outcome}\nTo get it: {self.how_to_get}{tail}."
        )


class ChecksumError(ValueError):
    """A downloaded file's checksum differs from the published one."""


def cache_dir(name: str) -> Path:
    """Return the user cache directory for dataset ``name``.

    Parameters
    ----------
    name : str
        Dataset name, e.g. ``'fashion-mnist'``.

    Returns
    -------
    Path
        ``$XDG_CACHE_HOME/normlab/<name>`` if that variable holds an absolute path
        (as the XDG spec requires), else ``~/.cache/normlab/<name>``.
    """
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "normlab" / name


def candidate_dirs(name: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """List the directories searched for dataset ``name``, in search order.

    Parameters
    ----------
    name : str
        Dataset name.
    data_dir : str or path-like, optional
        An explicit directory: then the only one searched.

    Returns
    -------
    list of Path
        Absolute paths: ``[data_dir]``, or the default places in the order of the module
        docstring.
    """
    if data_dir is not None:
        return [_absolute(data_dir)]
    dirs = []
    if os.environ.get(ENV_VAR):
        dirs.append(_absolute(os.environ[ENV_VAR]) / name)
    dirs.append(cache_dir(name))
    dirs.extend(SYSTEM_DIRS.get(name, ()))
    return dirs


def _absolute(directory: str | os.PathLike) -> Path:
    """``directory`` with ``~`` expanded, made absolute against the working directory."""
    return Path(directory).expanduser().absolute()


def find_dataset(
    name: str,
    probe: Callable[[Path], T],
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    expected: tuple[str, ...] = (),
) -> T:
    """Find dataset ``name`` on disk, downloading it if allowed and needed.

    Parameters
    ----------
    name : str
        Dataset name; a key of :data:`REMOTES` if it can be downloaded.
    probe : callable
        ``probe(directory)`` returns what the loader needs (e.g. the file paths) or raises
        ``FileNotFoundError`` whose message says what is missing there.
    data_dir : str or path-like, optional
        The only place searched, and where a download goes, when given; otherwise the
        default places are searched and a download goes into the user cache.
    download : bool, default True
        Whether to try the mirrors when no directory has the files.
    expected : tuple of str, default ()
        What a complete directory holds, for the error message.

    Returns
    -------
    object
        What ``probe`` returned for the first directory that had the files (called with
        an absolute path).

    Raises
    ------
    DatasetNotFoundError
        Listing every place looked at with the reason, any download errors, and how to get
        the files.
    """
    looked, missing = [], []
    for directory in candidate_dirs(name, data_dir):
        try:
            return probe(directory)
        except FileNotFoundError as err:
            looked.append(directory)
            missing.append(str(err))

    explicit = None if data_dir is None else _absolute(data_dir)
    target = error = None
    if download and name in REMOTES:
        target = cache_dir(name) if explicit is None else explicit
        try:
            fetch(name, target)
            return probe(target)
        except (OSError, ValueError) as err:
            error = str(err) or type(err).__name__
    how = how_to_get(name, explicit)
    raise DatasetNotFoundError(
        name, looked, missing, how, name in REMOTES, target, error, explicit, expected
    )


def fetch(name: str, target: str | os.PathLike, timeout: float = DOWNLOAD_TIMEOUT) -> Path:
    """Download every file of dataset ``name`` that ``target`` lacks, verifying each.

    Parameters
    ----------
    name : str
        A key of :data:`REMOTES`.
    target : str or path-like
        Directory to download into (created if needed).
    timeout : float, default 30.0
        Seconds to wait for a mirror to connect or send data.

    Returns
    -------
    Path
        ``target``.

    Raises
    ------
    OSError
        If some file could be fetched from no mirror; the message lists each attempt.
    """
    remote, target = REMOTES[name], Path(target)
    for filename, md5 in remote.files:
        dest = target / filename
        if dest.is_file():
            continue
        errors = []
        for mirror in remote.mirrors:
            try:
                download_file(mirror + filename, dest, md5, timeout)
                break
            except (OSError, ValueError, http.client.HTTPException) as err:
                errors.append(f"{mirror}{filename}: {_reason(err)}")
        else:
            raise OSError("; ".join(errors))
    return target


def _reason(err: BaseException) -> str:
    """Why a download failed, in words: the socket's reason rather than urllib's wrapper."""
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return str(err.reason)  # e.g. '[Errno -2] Name or service not known'
    return str(err) or type(err).__name__


def download_file(
    url: str, dest: str | os.PathLike, md5: str, timeout: float = DOWNLOAD_TIMEOUT
) -> Path:
    """Download ``url`` to ``dest`` atomically, keeping it only if its MD5 matches.

    Parameters
    ----------
    url : str
        Where to fetch from.
    dest : str or path-like
        Final path; its directory is created if needed.
    md5 : str
        Expected hex MD5 digest of the content.
    timeout : float, default 30.0
        Socket timeout in seconds.

    Returns
    -------
    Path
        ``dest``, complete and verified.

    Raises
    ------
    ChecksumError
        If the content's MD5 differs; nothing is left at ``dest`` or beside it.
    OSError
        On network failure; likewise nothing is left behind.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # atomic_write: dest is either absent or complete and verified, and durable once returned
    with atomic_write(dest) as out:
        digest = hashlib.md5(usedforsecurity=False)
        with _open_url(url, timeout) as response:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != md5:  # raising inside the block discards the temporary file
            raise ChecksumError(
                f"{url}: expected MD5 {md5}, got {digest.hexdigest()}; the file was discarded"
            )
    return dest


def _open_url(url: str, timeout: float):
    """Open ``url`` for reading (the one place that touches the network; tests replace it)."""
    return urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 - fixed https/http URLs
