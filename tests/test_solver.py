"""Solver: training, batching, callbacks, best params, lr decay, errors, exact resume."""

import numpy as np
import pytest

from normlab.checkpoint import load_checkpoint
from normlab.models import FullyConnectedNet
from normlab.solver import NonFiniteLossError, Solver


class TinyNet:
    """affine - relu - (dropout) - affine - softmax, honouring the Solver's model contract.

    ``buffers["running_mean"]`` (H,) tracks the mean hidden activation in train mode; with
    ``dropout > 0`` the masks come from ``self.rng``.
    """

    def __init__(self, D=5, H=16, C=3, dropout=0.0, seed=0, dtype=np.float64, scale=0.3):
        rng = np.random.default_rng(seed)
        self.params = {
            "W1": (scale * rng.standard_normal((D, H))).astype(dtype),
            "b1": np.zeros(H, dtype),
            "W2": (scale * rng.standard_normal((H, C))).astype(dtype),
            "b2": np.zeros(C, dtype),
        }
        self.buffers = {"running_mean": np.zeros(H, dtype)}
        self.dropout = dropout
        if dropout > 0:
            self.rng = np.random.default_rng(seed + 1)
        self.calls = 0

    def get_config(self):
        return {"dropout": self.dropout, "hidden": int(self.params["b1"].shape[0])}

    def loss(self, X, y=None):
        W1, b1, W2, b2 = (self.params[k] for k in ("W1", "b1", "W2", "b2"))
        pre = X @ W1 + b1  # (N, H)
        h = np.maximum(pre, 0)  # (N, H)
        if y is None:
            return h @ W2 + b2  # (N, C)
        self.calls += 1
        rm = self.buffers["running_mean"]
        rm *= 0.9
        rm += 0.1 * h.mean(axis=0)
        mask = 1.0
        if self.dropout > 0:
            keep = self.rng.random(h.shape) >= self.dropout  # (N, H)
            mask = keep.astype(h.dtype) / (1 - self.dropout)
        hd = h * mask  # (N, H)
        scores = hd @ W2 + b2  # (N, C)
        shifted = scores - scores.max(axis=1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # (N, C)
        n = len(y)
        loss = -logp[np.arange(n), y].mean()
        dscores = np.exp(logp)
        dscores[np.arange(n), y] -= 1
        dscores /= n
        dh = (dscores @ W2.T) * mask * (pre > 0)  # (N, H)
        grads = {"W1": X.T @ dh, "b1": dh.sum(0), "W2": hd.T @ dscores, "b2": dscores.sum(0)}
        return loss, grads


def blobs(n, seed=0, D=5, C=3, dtype=np.float64, spread=1.0):
    rng = np.random.default_rng(seed)
    centers = 2.0 * rng.standard_normal((C, D))
    y = rng.integers(C, size=n)
    X = centers[y] + spread * rng.standard_normal((n, D))
    return X.astype(dtype), y


def make_data(n_train=60, n_val=30, dtype=np.float64, spread=1.0):
    X_train, y_train = blobs(n_train, 0, dtype=dtype, spread=spread)
    X_val, y_val = blobs(n_val, 1, dtype=dtype, spread=spread)
    return {"X_train": X_train, "y_train": y_train, "X_val": X_val, "y_val": y_val}


QUIET = {"verbose": False}


# -- training ------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", ["sgd", "sgd_momentum", "rmsprop", "adam"])
def test_overfits_small_set_and_loss_decreases(rule):
    lr = {"sgd": 0.5, "sgd_momentum": 0.1, "rmsprop": 1e-2, "adam": 1e-2}[rule]
    data = make_data(n_train=20, spread=1.5)
    solver = Solver(
        TinyNet(H=32), data, update_rule=rule, optim_config={"learning_rate": lr},
        batch_size=10, num_epochs=60, **QUIET,
    )  # fmt: skip
    solver.train()
    first, last = np.mean(solver.loss_history[:4]), np.mean(solver.loss_history[-4:])
    assert last < 0.25 * first
    assert max(solver.train_acc_history) == 1.0
    assert len(solver.loss_history) == 60 * 2
    assert len(solver.train_acc_history) == len(solver.val_acc_history) == 61  # epoch 0..60


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_and_per_parameter_solvers_agree_bit_for_bit(dtype):
    data = make_data(dtype=dtype)
    runs = []
    for fused in (True, False):
        model = TinyNet(dtype=dtype, dropout=0.2)
        solver = Solver(
            model, data, update_rule="adam", optim_config={"learning_rate": 5e-3},
            lr_decay=0.9, batch_size=16, num_epochs=3, fused=fused, **QUIET,
        )  # fmt: skip
        assert solver.optimizer.fused == fused
        solver.train()
        runs.append((model, solver))
    (m1, s1), (m2, s2) = runs
    assert s1.loss_history == s2.loss_history
    assert s1.val_acc_history == s2.val_acc_history
    for k in m1.params:
        assert m1.params[k].dtype == m2.params[k].dtype == dtype
        np.testing.assert_array_equal(m1.params[k], m2.params[k])


def test_fused_default_and_validation():
    data = make_data()
    assert Solver(TinyNet(), data, update_rule="adam", **QUIET).optimizer.fused
    custom = Solver(TinyNet(), data, update_rule=lambda w, dw, c: (w - 0.1 * dw, c), **QUIET)
    assert not custom.optimizer.fused and not custom.fused
    custom.train()  # the callable path trains too
    assert len(custom.loss_history) == 10 * 1
    with pytest.raises(ValueError, match=r"fused=True needs a built-in update rule"):
        Solver(TinyNet(), data, update_rule=lambda w, dw, c: (w, c), fused=True)
    model = TinyNet()
    model.params["b2"] = model.params["b2"].astype(np.float32)  # mixed dtypes: per-parameter
    assert not Solver(model, data, update_rule="sgd", **QUIET).optimizer.fused


# -- batching and callbacks ----------------------------------------------------------------------


def record(log):
    def fn(solver, info):
        log.append({**info, "n_loss": len(solver.loss_history)})

    return fn


def test_permutation_batching_covers_every_sample_once_per_epoch():
    log = []
    n, bs, epochs = 60, 12, 3
    solver = Solver(
        TinyNet(), make_data(n_train=n), batch_size=bs, num_epochs=epochs,
        callbacks=[record(log)], **QUIET,
    )  # fmt: skip
    solver.train()
    assert solver.iterations_per_epoch == n // bs
    orders = []
    for e in range(epochs):
        idx = np.concatenate([r["batch_indices"] for r in log if r["epoch"] == e])
        assert all(len(r["batch_indices"]) == bs for r in log)
        np.testing.assert_array_equal(np.sort(idx), np.arange(n))
        orders.append(idx)
    assert not np.array_equal(orders[0], orders[1])  # a fresh permutation each epoch


def test_ragged_last_batch_is_dropped():
    log = []
    solver = Solver(
        TinyNet(), make_data(n_train=65), batch_size=20, num_epochs=2,
        callbacks=[record(log)], **QUIET,
    )  # fmt: skip
    solver.train()
    assert solver.iterations_per_epoch == 3 and len(log) == 6
    for e in range(2):
        idx = np.concatenate([r["batch_indices"] for r in log if r["epoch"] == e])
        assert len(idx) == 60 and len(np.unique(idx)) == 60  # no sample twice in an epoch
    # a training set smaller than one batch is a single batch of everything
    small = Solver(TinyNet(), make_data(n_train=7), batch_size=20, num_epochs=1, **QUIET)
    assert small.iterations_per_epoch == 1
    small.train()
    assert len(small.loss_history) == 1


def test_callbacks_called_once_per_iteration_with_info():
    log = []
    solver = Solver(
        TinyNet(), make_data(), batch_size=20, num_epochs=2, callbacks=[record(log)], **QUIET
    )
    solver.train()
    assert len(log) == 2 * 3
    assert [r["iteration"] for r in log] == list(range(6))
    assert [r["epoch"] for r in log] == [0, 0, 0, 1, 1, 1]
    assert [r["batch"] for r in log] == [0, 1, 2, 0, 1, 2]
    assert [r["loss"] for r in log] == solver.loss_history
    assert [r["n_loss"] for r in log] == list(range(1, 7))  # called after the step
    r = log[4]
    np.testing.assert_array_equal(r["X_batch"], solver.X_train[r["batch_indices"]])
    np.testing.assert_array_equal(r["y_batch"], solver.y_train[r["batch_indices"]])
    assert set(r["grads"]) == {"W1", "b1", "W2", "b2"}


# -- accuracy, best params, lr decay -------------------------------------------------------------


class FixedScores:
    """Predicts class ``X[:, 0]``; trains nothing."""

    def __init__(self):
        self.params = {"w": np.zeros(1)}

    def loss(self, X, y=None):
        return np.eye(3)[X[:, 0].astype(int)]  # (N, 3)


def test_check_accuracy_batches_and_subsamples_without_replacement():
    X = np.repeat(np.arange(3), 100)[:, None].astype(float)  # (300, 1)
    y = X[:, 0].astype(int)
    y[:30] = 1  # 30 wrong among the first 100 (true class 0)
    solver = Solver(FixedScores(), {"X_train": X, "y_train": y, "X_val": X, "y_val": y}, **QUIET)
    assert solver.check_accuracy(X, y, batch_size=7) == pytest.approx(270 / 300)
    assert solver.check_accuracy(X, y, num_samples=300) == pytest.approx(0.9)
    accs = [solver.check_accuracy(X, y, num_samples=250) for _ in range(20)]
    # without replacement at least 220 of 250 are right; with replacement this would vary more
    assert all(acc >= 220 / 250 for acc in accs) and len(set(accs)) > 1


@pytest.mark.parametrize("fused", [True, False])
def test_best_params_restored_into_existing_arrays(fused):
    model = TinyNet()
    snapshots = [{k: v.copy() for k, v in model.params.items()}]
    buffer_snaps = [{k: v.copy() for k, v in model.buffers.items()}]

    def snap(solver, info):
        if info["batch"] == solver.iterations_per_epoch - 1:
            snapshots.append({k: v.copy() for k, v in solver.model.params.items()})
            buffer_snaps.append({k: v.copy() for k, v in solver.model.buffers.items()})

    solver = Solver(
        model, make_data(), update_rule="adam", optim_config={"learning_rate": 1e-2},
        batch_size=20, num_epochs=4, callbacks=[snap], fused=fused, **QUIET,
    )  # fmt: skip
    scripted = iter([0.1, 0.5, 0.9, 0.3, 0.2])  # val accuracy per epoch 0..4: best is epoch 2

    def fake_check_accuracy(X, y, num_samples=None, batch_size=100):
        return next(scripted) if X is solver.X_val else 0.0

    solver.check_accuracy = fake_check_accuracy
    held = model.params["W1"]
    solver.train()
    assert solver.best_val_acc == 0.9 and solver.val_acc_history == [0.1, 0.5, 0.9, 0.3, 0.2]
    assert len(snapshots) == 5
    for k in model.params:
        np.testing.assert_array_equal(model.params[k], snapshots[2][k])
    assert not np.array_equal(model.params["W1"], snapshots[4]["W1"])
    # the running statistics come back with the parameters they were validated with
    held_buffer = model.buffers["running_mean"]
    np.testing.assert_array_equal(held_buffer, buffer_snaps[2]["running_mean"])
    assert not np.array_equal(held_buffer, buffer_snaps[4]["running_mean"])
    assert model.params["W1"] is held  # the restore copied into the model's own arrays


@pytest.mark.parametrize("fused", [True, False])
def test_lr_decay_every_epoch(fused):
    solver = Solver(
        TinyNet(), make_data(), update_rule="sgd_momentum", optim_config={"learning_rate": 0.1},
        lr_decay=0.5, batch_size=20, num_epochs=3, fused=fused, **QUIET,
    )  # fmt: skip
    solver.train()
    configs = solver.optim_configs
    assert set(configs) == {"W1", "b1", "W2", "b2"}
    for cfg in configs.values():
        assert cfg["learning_rate"] == pytest.approx(0.1 * 0.5**3, rel=1e-15)
        assert cfg["momentum"] == 0.9


# -- errors --------------------------------------------------------------------------------------


def test_unknown_kwargs_listed_with_known_ones():
    with pytest.raises(
        ValueError, match=r"Unrecognized arguments \['bach_size', 'lr'\].*'batch_size'"
    ):
        Solver(TinyNet(), make_data(), bach_size=10, lr=1e-3)


def test_bad_data_and_options():
    data = make_data()
    with pytest.raises(ValueError, match=r"missing \['y_val'\]"):
        Solver(TinyNet(), {k: v for k, v in data.items() if k != "y_val"})
    with pytest.raises(ValueError, match=r"X_train of shape \(N, ...\).*\(60, 5\) and \(59,\)"):
        Solver(TinyNet(), {**data, "y_train": data["y_train"][:-1]})
    with pytest.raises(
        ValueError, match=r"update_rule to be one of .*'adam'.* or a callable, got 3"
    ):
        Solver(TinyNet(), data, update_rule=3)
    with pytest.raises(ValueError, match=r"unknown update rule 'adamw'.*'adam'"):
        Solver(TinyNet(), data, update_rule="adamw")
    with pytest.raises(ValueError, match=r"batch_size to be an integer >= 1, got 0"):
        Solver(TinyNet(), data, batch_size=0)
    with pytest.raises(ValueError, match=r"unknown optim_config keys \['lr'\] for 'adam'"):
        Solver(TinyNet(), data, update_rule="adam", optim_config={"lr": 1e-3})


def _cb(solver, info):
    pass


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_train_samples": 0}, r"num_train_samples to be an integer >= 1 or None, got 0"),
        ({"num_train_samples": 2.5}, r"num_train_samples to be .*got 2.5"),
        ({"num_train_samples": True}, r"num_train_samples to be .*got True"),
        ({"num_val_samples": -3}, r"num_val_samples to be an integer >= 1 or None, got -3"),
        ({"lr_decay": 0}, r"lr_decay to be a finite number > 0, got 0"),
        ({"lr_decay": -0.5}, r"lr_decay to be a finite number > 0, got -0.5"),
        ({"lr_decay": "0.9"}, r"lr_decay .*got '0.9'"),
        ({"lr_decay": True}, r"lr_decay .*got True"),
        ({"lr_decay": float("nan")}, r"lr_decay .*got nan"),
        ({"callbacks": _cb}, r"callbacks to be a sequence of callables or None.*pass \[_cb\]"),
        ({"callbacks": [_cb, 3]}, r"callbacks to be callables, got \[3\]"),
        ({"callbacks": "fn"}, r"callbacks to be a sequence"),
        ({"batch_size": True}, r"batch_size to be an integer >= 1, got True"),
        ({"batch_size": 16.0}, r"batch_size to be an integer >= 1, got 16.0"),
        ({"num_epochs": -1}, r"num_epochs to be an integer >= 0, got -1"),
        ({"print_every": 0}, r"print_every to be an integer >= 1, got 0"),
        ({"optim_config": [("learning_rate", 1)]}, r"optim_config a dict or None"),
    ],
)
def test_options_are_validated_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Solver(TinyNet(), make_data(), **kwargs)


