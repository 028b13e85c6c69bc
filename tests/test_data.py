"""Tests for normlab.data on small files written into tmp_path; the network is never used."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pickle
import stat
import struct
import tracemalloc
import urllib.error
from math import prod
from pathlib import Path

import numpy as np
import pytest

from normlab.data import (
    DATASETS,
    ChecksumError,
    DatasetNotFoundError,
    RestrictedUnpickler,
    cifar,
    discovery,
    load_cifar10,
    load_dataset,
    load_digits,
    load_fashion_mnist,
    load_mnist,
    read_cifar_bin_batch,
    read_cifar_pickle_batch,
    read_idx,
)
from normlab.data.cifar import CIFAR10_CLASSES
from normlab.data.splits import train_val_indices

REAL_FASHION = Path("/usr/share/datasets/fashion-mnist")
_SYSTEM_DIRS = discovery.SYSTEM_DIRS


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No network, no real cache, no system dirs, no $NORMLAB_DATA unless a test sets them."""

    def no_network(url, timeout):
        raise AssertionError(f"test tried to open {url}")

    monkeypatch.setattr(discovery, "_open_url", no_network)
    monkeypatch.setattr(discovery, "SYSTEM_DIRS", {})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("NORMLAB_DATA", raising=False)


# ---------------------------------------------------------------- writers of small files

IDX_CODES = {"u1": 0x08, "i1": 0x09, "i2": 0x0B, "i4": 0x0C, "f4": 0x0D, "f8": 0x0E}


