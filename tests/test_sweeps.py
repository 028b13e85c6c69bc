"""Sweeps: the same numbers for --jobs 1, --jobs 2 and a Dask cluster; seeds; progress."""

import json
import threading
import time

import pytest

from normlab.cli import main
from normlab.experiments import get_experiment, run_experiment
from normlab.experiments.base import RunSpec
from normlab.experiments.runner import derive_seed, run_tasks, strip_timings


def _echo_task(config, params, seed):
    """A task that reports what it was given (module level: picklable)."""
    import numba

    return {"x": params["x"] * config, "seed": seed, "threads": numba.get_num_threads()}


def _results(path):
    return strip_timings(json.loads((path / "results.json").read_text()))


def test_jobs_1_and_jobs_2_give_the_same_results(tmp_path, capsys, default_blas_threads):
    # --jobs 1 as a user runs it: numba and the BLAS on all their threads, here; the workers of
    # --jobs 2 on one thread each. One normalization per kind of kernel (columns, rows): on two
    # cores the BLAS's two threads made the four of the quick run take ~10 s instead of ~2 s
    argv = ["experiment", "batch-size", "--quick", "--set", "batch_sizes=10,50"]
    argv += ["--set", "normalizations=batchnorm,groupnorm"]
    assert main([*argv, "--out", str(tmp_path / "j1")]) == 0
    assert main([*argv, "--out", str(tmp_path / "j2"), "--jobs", "2"]) == 0
    err = capsys.readouterr().err
    assert "2 processes" in err and err.count("[4/4]") == 2
    a, b = _results(tmp_path / "j1"), _results(tmp_path / "j2")
    assert a["runs"]["batchnorm/bs=10"]["loss"]  # non-trivial content
    assert a == b
    full = json.loads((tmp_path / "j2" / "results.json").read_text())
    assert full["jobs"] == 2 and set(full["run_seconds"]) == set(full["runs"])


def test_local_and_dask_cluster_give_the_same_results(monkeypatch):
    distributed = pytest.importorskip("distributed")
    import normlab.experiments.training as training

    exp = get_experiment("bn-vs-baseline")
    config = exp.quick(exp.config_cls(dataset="digits"))
    local = strip_timings(run_experiment(exp, config))
    preloads = []  # with a scheduler the data is the workers' business, not this process's
    load_data = training.load_data

    def counted(*args, **kwargs):  # loads by this process itself (the in-process workers' tasks
        if threading.current_thread() is threading.main_thread():  # run in threads of their own)
            preloads.append(1)
        return load_data(*args, **kwargs)

    monkeypatch.setattr(training, "load_data", counted)
    with distributed.LocalCluster(
        n_workers=2, processes=False, threads_per_worker=1, dashboard_address=None
    ) as cluster:
        seen = []
        remote = run_experiment(
            exp, config, scheduler=cluster.scheduler_address,
            progress=lambda done, total, r: seen.append((done, total, r.name)),
        )  # fmt: skip
    assert remote["scheduler"] == cluster.scheduler_address
    assert preloads == []
    assert strip_timings(remote) == local
    assert [(d, t) for d, t, _ in seen] == [(1, 2), (2, 2)]
    assert {name for _, _, name in seen} == {"none", "batchnorm"}


def test_run_tasks_orders_results_and_reports_progress():
    specs = [RunSpec(f"r{i}", {"x": i}) for i in range(4)]
    seen = []
    out = run_tasks(_echo_task, 10, specs, seed=7, progress=lambda d, t, r: seen.append((d, t)))
    assert list(out) == ["r0", "r1", "r2", "r3"]
    assert [r.output["x"] for r in out.values()] == [0, 10, 20, 30]
    assert [r.output["seed"] for r in out.values()] == [derive_seed(7, f"r{i}") for i in range(4)]
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_worker_processes_use_one_numba_thread():
    specs = [RunSpec("a", {"x": 1}), RunSpec("b", {"x": 2})]
    out = run_tasks(_echo_task, 1, specs, seed=0, jobs=2)
    assert {r.output["threads"] for r in out.values()} == {1}
    seq = run_tasks(_echo_task, 1, specs, seed=0, jobs=1)
    assert [r.output["seed"] for r in out.values()] == [r.output["seed"] for r in seq.values()]


