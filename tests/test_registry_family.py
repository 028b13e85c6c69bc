"""The 2026 normalization family by name in the models: gradients, training, folding, files."""

import re

import numpy as np
import pytest

from normlab.checkpoint import load_checkpoint, restore_model, save_checkpoint
from normlab.gradient_check import eval_numerical_gradient, rel_error
from normlab.models import (
    ConvNet,
    FullyConnectedNet,
    available_normalizations,
    build_model,
    fold_batchnorm,
    get_normalization,
    precise_bn,
)

FEATURE = [
    "rmsnorm",
    "layernorm2d",
    "evonorm-s0",
    "darknet",
    "batchnorm-ema",
    "batchnorm-frozen",
    "ghostbatchnorm",
    "batchrenorm",
]
SPATIAL = [*FEATURE, "instancenorm", "instancenorm-tracked", "evonorm-b0"]
FOLDABLE = {
    "darknet",
    "batchnorm-ema",
    "batchnorm-frozen",
    "instancenorm-tracked",
    "ghostbatchnorm",
    "batchrenorm",
}
OPTIONS = {
    "ghostbatchnorm": {"virtual_batch_size": 4},  # the batches here are of 8 or 16
    "batchrenorm": {"rmax": 1.05, "dmax": 0.05},
}
CASES = [("feature", n) for n in FEATURE] + [("spatial", n) for n in SPATIAL]
IDS = [f"{k}-{n}" for k, n in CASES]

# As in test_models: centred differences of an order-1 float64 loss carry ~1e-11 of noise.
NOISE_FLOOR = 1e-9


def _model(kind, name, dtype=np.float64, keep_stats=True, fixed=True, **kw):
    """A small model whose only normalization variant is ``kind``'s (``fixed``: with OPTIONS)."""
    options = dict(OPTIONS.get(name, {})) if fixed else {}
    if keep_stats and name in ("batchnorm-ema", "batchrenorm"):  # the loss is then a function
        options["momentum"] = 1.0
    kw["norm_options"] = {**options, **kw.get("norm_options", {})}
    kw.setdefault("weight_scale", "xavier")
    common = dict(normalization=name, num_classes=3, groups=2, dtype=dtype, seed=0, **kw)
    if kind == "feature":
        return FullyConnectedNet([6, 4], input_dim=5, activation="tanh", **common)
    return ConvNet((2, 4, 4), num_filters=(4,), hidden_dims=(), **common)


def _xy(kind, n=8, seed=0):
    rng = np.random.default_rng(seed)
    X = 1 + 2 * rng.standard_normal((n, 5) if kind == "feature" else (n, 2, 4, 4))
    return X, rng.integers(3, size=n)


def _randomize_buffers(model, seed=3):
    """Non-trivial running statistics (variances in [0.5, 1.5])."""
    rng = np.random.default_rng(seed)
    for k, v in model.buffers.items():
        if not k.startswith("running"):
            continue
        v[...] = rng.uniform(0.5, 1.5, v.shape) if "var" in k else rng.normal(0, 0.5, v.shape)


def _grad_errors(model, X, y):
    """rel_error of every analytic gradient against centred differences (above the floor)."""
    _, grads = model.loss(X, y)
    assert set(grads) == set(model.params)
    errors = {}
    for name, p in model.params.items():
        assert grads[name].shape == p.shape and grads[name].dtype == p.dtype, name
        num = eval_numerical_gradient(lambda _: model.loss(X, y)[0], p, verbose=False, h=1e-5)
        off = np.abs(num - grads[name]) > NOISE_FLOOR
        errors[name] = rel_error(num[off], grads[name][off]) if off.any() else 0.0
    return errors


@pytest.mark.parametrize("kind, name", CASES, ids=IDS)
def test_gradients_match_numerical(kind, name):
    model = _model(kind, name)
    _randomize_buffers(model)
    if name == "batchrenorm":  # r and d clipped: constants indeed, so the gradient is exact
        for k, v in model.buffers.items():
            v += 100.0 if k.startswith("running") else 0.0
            v *= 100.0 if k.startswith("running_var") else 1.0
    errors = _grad_errors(model, *_xy(kind))
    if name != "darknet":
        assert max(errors.values()) < 1e-6, errors
        return
    # darknet's backward is the gradient of another function (biased variance, eps inside the
    # root): exact for what follows its last layer and for that layer's gamma/beta, close before.
    last = max(blk.index for blk in model.blocks if blk.norm is not None)
    before = (f"W{last}", f"b{last}")
    exact = {k: e for k, e in errors.items() if int(re.sub(r"\D", "", k)) >= last}
    assert max(e for k, e in exact.items() if k not in before) < 1e-6, errors
    X, y = _xy(kind)
    num = eval_numerical_gradient(lambda _: model.loss(X, y)[0], model.params[before[0]], False)
    mismatch = np.linalg.norm(model.loss(X, y)[1][before[0]] - num) / np.linalg.norm(num)
    assert 1e-4 < mismatch < 0.3, mismatch  # measured: 0.005 (conv), 0.13 (fc)