def idx_bytes(arr: np.ndarray) -> bytes:
    """Encode ``arr`` as an IDX file (big-endian header and data)."""
    code = IDX_CODES[arr.dtype.str[1:]]
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write(path: Path, data: bytes, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def make_mnist(directory: Path, n_train=12, n_test=5, seed=0, gz=(True, False, True, False)):
    """Write four IDX files (some .gz, some raw) and return the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for (stem, arr), compress in zip(arrays.items(), gz, strict=True):
        write(directory / (stem + ".gz" * compress), idx_bytes(arr), compress)
    return arrays


def cifar_arrays(n_per_batch=3, seed=0):
    """Six (data (N, 3072) uint8, labels list) batches: five training, one test."""
    rng = np.random.default_rng(seed)
    return [
        (
            rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
            list(rng.integers(0, 10, n_per_batch)),
        )
        for _ in range(6)
    ]


@pytest.fixture
def records(monkeypatch):
    """``records(n)``: let the CIFAR readers accept batches of n images (published: 10000)."""
    return lambda n: monkeypatch.setattr(cifar, "RECORDS_PER_BATCH", n)


BATCH_NAMES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def make_cifar_py(folder: Path, batches, pickler=None):
    folder.mkdir(parents=True, exist_ok=True)
    for name, (data, labels) in zip(BATCH_NAMES, batches, strict=True):
        batch = {b"batch_label": name.encode(), b"data": data, b"labels": [int(v) for v in labels]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=4))
    meta = {b"label_names": [n.encode() for n in CIFAR10_CLASSES], b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=4))
    return folder


def make_cifar_bin(folder: Path, batches):
    folder.mkdir(parents=True, exist_ok=True)
    for name, (data, labels) in zip(BATCH_NAMES, batches, strict=True):
        records = np.concatenate([np.array(labels, np.uint8)[:, None], data], axis=1)  # (N, 3073)
        (folder / f"{name}.bin").write_bytes(records.tobytes())
    (folder / "batches.meta.txt").write_text("\n".join(CIFAR10_CLASSES) + "\n\n")
    return folder


class Py2Pickler(pickle._Pickler):
    """Pickles like Python 2 wrote cifar-10-batches-py: every str/bytes as a byte string
    (BINSTRING) and numpy's reconstructor under its NumPy 1 name ``numpy.core.multiarray``."""

    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2_str(self, obj):
        data = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = _save_py2_str
    dispatch[bytes] = _save_py2_str

    def save_global(self, obj, name=None):
        if obj is np._core.multiarray._reconstruct:
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
        else:
            super().save_global(obj, name)


# ---------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", ">i4", ">f4", ">f8"])
def test_read_idx_round_trips_every_type(tmp_path, dtype, gz):
    rng = np.random.default_rng(1)
    arr = (rng.standard_normal((3, 4, 5)) * 100).astype(np.dtype(dtype).newbyteorder("="))
    path = write(tmp_path / "x-idx3", idx_bytes(arr), gz)  # no .gz suffix: sniffed by content
    out = read_idx(path)
    assert out.shape == (3, 4, 5)
    assert out.dtype == arr.dtype and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


def test_read_idx_one_dimensional_labels(tmp_path):
    labels = np.array([7, 0, 9, 3], np.uint8)
    np.testing.assert_array_equal(read_idx(write(tmp_path / "l", idx_bytes(labels))), labels)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda b: b"\x01" + b[1:], "magic"),
        (lambda b: b[:2] + b"\x0a" + b[3:], "type code 0x0A"),
        (lambda b: b[:-1], "truncated IDX data"),
        (lambda b: b[:6], "truncated IDX header"),
        (lambda b: b + b"\x00", "longer than its header"),
        (lambda b: b"", "magic"),
    ],
)
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_rejects_corrupt_files_naming_them(tmp_path, mutate, match, gz):
    good = idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
    path = write(tmp_path / "bad-idx3-ubyte", mutate(good), gz)
    with pytest.raises(ValueError, match=match) as err:
        read_idx(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dims", [(1 << 16, 1 << 16), (2**32 - 1,) * 3], ids=["4GiB", "2^96B"])
def test_read_idx_huge_header_fails_before_allocating(tmp_path, dims, gz):
    header = bytes([0, 0, 0x08, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)
    path = write(tmp_path / "huge-idx3-ubyte", header + bytes(10), gz)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="truncated IDX data") as err:
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 26  # nothing the size of the header's claim was allocated
    msg = str(err.value)
    assert str(path) in msg and f"({prod(dims)} bytes)" in msg and "only 10 bytes" in msg


def test_read_idx_truncated_gzip_stream(tmp_path):
    data = gzip.compress(idx_bytes(np.arange(4000, dtype=np.uint8)))
    path = tmp_path / "cut.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="gzip") as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_load_mnist_round_trip_mixed_gz_and_raw(tmp_path):
    arrays = make_mnist(tmp_path / "m", n_train=12, n_test=5)
    raw = load_mnist(tmp_path / "m", download=False)
    assert raw.X_train.shape == (12, 1, 28, 28) and raw.X_test.shape == (5, 1, 28, 28)
    assert raw.y_train.dtype == np.int64 and raw.X_train.dtype == np.uint8
    np.testing.assert_array_equal(raw.X_train[:, 0], arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(raw.y_test, arrays["t10k-labels-idx1-ubyte"])
    assert raw.class_names == [str(i) for i in range(10)] and raw.pixel_max == 255


def test_mnist_count_mismatch_names_both_files(tmp_path):
    make_mnist(tmp_path, n_train=6)
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(np.zeros(5, np.uint8)))
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink(missing_ok=True)
    with pytest.raises(ValueError, match="6 images but .* 5 labels"):
        load_mnist(tmp_path, download=False)


def test_mnist_label_out_of_range(tmp_path):
    make_mnist(tmp_path, n_test=3)
    write(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(np.array([1, 10, 2], np.uint8)))
    with pytest.raises(ValueError, match=r"t10k-labels.*\[0, 10\)"):
        load_mnist(tmp_path, download=False)


# ---------------------------------------------------------------- discovery


def test_discovery_order_explicit_then_env_then_cache(tmp_path, monkeypatch):
    explicit, env, xdg = tmp_path / "explicit", tmp_path / "env", tmp_path / "xdg"
    make_mnist(explicit, n_train=3)
    make_mnist(env / "mnist", n_train=4)
    make_mnist(xdg / "normlab" / "mnist", n_train=5)
    monkeypatch.setenv("NORMLAB_DATA", str(env))
    assert len(load_mnist(explicit, download=False).y_train) == 3
    assert len(load_mnist(download=False).y_train) == 4
    monkeypatch.delenv("NORMLAB_DATA")
    assert len(load_mnist(download=False).y_train) == 5


def test_explicit_data_dir_is_the_only_place_searched(tmp_path, monkeypatch):
    # Complete copies everywhere else: $NORMLAB_DATA, the cache, a system folder.
    make_mnist(tmp_path / "env" / "fashion-mnist", n_train=4)
    make_mnist(tmp_path / "xdg" / "normlab" / "fashion-mnist", n_train=5)
    make_mnist(tmp_path / "sys", n_train=6)
    monkeypatch.setenv("NORMLAB_DATA", str(tmp_path / "env"))
    monkeypatch.setattr(discovery, "SYSTEM_DIRS", {"fashion-mnist": (tmp_path / "sys",)})
    given = tmp_path / "given"
    given.mkdir()
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("fashion-mnist", given, download=False)
    e = err.value
    assert e.looked_in == (given,) and e.data_dir == given
    assert e.missing == ("missing " + ", ".join(e.expected),)
    assert e.expected == tuple(
        f"{stem}-idx{d}-ubyte[.gz]"
        for stem, d in (
            ("train-images", 3),
            ("train-labels", 1),
            ("t10k-images", 3),
            ("t10k-labels", 1),
        )
    )
    assert e.download_disabled and e.download_dir is None and e.download_error is None
    assert f"into {given}" in e.how_to_get and "NORMLAB_DATA" not in str(e)
    for other in ("env", "xdg", "sys"):
        assert str(tmp_path / other) not in str(e)
    # The same folder once it holds the files: read from there, and said so.
    make_mnist(given, n_train=7)
    data = load_dataset("fashion-mnist", given, num_validation=2, download=False)
    assert len(data["y_train"]) == 5 and data["data_dir"] == str(given)
    assert load_dataset("fashion-mnist", num_validation=2, download=False)["data_dir"] == str(
        tmp_path / "env" / "fashion-mnist"
    )
    assert load_dataset("digits")["data_dir"] is None  # embedded in the package


def test_relative_data_dir_is_looked_in_and_recorded_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("rel").mkdir()
    with pytest.raises(DatasetNotFoundError) as err:
        load_mnist("rel", download=False)
    assert err.value.looked_in == (tmp_path / "rel",) and str(tmp_path / "rel") in str(err.value)
    make_mnist(Path("rel"))
    assert load_dataset("mnist", "rel", num_validation=2, download=False)["data_dir"] == str(
        tmp_path / "rel"
    )
    make_cifar = tmp_path / "c"
    with pytest.raises(DatasetNotFoundError) as err:
        load_cifar10("c")
    assert err.value.looked_in == (make_cifar,) and err.value.missing == ("no such directory",)
    assert "cifar-10-batches-py/" in err.value.expected[0]
    assert f"extract it into {make_cifar}" in err.value.how_to_get


def test_explicit_data_dir_downloads_into_it_and_nowhere_else(tmp_path, monkeypatch):
    served = {}
    for stem, arr in make_mnist(tmp_path / "src", gz=(False,) * 4).items():
        served[stem + ".gz"] = gzip.compress(idx_bytes(arr))
    remote = discovery.Remote(
        mirrors=("https://up.example/",),
        files=tuple((name, hashlib.md5(data).hexdigest()) for name, data in served.items()),
    )
    monkeypatch.setitem(discovery.REMOTES, "mnist", remote)
    open_url, _ = fake_server(served)
    monkeypatch.setattr(discovery, "_open_url", open_url)
    given = tmp_path / "given"
    data = load_dataset("mnist", given, num_validation=2, download=True)
    assert data["data_dir"] == str(given) and len(data["y_train"]) == 10
    assert sorted(p.name for p in given.iterdir()) == sorted(served)
    assert not (tmp_path / "xdg").exists()  # the cache was never touched


def test_failed_download_into_data_dir_says_why(tmp_path, monkeypatch):
    open_url, _ = fake_server({}, fail=("http",))
    monkeypatch.setattr(discovery, "_open_url", open_url)
    given = tmp_path / "given"
    with pytest.raises(DatasetNotFoundError) as err:
        load_mnist(given, download=True)
    e = err.value
    assert e.download_dir == given and e.looked_in == (given,) and not e.download_disabled
    # the socket's reason, not urllib's '<urlopen error ...>' wrapper
    assert e.download_error.endswith("train-images-idx3-ubyte.gz: mirror down")
    assert f"download into {given} failed: " in str(e) and "mirror down" in str(e)
    assert not (tmp_path / "xdg").exists()
    again = pickle.loads(pickle.dumps(e))
    assert (again.data_dir, again.expected, str(again)) == (e.data_dir, e.expected, str(e))


def test_cache_defaults_to_home_dot_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    make_mnist(tmp_path / "home" / ".cache" / "normlab" / "mnist", n_train=7)
    assert len(load_mnist(download=False).y_train) == 7


def test_system_dir_is_searched_last(tmp_path, monkeypatch):
    system = tmp_path / "usr-share"
    make_mnist(system, n_train=8)
    monkeypatch.setattr(discovery, "SYSTEM_DIRS", {"fashion-mnist": (system,)})
    raw = load_fashion_mnist(download=False)
    assert len(raw.y_train) == 8 and raw.class_names[0] == "T-shirt/top"
    make_mnist(tmp_path / "xdg" / "normlab" / "fashion-mnist", n_train=9)
    assert len(load_fashion_mnist(download=False).y_train) == 9


def test_not_found_lists_every_place_and_how_to_get(tmp_path, monkeypatch):
    monkeypatch.setenv("NORMLAB_DATA", str(tmp_path / "env"))
    monkeypatch.setattr(discovery, "SYSTEM_DIRS", {"fashion-mnist": (tmp_path / "sys",)})
    partial = tmp_path / "partial"
    make_mnist(partial)
    (partial / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetNotFoundError) as err:
        load_fashion_mnist(partial, download=False)
    assert err.value.looked_in == (partial,)
    assert err.value.missing == ("missing t10k-labels-idx1-ubyte[.gz]",)
    monkeypatch.setenv("NORMLAB_DATA", str(partial.parent / "env"))
    (tmp_path / "env").mkdir()
    partial.rename(tmp_path / "env" / "fashion-mnist")
    with pytest.raises(DatasetNotFoundError) as err:
        load_fashion_mnist(download=False)
    assert isinstance(err.value, FileNotFoundError)
    msg = str(err.value)
    for place in [
        tmp_path / "xdg" / "normlab" / "fashion-mnist",
        tmp_path / "sys",
    ]:
        assert str(place) in msg
    assert "missing t10k-labels-idx1-ubyte[.gz]" in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "NORMLAB_DATA" in msg
    assert msg.index(str(tmp_path / "env")) < msg.index("xdg") < msg.index(str(tmp_path / "sys"))


def test_cifar_not_found_says_how_to_get(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="cifar-10-python.tar.gz"):
        load_cifar10(tmp_path, download=True)


def test_not_found_carries_its_fields(tmp_path, monkeypatch):
    monkeypatch.setenv("NORMLAB_DATA", str(tmp_path / "env"))
    monkeypatch.setattr(discovery, "SYSTEM_DIRS", {})
    with pytest.raises(DatasetNotFoundError) as err:
        load_mnist(download=False)
    e = err.value
    assert e.name == "mnist" and e.downloadable and e.download_error is None
    assert e.looked_in == (tmp_path / "env" / "mnist", tmp_path / "xdg" / "normlab" / "mnist")
    assert e.missing == ("no such directory",) * 2 and e.data_dir is None
    assert e.how_to_get == discovery.HOW_TO_GET["mnist"].format(dir="$NORMLAB_DATA/mnist")
    assert e.download_outcome == "downloading was turned off, so no download was tried"
    assert str(e).splitlines()[0] == "dataset 'mnist' not found. Looked in, in order:"
    again = pickle.loads(pickle.dumps(e))  # crosses worker processes intact
    assert type(again) is DatasetNotFoundError and str(again) == str(e)
    assert again.looked_in == e.looked_in and again.missing == e.missing


def test_not_found_after_a_failed_download_keeps_the_reason(tmp_path, monkeypatch):
    open_url, _ = fake_server({}, fail=("http",))
    monkeypatch.setattr(discovery, "_open_url", open_url)
    with pytest.raises(DatasetNotFoundError) as err:
        load_mnist(download=True)
    e = err.value
    assert e.download_dir == tmp_path / "xdg" / "normlab" / "mnist"
    assert "mirror down" in e.download_error and e.download_error in str(e)
    assert e.download_outcome.startswith(f"download into {e.download_dir} failed: ")
    cifar_err = DatasetNotFoundError("cifar10", how_to_get="x")
    assert cifar_err.download_outcome == "cifar10 cannot be downloaded automatically"


# ---------------------------------------------------------------- downloads (faked)


def fake_server(files: dict[str, bytes], fail=()):
    """An ``_open_url`` replacement serving ``files`` by URL basename; URLs in ``fail`` error."""
    requested = []

    def open_url(url, timeout):
        requested.append(url)
        if any(url.startswith(prefix) for prefix in fail):
            raise urllib.error.URLError("mirror down")
        return io.BytesIO(files[url.rsplit("/", 1)[1]])

    return open_url, requested


def test_download_verifies_and_lands_in_cache(tmp_path, monkeypatch):
    served = {}
    for stem, arr in make_mnist(tmp_path / "src", gz=(False,) * 4).items():
        served[stem + ".gz"] = gzip.compress(idx_bytes(arr))
    remote = discovery.Remote(
        mirrors=("https://down.example/", "https://up.example/"),
        files=tuple((name, hashlib.md5(data).hexdigest()) for name, data in served.items()),
    )
    monkeypatch.setitem(discovery.REMOTES, "mnist", remote)
    open_url, requested = fake_server(served, fail=("https://down.example/",))
    monkeypatch.setattr(discovery, "_open_url", open_url)
    raw = load_mnist(download=True)
    assert raw.X_train.shape == (12, 1, 28, 28)
    cache = tmp_path / "xdg" / "normlab" / "mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(served)  # no temp files left
    assert len(requested) == 8  # each file: the failing mirror, then the good one


def test_checksum_mismatch_leaves_nothing_behind(tmp_path, monkeypatch):
    open_url, _ = fake_server({"f.gz": b"tampered"})
    monkeypatch.setattr(discovery, "_open_url", open_url)
    dest = tmp_path / "dl" / "f.gz"
    with pytest.raises(ChecksumError, match="expected MD5"):
        discovery.download_file("https://x.example/f.gz", dest, md5="0" * 32)
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_failed_download_reports_and_keeps_cache_clean(tmp_path, monkeypatch):
    served = {name: b"wrong bytes" for name, _ in discovery.REMOTES["fashion-mnist"].files}
    open_url, requested = fake_server(served)
    monkeypatch.setattr(discovery, "_open_url", open_url)
    with pytest.raises(DatasetNotFoundError, match="expected MD5") as err:
        load_dataset("fashion-mnist", download=True)
    assert "download into" in str(err.value)
    assert len(requested) == 2  # both mirrors of the first file tried, then gave up
    cache = tmp_path / "xdg" / "normlab" / "fashion-mnist"
    assert not cache.exists() or list(cache.iterdir()) == []


def test_download_is_synced_and_gets_normal_permissions(tmp_path, monkeypatch):
    content = b"verified bytes"
    open_url, _ = fake_server({"f.gz": content})
    monkeypatch.setattr(discovery, "_open_url", open_url)
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real_fsync(fd))
    old_umask = os.umask(0o027)
    try:
        dest = discovery.download_file(
            "https://x.example/f.gz", tmp_path / "dl" / "f.gz", hashlib.md5(content).hexdigest()
        )
    finally:
        os.umask(old_umask)
    assert dest.read_bytes() == content
    assert len(synced) == 2  # the file's data, then the directory entry of the rename
    assert stat.S_IMODE(dest.stat().st_mode) == 0o640  # 0o666 & ~umask, not mkstemp's 0o600


