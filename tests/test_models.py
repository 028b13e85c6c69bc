"""FullyConnectedNet and ConvNet: gradients, buffers, modes, registry, configs, training."""

import json

import numpy as np
import pytest

from normlab.checkpoint import load_checkpoint, restore_model
from normlab.gradient_check import eval_numerical_gradient, rel_error
from normlab.layers import softmax_loss
from normlab.models import (
    ConvNet,
    FullyConnectedNet,
    NormLayer,
    available_normalizations,
    build_model,
    get_normalization,
    register_normalization,
    unregister_normalization,
)
from normlab.models.base import softmax_cross_entropy
from normlab.solver import Solver

NORMS = [None, "batchnorm", "layernorm", "groupnorm"]


# Centred differences of a float64 loss of order 1 with h = 1e-5 carry ~1e-11 of rounding noise,
# so an element whose analytic and numerical values differ by less than this floor agrees
# (e.g. the exactly-zero gradient of a bias before batch norm, or a 1e-6-sized entry).
NOISE_FLOOR = 1e-9


def assert_gradients(model, X, y, tol=1e-6):
    """Every analytic gradient against centred differences of the loss (float64 model)."""
    _, grads = model.loss(X, y)
    assert set(grads) == set(model.params)
    for name, p in model.params.items():
        ana = grads[name]
        assert ana.shape == p.shape and ana.dtype == p.dtype, name
        num = eval_numerical_gradient(lambda _: model.loss(X, y)[0], p, verbose=False, h=1e-5)
        off = np.abs(num - ana) > NOISE_FLOOR
        if off.any():
            err = rel_error(num[off], ana[off])
            assert err < tol, f"{name}: rel_error {err:.2e} at {np.argwhere(off)[:3].tolist()}"


def _xy(rng, shape, C):
    return rng.standard_normal(shape), rng.integers(C, size=shape[0])


# -- gradients -------------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("normalization", NORMS)
def test_fc_gradients(rng, normalization, activation):
    X, y = _xy(rng, (5, 6), 4)
    model = FullyConnectedNet(
        [6, 8],  # groupnorm: gcd(4, 6) = 2 and 4 groups
        input_dim=6,
        num_classes=4,
        normalization=normalization,
        activation=activation,
        reg=0.1 if activation == "tanh" else 0.0,
        weight_scale="xavier",
        dtype=np.float64,
        seed=0,
    )
    for k, v in model.params.items():  # non-trivial gamma/beta
        if k.startswith(("gamma", "beta")):
            v += 0.3 * rng.standard_normal(v.shape)
    assert_gradients(model, X, y)


@pytest.mark.parametrize("normalization", NORMS)
def test_conv_gradients(rng, normalization):
    X, y = _xy(rng, (4, 2, 8, 8), 3)
    model = ConvNet(
        (2, 8, 8),
        num_filters=(3, 4),  # groupnorm: 1 and 4 groups
        hidden_dims=(6,),
        num_classes=3,
        normalization=normalization,
        reg=0.05,
        dtype=np.float64,
        seed=1,
    )
    assert_gradients(model, X, y)


def test_dropout_gradients_with_dropout_seed(rng):
    X, y = _xy(rng, (6, 5), 3)
    model = FullyConnectedNet(
        [7, 6],
        input_dim=5,
        num_classes=3,
        dropout_keep_ratio=0.6,
        dtype=np.float64,
        seed=3,
        dropout_seed=11,
        weight_scale="xavier",
    )
    assert model.loss(X, y)[0] == model.loss(X, y)[0]  # fixed masks: loss is a function
    assert_gradients(model, X, y)


def test_dropout_gradient_check_of_the_notebook():
    """The CS231n notebook's dropout cell, with ``dropout_seed`` for the assignment's ``seed``."""
    rng = np.random.default_rng(231)
    N, D, H1, H2, C = 2, 15, 20, 30, 10
    X = rng.standard_normal((N, D))
    y = rng.integers(C, size=(N,))
    for dropout_keep_ratio in [1, 0.75, 0.5]:
        model = FullyConnectedNet(
            [H1, H2],
            input_dim=D,
            num_classes=C,
            weight_scale=5e-2,
            dtype=np.float64,
            dropout_keep_ratio=dropout_keep_ratio,
            seed=123,
            dropout_seed=123,
        )
        loss, grads = model.loss(X, y)
        assert 2.0 < loss < 2.6  # about log(10)
        for name in sorted(grads):
            f = lambda _: model.loss(X, y)[0]  # noqa: B023, E731 - the notebook's spelling
            grad_num = eval_numerical_gradient(f, model.params[name], verbose=False, h=1e-5)
            err = rel_error(grad_num, grads[name])
            assert err < 1e-5, f"keep {dropout_keep_ratio}, {name}: rel_error {err:.2e}"


