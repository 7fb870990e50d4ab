"""NB201 search quality: the `random` and `llm` proposers against random search and the paper.

For every proxy and seed this runs `rznas search` twice (`--proposer random`, the paper's
plain-proxy evolution, and `--proposer llm`, RZ-NAS on the embedded SmolLM2-135M model),
each in its own run directory under --runs (resumed with `rznas search --resume` when a
previous invocation was interrupted, skipped when finished). Reported per (proxy, proposer):
mean +- std over seeds of the found architecture's 200-epoch test accuracy on CIFAR-10,
CIFAR-100 and ImageNet16-120, and the LLM tokens per call and per iteration. Beside them,
computed from the benchmark table with the same seeds and the same number of evaluations
(population + iterations): random search selecting by each dataset's 200-epoch validation
accuracy, and the largest (#params) of the same random sample; and the paper's rows.

    RZNAS_DATA_DIR=../shared/data python benchmarks/search_quality.py \
        --proxies zico,synflow --seeds 0,1,2,3,4 --population 20 --iterations 40 \
        --runs runs/search_quality --out benchmarks/results/search_quality
"""
from __future__ import annotations

import argparse
import json
import shlex
import sqlite3
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any


DATASETS = ("cifar10", "cifar100", "imagenet16")
# PAPER.md section 4 (test accuracy %, mean of 3 runs, GPT-4o, population 100, 1500 iterations)
PAPER_ROWS = {
    "synflow": {"plain proxy search": (93.48, 71.35, 45.12), "RZ-NAS (GPT-4o)": (93.47, 73.21, 46.16)},
    "zico": {"plain proxy search": (93.35, 70.71, 46.18), "RZ-NAS (GPT-4o)": (94.24, 73.30, 46.24)},
}
PAPER_TOKENS_PER_CALL = "2300-2600 in / 150-200 out"
OPTIMUM = (94.37, 73.51, 47.31)
#: extra `rznas search` flags of the llm proposer's runs, by variant name
#: (paper and fused-lean reply with whole architectures, as the paper; edit: one structured edit)
VARIANTS = {
    "paper": ["--reply-format", "arch"],
    "fused-lean": ["--fused-reflection", "--lean-prompt", "--reply-format", "arch"],
    "edit": ["--reply-format", "edit"],
}


def run_name(proxy: str, proposer: str, seed: int, variant: str) -> str:
    suffix = f"-{variant}" if proposer == "llm" and variant != "paper" else ""
    return f"{proxy}-{proposer}{suffix}-seed{seed}"


def search_command(proxy: str, proposer: str, seed: int, args: argparse.Namespace, run_dir: Path) -> list[str]:
    command = [
        "rznas", "search", "--space", "nb201", "--proxy", proxy, "--proposer", proposer,
        "--population", str(args.population), "--iterations", str(args.iterations), "--seed", str(seed),
        "--data", args.data, "--out", str(run_dir), "--quiet",
    ]
    if proposer == "llm":
        command += ["--llm", args.llm, *args.llm_flags]
    return command


def run_one(command: list[str], run_dir: Path, iterations: int) -> None:
    """Run one search, resume it when an earlier invocation was interrupted, skip it when finished."""
    if (run_dir / "best_arch.json").exists():
        return
    if run_dir.exists() and (run_dir / "run.sqlite").exists():
        command = ["rznas", "search", "--resume", str(run_dir), "--iterations", str(iterations), "--quiet"]
    print("$", shlex.join(command), file=sys.stderr, flush=True)
    subprocess.run(command, check=True)


def llm_usage(run_dir: Path) -> dict[str, Any]:
    """Calls and mean tokens per call by purpose, from the run store (cache hits excluded)."""
    with sqlite3.connect(run_dir / "run.sqlite") as db:
        rows = db.execute(
            "SELECT purpose, COUNT(*), AVG(input_tokens), AVG(output_tokens), AVG(latency_s) FROM llm_calls "
            "WHERE cache_hit = 0 GROUP BY purpose"
        ).fetchall()
    return {
        purpose: {"calls": n, "input_tokens": i, "output_tokens": o, "latency_s": t} for purpose, n, i, o, t in rows
    }