def test_numpy_integers_and_none_are_accepted():
    solver = Solver(
        TinyNet(), make_data(), batch_size=np.int64(20), num_epochs=np.int32(1),
        num_train_samples=np.uint16(30), num_val_samples=None, lr_decay=np.float32(0.5),
        print_every=np.int8(3), callbacks=None, **QUIET,
    )  # fmt: skip
    assert type(solver.batch_size) is int and solver.num_train_samples == 30
    assert solver.callbacks == [] and solver.lr_decay == 0.5
    solver.train()
    assert solver.config()["num_train_samples"] == 30  # JSON-able ints


class NaNAfter(TinyNet):
    def __init__(self, bad_call, **kw):
        super().__init__(**kw)
        self.bad_call = bad_call

    def loss(self, X, y=None):
        out = super().loss(X, y)
        if y is not None and self.calls == self.bad_call:
            return np.nan, out[1]
        return out


def test_non_finite_loss_names_iteration_and_epoch():
    model = NaNAfter(bad_call=5)
    solver = Solver(model, make_data(), update_rule="adam", batch_size=20, num_epochs=3, **QUIET)
    before = {}

    def keep(solver, info):
        before.update({k: v.copy() for k, v in solver.model.params.items()})

    solver.callbacks.append(keep)
    with pytest.raises(
        NonFiniteLossError, match=r"nan at iteration 5 of 9 \(epoch 2 of 3, batch 2 of 3\)"
    ):
        solver.train()
    assert issubclass(NonFiniteLossError, FloatingPointError)
    assert len(solver.loss_history) == 4
    for k in before:  # the bad step did not touch the parameters
        np.testing.assert_array_equal(solver.model.params[k], before[k])