def test_without_dropout_seed_masks_change_and_the_gradient_check_fails():
    """Why ``dropout_seed`` exists: with fresh masks the numerical gradient is noise."""
    rng = np.random.default_rng(231)
    X, y = rng.standard_normal((2, 15)), rng.integers(10, size=2)
    kw = dict(input_dim=15, weight_scale=5e-2, dtype=np.float64, dropout_keep_ratio=0.75)
    model = FullyConnectedNet([20, 30], seed=123, **kw)
    _, grads = model.loss(X, y)
    num = eval_numerical_gradient(lambda _: model.loss(X, y)[0], model.params["W1"], False)
    assert rel_error(num, grads["W1"]) > 1e-2


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_softmax_cross_entropy_matches_softmax_loss(backend, rng, dtype):
    """The fused kernel (numba backend) and the NumPy version both match the layer."""
    scores = (5 * rng.standard_normal((7, 4))).astype(dtype)
    y = rng.integers(4, size=7)
    loss, dx = softmax_cross_entropy(scores, y)
    ref_loss, ref_dx = softmax_loss(scores, y)  # the layer is the oracle
    assert dx.dtype == dtype
    tol = 1e-12 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(loss, ref_loss, rtol=tol)
    np.testing.assert_allclose(dx, ref_dx, rtol=tol, atol=tol)
    y[0] = 3
    for bad in (y - 4, y + 1, y.astype(np.float64)):  # the layer's messages, without its name
        with pytest.raises(ValueError) as mine:
            softmax_cross_entropy(scores, bad)
        with pytest.raises(ValueError) as layers:
            softmax_loss(scores, bad)
        assert str(layers.value) == f"softmax_loss: {mine.value}"
    with pytest.raises(ValueError, match=r"labels in \[0, 4\), got values from 1 to 4"):
        softmax_cross_entropy(scores, y + 1)
    with pytest.raises(ValueError, match=r"y \(N,\), got scores \(7, 4\), y \(3,\)"):
        softmax_cross_entropy(scores, y[:3])
    scores[2, 1] = np.nan  # a diverged model: NaN loss (the Solver stops on it), no exception
    assert np.isnan(softmax_cross_entropy(scores, y)[0])
    assert np.isnan(softmax_loss(scores, y)[0])


# -- parameters, buffers, modes --------------------------------------------------------------------


def test_fc_layout_and_dtypes():
    model = FullyConnectedNet([5, 7], input_dim=4, num_classes=3, normalization="batchnorm", seed=0)
    shapes = {k: v.shape for k, v in model.params.items()}
    assert shapes == {
        "W1": (4, 5),
        "b1": (5,),
        "gamma1": (5,),
        "beta1": (5,),
        "W2": (5, 7),
        "b2": (7,),
        "gamma2": (7,),
        "beta2": (7,),
        "W3": (7, 3),
        "b3": (3,),
    }
    assert set(model.buffers) == {"running_mean1", "running_var1", "running_mean2", "running_var2"}
    assert not set(model.buffers) & set(model.params)
    assert all(v.dtype == np.float32 for v in [*model.params.values(), *model.buffers.values()])
    np.testing.assert_array_equal(model.params["gamma2"], 1)
    np.testing.assert_array_equal(model.params["beta1"], 0)
    np.testing.assert_array_equal(model.params["b3"], 0)
    assert abs(model.params["W2"].std() - 1e-2) < 5e-3  # N(0, weight_scale^2)
    he = FullyConnectedNet([400], input_dim=800, weight_scale="he", seed=0)
    assert abs(he.params["W1"].std() - np.sqrt(2 / 800)) < 1e-3
    X = np.ones((4, 2, 2))  # float64, (N, d1, d2) input is flattened and cast
    loss, grads = model.loss(X, np.array([0, 1, 2, 0]))
    assert isinstance(loss, float)
    assert all(g.dtype == np.float32 for g in grads.values())
    assert model.loss(X).dtype == np.float32


