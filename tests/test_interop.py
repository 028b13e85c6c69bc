"""normlab.interop against PyTorch: the same weights give the same test-mode scores, both ways."""

import json
import pickle
import struct

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")
from safetensors.numpy import load_file, save_file  # noqa: E402
from safetensors.torch import load_file as torch_load_file  # noqa: E402
from safetensors.torch import save_file as torch_save_file  # noqa: E402
from torch import nn  # noqa: E402

from normlab.interop import (  # noqa: E402
    StateMismatchError,
    load_torch_state,
    save_torch_state,
    torch_modules,
)
from normlab.models import ConvNet, FullyConnectedNet, ThreeLayerConvNet, TwoLayerNet  # noqa: E402

torch.set_num_threads(1)
ATOL = 1e-5


def _train(model, X, y, steps=5, lr=0.05):
    """A few SGD steps in train mode: running statistics and parameters away from their init."""
    for _ in range(steps):
        _, grads = model.loss(X, y)
        for k, g in grads.items():
            model.params[k][...] -= lr * g


def _torch_train(net, X, y, steps=5, lr=0.05):
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    net.train()
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(net(torch.from_numpy(X)), torch.from_numpy(y)).backward()
        opt.step()


def _net(model):
    """The Sequential of ``model``, built from :func:`torch_modules`."""
    return nn.Sequential(*[eval(m, {"nn": nn}) for m in torch_modules(model)])


def _torch_scores(net, X):
    net.eval()
    with torch.no_grad():
        return net(torch.from_numpy(X)).numpy()


def _data(shape, n=16, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, *shape)).astype(np.float32)
    return X, rng.integers(classes, size=n)


def _both_ways(make, shape, tmp_path, steps=5):
    """normlab -> file -> torch and torch -> file -> normlab; the max |score difference|s."""
    X, y = _data(shape)
    model = make(0)
    _train(model, X, y, steps)
    save_torch_state(model, tmp_path / "a.safetensors")
    net = _net(model)
    net.load_state_dict(torch_load_file(tmp_path / "a.safetensors"))  # strict: every key
    there = np.abs(_torch_scores(net, X) - model.loss(X)).max()

    _torch_train(net, X, y, steps)  # the torch side moves on: new weights and statistics
    torch_save_file(net.state_dict(), tmp_path / "b.safetensors")
    other = make(1)
    load_torch_state(other, tmp_path / "b.safetensors")
    back = np.abs(_torch_scores(net, X) - other.loss(X)).max()
    return float(there), float(back)


def _fc(norm, **kw):
    return lambda seed: FullyConnectedNet(
        [32, 32], input_dim=20, normalization=norm, seed=seed, weight_scale="he", **kw
    )


def _conv(norm, **kw):
    return lambda seed: ConvNet(
        (3, 8, 8), num_filters=(4, 6), hidden_dims=(12,), normalization=norm, seed=seed, **kw
    )


@pytest.mark.parametrize(
    "make, shape",
    [
        (_fc("batchnorm"), (20,)),
        (_fc(None), (20,)),
        (_fc(None, dropout_keep_ratio=0.5, activation="tanh"), (20,)),
        (_fc("batchnorm", norm_options={"momentum": None}), (20,)),
        (_fc("batchnorm", norm_options={"momentum": 0.8, "running_var_unbiased": True}), (20,)),
        (_fc("batchnorm", norm_options={"track_running_stats": False}), (20,)),
        (_fc("layernorm"), (20,)),
        (_fc("groupnorm", groups=4), (20,)),
        (_conv("batchnorm"), (3, 8, 8)),
        (_conv(None, dropout_keep_ratio=0.7), (3, 8, 8)),
        (_conv("layernorm"), (3, 8, 8)),
        (_conv("groupnorm", groups=2), (3, 8, 8)),
        (lambda s: TwoLayerNet(input_dim=20, hidden_dim=16, seed=s, dtype=np.float32), (20,)),
        (lambda s: ThreeLayerConvNet((3, 8, 8), num_filters=4, filter_size=3, hidden_dim=12,
                                     seed=s, weight_scale=0.1), (3, 8, 8)),  # fmt: skip
    ],
    ids=[
        "fc-bn", "fc", "fc-dropout-tanh", "fc-bn-cumulative", "fc-bn-unbiased", "fc-bn-untracked",
        "fc-ln", "fc-gn", "conv-bn", "conv-dropout", "conv-ln", "conv-gn", "two-layer",
        "three-layer-conv",
    ],
)  # fmt: skip
def test_scores_agree_both_ways(make, shape, tmp_path):
    there, back = _both_ways(make, shape, tmp_path)
    print(f"max |score difference|: normlab->torch {there:.2e}, torch->normlab {back:.2e}")
    assert there <= ATOL and back <= ATOL


def test_the_lecture_sequential_written_by_hand(tmp_path):
    """The layout is the hand-written nn.Sequential's, not only torch_modules' own."""
    model = _fc("batchnorm")(0)
    X, y = _data((20,))
    _train(model, X, y)
    save_torch_state(model, tmp_path / "m.safetensors")
    net = nn.Sequential(
        nn.Linear(20, 32), nn.BatchNorm1d(32), nn.ReLU(),
        nn.Linear(32, 32), nn.BatchNorm1d(32), nn.ReLU(),
        nn.Linear(32, 10),
    )  # fmt: skip
    state = torch_load_file(tmp_path / "m.safetensors")
    assert sorted(state) == sorted(net.state_dict())  # the same keys (a file keeps no order)
    assert list(net.state_dict())[:7] == [
        "0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
        "1.num_batches_tracked",
    ]  # fmt: skip
    assert state["0.weight"].shape == (32, 20)  # Linear's (out, in)
    assert state["1.num_batches_tracked"].dtype == torch.int64
    np.testing.assert_array_equal(state["1.running_var"].numpy(), model.buffers["running_var1"])
    net.load_state_dict(state)
    np.testing.assert_allclose(_torch_scores(net, X), model.loss(X), rtol=0, atol=ATOL)


