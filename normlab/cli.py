"""The ``normlab`` command: thin argument parsing over the library, experiments and reports.

Subcommands: ``demo``, ``experiment``, ``train``, ``evaluate``, ``report``, ``gradcheck``. Bad
arguments and missing data end with one line on stderr, ``normlab: error: ...``, and exit
status 2 (set ``NORMLAB_DEBUG=1`` to see the traceback instead).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

from normlab import __version__
from normlab._malloc import pin_malloc_thresholds

DATASET_NAMES = ("digits", "mnist", "fashion-mnist", "cifar10")


class UsageError(Exception):
    """A bad command line, reported as one line."""


class _Parser(argparse.ArgumentParser):
    """argparse, but errors are one line: ``normlab: error: ...`` (no usage dump)."""

    def error(self, message: str):
        print(f"normlab: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


def _one_line(err: BaseException) -> str:
    """An exception's message on one line (a not-found error keeps what and how to fix)."""
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    if not lines:
        return type(err).__name__
    from normlab.data import DatasetNotFoundError

    if isinstance(err, DatasetNotFoundError) and len(lines) > 1:
        looked = [ln.split(":", 1)[0] for ln in lines[1:] if ln.startswith(("/", "~", "."))]
        fix = next((ln for ln in lines if ln.startswith("To get it")), "")
        where = f" (looked in {', '.join(looked)})" if looked else ""
        head = lines[0].split(". Looked in")[0].rstrip(". ")
        return f"{head}{where}. {fix}".strip()
    return "; ".join(lines)


# --- progress -----------------------------------------------------------------------------------


def _progress(done: int, total: int, result) -> None:
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
        f"[{done:>{width}}/{total}] {result.name:<24} {result.seconds:6.1f}s{score}{flag}",
        file=sys.stderr,
        flush=True,
    )


# --- experiments --------------------------------------------------------------------------------


_ADDRESS = re.compile(r"^([a-z][a-z0-9+.-]*://)?[^\s:/]+:\d{1,5}/?$", re.IGNORECASE)


def _check_common(args) -> None:
    """Validate what every experiment-like command shares."""
    if args.jobs < 1:
        raise UsageError(f"expected --jobs >= 1, got {args.jobs}")
    out = getattr(args, "out", None)
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise UsageError(f"--out {out} is an existing file; expected a directory")
    scheduler = getattr(args, "scheduler", None)
    if scheduler is not None and not _ADDRESS.match(scheduler):
        raise UsageError(
            f"expected --scheduler as scheme://host:port or host:port "
            f"(e.g. tcp://localhost:8786), got {scheduler!r}"
        )
    data_dir = getattr(args, "data_dir", None)
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        raise UsageError(f"data directory {data_dir} does not exist (given by --data-dir)")


def _run_and_report(exp, config, args, out_dir: Path) -> int:
    """Run ``exp`` with ``config``, print the table and headline, write every output."""
    from normlab.experiments import run_experiment
    from normlab.report import headline, save_results, text_table, write_outputs

    where = (
        f"scheduler {args.scheduler}"
        if getattr(args, "scheduler", None)
        else (f"{args.jobs} process{'es' if args.jobs > 1 else ''}")
    )
    from normlab.experiments.training import preload_data

    # fail on a missing dataset before announcing anything (cached: the runs reuse it)
    preload_data(config, getattr(args, "scheduler", None) or None)
    n = len(exp.runs(config))
    print(
        f"normlab {exp.name}: {n} runs on {config.dataset}"
        f"{' (quick)' if config.quick else ''}, {where}, seed {config.seed}",
        file=sys.stderr,
        flush=True,
    )
    t0 = time.perf_counter()
    results = run_experiment(
        exp,
        config,
        jobs=args.jobs,
        scheduler=getattr(args, "scheduler", None),
        progress=_progress,
        on_runs=lambda raw: save_results(raw, out_dir),  # the training survives a report bug
    )
    report = write_outputs(results, out_dir)
    print()
    print(text_table(results["table"]))
    print()
    print(headline(results))
    print(f"\nfinished in {time.perf_counter() - t0:.1f}s; results in {out_dir}/")
    print(f"report: {report}")
    return 0