def test_buffers_are_updated_in_train_mode_only(rng):
    model = FullyConnectedNet([6], input_dim=4, normalization="batchnorm", dtype=np.float64, seed=0)
    X, y = _xy(rng, (8, 4), 10)
    params_before = {k: v.copy() for k, v in model.params.items()}
    model.loss(X)
    np.testing.assert_array_equal(model.buffers["running_mean1"], 0)
    model.loss(X, y)
    h = X @ params_before["W1"]  # b1 = 0
    np.testing.assert_allclose(model.buffers["running_mean1"], 0.1 * h.mean(0), rtol=1e-12)
    np.testing.assert_allclose(model.buffers["running_var1"], 0.1 * h.var(0), rtol=1e-12)
    for k, v in model.params.items():  # loss never touches params
        np.testing.assert_array_equal(v, params_before[k])


def test_test_mode_uses_running_stats_even_after_copy_or_rebind(rng):
    model = FullyConnectedNet(
        [6, 5],
        input_dim=4,
        num_classes=3,
        normalization="batchnorm",
        dtype=np.float64,
        seed=0,
        norm_options={"eps": 1e-3},
    )
    X, _ = _xy(rng, (7, 4), 3)
    P = model.params
    stats = {k: rng.standard_normal(v.shape) for k, v in model.buffers.items()}
    for k in stats:
        if k.startswith("running_var"):
            stats[k] = 0.5 + np.abs(stats[k])
    np.copyto(model.buffers["running_mean1"], stats["running_mean1"])  # what restore_model does
    np.copyto(model.buffers["running_var1"], stats["running_var1"])
    model.buffers["running_mean2"] = stats["running_mean2"].copy()  # rebinding works too
    model.buffers["running_var2"] = stats["running_var2"].copy()

    def bn(h, i):
        m, v = stats[f"running_mean{i}"], stats[f"running_var{i}"]
        return P[f"gamma{i}"] * (h - m) / np.sqrt(v + 1e-3) + P[f"beta{i}"]

    a1 = np.maximum(bn(X @ P["W1"] + P["b1"], 1), 0)
    a2 = np.maximum(bn(a1 @ P["W2"] + P["b2"], 2), 0)
    np.testing.assert_allclose(model.loss(X), a2 @ P["W3"] + P["b3"], rtol=1e-10)
    np.testing.assert_allclose(model.loss(X[:1]), model.loss(X)[:1], rtol=1e-12)  # per sample


def test_conv_layout():
    model = ConvNet(
        (3, 9, 9),
        num_filters=(4, 6),
        filter_size=5,
        hidden_dims=(10, 8),
        num_classes=5,
        normalization="batchnorm",
        seed=0,
    )
    shapes = {k: v.shape for k, v in model.params.items() if k[0] in "Wg"}
    assert shapes == {
        "W1": (4, 3, 5, 5),
        "gamma1": (4,),
        "W2": (6, 4, 5, 5),
        "gamma2": (6,),
        "W3": (6 * 2 * 2, 10),
        "gamma3": (10,),
        "W4": (10, 8),
        "gamma4": (8,),
        "W5": (8, 5),
    }  # 9 -> pool 4 -> pool 2
    assert model.buffers["running_var2"].shape == (6,)
    assert model.loss(np.zeros((2, 3, 9, 9))).shape == (2, 5)


def test_record_activations(rng):
    model = FullyConnectedNet(
        [5, 6],
        input_dim=4,
        normalization="batchnorm",
        activation="sigmoid",
        weight_scale="xavier",
        dtype=np.float64,
        seed=0,
    )
    X, y = _xy(rng, (9, 4), 10)
    model.loss(X, y)
    assert model.activations == {}  # nothing recorded by default
    model.record = {2}
    model.loss(X, y)
    assert set(model.activations) == {2}
    a = model.activations[2]  # after batch norm, before the sigmoid
    assert a.shape == (9, 6)
    np.testing.assert_allclose(a.mean(0), 0, atol=1e-12)  # gamma = 1, beta = 0
    np.testing.assert_allclose(a.var(0), 1, atol=5e-3)  # var / (var + eps)
    conv = ConvNet((1, 6, 6), num_filters=(3,), hidden_dims=(4,), seed=0)
    conv.record = {1, 2}
    conv.loss(rng.standard_normal((2, 1, 6, 6)))
    assert conv.activations[1].shape == (2, 3, 6, 6) and conv.activations[2].shape == (2, 4)


