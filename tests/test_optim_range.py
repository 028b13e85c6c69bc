"""Update rules at the ends of the float range: steps equal the float64 rule's, kernels == rules."""

import numpy as np
import pytest

from normlab.optim import STATE_KEYS
from normlab.optimizer import Optimizer

STEPS = 8


def gradients(scale, n=6, seed=0):
    """(STEPS, n) gradients of fixed sign per element, so that the weights move one way.

    Elements 0-1 stay ordinary (|g| ~ 1); 2-3 are ``scale`` for five steps, then ordinary;
    4-5 are ``scale`` throughout.
    """
    rng = np.random.default_rng(seed)
    sign = np.array([1, -1, 1, -1, -1, 1])[:n]
    mag = rng.uniform(0.5, 2.0, (STEPS, n))  # (STEPS, n)
    big = np.zeros((STEPS, n), bool)
    big[:5, 2:4] = big[:, 4:] = True
    return sign * np.where(big, mag * scale, mag)


def trajectory(name, dtype, grads, fused, config=None):
    """Weights after each step (STEPS, n) and the final config, from w = 0."""
    params = {"w": np.zeros(grads.shape[1], dtype)}
    opt = Optimizer(params, name, dict(config or {}), fused=fused)
    ws = []
    for g in grads:
        opt.step(params, {"w": g.astype(dtype)})
        ws.append(params["w"].astype(np.float64))
    return np.array(ws), opt.optim_configs["w"]


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("scale", [1e20, 1e30, 1e-20, 1e-30])
@pytest.mark.parametrize("name", ["rmsprop", "adam"])
def test_float32_steps_equal_the_float64_rule(name, scale, fused):
    grads = gradients(scale)
    ws, _ = trajectory(name, np.float32, grads, fused)
    ref, _ = trajectory(name, np.float64, grads, fused=False)
    assert np.all(np.isfinite(ws))
    assert np.all(ws[-1] != 0)  # every element moved
    np.testing.assert_allclose(ws, ref, rtol=1e-6, atol=0)


@pytest.mark.parametrize("dtype, scale", [(np.float32, 1e30), (np.float64, 1e200)])
@pytest.mark.parametrize("name", ["rmsprop", "adam"])
def test_steps_do_not_depend_on_the_gradients_scale(name, dtype, scale):
    # Both rules are scale-invariant when epsilon scales with the gradient: a float64 rule whose
    # squares overflow (|g| > 1.3e154) has no float64 oracle, so compare with the unscaled steps.
    grads = gradients(1.0)
    eps = 1e-8
    for fused in (True, False):
        ws, _ = trajectory(name, dtype, grads * scale, fused, {"epsilon": eps * scale})
        ref, _ = trajectory(name, np.float64, grads, False, {"epsilon": eps})
        np.testing.assert_allclose(ws, ref, rtol=1e-6 if dtype == np.float32 else 1e-12)


@pytest.mark.parametrize(
    "dtype, scale", [(np.float32, 1e20), (np.float32, 1e30), (np.float64, 1e300)]
)
@pytest.mark.parametrize("name", ["rmsprop", "adam"])
def test_kernels_equal_the_rules_bit_for_bit_out_of_range(name, dtype, scale):
    grads = gradients(scale)
    ws, cfg = trajectory(name, dtype, grads, fused=True)
    ref, ref_cfg = trajectory(name, dtype, grads, fused=False)
    np.testing.assert_array_equal(ws, ref)
    for key in STATE_KEYS[name]:
        np.testing.assert_array_equal(cfg[key], ref_cfg[key], err_msg=key)


@pytest.mark.parametrize("fused", [True, False])
def test_a_mean_square_out_of_range_is_stored_as_minus_its_root(fused):
    # 1e20: cache = (1 - rho) g^2 = 1e38 fits float32 and is stored; 1e30: 1e58 is not, -1e29 is
    g = np.array([1e20, -1e30])
    _, cfg = trajectory("rmsprop", np.float32, g[None, :], fused, {"decay_rate": 0.99})
    np.testing.assert_allclose(cfg["cache"], [0.01 * 1e40, -np.sqrt(0.01) * 1e30], rtol=1e-6)
    _, cfg = trajectory("adam", np.float32, np.stack([g, g]), fused)
    v = (1 - 0.999**2) * g**2  # float64
    np.testing.assert_allclose(cfg["v"], [v[0], -np.sqrt(v[1])], rtol=1e-6)
    np.testing.assert_allclose(cfg["m"], (1 - 0.9**2) * g, rtol=1e-6)
