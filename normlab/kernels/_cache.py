"""numba's on-disk cache, keyed on every source file of the kernels rather than one.

Why. ``njit(cache=True)`` stamps a function's cached machine code with its *own* source file (a
content hash in numba 0.68; mtime and size before). The kernels of ``norm.py`` inline helpers from
``_blocks.py``: after an edit to ``_blocks.py`` the stamp of ``norm.py`` is unchanged, numba
loads the old machine code, and an editable install silently runs stale kernels.

How. :func:`cover` puts :class:`KernelCacheLocator` first in numba's list of cache locators. For a
function whose source file lies in a covered directory it wraps the locator numba would have
chosen -- except that it prefers numba's user-wide cache (``NUMBA_CACHE_DIR``, else
``~/.cache/numba``) to ``__pycache__`` beside the sources, so that nothing is written into an
installed package that ``pip uninstall`` would leave behind -- and adds to its stamp a hash of
every ``.py`` file in that directory and below; for any other function it declines, and numba goes
on as usual. An edit to any kernel file therefore recompiles every kernel of the package on its
next use.
``normlab/kernels/__init__.py`` covers its own directory, so every ``njit(cache=True)`` in
``normlab.kernels`` is covered, whatever module it is in, with nothing to add there.

What it relies on in numba (checked below: a numba without it fails at import, never runs stale
code): ``numba.core.caching.CacheImpl._locator_classes``, the list of locator classes whose
``from_function(py_func, py_file)`` numba tries in order when a function is decorated with
``cache=True``; the ``_CacheLocator`` interface (``get_cache_path``, ``get_source_stamp``, any
picklable value compared with ``!=`` to the one saved in the cache index, and
``get_disambiguator``); and ``NUMBA_CACHE_LOCATOR_CLASSES`` being unset (it replaces the list).
A directory must be covered before its modules are imported, since numba picks the locator and
takes the stamp when the decorator runs. A numba that kept these names but stopped using them
would pass the import check: ``tests/test_kernel_cache.py`` then fails (it checks every kernel's
locator and that a helper edit recompiles its caller). The files are hashed once per process,
memoised on their mtimes and sizes.
"""

from __future__ import annotations

import functools
import hashlib
import os

import numba
from numba.core import config

try:
    from numba.core.caching import CacheImpl, _CacheLocator

    _LOCATORS = CacheImpl._locator_classes
except (ImportError, AttributeError) as e:  # pragma: no cover - depends on the numba version
    raise ImportError(
        f"normlab.kernels keys numba's on-disk cache on all of its files through "
        f"numba.core.caching.CacheImpl._locator_classes and _CacheLocator, which numba "
        f"{numba.__version__} does not have; install one that does (written for numba 0.68)"
    ) from e

_METHODS = ("from_function", "get_cache_path", "get_source_stamp", "get_disambiguator")
if not isinstance(_LOCATORS, list) or not all(
    hasattr(c, m) for c in (_CacheLocator, *_LOCATORS) for m in _METHODS
):  # pragma: no cover - depends on the numba version
    raise ImportError(
        f"numba {numba.__version__} changed its cache locators (CacheImpl._locator_classes); "
        "normlab.kernels cannot key its kernels' cache on all of their files"
    )

_COVERED: list[str] = []  # real paths of the covered directories
_DEFAULTS = tuple(_LOCATORS)  # numba's own locators, which KernelCacheLocator wraps
# ... the one that writes beside the sources last: a cache in site-packages/normlab/kernels/
# __pycache__ outlives `pip uninstall` (pip removes only the files it installed), and the
# leftover folder then hides a later (editable) install of normlab as an empty namespace package
_IN_TREE = getattr(numba.core.caching, "InTreeCacheLocator", None)
_PREFERRED = tuple(c for c in _DEFAULTS if c is not _IN_TREE) + ((_IN_TREE,) if _IN_TREE else ())


def _sources(directory: str) -> tuple:
    """(relative path, mtime_ns, size) of every .py file under ``directory``, sorted."""
    found = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            if name.endswith(".py"):
                st = os.stat(os.path.join(root, name))
                rel = os.path.relpath(os.path.join(root, name), directory)
                found.append((rel, st.st_mtime_ns, st.st_size))
    return tuple(sorted(found))


@functools.lru_cache(maxsize=16)
def _hash(directory: str, sources: tuple) -> str:
    """SHA-256 of the names and contents of ``sources`` (memoised on their mtimes and sizes)."""
    h = hashlib.sha256()
    for rel, _, _ in sources:
        with open(os.path.join(directory, rel), "rb") as f:
            data = f.read()
        h.update(f"{rel}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def source_digest(directory: str) -> str:
    """The hash of every ``.py`` file under ``directory``: part of its kernels' cache stamp."""
    directory = os.path.realpath(directory)
    return _hash(directory, _sources(directory))


def _covering(py_file: str) -> str | None:
    """The covered directory that holds ``py_file``, or None."""
    path = os.path.realpath(py_file)
    for d in _COVERED:
        if os.path.commonpath([d, path]) == d:
            return d
    return None


class KernelCacheLocator(_CacheLocator):
    """numba's own locator of a function in a covered directory, its stamp covering them all."""

    def __init__(self, inner: _CacheLocator, directory: str) -> None:
        self._inner = inner
        self._directory = directory

    @classmethod
    def from_function(cls, py_func, py_file):
        directory = _covering(py_file)
        if directory is None:
            return None  # not a kernel: numba's next locator takes it
        for locator in _PREFERRED:
            inner = locator.from_function(py_func, py_file)
            if inner is not None:
                return cls(inner, directory)
        return None  # numba raises "no locator available", as it would have

    def get_cache_path(self):
        return self._inner.get_cache_path()

    def get_source_stamp(self):
        return (self._inner.get_source_stamp(), source_digest(self._directory))

    def get_disambiguator(self):
        return self._inner.get_disambiguator()


def cover(directory: str) -> None:
    """Key the on-disk cache of every numba function defined under ``directory`` on all of its
    ``.py`` files. Call it before importing the modules that define them.

    Raises
    ------
    ImportError
        When ``NUMBA_CACHE_LOCATOR_CLASSES`` is set: numba then ignores the locator list.
    """
    if getattr(config, "CACHE_LOCATOR_CLASSES", None):
        raise ImportError(
            "NUMBA_CACHE_LOCATOR_CLASSES is set, so numba would cache normlab's kernels without "
            "noticing edits to the helpers they inline; unset it"
        )
    directory = os.path.realpath(directory)
    if directory not in _COVERED:
        _COVERED.append(directory)
    if KernelCacheLocator not in _LOCATORS:
        _LOCATORS.insert(0, KernelCacheLocator)
