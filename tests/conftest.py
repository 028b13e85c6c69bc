import numpy as np
import pytest


@pytest.fixture(params=["numba", "numpy"])
def backend(request, monkeypatch):
    """Run a test on both the fused kernels and the NumPy reference path."""
    monkeypatch.setenv("NORMLAB_BACKEND", request.param)
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
