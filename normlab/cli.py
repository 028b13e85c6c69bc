"""The ``normlab`` command: thin argument parsing over the library, experiments and reports."""

from __future__ import annotations

import argparse
import sys

from normlab import __version__


def _cmd_gradcheck(args) -> int:
    from normlab.gradient_check import check_all_layers, format_table

    rows = check_all_layers(seed=args.seed)
    print(format_table(rows))
    failed = [r for r in rows if not r.passed]
    print(f"\n{len(rows) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``normlab`` command."""
    p = argparse.ArgumentParser(
        prog="normlab",
        description="Batch normalization from the derivation to the experiment.",
    )
    p.add_argument("--version", action="version", version=f"normlab {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
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
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