def _cmd_demo(args) -> int:
    from normlab.experiments import get_experiment

    _check_common(args)
    exp = get_experiment("demo")
    config = exp.config_cls(seed=args.seed)
    if args.quick:
        config = exp.quick(config)
    return _run_and_report(exp, config, args, Path(args.out))


def _experiment_config(exp, args):
    """The config of ``exp`` from the defaults, ``--quick``, ``--dataset`` and ``--set``."""
    import dataclasses

    from normlab.experiments.config import parse_assignment

    values = {"seed": args.seed, "download": not args.no_download}
    if args.dataset is not None:
        values["dataset"] = args.dataset
    elif args.quick:
        values["dataset"] = "digits"  # seconds, offline, whatever the published dataset
    if args.data_dir is not None:
        values["data_dir"] = str(args.data_dir)
    config = exp.config_cls(**values)
    if args.quick:
        config = exp.quick(config)
    sets = dict(parse_assignment(exp.config_cls, s) for s in args.set or [])
    return dataclasses.replace(config, **sets) if sets else config


def _cmd_experiment(args) -> int:
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
    _check_common(args)
    config = _experiment_config(exp, args)
    out = Path(args.out) if args.out is not None else Path(f"normlab-{exp.name}")
    return _run_and_report(exp, config, args, out)


def _cmd_report(args) -> int:
    from normlab.report import headline, load_results, write_report

    results = load_results(args.dir)
    try:
        path = write_report(results, args.dir)
        line = headline(results)
    except (KeyError, IndexError, TypeError) as err:
        raise ValueError(
            f"{Path(args.dir) / 'results.json'} is incomplete or damaged for experiment "
            f"{results.get('experiment')!r} ({type(err).__name__}: {err}); rerun the experiment"
        ) from None
    print(line)
    print(f"report: {path}")
    return 0


# --- train / evaluate ---------------------------------------------------------------------------


def _train_config(args):
    """TrainConfig from the saved config (resume), ``--config`` and the explicit options."""
    import json

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
    for f in _train_fields():
        v = getattr(args, f, None)
        if v is not None:
            values[f] = v
    return config_from_dict(TrainConfig, values)


def _train_fields() -> list[str]:
    import dataclasses

    from normlab.experiments.config import TrainConfig

    return [f.name for f in dataclasses.fields(TrainConfig)]


def _cmd_train(args) -> int:
    from normlab.experiments.train import train

    if args.resume and args.checkpoint is None:
        raise UsageError("--resume needs --checkpoint PATH")
    config = _train_config(args)
    if config.data_dir is not None and not Path(config.data_dir).expanduser().is_dir():
        raise UsageError(f"data directory {config.data_dir} does not exist")
    out = train(config, checkpoint=args.checkpoint, resume=args.resume, verbose=not args.quiet)
    print(
        f"epochs {out['epochs']}; best val acc {out['best_val_acc']:.4f}; with the best "
        f"parameters: train acc {out['train_acc']:.4f}, val acc {out['val_acc']:.4f}, "
        f"test acc {out['test_acc']:.4f}"
    )
    if out["checkpoint"]:
        print(f"checkpoint: {out['checkpoint']}")
    return 0