def _marking_task(config, params, seed):
    """Marks that it started (in directory ``config``), sleeps, then fails if told to."""
    import pathlib

    pathlib.Path(config, params["name"]).touch()
    time.sleep(params["sleep"])
    if params["fail"]:
        raise ValueError(f"run {params['name']} failed")
    return {}


def _marking_specs(n, fail_sleep, sleep):
    """``n`` runs of :func:`_marking_task`; r0 fails after ``fail_sleep`` seconds."""
    params = [{"name": f"r{i}", "fail": i == 0, "sleep": sleep} for i in range(n)]
    params[0]["sleep"] = fail_sleep
    return [RunSpec(p["name"], p) for p in params]


def test_a_failed_run_ends_a_local_sweep_without_starting_the_queued_ones(tmp_path):
    with pytest.raises(ValueError, match="run r0 failed"):
        run_tasks(_marking_task, str(tmp_path), _marking_specs(10, 0.0, 0.5), seed=0, jobs=2)
    started = {p.name for p in tmp_path.iterdir()}
    assert started == {"r0", "r1"}  # r0 and the run beside it: nothing was queued behind them


def test_a_run_failing_during_a_slow_progress_callback_still_ends_the_sweep(tmp_path):
    """r1 ends first and its progress callback takes 1.5 s, during which r0 fails: the sweep
    must raise without starting r2 (the failure is checked before every submission)."""
    slow = []

    def progress(done, total, result):
        if not slow:
            slow.append(1)
            time.sleep(1.5)

    specs = _marking_specs(6, 0.8, 0.1)
    with pytest.raises(ValueError, match="run r0 failed"):
        run_tasks(_marking_task, str(tmp_path), specs, seed=0, jobs=2, progress=progress)
    assert {p.name for p in tmp_path.iterdir()} == {"r0", "r1"}


def test_derive_seed():
    assert derive_seed(0, "a") == derive_seed(0, "a")
    seeds = {derive_seed(s, k) for s in range(3) for k in ("a", "b", "none/bs=5")}
    assert len(seeds) == 9 and all(0 <= s < 2**32 for s in seeds)


def test_run_tasks_rejects_bad_input():
    with pytest.raises(ValueError, match="unique run names"):
        run_tasks(_echo_task, 1, [RunSpec("a", {"x": 1}), RunSpec("a", {"x": 2})], seed=0)
    with pytest.raises(ValueError, match="jobs to be an integer >= 1, got 0"):
        run_tasks(_echo_task, 1, [RunSpec("a", {"x": 1})], seed=0, jobs=0)


def test_run_experiment_checks_the_config_type():
    with pytest.raises(ValueError, match="expected a WeightScaleConfig"):
        run_experiment(get_experiment("weight-scale"), get_experiment("demo").config_cls())


def test_progress_lines_show_the_swept_values_not_run_indices(tmp_path, capsys):
    argv = ["experiment", "weight-scale", "--quick", "--set", "num_scales=2", "--out"]
    assert main([*argv, str(tmp_path / "ws")]) == 0
    err = capsys.readouterr().err
    for line in ("none weight_scale=1e-04", "batchnorm weight_scale=1 "):
        assert line in err, err
    assert "scale=0" not in err and "scale=1 " not in err.replace("weight_scale=1 ", "")


def test_run_tasks_skips_done_runs_and_reports_each_new_one():
    from normlab.experiments.runner import RunResult

    specs = [RunSpec(f"r{i}", {"x": i}) for i in range(3)]
    kept = {"r1": RunResult("r1", {"x": "kept"}, 0.0)}
    seen, progress = [], []
    out = run_tasks(_echo_task, 10, specs, seed=7, done=kept, on_result=seen.append,
                    progress=lambda d, t, r: progress.append((d, t, r.name)))  # fmt: skip
    assert [r.output["x"] for r in out.values()] == [0, "kept", 20]
    assert [r.name for r in seen] == ["r0", "r2"]
    assert progress == [(2, 3, "r0"), (3, 3, "r2")]