def test_published_md5s_are_well_formed():
    for remote in discovery.REMOTES.values():
        assert len(remote.files) == 4
        for _, md5 in remote.files:
            assert len(md5) == 32 and int(md5, 16) >= 0


# ---------------------------------------------------------------- CIFAR-10


@pytest.mark.parametrize("fmt", ["py", "bin"])
@pytest.mark.parametrize("point_at", ["parent", "folder"])
def test_cifar10_round_trip_both_formats(tmp_path, fmt, point_at, records):
    records(3)
    batches = cifar_arrays(n_per_batch=3)
    folder = tmp_path / f"cifar-10-batches-{fmt}"
    (make_cifar_py if fmt == "py" else make_cifar_bin)(folder, batches)
    raw = load_cifar10(tmp_path if point_at == "parent" else folder, download=False)
    assert raw.X_train.shape == (15, 3, 32, 32) and raw.X_test.shape == (3, 3, 32, 32)
    expected = np.concatenate([d for d, _ in batches[:5]]).reshape(15, 3, 32, 32)
    np.testing.assert_array_equal(raw.X_train, expected)
    np.testing.assert_array_equal(raw.y_test, batches[5][1])
    assert raw.y_train.dtype == np.int64 and raw.class_names == CIFAR10_CLASSES


def test_cifar10_found_via_normlab_data(tmp_path, monkeypatch, records):
    records(3)
    make_cifar_bin(tmp_path / "env" / "cifar10" / "cifar-10-batches-bin", cifar_arrays())
    monkeypatch.setenv("NORMLAB_DATA", str(tmp_path / "env"))
    data = load_dataset("cifar10", num_validation=5, num_test=2, download=False)
    assert data["X_train"].shape == (10, 3, 32, 32) and data["X_test"].shape == (2, 3, 32, 32)


