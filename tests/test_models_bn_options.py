"""Batch norm's momentum=None and track_running_stats=False through the models and checkpoints."""

import numpy as np
import pytest

from normlab.checkpoint import load_checkpoint, restore_model, save_checkpoint
from normlab.models import ConvNet, FullyConnectedNet, build_model, fold_batchnorm, precise_bn
from normlab.solver import Solver

CUMULATIVE = {"momentum": None}
UNTRACKED = {"track_running_stats": False}
KINDS = ["feature", "spatial"]
BN_NAMES = ["batchnorm", "ghostbatchnorm", "batchrenorm", "batchnorm-ema"]


def _model(kind, options=None, normalization="batchnorm", dtype=np.float64, seed=0):
    """A small model with batch norm after every hidden layer (spatial: after the conv only)."""
    common = dict(
        normalization=normalization,
        norm_options=dict(options or {}),
        num_classes=3,
        dtype=dtype,
        seed=seed,
        weight_scale="he",
    )
    if normalization == "ghostbatchnorm":
        common["norm_options"].setdefault("virtual_batch_size", 4)
    if kind == "feature":
        return FullyConnectedNet([6, 5], input_dim=4, **common)
    return ConvNet((2, 4, 4), num_filters=(3,), hidden_dims=(), **common)


def _xy(kind, n=8, seed=0):
    rng = np.random.default_rng(seed)
    X = 1 + 2 * rng.standard_normal((n, 4) if kind == "feature" else (n, 2, 4, 4))
    return X, rng.integers(3, size=n)


def _layer1_input(model, X):
    """What layer 1's normalization sees: its linear output, (N, D) or (N, C, H, W)."""
    return model._forward(X, "test", stop=model.blocks[0])[0]


# -- momentum=None: PyTorch's cumulative average, counted in a buffer ------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_cumulative_average_counts_in_a_buffer(kind):
    model = _model(kind, CUMULATIVE)
    normed = [blk.index for blk in model.blocks if blk.norm is not None]
    counts = [f"num_batches_tracked{i}" for i in normed]
    assert set(counts) <= set(model.buffers)
    means = []
    for step in range(3):
        X, y = _xy(kind, seed=step)
        h = _layer1_input(model, X)  # layer 1's input does not depend on the other layers
        means.append(h.mean(axis=(0,) if kind == "feature" else (0, 2, 3)))
        model.loss(X, y)
        model.loss(X)  # test mode counts nothing
        for c in counts:
            np.testing.assert_array_equal(model.buffers[c], [step + 1])
    # the n-th batch weighs 1/n: the running mean is the plain mean of the batch means
    np.testing.assert_allclose(model.buffers["running_mean1"], np.mean(means, axis=0), rtol=1e-12)


