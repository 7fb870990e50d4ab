"""Does the final-selection stage (`rznas search --final-train-top K --final-epochs E`) return a
better NB201 cell than the proxy's top-1, and at what CPU cost?

The candidate sets are realistic ones: the top-K cells by each proxy among the committed
N=1000 CIFAR-10 correlation samples (benchmarks/results/correlation/*cifar10-n1000*.jsonl,
arch strings, scores and NB201 200-epoch accuracies), or, with ``--candidates-from RUN_DIR``,
the very K cells the stage would train after that finished NB201 search (its store's trials,
ranked by ``top_candidates``, the stage's own function). Every candidate is trained with the very
code the search stage uses (rznas.search.final_selection.train_candidate: the registered
recipe, the training loop, held-out images of CIFAR-10's training split). Reported per
(proxy, K, E): the Spearman rho of the short-training validation accuracy with the 200-epoch
test accuracy among the K candidates (beside the proxy's own rho among them), the test
accuracy of the selected cell vs the proxy's top-1 and vs the best candidate, and CPU seconds
(process time, one torch thread) per candidate-epoch. A cell in several candidate sets is
trained once per E; K=5 is the top half of K=10. Every training is appended to a JSONL log
as it finishes, so an interrupted run resumes without retraining.

    RZNAS_DATA_DIR=../shared/data nice -n 10 python benchmarks/final_selection.py \
        --proxies synflow,zico --top 10 --epochs 1,2 --train-images 5000 --val-images 2000 \
        --batch-size 128 --space-option cells_per_stage=1 --full-network-check 1 \
        --out benchmarks/results/final_selection

    RZNAS_DATA_DIR=../shared/data python benchmarks/final_selection.py --top 5 --epochs 2,8 \
        --candidates-from RUNS/synflow-random-seed0 --candidates-from RUNS/zico-random-seed0 \
        --train-images 5000 --val-images 2000 --batch-size 128 --space-option cells_per_stage=1 \
        --out benchmarks/results/final_selection_search
"""
from __future__ import annotations

import argparse
import glob
import json
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from scipy import stats

from rznas.benchmarks.nb201_table import open_nb201
from rznas.run_reader import RunReader
from rznas.search.final_selection import FinalSelectionSettings, choose, top_candidates, train_candidate
from rznas.trial import Trial, TrialState
from rznas.spaces import get_space

DATASETS = ("cifar10", "cifar100", "imagenet16")
CORRELATION_GLOB = "benchmarks/results/correlation/*cifar10-n1000*.jsonl"


def load_scored_cells(pattern: str) -> dict[str, dict[str, Any]]:
    """arch string -> {"scores": {proxy: score}, "test_acc": CIFAR-10 200-epoch test %} over the logs."""
    cells: dict[str, dict[str, Any]] = {}
    for path in sorted(glob.glob(pattern)):
        for line in Path(path).read_text(encoding="utf-8").splitlines()[1:]:
            record = json.loads(line)
            if record.get("type") != "arch":
                continue
            cell = cells.setdefault(record["arch"], {"scores": {}, "test_acc": record["test_acc"]})
            cell["scores"].update({k: v for k, v in record["scores"].items() if v is not None})
    if not cells:
        raise SystemExit(f"no correlation records match {pattern}")
    return cells


def top_cells(cells: dict[str, dict[str, Any]], proxy: str, k: int) -> list[str]:
    """The k best cells by ``proxy`` (ties: arch string), as the search's top_candidates ranks trials."""
    scored = [(arch, c["scores"][proxy]) for arch, c in cells.items() if proxy in c["scores"]]
    return [arch for arch, _ in sorted(scored, key=lambda x: (-x[1], x[0]))[:k]]


def load_run_candidates(run_dir: Path, k: int) -> tuple[str, list[tuple[str, float, Any]]]:
    """A finished NB201 search's fitness name and the stage's top-k candidates as (arch string, score, arch)."""
    with RunReader(run_dir) as reader:
        config = reader.config()
        trials = reader.trials()
    if config.get("space", "nb201") != "nb201":
        raise SystemExit(f"{run_dir}: final selection is measured on NB201 runs only (space {config.get('space')!r})")
    chosen = top_candidates(trials, k)
    if len(chosen) < k:
        raise SystemExit(f"{run_dir}: only {len(chosen)} distinct complete cells, fewer than --top {k}")
    return config["proxy"], [(t.encoded, float(t.score), t.arch) for t in chosen]  # type: ignore[arg-type]