def test_cifar_python2_pickle_as_distributed(tmp_path, records):
    records(2)
    data = np.arange(2 * 3072, dtype=np.uint32).astype(np.uint8).reshape(2, 3072)
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump({"batch_label": "b", "data": data, "labels": [3, 9]})
    path = tmp_path / "data_batch_1"
    path.write_bytes(buf.getvalue())
    assert b"numpy.core.multiarray" in buf.getvalue()
    X, y = read_cifar_pickle_batch(path)
    np.testing.assert_array_equal(X.reshape(2, 3072), data)
    np.testing.assert_array_equal(y, [3, 9])


class _Payload:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("kind", ["os.system", "os.mkdir", "builtins.eval"])
def test_restricted_unpickler_refuses_code_execution(tmp_path, kind):
    marker = tmp_path / "pwned"
    payload = {
        "os.system": _Payload(os.system, f"touch {marker}"),
        "os.mkdir": _Payload(os.mkdir, str(marker)),
        "builtins.eval": _Payload(eval, f"open({str(marker)!r}, 'w')"),
    }[kind]
    evil = pickle.dumps({b"data": payload, b"labels": [0]}, protocol=2)
    path = tmp_path / "data_batch_1"
    path.write_bytes(evil)
    with pytest.raises(pickle.UnpicklingError, match="refusing") as err:
        read_cifar_pickle_batch(path)
    assert str(path) in str(err.value)
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):
        RestrictedUnpickler(io.BytesIO(evil)).load()
    assert not marker.exists()


