"""Checkpoint files: round trip, no pickle, atomic replacement, restore into a model."""

import os
import stat
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest

import normlab.checkpoint as ck
from normlab.checkpoint import Checkpoint, load_checkpoint, restore_model, save_checkpoint


def make_model(seed=0, bit_generator=np.random.PCG64, with_rng=True):
    rng = np.random.default_rng(seed)
    model = SimpleNamespace(
        params={
            "W1": rng.standard_normal((4, 3)).astype(np.float32),
            "b1": np.zeros(3, np.float32),
        },
        buffers={"running_mean": rng.standard_normal(3), "running_var": np.ones(3)},
        get_config=lambda: {"hidden_dims": [3], "normalization": "batchnorm", "eps": 1e-5},
    )
    if with_rng:
        model.rng = np.random.Generator(bit_generator(seed + 1))
        model.rng.random(5)  # advance past the seed state
    return model


STATE = {
    "epoch": 3,
    "loss_history": np.array([2.3, 1.1, np.float64(0.7)]),
    "best_val_acc": 0.75,
    "nested": {"m": np.arange(6, dtype=np.float32).reshape(2, 3), "t": 7, "none": None},
    "items": [1, "two", np.ones(2, np.int64)],
    "np_scalar": np.float32(0.5),
    "rng_state": np.random.default_rng(3).bit_generator.state,
}


def test_round_trip_everything(tmp_path):
    model = make_model()
    path = tmp_path / "ck.npz"
    save_checkpoint(path, model, STATE, {"update_rule": "adam", "lr": 1e-3})
    ckpt = load_checkpoint(path)
    assert isinstance(ckpt, Checkpoint)
    for k, v in model.params.items():
        assert ckpt.params[k].dtype == v.dtype
        np.testing.assert_array_equal(ckpt.params[k], v)
    for k, v in model.buffers.items():
        np.testing.assert_array_equal(ckpt.buffers[k], v)
    assert ckpt.model_rng_state == model.rng.bit_generator.state
    assert ckpt.model_config == {"hidden_dims": [3], "normalization": "batchnorm", "eps": 1e-5}
    assert ckpt.config == {"update_rule": "adam", "lr": 1e-3}
    s = ckpt.state
    assert s["epoch"] == 3 and s["best_val_acc"] == 0.75 and s["np_scalar"] == 0.5
    assert s["loss_history"].tolist() == [2.3, 1.1, 0.7]  # floats survive exactly
    np.testing.assert_array_equal(s["nested"]["m"], STATE["nested"]["m"])
    assert s["nested"]["m"].dtype == np.float32 and s["nested"]["t"] == 7
    assert s["nested"]["none"] is None
    assert s["items"][:2] == [1, "two"] and s["items"][2].dtype == np.int64
    assert s["rng_state"] == STATE["rng_state"]  # 128-bit integers in JSON


def test_plain_npz_without_pickle(tmp_path):
    path = tmp_path / "ck.npz"
    save_checkpoint(path, make_model(), STATE)
    with np.load(path, allow_pickle=False) as npz:
        names = set(npz.files)
        assert {"model/params/W1", "model/buffers/running_var", "state/nested/m"} <= names
        for name in names:
            assert not npz[name].dtype.hasobject
        assert npz["__checkpoint__.json"].dtype == np.uint8


def test_mt19937_state_with_array_round_trips(tmp_path):
    model = make_model(bit_generator=np.random.MT19937)
    save_checkpoint(tmp_path / "ck.npz", model)
    ckpt = load_checkpoint(tmp_path / "ck.npz")
    expected = model.rng.random(4)
    model.rng = np.random.Generator(np.random.MT19937(99))
    restore_model(ckpt, model)
    np.testing.assert_array_equal(model.rng.random(4), expected)


def test_restore_model_copies_into_existing_arrays(tmp_path):
    src = make_model(seed=0)
    save_checkpoint(tmp_path / "ck.npz", src)
    dst = make_model(seed=1)
    flat = np.zeros(15, np.float32)  # one buffer the params are views of, as in a model
    dst.params = {"W1": flat[:12].reshape(4, 3), "b1": flat[12:]}
    held = dict(dst.params)
    restore_model(load_checkpoint(tmp_path / "ck.npz"), dst)
    for k in src.params:
        assert dst.params[k] is held[k]
        np.testing.assert_array_equal(dst.params[k], src.params[k])
    np.testing.assert_array_equal(flat[:12], src.params["W1"].ravel())
    np.testing.assert_array_equal(dst.buffers["running_mean"], src.buffers["running_mean"])
    np.testing.assert_array_equal(dst.rng.random(3), src.rng.random(3))


