"""float32 kernels at the edges of the exponent range, against float64 NumPy math.

Every input, output and gradient here is a normal float32 number, yet the squares of the
deviations (|x - mean| ~ 1e19 and above, or ~1e-19 and below) and coefficients of order
``1 / var`` leave float32's range. The kernels must keep such products in float64 or apply
``rstd`` twice, so that their results stay within a few float32 roundings of the reference.
"""

import numpy as np
import pytest
from _layers import layer_calls

SHAPES = {
    "batchnorm": (64, 20),
    "spatial": (8, 6, 5, 5),
    "layernorm": (6, 5000),  # rows longer than one 4096-value block
    "groupnorm": (4, 6, 5, 5),
}
# |x| ~ scale (a common offset of 3 standard deviations) with this eps: 1e-5 is negligible
# against var ~ 1e38; against var ~ 1e-40 it would not be, so the small scales use 1e-45.
SCALES = [(1e19, 1e-5), (1e20, 1e-5), (1e25, 1e-5), (1e30, 1e-5), (1e-20, 1e-45), (1e-22, 1e-45)]
# max|kernel - reference| / max|reference|; ordinary inputs give ~1e-7 (the kernels before
# this test: dx off by 2e-6 at 1e20, by 0.1 at 1e25, non-finite at 1e-20; out off 1e-3 at 1e-22)
RTOL = 1e-6


def _run(layer, x, gamma, beta, dy, eps):
    fwd, bwd, extra = layer_calls(layer)
    extra = tuple(dict(e, eps=eps) if isinstance(e, dict) else e for e in extra)
    if layer in ("batchnorm", "spatial"):  # float64 running statistics: float32 ones would
        C = x.shape[1]  # overflow at these scales and are refused (the test at the end)
        extra[0].update(running_mean=np.zeros(C), running_var=np.zeros(C))
    out, cache = fwd(x, gamma, beta, *extra)
    return (out, *bwd(dy, cache))


@pytest.mark.parametrize("scale, eps", SCALES, ids=[f"{s:.0e}" for s, _ in SCALES])
@pytest.mark.parametrize("layer", list(SHAPES))
def test_float32_kernels_match_float64_math_at_extreme_scales(monkeypatch, layer, scale, eps):
    rng = np.random.default_rng(2024)
    shape = SHAPES[layer]
    C = shape[1]
    x = (scale * (3 + rng.standard_normal(shape))).astype(np.float32)
    gamma = (1 + 0.5 * rng.standard_normal(C)).astype(np.float32)
    beta = rng.standard_normal(C).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    monkeypatch.setenv("NORMLAB_BACKEND", "numba")
    got = _run(layer, x, gamma, beta, dy, eps)
    monkeypatch.setenv("NORMLAB_BACKEND", "numpy")
    f64 = [a.astype(np.float64) for a in (x, gamma, beta, dy)]
    want = _run(layer, *f64, eps)
    for name, g, w in zip(("out", "dx", "dgamma", "dbeta"), got, want, strict=True):
        assert g.dtype == np.float32, name
        assert np.all(np.isfinite(g)), f"{name} is not finite"
        err = np.max(np.abs(g.astype(np.float64) - w)) / np.max(np.abs(w))
        assert err <= RTOL, f"{name}: max error {err:.1e} of max |value|"


@pytest.mark.parametrize("layer", ["batchnorm", "instancenorm"])
def test_running_statistics_that_would_overflow_float32_are_refused(layer):
    """float64 statistics of inputs ~1e20 fit, their float32 running variance would not."""
    from normlab.layers import (
        NonFiniteStatisticsError,
        batchnorm_forward,
        spatial_instancenorm_forward,
    )

    rng = np.random.default_rng(0)
    C = 3
    rm, rv = np.zeros(C, np.float32), np.ones(C, np.float32)
    if layer == "batchnorm":
        x = (rng.standard_normal((8, C)) * 1e20).astype(np.float32)
        p = {"mode": "train", "running_mean": rm, "running_var": rv}
        call = lambda: batchnorm_forward(x, np.ones(C, np.float32), np.zeros(C, np.float32), p)  # noqa: E731
    else:
        x = (rng.standard_normal((4, C, 3, 3)) * 1e20).astype(np.float32)
        p = {"mode": "train", "track_running_stats": True, "running_mean": rm, "running_var": rv}
        call = lambda: spatial_instancenorm_forward(  # noqa: E731
            x, np.ones(C, np.float32), np.zeros(C, np.float32), p
        )
    with pytest.raises(NonFiniteStatisticsError, match="would overflow float32"):
        call()
    np.testing.assert_array_equal(rm, 0.0)  # nothing written, not even the finite means
    np.testing.assert_array_equal(rv, 1.0)