def test_payload_would_run_under_plain_pickle(tmp_path):
    # Guards the test above: its payload is live, so "marker absent" means something.
    marker = tmp_path / "proof"
    pickle.loads(pickle.dumps(_Payload(os.mkdir, str(marker))))
    assert marker.is_dir()


@pytest.mark.parametrize(
    "content, match",
    [
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8)}, protocol=4), "b'labels'"),
        (pickle.dumps([1, 2], protocol=4), "expected a dict"),
        (pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, 4), "3072"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.int16), b"labels": [0, 1]}, 4), "uint8"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 11]}, 4), "11"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, 4), "labels"),
        (
            pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}, 4)[:50],
            "pickle",
        ),
    ],
)
def test_corrupt_cifar_pickle(tmp_path, content, match, records):
    records(2)
    path = tmp_path / "data_batch_1"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match) as err:
        read_cifar_pickle_batch(path)
    assert str(path) in str(err.value)


def test_corrupt_cifar_bin(tmp_path, records):
    short = tmp_path / "short.bin"
    short.write_bytes(bytes(3073 * 2 - 1))
    with pytest.raises(ValueError, match="10000 records of 3073 bytes") as err:
        read_cifar_bin_batch(short)
    assert str(short) in str(err.value) and "30730000 bytes, got 6145 bytes" in str(err.value)
    records(1)
    bad_label = tmp_path / "label.bin"
    bad_label.write_bytes(bytes([12]) + bytes(3072))
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        read_cifar_bin_batch(bad_label)