def run_candidate_sets(run_dirs: list[Path], k: int, table: Any) -> tuple[dict[str, list[str]], dict[str, dict[str, Any]]]:
    """Candidate sets of finished searches, one per distinct (fitness, ranked cells): runs that would
    train the same cells in the same order share one set, labelled with all their names.

    Returns (label -> ranked arch strings, cells in the shape of :func:`load_scored_cells`)."""
    groups: dict[tuple[str, tuple[str, ...]], dict[str, Any]] = {}
    for run_dir in run_dirs:
        proxy, ranked = load_run_candidates(run_dir, k)
        group = groups.setdefault((proxy, tuple(a for a, _, _ in ranked)), {"runs": [], "ranked": ranked})
        group["runs"].append(run_dir.resolve().name)
    sets: dict[str, list[str]] = {}
    cells: dict[str, dict[str, Any]] = {}
    for (proxy, archs), group in groups.items():
        label = f"{proxy} ({', '.join(group['runs'])})"
        sets[label] = list(archs)
        for arch_text, score, arch in group["ranked"]:
            cell = cells.setdefault(arch_text, {"scores": {}, "test_acc": table.lookup(arch, "cifar10").test_acc})
            cell["scores"][label] = score
    return sets, cells


def settings_for(args: argparse.Namespace, epochs: int, space_options: dict[str, Any], seed: int) -> FinalSelectionSettings:
    return FinalSelectionSettings(
        top=args.top, epochs=epochs, dataset="cifar10", train_images=args.train_images, val_images=args.val_images,
        batch_size=args.batch_size, recipe=args.recipe, seed=seed, space_options=space_options, device="cpu",
    )