def _cmd_evaluate(args) -> int:
    from normlab.experiments.train import evaluate

    overrides = {}
    if args.dataset is not None:
        overrides["dataset"] = args.dataset
    if args.data_dir is not None:
        if not Path(args.data_dir).expanduser().is_dir():
            raise UsageError(f"data directory {args.data_dir} does not exist (given by --data-dir)")
        overrides["data_dir"] = str(args.data_dir)
    if args.no_download:
        overrides["download"] = False
    out = evaluate(args.checkpoint, best=args.best, **overrides)
    which = "best" if args.best else "last"
    print(
        f"{out['dataset']}, {which} parameters (epoch {out['epoch']}): train acc "
        f"{out['train_acc']:.4f}, val acc {out['val_acc']:.4f}, test acc {out['test_acc']:.4f}"
    )
    return 0


def _cmd_gradcheck(args) -> int:
    from normlab.gradient_check import check_all_layers, format_table

    rows = check_all_layers(seed=args.seed)
    print(format_table(rows))
    failed = [r for r in rows if not r.passed]
    print(f"\n{len(rows) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


# --- the parser ---------------------------------------------------------------------------------


def _dataset(value: str) -> str:
    key = value.lower().replace("_", "-")
    if key not in DATASET_NAMES:
        raise argparse.ArgumentTypeError(
            f"unknown dataset {value!r}; expected one of {', '.join(DATASET_NAMES)}"
        )
    return key


def _add_run_options(p: argparse.ArgumentParser, out_default: str | None) -> None:
    default = out_default or "normlab-NAME"
    p.add_argument(
        "--out",
        default=out_default,
        metavar="DIR",
        help=f"output directory for results.json, config.json, figures and "
        f"report.html (default {default})",
    )
    p.add_argument("--seed", type=int, default=0, help="root seed (default 0)")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="run the independent runs in N local processes (default 1)",
    )