def test_dropout_reproducible_with_seed(rng):
    X, y = _xy(rng, (8, 5), 3)
    kw = dict(input_dim=5, num_classes=3, dropout_keep_ratio=0.5)
    a, b, c = (FullyConnectedNet([20], **kw, seed=s) for s in (7, 7, 8))
    la, ga = a.loss(X, y)
    lb, gb = b.loss(X, y)
    assert la == lb and all(np.array_equal(ga[k], gb[k]) for k in ga)
    assert a.loss(X, y)[0] != la  # new masks on the next call
    c.params.update({k: v.copy() for k, v in a.params.items()})
    assert c.loss(X, y)[0] != la  # other seed, other masks
    np.testing.assert_array_equal(a.loss(X), a.loss(X))  # no dropout in test mode


def test_loss_rejects_bad_labels_and_inputs_with_value_errors(rng):
    fc = FullyConnectedNet([6], input_dim=12, num_classes=4, seed=0)
    X = rng.standard_normal((5, 12))
    with pytest.raises(ValueError, match=r"expected integer labels in \[0, 4\), got values "):
        fc.loss(X, np.array([0, 1, 2, 3, 4]))  # 4 is out of range (was an IndexError)
    with pytest.raises(ValueError, match=r"got values from -1 to 2"):
        fc.loss(X, np.array([0, 1, 2, -1, 0]))
    for mode_y in (None, np.zeros(5, np.int64)):  # test and train mode
        with pytest.raises(ValueError, match=r"expected X of shape \(N, 12\).*got \(5, 10\)"):
            fc.loss(X[:, :10], mode_y)
    fc.loss(X.reshape(5, 3, 4))  # flattened like the assignment: 3 * 4 == 12
    with pytest.raises(ValueError, match=r"got \(12,\)"):
        fc.loss(X[0])
    conv = ConvNet((1, 6, 6), num_filters=(2,), hidden_dims=(), seed=0)
    conv.loss(rng.standard_normal((2, 1, 6, 6)))
    with pytest.raises(ValueError, match=r"expected X of shape \(N, 1, 6, 6\), got \(2, 1, 8, 8\)"):
        conv.loss(rng.standard_normal((2, 1, 8, 8)))


# -- the registry ----------------------------------------------------------------------------------


def _rms_forward(x, gamma, p):
    """RMS norm per sample over every non-batch axis: x / sqrt(mean(x^2) + eps) * gamma."""
    axes = tuple(range(1, x.ndim))
    r = 1.0 / np.sqrt((x * x).mean(axis=axes, keepdims=True) + p["eps"])  # (N, 1...)
    g = gamma.reshape((1, -1) + (1,) * (x.ndim - 2))
    xh = x * r
    return g * xh, (xh, r, g, axes)


def _rms_backward(dout, cache):
    xh, r, g, axes = cache
    dgamma = (dout * xh).sum(axis=(0, *axes[1:]))
    gx = dout * g
    return r * (gx - xh * (gx * xh).mean(axis=axes, keepdims=True)), dgamma


@pytest.fixture
def rmsnorm():
    for kind in ("feature", "spatial"):
        register_normalization(
            "rmsnorm_test",
            _rms_forward,
            _rms_backward,
            kind=kind,
            params={"gamma": 1.0},
            defaults={"eps": 1e-6},
        )
    yield "rmsnorm_test"
    unregister_normalization("rmsnorm_test")


def test_user_normalization_in_both_models(rng, rmsnorm):
    assert rmsnorm in available_normalizations("spatial")
    fc = FullyConnectedNet(
        [6, 5],
        input_dim=4,
        num_classes=3,
        normalization=rmsnorm,
        reg=0.1,
        dtype=np.float64,
        seed=0,
        weight_scale="xavier",
    )
    assert {"gamma1", "gamma2"} <= set(fc.params) and "beta1" not in fc.params
    assert fc.buffers == {}
    X, y = _xy(rng, (5, 4), 3)
    assert_gradients(fc, X, y)
    fc.record = {1}
    fc.loss(X, y)
    np.testing.assert_allclose((fc.activations[1] ** 2).mean(1), 1, rtol=1e-4)
    conv = ConvNet(
        (2, 6, 6),
        num_filters=(3,),
        hidden_dims=(4,),
        num_classes=3,
        normalization=rmsnorm,
        dtype=np.float64,
        seed=0,
    )
    assert_gradients(conv, *_xy(rng, (3, 2, 6, 6), 3))


