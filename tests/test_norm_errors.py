"""Bad input at the boundary: a ValueError that says what was expected and what was got."""

import numpy as np
import pytest

from normlab import layers as L

TRAIN = {"mode": "train"}


def _bn(x=None, g=None, b=None, **param):
    x = np.zeros((4, 3)) if x is None else x
    g = np.ones(3) if g is None else g
    b = np.zeros(3) if b is None else b
    return L.batchnorm_forward(x, g, b, {"mode": "train", **param})


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: _bn(x=np.zeros((4, 3, 2))), r"expected x of shape \(N, D\), got \(4, 3, 2\)"),
        (lambda: _bn(g=np.ones(4)), r"expected gamma of shape \(3,\), got \(4,\)"),
        (lambda: _bn(b=np.ones((1, 3))), r"expected beta of shape \(3,\), got \(1, 3\)"),
        (
            lambda: _bn(x=np.zeros((1, 3))),
            r"more than 1 value per channel when training, got "
            r"input of shape \(1, 3\)",
        ),
        (lambda: _bn(eps=0), r"expected eps > 0, got 0"),
        (lambda: _bn(eps=-1e-5), r"expected eps > 0, got -1e-05"),
        (lambda: _bn(momentum=1.5), r"expected momentum in \[0, 1\], got 1.5"),
        (lambda: _bn(momentum=-0.1), r"expected momentum in \[0, 1\], got -0.1"),
        (lambda: _bn(mode="eval"), r"expected mode 'train' or 'test', got 'eval'"),
        (
            lambda: L.batchnorm_forward(np.zeros((4, 3)), np.ones(3), np.zeros(3), {}),
            r"expected 'mode' in the parameter dict",
        ),
        (
            lambda: _bn(running_mean=np.zeros(4)),
            r"expected bn_param\['running_mean'\] a float array of shape \(3,\), got \(4,\)",
        ),
        (
            lambda: _bn(running_var=[1.0, 1.0, 1.0]),
            r"expected bn_param\['running_var'\] a float array of shape \(3,\), got list",
        ),
        (
            lambda: _bn(running_var=np.ones(3, dtype=np.int64)),
            r"a float array of shape \(3,\), got \(3,\) int64",
        ),
        (lambda: _bn(x=np.array([["a", "b", "c"]] * 2)), r"expected x to be a real-valued array"),
        (
            lambda: L.spatial_batchnorm_forward(np.zeros((4, 3)), np.ones(3), np.zeros(3), TRAIN),
            r"expected x of shape \(N, C, H, W\), got \(4, 3\)",
        ),
        (
            lambda: L.spatial_batchnorm_forward(
                np.zeros((1, 3, 1, 1)), np.ones(3), np.zeros(3), TRAIN
            ),
            r"more than 1 value per channel",
        ),
        (
            lambda: L.layernorm_forward(np.zeros((2, 3, 4)), np.ones(3), np.zeros(3), {}),
            r"expected x of shape \(N, D\), got \(2, 3, 4\)",
        ),
        (
            lambda: L.layernorm_forward(np.zeros((2, 3)), np.ones(3), np.zeros(3), {"eps": 0.0}),
            r"expected eps > 0",
        ),
        (
            lambda: L.spatial_groupnorm_forward(
                np.zeros((2, 6, 2, 2)), np.ones(6), np.zeros(6), 4, {}
            ),
            r"expected a number of groups G that divides C=6, got G=4",
        ),
        (
            lambda: L.spatial_groupnorm_forward(
                np.zeros((2, 6, 2, 2)), np.ones(6), np.zeros(6), 0, {}
            ),
            r"divides C=6, got G=0",
        ),
        (
            lambda: L.spatial_groupnorm_forward(
                np.zeros((2, 6, 2, 2)), np.ones((6, 1)), np.zeros(6), 2, {}
            ),
            r"expected gamma of shape \(6,\) or \(1, 6, 1, 1\), got \(6, 1\)",
        ),
        (
            lambda: L.spatial_groupnorm_forward(
                np.zeros((2, 6, 2)), np.ones(6), np.zeros(6), 2, {}
            ),
            r"expected x of shape \(N, C, H, W\), got \(2, 6, 2\)",
        ),
        (
            lambda: L.layernorm_forward(np.zeros((3, 0)), np.ones(0), np.zeros(0), {}),
            r"expected at least one feature \(D > 0\), got input of shape \(3, 0\)",
        ),
        (
            lambda: L.spatial_groupnorm_forward(
                np.zeros((2, 4, 0, 3)), np.ones(4), np.zeros(4), 2, {}
            ),
            r"expected at least one value per group \(C, H, W > 0\), got input of shape "
            r"\(2, 4, 0, 3\)",
        ),
        (
            lambda: L.dropout_forward(np.zeros(3), {"mode": "train", "p": 0}),
            r"expected keep probability p in \(0, 1\], got 0",
        ),
        (
            lambda: L.affine_forward(np.zeros((2, 5)), np.zeros((4, 3)), np.zeros(3)),
            r"x has 5 features per sample \(5,\), w expects 4",
        ),
    ],
)
def test_bad_input_names_what_was_expected(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_backward_checks_its_cache_and_dout(rng):
    x = rng.standard_normal((4, 3))
    out, cache = L.batchnorm_forward(x, np.ones(3), np.zeros(3), TRAIN)
    with pytest.raises(
        ValueError, match=r"expected dout of shape \(4, 3\) \(the input's\), got \(3, 4\)"
    ):
        L.batchnorm_backward_alt(np.ones((3, 4)), cache)
    with pytest.raises(ValueError, match=r"expected dout of shape \(4, 3\)"):
        L.batchnorm_backward(np.ones((3, 4)), cache)
    _, ln_cache = L.layernorm_forward(x, np.ones(3), np.zeros(3), {})
    with pytest.raises(ValueError, match=r"expected the cache of batchnorm_forward"):
        L.batchnorm_backward(np.ones((4, 3)), ln_cache)
    with pytest.raises(ValueError, match=r"expected the cache of a normalization forward"):
        L.layernorm_backward(np.ones((4, 3)), L.affine_forward(x, np.ones((3, 3)), np.ones(3))[1])


@pytest.mark.parametrize("dtype", [np.float16, np.longdouble])
def test_only_float32_and_float64_are_accepted(dtype):
    with pytest.raises(
        ValueError, match=rf"expected x of dtype float32 or float64, got {np.dtype(dtype)}"
    ):
        _bn(x=np.zeros((4, 3), dtype=dtype))


def test_groupnorm_gamma_and_beta_share_a_shape():
    with pytest.raises(
        ValueError, match=r"gamma and beta of the same shape, got \(6,\) and \(1, 6, 1, 1\)"
    ):
        L.spatial_groupnorm_forward(
            np.zeros((2, 6, 2, 2)), np.ones(6), np.zeros((1, 6, 1, 1)), 2, {}
        )


def test_test_mode_accepts_a_single_sample():
    out, _ = L.batchnorm_forward(np.ones((1, 3)), np.ones(3), np.zeros(3), {"mode": "test"})
    assert out.shape == (1, 3) and np.all(np.isfinite(out))


def test_backend_switch_rejects_unknown_names(monkeypatch):
    monkeypatch.setenv("NORMLAB_BACKEND", "cuda")
    with pytest.raises(ValueError, match=r"NORMLAB_BACKEND must be one of \('numba', 'numpy'\)"):
        _bn(x=np.random.default_rng(0).standard_normal((4, 3)))


def test_failed_call_leaves_running_stats_untouched():
    rm = np.arange(3.0)
    with pytest.raises(ValueError):
        _bn(x=np.zeros((1, 3)), running_mean=rm)
    np.testing.assert_array_equal(rm, [0.0, 1.0, 2.0])
