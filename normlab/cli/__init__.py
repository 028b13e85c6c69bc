"""The ``normlab`` command: thin argument parsing over the library, experiments and reports.

Subcommands: ``demo``, ``experiment``, ``claims``, ``train``, ``evaluate``, ``report``,
``gradcheck``. A bad argument, missing data or a diverged run (the user's errors, listed in
:mod:`normlab.cli.errors`) ends with one line on stderr, ``normlab: error: ...``, and exit
status 2 (set ``NORMLAB_DEBUG=1`` to see the traceback instead); any other exception is a bug
and keeps its traceback. Ctrl-C (or SIGTERM) ends a command with one line, what was kept and how
to resume where there is something to resume, and exit status 130.

Modules
-------
parser
    the subcommands and their option groups (:func:`build_parser`).
options
    the option groups, declared once; config flags come from the config dataclasses.
outputs
    an earlier run's checkpoint or folder: refuse, resume or replace; signals.
commands
    what each subcommand does with its arguments.
errors
    which exceptions are the user's, and their one-line form.
"""

from __future__ import annotations

import os
import sys

from normlab._malloc import pin_malloc_thresholds

from .errors import USER_ERRORS, UsageError, one_line
from .outputs import INTERRUPTED
from .parser import build_parser

__all__ = ["UsageError", "build_parser", "main"]


def main(argv=None) -> int:
    """Entry point of the ``normlab`` console script.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after ``normlab``; default ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit status: 0, 1 from ``gradcheck`` on a failed check, 2 for a user error, 130
        when interrupted (SIGINT, or SIGTERM during ``train``, ``demo``, ``experiment`` and
        ``claims``, their reports included). argparse
        exits with 0 after ``--help`` and 2 on a bad flag.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for the resume command
    pin_malloc_thresholds()  # this process is ours: reuse large buffers (see normlab/_malloc.py)
    try:
        return args.func(args)
    except USER_ERRORS as err:
        if os.environ.get("NORMLAB_DEBUG"):
            raise
        print(f"normlab: error: {one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the commands that keep something say so themselves
        if os.environ.get("NORMLAB_DEBUG"):
            raise
        print("normlab: interrupted", file=sys.stderr)
        return INTERRUPTED