def test_user_normalization_with_buffers_and_groups(rng):
    seen = []

    def fwd(x, gamma, beta, p):
        seen.append((p["mode"], p["groups"], p["scale"]))
        p["count"] += p["mode"] == "train"  # a running statistic, updated in place
        return x * gamma + beta, gamma

    def bwd(dout, gamma):
        return dout * gamma, dout.sum(0) * 0, dout.sum(0)

    register_normalization(
        "counting_test", fwd, bwd, buffers={"count": 0.0}, groups=True, defaults={"scale": 1}
    )
    try:
        model = FullyConnectedNet(
            [6],
            input_dim=3,
            normalization="counting_test",
            groups=4,
            norm_options={"scale": 2},
            seed=0,
        )
        X, y = _xy(rng, (2, 3), 10)
        model.loss(X, y)
        model.loss(X)
        assert seen == [("train", 2, 2), ("test", 2, 2)]  # gcd(4, 6) groups
        np.testing.assert_array_equal(model.buffers["count1"], np.ones(6))
        assert not get_normalization("counting_test", "feature").batch_stats
        with pytest.raises(ValueError, match="no 'spatial' variant"):
            ConvNet((1, 4, 4), num_filters=(2,), normalization="counting_test")
    finally:
        unregister_normalization("counting_test")


def test_user_normalization_chooses_its_buffers_from_its_options(rng):
    def configure(options):  # checks its options and keeps a buffer only when asked
        if options["keep"] not in (True, False):
            raise ValueError(f"expected keep True or False, got {options['keep']!r}")
        return {"total": 0.0} if options["keep"] else {}

    def fwd(x, gamma, beta, p):
        if "total" in p:
            p["total"] += x.sum(0)
        return x * gamma + beta, gamma

    def bwd(dout, gamma):
        return dout * gamma, dout.sum(0) * 0, dout.sum(0)

    register_normalization("keeping_test", fwd, bwd, defaults={"keep": True}, configure=configure)
    try:
        X, y = _xy(rng, (2, 3), 10)
        kept = FullyConnectedNet([4], input_dim=3, normalization="keeping_test", seed=0)
        assert sorted(kept.buffers) == ["total1"]
        kept.loss(X, y)
        assert kept.buffers["total1"].any()
        none = FullyConnectedNet(
            [4], input_dim=3, normalization="keeping_test", norm_options={"keep": False}
        )
        assert none.buffers == {}
        none.loss(X, y)
        with pytest.raises(ValueError, match="expected keep True or False, got 'x'"):
            FullyConnectedNet([4], normalization="keeping_test", norm_options={"keep": "x"})
        with pytest.raises(ValueError, match=r"may not set \['total'\]"):
            FullyConnectedNet([4], normalization="keeping_test", norm_options={"total": 1.0})
    finally:
        unregister_normalization("keeping_test")
    with pytest.raises(ValueError, match="expected configure None or a callable"):
        NormLayer("bad_test", "feature", fwd, bwd, configure="yes")


def test_registry_errors():
    names = available_normalizations()
    assert {"batchnorm", "layernorm", "groupnorm"} <= set(names)
    with pytest.raises(ValueError, match=r"unknown normalization 'bn'.*'batchnorm'"):
        FullyConnectedNet([3], normalization="bn")
    with pytest.raises(ValueError, match="unknown normalization"):
        ConvNet(normalization="instance_norm")
    with pytest.raises(ValueError, match="no 'feature' variant.*single value"):
        ConvNet(normalization="instancenorm")  # its hidden affine layers have none
    with pytest.raises(ValueError, match="already registered"):
        register_normalization("batchnorm", _rms_forward, _rms_backward)
    for bad in ({"W": 1.0}, {"gamma2": 1.0}, {"gamma": "ones"}):
        with pytest.raises(ValueError, match="expected"):
            register_normalization("bad_test", _rms_forward, _rms_backward, params=bad)
    with pytest.raises(ValueError, match="kind"):
        register_normalization("bad_test", _rms_forward, _rms_backward, kind="channel")
    with pytest.raises(ValueError, match="reserved"):
        register_normalization("bad_test", _rms_forward, _rms_backward, defaults={"mode": "x"})
    with pytest.raises(ValueError, match="unknown normalization"):
        unregister_normalization("bad_test")
    assert available_normalizations() == names
    with pytest.raises(ValueError, match="batch_stats=True expects buffers"):  # checks its own
        NormLayer("bad_test", "feature", _rms_forward, _rms_backward, batch_stats=True)


