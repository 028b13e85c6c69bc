"""numba's pool starts with a short OpenMP spin-wait, and the environment is left as it was
(normlab/kernels/_pool.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from normlab.kernels import _pool


@pytest.fixture
def launch(monkeypatch):
    """Replace the pool start by a recorder of the environment libgomp would read then."""
    seen = []
    monkeypatch.setattr(
        _pool.nb,
        "get_num_threads",
        lambda: seen.append((os.environ.get("GOMP_SPINCOUNT"), os.environ.get("OMP_WAIT_POLICY"))),
    )
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    return seen


def test_short_spin_while_the_pool_starts_then_restored(launch):
    _pool.start_pool()
    assert launch == [(_pool.SPINCOUNT, None)]
    assert "GOMP_SPINCOUNT" not in os.environ  # later libraries keep their defaults


@pytest.mark.parametrize("key", ["GOMP_SPINCOUNT", "OMP_WAIT_POLICY"])
def test_a_users_choice_is_kept(launch, monkeypatch, key):
    value = "ACTIVE" if key == "OMP_WAIT_POLICY" else "123"
    monkeypatch.setenv(key, value)
    _pool.start_pool()
    assert launch == [("123", None) if key == "GOMP_SPINCOUNT" else (None, "ACTIVE")]
    assert os.environ[key] == value


def test_a_failed_start_restores_the_environment(monkeypatch):
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)

    def fail():
        raise RuntimeError("no threading layer")

    monkeypatch.setattr(_pool.nb, "get_num_threads", fail)
    with pytest.raises(RuntimeError, match="no threading layer"):
        _pool.start_pool()
    assert "GOMP_SPINCOUNT" not in os.environ


def test_importing_the_kernels_starts_the_pool_and_leaves_no_variable():
    code = (
        "import os, numba.np.ufunc.parallel as p\n"
        "assert not p._is_initialized\n"
        "import normlab.kernels\n"
        "assert p._is_initialized, 'pool not started'\n"
        "assert 'GOMP_SPINCOUNT' not in os.environ\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
