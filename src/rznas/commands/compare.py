"""`rznas compare RUN...`: best-so-far curves and final scores across runs, mean +- std per setting."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from . import COMMANDS


@COMMANDS.register("compare")
def add_parser(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "compare",
        help="compare runs: table of best scores (mean +- std over runs with the same settings) + best-so-far plot",
        description="Compare runs (seeds, proposers, proxies, ...). Runs whose search settings are equal "
        "(they differ only in seed, iteration count, budgets or where they ran) form one group, reported as "
        "mean +- sample std over its runs. Each RUN may be a folder of runs. Reads the stores read-only.",
    )
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories or folders of runs")
    parser.add_argument("--plot", default="compare.png", metavar="PNG", help="best-so-far plot (default compare.png)")
    parser.add_argument("--json", action="store_true", help="print the groups as JSON instead of the table")
    parser.add_argument("--no-accuracy", action="store_true", help="skip the benchmark-table lookup of each best trial")
    parser.set_defaults(func=run)
    return parser


def group_label(settings: dict[str, Any], varying: list[str]) -> str:
    """space/proxy/proposer, plus every other setting that differs between the groups."""
    head = f"{settings['space']}/{settings['proxy']}/{settings['proposer']}"
    extra = [f"{key}={json.dumps(settings.get(key))}" for key in varying if key not in ("space", "proxy", "proposer")]
    return " ".join([head, *extra])


def run(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..run_reader import best_so_far, find_runs, iter_readers, mean_std, summarize
    from .runs import print_table

    paths: list[Path] = []
    for given in args.runs:
        paths.extend(p for p in find_runs(given) if p not in paths)
    runs = []
    for reader in iter_readers(paths):
        rows = reader.trial_rows()
        summary = summarize(reader, rows, accuracy=not args.no_accuracy)
        runs.append((summary, best_so_far(rows, summary.population)))
    if not any(curve for _, curve in runs):
        raise ConfigError("none of these runs has a scored trial yet: nothing to compare")

    groups: dict[str, list[tuple[Any, list[tuple[int, float]]]]] = {}
    for summary, curve in runs:
        groups.setdefault(json.dumps(summary.settings, sort_keys=True), []).append((summary, curve))
    keys = sorted({k for s, _ in runs for k in s.settings})
    varying = [k for k in keys if len({json.dumps(s.settings.get(k)) for s, _ in runs}) > 1]
    report = []
    for members in groups.values():
        settings = members[0][0].settings
        finals = [s.best_score for s, _ in members if s.best_score is not None]
        accs = [s.accuracy["cifar10"]["test_acc"] for s, _ in members if isinstance(s.accuracy.get("cifar10"), dict)]
        report.append({
            "label": group_label(settings, varying),
            "runs": [s.path for s, _ in members],
            "seeds": [s.seed for s, _ in members],
            "status": [s.status for s, _ in members],
            "iterations_done": [s.iterations_done for s, _ in members],
            "best_score": dict(zip(("mean", "std"), mean_std(finals))) if finals else None,
            "cifar10_test_acc": dict(zip(("mean", "std"), mean_std(accs))) if accs else None,
            # None: unknown (some run used a model without a price), never a false $0
            "cost_usd": None if any(s.cost_usd is None for s, _ in members) else sum(s.cost_usd for s, _ in members),
            "curves": [curve for _, curve in members],
        })
    plot_written = write_plot(report, Path(args.plot))
    if args.json:
        print(json.dumps([{k: v for k, v in g.items() if k != "curves"} for g in report], indent=2))
    else:
        table = [["group", "runs", "seeds", "iterations", "best score (mean +- std)", "CIFAR-10 test % (mean +- std)",
                  "LLM cost"]]
        for g in report:
            score, acc = g["best_score"], g["cifar10_test_acc"]
            table.append([g["label"], str(len(g["runs"])), ",".join(map(str, g["seeds"])),
                          ",".join(map(str, g["iterations_done"])),
                          "-" if score is None else f"{score['mean']:.6g} +- {score['std']:.3g}",
                          "-" if acc is None else f"{acc['mean']:.2f} +- {acc['std']:.2f}",
                          "unknown" if g["cost_usd"] is None else f"${g['cost_usd']:.4f}"])
        print_table(table)
    print(f"rznas compare: best-so-far plot -> {plot_written}", file=sys.stderr)
    return 0


def write_plot(groups: list[dict[str, Any]], path: Path) -> Path:
    """One line per group: the mean best-so-far score per iteration over its runs, +- std band
    (at each iteration, over the runs that reached it)."""
    import statistics

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for group in groups:
        by_iteration: dict[int, list[float]] = {}
        for curve in group["curves"]:
            for iteration, best in curve:
                by_iteration.setdefault(iteration, []).append(best)
        xs = sorted(by_iteration)
        if not xs:
            continue
        means = [statistics.fmean(by_iteration[x]) for x in xs]
        label = f"{group['label']} (n={len(group['runs'])})"
        (line,) = ax.plot(xs, means, label=label)
        if len(group["curves"]) > 1:
            stds = [statistics.stdev(by_iteration[x]) if len(by_iteration[x]) > 1 else 0.0 for x in xs]
            ax.fill_between(xs, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)],
                            color=line.get_color(), alpha=0.2)
    ax.set_xlabel("iteration")
    ax.set_ylabel("best proxy score so far")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
