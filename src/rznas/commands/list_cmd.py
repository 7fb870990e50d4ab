"""`rznas list spaces|proxies`: what is registered."""
from __future__ import annotations

import argparse

from typing import TYPE_CHECKING

from . import COMMANDS

if TYPE_CHECKING:  # pragma: no cover
    from ..registry import Registry


@COMMANDS.register("list")
def add_parser(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    parser = subparsers.add_parser("list", help="list registered search spaces or proxies")
    parser.add_argument("what", choices=["spaces", "proxies"])
    parser.set_defaults(func=run)
    return parser


def _origin(registry: "Registry[object]", name: str) -> str:
    """" [plug-in: DIST VERSION]" for entries that installed packages added, else ""."""
    origin = registry.plugins.get(name)
    return f"  [plug-in: {origin.distribution} {origin.version}]" if origin is not None else ""


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else "(undocumented)"


def run(args: argparse.Namespace) -> int:
    if args.what == "spaces":
        from ..spaces import SPACES

        for name in SPACES.names():
            print(f"{name:12s} {_first_line(SPACES.get(name).__doc__)}{_origin(SPACES, name)}")
    else:
        from ..proxies import PROXIES

        from ..errors import UnknownName
        from ..fitness import ENSEMBLES, ensemble_spec

        for name in PROXIES.names():
            proxy = PROXIES.get(name)
            print(f"{name:12s} {proxy.convention}{_origin(PROXIES, name)}")
        print("\nnamed ensembles (or join any proxies with '+', e.g. zico+naswot+synflow; see docs/proxies.md):")
        for name in ENSEMBLES.names():
            spec = ENSEMBLES.get(name)
            try:
                ensemble_spec(name)
                state = ""
            except UnknownName as exc:
                state = f" [unavailable: {exc}]"
            print(f"{name:12s} {'+'.join(spec.components)} ({spec.aggregation}){state}")
    return 0
