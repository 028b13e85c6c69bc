"""A NaN or inf batch never poisons the running statistics, misspelled keys are refused, and a
non-finite loss names the layer where the non-finite values first appeared (issue 10, item 3)."""

import pickle

import numpy as np
import pytest

from normlab import layers as L
from normlab.models import ConvNet, FullyConnectedNet
from normlab.solver import NonFiniteLossError, Solver

BACKENDS = ["numba", "numpy"]


def _bn_case(spatial, bad):
    rng = np.random.default_rng(0)
    shape = (6, 5, 3, 3) if spatial else (16, 5)
    x = rng.standard_normal(shape)
    x[2, 3] = bad  # one column / channel
    fwd = L.spatial_batchnorm_forward if spatial else L.batchnorm_forward
    return fwd, x


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("spatial", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_batch_refused_running_statistics_bit_identical(
    monkeypatch, backend, bad, spatial, dtype
):
    monkeypatch.setenv("NORMLAB_BACKEND", backend)
    fwd, x = _bn_case(spatial, bad)
    rng = np.random.default_rng(1)
    rm, rv = rng.standard_normal(5).astype(dtype), rng.random(5).astype(dtype)
    before = rm.tobytes(), rv.tobytes()
    p = {"mode": "train", "running_mean": rm, "running_var": rv, "momentum": 0.5}
    name = "spatial_batchnorm_forward" if spatial else "batchnorm_forward"
    with (
        np.errstate(invalid="ignore"),
        pytest.raises(FloatingPointError, match=rf"{name}: .* 1 of 5 channels \(3\)") as err,
    ):
        fwd(x.astype(dtype), np.ones(5, dtype), np.zeros(5, dtype), p)
    assert (rm.tobytes(), rv.tobytes()) == before
    assert p["running_mean"] is rm and p["running_var"] is rv
    e = err.value
    assert isinstance(e, L.NonFiniteStatisticsError)
    assert (e.function, e.what, e.indices, e.count, e.total) == (name, "channels", [3], 1, 5)
    again = pickle.loads(pickle.dumps(e))  # crosses process pools intact
    assert str(again) == str(e) and again.indices == [3]


@pytest.mark.parametrize("backend", BACKENDS)
def test_many_bad_channels_listed_first_few_and_counted(monkeypatch, backend):
    monkeypatch.setenv("NORMLAB_BACKEND", backend)
    x = np.ones((4, 12)) + np.arange(48).reshape(4, 12)
    x[0, 2:] = np.nan
    with pytest.raises(FloatingPointError, match=r"10 of 12 channels \(2, 3, 4, 5, 6, \.\.\.\)"):
        L.batchnorm_forward(x, np.ones(12), np.zeros(12), {"mode": "train"})


@pytest.mark.parametrize("backend", BACKENDS)
def test_ordinary_batches_update_running_statistics_as_before(monkeypatch, backend):
    """The check changes nothing for finite inputs (values compared with the formula)."""
    monkeypatch.setenv("NORMLAB_BACKEND", backend)
    x = np.random.default_rng(3).normal(2, 3, (32, 4))
    p = {"mode": "train", "momentum": 0.75, "running_mean": np.ones(4), "running_var": np.ones(4)}
    L.batchnorm_forward(x, np.ones(4), np.zeros(4), p)
    np.testing.assert_allclose(p["running_mean"], 0.75 + 0.25 * x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(p["running_var"], 0.75 + 0.25 * x.var(0), rtol=1e-12)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_finite_statistics_whose_products_overflow_are_accepted():
    x = np.array([[1e200, -1e200], [3e200, 1e200]])  # var ~1e400 overflows: refused
    with np.errstate(over="ignore"), pytest.raises(FloatingPointError, match="2 of 2 channels"):
        L.batchnorm_forward(x, np.ones(2), np.zeros(2), {"mode": "train"})
    y = np.array([[1e150, -1e150], [1.5e150, -0.5e150]])  # mean * var ~1e450, each finite
    L.batchnorm_forward(y, np.ones(2), np.zeros(2), {"mode": "train"})


@pytest.mark.parametrize("backend", BACKENDS)
def test_layer_and_group_norm_refuse_in_train_mode_only(monkeypatch, backend):
    monkeypatch.setenv("NORMLAB_BACKEND", backend)
    x = np.random.default_rng(4).standard_normal((5, 6))
    x[3, 1] = np.nan
    g, b = np.ones(6), np.zeros(6)
    for p in ({}, {"mode": "train"}, None):
        with pytest.raises(FloatingPointError, match=r"layernorm_forward: .* 1 of 5 samples \(3\)"):
            L.layernorm_forward(x, g, b, p)
    out, _ = L.layernorm_forward(x, g, b, {"mode": "test"})  # evaluating: NaN in, NaN out
    assert np.isnan(out[3]).all() and np.isfinite(np.delete(out, 3, axis=0)).all()
    x4 = np.random.default_rng(5).standard_normal((2, 6, 2, 2))
    x4[1, 4, 0, 0] = np.inf
    with (
        np.errstate(invalid="ignore"),  # the NumPy path's inf - inf, before the refusal
        pytest.raises(
            FloatingPointError,
            match=r"spatial_groupnorm_forward: .* 1 of 6 \(sample, group\) pairs \(\(1, 2\)\)",
        ),
    ):
        L.spatial_groupnorm_forward(x4, g, b, 3, {})
    with np.errstate(invalid="ignore"):
        L.spatial_groupnorm_forward(x4, g, b, 3, {"mode": "test"})


@pytest.mark.parametrize(
    "call,match",
    [
        (
            lambda: L.batchnorm_forward(
                np.ones((4, 3)), np.ones(3), np.zeros(3), {"mode": "train", "mometum": 0.5}
            ),
            r"batchnorm_forward: unknown bn_param key 'mometum' \(did you mean 'momentum'\?\); "
            r"known keys are \['eps', 'mode', 'momentum', 'num_batches_tracked', 'running_mean', "
            r"'running_var', 'running_var_unbiased', 'track_running_stats', 'virtual_batch_size'\]",
        ),
        (
            lambda: L.spatial_batchnorm_forward(
                np.ones((2, 3, 2, 2)), np.ones(3), np.zeros(3), {"mode": "test", "groups": 2}
            ),
            r"spatial_batchnorm_forward: unknown bn_param key 'groups'",
        ),
        (
            lambda: L.layernorm_forward(
                np.ones((4, 3)), np.ones(3), np.zeros(3), {"virtual_batch_size": 2}
            ),
            r"layernorm_forward: unknown ln_param key 'virtual_batch_size'; "
            r"known keys are \['eps', 'mode'\]",
        ),
        (
            lambda: L.spatial_groupnorm_forward(
                np.ones((2, 4, 2, 2)), np.ones(4), np.zeros(4), 2, {"esp": 1e-3}
            ),
            r"unknown gn_param key 'esp' \(did you mean 'eps'\?\); "
            r"known keys are \['eps', 'groups', 'mode'\]",
        ),
        (
            lambda: L.spatial_groupnorm_forward(
                np.ones((2, 4, 2, 2)), np.ones(4), np.zeros(4), 2, {"groups": 4}
            ),
            r"gn_param\['groups'\]=4 contradicts G=2",
        ),
        (
            lambda: L.layernorm_forward(np.ones((4, 3)), np.ones(3), np.zeros(3), {"mode": "eval"}),
            r"expected mode 'train' or 'test', got 'eval'",
        ),
    ],
)
def test_unknown_keys_are_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_models_refuse_a_norm_option_the_layer_does_not_have():
    X, y = np.ones((4, 3)), np.arange(4) % 2
    model = FullyConnectedNet(
        [4], input_dim=3, normalization="layernorm", norm_options={"momentum": 0.5}
    )
    with pytest.raises(ValueError, match="unknown ln_param key 'momentum'"):
        model.loss(X, y)
    for norm in ("batchnorm", "layernorm", "groupnorm"):  # what the models pass is accepted
        FullyConnectedNet([4], input_dim=3, normalization=norm, groups=2).loss(X, y)
        ConvNet((1, 4, 4), num_filters=(4,), hidden_dims=(4,), normalization=norm).loss(
            np.ones((4, 1, 4, 4)), y
        )


def _data(n=40, d=5):
    rng = np.random.default_rng(0)
    return {
        "X_train": rng.standard_normal((n, d)),
        "y_train": np.arange(n) % 3,
        "X_val": rng.standard_normal((6, d)),
        "y_val": np.arange(6) % 3,
    }


@pytest.mark.parametrize("norm", ["batchnorm", "layernorm", "groupnorm", None])
def test_solver_names_the_input_when_the_data_holds_nan(norm):
    data = _data()
    row = np.random.default_rng(0).permutation(40)[25]  # third batch of the first epoch
    data["X_train"][row, 2] = np.nan
    model = FullyConnectedNet([8, 8], input_dim=5, num_classes=3, normalization=norm, seed=0)
    buffers = {k: v.copy() for k, v in model.buffers.items()}
    solver = Solver(model, data, update_rule="adam", batch_size=10, verbose=False)
    with np.errstate(invalid="ignore"), pytest.raises(NonFiniteLossError) as err:
        solver.train()
    e = err.value
    assert e.where == "the input (1 values, the first at index (5, 2))"
    assert "at iteration 3 of" in str(e) and f"first non-finite: {e.where}" in str(e)
    if norm is not None:  # the first normalization refused the batch: the cause
        assert isinstance(e.__cause__, L.NonFiniteStatisticsError)
        assert str(e).startswith(f"{e.__cause__.function} refused non-finite values")
    assert pickle.loads(pickle.dumps(e)).where == e.where
    assert len(solver.loss_history) == 2
    for k, v in model.buffers.items():  # two good steps moved them; the bad one did not
        assert np.isfinite(v).all() and not np.array_equal(v, buffers[k])


@pytest.mark.parametrize("norm", ["batchnorm", None])
def test_solver_names_the_layer_whose_weights_went_non_finite(norm):
    data = _data()
    model = FullyConnectedNet([8, 8], input_dim=5, num_classes=3, normalization=norm, seed=0)
    model.params["W2"][1, 4] = np.inf
    state = model.rng.bit_generator.state
    with (
        np.errstate(invalid="ignore"),
        pytest.raises(
            NonFiniteLossError,
            match=r"first non-finite: layer 2 \(affine output; W2 holds NaN or inf\)",
        ),
    ):
        Solver(model, data, batch_size=10, verbose=False).train()
    assert model.rng.bit_generator.state == state  # the diagnostic pass drew nothing


def test_first_nonfinite_leaves_the_model_as_it_was():
    model = FullyConnectedNet(
        [6], input_dim=4, normalization="batchnorm", dropout_keep_ratio=0.5, seed=0
    )
    X = np.random.default_rng(1).standard_normal((8, 4))
    buffers = {k: v.copy() for k, v in model.buffers.items()}
    state = model.rng.bit_generator.state
    assert model.first_nonfinite(X) is None
    assert model.rng.bit_generator.state == state
    for k, v in model.buffers.items():
        np.testing.assert_array_equal(v, buffers[k])
    model.params["gamma1"][2] = np.nan
    assert model.first_nonfinite(X) == "layer 1 (batchnorm output; gamma1 holds NaN or inf)"
