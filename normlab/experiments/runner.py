"""Sweeps: run an experiment's tasks here, in local processes or on a Dask cluster.

Every run is an independent task, ``run_task(config, params, seed)``, whose seed is derived from
the root seed and the run's key alone (:func:`derive_seed`), never from the order or the place it
runs in; so the same root seed gives the same numbers for any ``jobs`` and any scheduler.

``jobs=1`` runs the tasks one after the other in this process. ``jobs=N > 1`` runs them in ``N``
worker processes (``concurrent.futures.ProcessPoolExecutor``, started with ``spawn`` so that no
numba or BLAS thread pool is inherited through ``fork``). ``scheduler=ADDRESS`` submits them to
a Dask distributed scheduler (``distributed.Client(address)``); the workers must be able to
import normlab and to find the dataset. Whenever tasks can run side by side (``jobs > 1`` or a
cluster) each task limits numba and BLAS to one thread, so that N tasks use N cores rather than
N times all of them; the normalization kernels give the same bits for any thread count.

Interrupts: runs given as ``done`` are not run again, and ``on_result`` sees each run as it
finishes (the command line writes it to the output folder), so an interrupted sweep resumes
where it stopped. On Ctrl-C (``KeyboardInterrupt``) the local workers are terminated at once
(they ignore SIGINT themselves, so a terminal's Ctrl-C reaches only this process's handling)
and the runs queued on a Dask cluster are cancelled.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np

from normlab._io import json_safe
from normlab.experiments import seeds as seeding
from normlab.experiments.base import Experiment, RunSpec
from normlab.experiments.config import config_help, config_to_dict

__all__ = [
    "RunResult",
    "collect",
    "derive_seed",
    "environment",
    "run_experiment",
    "run_tasks",
    "strip_timings",
    "summarize_runs",
    "task_specs",
]

TIMING_KEYS = (
    "seconds",
    "wall_time_s",
    "run_seconds",
    "compile_seconds",
    "environment",
    "jobs",
    "scheduler",
)


@dataclass(frozen=True)
class RunResult:
    """What a finished task reports: its name, output and duration in seconds, and the seconds
    its process spent compiling the kernels just before it (not part of ``seconds``; nonzero
    only for the first task of a process)."""

    name: str
    output: dict
    seconds: float
    compile_seconds: float = 0.0


def derive_seed(root: int, key: str) -> int:
    """The seed of one run: a function of the root seed and the run's key only.

    Parameters
    ----------
    root : int
        The experiment's seed (>= 0).
    key : str
        The run's seed key (its name unless it shares a seed with others).

    Returns
    -------
    seed : int
        In [0, 2**32), from ``np.random.SeedSequence(root, spawn_key=(h,))`` with ``h`` the first
        four bytes of the key's SHA-256, independent of Python's hash randomisation.
    """
    h = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little")
    return int(np.random.SeedSequence(int(root), spawn_key=(h,)).generate_state(1)[0])


_blas_lock = threading.Lock()
_blas_users = 0  # tasks of this process inside _single_threaded
_blas_limiter = None  # the threadpoolctl limiter while _blas_users > 0


@contextmanager
def _single_threaded():
    """Limit numba (this thread) and the BLAS (this process) to one thread for the duration.

    The BLAS limit is process-wide, so tasks running side by side in threads of one process (a
    Dask worker with several threads) share it: the first sets it, the last restores it.
    """
    global _blas_users, _blas_limiter
    import numba
    from threadpoolctl import threadpool_limits

    before = numba.get_num_threads()
    numba.set_num_threads(1)  # thread-local in numba
    with _blas_lock:
        if _blas_users == 0:
            _blas_limiter = threadpool_limits(limits=1)
        _blas_users += 1
    try:
        yield
    finally:
        numba.set_num_threads(before)
        with _blas_lock:
            _blas_users -= 1
            if _blas_users == 0 and _blas_limiter is not None:
                _blas_limiter.restore_original_limits()
                _blas_limiter = None


_warm_lock = threading.Lock()
_warmed = False  # this process has compiled (or loaded) the kernels


def _warm_once() -> float:
    """Compile the kernels a training run calls, once per process, before any task is timed
    (:func:`normlab.warmup.warm_up`: float32, the experiments' dtype; their layers stay below
    the multi-threaded kernels' size), and the diagnostics' statistics kernel, which the runs
    that record a :class:`~normlab.diagnostics.Recorder` call (its first call compiled for
    7-16 s inside the demo's first run on an empty numba cache). Returns the seconds spent (0
    after the first call)."""
    global _warmed
    with _warm_lock:
        if _warmed:
            return 0.0
        from normlab.diagnostics.stats import distribution
        from normlab.warmup import warm_up

        seconds = warm_up((np.float32,), parallel=False)
        t0 = time.perf_counter()
        distribution(np.zeros(2, np.float32))  # the Recorder hands it float32 activations
        seconds += time.perf_counter() - t0
        _warmed = True
        return seconds


def _execute(fn: Callable, config: Any, name: str, params: dict, seed: int, single: bool):
    """Run one task (in whatever process or thread it landed) and time it, after the kernels
    are compiled: the compile time is reported apart."""
    with _single_threaded() if single else nullcontext():
        compile_seconds = _warm_once()
        t0 = time.perf_counter()
        output = fn(config, params, seed)
    return RunResult(name, output, time.perf_counter() - t0, compile_seconds)


def _worker_init() -> None:
    """Initializer of the local worker processes: numba and BLAS on one thread each; SIGINT
    ignored (the parent process handles Ctrl-C and terminates the workers)."""
    import numba
    from threadpoolctl import threadpool_limits

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    numba.set_num_threads(1)
    threadpool_limits(limits=1)


def run_tasks(
    fn: Callable[[Any, dict, int], dict],
    config: Any,
    specs: Sequence[RunSpec],
    seed: int,
    jobs: int = 1,
    scheduler: str | None = None,
    progress: Callable[[int, int, RunResult], None] | None = None,
    done: dict[str, RunResult] | None = None,
    on_result: Callable[[RunResult], None] | None = None,
) -> dict[str, RunResult]:
    """Execute one task per run spec and collect the results by run name.

    Parameters
    ----------
    fn : callable
        ``fn(config, params, seed) -> dict``, a module-level function (it is pickled by name).
    config : dataclass
        The experiment's config, passed to every task.
    specs : sequence of RunSpec
        The runs; names must be unique.
    seed : int
        Root seed; run ``s`` gets ``derive_seed(seed, s.seed_key or s.name)``.
    jobs : int, default 1
        Local worker processes (1: run in this process). Ignored when ``scheduler`` is given.
    scheduler : str, optional
        Address of a Dask distributed scheduler (``"tcp://host:8786"``) to submit the tasks to.
    progress : callable, optional
        ``progress(done, total, result)`` in this process as each run finishes.
    done : dict of str to RunResult, optional
        Runs finished before (e.g. by an interrupted sweep): not run again, counted as done.
    on_result : callable, optional
        ``on_result(result)`` in this process as each run finishes, before ``progress``.

    Returns
    -------
    results : dict of str to RunResult
        In the order of ``specs``, whatever order they finished in.
    """
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"expected unique run names, got {names}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"expected jobs to be an integer >= 1, got {jobs!r}")
    total = len(specs)
    done = {n: r for n, r in (done or {}).items() if n in names}
    left = [(s, derive_seed(seed, s.seed_key or s.name)) for s in specs if s.name not in done]
    specs, seeds = [s for s, _ in left], [sd for _, sd in left]

    def finished(result: RunResult) -> None:
        done[result.name] = result
        if on_result is not None:
            on_result(result)
        if progress is not None:
            progress(len(done), total, result)

    if scheduler is not None:
        _run_dask(fn, config, specs, seeds, scheduler, finished)
    elif jobs == 1 or len(specs) <= 1:
        for s, sd in zip(specs, seeds, strict=True):
            finished(_execute(fn, config, s.name, s.params, sd, False))
    else:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        workers = min(jobs, len(specs))
        with _stopped_on_interrupt(
            ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init)
        ) as pool:
            # At most `workers` runs are in the pool at a time, the next submitted as one ends:
            # a failed run then ends the sweep with no queued run left to start, and leaving
            # the block waits only for the runs still going (Ctrl-C terminates them).
            todo = iter(zip(specs, seeds, strict=True))
            running = set()

            def submit_next() -> None:
                for fut in running:  # a run that failed meanwhile: raise, start nothing more
                    if fut.done():
                        fut.result()
                nxt = next(todo, None)
                if nxt is not None:
                    s, sd = nxt
                    running.add(pool.submit(_execute, fn, config, s.name, s.params, sd, True))

            for _ in range(workers):
                submit_next()
            while running:
                ended, _ = wait(running, return_when=FIRST_COMPLETED)
                running -= ended
                results = [fut.result() for fut in ended]  # any failure raises before a submit
                for result in results:
                    finished(result)
                    submit_next()
    return {n: done[n] for n in names}


@contextmanager
def _stopped_on_interrupt(pool: ProcessPoolExecutor):
    """``with pool``, except that an interrupt terminates the workers instead of waiting for
    the runs in flight (whose results would be lost anyway)."""
    try:
        yield pool
    except (KeyboardInterrupt, SystemExit):
        if hasattr(pool, "terminate_workers"):  # Python >= 3.14
            pool.terminate_workers()
        else:
            processes = list((getattr(pool, "_processes", None) or {}).values())
            for process in processes:
                process.terminate()
            for process in processes:
                process.join()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _run_dask(fn, config, specs, seeds, address, finished) -> None:
    """Submit the tasks to the Dask scheduler at ``address``; report each as it completes."""
    try:
        from distributed import Client
        from distributed import as_completed as dask_completed
    except ImportError as err:  # pragma: no cover - dask[distributed] is a dependency
        raise RuntimeError(
            "--scheduler needs dask.distributed: pip install 'dask[distributed]'"
        ) from err
    try:
        client = Client(address, timeout="10s", set_as_default=False)
    except OSError as err:
        raise ConnectionError(f"cannot reach the Dask scheduler at {address}: {err}") from None
    with client:
        futures = [
            client.submit(_execute, fn, config, s.name, s.params, sd, True, pure=False)
            for s, sd in zip(specs, seeds, strict=True)
        ]
        try:
            for fut in dask_completed(futures, loop=client.loop):
                finished(fut.result())
        except BaseException:
            with contextlib.suppress(Exception):  # the client may be gone: keep the first error
                client.cancel(futures)  # a failed run ends the sweep on the cluster too
            raise


def environment() -> dict:
    """Versions, platform and CPU of this process, for the report.

    Returns
    -------
    env : dict
        ``python``, ``numpy``, ``numba``, ``matplotlib``, ``dask``, ``normlab``
        versions (None if absent), ``platform``, ``cpu``, ``cpu_count``, ``numba_threads``,
        ``backend`` (``$NORMLAB_BACKEND``).
    """
    import importlib.metadata as md

    def version(dist: str) -> str | None:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return None

    import numba

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "matplotlib": version("matplotlib"),
        "dask": version("dask"),
        "normlab": version("normlab"),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "numba_threads": numba.get_num_threads(),
        "backend": os.environ.get("NORMLAB_BACKEND", "numba"),
    }


def _cpu_name() -> str:
    """The CPU model from /proc/cpuinfo where there is one, else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def task_specs(experiment: Experiment, config: Any) -> list[RunSpec]:
    """The tasks of ``experiment``: each of its runs once per seed (``config.seeds``)."""
    return seeding.expand(experiment.runs(config), config.seeds)


def run_experiment(
    experiment: Experiment,
    config: Any,
    jobs: int = 1,
    scheduler: str | None = None,
    progress: Callable[[int, int, RunResult], None] | None = None,
    on_runs: Callable[[dict], None] | None = None,
    done: dict[str, RunResult] | None = None,
    on_result: Callable[[RunResult], None] | None = None,
) -> dict:
    """Run every task of ``experiment`` and summarize them into the results dict.

    Parameters
    ----------
    experiment : Experiment
    config : dataclass
        An instance of ``experiment.config_cls``.
    jobs, scheduler, progress, done, on_result
        As in :func:`run_tasks`: ``done`` holds the runs of an interrupted sweep (their outputs
        as read back from JSON), ``on_result`` saves each run as it finishes.
    on_runs : callable, optional
        ``on_runs(raw)`` with the results before summarizing (no summary keys), e.g. to save
        the training before anything that reads it can fail.

    Returns
    -------
    results : dict
        JSON-able: ``experiment``, ``description``, ``config``, ``config_help`` (each setting's
        comment), ``seed``, ``seeds``, ``data_dir_used`` (the folder the runs read the dataset
        from, whatever ``config.data_dir`` says; None for the embedded digits), ``runs``
        (every task's output by name: ``name`` with one seed, ``name/seed=k`` with several),
        ``run_seconds``, the experiment's summary
        keys (``table``, curves...; with several seeds their means, and ``spread`` and
        ``per_seed``: :mod:`normlab.experiments.seeds`), ``headline`` (one sentence),
        ``figures`` (their declarations), ``environment``, ``compile_seconds`` (what the
        processes spent compiling kernels before their first run, not in ``run_seconds``),
        ``jobs``, ``scheduler`` and ``wall_time_s``: everything a report needs
        (:mod:`normlab.report`). Run outputs are summarized in their strict-JSON form (NaN as
        None, lists for tuples), the form they are saved and resumed in, so a resumed sweep
        summarizes exactly what a whole one does.
    """
    if not isinstance(config, experiment.config_cls):
        raise ValueError(
            f"expected a {experiment.config_cls.__name__} for {experiment.name!r}, "
            f"got {type(config).__name__}"
        )
    t0 = time.perf_counter()
    from normlab.experiments.training import preload_data

    preload_data(config, scheduler)  # a missing dataset fails here, not in every worker
    specs = task_specs(experiment, config)
    done = run_tasks(
        experiment.run_task, config, specs, config.seed, jobs, scheduler, progress, done, on_result
    )
    return collect(experiment, config, done, jobs, scheduler, t0, on_runs)


def collect(
    experiment: Experiment,
    config: Any,
    done: dict[str, RunResult],
    jobs: int = 1,
    scheduler: str | None = None,
    started: float | None = None,
    on_runs: Callable[[dict], None] | None = None,
) -> dict:
    """The results dict of :func:`run_experiment` from its finished tasks ``done`` (by task
    name, :func:`task_specs`): what a sweep that ran them with other tasks (``normlab
    claims``) reports for this experiment. ``started`` is the ``time.perf_counter()`` the
    wall time counts from (None: no wall time); ``on_runs`` as in :func:`run_experiment`."""
    outputs = {name: json.loads(json.dumps(json_safe(r.output))) for name, r in done.items()}
    seconds = {name: round(r.seconds, 3) for name, r in done.items()}
    compile_seconds = round(sum(r.compile_seconds for r in done.values()), 3)
    raw = {
        "experiment": experiment.name,
        "description": experiment.description,
        "config": config_to_dict(config),
        "config_help": {name: text for name, _, text in config_help(type(config))},
        "seed": config.seed,
        "seeds": config.seeds,
        "data_dir_used": _data_dir_used(outputs),
        "runs": outputs,
        "run_seconds": seconds,
    }
    if on_runs is not None:
        on_runs(raw)
    results = {**raw, **summarize_runs(experiment, config, outputs, seconds)}
    return {
        **results,
        "headline": experiment.headline(results),
        "figures": experiment.figures(config),
        "environment": environment(),
        "compile_seconds": compile_seconds,
        "jobs": jobs,
        "scheduler": scheduler,
        "wall_time_s": None if started is None else round(time.perf_counter() - started, 3),
    }


def _data_dir_used(outputs: dict) -> str | None:
    """The folder the runs read their dataset from: the first run that read one (runs that read
    no data, such as darknet-mismatch's gradient draws, say None); None for the embedded digits."""
    return next((o["data_dir"] for o in outputs.values() if o.get("data_dir")), None)


def summarize_runs(experiment: Experiment, config: Any, outputs: dict, seconds: dict) -> dict:
    """The summary of an experiment's task outputs: each seed's summary (with the settings
    :attr:`Experiment.settle` fixes from all seeds), combined into mean and spread.

    Parameters
    ----------
    experiment : Experiment
    config : dataclass
        Its config (``seeds`` says how many seeds the tasks hold).
    outputs, seconds : dict
        Every task's output and duration by task name (:func:`task_specs`).

    Returns
    -------
    summary : dict
        :func:`normlab.experiments.seeds.combine` of the seeds' summaries.
    """
    names = [s.name for s in experiment.runs(config)]
    per_seed = seeding.split(outputs, names, config.seeds)
    times = seeding.split(seconds, names, config.seeds)
    settled = experiment.settle(config, per_seed) if experiment.settle else config
    summaries = [experiment.summarize(settled, o, t) for o, t in zip(per_seed, times, strict=True)]
    return seeding.combine(summaries)


def strip_timings(results: Any) -> Any:
    """A copy of ``results`` without wall times and environment (what may differ between runs).

    Table rows keep their cells except those of columns named like ``"time (s)"``.
    """
    if isinstance(results, dict):
        out = {k: strip_timings(v) for k, v in results.items() if k not in TIMING_KEYS}
        if "columns" in out and "rows" in out:
            keep = [i for i, c in enumerate(out["columns"]) if "time" not in str(c)]
            out["columns"] = [out["columns"][i] for i in keep]
            for rows in ("rows", "spread", "count"):  # the cells and, with seeds, their spread
                if rows in out:
                    out[rows] = [[row[i] for i in keep] for row in out[rows]]
        return out
    if isinstance(results, list):
        return [strip_timings(v) for v in results]
    return results