def test_num_batches_tracked_both_ways(tmp_path):
    model = _fc("batchnorm", norm_options={"momentum": None})(0)
    X, y = _data((20,))
    _train(model, X, y, steps=3)
    save_torch_state(model, tmp_path / "m.safetensors")
    assert int(load_file(tmp_path / "m.safetensors")["1.num_batches_tracked"]) == 3
    other = _fc("batchnorm", norm_options={"momentum": None})(1)
    load_torch_state(other, tmp_path / "m.safetensors")
    assert other.buffers["num_batches_tracked1"][0] == 3
    # a model that keeps no count writes 0 and ignores the file's
    plain = _fc("batchnorm")(2)
    save_torch_state(plain, tmp_path / "p.safetensors")
    assert int(load_file(tmp_path / "p.safetensors")["1.num_batches_tracked"]) == 0
    load_torch_state(plain, tmp_path / "m.safetensors")


def _saved(tmp_path):
    model = _fc("batchnorm")(0)
    save_torch_state(model, tmp_path / "m.safetensors")
    return model, load_file(tmp_path / "m.safetensors")


def test_missing_key_is_named(tmp_path):
    model, state = _saved(tmp_path)
    del state["4.running_var"]
    save_file(state, tmp_path / "bad.safetensors")
    with pytest.raises(StateMismatchError, match=r"missing key '4.running_var'.*\(32,\)") as e:
        load_torch_state(model, tmp_path / "bad.safetensors")
    assert (e.value.key, e.value.expected, e.value.got) == ("4.running_var", (32,), None)
    assert "nn.Sequential(nn.Linear(20, 32)" in str(e.value)  # how to fix: the model's layout


def test_extra_key_is_named(tmp_path):
    model, state = _saved(tmp_path)
    state["7.weight"] = np.zeros((3, 10), np.float32)
    save_file(state, tmp_path / "bad.safetensors")
    with pytest.raises(StateMismatchError, match=r"unexpected key '7.weight' of shape \(3, 10\)"):
        load_torch_state(model, tmp_path / "bad.safetensors")


def test_wrong_shape_is_named_and_nothing_is_copied(tmp_path):
    model, _ = _saved(tmp_path)
    wider = FullyConnectedNet([32, 64], input_dim=20, normalization="batchnorm", seed=3)
    save_torch_state(wider, tmp_path / "wider.safetensors")
    before = {k: v.copy() for k, v in model.params.items()}
    wrong = r"key '3.weight' has shape \(64, 32\), expected \(32, 32\)"
    with pytest.raises(ValueError, match=wrong):
        load_torch_state(model, tmp_path / "wider.safetensors")
    for k, v in before.items():
        np.testing.assert_array_equal(model.params[k], v)
    # batch norm written, none expected: the modules after it are numbered one lower
    with pytest.raises(StateMismatchError, match="missing key '2.weight'"):
        load_torch_state(_fc(None)(0), tmp_path / "m.safetensors")


def test_unsupported_models_are_refused():
    with pytest.raises(ValueError, match="'rmsnorm' has no torch.nn module"):
        torch_modules(_fc("rmsnorm")(0))
    with pytest.raises(ValueError, match="weight_standardization"):
        torch_modules(_conv("groupnorm", weight_standardization=True)(0))
    with pytest.raises(ValueError, match="expected a normlab model"):
        torch_modules(nn.Linear(2, 2))


def test_no_pickle_anywhere(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle used")

    for name in ("load", "loads", "dump", "dumps", "Unpickler", "Pickler"):
        monkeypatch.setattr(pickle, name, refuse)
    model = _conv("batchnorm")(0)
    save_torch_state(model, tmp_path / "m.safetensors")
    load_torch_state(model, tmp_path / "m.safetensors")
    raw = (tmp_path / "m.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])  # safetensors: a JSON header, then raw tensor bytes
    header = json.loads(raw[8 : 8 + n])
    assert header["__metadata__"]["format"] == "pt"
    assert header["0.weight"]["dtype"] == "F32"
    assert header["1.num_batches_tracked"]["dtype"] == "I64"


def test_saved_file_has_the_modes_open_gives_and_a_missing_folder_is_named(tmp_path):
    """Written through normlab's atomic write: mode 0o666 minus the umask (not mkstemp's 0o600
    that safetensors' save_file leaves), and a folder that does not exist is named as such."""
    import os

    from normlab.interop import save_torch_state
    from normlab.models import FullyConnectedNet

    model = FullyConnectedNet([4], input_dim=3, num_classes=2, normalization="batchnorm")
    path = tmp_path / "fc.safetensors"
    umask = os.umask(0o022)
    try:
        save_torch_state(model, path)
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match=f"folder {missing} does not exist"):
        save_torch_state(model, missing / "fc.safetensors")
    assert not missing.exists()
