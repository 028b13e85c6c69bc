"""The lessons in ``examples/``: stored without outputs, and each runs top to bottom in quick mode.

Every notebook is executed with nbclient in the current interpreter's kernel, with
``NORMLAB_QUICK=1`` (its parameters cell shrinks every run) and a temporary working directory
(nothing is written into the repository), two kernels at a time (each is single-threaded); a
cell that raises fails the notebook's test.
"""

from __future__ import annotations

import asyncio
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


JOBS = min(2, os.cpu_count() or 1)  # kernels at once: a kernel runs on one core


async def _execute(name: str, workdir: Path, slots: asyncio.Semaphore):
    """Run notebook ``name`` in this interpreter's kernel, with a first cell that prints the
    kernel's ``sys.prefix`` and ``NORMLAB_QUICK``; the executed notebook, or the exception."""
    nb = _read(name)
    probe = "import os, sys\nprint(sys.prefix)\nprint(os.environ.get('NORMLAB_QUICK'))"
    nb.cells.insert(0, nbformat.v4.new_code_cell(probe))
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(workdir)}},  # the working directory
    )
    async with slots:
        try:
            await client.async_execute()  # raises CellExecutionError naming the cell
        except Exception as e:  # reported by the notebook's own test
            return e
    return nb


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """Every notebook executed in quick mode, JOBS at a time, each in its own temporary working
    directory; the kernels inherit this environment: quick mode, one BLAS thread per kernel."""

    async def run_all():
        slots = asyncio.Semaphore(JOBS)
        dirs = [tmp_path_factory.mktemp(Path(n).stem) for n in NOTEBOOKS]
        return await asyncio.gather(
            *(_execute(n, d, slots) for n, d in zip(NOTEBOOKS, dirs, strict=True))
        )

    before = sorted(EXAMPLES.iterdir())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NORMLAB_QUICK", "1")
        mp.setenv("OPENBLAS_NUM_THREADS", "1")
        mp.setenv("OMP_NUM_THREADS", "1")
        mp.setenv("NUMBA_NUM_THREADS", "1")
        done = dict(zip(NOTEBOOKS, asyncio.run(run_all()), strict=True))
    return done, before, sorted(EXAMPLES.iterdir())


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_runs_in_quick_mode(name, executed):
    """The notebook executes without an error in this interpreter's kernel, quick mode on."""
    done, before, after = executed
    nb = done[name]
    if isinstance(nb, Exception):
        raise nb
    printed = "".join(out.get("text", "") for out in nb.cells[0].outputs)  # may come in parts
    prefix, quick = printed.split()
    assert os.path.realpath(prefix) == os.path.realpath(sys.prefix), (
        f"the python3 kernel runs {prefix}, not this interpreter's environment {sys.prefix}: "
        "install ipykernel into it (pip install -e '.[test]')"
    )
    assert quick == "1"
    assert after == before, "a notebook wrote into examples/ in quick mode"