def read_log(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    done: dict[tuple[str, str], dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if row.get("type") == "training":
                done[(row["settings_key"], row["arch"])] = row
    return done


def train(arch_text: str, score: float, settings: FinalSelectionSettings, data: Any, log: Path,
          done: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
    """One candidate's training under ``settings`` (from the log when it was trained before)."""
    key = (settings.key, arch_text)
    if key in done:
        return done[key]
    arch = get_space("nb201").decode(arch_text)
    trial = Trial(number=0, iteration=0, state=TrialState.COMPLETE, arch=arch, encoded=arch_text, score=score,
                  reason="", parent_id=None, parent_number=None, parent_score=None, thinking="", measurements={},
                  timings={}, notes_shown=())
    cpu = time.process_time()
    result = train_candidate(trial, 0, settings, data, encoded=arch_text)
    row = {
        "type": "training", "settings_key": settings.key, "settings": settings.to_dict(), "arch": arch_text,
        "val_acc": result.val_acc, "train_acc": result.train_acc, "epochs": result.epochs, "params": result.params,
        "wall_seconds": result.seconds, "cpu_seconds": time.process_time() - cpu,
    }
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row, sort_keys=True) + "\n")
    done[key] = row
    print(f"E={settings.epochs} {arch_text}: val {result.val_acc:.2f}%  {row['cpu_seconds']:.0f} CPU-s "
          f"({result.seconds:.0f} s wall)", file=sys.stderr, flush=True)
    return row


def spearman(a: list[float], b: list[float]) -> float | None:
    """Spearman rho rounded to 3 places; None where it is undefined (a constant list)."""
    if len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return round(float(stats.spearmanr(a, b).statistic), 3)


def evaluate_set(proxy: str, k: int, epochs: int, seed: int, archs: list[str], cells: dict[str, dict[str, Any]],
                 rows: dict[str, dict[str, Any]], table: Any) -> dict[str, Any]:
    """Quality of the choice among the top-k cells of ``proxy`` trained for ``epochs`` with training seed ``seed``."""
    candidates = archs[:k]  # ranked best first
    val = [rows[a]["val_acc"] for a in candidates]
    test = [cells[a]["test_acc"] for a in candidates]
    score = [cells[a]["scores"][proxy] for a in candidates]

    class Candidate:  # the stage's own tie rule: best val, then better proxy rank
        def __init__(self, rank: int, arch: str):
            self.rank, self.arch, self.val_acc = rank, arch, rows[arch]["val_acc"]

    chosen = choose([Candidate(i + 1, a) for i, a in enumerate(candidates)])  # type: ignore[list-item]
    space = get_space("nb201")

    def accuracies(arch: str) -> dict[str, float]:
        cell = space.decode(arch)
        return {d: round(table.lookup(cell, d).test_acc, 3) for d in DATASETS}

    best = max(candidates, key=lambda a: cells[a]["test_acc"])
    cpu = [rows[a]["cpu_seconds"] / epochs for a in candidates]
    return {
        "proxy": proxy, "top": k, "epochs": epochs, "seed": seed,
        "spearman_val_vs_test": spearman(val, test),
        "spearman_proxy_vs_test": spearman(score, test),
        "selected": {"arch": chosen.arch, "rank": chosen.rank, "test_acc": accuracies(chosen.arch)},
        "proxy_top1": {"arch": candidates[0], "test_acc": accuracies(candidates[0])},
        "best_candidate": {"arch": best, "rank": candidates.index(best) + 1, "test_acc": accuracies(best)},
        "val_acc": [round(v, 2) for v in val],
        "test_acc_cifar10": [round(t, 3) for t in test],
        "cpu_seconds_per_candidate_epoch": {"mean": round(statistics.mean(cpu), 1), "max": round(max(cpu), 1)},
        "stage_cpu_seconds": round(sum(rows[a]["cpu_seconds"] for a in candidates), 1),
    }


def wall_per_cpu(rows: list[dict[str, Any]]) -> dict[str, float] | None:
    """Range of wall time / CPU time over the logged trainings (how loaded the machine was)."""
    ratios = [r["wall_seconds"] / r["cpu_seconds"] for r in rows if r.get("wall_seconds") and r.get("cpu_seconds")]
    return {"min": round(min(ratios), 2), "max": round(max(ratios), 2)} if ratios else None


def _wall_text(ratio: dict[str, float] | None) -> str:
    if ratio is None:
        return "wall time not logged"
    return f"the trainings' wall time was {ratio['min']:.1f}-{ratio['max']:.1f}x their CPU time"


def seed_groups(results: list[dict[str, Any]]) -> dict[tuple[str, int, int], list[dict[str, Any]]]:
    """The results per (candidate set, K, E), one entry per training seed."""
    groups: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["proxy"], r["top"], r["epochs"]), []).append(r)
    return groups


def _rho_text(rho: float | None) -> str:
    return "-" if rho is None else f"{rho:+.2f}"


def candidates_text(summary: dict[str, Any]) -> str:
    """Where the candidate sets came from, for the table's header."""
    if summary.get("candidate_runs"):
        return ("the top-K cells of each finished NB201 search (the cells `rznas search --final-train-top K` trains "
                "after it: distinct complete trials by fitness; runs with the same ranked cells share a row), runs " + ", ".join(f"`{r}`" for r in summary["candidate_runs"]))
    return f"the top-K cells by each proxy among the {summary['cells']} committed N=1000 CIFAR-10 correlation samples"