def test_argument_errors():
    with pytest.raises(ValueError, match=r"unknown activation 'gelu'.*'relu'"):
        FullyConnectedNet([3], activation="gelu")
    with pytest.raises(ValueError, match="weight_scale"):
        FullyConnectedNet([3], weight_scale="orthogonal")
    with pytest.raises(ValueError, match="dropout_keep_ratio"):
        FullyConnectedNet([3], dropout_keep_ratio=0)
    with pytest.raises(ValueError, match="hidden_dims"):
        FullyConnectedNet(32)
    with pytest.raises(ValueError, match="odd filter_size"):
        ConvNet(filter_size=4)
    with pytest.raises(ValueError, match="too small"):
        ConvNet((1, 4, 4), num_filters=(2, 2, 2))
    with pytest.raises(ValueError, match="floating dtype"):
        FullyConnectedNet([3], dtype=np.int32)
    with pytest.raises(ValueError, match="norm_options may not set"):
        FullyConnectedNet([3], normalization="batchnorm", norm_options={"running_mean": 0})
    with pytest.raises(ValueError, match="unknown model"):
        build_model({"model": "ResNet"})
    with pytest.raises(ValueError, match=r"hidden_dims entry to be an integer >= 1, got True"):
        FullyConnectedNet([True])  # bool is not a width
    with pytest.raises(ValueError, match=r"dropout_seed to be an integer >= 0 or None, got 1.5"):
        FullyConnectedNet([3], dropout_keep_ratio=0.5, dropout_seed=1.5)
    with pytest.raises(ValueError, match=r"filter_size to be an integer >= 1, got False"):
        ConvNet(filter_size=False)
    model = FullyConnectedNet([np.int64(3)], input_dim=np.int32(4), num_classes=np.uint8(2))
    assert model.params["W1"].shape == (4, 3) and model.get_config()["input_dim"] == 4


# -- configs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model",
    [
        lambda: FullyConnectedNet(
            [5, 4],
            input_dim=6,
            dropout_keep_ratio=0.8,
            reg=1e-3,
            seed=3,
            normalization="groupnorm",
            activation="tanh",
            groups=2,
            dropout_seed=5,
        ),
        lambda: ConvNet(
            (2, 6, 6),
            num_filters=(3,),
            hidden_dims=(5,),
            normalization="batchnorm",
            dtype=np.float64,
            seed=4,
            norm_options={"momentum": 0.5},
        ),
    ],
)
def test_config_round_trip(rng, model):
    model = model()
    config = json.loads(json.dumps(model.get_config()))  # JSON-able
    twin = build_model(config)
    assert type(twin) is type(model) and twin.get_config() == model.get_config()
    for a, b in ((model.params, twin.params), (model.buffers, twin.buffers)):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k].dtype == b[k].dtype
            np.testing.assert_array_equal(a[k], b[k])
    shape = (4, 6) if isinstance(model, FullyConnectedNet) else (4, 2, 6, 6)
    X, y = _xy(rng, shape, 10)
    la, ga = model.loss(X, y)
    lb, gb = twin.loss(X, y)
    assert la == lb and all(np.array_equal(ga[k], gb[k]) for k in ga)
    if isinstance(model, FullyConnectedNet):  # dropout_seed carried: the same masks again
        assert config["dropout_seed"] == 5 and twin.loss(X, y)[0] == la == model.loss(X, y)[0]
        fresh = build_model({**config, "dropout_seed": None})
        assert fresh.loss(X, y)[0] != fresh.loss(X, y)[0]