@pytest.mark.parametrize("name", BN_NAMES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_batch_norm_name_counts_with_momentum_none(kind, name):
    model = _model(kind, CUMULATIVE, normalization=name)
    model.loss(*_xy(kind))
    assert model.buffers["num_batches_tracked1"].tolist() == [1.0]
    numeric = _model(kind, normalization=name)  # a numeric momentum keeps no count
    assert not any(k.startswith("num_batches_tracked") for k in numeric.buffers)


def test_a_failed_forward_pass_leaves_the_count():
    model = _model("feature", CUMULATIVE)
    X, y = _xy("feature")
    model.loss(X, y)
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(FloatingPointError):
        model.loss(bad, y)
    assert model.buffers["num_batches_tracked1"].tolist() == [1.0]
    assert model.first_nonfinite(bad).startswith("the input")  # a probe restores the buffers
    assert model.buffers["num_batches_tracked1"].tolist() == [1.0]


# -- checkpoints: the count is saved, restored, and required ---------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_checkpoint_keeps_the_count_and_continues_the_average_exactly(tmp_path, kind):
    full = _model(kind, CUMULATIVE, dtype=np.float32)
    half = _model(kind, CUMULATIVE, dtype=np.float32)
    for step in range(2):
        full.loss(*_xy(kind, seed=step))
        half.loss(*_xy(kind, seed=step))
    save_checkpoint(tmp_path / "m.npz", half)
    ckpt = load_checkpoint(tmp_path / "m.npz")
    assert ckpt.model_config["norm_options"] == CUMULATIVE
    twin = build_model(ckpt.model_config)
    restore_model(ckpt, twin)
    np.testing.assert_array_equal(twin.buffers["num_batches_tracked1"], [2])
    full.loss(*_xy(kind, seed=2))
    twin.loss(*_xy(kind, seed=2))  # the third batch weighs 1/3, as in the uninterrupted run
    assert set(twin.buffers) == set(full.buffers)
    for k, v in full.buffers.items():
        np.testing.assert_array_equal(twin.buffers[k], v, err_msg=k)


def _solver(model, iterations, **kw):
    rng = np.random.default_rng(3)
    X = 1 + 2 * rng.standard_normal((24, 2, 4, 4))
    y = rng.integers(3, size=24)
    data = {"X_train": X, "y_train": y, "X_val": X[:8], "y_val": y[:8]}
    return Solver(
        model,
        data,
        update_rule="adam",
        optim_config={"learning_rate": 1e-2},
        batch_size=8,
        num_iterations=iterations,
        num_train_samples=8,
        seed=7,
        verbose=False,
        **kw,
    )


def test_solver_resume_continues_the_cumulative_average_bit_for_bit(tmp_path):
    path = tmp_path / "two.npz"

    def save_at_2(solver, info):
        if info["iteration"] == 1:  # the second step (counted from 0)
            solver.save_checkpoint(path)

    full = _model("spatial", CUMULATIVE, dtype=np.float32)
    _solver(full, 3, callbacks=[save_at_2]).train()  # 3 steps, the checkpoint after step 2
    resumed = _model("spatial", CUMULATIVE, dtype=np.float32, seed=5)  # other weights
    solver = _solver(resumed, 3, resume_from=path)
    assert solver.iteration == 2
    assert resumed.buffers["num_batches_tracked1"].tolist() == [2.0]
    solver.train()  # the third step
    for k, v in full.params.items():
        np.testing.assert_array_equal(resumed.params[k], v, err_msg=k)
    for k, v in full.buffers.items():
        np.testing.assert_array_equal(resumed.buffers[k], v, err_msg=k)


def test_a_checkpoint_without_the_count_is_refused_with_the_reason(tmp_path):
    old = _model("feature", CUMULATIVE)  # as saved before the count was a buffer
    old.loss(*_xy("feature"))
    del old.buffers["num_batches_tracked1"]
    save_checkpoint(tmp_path / "old.npz", old)
    model = _model("feature", CUMULATIVE, seed=1)
    before = {k: v.copy() for k, v in model.params.items()}
    with pytest.raises(ValueError, match=r"lacks the buffers \['num_batches_tracked1'\].*1/n"):
        restore_model(load_checkpoint(tmp_path / "old.npz"), model)
    for k, v in before.items():
        np.testing.assert_array_equal(model.params[k], v)  # nothing restored
    # the reverse: a count the model does not keep
    save_checkpoint(tmp_path / "new.npz", _model("feature", CUMULATIVE))
    with pytest.raises(ValueError, match=r"holds the buffers.*norm_options=\{'momentum': None\}"):
        restore_model(load_checkpoint(tmp_path / "new.npz"), _model("feature"))


def test_checkpoints_of_numeric_momentum_still_restore(tmp_path):
    model = _model("spatial")
    model.loss(*_xy("spatial"))
    save_checkpoint(tmp_path / "m.npz", model)
    twin = _model("spatial", seed=4)
    restore_model(load_checkpoint(tmp_path / "m.npz"), twin)
    assert sorted(twin.buffers) == ["running_mean1", "running_var1"]
    np.testing.assert_array_equal(twin.buffers["running_var1"], model.buffers["running_var1"])


# -- track_running_stats=False ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["batchnorm", "ghostbatchnorm"])
@pytest.mark.parametrize("kind", KINDS)
def test_untracked_keeps_no_buffers_and_tests_with_batch_statistics(tmp_path, kind, name):
    model = _model(kind, UNTRACKED, normalization=name)
    assert model.buffers == {}
    X, y = _xy(kind)
    model.record = {1}
    model.loss(X, y)
    train = model.activations[1]
    model.loss(X)
    np.testing.assert_array_equal(model.activations[1], train)  # test mode = the batch's
    save_checkpoint(tmp_path / "m.npz", model)
    ckpt = load_checkpoint(tmp_path / "m.npz")
    assert ckpt.buffers == {}
    twin = build_model(ckpt.model_config)
    restore_model(ckpt, twin)
    np.testing.assert_array_equal(twin.loss(X), model.loss(X))


@pytest.mark.parametrize("kind", KINDS)
def test_untracked_cannot_be_folded_or_made_precise(kind):
    model = _model(kind, UNTRACKED)
    X, _ = _xy(kind)
    with pytest.raises(
        ValueError,
        match=r"cannot fold normalization 'batchnorm' of layer 1.*"
        r"keeps no \['running_mean', 'running_var'\].*track_running_stats=False",
    ):
        fold_batchnorm(model)
    with pytest.raises(ValueError, match=r"cannot recompute the statistics of.*track_running"):
        precise_bn(model, X)
    tracked = _model(kind, CUMULATIVE)  # momentum=None folds like any batch norm
    tracked.loss(*_xy(kind))
    np.testing.assert_allclose(fold_batchnorm(tracked).loss(X), tracked.loss(X), rtol=1e-10)


# -- bad options: one ValueError when the model is built -------------------------------------------


BAD = [
    (
        {"momentum": 1.5},
        r"expected norm_options\['momentum'\] a number in \[0, 1\].*got 1\.5.*1 - p",
    ),
    ({"momentum": -0.1}, r"got -0\.1"),
    ({"momentum": True}, r"momentum.*got True"),
    ({"momentum": "0.9"}, r"momentum.*got '0\.9'"),
    ({"momentum": float("nan")}, r"momentum.*got nan"),
    (
        {"track_running_stats": "yes"},
        r"expected norm_options\['track_running_stats'\] True or "
        r"False, got 'yes'; pass False",
    ),
    ({"track_running_stats": 1}, r"track_running_stats.*got 1"),
    ({"num_batches_tracked": 0}, r"may not set 'num_batches_tracked'.*keeps it as a buffer"),
    ({"momentum": None, "num_batches_tracked": 3}, r"may not set .*num_batches_tracked"),
    ({"running_mean": np.zeros(6)}, r"may not set \['running_mean'\]"),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("options, match", BAD, ids=[str(o) for o, _ in BAD])
def test_bad_options_are_refused_at_construction(kind, options, match):
    with pytest.raises(ValueError, match=match):
        _model(kind, options)


@pytest.mark.parametrize("name, options, match", [
    ("batchrenorm", UNTRACKED, r"'batchrenorm' takes no norm_options\['track_running_stats'\]"),
    ("batchrenorm", {"virtual_batch_size": 4}, r"takes no.*'virtual_batch_size'"),
    ("batchnorm-ema", UNTRACKED, r"'batchnorm-ema' cannot take track_running_stats=False"),
    ("ghostbatchnorm", {"momentum": 2}, r"'ghostbatchnorm'.*momentum.*got 2"),
])  # fmt: skip
def test_bad_options_of_the_other_batch_norms(name, options, match):
    for kind in KINDS:
        with pytest.raises(ValueError, match=match):
            _model(kind, options, normalization=name)
    _model("feature", {"track_running_stats": True}, normalization="batchnorm-ema")  # fine
