import contextlib
import io
from types import SimpleNamespace

import numpy as np
import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(scope="session", autouse=True)
def one_blas_thread():
    """The BLAS on one thread in this process for the whole session (the local workers of a
    sweep already run so). The tests' matrix products are small: on two cores, two BLAS threads
    spin and wait on each other, and on a loaded machine they made every in-process training
    run several times slower (the suite's CPU time halved with one thread). The results do not
    depend on it: a test comparing runs across thread counts asks for
    :func:`default_blas_threads`. Yields the limiter."""
    limiter = threadpool_limits(limits=1, user_api="blas")
    yield limiter
    limiter.restore_original_limits()


@pytest.fixture
def default_blas_threads(one_blas_thread):
    """The BLAS's own thread count for one test, as a user's process has it."""
    one_blas_thread.restore_original_limits()
    yield
    threadpool_limits(limits=1, user_api="blas")


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """One ``normlab demo --quick --seed 3 --diagnostics 0``, shared by the tests that read it
    (test_cli, test_experiments, test_report): ``rc``, its ``out`` folder, ``stdout`` and
    ``stderr``. Copy the folder before changing anything in it. Without the demo's default
    diagnostics: test_report redraws this folder several times, and drawing the diagnostics
    figures (tests/test_diagnostics_report.py) would be most of their time."""
    from normlab.cli import main

    out = tmp_path_factory.mktemp("demo-run") / "demo"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main(["demo", "--quick", "--out", str(out), "--seed", "3", "--diagnostics", "0"])
    return SimpleNamespace(rc=rc, out=out, stdout=stdout.getvalue(), stderr=stderr.getvalue())


@pytest.fixture(params=["numba", "numpy"])
def backend(request, monkeypatch):
    """Run a test on both the fused kernels and the NumPy reference path."""
    monkeypatch.setenv("NORMLAB_BACKEND", request.param)
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