def _add_train_options(p: argparse.ArgumentParser) -> None:
    """One option per TrainConfig field, defaulting to None (``--config`` or the default)."""
    import dataclasses
    import typing

    from normlab.experiments.config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    g = p.add_argument_group("model and training (TrainConfig fields; override --config)")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        help_ = f"{f.metadata.get('help', '')} (default {shown})"
        if f.name == "dataset":
            g.add_argument(flag, type=_dataset, default=None, help=help_)
        elif hints[f.name] is bool:
            g.add_argument(flag, default=None, metavar="true|false", help=help_)
        else:
            g.add_argument(flag, default=None, metavar=f.name.upper(), help=help_)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``normlab`` command."""
    p = _Parser(
        prog="normlab",
        description="Batch normalization from the derivation to the experiment.",
        epilog="Start with `normlab demo`; `normlab experiment --list` lists the experiments.",
    )
    p.add_argument("--version", action="version", version=f"normlab {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    d = sub.add_parser(
        "demo",
        help="train a deep net on the digits without and with batch/layer/group norm (seconds)",
        description="Train the same deep fully-connected network (6 hidden layers of 100, "
        "weights N(0, 0.02^2), Adam) on the embedded 8x8 digits without normalization and with "
        "batch, layer and group norm; print a results table; write results.json, config.json, "
        "figures and a self-contained report.html into --out.",
    )
    _add_run_options(d, "normlab-demo")
    d.add_argument("--quick", action="store_true", help="5 epochs instead of 20")
    d.set_defaults(func=_cmd_demo)

    e = sub.add_parser(
        "experiment",
        help="run a named experiment (see --list)",
        description="Run one experiment: every run is an independent task, executed here, in "
        "--jobs local processes or on a Dask cluster (--scheduler); same seed, same numbers. "
        "Writes results.json, config.json, one PNG per figure and report.html into --out.",
    )
    e.add_argument("name", nargs="?", metavar="NAME", help="experiment name (see --list)")
    e.add_argument("--list", action="store_true", help="list the experiments and exit")
    e.add_argument(
        "--dataset",
        type=_dataset,
        default=None,
        help=f"one of {', '.join(DATASET_NAMES)} (default: the experiment's "
        "published one; digits with --quick)",
    )
    e.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="directory searched first for the dataset files",
    )
    e.add_argument(
        "--no-download",
        action="store_true",
        help="never download missing MNIST / Fashion-MNIST files",
    )
    _add_run_options(e, None)
    e.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="submit the runs to the Dask scheduler at ADDRESS "
        "(e.g. tcp://host:8786) instead of local processes",
    )
    e.add_argument(
        "--quick",
        action="store_true",
        help="the reduced variant that finishes in seconds (on digits unless --dataset is given)",
    )
    e.add_argument(
        "--set",
        action="append",
        metavar="NAME=VALUE",
        help="override a config field, e.g. --set num_steps=20000 or "
        "--set batch_sizes=2,8,32 (repeatable)",
    )
    e.set_defaults(func=_cmd_experiment)

    t = sub.add_parser(
        "train",
        help="train one model from a config, with checkpoints and resume",
        description="Train one model from a TrainConfig: --config FILE.json and/or the options "
        "below (options win). With --checkpoint PATH the Solver writes PATH at every epoch end "
        "and the config beside it (PATH with .json); --resume continues that run up to "
        "--num-epochs, exactly as if it had never stopped.",
    )
    t.add_argument(
        "--config", default=None, metavar="FILE.json", help="a JSON object of TrainConfig fields"
    )
    t.add_argument(
        "--checkpoint",
        default=None,
        metavar="PATH",
        help="checkpoint file (.npz), written at every epoch end",
    )
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue the run saved in --checkpoint (its config unless --config)",
    )
    t.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
    _add_train_options(t)
    t.set_defaults(func=_cmd_train)

    v = sub.add_parser(
        "evaluate",
        help="accuracy of a checkpointed model on train/val/test",
        description="Load a checkpoint written by `normlab train` and print its test-mode "
        "accuracy on the train, validation and test splits of its dataset (the config saved "
        "beside the checkpoint gives the dataset and split; --dataset overrides it).",
    )
    v.add_argument("--checkpoint", required=True, metavar="PATH", help="checkpoint file (.npz)")
    v.add_argument(
        "--dataset",
        type=_dataset,
        default=None,
        help=f"one of {', '.join(DATASET_NAMES)} (default: the training run's)",
    )
    v.add_argument(
        "--data-dir",
        default=None,
        metavar="DIR",
        help="directory searched first for the dataset files",
    )
    v.add_argument(
        "--no-download", action="store_true", help="never download missing dataset files"
    )
    v.add_argument(
        "--best",
        action="store_true",
        help="evaluate the best-validation parameters instead of the last",
    )
    v.set_defaults(func=_cmd_evaluate)

    r = sub.add_parser(
        "report",
        help="rebuild figures and report.html from a results directory",
        description="Read DIR/results.json (and DIR/config.json) and rewrite the figures and "
        "DIR/report.html; trains nothing.",
    )
    r.add_argument("dir", metavar="DIR", help="a directory written by demo or experiment")
    r.set_defaults(func=_cmd_report)

    g = sub.add_parser(
        "gradcheck",
        help="gradient-check every layer against centred differences",
        description="Check every layer's backward against centred differences in float64 with a "
        "random upstream gradient; print a table; exit 1 on any failure.",
    )
    g.add_argument("--seed", type=int, default=0, help="seed of inputs and gradients (default 0)")
    g.set_defaults(func=_cmd_gradcheck)
    return p


def main(argv=None) -> int:
    """Entry point of the ``normlab`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    pin_malloc_thresholds()  # this process is ours: reuse large buffers (see normlab/_malloc.py)
    try:
        return args.func(args)
    except (UsageError, ValueError, FileNotFoundError, ConnectionError, OSError) as err:
        if os.environ.get("NORMLAB_DEBUG"):
            raise
        print(f"normlab: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except FloatingPointError as err:  # NonFiniteLossError: the loss became NaN or infinite
        if os.environ.get("NORMLAB_DEBUG"):
            raise
        print(
            f"normlab: error: training diverged: {_one_line(err)}; try a smaller learning rate",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
