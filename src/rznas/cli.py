"""The rznas command line: the only place that sees argv; maps errors to exit codes."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Iterator, Sequence

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


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``docker stop``, a batch scheduler's preemption), raised where Ctrl-C's
    KeyboardInterrupt would be, so that a command stops as cleanly: a search's store records an
    interrupted run with its resume command instead of being cut off mid-trial."""


def _terminate(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one stop: a second SIGTERM must not cut the cleanup short
    raise Terminated()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` while a command runs; only in the main thread and
    only where nobody else handles SIGTERM (a program that embeds ``main`` keeps its own handler)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code (130 after Ctrl-C, 143 after SIGTERM)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        with sigterm_as_interrupt():
            return int(args.func(args) or 0)
    except RznasError as exc:
        print(f"rznas: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Terminated:
        print("rznas: terminated (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("rznas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