def test_config_without_dropout_seed_builds_fresh_masks():
    config = FullyConnectedNet([4], input_dim=3, dropout_keep_ratio=0.5, seed=1).get_config()
    assert config["dropout_seed"] is None
    del config["dropout_seed"]  # a config written before the option existed
    assert build_model(config).dropout_seed is None


def test_checkpoint_restores_into_built_model(tmp_path, rng):
    X, y = _xy(rng, (40, 5), 3)
    data = {"X_train": X, "y_train": y, "X_val": X, "y_val": y}
    model = FullyConnectedNet(
        [8], input_dim=5, num_classes=3, normalization="batchnorm", dropout_keep_ratio=0.9, seed=0
    )
    solver = Solver(model, data, update_rule="adam", num_epochs=2, batch_size=10, verbose=False)
    solver.train()
    ckpt = load_checkpoint(solver.save_checkpoint(tmp_path / "run.npz"))
    twin = build_model(ckpt.model_config)
    restore_model(ckpt, twin)
    np.testing.assert_array_equal(twin.loss(X), model.loss(X))


# -- training --------------------------------------------------------------------------------------


def _overfit(model, shape, **kw):
    rng = np.random.default_rng(5)
    X, y = rng.standard_normal((50, *shape)).astype(np.float32), rng.integers(10, size=50)
    data = {"X_train": X, "y_train": y, "X_val": X, "y_val": y}
    solver = Solver(
        model,
        data,
        update_rule="adam",
        optim_config={"learning_rate": 1e-2},
        batch_size=10,
        verbose=False,
        seed=0,
        **kw,
    )
    solver.train()
    return solver


@pytest.mark.parametrize("normalization", [None, "batchnorm"])
def test_fc_overfits_50_examples(normalization):
    model = FullyConnectedNet(
        [50, 50], input_dim=20, normalization=normalization, weight_scale="he", seed=0
    )
    solver = _overfit(model, (20,), num_epochs=20)
    assert solver.train_acc_history[0] < 0.5
    assert max(solver.train_acc_history) == 1.0
    assert all(v.dtype == np.float32 for v in model.params.values())


@pytest.mark.parametrize("normalization", ["batchnorm", "groupnorm"])
def test_conv_overfits_50_examples(normalization):
    model = ConvNet(
        (1, 8, 8), num_filters=(8,), hidden_dims=(32,), normalization=normalization, seed=0
    )
    solver = _overfit(model, (1, 8, 8), num_epochs=20)
    assert max(solver.train_acc_history) == 1.0


def test_matches_torch_batchnorm_net(rng):
    torch = pytest.importorskip("torch")
    model = FullyConnectedNet(
        [6, 5],
        input_dim=4,
        num_classes=3,
        normalization="batchnorm",
        reg=0.0,
        dtype=np.float64,
        seed=0,
        weight_scale="xavier",
        norm_options={"running_var_unbiased": True},
    )
    P = model.params
    for k in model.buffers:
        if k.startswith("running_var"):
            model.buffers[k][...] = 1.0  # PyTorch's initial running variance
    X, y = _xy(rng, (8, 4), 3)
    tlin = [torch.nn.Linear(a, b, dtype=torch.float64) for a, b in ((4, 6), (6, 5), (5, 3))]
    tbn = [torch.nn.BatchNorm1d(d, dtype=torch.float64) for d in (6, 5)]  # momentum 0.1
    with torch.no_grad():
        for i, lin in enumerate(tlin, 1):
            lin.weight.copy_(torch.from_numpy(P[f"W{i}"].T))
            lin.bias.copy_(torch.from_numpy(P[f"b{i}"]))
    net = torch.nn.Sequential(
        tlin[0], tbn[0], torch.nn.ReLU(), tlin[1], tbn[1], torch.nn.ReLU(), tlin[2]
    )
    tloss = torch.nn.functional.cross_entropy(net(torch.from_numpy(X)), torch.from_numpy(y))
    tloss.backward()
    loss, grads = model.loss(X, y)
    np.testing.assert_allclose(loss, tloss.item(), rtol=1e-12)
    for i, lin in enumerate(tlin, 1):
        np.testing.assert_allclose(grads[f"W{i}"], lin.weight.grad.numpy().T, atol=1e-12)
    for i, bn in enumerate(tbn, 1):
        np.testing.assert_allclose(grads[f"gamma{i}"], bn.weight.grad.numpy(), atol=1e-12)
        np.testing.assert_allclose(model.buffers[f"running_mean{i}"], bn.running_mean, atol=1e-12)
        np.testing.assert_allclose(model.buffers[f"running_var{i}"], bn.running_var, atol=1e-12)
    net.eval()
    np.testing.assert_allclose(model.loss(X), net(torch.from_numpy(X)).detach(), atol=1e-12)


