"""`rznas list spaces|proxies`: what is registered."""
from __future__ import annotations

import argparse

from . import COMMANDS


@COMMANDS.register("list")
def add_parser(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    parser = subparsers.add_parser("list", help="list registered search spaces or proxies")
    parser.add_argument("what", choices=["spaces", "proxies"])
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    if args.what == "spaces":
        from ..spaces import SPACES, get_space

        for name in SPACES.names():
            print(f"{name:12s} {(get_space(name).__doc__ or '').strip().splitlines()[0]}")
    else:
        from ..proxies import PROXIES

        for name in PROXIES.names():
            proxy = PROXIES.get(name)
            print(f"{name:12s} {proxy.convention}")
    return 0
