"""`rznas runs ROOT`: every run below ROOT with its status, settings, progress, best score and cost."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from . import COMMANDS


@COMMANDS.register("runs")
def add_parser(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "runs",
        help="list runs: status (finished, running, interrupted, stopped), settings, progress, best, cost",
        description="List the run directories below ROOT (or ROOT itself). Reads the run stores read-only, "
        "so it is safe on a live run; a run whose process was killed shows as interrupted.",
    )
    parser.add_argument("root", metavar="ROOT", help="a run directory or a folder of runs")
    parser.add_argument("--json", action="store_true", help="one JSON object per run instead of the table")
    parser.add_argument("--no-accuracy", action="store_true", help="skip the benchmark-table lookup of each best trial")
    parser.set_defaults(func=run)
    return parser


def accuracy_text(accuracy: dict[str, Any]) -> str:
    """The best trial's CIFAR-10 (else first dataset's) test accuracy from the benchmark table, in %."""
    for dataset in ("cifar10", "cifar100", "imagenet16"):
        if isinstance(accuracy.get(dataset), dict):
            return f"{accuracy[dataset]['test_acc']:.2f}% {dataset} test"
    return "-"


def score_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def run(args: argparse.Namespace) -> int:
    from ..run_reader import age_text, find_runs, iter_readers, summarize

    root = Path(args.root)
    summaries = [summarize(reader, accuracy=not args.no_accuracy) for reader in iter_readers(find_runs(root))]
    if args.json:
        for summary in summaries:
            print(json.dumps(summary.to_dict(), sort_keys=True))
        return 0
    header = ["run", "status", "space", "proxy", "proposer", "seed", "iterations", "best score", "best accuracy",
              "LLM cost", "tokens in/out", "last trial"]
    table = [header]
    for s in summaries:
        name = str(Path(s.path).relative_to(root)) if Path(s.path) != root else str(root)
        table.append([
            name, s.status, s.space, s.proxy, s.proposer if s.llm is None else f"{s.proposer} ({s.llm})", str(s.seed),
            f"{s.iterations_done}/{s.iterations}", score_text(s.best_score), accuracy_text(s.accuracy),
            "unknown" if s.cost_usd is None else f"${s.cost_usd:.4f}", f"{s.input_tokens}/{s.output_tokens}", age_text(s.updated),
        ])
    print_table(table)
    for s in summaries:
        if s.status in ("interrupted", "stopped") and s.reason:
            print(f"{s.path}: {s.status}: {s.reason}")
    return 0


def print_table(table: list[list[str]]) -> None:
    """Left-aligned columns, two spaces apart."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