@pytest.mark.parametrize("kind, name", CASES, ids=IDS)
def test_trains_and_runs_in_test_mode(kind, name):
    model = _model(kind, name, dtype=np.float32, keep_stats=False, weight_scale="he")
    X, y = _xy(kind, n=16)
    norm = get_normalization(name, kind)
    normed = [blk.index for blk in model.blocks if blk.norm is not None]
    assert set(model.buffers) == {f"{b}{i}" for b in norm.buffers for i in normed}
    if name.startswith("evonorm"):
        np.testing.assert_array_equal(model.params["v1"], 1)  # a trained parameter, ones
    losses = []
    for _ in range(15):
        loss, grads = model.loss(X, y)
        losses.append(loss)
        for k, g in grads.items():
            model.params[k] -= 0.05 * g
    assert np.isfinite(losses).all() and losses[-1] < losses[0] - 1e-3, losses
    before = {k: v.copy() for k, v in model.buffers.items()}
    scores = model.loss(X)
    assert scores.shape == (16, 3) and np.isfinite(scores).all()
    for k, v in model.buffers.items():  # test mode leaves the running statistics alone
        np.testing.assert_array_equal(v, before[k])
    if name in ("batchnorm-frozen",):
        np.testing.assert_array_equal(model.buffers["running_var1"], 1)  # frozen: never updated
    elif norm.buffers:
        assert not np.array_equal(model.buffers["running_var1"], 1), "train mode updates them"


