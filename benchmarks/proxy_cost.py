"""Seconds per NB201 architecture of every proxy, side by side in one process.

Each group (one proxy, or the proxies that share one pass, e.g. AZ-NAS's four components)
scores the same seeded cells on the same probe exactly as `rznas bench correlation` and a
search do (`rznas.scoring.score_architecture`: build under the cell's seed, then the proxies);
the order of the groups rotates from cell to cell so machine load falls on all of them alike.
Reported: mean and median seconds per cell (build included) and the ratio to a baseline group.

    python benchmarks/proxy_cost.py --archs 12 --out benchmarks/results/proxy_cost
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from rznas.data.probe import make_probe
from rznas.proxies import get_proxy
from rznas.scoring import chunks_needed, sample_architectures, score_architecture
from rznas.spaces import get_space

#: the proxies of the committed correlation tables, the 2023-24 ones last; "+"-free names,
#: a group "a&b" is scored in one call (its shared passes run once)
DEFAULT_GROUPS = (
    "params,synflow,naswot,grad_norm,snip,jacob_cov,zico,grasp,zen,"
    "meco,swap,az_expressivity&az_progressivity&az_trainability&az_complexity"
)


def parse_groups(text: str) -> list[list[str]]:
    groups = [[name.strip() for name in part.split("&") if name.strip()] for part in text.split(",") if part.strip()]
    if not groups:
        raise SystemExit("name at least one proxy")
    for group in groups:
        for name in group:
            get_proxy(name)  # unknown names fail before anything is timed
    return groups


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=12, help="cells scored by every group (default 12)")
    parser.add_argument("--seed", type=int, default=0, help="sample seed and score seed (default 0)")
    parser.add_argument("--groups", default=DEFAULT_GROUPS, help="comma-separated groups; '&' joins one group")
    parser.add_argument("--probe-data", default="cifar10", help="probe data (default cifar10, as the tables)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--resolution", type=int, default=32, help="probe resolution in px (16: ImageNet16-120)")
    parser.add_argument("--classes", type=int, default=10, help="network classes (100: CIFAR-100, 120: IN16)")
    parser.add_argument("--baseline", default="synflow", help="group the ratios are taken to (default synflow)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, as a search)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/proxy_cost"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    groups = parse_groups(args.groups)
    labels = ["+".join(group) if len(group) < 4 else "az_nas (4 components, one pass)" for group in groups]
    if args.baseline not in labels:
        raise SystemExit(f"--baseline {args.baseline} is not one of the groups: {', '.join(labels)}")
    proxies = {label: [get_proxy(name) for name in group] for label, group in zip(labels, groups)}
    space = get_space("nb201")
    cells = sample_architectures(space, args.archs, args.seed)
    chunks = chunks_needed([p for group in proxies.values() for p in group])
    probe = make_probe(args.probe_data, batch_size=args.batch_size, chunks=chunks, seed=args.seed,
                       resolution=args.resolution, num_classes=args.classes)
    seconds: dict[str, list[float]] = {label: [] for label in labels}
    failures: dict[str, int] = {label: 0 for label in labels}
    started = time.perf_counter()
    for index, arch in enumerate(cells):
        order = labels[index % len(labels):] + labels[: index % len(labels)]
        for label in order:
            scored = score_architecture(space, arch, probe, proxies[label], seed=args.seed, num_classes=args.classes)
            seconds[label].append(scored.seconds)
            failures[label] += sum(not r.ok for r in scored.results.values())
        print(f"cell {index + 1}/{len(cells)} done ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    base = statistics.mean(seconds[args.baseline])
    rows = [
        {
            "group": label,
            "mean_s": statistics.mean(values),
            "median_s": statistics.median(values),
            "ratio_to_baseline": statistics.mean(values) / base,
            "failed_scores": failures[label],
        }
        for label, values in seconds.items()
    ]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    command = "python benchmarks/proxy_cost.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    result = {
        "command": command, "archs": args.archs, "seed": args.seed, "probe": probe.source,
        "batch_size": args.batch_size, "chunks": chunks, "resolution": args.resolution, "classes": args.classes,
        "threads": args.threads, "torch": torch.__version__, "machine": platform.machine(),
        "load_average_at_end": load, "baseline": args.baseline, "rows": rows, "seconds": seconds,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [
        "# Seconds per NB201 architecture, every proxy side by side",
        "",
        f"Command: `{command}`. {args.archs} seeded NB201 cells (seed {args.seed}), probe {probe.source} "
        f"({chunks} x {args.batch_size} images at {args.resolution} px, {args.classes} classes), torch "
        f"{torch.__version__}, {args.threads} thread(s); seconds include building the seeded network "
        f"(`rznas.scoring.score_architecture`, as a search and `rznas bench correlation` score). Groups take "
        f"turns first from cell to cell, in one process; load average at the end: "
        f"{'-' if load is None else f'{load:.2f}'} on {os.cpu_count()} CPUs, so compare the ratios.",
        "",
        f"| proxy | mean s / arch | median s / arch | ratio to {args.baseline} | failed scores |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in sorted(rows, key=lambda r: r["mean_s"]):
        lines.append(f"| {row['group']} | {row['mean_s']:.3f} | {row['median_s']:.3f} | "
                     f"{row['ratio_to_baseline']:.1f} | {row['failed_scores']} |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
