"""Combine the committed correlation runs into one table beside the published values.

Reads every `correlation-*.json` summary in a folder (written by `rznas bench
correlation`) and writes SUMMARY.md: Spearman rho per proxy (or ensemble) and dataset,
the sample size, the published rho from ../shared/reference/BASELINES.md and the
difference, then the top-region metrics (tau inside the 10% most accurate cells, test
accuracy of the top-1 / top-10 / top-1% picks) with the bootstrap intervals the harness
computed.

    python benchmarks/correlation_summary.py benchmarks/results/correlation
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from scipy import stats

# BASELINES.md: zero-cost-nas notebook (Abdelfattah et al., ICLR 2021), all 15,625 cells;
# NASWOT, ZiCo and MeCo from their own papers (approximate).
PUBLISHED = {
    "grad_norm": (0.594, 0.637, 0.578),
    "snip": (0.596, 0.637, 0.578),
    "grasp": (0.514, 0.547, 0.549),
    "fisher": (0.360, 0.385, 0.327),
    "synflow": (0.737, 0.763, 0.751),
    "jacob_cov": (0.731, 0.704, 0.701),
    "params": (0.752, 0.727, 0.691),
    "flops": (0.752, 0.727, 0.691),
    "naswot": (0.78, 0.80, 0.77),
    "zico": (0.80, 0.81, 0.79),
    "az_complexity": (0.752, 0.727, 0.691),  # = flops
    "meco": (0.89, None, None),  # MeCo paper, CIFAR-10
}
DATASETS = ("cifar10", "cifar100", "imagenet16")
TOLERANCE = 0.05
BOOTSTRAP_ROUNDS = 1000
#: ensembles whose members were chosen by benchmarks/ensemble_ceiling.py with the accuracies of these same
#: CIFAR-10 cells (best held-out rho, best in-sample top-10): their rows are optimistic and marked '*'
SELECTED_ON_THESE_CELLS = {
    "zc_trio": "rho",
    "jacob_cov+synflow+zen": "top-10 accuracy",
    "az_expressivity+az_progressivity+az_trainability+jacob_cov+meco+swap+synflow+zen": "rho on the even half",
    "az_trainability+meco+swap+synflow+zen": "top-10 accuracy",
}
DEFAULT_REFERENCE = 256  # ensembles ranked against another reference size get their own rows


def load_records(jsonl: Path) -> list[dict]:
    """The architecture records of a `rznas bench correlation` JSONL log, in sample order."""
    lines = jsonl.read_text(encoding="utf-8").splitlines()[1:]
    return sorted((json.loads(line) for line in lines if line.strip()), key=lambda r: r["index"])


def failure_ranks(rows: list[dict], proxy: str) -> np.ndarray:
    """Ranks of the proxy's scores, failed scores tied below every success (as the harness ranks them)."""
    return stats.rankdata([r["scores"][proxy] if r["scores"].get(proxy) is not None else -np.inf for r in rows])


