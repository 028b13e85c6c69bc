"""get_CIFAR10_data against the assignment's own recipe, on small fake batch files.

CIFAR-10 cannot be downloaded here: the tests write six pickled batches of 10 images each
(the readers are told to accept 10 records per batch) and compare with the assignment's
``data_utils`` steps redone independently (images read as (N, 32, 32, 3) float64, positional
masks, mean image subtracted, then channels first).
"""

import pickle

import numpy as np
import pytest

from normlab.data import DatasetNotFoundError, cifar, discovery, get_CIFAR10_data

PER_BATCH = 10
NAMES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


@pytest.fixture(autouse=True)
def small_batches(monkeypatch, tmp_path):
    """Batches of 10 images; no network, cache, system folders or $NORMLAB_DATA of the host."""
    monkeypatch.setattr(cifar, "RECORDS_PER_BATCH", PER_BATCH)
    monkeypatch.setattr(discovery, "SYSTEM_DIRS", {})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("NORMLAB_DATA", raising=False)


def write_batches(folder, seed=0):
    """Six pickled batches as CIFAR-10 ships them; returns {name: (data, labels)}."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    batches = {}
    for name in NAMES:
        data = rng.integers(0, 256, (PER_BATCH, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, PER_BATCH)]
        (folder / name).write_bytes(pickle.dumps({b"data": data, b"labels": labels}, protocol=4))
        batches[name] = (data, labels)
    return batches


def assignment_recipe(batches, num_training, num_validation, num_test, subtract_mean=True):
    """The steps of cs231n/data_utils.py (load_CIFAR_batch, get_CIFAR10_data), redone."""

    def load(name):
        data, labels = batches[name]
        X = data.reshape(PER_BATCH, 3, 32, 32).transpose(0, 2, 3, 1).astype("float")
        return X, np.array(labels)

    parts = [load(n) for n in NAMES[:5]]
    X_train, y_train = np.concatenate([X for X, _ in parts]), np.concatenate([y for _, y in parts])
    X_test, y_test = load("test_batch")
    mask = list(range(num_training, num_training + num_validation))
    X_val, y_val = X_train[mask], y_train[mask]
    mask = list(range(num_training))
    X_train, y_train = X_train[mask], y_train[mask]
    mask = list(range(num_test))
    X_test, y_test = X_test[mask], y_test[mask]
    if subtract_mean:
        mean_image = np.mean(X_train, axis=0)
        X_train -= mean_image
        X_val -= mean_image
        X_test -= mean_image
    return {
        "X_train": X_train.transpose(0, 3, 1, 2).copy(), "y_train": y_train,
        "X_val": X_val.transpose(0, 3, 1, 2).copy(), "y_val": y_val,
        "X_test": X_test.transpose(0, 3, 1, 2).copy(), "y_test": y_test,
    }  # fmt: skip


@pytest.mark.parametrize("subtract_mean", [True, False])
def test_matches_the_assignment_recipe(tmp_path, subtract_mean):
    folder = tmp_path / "cifar-10-batches-py"
    batches = write_batches(folder)
    got = get_CIFAR10_data(tmp_path, 40, 7, 6, subtract_mean=subtract_mean)
    want = assignment_recipe(batches, 40, 7, 6, subtract_mean)
    assert list(got) == ["X_train", "y_train", "X_val", "y_val", "X_test", "y_test"]
    for key, value in want.items():
        assert got[key].shape == value.shape and got[key].dtype == value.dtype, key
        np.testing.assert_allclose(got[key], value, rtol=0, atol=1e-12, err_msg=key)
    if subtract_mean:
        np.testing.assert_allclose(got["X_train"].mean(axis=0), 0, atol=1e-12)


def test_found_through_discovery_and_float32(tmp_path, monkeypatch):
    write_batches(tmp_path / "data" / "cifar10" / "cifar-10-batches-py", seed=1)
    monkeypatch.setenv("NORMLAB_DATA", str(tmp_path / "data"))
    data = get_CIFAR10_data(num_training=45, num_validation=5, num_test=10, dtype=np.float32)
    assert data["X_train"].shape == (45, 3, 32, 32) and data["X_val"].shape == (5, 3, 32, 32)
    assert data["X_test"].dtype == np.float32 and data["y_test"].dtype == np.int64


def test_missing_folder_says_where_it_looked_and_how_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="cifar-10-python.tar.gz") as err:
        get_CIFAR10_data(tmp_path / "nowhere")
    assert err.value.looked_in == (tmp_path / "nowhere",)
    assert "get_CIFAR10_data(cifar10_dir=" in str(err.value)  # the fix in this API's terms


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_training": 49000}, "num_training"),  # the fake files hold 50 training images
        ({"num_training": 45, "num_validation": 6}, "num_validation"),
        ({"num_training": 40, "num_validation": 5, "num_test": 11}, "num_test"),
        ({"num_training": 40, "num_validation": 5, "num_test": 5, "dtype": np.int32}, "floating"),
    ],
)
def test_refuses_sizes_the_files_do_not_hold(tmp_path, kwargs, match):
    write_batches(tmp_path / "cifar-10-batches-py")
    with pytest.raises(ValueError, match=match):
        get_CIFAR10_data(tmp_path, **kwargs)
