"""The rznas command line: the only place that sees argv; maps errors to exit codes."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from . import __version__
from .commands import COMMANDS, load_all
from .errors import RznasError


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    load_all()
    parser = argparse.ArgumentParser(
        prog="rznas", description="LLM-guided neural architecture search with a reflective zero-cost strategy."
    )
    parser.add_argument("--version", action="version", version=f"rznas {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS.names():
        COMMANDS.get(name)(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except RznasError as exc:
        print(f"rznas: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("rznas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