@pytest.mark.parametrize("fmt", ["py", "bin"])
def test_cifar_batches_hold_the_published_10000_images(tmp_path, fmt):
    labels = np.arange(10000) % 10
    pixels = np.zeros((10000, 3072), np.uint8)
    pixels[:, 0] = labels  # a recognisable first pixel
    path = tmp_path / "data_batch_1"
    if fmt == "py":
        path.write_bytes(pickle.dumps({b"data": pixels, b"labels": labels.tolist()}, protocol=4))
        read = read_cifar_pickle_batch
    else:
        path.write_bytes(np.concatenate([labels[:, None].astype(np.uint8), pixels], 1).tobytes())
        read = read_cifar_bin_batch
    X, y = read(path)
    assert X.shape == (10000, 3, 32, 32)
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_array_equal(X[:, 0, 0, 0], labels)
    if fmt == "py":  # a batch of 9999 is truncated, whatever its internal consistency
        path.write_bytes(pickle.dumps({b"data": pixels[1:], b"labels": labels[1:].tolist()}))
        match = "expected 10000 images per batch .*got 9999"
    else:
        path.write_bytes(path.read_bytes()[:-3073])
        match = "expected 10000 records .*30730000 bytes, got 30726927 bytes"
    with pytest.raises(ValueError, match=match) as err:
        read(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    "batch, match",
    [
        (
            {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0.0, 2.7]},
            r"integer labels, got floats",
        ),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [b"3", b"1"]}, "byte strings"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [[0], [1, 2]]}, "integer labels"),
        ({"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}, "got keys 'data', b'labels'"),
    ],
    ids=["float", "bytes", "ragged", "mixed-keys"],
)
def test_cifar_pickle_labels_must_be_integers(tmp_path, records, batch, match):
    records(2)
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(batch, protocol=4))
    with pytest.raises(ValueError, match=match) as err:
        read_cifar_pickle_batch(path)
    assert str(path) in str(err.value)


