"""Can any NB201 search meet the project's target? A bound from the 200-epoch table alone.

A search returns one cell per seed, so its mean over seeds is a mixture of cells' accuracy
vectors (CIFAR-10, CIFAR-100, ImageNet16-120). This reads all 15,625 cells and reports:
which cells meet the target on all three datasets; by linear programming, the largest
margin m such that some mixture of cells (any number of seeds) is at least target + m on
every dataset; the best mixture of exactly k seeds (k = 5, by exhaustive search over the
cells of the Pareto front); and the highest ImageNet16-120 mean a mixture can have while
meeting the CIFAR-10 and CIFAR-100 targets. No scoring, no search: ground truth only.

    python benchmarks/target_feasibility.py --out benchmarks/results/target_feasibility
"""
from __future__ import annotations

import argparse
import itertools
import json
import shlex
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import linprog

from rznas.benchmarks.nb201_table import open_nb201
from rznas.benchmarks.search_quality import PAPER_ROWS, TARGET
from rznas.spaces import get_space

DATASETS = ("cifar10", "cifar100", "imagenet16")


def accuracy_table() -> tuple[list[str], np.ndarray]:
    space = get_space("nb201")
    truth = open_nb201()
    archs = [space.encode(arch) for arch in space.all_architectures()]
    table = np.array([[truth.lookup(a, d).test_acc for d in DATASETS] for a in archs])
    return archs, table


def pareto_front(table: np.ndarray) -> np.ndarray:
    """Indices of the cells no other cell beats on all three datasets at once."""
    # lexicographic, best first: a cell that dominates another always comes before it
    order = np.lexsort((-table[:, 2], -table[:, 1], -table[:, 0]))
    front: list[int] = []
    for i in order:
        if not any(np.all(table[j] >= table[i]) and np.any(table[j] > table[i]) for j in front):
            front.append(int(i))
    return np.array(front)


def best_mixture_margin(table: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """max m with sum_i w_i a_i >= target + m (every dataset), w >= 0, sum w = 1."""
    n = len(table)
    cost = np.zeros(n + 1)
    cost[-1] = -1.0
    a_ub = np.hstack([-table.T, np.ones((3, 1))])
    a_eq = np.hstack([np.ones((1, n)), np.zeros((1, 1))])
    result = linprog(cost, A_ub=a_ub, b_ub=-target, A_eq=a_eq, b_eq=[1.0], bounds=[(0, None)] * n + [(None, None)])
    if not result.success:
        raise SystemExit(f"linear program failed: {result.message}")
    return float(-result.fun), result.x[:n]


def best_in16_given_cifar(table: np.ndarray, target: np.ndarray) -> tuple[float | None, np.ndarray | None]:
    """The highest ImageNet16-120 mean of a mixture that meets the CIFAR-10 and CIFAR-100 targets."""
    n = len(table)
    result = linprog(-table[:, 2], A_ub=-table[:, :2].T, b_ub=-target[:2], A_eq=np.ones((1, n)), b_eq=[1.0],
                     bounds=[(0, None)] * n)
    return (float(-result.fun), result.x) if result.success else (None, None)


def best_k_seeds(table: np.ndarray, target: np.ndarray, candidates: np.ndarray, k: int) -> tuple[float, tuple[int, ...]]:
    """The best uniform margin of k returned cells (repeats allowed), over the candidate cells."""
    best = (-np.inf, ())
    for combo in itertools.combinations_with_replacement(candidates.tolist(), k):
        margin = float(np.min(table[list(combo)].mean(axis=0) - target))
        if margin > best[0]:
            best = (margin, combo)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="k for the exact k-seed mixture (default 5)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/target_feasibility"))
    args = parser.parse_args()
    target = np.array(TARGET)
    archs, table = accuracy_table()
    meets = [i for i in range(len(archs)) if np.all(table[i] >= target)]
    margin, weights = best_mixture_margin(table, target)
    mixture = [(archs[i], float(weights[i]), table[i].tolist()) for i in np.argsort(-weights) if weights[i] > 1e-6]
    in16, in16_weights = best_in16_given_cifar(table, target)
    front = pareto_front(table)
    # exact over all cells: swapping a dominated cell for one that dominates it lowers no mean
    k_margin, k_cells = best_k_seeds(table, target, front, args.seeds)
    optimum = table.max(axis=0)
    command = "python benchmarks/target_feasibility.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    result = {
        "command": command, "target": TARGET, "cells": len(archs), "cells_meeting_target": [archs[i] for i in meets],
        "best_mixture_margin": margin, "best_mixture": mixture,
        "best_imagenet16_mean_given_cifar_targets": in16,
        "pareto_front": [[archs[i], table[i].tolist()] for i in front],
        "k": args.seeds, "best_k_seed_margin": k_margin,
        "best_k_seed_cells": [[archs[i], table[i].tolist()] for i in k_cells],
        "best_k_seed_mean": table[list(k_cells)].mean(axis=0).tolist(),
        "optimum_per_dataset": optimum.tolist(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    fmt = lambda v: " / ".join(f"{x:.2f}" for x in v)  # noqa: E731
    lines = [
        "# Is the project's NB201 target reachable by any search?",
        "",
        f"Command: `{command}` (the 200-epoch NB201 test accuracies of all {len(archs):,} cells; no scoring).",
        f"Target: mean {fmt(target)} (CIFAR-10 / CIFAR-100 / ImageNet16-120) over 5 seeds. A search returns one "
        "cell per seed, so its mean over seeds is a mixture of cells' accuracy vectors.",
        "",
        f"- Cells meeting the target on all three datasets: **{len(meets)}**"
        + (": " + ", ".join(f"`{archs[i]}` ({fmt(table[i])})" for i in meets) if meets else "."),
        f"- Per-dataset optimum (different cells): {fmt(optimum)}.",
        f"- Best margin of any mixture of cells (any number of seeds, linear program): **{margin:+.3f}** points on "
        f"every dataset, i.e. at best {fmt(target + margin)} at once, from "
        + "; ".join(f"{w:.3f} x `{a}` ({fmt(acc)})" for a, w, acc in mixture) + ".",
        f"- Best mean of exactly {args.seeds} returned cells (repeats allowed; exhaustive over the {len(front)} "
        "cells of the Pareto front, which is exact: a dominated cell can be swapped for one that dominates it "
        f"without lowering any mean): margin **{k_margin:+.3f}**, mean {fmt(table[list(k_cells)].mean(axis=0))}, "
        "from " + ", ".join(f"{k_cells.count(i)} x `{archs[i]}`" for i in dict.fromkeys(k_cells)) + ".",
        "- Highest ImageNet16-120 mean of a mixture that meets the CIFAR-10 and CIFAR-100 targets: "
        + ("none exists" if in16 is None else f"**{in16:.2f}** (target {target[2]:.2f})") + ".",
        "",
        f"The Pareto front ({len(front)} cells no other cell beats on all three datasets):",
        "",
        "| cell | CIFAR-10 | CIFAR-100 | ImageNet16-120 |",
        "|---|---:|---:|---:|",
        *[f"| `{archs[i].replace('|', chr(92) + '|')}` | {table[i][0]:.2f} | {table[i][1]:.2f} | {table[i][2]:.2f} |" for i in front],
        "",
        "For comparison (the paper's rows, mean of 3 runs; see search_paper_scale.md):",
        "",
    ]
    for proxy, rows in PAPER_ROWS.items():
        for label, values in rows.items():
            lines.append(f"- {label}, {proxy}: {fmt(values)} (margin {float(np.min(np.array(values) - target)):+.2f})")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
