"""The lessons in ``examples/``: stored without outputs, and each runs top to bottom in quick mode.

Every notebook is executed with nbclient in the current interpreter's kernel, with
``NORMLAB_QUICK=1`` (its parameters cell shrinks every run) and a temporary working directory
(nothing is written into the repository); a cell that raises fails the test.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NOTEBOOKS = (
    "01-batchnorm-by-hand.ipynb",
    "02-pytorch-lecture.ipynb",
    "03-why-it-works.ipynb",
    "04-your-own-normalization.ipynb",
)
CELL_TIMEOUT_S = 300  # per cell; a quick cell takes seconds, more on a loaded machine
QUICK_LINE = 'QUICK = os.environ.get("NORMLAB_QUICK", "0") == "1"'


def _read(name: str):
    return nbformat.read(EXAMPLES / name, as_version=4)


def test_the_examples_folder_holds_exactly_the_lessons():
    """A notebook added to examples/ without a test here would never run in CI."""
    assert sorted(p.name for p in EXAMPLES.glob("*.ipynb")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_stored_without_outputs(name):
    """Outputs are made by running, not stored: no outputs, no execution counts, valid format,
    and a parameters cell that reads NORMLAB_QUICK among the first cells."""
    nb = _read(name)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, name
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and c.outputs]
    counted = [i for i, c in enumerate(nb.cells) if c.get("execution_count") is not None]
    assert not dirty, f"{name}: cells {dirty} hold outputs; clear them before committing"
    assert not counted, f"{name}: cells {counted} hold execution counts"
    assert QUICK_LINE in code[0].source, f"{name}: the first code cell must be the parameters"


@pytest.fixture
def quick_env(monkeypatch, tmp_path):
    """The kernel's environment (it inherits ours): quick mode, one BLAS thread as the rest of
    the suite uses; a temporary working directory."""
    monkeypatch.setenv("NORMLAB_QUICK", "1")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return tmp_path


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_runs_in_quick_mode(name, quick_env):
    """The notebook executes without an error in this interpreter's kernel, quick mode on."""
    nb = _read(name)
    # first, which Python runs the kernel and whether it is in quick mode
    probe = "import os, sys\nprint(sys.prefix)\nprint(os.environ.get('NORMLAB_QUICK'))"
    nb.cells.insert(0, nbformat.v4.new_code_cell(probe))
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(quick_env)}},  # the working directory
    )
    client.execute()  # raises CellExecutionError naming the cell on any error
    printed = "".join(out.get("text", "") for out in nb.cells[0].outputs)  # may come in parts
    prefix, quick = printed.split()
    assert os.path.realpath(prefix) == os.path.realpath(sys.prefix), (
        f"the python3 kernel runs {prefix}, not this interpreter's environment {sys.prefix}: "
        "install ipykernel into it (pip install -e '.[test]')"
    )
    assert quick == "1"
    assert not list(EXAMPLES.glob("normlab-*")), "a notebook wrote into examples/ in quick mode"
