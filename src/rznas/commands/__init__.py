"""CLI subcommands: one module per command, each registered in COMMANDS.

A command module defines ``add_parser(subparsers) -> argparse.ArgumentParser`` that
sets ``func`` (called with the parsed namespace, returns an exit code) and registers
itself with ``@COMMANDS.register("name")``. Add a module to MODULES to ship it.
"""
from __future__ import annotations

import argparse
import importlib
from typing import Callable

from ..registry import Registry

AddParser = Callable[["argparse._SubParsersAction"], argparse.ArgumentParser]
COMMANDS: Registry[AddParser] = Registry("command")

MODULES = ["list_cmd", "score", "bench", "train", "export", "search", "cache", "runs", "report_cmd", "compare", "dashboard"]


def load_all() -> None:
    """Import every command module so that it registers itself."""
    for module in MODULES:
        importlib.import_module(f"{__name__}.{module}")
