"""`rznas dashboard PATH`: a local web page that follows a run (or a folder of runs) live."""
from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path

from . import COMMANDS


@COMMANDS.register("dashboard")
def add_parser(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "dashboard",
        help="serve a live web page of a run or a folder of runs (needs rznas[dashboard])",
        description="Serve a web page that shows a run while it goes: best and median score per iteration, "
        "the population, every trial and every LLM call (prompt, reply, reflection, tokens, cost), and the final "
        "selection when there is one. Reads the run stores read-only; never writes them. See docs/dashboard.md.",
    )
    parser.add_argument("path", metavar="PATH", help="a run directory or a folder of runs")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0: a free port, printed)")
    parser.add_argument("--refresh-s", type=float, default=2.0, metavar="S",
                        help="seconds between refreshes of a live run (default 2)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from ..dashboard import require_extra
    from ..errors import ConfigError
    from ..run_reader import find_runs

    require_extra()
    import uvicorn

    from ..dashboard.app import create_app

    if args.refresh_s <= 0:
        raise ConfigError("--refresh-s must be positive")
    root = Path(args.path)
    runs = find_runs(root)  # fail now, not in the browser, on a path without runs
    try:
        sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
        sock.listen(128)  # connections made from now on wait in the backlog until the server accepts them
    except OSError as exc:
        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"rznas dashboard: {len(runs)} run(s) below {root} at http://{shown}:{port}/ (Ctrl-C to stop)", flush=True)
    config = uvicorn.Config(create_app(root, refresh_s=args.refresh_s), log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    print("rznas dashboard: stopped", file=sys.stderr)
    return 0