def test_non_finite_loss_restores_the_batchnorm_running_statistics():
    data = make_data(n_train=40)
    # an inf in the third batch (the solver's seed=0 Generator draws this permutation first)
    data["X_train"][np.random.default_rng(0).permutation(40)[25], 2] = np.inf
    model = FullyConnectedNet([8, 8], input_dim=5, num_classes=3, normalization="batchnorm", seed=0)
    arrays = dict(model.buffers)
    initial = {k: v.copy() for k, v in model.buffers.items()}
    params, buffers = [], []

    def keep(solver, info):  # the state after each good step is the state before the next
        params.append({k: v.copy() for k, v in solver.model.params.items()})
        buffers.append({k: v.copy() for k, v in solver.model.buffers.items()})

    solver = Solver(model, data, update_rule="adam", batch_size=10, callbacks=[keep], **QUIET)
    with (
        np.errstate(invalid="ignore"),
        pytest.raises(NonFiniteLossError, match=r"batchnorm_forward refused non-finite values"),
    ):
        solver.train()
    assert len(buffers) == 2  # two good steps, then the inf
    for k, v in model.buffers.items():
        assert v is arrays[k]  # the same arrays, restored in place
        np.testing.assert_array_equal(v, buffers[-1][k], err_msg=k)
        assert np.isfinite(v).all() and not np.array_equal(v, initial[k])
    for k, v in model.params.items():
        np.testing.assert_array_equal(v, params[-1][k], err_msg=k)
    assert np.isfinite(model.loss(data["X_val"])).all()  # test mode still works


