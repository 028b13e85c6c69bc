"""The kernels' on-disk cache notices edits to the helpers they inline from other files."""

import importlib
import os
import pkgutil
import subprocess
import sys
import textwrap

import pytest
from numba.core.dispatcher import Dispatcher

import normlab.kernels
from normlab.kernels._cache import KernelCacheLocator

HELPER = """
import numba as nb

K = 1


@nb.njit(cache=True, inline="always")
def helper(x):
    return x + K
"""

CALLER = """
import numba as nb

from pkg.helper import helper


@nb.njit(cache=True)
def caller(x):
    return helper(x) * 2
"""

RUN = (
    "import pkg.caller as c; v = c.caller(1); "
    "print(v, sum(c.caller.stats.cache_hits.values()), sum(c.caller.stats.cache_misses.values()))"
)


def _run(root):
    """(value, cache hits, cache misses) of ``caller(1)`` in a fresh interpreter."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(root / "cache"), PYTHONPATH=str(root))
    env.pop("NUMBA_CACHE_LOCATOR_CLASSES", None)
    # -B: no .pyc, whose mtime-in-seconds check could miss an edit made within the same second
    res = subprocess.run(
        [sys.executable, "-B", "-c", RUN], env=env, capture_output=True, text=True, check=True
    )
    return tuple(int(v) for v in res.stdout.split())


# Measured with numba 0.68.1: covered, the edited helper gives 2 * (1 + 22) = 46 after a cache
# miss; with plain njit(cache=True) the caller's cached code still returns 2 * (1 + 1) = 4 from a
# cache hit (also with inline="never": numba links the helper's code into the caller's).
@pytest.mark.parametrize(("covered", "after_edit"), [(True, (46, 0, 1)), (False, (4, 1, 0))])
def test_helper_edit_recompiles_the_caller_only_when_covered(tmp_path, covered, after_edit):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    init = "from normlab.kernels._cache import cover\n\ncover(__path__[0])\n"
    # "plain": normlab's locator is registered (for normlab/kernels) but does not cover pkg
    (pkg / "__init__.py").write_text(init if covered else "import normlab.kernels  # noqa\n")
    (pkg / "helper.py").write_text(textwrap.dedent(HELPER))
    (pkg / "caller.py").write_text(textwrap.dedent(CALLER))
    caller_stat = os.stat(pkg / "caller.py")

    assert _run(tmp_path) == (4, 0, 1)  # compiled and cached
    assert _run(tmp_path) == (4, 1, 0)  # loaded from the cache
    (pkg / "helper.py").write_text(textwrap.dedent(HELPER).replace("K = 1", "K = 22"))
    after = os.stat(pkg / "caller.py")
    assert (after.st_mtime_ns, after.st_size) == (caller_stat.st_mtime_ns, caller_stat.st_size)
    assert _run(tmp_path) == after_edit


def _kernel_dispatchers():
    """Every numba dispatcher defined in a module of ``normlab.kernels``."""
    found = {}
    for info in pkgutil.iter_modules(normlab.kernels.__path__, "normlab.kernels."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            for obj in value if isinstance(value, tuple) else (value,):  # norm.Kernel pairs
                if isinstance(obj, Dispatcher):
                    found[id(obj)] = obj
    return [d for d in found.values() if d.py_func.__module__.startswith("normlab.kernels")]


def test_every_kernel_is_cached_by_the_covering_locator():
    dispatchers = _kernel_dispatchers()
    assert len(dispatchers) > 20  # norm's kernels (both variants), _blocks' helpers, loss
    for d in dispatchers:
        impl = getattr(d._cache, "_impl", None)  # numba's NullCache (cache=False) has none
        assert impl is not None, f"{d.py_func.__qualname__}: compile it with njit(cache=True)"
        assert isinstance(impl.locator, KernelCacheLocator), d.py_func.__qualname__
        # never beside the sources: pip uninstall would leave it, hiding a later install
        package = os.path.dirname(os.path.realpath(d.py_func.__code__.co_filename))
        where = os.path.realpath(impl.locator.get_cache_path())
        assert os.path.commonpath([package, where]) != package, (d.py_func.__qualname__, where)


def test_a_numba_locator_override_fails_at_import():
    env = dict(os.environ, NUMBA_CACHE_LOCATOR_CLASSES="UserProvidedCacheLocator")
    res = subprocess.run(
        [sys.executable, "-c", "import normlab.kernels"], env=env, capture_output=True, text=True
    )
    assert res.returncode != 0 and "NUMBA_CACHE_LOCATOR_CLASSES" in res.stderr, res.stderr
