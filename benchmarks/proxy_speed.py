"""Side-by-side proxy speed: rznas (shared passes) vs a reference-style implementation.

Both score the same NB201 networks on the same probe batch in one process, alternating
which goes first per architecture. Reported as ratios (reference time / rznas time),
per proxy alone and for several gradient proxies scoring the same architecture.
Values are cross-checked: both implementations must agree.

    python benchmarks/proxy_speed.py --archs 12 --seed 0 --out benchmarks/results
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_style  # noqa: E402

from rznas.data.probe import gaussian_probe  # noqa: E402
from rznas.proxies import evaluate, get_proxy  # noqa: E402
from rznas.spaces import get_space  # noqa: E402

GROUP = ["grad_norm", "snip", "fisher", "jacob_cov", "naswot", "zico", "grasp", "synflow"]


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--proxies", default=",".join(GROUP))
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = args.proxies.split(",")
    space = get_space("nb201")
    rng = random.Random(args.seed)
    probe = gaussian_probe(batch_size=args.batch_size, chunks=2, resolution=32, num_classes=10, seed=args.seed)
    batches = [probe.chunk(0), probe.chunk(1)]
    rows = []
    for index in range(args.archs):
        arch = space.sample(rng)
        torch.manual_seed(args.seed * 100_003 + index)
        model = space.build(arch)
        row = {"arch": space.encode(arch), "reference": {}, "rznas_alone": {}, "values": {}}

        def run_reference() -> float:
            """The reference style: one fresh copy per proxy, one proxy at a time."""
            total = 0.0
            for name in names:
                try:
                    value, seconds = timed(lambda: reference_style.score(name, model, batches))
                except ValueError:  # log(0): a cell with no signal path (synflow)
                    value, seconds = float("nan"), 0.0
                row["reference"][name] = seconds
                row["values"].setdefault(name, {})["reference"] = value
                total += seconds
            return total

        def run_rznas() -> float:
            """rznas one proxy at a time (nothing to share), then all together (shared passes)."""
            for name in names:
                _, row["rznas_alone"][name] = timed(lambda: evaluate(model, probe, [get_proxy(name)]))
            results, total = timed(lambda: evaluate(model, probe, [get_proxy(n) for n in names]))
            for name in names:
                row["values"].setdefault(name, {})["rznas"] = results[name].value if results[name].ok else float("nan")
            return total

        if index == 0:  # warm-up: first-touch allocations and kernel selection, not counted
            run_reference()
            run_rznas()
        if index % 2 == 0:
            ref_total, shared_total = run_reference(), run_rznas()
        else:
            shared_total = run_rznas()
            ref_total = run_reference()
        row["reference_total"] = ref_total
        row["rznas_shared_total"] = shared_total
        rows.append(row)
        print(
            f"[{index + 1}/{args.archs}] reference {ref_total:.2f}s  rznas shared {shared_total:.2f}s  "
            f"ratio {ref_total / shared_total:.2f}",
            file=sys.stderr,
        )

    def agree(a: float, b: float) -> bool:
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=1e-3, abs_tol=1e-6)

    disagreements = [
        (row["arch"], name, v["reference"], v["rznas"])
        for row in rows
        for name, v in row["values"].items()
        if not agree(v["reference"], v["rznas"])
    ]
    per_proxy = {}
    for name in names:
        ref = sum(r["reference"][name] for r in rows)
        alone = sum(r["rznas_alone"][name] for r in rows)
        per_proxy[name] = {
            "reference_s_per_arch": ref / len(rows),
            "rznas_s_per_arch": alone / len(rows),
            "ratio": ref / alone,
        }
    ref_total = sum(r["reference_total"] for r in rows)
    shared_total = sum(r["rznas_shared_total"] for r in rows)
    summary = {
        "command": " ".join(["python"] + sys.argv),
        "archs": len(rows),
        "batch_size": args.batch_size,
        "probe": "gaussian",
        "proxies": names,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "per_proxy_alone": per_proxy,
        "all_together": {
            "reference_s_per_arch": ref_total / len(rows),
            "rznas_shared_s_per_arch": shared_total / len(rows),
            "ratio": ref_total / shared_total,
            "median_ratio_per_arch": statistics.median(r["reference_total"] / r["rznas_shared_total"] for r in rows),
        },
        "value_disagreements": disagreements,
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "proxy_speed.json").write_text(json.dumps(summary, indent=2))
    lines = [
        "# Proxy speed: rznas vs reference-style (NB201, CPU)",
        "",
        f"Command: `{summary['command']}`  ",
        f"{len(rows)} NB201 architectures, probe: Gaussian batch of {args.batch_size} (zico: 2 batches), "
        f"torch {torch.__version__}, {summary['threads']} threads. Ratio = reference seconds / rznas seconds "
        "(> 1: rznas faster). Same process, same architectures, order alternated.",
        "",
        "| proxy | reference s/arch | rznas s/arch | ratio |",
        "|---|---|---|---|",
    ]
    for name, p in per_proxy.items():
        lines.append(f"| {name} | {p['reference_s_per_arch']:.3f} | {p['rznas_s_per_arch']:.3f} | {p['ratio']:.2f} |")
    t = summary["all_together"]
    lines += [
        f"| **all {len(names)} together** | {t['reference_s_per_arch']:.3f} | {t['rznas_shared_s_per_arch']:.3f} "
        f"| **{t['ratio']:.2f}** |",
        "",
        f"Values: {len(disagreements)} disagreement(s) between the two implementations (rel. tol 1e-3).",
    ]
    (out / "proxy_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if not disagreements else 1


if __name__ == "__main__":
    sys.exit(main())