# -- checkpoints and exact resume ----------------------------------------------------------------


def assert_same_run(a, b):
    (ma, sa), (mb, sb) = a, b
    assert sa.loss_history == sb.loss_history
    assert sa.train_acc_history == sb.train_acc_history
    assert sa.val_acc_history == sb.val_acc_history
    assert sa.best_val_acc == sb.best_val_acc
    assert (sa.epoch, sa.iteration) == (sb.epoch, sb.iteration)
    for k in ma.params:
        np.testing.assert_array_equal(ma.params[k], mb.params[k], err_msg=k)
        np.testing.assert_array_equal(sa.best_params[k], sb.best_params[k], err_msg=k)
    np.testing.assert_array_equal(ma.buffers["running_mean"], mb.buffers["running_mean"])
    assert ma.rng.bit_generator.state == mb.rng.bit_generator.state
    assert sa.rng.bit_generator.state == sb.rng.bit_generator.state


def make_run(num_epochs, fused=True, seed=0, **kw):
    model = TinyNet(dropout=0.3, seed=seed)
    solver = Solver(
        model, make_data(), update_rule="adam", optim_config={"learning_rate": 1e-2},
        lr_decay=0.9, batch_size=16, num_epochs=num_epochs, num_train_samples=40,
        num_val_samples=20, fused=fused, seed=7, **QUIET, **kw,
    )  # fmt: skip
    return model, solver


