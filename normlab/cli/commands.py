"""What each ``normlab`` subcommand does with its parsed arguments: build a config, call the
library, print the outcome.

A subcommand is a public function of this module named after it; its docstring is its help
(the first line, shown by ``normlab --help``) and its description (the rest, shown by
``normlab NAME --help``). Imports of the training stack stay inside the commands, so that
``normlab --help`` and a bad flag answer at once.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

from .errors import UsageError
from .options import (
    DATA_FIELDS,
    RUN_FIELDS,
    check_data_dir,
    check_resume_options,
    check_run_options,
    from_flags,
    given,
)
from .outputs import (
    INTERRUPTED,
    check_out_dir,
    interrupts_raise,
    resume_command,
    start_out_dir,
    stop_requested,
)

EXPERIMENT_FIELDS = (*RUN_FIELDS, *DATA_FIELDS)  # the ExperimentConfig fields given as flags


def _shown(value) -> str:
    """A swept value as a reader wants it: ``1e-04`` for a scale, ``5`` for a batch size."""
    if isinstance(value, float) and value != 0 and not 1e-2 <= abs(value) < 1e4:
        mantissa, exponent = f"{value:.2e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{exponent}"
    if isinstance(value, float):
        return f"{value:.3g}"
    return ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


def describe(spec) -> str:
    """A run as its progress line names it: its normalization, then the values it sweeps
    (``batchnorm weight_scale=1e-04``), not the index in its name."""
    params = dict(spec.params)
    norm = params.pop("normalization", None)
    words = [] if norm is None else [str(norm)]
    words += [f"{k}={_shown(v)}" for k, v in params.items()]
    seed = spec.name.rpartition("/")[2]  # "seed=k" of an experiment run with several seeds
    words += [seed] if seed.startswith("seed=") else []
    return " ".join(words) or spec.name


def _progress(labels: dict[str, str]):
    """The progress callback: one line per finished run, on stderr, naming it by ``labels``."""

    def progress(done: int, total: int, result) -> None:
        _progress_line(done, total, result, labels.get(result.name, result.name))

    return progress


def _progress_line(done: int, total: int, result, label: str) -> None:
    """One line per finished run, on stderr."""
    out = result.output
    score = ""
    for key, what in (("best_val_acc", "best val acc"), ("final_test_acc", "final test acc")):
        if out.get(key) is not None:
            score = f"  {what} {out[key]:.3f}"
            break
    flag = "  (diverged)" if out.get("diverged") else ""
    width = len(str(total))
    print(
        f"[{done:>{width}}/{total}] {label:<30} {result.seconds:6.1f}s{score}{flag}",
        file=sys.stderr,
        flush=True,
    )


def _sweep(name, saved: dict, specs, labels, args, out_dir: Path, announce: str, preload, run):
    """Run a sweep of tasks into ``out_dir``, keeping each finished run; the results, or None
    when interrupted (after saying how many runs are kept and how to resume).

    ``name`` and ``saved`` (its config as a dict) are what ``config.json`` records and a
    ``--resume`` must match; ``specs`` the tasks, ``labels`` their progress names; ``announce``
    the first line (the runs kept are added); ``preload()`` fails on missing data before
    anything is written; ``run(progress, done, on_result)`` runs the tasks and returns the
    results. Each run is saved to ``out_dir/runs`` as it finishes; ``--resume`` runs only the
    missing ones. Ctrl-C or SIGTERM stops the workers and says how many runs are kept.
    """
    from normlab.experiments.runner import RunResult
    from normlab.report.results import save_run

    params = {s.name: s.params for s in specs}
    records = check_out_dir(out_dir, name, saved, args.resume, args.overwrite)
    done = {
        run: RunResult(run, r["output"], r.get("seconds", 0.0))
        for run, r in records.items()
        if run in params and r.get("params") == json.loads(json.dumps(params[run]))
    }
    preload()  # fail on a missing dataset before announcing anything (cached: the runs reuse it)
    start_out_dir(out_dir, name, saved, args.overwrite)  # unwritable: fails before training
    kept = f"; {len(done)} kept from {out_dir}/runs" if args.resume else ""
    print(f"{announce}{kept}", file=sys.stderr, flush=True)

    def keep(result) -> None:  # as each run finishes, before anything can lose it
        record = {"params": params[result.name], "output": result.output}
        save_run(out_dir, result.name, {**record, "seconds": round(result.seconds, 3)})
        done[result.name] = result

    try:
        with interrupts_raise():
            return run(_progress(labels), dict(done), keep)
    except KeyboardInterrupt:
        kept = f"{len(done)} of {len(specs)} runs kept in {out_dir}/runs" if done else "no run kept"
        print(
            f"normlab: interrupted; {kept}; resume with: {resume_command(args.argv)}",
            file=sys.stderr,
        )
        return None


def _report(results: dict, args, out_dir: Path):
    """:func:`normlab.report.write_outputs` of a finished sweep; its path, or None when
    interrupted (after saying that every run is kept and how to finish the report)."""
    from normlab.report import write_outputs

    try:
        with interrupts_raise():
            return write_outputs(results, out_dir)
    except KeyboardInterrupt:
        print(
            f"normlab: interrupted while writing the report; every run is kept in "
            f"{out_dir}/runs; resume with: {resume_command(args.argv)}",
            file=sys.stderr,
        )
        return None


def _where(args) -> str:
    """Where the runs go: ``scheduler ADDRESS`` or ``N processes``."""
    scheduler = getattr(args, "scheduler", None)
    if scheduler:
        return f"scheduler {scheduler}"
    return f"{args.jobs} process{'es' if args.jobs > 1 else ''}"


def _seeds(config) -> str:
    """``seed 0`` or ``3 seeds from 0``."""
    if config.seeds == 1:
        return f"seed {config.seed}"
    return f"{config.seeds} seeds from {config.seed}"


def _run_and_report(exp, config, args, out_dir: Path) -> int:
    """Run ``exp`` with ``config`` (:func:`_sweep`), print the table and headline, write every
    output."""
    from normlab.experiments import run_experiment
    from normlab.experiments.config import config_to_dict
    from normlab.experiments.runner import task_specs
    from normlab.experiments.training import preload_data
    from normlab.report import headline, save_results, text_table

    scheduler = getattr(args, "scheduler", None)
    specs = task_specs(exp, config)
    announce = (
        f"normlab {exp.name}: {len(specs)} runs on {config.dataset}"
        f"{' (quick)' if config.quick else ''}, {_where(args)}, {_seeds(config)}"
    )

    def run(progress, done, on_result):
        return run_experiment(
            exp,
            config,
            jobs=args.jobs,
            scheduler=scheduler,
            progress=progress,
            on_runs=lambda raw: save_results(raw, out_dir),  # training survives a report bug
            done=done,
            on_result=on_result,
        )

    t0 = time.perf_counter()
    results = _sweep(
        exp.name,
        config_to_dict(config),
        specs,
        {s.name: describe(s) for s in specs},
        args,
        out_dir,
        announce,
        lambda: preload_data(config, scheduler or None),
        run,
    )
    report = None if results is None else _report(results, args, out_dir)
    if report is None:
        return INTERRUPTED
    print()
    print(text_table(results["table"]))
    print()
    print(headline(results))
    if results.get("data_dir_used"):
        print(f"\ndata read from: {results['data_dir_used']}")
    compiling = results.get("compile_seconds") or 0.0
    kernels = f" ({compiling:.1f}s compiling kernels, not in the run times)" if compiling else ""
    print(f"\nfinished in {time.perf_counter() - t0:.1f}s{kernels}; results in {out_dir}/")
    print(f"report: {report}")
    return 0


def demo(args) -> int:
    """train a deep net on the digits without and with batch/layer/group norm (takes seconds)

    Train the same deep fully-connected network (6 hidden layers of 100, weights N(0, 0.02^2),
    Adam) on the embedded 8x8 digits without normalization and with batch, layer and group
    norm; print a results table; write results.json, config.json, figures and a
    self-contained report.html into --out.
    """
    from normlab.experiments import get_experiment

    check_run_options(args)
    exp = get_experiment("demo")
    config = from_flags(exp.config_cls, given(args, RUN_FIELDS))
    if args.quick:
        config = exp.quick(config)
    return _run_and_report(exp, config, args, Path(args.out))


def _experiment_config(exp, args):
    """The config of ``exp`` from its defaults, the flags, ``--quick`` and ``--set``."""
    from normlab.experiments.config import parse_assignment

    values = given(args, EXPERIMENT_FIELDS)
    if args.quick:
        values.setdefault("dataset", "digits")  # seconds, offline, whatever the published one
    config = from_flags(exp.config_cls, values)
    if args.quick:
        config = exp.quick(config)
    sets = dict(parse_assignment(exp.config_cls, s) for s in args.set or [])
    return dataclasses.replace(config, **sets) if sets else config


def experiment(args) -> int:
    """run a named experiment (see --list)

    Run one experiment: every run is an independent task, executed here, in --jobs local
    processes or on a Dask cluster (--scheduler); same seed, same numbers. Writes
    results.json, config.json, one PNG per figure and report.html into --out, and each run
    into --out/runs as it finishes: after Ctrl-C, --resume runs only the missing runs. A
    folder holding an earlier run is refused without --resume or --overwrite.
    """
    from normlab.experiments import get_experiment, list_experiments

    if args.list:
        entries = list_experiments()
        width = max(len(n) for n, _ in entries)
        for name, description in entries:
            print(f"{name:<{width}}  {description}")
        return 0
    if args.name is None:
        raise UsageError("expected an experiment NAME or --list (see `normlab experiment --help`)")
    exp = get_experiment(args.name)
    check_run_options(args)
    check_data_dir(args.data_dir)
    config = _experiment_config(exp, args)
    out = Path(args.out) if args.out is not None else Path(f"normlab-{exp.name}")
    return _run_and_report(exp, config, args, out)


def claims(args) -> int:
    """test published claims about normalization: a verdict table (see --list)

    Run the experiments behind a table of published claims -- batch norm trains faster,
    tolerates any weight scale, degrades at small batch; batch renorm and ghost batch norm;
    RMSNorm against layer norm ... -- each experiment once, every run an independent task
    (here, in --jobs local processes or on a Dask cluster with --scheduler), and give each
    claim a verdict computed from its numbers: holds or does not hold (a difference beyond its
    95% interval over the seeds), or inconclusive (within it, or one seed: use --seeds 3).
    Prints the verdict table; writes results.json, config.json and report.html (the table,
    then every claim's figures) into --out, and each run into --out/runs as it finishes:
    after Ctrl-C, --resume runs only the missing ones.
    """
    from normlab.claims import CLAIMS, ClaimsConfig, plan
    from normlab.claims.run import NAME, run_claims, task_specs
    from normlab.experiments.base import RunSpec
    from normlab.experiments.config import config_to_dict
    from normlab.experiments.training import preload_data
    from normlab.report.claims import claims_text

    if args.list:
        width = max(len(c.name) for c in CLAIMS)
        for c in CLAIMS:
            print(f"{c.name:<{width}}  {c.text} ({c.source}; {c.experiment})")
        return 0
    check_run_options(args)
    values = {**given(args, RUN_FIELDS), "quick": args.quick}
    if args.only is not None:
        names = [n.strip() for n in args.only.split(",")]
        if not all(names):  # "" or "a,,b": an empty name would silently mean every claim
            raise ValueError(
                f"expected --only a comma-separated list of claim names, got {args.only!r}; "
                "see `normlab claims --list`, e.g. --only bn-trains-faster,rmsnorm-matches"
            )
        values["only"] = ",".join(names)
    config = from_flags(ClaimsConfig, values)  # an unknown claim lists the known ones
    scheduler = getattr(args, "scheduler", None)
    studies = plan(config)
    specs = task_specs(studies)
    labels = {
        s.name: f"{s.params['study']}: "
        + describe(RunSpec(s.name.partition(":")[2], s.params["params"]))
        for s in specs
    }
    n = sum(len(s.claims) for s in studies.values())
    announce = (
        f"normlab claims: {n} claim{'s' if n > 1 else ''} from {len(studies)} experiment"
        f"{'s' if len(studies) > 1 else ''}, {len(specs)} runs"
        f"{' (quick, on the digits)' if config.quick else ''}, {_where(args)}, {_seeds(config)}"
    )

    def preload() -> None:
        for study in studies.values():
            preload_data(study.config, scheduler or None)

    def run(progress, done, on_result):
        return run_claims(config, args.jobs, scheduler, progress, done, on_result)

    out = Path(args.out)
    t0 = time.perf_counter()
    saved = config_to_dict(config)
    results = _sweep(NAME, saved, specs, labels, args, out, announce, preload, run)
    report_path = None if results is None else _report(results, args, out)
    if report_path is None:
        return INTERRUPTED
    print()
    print(claims_text(results))
    print()
    print(results["headline"])
    print(f"\nfinished in {time.perf_counter() - t0:.1f}s; results in {out}/")
    print(f"report: {report_path}")
    return 0


def report(args) -> int:
    """rebuild figures and report.html from a results directory

    Read DIR/results.json (and DIR/config.json) and rewrite the figures and DIR/report.html;
    trains nothing.
    """
    from normlab.report import headline, load_results, write_report

    results = load_results(args.dir)  # ValueError for a file of another format
    path = write_report(results, args.dir)  # ValueError for a value results.json lacks
    line = headline(results)
    print(line)
    print(f"report: {path}")
    return 0


def _train_config(args):
    """TrainConfig from the saved config (resume), ``--config`` and the explicit options."""
    from normlab.experiments.config import TrainConfig, config_from_dict, config_to_dict
    from normlab.experiments.train import load_sidecar

    values: dict = {}
    if args.resume and args.checkpoint is not None and args.config is None:
        saved = load_sidecar(args.checkpoint)
        values = config_to_dict(saved) if saved is not None else {}
    if args.config is not None:
        path = Path(args.config)
        if not path.is_file():
            raise UsageError(f"config file {path} does not exist (given by --config)")
        try:
            values = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise UsageError(f"config file {path} is not valid JSON: {err}") from None
        if not isinstance(values, dict):
            raise UsageError(f"config file {path} must hold a JSON object of TrainConfig fields")
    values.update(given(args, [f.name for f in dataclasses.fields(TrainConfig)]))
    return config_from_dict(TrainConfig, values)


def train(args) -> int:
    """train one model from a config, with checkpoints and resume

    Train one model from a TrainConfig: --config FILE.json and/or the options below (options
    win). With --checkpoint PATH the Solver writes PATH at every epoch end and the config
    beside it (PATH with .json); --resume continues that run up to --num-epochs, exactly as if
    it had never stopped; an existing PATH is refused without --resume or --overwrite. Ctrl-C
    (or SIGTERM) stops after the current step, writes PATH and prints the command that
    resumes; a second Ctrl-C abandons the step (the last epoch's checkpoint stays).
    """
    from normlab.experiments.train import TrainingInterrupted, checkpoint_paths
    from normlab.experiments.train import train as run_training

    check_resume_options(args)
    if args.resume and args.checkpoint is None:
        raise UsageError("--resume needs --checkpoint PATH")
    config = _train_config(args)
    check_data_dir(config.data_dir, "given by --data-dir" if args.data_dir else "in the config")
    resume = f"resume with: {resume_command(args.argv)}"
    try:
        with stop_requested() as stop:
            out = run_training(
                config,
                checkpoint=args.checkpoint,
                resume=args.resume,
                verbose=not args.quiet,
                overwrite=args.overwrite,
                stop=stop,
            )
    except TrainingInterrupted as err:
        kept = (
            f"checkpoint saved to {err.checkpoint}; {resume}"
            if err.checkpoint
            else "nothing saved (train with --checkpoint PATH to be able to resume)"
        )
        print(f"\nnormlab: interrupted: {err}; {kept}", file=sys.stderr)
        return INTERRUPTED
    except KeyboardInterrupt:  # a second signal: the step in flight is abandoned
        path = None if args.checkpoint is None else checkpoint_paths(args.checkpoint)[0]
        kept = (
            f"the last epoch's checkpoint {path} is kept; {resume}"
            if path is not None and path.is_file()
            else "nothing saved"
        )
        print(f"\nnormlab: interrupted during a step; {kept}", file=sys.stderr)
        return INTERRUPTED
    print(
        f"epochs {out['epochs']}; best val acc {out['best_val_acc']:.4f}; with the best "
        f"parameters: train acc {out['train_acc']:.4f}, val acc {out['val_acc']:.4f}, "
        f"test acc {out['test_acc']:.4f}"
    )
    if out["data_dir_used"]:
        print(f"data read from: {out['data_dir_used']}")
    if out["checkpoint"]:
        print(f"checkpoint: {out['checkpoint']}")
    return 0


def evaluate(args) -> int:
    """accuracy of a checkpointed model on train/val/test

    Load a checkpoint written by `normlab train` and print its test-mode accuracy on the
    train, validation and test splits of its dataset (the config saved beside the checkpoint
    gives the dataset and split; --dataset overrides it).
    """
    from normlab.experiments.train import evaluate as run_evaluation

    check_data_dir(args.data_dir)
    out = run_evaluation(args.checkpoint, best=args.best, **given(args, DATA_FIELDS))
    which = "best" if args.best else "last"
    print(
        f"{out['dataset']}, {which} parameters (epoch {out['epoch']}): train acc "
        f"{out['train_acc']:.4f}, val acc {out['val_acc']:.4f}, test acc {out['test_acc']:.4f}"
    )
    return 0


def gradcheck(args) -> int:
    """gradient-check every layer against centred differences

    Check every layer's backward against centred differences in float64 with a random
    upstream gradient; print a table; exit 1 on any failure.
    """
    from normlab.gradient_check import check_all_layers, format_table

    rows = check_all_layers(seed=args.seed)
    print(format_table(rows))
    failed = [r for r in rows if not r.passed]
    print(f"\n{len(rows) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0
