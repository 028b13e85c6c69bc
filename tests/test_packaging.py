"""What a user installs and first meets: the embedded digits, the dependencies, ``python -m
normlab``, ``normlab.__doc__`` and the README's quick starts."""

import ast
import hashlib
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

import normlab
from normlab.data.digits import (
    DIGITS_NUM_TEST,
    DIGITS_TEST_SEED,
    digits_arrays,
    load_digits,
    stratified_holdout,
)

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = pathlib.Path(normlab.__file__).parent

# sha256 of what sklearn.datasets.load_digits(return_X_y=True) returned (scikit-learn 1.9.1):
# X.tobytes() of the (1797, 64) float64 array and y.tobytes() of the (1797,) int64 labels
DIGITS_X_SHA256 = "20def7f70a702f0af9732fbba4375e147a7d54fe70d8c45569b8e7c1c7010c10"
DIGITS_Y_SHA256 = "a3c91c262eddcf7ba8f0e37507c30284493c9b20412ffe4af30d536401f7ba21"


# ------------------------------------------------------------------ the embedded digits


def test_digits_arrays_are_scikit_learns_without_scikit_learn():
    X, y = digits_arrays()
    assert X.shape == (1797, 64) and X.dtype == np.float64 and X.flags.c_contiguous
    assert y.shape == (1797,) and y.dtype == np.int64
    assert hashlib.sha256(X.tobytes()).hexdigest() == DIGITS_X_SHA256
    assert hashlib.sha256(y.tobytes()).hexdigest() == DIGITS_Y_SHA256
    assert np.bincount(y).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


def test_digits_arrays_equal_scikit_learns_load_digits():
    datasets = pytest.importorskip("sklearn.datasets")
    bunch = datasets.load_digits()
    X, y = digits_arrays()
    np.testing.assert_array_equal(X, bunch.data)
    np.testing.assert_array_equal(y, bunch.target)
    assert X.dtype == bunch.data.dtype and y.dtype == bunch.target.dtype
    # load_digits as it was when it read scikit-learn's copy (normlab 0.1.0 before the embedding)
    images = bunch.images.astype(np.uint8)[:, None]  # (1797, 1, 8, 8)
    test = stratified_holdout(bunch.target, DIGITS_NUM_TEST, DIGITS_TEST_SEED)  # (300,)
    train = np.setdiff1d(np.arange(1797), test)  # (1497,)
    raw = load_digits()
    np.testing.assert_array_equal(raw.X_train, images[train])
    np.testing.assert_array_equal(raw.y_train, bunch.target[train])
    np.testing.assert_array_equal(raw.X_test, images[test])
    np.testing.assert_array_equal(raw.y_test, bunch.target[test])
    assert raw.X_train.dtype == np.uint8 and raw.y_train.dtype == np.int64 and raw.pixel_max == 16


def test_digits_file_is_the_one_its_attribution_names():
    text = (PACKAGE / "data" / "DIGITS-LICENSE").read_text()
    for needed in ("Alpaydin", "Kaynak", "CC BY 4.0", "10.24432/C50P49", "unchanged"):
        assert needed in text
    pinned = re.search(r"sha256 ([0-9a-f]{64})", text).group(1)
    data = (PACKAGE / "data" / "digits.csv.gz").read_bytes()
    assert hashlib.sha256(data).hexdigest() == pinned


def test_package_data_ships_every_data_file():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["package-data"]["normlab.data"])
    on_disk = {p.name for p in (PACKAGE / "data").iterdir() if p.is_file()}
    assert {n for n in on_disk if not n.endswith((".py", ".pyc"))} <= listed


def test_runtime_needs_neither_scikit_learn_nor_scipy():
    tomllib = pytest.importorskip("tomllib")
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[\[<>=!~ ]", d)[0].lower() for d in deps}
    assert "scikit-learn" not in names
    imported = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                imported.add(node.module.split(".")[0])
    assert "sklearn" not in imported
    assert "scipy" not in names and "scipy" not in imported  # noise.py's t quantile is ours
    # every third-party import is a declared dependency (threadpoolctl came with scikit-learn)
    third_party = imported - set(sys.stdlib_module_names) - {"normlab"}
    provided = names | ({"distributed"} if any("dask[distributed]" in d for d in deps) else set())
    assert third_party <= provided, f"imported but not declared: {sorted(third_party - provided)}"


# ------------------------------------------------------------------ first contact


def _normlab(*args):
    return subprocess.run(
        [sys.executable, "-m", "normlab", *args], capture_output=True, text=True, timeout=120
    )


def test_python_dash_m_normlab_is_the_command():
    version = _normlab("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"normlab {normlab.__version__}"
    helped = _normlab("--help")
    assert helped.returncode == 0 and helped.stdout.startswith("usage: normlab")
    for command in ("demo", "experiment", "train", "report", "gradcheck"):
        assert command in helped.stdout
    assert _normlab("no-such-command").returncode == 2


def test_the_package_docstring_says_what_it_is_and_where_to_start():
    doc = normlab.__doc__
    assert doc and doc.startswith("normlab: batch normalization")
    for needed in ("normlab.layers", "normlab.models", "normlab.solver", "normlab demo", "README"):
        assert needed in doc


def test_readme_quick_starts_each_make_their_own_environment():
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```bash\n(.*?)\n```", quick, re.S)
    assert len(commands) == 2, commands
    venvs = [re.match(r"python3 -m venv (\S+) && \. (\S+)/bin/activate", c) for c in commands]
    assert all(venvs), commands
    assert all(m.group(1) == m.group(2) for m in venvs)  # activates the one it made
    demo, tests = (m.group(1) for m in venvs)
    assert demo != tests
    ignored = (ROOT / ".gitignore").read_text().split()
    assert f"{demo}/" in ignored and f"{tests}/" in ignored
    assert commands[0].endswith("pip install . && normlab demo")
    assert commands[1].endswith('pip install -e ".[test]" && python -m pytest')