def test_corrupt_cifar_meta(tmp_path, records):
    records(3)
    folder = make_cifar_bin(tmp_path / "cifar-10-batches-bin", cifar_arrays())
    (folder / "batches.meta.txt").write_text("cat\ndog\n")
    with pytest.raises(ValueError, match="expected 10 class names"):
        load_cifar10(tmp_path, download=False)


# ---------------------------------------------------------------- preprocessing


@pytest.fixture
def mnist_dir(tmp_path):
    make_mnist(tmp_path / "m", n_train=40, n_test=10, seed=3)
    return tmp_path / "m"


def test_mean_comes_from_the_training_split_only(mnist_dir):
    raw = load_mnist(mnist_dir, download=False)
    data = load_dataset("mnist", mnist_dir, num_training=20, num_validation=8, seed=5)
    train, val = train_val_indices(40, 20, 8, seed=5)
    scaled_train = raw.X_train[train].astype(np.float64) / 255  # (20, 1, 28, 28)
    mean = scaled_train.mean(axis=0)  # (1, 28, 28)
    np.testing.assert_allclose(data["X_train"], scaled_train - mean, atol=1e-6)
    np.testing.assert_allclose(data["X_val"], raw.X_train[val] / 255 - mean, atol=1e-6)
    np.testing.assert_allclose(data["X_test"], raw.X_test / 255 - mean, atol=1e-6)
    np.testing.assert_array_equal(data["y_val"], raw.y_train[val])
    # The pooled mean over all 40 training images would differ: the test can tell.
    assert np.abs(raw.X_train.mean(axis=0) / 255 - mean).max() > 1e-3


def test_scale_and_no_mean(mnist_dir):
    raw = load_mnist(mnist_dir, download=False)
    kept = load_dataset("mnist", mnist_dir, num_validation=0, subtract_mean=False, scale=False)
    np.testing.assert_array_equal(kept["X_test"], raw.X_test.astype(np.float32))
    scaled = load_dataset("mnist", mnist_dir, num_validation=0, subtract_mean=False)
    np.testing.assert_allclose(scaled["X_test"] * 255, raw.X_test, atol=1e-4)
    assert scaled["X_test"].dtype == np.float32
    f64 = load_dataset("mnist", mnist_dir, num_validation=4, dtype=np.float64)
    assert all(f64[k].dtype == np.float64 for k in ("X_train", "X_val", "X_test"))


def test_subsample_sizes_and_disjoint_splits(mnist_dir):
    data = load_dataset("mnist", mnist_dir, num_training=25, num_validation=10, num_test=4)
    sizes = {k: v.shape[0] for k, v in data.items() if isinstance(v, np.ndarray)}
    assert sizes == {
        "X_train": 25,
        "y_train": 25,
        "X_val": 10,
        "y_val": 10,
        "X_test": 4,
        "y_test": 4,
    }
    train, val = train_val_indices(40, 25, 10, seed=0)
    assert len(set(train) | set(val)) == 35
    default = load_dataset("mnist", mnist_dir)  # default validation capped at N_train - 1
    assert default["X_train"].shape[0] + default["X_val"].shape[0] == 40