def write_markdown(summary: dict[str, Any], path: Path) -> None:
    s = summary["settings"]
    several = len(summary["seeds"]) > 1  # a seed column, and how often each setting picked well
    lines = [
        "# Final selection on NB201: short training of the proxy's top-K cells",
        "",
        f"Command: `{summary['command']}` (with `RZNAS_DATA_DIR` pointing at the shared data).",
        "",
        f"Candidates: {candidates_text(summary)}. Each trained with recipe `{s['recipe']}` for E epochs (batch {s['batch_size']}, "
        f"seed {', '.join(str(x) for x in summary['seeds'])}, space options {s['space_options'] or 'none (the benchmark network)'}) on "
        f"{s['train_images']} CIFAR-10 training images, validated on {s['val_images']} other training images; "
        f"selected = best validation accuracy. Test accuracies are NB201's 200-epoch figures (%). "
        f"CPU seconds are process time with {summary['environment']['torch_threads']} torch thread on "
        f"{summary['environment']['platform']} ({summary['environment']['cpu_count']} cores shared with other jobs; "
        f"load average {summary['environment']['load_average']} when this table was written; "
        f"{_wall_text(summary.get('wall_per_cpu'))}).",
        "",
        f"| proxy | K | E |{' seed |' if several else ''} rho(val, test) | rho(proxy, test) | selected (rank) C10 / C100 / IN16 | proxy top-1 C10 / C100 / IN16 "
        "| best candidate (rank) C10 | CPU-s per candidate-epoch (mean / max) | stage CPU-s |",
        "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if several else ""),
    ]
    fmt = lambda acc: " / ".join(f"{acc[d]:.2f}" for d in DATASETS)  # noqa: E731
    for r in summary["results"]:
        seed_cell = f" {r['seed']} |" if several else ""
        lines.append(
            f"| {r['proxy']} | {r['top']} | {r['epochs']} |{seed_cell} "
            f"{_rho_text(r['spearman_val_vs_test'])} | "
            f"{_rho_text(r['spearman_proxy_vs_test'])} | {fmt(r['selected']['test_acc'])} ({r['selected']['rank']}) | "
            f"{fmt(r['proxy_top1']['test_acc'])} | {r['best_candidate']['test_acc']['cifar10']:.2f} "
            f"({r['best_candidate']['rank']}) | {r['cpu_seconds_per_candidate_epoch']['mean']:.0f} / "
            f"{r['cpu_seconds_per_candidate_epoch']['max']:.0f} | {r['stage_cpu_seconds']:.0f} |"
        )
    if several:
        lines += ["", f"Over the {len(summary['seeds'])} training seeds:", "",
                  "| proxy | K | E | best candidate picked | proxy top-1 kept | selected, mean C10 / C100 / IN16 |",
                  "|---|---|---|---|---|---|"]
        for (proxy, k, epochs), group in seed_groups(summary["results"]).items():
            mean = {d: statistics.mean(r["selected"]["test_acc"][d] for r in group) for d in DATASETS}
            best = sum(r["selected"]["arch"] == r["best_candidate"]["arch"] for r in group)
            kept = sum(r["selected"]["rank"] == 1 for r in group)
            lines.append(f"| {proxy} | {k} | {epochs} | {best} of {len(group)} | {kept} of {len(group)} | {fmt(mean)} |")
    if summary.get("full_network"):
        lines += ["", "The benchmark network itself (5 cells per stage, no space options), E=1, same data:", "",
                  "| cell | val % | CPU-s per epoch | reduced network's CPU-s per epoch |", "|---|---|---|---|"]
        for row in summary["full_network"]:
            cell = row["arch"].replace("|", "\\|")  # a pipe would end the Markdown cell
            lines.append(f"| {cell} | {row['val_acc']:.2f} | {row['cpu_seconds']:.0f} | "
                         f"{row['reduced_cpu_seconds']:.0f} |")
    lines += ["", f"Total CPU time of the trainings in this file: {summary['total_cpu_seconds'] / 60:.1f} CPU-minutes.", ""]
    path.write_text("\n".join(lines), encoding="utf-8")


REPO_ROOT = Path(__file__).resolve().parents[1]