def test_restore_model_validates_before_touching_anything(tmp_path):
    save_checkpoint(tmp_path / "ck.npz", make_model())
    ckpt = load_checkpoint(tmp_path / "ck.npz")
    bad = make_model(seed=1)
    bad.params["W1"] = np.zeros((4, 5), np.float32)
    before = bad.buffers["running_mean"].copy()
    with pytest.raises(ValueError, match=r"expected params \{'W1': \(4, 5\), 'b1': \(3,\)\}"):
        restore_model(ckpt, bad)
    np.testing.assert_array_equal(bad.buffers["running_mean"], before)
    extra = make_model(seed=1)
    extra.buffers["num_batches"] = np.zeros(())
    with pytest.raises(ValueError, match=r"expected buffers .*'num_batches'"):
        restore_model(ckpt, extra)
    with pytest.raises(ValueError, match=r"checkpoint to lack model.rng state"):
        restore_model(ckpt, make_model(with_rng=False))


def test_rejects_pickle_only_things_and_foreign_files(tmp_path):
    with pytest.raises(TypeError, match=r"object array at 'state/bad'"):
        save_checkpoint(tmp_path / "a.npz", make_model(), {"bad": np.array([{}, 1], dtype=object)})
    with pytest.raises(TypeError, match=r"cannot checkpoint set at 'state/s'"):
        save_checkpoint(tmp_path / "a.npz", make_model(), {"s": {1, 2}})
    assert os.listdir(tmp_path) == []  # failed before any file was created


def _not_checkpoints(tmp_path):
    """Files that are not checkpoints, by what makes them so."""
    good = tmp_path / "good.npz"
    save_checkpoint(good, make_model(), STATE)
    data = good.read_bytes()
    files = {
        "text": b"epoch,loss\n1,0.5\n",
        "empty": b"",
        "npy": None,
        "truncated zip": data[: len(data) // 2],
        "zip, corrupt end": data[:-30],
        "flipped bit in W1": None,
        "npz without the document": None,
        "npz with a pickled object array": None,
        "document not JSON": None,
        "document not a checkpoint": None,
    }
    at = data.index(make_model().params["W1"].tobytes()) + 5  # inside W1's values
    files["flipped bit in W1"] = data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]
    np.save(tmp_path / "npy", np.zeros(3))
    files["npy"] = (tmp_path / "npy.npy").read_bytes()
    for name, arrays in {
        "npz without the document": {"x": np.zeros(2)},
        "npz with a pickled object array": {
            "x": np.array([{}, 1], dtype=object),
            ck._DOC_KEY: np.frombuffer(b'{"format": "normlab.checkpoint", "version": 1}', np.uint8),
        },
        "document not JSON": {ck._DOC_KEY: np.frombuffer(b"{not json", np.uint8)},
        "document not a checkpoint": {ck._DOC_KEY: np.frombuffer(b'{"format": "x"}', np.uint8)},
    }.items():
        np.savez(tmp_path / "tmp.npz", **arrays)
        files[name] = (tmp_path / "tmp.npz").read_bytes()
    return files


def test_foreign_files_are_not_normlab_checkpoints(tmp_path):
    for name, content in _not_checkpoints(tmp_path).items():
        path = tmp_path / "x.npz"
        path.write_bytes(content)
        with pytest.raises(ValueError, match="is not a normlab checkpoint") as err:
            load_checkpoint(path)
        msg = str(err.value)
        assert str(path) in msg and "allow_pickle" not in msg and "pickle" not in msg, name
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.npz")
    np.savez(tmp_path / "plain.npz", x=np.zeros(2))
    with pytest.raises(ValueError, match=r"expected an entry '__checkpoint__.json', got \['x'\]"):
        load_checkpoint(tmp_path / "plain.npz")


