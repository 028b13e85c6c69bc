"""The option groups of the ``normlab`` command, each declared once, and their checks.

Flags of configuration fields come from the config dataclasses (:func:`add_config_options`):
one flag per field, with the field's ``help`` (given by :func:`normlab.experiments.config.opt`)
and one spelling rule, ``--field-name VALUE``; a boolean field is a switch named after the
non-default side, so ``download`` (default true) is turned off by ``--no-download`` everywhere.
A value stays the command-line string (None when the flag is absent): the config module
converts and validates it, so a flag, a ``--config`` file and ``--set NAME=VALUE`` all pass
one check.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import typing
from collections.abc import Iterable
from pathlib import Path

from normlab.data import DATASETS

from .errors import UsageError

DATA_FIELDS = ("dataset", "data_dir", "download")  # where a dataset comes from: every command

_ADDRESS = re.compile(r"^([a-z][a-z0-9+.-]*://)?[^\s:/]+:\d{1,5}/?$", re.IGNORECASE)


def dataset_name(value: str) -> str:
    """argparse type: a known dataset name, normalised (case, ``_`` for ``-``)."""
    key = value.lower().replace("_", "-")
    if key not in DATASETS:
        raise argparse.ArgumentTypeError(
            f"unknown dataset {value!r}; expected one of {', '.join(DATASETS)}"
        )
    return key


def add_config_options(
    parser, cls: type, names: Iterable[str] | None = None, defaults: dict | None = None
) -> None:
    """Add one flag per field of the config dataclass ``cls`` (or per field in ``names``).

    Parameters
    ----------
    parser : argparse.ArgumentParser or argument group
        Where the flags go.
    cls : type
        A config dataclass whose fields carry ``help`` metadata.
    names : iterable of str, optional
        The fields to add, in this order; default all, in declaration order.
    defaults : dict of str to str, optional
        The default to show for a field where it is not the field's own (e.g. ``evaluate``'s
        dataset is the training run's).

    Notes
    -----
    ``--field-name VALUE`` stores the string under ``field_name`` (``--dataset`` checks the name
    first); a boolean field stores the non-default value under ``--field-name`` (default false)
    or ``--no-field-name`` (default true). An absent flag stores None.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for name in names or fields:
        f, flag = fields[name], name.replace("_", "-")
        help_ = f.metadata.get("help", "")
        if hints[name] is bool:
            on = not f.default  # the flag names the side that is not the default
            parser.add_argument(
                f"--{flag}" if on else f"--no-{flag}",
                dest=name,
                action="store_const",
                const=on,
                default=None,
                help=help_ if on else f"do not {help_}",
            )
            continue
        shown = (defaults or {}).get(name, _shown(f.default))
        parser.add_argument(
            f"--{flag}",
            dest=name,
            type=dataset_name if name == "dataset" else None,
            default=None,
            metavar=_METAVARS.get(name, name.upper()),
            help=f"{help_} (default {shown})",
        )


_METAVARS = {"diagnostics": "N"}  # where the field's name makes a poor placeholder


def _shown(default) -> str:
    """A default as written on the command line (tuples as ``1,2,3``)."""
    return ",".join(map(str, default)) if isinstance(default, tuple) else str(default)


def given(args: argparse.Namespace, names: Iterable[str]) -> dict:
    """The options among ``names`` that the command line set (not None)."""
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


RUN_FIELDS = ("seed", "seeds", "diagnostics")  # ExperimentConfig fields given as flags


def from_flags(cls: type, values: dict):
    """``config_from_dict(cls, values)`` for settings given as flags: a value the config
    refuses is reported under its flag (``--seeds: expected seeds >= 1, got 0``), not under
    the config class's name, which a command-line user never sees."""
    from normlab.experiments.config import config_from_dict

    try:
        return config_from_dict(cls, values)
    except ValueError as err:
        msg, prefix = str(err), f"{cls.__name__}: "
        named = [n for n in values if re.search(rf"\b{re.escape(n)}\b", msg)]
        if not (msg.startswith(prefix) and named):
            raise
        raise ValueError(f"--{named[0].replace('_', '-')}: {msg[len(prefix) :]}") from None


def add_run_options(
    parser, config_cls: type, out_default: str | None, quick_help: str, scheduler: bool
) -> None:
    """How an experiment runs and where it writes: ``--out``, ``--seed``, ``--seeds``,
    ``--diagnostics``, ``--jobs``, ``--scheduler`` (if ``scheduler``) and ``--quick``;
    ``--seed``, ``--seeds`` and ``--diagnostics`` are ``config_cls``'s fields."""
    parser.add_argument(
        "--out",
        default=out_default,
        metavar="DIR",
        help="output directory for results.json, config.json, figures and report.html "
        f"(default {out_default or 'normlab-NAME'})",
    )
    add_config_options(parser, config_cls, RUN_FIELDS)
    add_resume_options(parser, "--out DIR", "the runs saved in --out (same settings)")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="run the independent runs in N local processes (default 1)",
    )
    if scheduler:
        parser.add_argument(
            "--scheduler",
            default=None,
            metavar="ADDRESS",
            help="submit the runs to the Dask scheduler at ADDRESS "
            "(e.g. tcp://host:8786) instead of local processes",
        )
    parser.add_argument("--quick", action="store_true", help=quick_help)


def add_resume_options(parser, where: str, what: str) -> None:
    """``--resume`` (continue ``what``) and ``--overwrite`` (replace what ``where`` holds)."""
    parser.add_argument("--resume", action="store_true", help=f"continue {what}")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help=f"replace the earlier run in {where} (without it, or --resume, it is refused)",
    )


def check_resume_options(args: argparse.Namespace) -> None:
    """``--resume`` and ``--overwrite`` exclude each other."""
    if args.resume and args.overwrite:
        raise UsageError("expected --resume or --overwrite, not both")


def check_run_options(args: argparse.Namespace) -> None:
    """Validate ``--jobs``, ``--out``, ``--scheduler``, ``--resume``, ``--overwrite`` before
    anything runs."""
    check_resume_options(args)
    if args.jobs < 1:
        raise UsageError(f"expected --jobs >= 1, got {args.jobs}")
    out = args.out
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise UsageError(f"--out {out} is an existing file; expected a directory")
    scheduler = getattr(args, "scheduler", None)
    if scheduler is not None and not _ADDRESS.match(scheduler):
        raise UsageError(
            f"expected --scheduler as scheme://host:port or host:port "
            f"(e.g. tcp://localhost:8786), got {scheduler!r}"
        )


def check_data_dir(data_dir, source: str = "given by --data-dir") -> None:
    """A ``data_dir`` that is set must exist: say so before looking anywhere else."""
    if data_dir is not None and not Path(data_dir).expanduser().is_dir():
        raise UsageError(f"data directory {data_dir} does not exist ({source})")