def bootstrap_rhos(rankings: list[np.ndarray], y: np.ndarray, rounds: int, seed: int = 0) -> np.ndarray:
    """Spearman rho of each ranking vs ``y`` on the same resampled architectures: shape (rounds, len(rankings))."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(rounds):
        pick = rng.integers(0, len(y), len(y))
        values.append([stats.spearmanr(x[pick], y[pick]).statistic for x in rankings])
    return np.array(values)


def bootstrap_interval(jsonl: Path, proxy: str, rounds: int = BOOTSTRAP_ROUNDS, seed: int = 0) -> tuple[float, float]:
    """95% interval of Spearman rho over resamples of the scored architectures (failures rank lowest)."""
    rows = load_records(jsonl)
    rhos = bootstrap_rhos([failure_ranks(rows, proxy)], np.array([r["test_acc"] for r in rows]), rounds, seed)
    low, high = np.percentile(rhos[:, 0], [2.5, 97.5])
    return float(low), float(high)


TOP_METRICS = (("tau_top10pct", 3), ("top1_acc", 2), ("top10_acc", 2), ("top1pct_acc", 2))


def _metric(region: dict, metric: str, digits: int) -> str:
    value = region["values"].get(metric)
    if value is None:
        return "n/a"
    interval = (region.get("intervals") or {}).get(metric)
    text = f"{value:.{digits}f}"
    return text + (f" [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]" if interval else "")


def top_region_tables(cells: dict[tuple[str, str], dict], proxies: list[str]) -> list[str]:
    """One table per dataset: the top-region metrics of every proxy and ensemble, best top-10 first."""
    lines = [
        "",
        "## Top region: how each proxy orders the best cells",
        "",
        "tau top 10%: Kendall tau with test accuracy inside the 10% most accurate sampled cells; "
        "top-k acc: mean test accuracy (%) of the k best-scored cells (top-1% of N = 1000 is k = 10; "
        "a tie group across the cut counts at its mean; failed scores rank lowest). Brackets: 95% "
        "bootstrap interval over resamples of the N cells (seed 0). Rows sorted by top-10 accuracy. "
        "Ensembles use a reference of 256 cells (the first 256 of the sample; no accuracies) unless marked R=1000. "
        "'*': members chosen with the CIFAR-10 accuracies of these cells ("
        + "; ".join(f"{name}: best {what}" for name, what in SELECTED_ON_THESE_CELLS.items())
        + ", see ENSEMBLE_CEILING.md), so optimistic.",
    ]
    for dataset in DATASETS:
        rows = [(p, cells[(p, dataset)]) for p in proxies if (p, dataset) in cells and cells[(p, dataset)]["top_region"]]
        if not rows:
            continue
        rows.sort(key=lambda item: -(item[1]["top_region"]["values"]["top10_acc"] or 0.0))
        oracle = next((c["oracle"] for _, c in rows if c["oracle"]), None)
        lines += ["", f"### {dataset}", ""]
        if oracle:
            lines.append(
                f"Oracle (the most accurate cells of the N = 1000 sample): top-1 {oracle['top1_acc']:.2f}, "
                f"top-10 {oracle['top10_acc']:.2f}, top-1% {oracle['top1pct_acc']:.2f}; sample mean {oracle['mean_acc']:.2f}."
            )
            lines.append("")
        lines += [
            "| proxy | N | rho | tau top 10% | top-1 acc | top-10 acc | top-1% acc |",
            "|---|---|---|---|---|---|---|",
        ]
        for proxy, cell in rows:
            region = cell["top_region"]
            values = [_metric(region, metric, digits) for metric, digits in TOP_METRICS]
            mark = "*" if proxy in SELECTED_ON_THESE_CELLS else ""
            lines.append(f"| {proxy}{mark} | {cell['n']} | {cell['rho']:.3f} | " + " | ".join(values) + " |")
    return lines


def main(folder: str) -> int:
    root = Path(folder)
    cells: dict[tuple[str, str], dict] = {}
    for path in sorted(root.glob("correlation-*.json")):
        summary = json.loads(path.read_text())
        for name, entry in summary["results"].items():
            size = entry.get("ensemble", {}).get("reference", {}).get("size", DEFAULT_REFERENCE)
            proxy = name if size == DEFAULT_REFERENCE else f"{name} (R={size})"  # a non-default reference is its own row
            earlier = cells.get((proxy, summary["dataset"]))
            if earlier is not None and earlier["n"] >= entry["n"]:
                continue  # the largest sample of a proxy on a dataset is the one reported
            cells[(proxy, summary["dataset"])] = {
                "rho": entry["spearman_rho"]["failures_lowest"],
                "n": entry["n"],
                "failed": entry["failed"],
                "probe": summary["probe"]["source"],
                "command": summary["command"],
                "jsonl": path.with_suffix(".jsonl"),
                "top_region": entry.get("top_region"),
                "ensemble": "ensemble" in entry,
                "oracle": summary.get("top_region", {}).get("oracle"),
            }
    proxies = sorted({p for p, _ in cells})
    lines = [
        "# Zero-cost proxies on NAS-Bench-201: Spearman rho vs published",
        "",
        "Spearman rho with 200-epoch test accuracy (failed scores ranked lowest); N = architectures "
        f"scored; published = BASELINES.md. 'ok': within {TOLERANCE} of the published value.",
        "Generated by `python benchmarks/correlation_summary.py benchmarks/results/correlation` from the "
        "runs listed below.",
        "",
        "| proxy | " + " | ".join(f"{d} rho (N) | published | diff" for d in DATASETS) + " |",
        "|---|" + "---|---|---|" * len(DATASETS),
    ]
    for proxy in proxies:
        row = [proxy]
        for index, dataset in enumerate(DATASETS):
            cell = cells.get((proxy, dataset))
            published = PUBLISHED.get(proxy, (None, None, None))[index]
            if cell is None or cell["rho"] is None:
                row += ["not run", "-" if published is None else f"{published:.3f}", "-"]
                continue
            rho = cell["rho"]
            row.append(f"{rho:.3f} ({cell['n']})")
            if published is None:
                row += ["-", "-"]
            else:
                diff = rho - published
                mark = " ok" if abs(diff) <= TOLERANCE else ""
                row += [f"{published:.3f}", f"{diff:+.3f}{mark}"]
        lines.append("| " + " | ".join(row) + " |")
    lines += [
        "",
        f"Sampling uncertainty: 95% bootstrap interval of each rho ({BOOTSTRAP_ROUNDS} resamples of the N "
        "scored architectures, seed 0); the published values are over all 15,625 cells.",
        "",
        "| proxy | " + " | ".join(DATASETS) + " |",
        "|---|" + "---|" * len(DATASETS),
    ]
    for proxy in proxies:
        row = [proxy]
        for dataset in DATASETS:
            cell = cells.get((proxy, dataset))
            if cell is None or cell["rho"] is None:
                row.append("-")
                continue
            if cell["ensemble"]:
                # an ensemble's per-cell values are not in the JSONL: the harness bootstrapped them
                # with the same resampling (default_rng(0), one draw of N cells per round)
                low, high = cell["top_region"]["intervals"]["spearman_rho"]
            else:
                low, high = bootstrap_interval(cell["jsonl"], proxy)
            row.append(f"[{low:.3f}, {high:.3f}]")
        lines.append("| " + " | ".join(row) + " |")
    lines += top_region_tables(cells, proxies)
    lines += ["", "Runs:", ""]
    for command, probe in sorted({(c["command"], c["probe"]) for c in cells.values()}):
        lines.append(f"- `{command}` (probe data: {probe})")
    (root / "SUMMARY.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/correlation"))
