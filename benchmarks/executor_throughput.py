"""Proxy-evaluation throughput (architectures/s) of the evaluation executors.

Evaluates the same seeded NB201 sample with the inline executor, a local process pool of
1 and 2 workers, and Ray on a private local cluster of 2 CPUs. Each executor first warms
up (workers start, import torch and build their evaluator) on a separate warm-up sample;
the timed phase is steady state. Every executor's outcomes are checked against inline.

    python benchmarks/executor_throughput.py --archs 20 --proxy naswot --batch-size 16 \
        --out benchmarks/results
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

from rznas.search.executors import EvaluatorSpec, ProbeSpec, create_executor
from rznas.spaces import get_space

SETUPS = [("inline", 1), ("process", 1), ("process", 2), ("ray", 2)]


def run_setup(name: str, workers: int, spec: EvaluatorSpec, warmup: list, archs: list) -> dict[str, Any]:
    """Start the executor, warm it up, then time the evaluation of ``archs``."""
    start = time.perf_counter()
    executor = create_executor(name, spec, workers=workers)
    try:
        for _ in executor.map_unordered(warmup):
            pass
        ready = time.perf_counter()
        outcomes = {arch.id: outcome for arch, outcome in executor.map_unordered(archs)}
        done = time.perf_counter()
    finally:
        executor.close()
    seconds = done - ready
    return {
        "executor": name,
        "workers": workers,
        "startup_and_warmup_s": round(ready - start, 3),
        "seconds": round(seconds, 3),
        "archs_per_s": round(len(archs) / seconds, 3),
        "outcomes": outcomes,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=20, help="timed sample size")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up architectures per worker")
    parser.add_argument("--proxy", default="naswot")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--setups", default=",".join(f"{n}:{w}" for n, w in SETUPS), help="executor:workers list")
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    torch.set_num_threads(1)  # inline gets one core, like one worker
    space = get_space("nb201")
    rng = random.Random(args.seed)
    archs = [space.sample(rng) for _ in range(args.archs)]
    spec = EvaluatorSpec("nb201", args.proxy, ProbeSpec(batch_size=args.batch_size, chunks=1, seed=args.seed), seed=args.seed)
    setups = [(s.split(":")[0], int(s.split(":")[1])) for s in args.setups.split(",")]
    rows = []
    reference = None
    for name, workers in setups:
        warmup = [space.sample(rng) for _ in range(args.warmup * workers)]
        print(f"{name} x{workers} ...", file=sys.stderr, flush=True)
        row = run_setup(name, workers, spec, warmup, archs)
        outcomes = row.pop("outcomes")
        if reference is None:
            reference = outcomes
        row["same_outcomes_as_first"] = outcomes == reference
        rows.append(row)
        print(f"  {row['archs_per_s']} archs/s (startup+warm-up {row['startup_and_warmup_s']} s)", file=sys.stderr)
    base = next((r["archs_per_s"] for r in rows if r["executor"] == "process" and r["workers"] == 1), None)
    for row in rows:
        if base and row["executor"] != "inline":
            row["scaling_efficiency_vs_process_1"] = round(row["archs_per_s"] / (base * row["workers"]), 3)
    try:
        import ray

        ray_version = ray.__version__
    except ImportError:
        ray_version = None
    result = {
        "command": "python " + " ".join(shlex.quote(a) for a in sys.argv),
        "proxy": args.proxy,
        "archs": args.archs,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "ray": ray_version,
            "platform": platform.platform(),
        },
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "executor_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Proxy-evaluation throughput of the executors",
        "",
        f"Command: `{result['command']}`",
        "",
        f"NB201, proxy `{args.proxy}`, probe gaussian {args.batch_size} images, {args.archs} seeded architectures "
        f"(seed {args.seed}); {os.cpu_count()} CPUs, torch {torch.__version__}, ray {ray_version}. "
        "Steady state after a warm-up; startup includes spawning workers and building their evaluators.",
        "",
        "| executor | workers | archs/s | timed s | startup + warm-up s | scaling efficiency | outcomes = inline |",
        "|---|---:|---:|---:|---:|---:|:---:|",
    ]
    for r in rows:
        eff = r.get("scaling_efficiency_vs_process_1", "")
        lines.append(
            f"| {r['executor']} | {r['workers']} | {r['archs_per_s']} | {r['seconds']} | {r['startup_and_warmup_s']} "
            f"| {eff} | {'yes' if r['same_outcomes_as_first'] else 'NO'} |"
        )
    lines += [
        "",
        "Scaling efficiency = archs/s / (workers x archs/s of one process worker).",
        f"Load average when written: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; on a shared machine the "
        "numbers are noisy: rerun on an idle one to measure scaling.",
    ]
    (out / "executor_throughput.md").write_text("\n".join(lines) + "\n")
    print((out / "executor_throughput.md").read_text())
    return 0 if all(r["same_outcomes_as_first"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
