"""Ctrl-C keeps everything: SIGINT to a ``normlab train`` or ``normlab experiment --jobs 2``
process, then the printed resume command, gives the uninterrupted run's results."""

import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from normlab.cli import main
from normlab.experiments.runner import strip_timings

pytestmark = [
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals"),
    # the resumed runs are compared with uninterrupted ones run here, as a user's process runs
    # them (the BLAS on all its threads), as well as the interrupted command
    pytest.mark.usefixtures("default_blas_threads"),
]

# Runs `normlab` with every Solver step slowed down, in this process and in the spawned workers
# (they import this file as __mp_main__), so that a signal lands while runs are in flight.
HARNESS = """
import sys, time
import normlab.solver

_step = normlab.solver.Solver.step

def _slow_step(self):
    time.sleep({delay})
    return _step(self)

normlab.solver.Solver.step = _slow_step

if __name__ == "__main__":
    from normlab.cli import main
    sys.exit(main(sys.argv[1:]))
"""


def _interrupted(tmp_path, argv, marker, delay, sig=signal.SIGINT):
    """Run ``normlab argv`` slowed down in ``tmp_path``; send ``sig`` once stderr or stdout
    shows ``marker``; its exit status and output."""
    harness = tmp_path / "slow_normlab.py"
    harness.write_text(textwrap.dedent(HARNESS.format(delay=delay)))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(harness), *argv],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen, deadline = [], time.monotonic() + 120
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            proc.send_signal(sig)
            break
        assert time.monotonic() < deadline, "".join(seen)
    rest, _ = proc.communicate(timeout=120)
    return proc.returncode, "".join(seen) + rest


def _resume_argv(output):
    """The arguments of the resume command printed by an interrupted command."""
    line = [ln for ln in output.splitlines() if "resume with: " in ln]
    assert len(line) == 1, output
    command = shlex.split(line[0].split("resume with: ", 1)[1])
    assert command[0] == "normlab"
    return command[1:]


def _params(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files if k.startswith("model/params/")}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_train_checkpoints_and_resumes_exactly(tmp_path, capsys, sig):
    common = ["--hidden-dims", "16", "--num-training", "200", "--batch-size", "20"]
    argv = ["train", "--checkpoint", "run.npz", "--num-epochs", "4", *common]
    rc, out = _interrupted(tmp_path, argv, "(Epoch 1 / 4)", 0.02, sig)
    assert rc == 130, out
    assert "Traceback" not in out
    last = [ln for ln in out.splitlines() if ln.strip()][-1]
    assert last.startswith("normlab: interrupted: stopped in epoch 2 of 4 after iteration 1")
    assert "checkpoint saved to run.npz" in last
    resume = _resume_argv(out)
    assert resume == [*argv, "--resume"]
    os.chdir(tmp_path)
    assert main([*resume, "--quiet"]) == 0
    assert main(["train", "--checkpoint", "full.npz", "--num-epochs", "4", "--quiet", *common]) == 0
    a, b = _params(tmp_path / "run.npz"), _params(tmp_path / "full.npz")
    assert a.keys() == b.keys() and len(a) > 0
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == lines[2] and lines[0].startswith("epochs 4;")  # same accuracies


def test_interrupted_experiment_keeps_finished_runs_and_resumes_exactly(tmp_path, capsys):
    argv = ["experiment", "weight-scale", "--quick", "--set", "num_scales=3", "--jobs", "2"]
    rc, out = _interrupted(tmp_path, [*argv, "--out", "ws"], "[1/6]", 0.05)
    assert rc == 130, out
    assert "Traceback" not in out
    kept = len(list((tmp_path / "ws" / "runs").iterdir()))
    assert 1 <= kept < 6
    assert f"\nnormlab: interrupted; {kept} of 6 runs kept in ws/runs; resume with: " in out
    assert not (tmp_path / "ws" / "results.json").exists()
    resume = _resume_argv(out)
    assert resume == [*argv, "--out", "ws", "--resume"]
    os.chdir(tmp_path)
    assert main(resume) == 0
    assert f"6 runs on digits (quick), 2 processes, seed 0; {kept} kept" in capsys.readouterr().err
    assert main([*argv[:-2], "--out", "full"]) == 0
    a, b = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("ws", "full"))
    assert len(a["runs"]) == 6
    assert strip_timings(a) == strip_timings(b)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_report_keeps_every_run_and_resume_draws_it(tmp_path, monkeypatch, capsys, sig):
    """A signal after the last run, while the figures and report.html are drawn: the same kind
    of line as during the runs (what is kept, the command that finishes), not a bare
    ``normlab: interrupted``; the resume runs nothing again and writes the report."""
    import normlab.report

    write_outputs = normlab.report.write_outputs

    def interrupted(results, out_dir):
        os.kill(os.getpid(), sig)  # SIGTERM's default would end the process: the handler must
        time.sleep(10)  # turn it into KeyboardInterrupt, which ends this sleep
        raise AssertionError("the signal was not turned into KeyboardInterrupt")

    monkeypatch.chdir(tmp_path)
    argv = ["demo", "--quick", "--out", "d", "--diagnostics", "0"]
    monkeypatch.setattr(normlab.report, "write_outputs", interrupted)
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "normlab: interrupted while writing the report; every run is kept in d/runs; " in err
    assert _resume_argv(err) == [*argv, "--resume"]
    assert not (tmp_path / "d" / "report.html").exists()
    monkeypatch.setattr(normlab.report, "write_outputs", write_outputs)
    assert main(_resume_argv(err)) == 0
    runs = len(list((tmp_path / "d" / "runs").iterdir()))
    assert f"{runs} kept from d/runs" in capsys.readouterr().err
    assert (tmp_path / "d" / "report.html").exists()