@pytest.mark.parametrize("fused_first,fused_second", [(True, True), (False, False), (True, False)])
def test_resume_equals_uninterrupted(tmp_path, fused_first, fused_second):
    full = make_run(4, fused=fused_first)
    full[1].train()
    ckpt = tmp_path / "run"
    _, first = make_run(2, fused=fused_first, checkpoint_name=str(ckpt))
    first.train()
    assert (tmp_path / "run.npz").exists()
    # a fresh model with other weights and RNG: everything must come from the checkpoint
    model = TinyNet(dropout=0.3, seed=123)
    second = Solver.from_checkpoint(
        model, make_data(), ckpt.with_suffix(".npz"), num_epochs=4, fused=fused_second, **QUIET
    )
    assert second.lr_decay == 0.9 and second.batch_size == 16 and second.fused == fused_second
    assert (second.epoch, second.iteration) == (2, 2 * 3)
    second.train()
    assert_same_run(full, (model, second))


def write_version_1(path, ckpt, kind):
    """Rewrite a checkpoint in format 1: optimizer state of kind 'flat' or 'per_param'."""
    import json

    import normlab.checkpoint as ck

    opt, names = ckpt.state["optimizer"], list(ckpt.params)
    if kind == "flat":
        first = opt["configs"][names[0]]
        config = {
            k: (np.concatenate([opt["configs"][n][k] for n in names], axis=None)
                if isinstance(v, np.ndarray) else v)
            for k, v in first.items()
        }  # fmt: skip
        old = {"kind": "flat", "rule": opt["rule"], "names": names, "dtype": "float64",
               "shapes": [list(ckpt.params[n].shape) for n in names], "config": config}  # fmt: skip
    else:
        old = {"kind": "per_param", "rule": opt["rule"], "configs": opt["configs"]}
    state = {**ckpt.state, "optimizer": old, "batch_size": ckpt.config["batch_size"]}
    doc = {
        "format": ck.FORMAT, "version": 1, "state": state, "config": ckpt.config,
        "model": {"params": ckpt.params, "buffers": ckpt.buffers,
                  "rng_state": ckpt.model_rng_state, "config": ckpt.model_config},
    }  # fmt: skip
    arrays = {}
    text = json.dumps(ck._encode(doc, arrays, ""), sort_keys=True)
    arrays[ck._DOC_KEY] = np.frombuffer(text.encode(), np.uint8)
    np.savez(path, **arrays)