def portable_argv(argv: list[str], args: argparse.Namespace) -> list[str]:
    """The arguments as a reader reruns them from the repository: each ``--candidates-from`` run
    as ``RUNS/<name>``, an ``--out`` inside the repository relative to it."""
    shown = {r: f"RUNS/{Path(r).resolve().name}" for r in args.candidates_from}
    out = Path(args.out).resolve()
    if out.is_relative_to(REPO_ROOT):
        shown[args.out] = str(out.relative_to(REPO_ROOT))
    return [shown.get(a, a) for a in argv]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--proxies", default="synflow,zico")
    parser.add_argument("--top", type=int, default=10, help="largest K (smaller K: 5 and K, from the same trainings)")
    parser.add_argument("--epochs", default="1,2", help="comma-separated E values")
    parser.add_argument("--train-images", type=int, default=5000)
    parser.add_argument("--val-images", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--recipe", default="quick")
    parser.add_argument("--seed", default="0", help="training seed(s), comma-separated (the stage's --final-seed): "
                        "split, data order and initialisation")
    parser.add_argument("--space-option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--full-network-check", type=int, default=0, metavar="N",
                        help="also train the first N cells of the first proxy's set on the benchmark network (E=1)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--correlation", default=CORRELATION_GLOB)
    parser.add_argument("--candidates-from", action="append", default=[], metavar="RUN_DIR",
                        help="take the candidate set from this finished NB201 search instead (repeatable; --proxies unused)")
    parser.add_argument("--out", default="benchmarks/results/final_selection")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from rznas.commands.train import parse_space_options

    space_options = parse_space_options(args.space_option)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.with_suffix(".jsonl")
    done = read_log(log)
    table = open_nb201(None)
    if args.candidates_from:
        sets, cells = run_candidate_sets([Path(r) for r in args.candidates_from], args.top, table)
        proxies = list(sets)
    else:
        cells = load_scored_cells(args.correlation)
        proxies = [p for p in args.proxies.split(",") if p]
        sets = {p: top_cells(cells, p, args.top) for p in proxies}
    epoch_values = [int(e) for e in args.epochs.split(",")]
    seeds = [int(x) for x in str(args.seed).split(",")]
    order = list(dict.fromkeys(a for p in proxies for a in sets[p]))  # each cell once per (E, seed)
    load = round(__import__("os").getloadavg()[0], 2)
    rows_by: dict[tuple[int, int], dict[str, dict[str, Any]]] = {}
    best_score = {a: max(cells[a]["scores"].get(p, float("-inf")) for p in proxies) for a in order}
    for seed in seeds:  # the first seed at every E first, so a partial run is already useful
        for epochs in epoch_values:  # every cell at the smallest E first
            settings = settings_for(args, epochs, space_options, seed)
            data = settings.load_data(None)
            rows_by[(epochs, seed)] = {a: train(a, best_score[a], settings, data, log, done) for a in order}
    full_rows = []
    if args.full_network_check:
        settings = settings_for(args, 1, {}, seeds[0])
        data = settings.load_data(None)
        reduced = rows_by.get((1, seeds[0]), {})
        for arch in sets[proxies[0]][: args.full_network_check]:
            row = train(arch, cells[arch]["scores"][proxies[0]], settings, data, log, done)
            full_rows.append({"arch": arch, "val_acc": row["val_acc"], "cpu_seconds": row["cpu_seconds"],
                              "reduced_cpu_seconds": reduced[arch]["cpu_seconds"] if arch in reduced else float("nan")})
    ks = sorted({min(5, args.top), args.top})
    results = [evaluate_set(p, k, e, seed, sets[p], cells, rows_by[(e, seed)], table)
               for p in proxies for k in ks for e in epoch_values for seed in seeds]
    used = {(settings_for(args, e, space_options, seed).key, a) for e in epoch_values for seed in seeds for a in order}
    used |= {(settings_for(args, 1, {}, seeds[0]).key, r["arch"]) for r in full_rows}
    summary = {
        "command": "python benchmarks/final_selection.py " + shlex.join(portable_argv(sys.argv[1:] if argv is None else argv, args)),
        "cells": len(cells),
        "candidate_runs": [f"RUNS/{Path(r).resolve().name}" for r in args.candidates_from],
        "settings": {k: v for k, v in settings_for(args, 1, space_options, seeds[0]).to_dict().items()
                     if k not in ("epochs", "top", "seed")},
        "seeds": seeds,
        "environment": {"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                        "platform": platform.platform(terse=True), "cpu_count": __import__("os").cpu_count(),
                        "load_average": load},
        "results": results,
        "full_network": full_rows,
        "total_cpu_seconds": round(sum(done[key]["cpu_seconds"] for key in used), 1),
        "wall_per_cpu": wall_per_cpu([done[key] for key in used]),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    write_markdown(summary, out.with_suffix(".md"))
    print(out.with_suffix(".md").read_text(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
