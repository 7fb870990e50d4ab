"""`rznas report RUN`: rebuild a run's result files from its store (finished, live or killed)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import COMMANDS


@COMMANDS.register("report")
def add_parser(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "report",
        help="rebuild trials.csv, trials.jsonl, progress/validity plots and best_arch.json from a run's store",
        description="Rebuild the result files of RUN from its run store, read-only: works on a finished run, "
        "a live one (a snapshot of the trials committed so far) and one whose process was killed.",
    )
    parser.add_argument("run_dir", metavar="RUN", help="run directory")
    parser.add_argument("--out", metavar="DIR", help="where to write the files (default: RUN itself)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from ..report import write_report
    from ..run_reader import RunReader
    from ..search.benchmark import trial_accuracies

    out = Path(args.out or args.run_dir)
    out.mkdir(parents=True, exist_ok=True)
    with RunReader(args.run_dir) as reader:
        config = reader.config()
        status = reader.status()
        with reader.snapshot():
            summary = write_report(reader, out, benchmark=lambda row: trial_accuracies(config, row))
    files = ["best_arch.json", "trials.csv", "trials.jsonl", "progress.png", "validity.png"]
    written = [str(out / name) for name in files if (out / name).exists()]
    print(f"rznas report: {args.run_dir} ({status.state}, {summary['trials']} trials) -> {out}", file=sys.stderr)
    print(json.dumps({"status": status.state, "trials": summary["trials"], "best_score": summary["score"],
                      "best_arch": summary["arch"], "files": written}, indent=2))
    return 0