def trial_counts(run_dir: Path) -> dict[str, int]:
    with sqlite3.connect(run_dir / "run.sqlite") as db:
        rows = db.execute("SELECT state, COUNT(*) FROM trials GROUP BY state").fetchall()
    return dict(rows)


def collect(run_dir: Path) -> dict[str, Any]:
    best = json.loads((run_dir / "best_arch.json").read_text())
    return {
        "arch": best["arch"],
        "score": best["score"],
        "test_acc": {d: best["benchmark"][d]["test_acc"] for d in DATASETS},
        "trials": trial_counts(run_dir),
        "tokens": best.get("tokens"),
        "llm_calls": llm_usage(run_dir),
    }


def mean_std(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def random_baselines(seeds: list[int], evaluations: int) -> dict[str, Any]:
    """Random search by validation accuracy and the largest-#params pick, same sample per seed
    (computed by the paper-scale harness, under this table's labels)."""
    from rznas.benchmarks.search_quality import random_baselines as harness_baselines

    found = harness_baselines(seeds, evaluations)
    return {
        f"random search, best validation accuracy of {evaluations}": found["random search (validation accuracy)"],
        f"largest #params of the same {evaluations}": found["largest #params"],
    }


def summarize(results: dict[str, dict[str, Any]], args: argparse.Namespace, seeds: list[int]) -> dict[str, Any]:
    groups: dict[str, Any] = {}
    arms = [(proposer, args.variant) for proposer in args.proposers]
    if args.variant != "paper" and "llm" in args.proposers:
        arms.append(("llm", "paper"))  # the reference the variant is compared with
    for proxy in args.proxies:
        for proposer, variant in arms:
            names = [run_name(proxy, proposer, s, variant) for s in seeds]
            runs = [results[n] for n in names if n in results]
            if not runs:
                continue
            entry: dict[str, Any] = {
                "proxy": proxy,
                "proposer": proposer,
                "variant": variant if proposer == "llm" else None,
                "seeds": len(runs),
                "test_acc": {d: mean_std([r["test_acc"][d] for r in runs]) for d in DATASETS},
                "scored_trials": statistics.fmean(r["trials"].get("complete", 0) for r in runs),
                "failed_trials": statistics.fmean(sum(n for s, n in r["trials"].items() if s != "complete") for r in runs),
            }
            if proposer == "llm":
                calls = [r["llm_calls"] for r in runs]
                entry["tokens_per_call"] = {
                    purpose: {
                        "input": statistics.fmean(c[purpose]["input_tokens"] for c in calls if purpose in c),
                        "output": statistics.fmean(c[purpose]["output_tokens"] for c in calls if purpose in c),
                        "latency_s": statistics.fmean(c[purpose]["latency_s"] for c in calls if purpose in c),
                    }
                    for purpose in sorted({p for c in calls for p in c})
                }
                per_iteration = [r["tokens"]["per_iteration"] for r in runs]
                entry["tokens_per_iteration"] = {
                    "input": statistics.fmean(p["input_tokens"] for p in per_iteration),
                    "output": statistics.fmean(p["output_tokens"] for p in per_iteration),
                    "calls": statistics.fmean(p["calls"] for p in per_iteration),
                }
            reference = proposer == "llm" and variant != args.variant
            groups[f"{proxy}-{proposer}" + ("-paper" if reference else "")] = entry
    paired: dict[str, Any] = {}
    for proxy in args.proxies:
        both = [s for s in seeds if run_name(proxy, "random", s, args.variant) in results
                and run_name(proxy, "llm", s, args.variant) in results]
        if both:
            paired[proxy] = {
                d: mean_std([
                    results[run_name(proxy, "llm", s, args.variant)]["test_acc"][d]
                    - results[run_name(proxy, "random", s, args.variant)]["test_acc"][d]
                    for s in both
                ])
                for d in DATASETS
            }
    return {
        "benchmark": "search_quality",
        "llm_minus_random_paired_by_seed": paired,
        "space": "nb201",
        "population": args.population,
        "iterations": args.iterations,
        "evaluations_budget": args.population + args.iterations,
        "probe_data": args.data,
        "llm": args.llm,
        "variant": args.variant,
        "llm_flags": args.llm_flags,
        "seeds": seeds,
        "command": "python benchmarks/search_quality.py " + shlex.join(sys.argv[1:]),
        "groups": groups,
        "baselines": random_baselines(seeds, args.population + args.iterations),
        "paper": PAPER_ROWS,
        "paper_setting": "population 100, 1500 iterations, GPT-4o, mean of 3 runs",
        "paper_tokens_per_call": PAPER_TOKENS_PER_CALL,
        "optimum": dict(zip(DATASETS, OPTIMUM)),
        "runs": results,
    }


def _cell(stats: dict[str, float]) -> str:
    return f"{stats['mean']:.2f} +- {stats['std']:.2f}"


def render_markdown(summary: dict[str, Any]) -> str:
    p, t = summary["population"], summary["iterations"]
    lines = [
        "# NB201 search quality: random vs LLM (embedded SmolLM2-135M) proposers",
        "",
        f"Command: `{summary['command']}` (with `RZNAS_DATA_DIR` pointing at the shared data).",
        "",
        f"Budget: population {p}, {t} iterations ({p + t} proposals; the paper uses population 100 and 1500 "
        f"iterations with GPT-4o). Probe data: {summary['probe_data']}. Seeds: {summary['seeds']}. "
        f"LLM prompt setting: {summary['variant']} ({' '.join(summary['llm_flags']) or 'mutation and reflection calls, full prompt'}). "
        "Test accuracy (%) of the best-scoring architecture, 200-epoch NB201 table, mean +- std over seeds.",
        "",
        "| method | proxy | seeds | CIFAR-10 | CIFAR-100 | ImageNet16-120 |",
        "|---|---|---:|---|---|---|",
    ]
    for proxy in summary["paper"]:
        variant = "" if summary["variant"] == "paper" else f", {summary['variant']}"
        for proposer, label in (("random", "rznas, random mutation (plain proxy search)"),
                                ("llm", f"rznas, LLM mutation + reflection (RZ-NAS{variant})")):
            entry = summary["groups"].get(f"{proxy}-{proposer}")
            if entry:
                cells = " | ".join(_cell(entry["test_acc"][d]) for d in DATASETS)
                lines.append(f"| {label} | {proxy} | {entry['seeds']} | {cells} |")
        reference = summary["groups"].get(f"{proxy}-llm-paper")
        if reference:
            cells = " | ".join(_cell(reference["test_acc"][d]) for d in DATASETS)
            lines.append(f"| rznas, LLM, paper prompt setting (two calls, full prompt) | {proxy} | {reference['seeds']} | {cells} |")
        for label, row in summary["paper"][proxy].items():
            lines.append(f"| paper: {label} | {proxy} | 3 | " + " | ".join(f"{v:.2f}" for v in row) + " |")
    for label, row in summary["baselines"].items():
        lines.append(f"| {label} | - | {len(summary['seeds'])} | " + " | ".join(_cell(row[d]) for d in DATASETS) + " |")
    lines.append("| benchmark optimum | - | - | " + " | ".join(f"{v:.2f}" for v in summary["optimum"].values()) + " |")
    if summary["llm_minus_random_paired_by_seed"]:
        lines += [
            "",
            "LLM minus random mutation, paired by seed (both start from the same seeded population), "
            "test accuracy points, mean +- std:",
            "",
            "| proxy | CIFAR-10 | CIFAR-100 | ImageNet16-120 |",
            "|---|---|---|---|",
        ]
        for proxy, row in summary["llm_minus_random_paired_by_seed"].items():
            lines.append(f"| {proxy} | " + " | ".join(
                f"{row[d]['mean']:+.2f} +- {row[d]['std']:.2f} (n={row[d]['n']})" for d in DATASETS) + " |")
    lines += [
        "",
        "## LLM tokens and latency per call (llama.cpp's own counts; mean over runs; 2-core CPU shared with other jobs)",
        "",
        f"Paper: {summary['paper_tokens_per_call']} tokens per call, two calls (mutation, reflection) per iteration.",
        "",
        "| proxy | prompt setting | mutation call in / out (s) | reflection call in / out (s) | per iteration in / out (calls) |",
        "|---|---|---|---|---|",
    ]
    for key, entry in summary["groups"].items():
        if entry["proposer"] != "llm":
            continue
        per_call = entry["tokens_per_call"]
        def cell(purpose: str) -> str:
            if purpose not in per_call:
                return "-"
            c = per_call[purpose]
            return f"{c['input']:.0f} / {c['output']:.0f} ({c['latency_s']:.1f} s)"

        it = entry["tokens_per_iteration"]
        lines.append(f"| {entry['proxy']} | {entry['variant']} | {cell('mutate')} | {cell('reflect')} | {it['input']:.0f} / {it['output']:.0f} ({it['calls']:.2f}) |")
    lines += ["", "## Trials per run (mean)", "", "| proxy | proposer | scored | not scored (duplicate, invalid, proxy error, parse error) |", "|---|---|---:|---:|"]
    for entry in summary["groups"].values():
        lines.append(f"| {entry['proxy']} | {entry['proposer']} {entry['variant'] or ''} | {entry['scored_trials']:.1f} | {entry['failed_trials']:.1f} |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--proxies", default="zico,synflow")
    parser.add_argument("--proposers", default="random,llm")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--population", type=int, default=20)
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--data", default="cifar10", help="probe data of the proxies (default: cifar10)")
    parser.add_argument("--llm", default="local", help="LLM of the llm proposer (default: the embedded model)")
    parser.add_argument("--runs", type=Path, default=Path("runs/search_quality"), help="run directories")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/search_quality"))
    parser.add_argument(
        "--variant", choices=sorted(VARIANTS), default="paper",
        help="LLM prompt setting: paper (mutation + reflection calls, full prompt, whole-architecture reply), "
        "fused-lean (--fused-reflection --lean-prompt, issue 5's token saving) or edit (structured-edit "
        "replies with the per-parent grammar); names the llm runs",
    )
    parser.add_argument("--summarize-only", action="store_true", help="only tabulate the finished runs")
    args = parser.parse_args(argv)
    args.llm_flags = VARIANTS[args.variant]
    args.proxies = args.proxies.split(",")
    args.proposers = args.proposers.split(",")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    # every random run first (cheap), then the LLM runs seed by seed, so an interrupted
    # invocation leaves complete seeds behind
    plan = [(proxy, "random", seed) for seed in seeds for proxy in args.proxies if "random" in args.proposers]
    plan += [(proxy, p, seed) for seed in seeds for proxy in args.proxies for p in args.proposers if p != "random"]
    results: dict[str, Any] = {}
    for proxy, proposer, seed in plan:
        name = run_name(proxy, proposer, seed, args.variant)
        run_dir = args.runs / name
        if not args.summarize_only:
            command = search_command(proxy, proposer, seed, args, run_dir)
            run_one(command, run_dir, args.iterations)
        if (run_dir / "best_arch.json").exists():
            results[name] = collect(run_dir)
        reference = args.runs / run_name(proxy, proposer, seed, "paper")
        if proposer == "llm" and args.variant != "paper" and (reference / "best_arch.json").exists():
            results[reference.name] = collect(reference)
    summary = summarize(results, args, seeds)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(render_markdown(summary))
    print(render_markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