@pytest.mark.parametrize("kind", ["flat", "per_param"])
@pytest.mark.parametrize("fused", [True, False])
def test_version_1_checkpoints_resume_exactly(tmp_path, kind, fused):
    full = make_run(4)
    full[1].train()
    _, first = make_run(2, checkpoint_name=str(tmp_path / "run"))
    first.train()
    write_version_1(tmp_path / "v1.npz", load_checkpoint(tmp_path / "run.npz"), kind)
    model = TinyNet(dropout=0.3, seed=123)
    second = Solver.from_checkpoint(
        model, make_data(), tmp_path / "v1.npz", num_epochs=4, fused=fused, **QUIET
    )
    second.train()
    assert_same_run(full, (model, second))


def test_resume_mid_epoch_from_a_callback_checkpoint(tmp_path):
    path = tmp_path / "mid.npz"

    def save_at_4(solver, info):
        if info["iteration"] == 4:  # epoch 1, batch 1
            solver.save_checkpoint(path)

    full = make_run(3, callbacks=[save_at_4])
    full[1].train()
    model, resumed = make_run(3, seed=5, resume_from=path)
    assert resumed.iteration == 5
    resumed.train()
    assert_same_run(full, (model, resumed))


def test_checkpoint_every_epoch_and_resume_validation(tmp_path):
    _, solver = make_run(3, checkpoint_name=str(tmp_path / "ep{epoch}"))
    solver.train()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ep1.npz", "ep2.npz", "ep3.npz"]
    ckpt = solver.resume(tmp_path / "ep2.npz")
    assert ckpt.model_config == {"dropout": 0.3, "hidden": 16}
    assert ckpt.config["update_rule"] == "adam" and ckpt.config["batch_size"] == 16
    assert solver.epoch == 2 and len(solver.val_acc_history) == 3
    path = tmp_path / "ep2.npz"
    _, other = make_run(3)
    other.lr_decay, other.batch_size = 1.0, 20
    with pytest.raises(ValueError, match=r"lr_decay=0.9, batch_size=16, got lr_decay=1.0, batch"):
        other.resume(path)
    with pytest.raises(ValueError, match=r"expected a checkpoint for N_train=59, got N_train=60"):
        Solver.from_checkpoint(TinyNet(dropout=0.3), make_data(n_train=59), path)
    with pytest.raises(ValueError, match=r"update_rule='adam', got update_rule='sgd'"):
        Solver.from_checkpoint(TinyNet(dropout=0.3), make_data(), path, update_rule="sgd")
    with pytest.raises(ValueError, match=r"expected params .*'W1': \(5, 8\)"):
        Solver.from_checkpoint(TinyNet(H=8, dropout=0.3), make_data(), path)
    with pytest.raises(ValueError, match=r"checkpoint to lack model.rng state"):
        Solver.from_checkpoint(TinyNet(dropout=0.0), make_data(), path)


def snapshot(model, solver):
    """Everything resume may modify, copied."""
    return {
        "params": {k: v.copy() for k, v in model.params.items()},
        "buffers": {k: v.copy() for k, v in model.buffers.items()},
        "model_rng": model.rng.bit_generator.state,
        "rng": solver.rng.bit_generator.state,
        "optim": {
            k: {n: np.copy(x) for n, x in c.items()} for k, c in solver.optim_configs.items()
        },
        "counters": (solver.epoch, solver.iteration, solver._cursor),
        "histories": (list(solver.loss_history), list(solver.val_acc_history)),
        "best": {k: v.copy() for k, v in solver.best_params.items()},
    }