def test_document_without_model_is_not_a_checkpoint(tmp_path):
    doc = b'{"format": "normlab.checkpoint", "version": 1, "state": {}}'
    np.savez(tmp_path / "x.npz", **{ck._DOC_KEY: np.frombuffer(doc, np.uint8)})
    with pytest.raises(ValueError, match=r"not a normlab checkpoint \(incomplete .*'model'"):
        load_checkpoint(tmp_path / "x.npz")
    newer = b'{"format": "normlab.checkpoint", "version": 3}'
    np.savez(tmp_path / "y.npz", **{ck._DOC_KEY: np.frombuffer(newer, np.uint8)})
    with pytest.raises(ValueError, match=r"version <= 2, got version 3.*newer normlab"):
        load_checkpoint(tmp_path / "y.npz")


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_checkpoint_gets_the_permissions_of_a_normal_file(tmp_path, umask):
    old = os.umask(umask)
    try:
        save_checkpoint(tmp_path / "ck.npz", make_model())
        save_checkpoint(tmp_path / "ck.npz", make_model(seed=1))  # overwriting too
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "ck.npz").stat().st_mode) == 0o666 & ~umask


def test_checkpoint_is_written_through_the_shared_atomic_writer(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    save_checkpoint(tmp_path / "ck.npz", make_model())
    assert len(synced) == 2  # the file, then the directory holding the rename
    assert os.listdir(tmp_path) == ["ck.npz"]


def test_restore_model_refuses_another_dtype_instead_of_casting(tmp_path):
    src = make_model()
    src.params = {k: v.astype(np.float64) for k, v in src.params.items()}
    save_checkpoint(tmp_path / "ck.npz", src)
    ckpt = load_checkpoint(tmp_path / "ck.npz")
    dst = make_model(seed=1)  # float32 params
    before = {k: v.copy() for k, v in dst.params.items()}
    rng_state = dst.rng.bit_generator.state
    with pytest.raises(
        ValueError, match=r"params of dtypes \{'W1': 'float32', 'b1': 'float32'\} .*'float64'"
    ):
        restore_model(ckpt, dst)
    for k, v in dst.params.items():
        assert v.dtype == np.float32
        np.testing.assert_array_equal(v, before[k])
    assert dst.rng.bit_generator.state == rng_state


def test_restore_model_checks_the_rng_kind_before_copying(tmp_path):
    save_checkpoint(tmp_path / "ck.npz", make_model(bit_generator=np.random.MT19937))
    dst = make_model(seed=1)  # PCG64
    before = dst.params["W1"].copy()
    with pytest.raises(
        ValueError, match=r"model.rng state of a PCG64 bit generator, got 'MT19937'"
    ):
        restore_model(load_checkpoint(tmp_path / "ck.npz"), dst)
    np.testing.assert_array_equal(dst.params["W1"], before)


def test_failed_write_leaves_previous_checkpoint_and_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "ck.npz"
    old = make_model(seed=0)
    save_checkpoint(path, old, {"epoch": 1})

    def half_then_fail(f, arrays):
        f.write(b"PK\x03\x04 half of a zip file")
        raise OSError("disk full")

    monkeypatch.setattr(ck, "_write_npz", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, make_model(seed=1), {"epoch": 2})
    assert os.listdir(tmp_path) == ["ck.npz"]
    ckpt = load_checkpoint(path)
    assert ckpt.state == {"epoch": 1}
    np.testing.assert_array_equal(ckpt.params["W1"], old.params["W1"])


def test_killed_mid_write_leaves_previous_checkpoint(tmp_path):
    path = tmp_path / "ck.npz"
    script = textwrap.dedent(
        f"""
        import sys, time
        import numpy as np
        from types import SimpleNamespace
        import normlab.checkpoint as ck

        model = SimpleNamespace(params={{"W": np.full(1000, 1.0)}})
        ck.save_checkpoint({str(path)!r}, model, {{"epoch": 1}})

        def slow(f, arrays):
            f.write(b"PK\\x03\\x04" + bytes(4096))  # part of the new file ...
            f.flush()
            print("writing", flush=True)
            time.sleep(60)  # ... and killed here

        ck._write_npz = slow
        model.params["W"][:] = 2.0
        ck.save_checkpoint({str(path)!r}, model, {{"epoch": 2}})
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        leftovers = [p for p in os.listdir(tmp_path) if p != "ck.npz"]
        assert len(leftovers) == 1 and leftovers[0].startswith(".ck.npz.tmp-")
    finally:
        proc.kill()  # SIGKILL: no cleanup handler runs
        proc.wait(timeout=30)
    ckpt = load_checkpoint(path)
    assert ckpt.state == {"epoch": 1}
    np.testing.assert_array_equal(ckpt.params["W"], np.full(1000, 1.0))
    # the stray temp file is hidden, named after its target, and not a checkpoint path
    assert [p for p in os.listdir(tmp_path) if not p.startswith(".")] == ["ck.npz"]