def test_split_deterministic_in_seed(mnist_dir):
    a = load_dataset("mnist", mnist_dir, num_validation=10, seed=1)
    b = load_dataset("mnist", mnist_dir, num_validation=10, seed=1)
    c = load_dataset("mnist", mnist_dir, num_validation=10, seed=2)
    for key in ("X_train", "y_train", "X_val", "X_test"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["y_val"], c["y_val"]) or not np.array_equal(a["X_val"], c["X_val"])
    np.testing.assert_array_equal(a["y_test"], c["y_test"])  # test split never depends on seed


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_training": 31, "num_validation": 10}, r"num_training to be an integer in \[0, 30\]"),
        ({"num_validation": 41}, r"num_validation to be an integer in \[0, 40\]"),
        ({"num_test": 11}, r"num_test to be an integer in \[0, 10\] or None, got 11"),
        ({"num_training": 2.5}, "or None, got 2.5"),
        ({"num_training": True}, "or None, got True"),  # bool is no count
        ({"num_test": np.float64(3)}, "or None, got"),
        ({"num_validation": 40}, "num_training >= 1"),
        ({"dtype": np.int32}, "floating dtype"),
    ],
)
def test_bad_sizes_are_rejected(mnist_dir, kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_dataset("mnist", mnist_dir, download=False, **kwargs)


def test_numpy_integer_sizes_are_accepted(mnist_dir):
    data = load_dataset("mnist", mnist_dir, num_training=np.int64(20), num_validation=np.int32(8))
    assert data["X_train"].shape[0] == 20 and data["X_val"].shape[0] == 8


def test_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match="digits, mnist, fashion-mnist, cifar10"):
        load_dataset("imagenet")
    assert DATASETS == ("digits", "mnist", "fashion-mnist", "cifar10")


# ---------------------------------------------------------------- digits and real files


def test_digits_offline_shapes_and_classes():
    data = load_dataset("digits")
    assert data["X_train"].shape == (1197, 1, 8, 8)
    assert data["X_val"].shape == (300, 1, 8, 8) and data["X_test"].shape == (300, 1, 8, 8)
    assert data["class_names"] == [str(c) for c in range(10)]
    assert set(np.unique(data["y_train"])) == set(range(10))
    counts = np.bincount(data["y_test"], minlength=10)
    assert counts.min() >= 29 and counts.max() <= 31  # stratified: ~30 per class
    np.testing.assert_allclose(data["X_train"].mean(axis=0), 0, atol=1e-5)
    raw = load_digits()
    assert raw.pixel_max == 16 and raw.X_train.max() == 16
    unscaled = load_dataset("digits", subtract_mean=False)
    assert unscaled["X_train"].max() == 1.0 and unscaled["X_train"].min() == 0.0
    # The fixed test split is the same whatever the seed.
    reseeded = load_dataset("digits", subtract_mean=False, seed=7)
    np.testing.assert_array_equal(reseeded["X_test"], unscaled["X_test"])
    assert not np.array_equal(reseeded["y_train"], unscaled["y_train"])


@pytest.mark.skipif(not REAL_FASHION.is_dir(), reason="needs apt-get install dataset-fashion-mnist")
def test_real_fashion_mnist_from_debian_package(monkeypatch):
    monkeypatch.setattr(discovery, "SYSTEM_DIRS", _SYSTEM_DIRS)
    raw = load_fashion_mnist(download=False)
    assert raw.X_train.shape == (60000, 1, 28, 28) and raw.X_test.shape == (10000, 1, 28, 28)
    np.testing.assert_array_equal(np.bincount(raw.y_train), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(raw.y_test), [1000] * 10)


def test_results_and_config_record_the_folder_the_data_came_from(tmp_path):
    """Issue 10, item 4: config.json and the report name the folder actually read."""
    from normlab.experiments import get_experiment, run_experiment
    from normlab.report import save_results

    folder = tmp_path / "fm"
    make_mnist(folder, n_train=5010, n_test=20)
    exp = get_experiment("bn-vs-baseline")
    config = exp.config_cls(
        dataset="fashion-mnist", data_dir=str(folder), download=False, num_training=20,
        num_epochs=1, batch_size=10, hidden_dims=(8,),
    )  # fmt: skip
    results = run_experiment(exp, config)
    assert results["data_dir_used"] == str(folder)
    save_results(results, tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    assert saved["data_dir_used"] == str(folder) and saved["config"]["data_dir"] == str(folder)


def test_data_dir_used_skips_runs_that_read_no_data():
    """darknet-mismatch's gradient draws come first and read nothing: the folder of a later run
    that did read the dataset is the one reported, not None ('embedded data')."""
    from normlab.experiments.runner import _data_dir_used

    outputs = {"gradient/m=2": {"rel_error": 0.1}, "bn": {"data_dir": "/d/fm"}, "x": {}}
    assert _data_dir_used(outputs) == "/d/fm"
    assert _data_dir_used({"a": {"data_dir": None}, "b": {}}) is None