def assert_unchanged(before, after):
    for key in ("params", "buffers", "best"):
        assert before[key].keys() == after[key].keys(), key
        for k in before[key]:
            assert before[key][k].dtype == after[key][k].dtype
            np.testing.assert_array_equal(before[key][k], after[key][k], err_msg=f"{key} {k}")
    for key in ("model_rng", "rng", "counters", "histories"):
        assert before[key] == after[key], key
    assert before["optim"].keys() == after["optim"].keys()
    for k, c in before["optim"].items():
        assert c.keys() == after["optim"][k].keys()
        for n in c:
            np.testing.assert_array_equal(c[n], after["optim"][k][n], err_msg=f"{k} {n}")


@pytest.mark.parametrize("fused", [True, False])
def test_float64_checkpoint_into_float32_model_raises_and_changes_nothing(tmp_path, fused):
    _, first = make_run(2, fused=fused, checkpoint_name=str(tmp_path / "run"))
    first.train()  # a float64 run
    model = TinyNet(dropout=0.3, seed=5, dtype=np.float32)
    data = make_data(dtype=np.float32)
    solver = Solver(
        model, data, update_rule="adam", optim_config={"learning_rate": 1e-2},
        lr_decay=0.9, batch_size=16, num_epochs=4, num_train_samples=40,
        num_val_samples=20, fused=fused, seed=7, **QUIET,
    )  # fmt: skip
    solver.train()  # some state of its own, to see that none of it is touched
    before = snapshot(model, solver)
    with pytest.raises(
        ValueError, match=r"params of dtypes \{'W1': 'float32'.*got \{'W1': 'float64'"
    ):
        solver.resume(tmp_path / "run.npz")
    assert_unchanged(before, snapshot(model, solver))
    with pytest.raises(ValueError, match="dtypes"):
        Solver.from_checkpoint(TinyNet(dropout=0.3, dtype=np.float32), data, tmp_path / "run.npz")


def _tamper(name):
    """A function that breaks one part of a loaded checkpoint, in place."""

    def optimizer(ckpt, fn):
        fn(ckpt.state["optimizer"]["configs"]["W1"])

    return {
        "optimizer dtype": lambda c: optimizer(c, lambda o: o.update(m=o["m"].astype(np.float32))),
        "optimizer shape": lambda c: optimizer(c, lambda o: o.update(v=o["v"][:-1])),
        "optimizer key": lambda c: optimizer(c, lambda o: o.update(momentum=0.9)),
        "optimizer rule": lambda c: c.state["optimizer"].update(rule="sgd"),
        "optimizer names": lambda c: c.state["optimizer"]["configs"].update(
            b9=c.state["optimizer"]["configs"].pop("b2")
        ),
        "buffer dtype": lambda c: c.buffers.update(
            running_mean=c.buffers["running_mean"].astype(np.float32)
        ),
        "buffer name": lambda c: c.buffers.update(running_var=c.buffers.pop("running_mean")),
        "best_params dtype": lambda c: c.state["best_params"].update(
            b1=c.state["best_params"]["b1"].astype(np.float32)
        ),
        "best_params shape": lambda c: c.state["best_params"].update(b1=np.zeros(3)),
        "model rng": lambda c: setattr(c, "model_rng_state", np.random.MT19937(0).state),
        "solver rng": lambda c: c.state.update(rng_state={"bit_generator": "PCG64"}),
        "batch order": lambda c: c.state.update(batch_order=np.arange(5)),
        "batch cursor": lambda c: c.state.update(batch_cursor=99),
        "history": lambda c: c.state.update(loss_history=[1.0, 2.0]),
        "missing state": lambda c: c.state.pop("optimizer"),
    }[name]