def test_convnet_dropout_on_hidden_affine_layers():
    from normlab.gradient_check import eval_numerical_gradient, rel_error
    from normlab.models import ConvNet, build_model

    rng = np.random.default_rng(0)
    X = rng.standard_normal((4, 1, 6, 6))
    y = rng.integers(0, 3, 4)
    kw = dict(input_dim=(1, 6, 6), num_filters=(2,), hidden_dims=(8,), num_classes=3,
              dtype=np.float64, seed=1, dropout_keep_ratio=0.5)  # fmt: skip
    fresh = ConvNet(**kw)
    assert fresh.loss(X, y)[0] != fresh.loss(X, y)[0]  # new masks every training pass
    np.testing.assert_array_equal(fresh.loss(X), fresh.loss(X))  # test mode: no dropout
    fixed = ConvNet(**kw, dropout_seed=3)
    loss, grads = fixed.loss(X, y)
    for name in ("W1", "W2", "W3"):
        num = eval_numerical_gradient(lambda _: fixed.loss(X, y)[0], fixed.params[name],
                                      verbose=False)  # fmt: skip
        assert rel_error(num, grads[name]) < 1e-6, name
    rebuilt = build_model(fixed.get_config())
    assert rebuilt.get_config()["dropout_keep_ratio"] == 0.5
    np.testing.assert_allclose(rebuilt.loss(X, y)[0], loss)


@pytest.mark.parametrize("make", [
    lambda: FullyConnectedNet([8, 6], input_dim=5, num_classes=3, normalization="batchnorm"),
    lambda: ConvNet(input_dim=(1, 8, 8), num_filters=(4,), hidden_dims=(6,), num_classes=3,
                    normalization="groupnorm", seed=0),
])  # fmt: skip
def test_parameters_live_end_to_end_in_one_buffer(make):
    from normlab.optimizer import Optimizer

    model = make()
    arrays = list(model.params.values())
    base = arrays[0].base
    assert base is not None and all(a.base is base for a in arrays)
    offsets = [
        a.__array_interface__["data"][0] - base.__array_interface__["data"][0] for a in arrays
    ]
    sizes = np.cumsum([0] + [a.nbytes for a in arrays[:-1]])
    np.testing.assert_array_equal(offsets, sizes)  # in params order, no gaps
    held = dict(model.params)
    opt = Optimizer(model.params, "adam")
    assert len(opt._chunks) == 1  # one kernel pass per step
    opt.step(model.params, {k: np.ones_like(v) for k, v in model.params.items()})
    assert all(model.params[k] is held[k] for k in held)


@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid"])
def test_kaiming_init_is_the_activations_gain_over_sqrt_fan_in(activation):
    # the same seed draws the same normals: 'kaiming' must be exactly gain / sqrt(fan_in) per
    # layer (the scores layer, without activation, gain 1), PyTorch's calculate_gain
    torch = pytest.importorskip("torch")
    gain = torch.nn.init.calculate_gain(activation)
    net = FullyConnectedNet([30, 20], input_dim=50, activation=activation, weight_scale="kaiming",
                            dtype=np.float64, seed=4)  # fmt: skip
    unit = FullyConnectedNet([30, 20], input_dim=50, activation=activation, weight_scale=1.0,
                             dtype=np.float64, seed=4)  # fmt: skip
    for name, g, fan_in in (("W1", gain, 50), ("W2", gain, 30), ("W3", 1.0, 20)):
        np.testing.assert_allclose(net.params[name], g / np.sqrt(fan_in) * unit.params[name],
                                   rtol=1e-15)  # fmt: skip
    assert activation != "relu" or gain == pytest.approx(np.sqrt(2))  # = 'he' for ReLU
    with pytest.raises(ValueError, match="kaiming"):
        FullyConnectedNet([3], input_dim=4, weight_scale="kaimin")
