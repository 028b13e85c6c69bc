"""The argument parser of the ``normlab`` command: one subcommand per function of
:mod:`normlab.cli.commands` (its docstring is the help), and the options of each."""

from __future__ import annotations

import argparse
import inspect
import sys

from normlab import __version__

from . import commands
from .options import DATA_FIELDS, add_config_options, add_resume_options, add_run_options


class _Parser(argparse.ArgumentParser):
    """argparse, but errors are one line: ``normlab: error: ...`` (no usage dump)."""

    def error(self, message: str):
        print(f"normlab: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


def _demo(p) -> None:
    from normlab.experiments.demo import DemoConfig  # its defaults in --help (diagnostics 20)

    add_run_options(p, DemoConfig, "normlab-demo", "5 epochs instead of 20", scheduler=False)


def _experiment(p) -> None:
    from normlab.experiments.config import ExperimentConfig

    p.add_argument("name", nargs="?", metavar="NAME", help="experiment name (see --list)")
    p.add_argument("--list", action="store_true", help="list the experiments and exit")
    published = "the experiment's published one; digits with --quick"
    add_config_options(p, ExperimentConfig, DATA_FIELDS, {"dataset": published})
    quick = "the reduced variant that finishes in seconds (on digits unless --dataset is given)"
    add_run_options(p, ExperimentConfig, None, quick, scheduler=True)
    p.add_argument(
        "--set",
        action="append",
        metavar="NAME=VALUE",
        help="override a config field, e.g. --set num_steps=20000 or "
        "--set batch_sizes=2,8,32 (repeatable)",
    )


def _claims(p) -> None:
    from normlab.claims import ClaimsConfig

    p.add_argument("--list", action="store_true", help="list the claims and exit")
    p.add_argument(
        "--only",
        metavar="NAME[,NAME]",
        help="run only these claims (see --list), e.g. --only bn-trains-faster,rmsnorm-matches",
    )
    quick = "every experiment's quick variant on the digits (minutes; too short to conclude)"
    add_run_options(p, ClaimsConfig, "normlab-claims", quick, scheduler=True)


def _train(p) -> None:
    from normlab.experiments.config import TrainConfig

    p.add_argument("--config", metavar="FILE.json", help="a JSON object of TrainConfig fields")
    p.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="checkpoint file (.npz), written at every epoch end and on Ctrl-C",
    )
    add_resume_options(
        p, "--checkpoint", "the run saved in --checkpoint (its config unless --config)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
    fields = p.add_argument_group("model and training (TrainConfig fields; override --config)")
    add_config_options(fields, TrainConfig)


def _evaluate(p) -> None:
    from normlab.experiments.config import TrainConfig

    p.add_argument("--checkpoint", required=True, metavar="PATH", help="checkpoint file (.npz)")
    add_config_options(p, TrainConfig, DATA_FIELDS, {"dataset": "the training run's"})
    p.add_argument(
        "--best", action="store_true", help="evaluate the best-validation parameters, not the last"
    )


def _report(p) -> None:
    p.add_argument("dir", metavar="DIR", help="a directory written by demo or experiment")


def _gradcheck(p) -> None:
    p.add_argument("--seed", type=int, default=0, help="seed of inputs and gradients (default 0)")


# each subcommand, in the order `normlab --help` lists them, and what adds its options
_SUBCOMMANDS = (
    (commands.demo, _demo),
    (commands.experiment, _experiment),
    (commands.claims, _claims),
    (commands.train, _train),
    (commands.evaluate, _evaluate),
    (commands.report, _report),
    (commands.gradcheck, _gradcheck),
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``normlab`` command."""
    p = _Parser(
        prog="normlab",
        description="Batch normalization from the derivation to the experiment.",
        epilog="Start with `normlab demo`; `normlab experiment --list` lists the experiments.",
    )
    p.add_argument("--version", action="version", version=f"normlab {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for func, add_options in _SUBCOMMANDS:
        help_, _, description = inspect.cleandoc(func.__doc__ or "").partition("\n\n")
        q = sub.add_parser(func.__name__, help=help_, description=" ".join(description.split()))
        add_options(q)
        q.set_defaults(func=func)
    return p