TAMPERED = [
    (
        "optimizer dtype",
        r"optimizer state m of W1 with shape \(5, 16\) and dtype float64 .*float32",
    ),
    ("optimizer shape", r"optimizer state v"),
    ("optimizer key", r"adam hyperparameters .*got \{'momentum': 0.9\}"),
    ("optimizer rule", r"optimizer state for 'adam', got 'sgd'"),
    ("optimizer names", r"optimizer state for"),
    ("buffer dtype", r"buffers of dtypes \{'running_mean': 'float64'\}"),
    ("buffer name", r"expected buffers"),
    ("best_params dtype", r"best_params of dtypes"),
    ("best_params shape", r"best_params .*'b1': \(16,\).*'b1': \(3,\)"),
    ("model rng", r"model.rng state of a PCG64 bit generator, got 'MT19937'"),
    ("solver rng", r"solver's rng state of a PCG64"),
    ("batch order", r"batch_order None or integers of shape \(60,\)"),
    ("batch cursor", r"batch_cursor <= 3"),
    ("history", r"loss_history a 1-D float array"),
    ("missing state", r"Solver checkpoint with state \['optimizer'\]"),
]


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("name, match", TAMPERED, ids=[t[0] for t in TAMPERED])
def test_resume_validates_everything_before_modifying_anything(tmp_path, fused, name, match):
    path = tmp_path / "run.npz"
    _, first = make_run(2, fused=fused, checkpoint_name=str(path))
    first.train()
    model, solver = make_run(3, seed=4, fused=not fused)  # either layout into either path
    solver.train()
    before = snapshot(model, solver)
    ckpt = load_checkpoint(path)
    _tamper(name)(ckpt)
    with pytest.raises(ValueError, match=match):
        solver.resume(ckpt)
    assert_unchanged(before, snapshot(model, solver))


def test_verbose_prints_iterations_and_epochs(capsys):
    solver = Solver(
        TinyNet(), make_data(), batch_size=20, num_epochs=2, print_every=2, progress=False
    )
    solver.train()
    out = capsys.readouterr().out
    assert "(Epoch 0 / 2) train acc:" in out and "(Epoch 2 / 2) train acc:" in out
    assert "(Iteration 1 / 6) loss:" in out and "(Iteration 3 / 6) loss:" in out
    assert "(Iteration 2 / 6)" not in out


def test_progress_bar_and_builtin_callable_rule(capsys):
    from normlab.optim import adam

    solver = Solver(TinyNet(), make_data(), update_rule=adam, batch_size=20, num_epochs=2)
    assert solver.rule_name == "adam" and solver.fused  # a built-in passed as a function
    solver.train()
    captured = capsys.readouterr()
    assert "(Epoch 2 / 2) train acc:" in captured.out  # written through tqdm.write
    assert "6/6" in captured.err  # the bar


def test_malformed_version_1_optimizer_state_is_not_a_checkpoint(tmp_path):
    _, first = make_run(1, checkpoint_name=str(tmp_path / "run"))
    first.train()
    ckpt = load_checkpoint(tmp_path / "run.npz")
    write_version_1(tmp_path / "v1.npz", ckpt, "flat")
    bad = load_checkpoint(tmp_path / "v1.npz")  # read back as format 2: fine
    assert sorted(bad.state["optimizer"]) == ["configs", "rule"]
    for kind in ("flat", "per_param"):
        write_version_1(tmp_path / "v1.npz", ckpt, kind)
        import normlab.checkpoint as ck

        with np.load(tmp_path / "v1.npz") as npz:
            arrays = dict(npz)
        doc = arrays[ck._DOC_KEY].tobytes().decode()
        for old, new in (('"kind": "flat"', '"kind": "dense"'), ('"version": 1', '"version": 0')):
            if old in doc:
                arrays[ck._DOC_KEY] = np.frombuffer(doc.replace(old, new).encode(), np.uint8)
                np.savez(tmp_path / "broken.npz", **arrays)
                with pytest.raises(ValueError, match=r"is not a normlab checkpoint"):
                    load_checkpoint(tmp_path / "broken.npz")


def test_train_state_round_trip_and_refusal():
    from normlab.train_state import TrainState

    _, a = make_run(2)
    a.train()
    _, b = make_run(2, seed=3)
    b.load_train_state(a.train_state())
    assert (b.epoch, b.iteration, b.loss_history) == (a.epoch, a.iteration, a.loss_history)
    assert b.rng.bit_generator.state == a.rng.bit_generator.state
    with pytest.raises(ValueError, match=r"expected a checkpoint for N_train=60, got N_train=59"):
        b.load_train_state(TrainState(num_train=59, rng_state=b.rng.bit_generator.state))


def test_a_failing_update_leaves_the_running_statistics_as_they_were():
    def broken(w, dw, config):
        raise RuntimeError("bug in my rule")

    model = TinyNet()
    solver = Solver(model, make_data(), update_rule=broken, **QUIET)
    before = model.buffers["running_mean"].copy()
    with pytest.raises(RuntimeError, match="bug in my rule"):
        solver.step()
    np.testing.assert_array_equal(model.buffers["running_mean"], before)