@pytest.mark.parametrize("kind, name", [c for c in CASES if c[1] in FOLDABLE])
def test_fold_equals_test_mode(kind, name):
    model = _model(kind, name, keep_stats=False)
    _randomize_buffers(model)
    for k in model.params:
        if k.startswith(("gamma", "beta")):
            model.params[k] += np.random.default_rng(4).normal(0, 0.3, model.params[k].shape)
    X, _ = _xy(kind)
    folded = fold_batchnorm(model)
    assert folded.buffers == {} and folded.get_config()["normalization"] is None
    np.testing.assert_allclose(folded.loss(X), model.loss(X), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind, name", [c for c in CASES if c[1] not in FOLDABLE])
def test_fold_refuses_sample_dependent_test_modes(kind, name):
    with pytest.raises(ValueError, match=f"cannot fold normalization {name!r}"):
        fold_batchnorm(_model(kind, name))


@pytest.mark.parametrize("kind, name", [c for c in CASES if get_normalization(c[1], c[0]).buffers])
def test_buffers_survive_a_checkpoint(tmp_path, kind, name):
    model = _model(kind, name, keep_stats=False)
    X, y = _xy(kind)
    model.loss(X, y)  # one train step's update of the running statistics
    _randomize_buffers(model, seed=7)
    save_checkpoint(tmp_path / "m.npz", model)
    twin = build_model(load_checkpoint(tmp_path / "m.npz").model_config)
    restore_model(load_checkpoint(tmp_path / "m.npz"), twin)
    for k, v in model.buffers.items():
        np.testing.assert_array_equal(twin.buffers[k], v)
    np.testing.assert_array_equal(twin.loss(X), model.loss(X))


# -- what the names mean ---------------------------------------------------------------------------


def test_batchnorm_ema_normalizes_with_the_updated_running_statistics():
    X, y = _xy("feature", n=16)
    ema, bn = (_model("feature", n, keep_stats=False) for n in ("batchnorm-ema", "batchnorm"))
    ema.record = bn.record = {1}
    ema.loss(X, y)
    bn.loss(X, y)
    h = X @ ema.params["W1"] + ema.params["b1"]  # (16, 6), what layer 1 normalizes
    mean, var = ema.buffers["running_mean1"], ema.buffers["running_var1"]
    np.testing.assert_allclose(mean, 0.1 * h.mean(0), rtol=1e-12)  # batch norm's update...
    np.testing.assert_allclose(var, 0.9 + 0.1 * h.var(0), rtol=1e-12)  # ...from ones
    np.testing.assert_allclose(bn.buffers["running_mean1"], mean, rtol=1e-12)
    np.testing.assert_allclose(ema.activations[1], (h - mean) / np.sqrt(var + 1e-5), rtol=1e-10)
    np.testing.assert_allclose(bn.activations[1].mean(0), 0, atol=1e-10)  # batch norm centres
    assert np.abs(ema.activations[1].mean(0)).max() > 0.1  # the EMA variant does not


def test_rmsnorm_of_a_map_is_per_position_over_channels():
    model = _model("spatial", "rmsnorm")
    model.record = {1}
    X, y = _xy("spatial")
    model.loss(X, y)
    out = model.activations[1]  # (8, 4, 4, 4), gamma = 1
    np.testing.assert_allclose((out**2).mean(axis=1), 1, rtol=1e-6)


def test_layernorm2d_of_a_map_is_per_position_and_of_a_vector_is_layernorm():
    conv = _model("spatial", "layernorm2d")
    conv.record = {1}
    conv.loss(*_xy("spatial"))
    np.testing.assert_allclose(conv.activations[1].mean(axis=1), 0, atol=1e-10)
    fc, ln = (_model("feature", n) for n in ("layernorm2d", "layernorm"))
    X, y = _xy("feature")
    np.testing.assert_array_equal(fc.loss(X, y)[0], ln.loss(X, y)[0])


def test_ema_precise_bn_and_option_errors():
    model = _model("feature", "batchnorm-ema", keep_stats=False)
    X, _ = _xy("feature", n=32)
    precise_bn(model, X)  # batch_stats: its running statistics are population estimates
    h = X @ model.params["W1"] + model.params["b1"]
    np.testing.assert_allclose(model.buffers["running_var1"], h.var(0), rtol=1e-10)
    with pytest.raises(ValueError, match="track_running_stats"):  # when the model is built
        _model("feature", "batchnorm-ema", norm_options={"track_running_stats": False})


def test_errors_name_what_exists():
    with pytest.raises(ValueError, match=r"unknown normalization 'rms'.*'rmsnorm'"):
        FullyConnectedNet([4], normalization="rms")
    msg = r"'instancenorm' has no 'feature' variant.*single value.*'rmsnorm'"
    with pytest.raises(ValueError, match=msg):
        FullyConnectedNet([4], normalization="instancenorm")
    with pytest.raises(ValueError, match=r"'evonorm-b0' has no 'feature'.*hidden_dims=\(\)"):
        ConvNet(normalization="evonorm-b0")
    ConvNet(num_filters=(4,), hidden_dims=(), normalization="evonorm-b0")  # spatial only: fine
    assert set(SPATIAL) <= set(available_normalizations("spatial"))
    assert set(FEATURE) <= set(available_normalizations("feature"))
    assert not {"instancenorm", "evonorm-b0"} & set(available_normalizations("feature"))


def test_ghostbatchnorm_normalizes_each_chunk_and_takes_its_size_from_norm_options():
    model = _model("feature", "ghostbatchnorm")  # virtual_batch_size 4
    model.record = {1}
    X, y = _xy("feature", n=8)
    model.loss(X, y)
    chunks = model.activations[1].reshape(2, 4, -1)  # (chunk, sample, feature)
    np.testing.assert_allclose(chunks.mean(axis=1), 0, atol=1e-10)
    np.testing.assert_allclose(chunks.var(axis=1), 1, rtol=1e-3)
    with pytest.raises(ValueError, match="virtual_batch_size V=32 must divide the batch size N=8"):
        _model("feature", "ghostbatchnorm", norm_options={"virtual_batch_size": 32}).loss(X, y)


def test_batchrenorm_schedule_counts_train_steps():
    twin = _model("spatial", "batchnorm")
    schedule = {"warmup": 1, "rmax_steps": 3, "dmax_steps": 3}
    model = _model(
        "spatial", "batchrenorm", fixed=False, norm_options={"renorm_schedule": schedule}
    )
    model.record = twin.record = {1}
    X, y = _xy("spatial")
    for step in range(4):
        model.loss(X, y)
        twin.loss(X, y)
        same = np.allclose(model.activations[1], twin.activations[1], atol=1e-12)
        assert same == (step <= 1), step  # rmax = 1, dmax = 0 up to the warmup
        model.loss(X)  # test mode does not count
        np.testing.assert_array_equal(model.buffers["renorm_step1"], [step + 1])
    both = {"renorm_schedule": True, "rmax": 2.0}
    with pytest.raises(ValueError, match="not both"):
        _model("spatial", "batchrenorm", fixed=False, norm_options=both).loss(X, y)
    with pytest.raises(ValueError, match="renorm_schedule True or a dict"):
        bad = {"renorm_schedule": {"steps": 3}}
        _model("spatial", "batchrenorm", fixed=False, norm_options=bad).loss(X, y)
