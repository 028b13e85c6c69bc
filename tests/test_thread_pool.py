"""numba's pool starts at the first parallel kernel with a short OpenMP spin-wait, and the
environment is left as it was (normlab/kernels/_threads.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from normlab.kernels import _threads


@pytest.fixture
def launch(monkeypatch):
    """A fresh start_pool whose pool start records the environment libgomp would read then."""
    seen = []
    monkeypatch.setattr(
        _threads.nb,
        "get_num_threads",
        lambda: seen.append((os.environ.get("GOMP_SPINCOUNT"), os.environ.get("OMP_WAIT_POLICY"))),
    )
    monkeypatch.setattr(_threads, "started", False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    return seen


def test_short_spin_while_the_pool_starts_then_restored(launch):
    _threads.start_pool()
    assert launch == [(_threads.SPINCOUNT, None)]
    assert "GOMP_SPINCOUNT" not in os.environ  # later libraries keep their defaults
    _threads.start_pool()
    assert len(launch) == 1  # once per process


@pytest.mark.parametrize("key", ["GOMP_SPINCOUNT", "OMP_WAIT_POLICY"])
def test_a_users_choice_is_kept(launch, monkeypatch, key):
    value = "ACTIVE" if key == "OMP_WAIT_POLICY" else "123"
    monkeypatch.setenv(key, value)
    _threads.start_pool()
    assert launch == [("123", None) if key == "GOMP_SPINCOUNT" else (None, "ACTIVE")]
    assert os.environ[key] == value


def test_a_failed_start_restores_the_environment(launch, monkeypatch):
    def fail():
        raise RuntimeError("no threading layer")

    monkeypatch.setattr(_threads.nb, "get_num_threads", fail)
    with pytest.raises(RuntimeError, match="no threading layer"):
        _threads.start_pool()
    assert "GOMP_SPINCOUNT" not in os.environ


_PARALLEL_BN = (
    "import numpy as np\n"
    "from normlab.layers import batchnorm_forward\n"
    "from normlab.kernels.norm import PARALLEL_MIN\n"
    "x = np.ones((PARALLEL_MIN // 256, 256), np.float32)\n"
    "batchnorm_forward(x, np.ones(256, np.float32), np.zeros(256, np.float32), {'mode': 'train'})\n"
)


def _run(code: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env["NORMLAB_BACKEND"] = "numba"
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=300)


def test_the_first_parallel_kernel_starts_the_pool_and_leaves_no_variable():
    _run(
        "import os, numba.np.ufunc.parallel as p\n"
        "import normlab.layers\n"
        "assert not p._is_initialized, 'importing normlab started threads'\n"
        + _PARALLEL_BN
        + "assert p._is_initialized, 'pool not started'\n"
        "assert 'GOMP_SPINCOUNT' not in os.environ\n"
    )


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_after_import_runs_parallel_kernels():
    # GNU OpenMP is not fork-safe: numba terminates a forked child that runs a parallel region
    # once its parent has started the pool. Importing normlab must not start it.
    _run(
        "import os\n"
        "import normlab.layers\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        + "".join("    " + line + "\n" for line in _PARALLEL_BN.splitlines())
        + "    os._exit(0)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "assert os.waitstatus_to_exitcode(status) == 0, status\n"
    )


def test_no_thread_returns_before_the_pool_has_started(monkeypatch):
    # A second thread's first parallel kernel must not run before the first thread has started
    # the pool with GOMP_SPINCOUNT set: numba would start it itself, with libgomp's default.
    import threading
    import time

    monkeypatch.setattr(_threads, "started", False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    seen, pool_up, returned_early = [], threading.Event(), []

    def slow_start():
        seen.append(os.environ.get("GOMP_SPINCOUNT"))
        time.sleep(0.05)  # the other thread arrives meanwhile
        pool_up.set()

    def first_kernel():
        _threads.start_pool()
        returned_early.append(not pool_up.is_set())

    monkeypatch.setattr(_threads.nb, "get_num_threads", slow_start)
    threads = [threading.Thread(target=first_kernel) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [_threads.SPINCOUNT]  # started once, with the short spin
    assert returned_early == [False, False]
    assert "GOMP_SPINCOUNT" not in os.environ
