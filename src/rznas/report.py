"""Result files of a run, built from its run store only (never from live objects).

``best_arch.json`` ({"arch", "score", "proxy", "benchmark", ...}), ``trials.csv`` and
``trials.jsonl`` (every trial), ``progress.png`` (best and median population score per
iteration) and ``validity.png`` (valid-proposal rate per iteration).
"""
from __future__ import annotations

import csv
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

from .trial import TrialState


class RunRecords(Protocol):
    """What a report reads from a run: a :class:`rznas.store.RunStore` or a read-only
    :class:`rznas.run_reader.RunReader`."""

    def config(self) -> dict[str, Any]: ...
    def trial_rows(self) -> list[dict[str, Any]]: ...
    def llm_calls(self) -> list[dict[str, Any]]: ...
    def usage(self) -> dict[str, float]: ...
    def meta(self, key: str, default: Any = None) -> Any: ...
    def final_candidates(self, settings_key: str) -> list[Any]: ...


CSV_COLUMNS = [
    "number",
    "iteration",
    "state",
    "score",
    "encoded",
    "arch_id",
    "reason",
    "parent_number",
    "parent_id",
    "parent_score",
    "thinking",
    "total_s",
]


def _valid(row: dict[str, Any]) -> bool:
    """Whether a trial's proposal was an architecture of the space (see TrialState)."""
    return TrialState(row["state"]).valid_proposal


@dataclass(frozen=True)
class IterationStats:
    """The population after one iteration (0 = the initial population)."""

    iteration: int
    best: float | None
    median: float | None
    valid_rate: float | None  # cumulative over evolution iterations
    valid: bool | None  # this iteration's proposal (None for iteration 0)


def population_series(rows: list[dict[str, Any]], population_size: int) -> list[IterationStats]:
    """Best/median population score and valid-proposal rate after every iteration.

    The population after any trial equals the ``population_size`` best COMPLETE trials so
    far (adding one member and dropping the worst keeps the top N), ties kept newest first
    as the strategy does.
    """
    complete: list[tuple[float, int]] = []
    stats: list[IterationStats] = []
    proposals = valid = 0
    for i, row in enumerate(rows):
        if row["state"] == "complete":
            complete.append((row["score"], row["number"]))
        if row["iteration"] > 0:
            proposals += 1
            valid += _valid(row)
        if i + 1 < len(rows) and rows[i + 1]["iteration"] == row["iteration"]:
            continue  # emit once per iteration, after its last trial
        top = sorted(complete, reverse=True)[:population_size]
        scores = [score for score, _ in top]
        stats.append(
            IterationStats(
                iteration=row["iteration"],
                best=max(scores) if scores else None,
                median=statistics.median(scores) if scores else None,
                valid_rate=valid / proposals if proposals else None,
                valid=_valid(row) if row["iteration"] > 0 else None,
            )
        )
    return stats


def best_trial(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The best COMPLETE trial (ties: the earliest), i.e. the best population member."""
    complete = [r for r in rows if r["state"] == "complete"]
    return max(complete, key=lambda r: (r["score"], -r["number"])) if complete else None


def write_exports(rows: list[dict[str, Any]], run_dir: Path) -> None:
    """trials.csv (flat) and trials.jsonl (every stored field)."""
    with open(run_dir / "trials.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "total_s": row["timings"].get("total_s")})
    with open(run_dir / "trials.jsonl", "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, sort_keys=True) + "\n")


def write_plots(series: list[IterationStats], run_dir: Path, title: str) -> list[Path]:
    """progress.png and validity.png (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    xs = [s.iteration for s in series if s.best is not None]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(xs, [s.best for s in series if s.best is not None], label="best")
    ax.plot(xs, [s.median for s in series if s.best is not None], label="median")
    ax.set_xlabel("iteration")
    ax.set_ylabel("proxy score")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(run_dir / "progress.png", dpi=100)
    plt.close(fig)
    written.append(run_dir / "progress.png")

    evolve = [s for s in series if s.iteration > 0]
    fig, ax = plt.subplots(figsize=(7, 4))
    if evolve:
        window = max(1, min(50, len(evolve) // 5 or 1))
        flags = [1.0 if s.valid else 0.0 for s in evolve]
        rolling = [sum(flags[max(0, i - window + 1) : i + 1]) / len(flags[max(0, i - window + 1) : i + 1]) for i in range(len(flags))]
        ax.plot([s.iteration for s in evolve], [100 * (s.valid_rate or 0) for s in evolve], label="cumulative")
        ax.plot([s.iteration for s in evolve], [100 * r for r in rolling], label=f"last {window}", alpha=0.7)
        ax.legend()
    ax.set_ylim(0, 105)
    ax.set_xlabel("iteration")
    ax.set_ylabel("valid proposals (%)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(run_dir / "validity.png", dpi=100)
    plt.close(fig)
    written.append(run_dir / "validity.png")
    return written


def token_summary(calls: list[dict[str, Any]], iterations: int) -> dict[str, Any]:
    """Tokens, calls and estimated cost of every LLM call the search's trials used (cache hits
    included: what the search costs), in total and per evolution iteration."""
    unpriced = any(c["cost_usd"] is None for c in calls)
    total = {
        "calls": len(calls),
        "input_tokens": sum(int(c["input_tokens"]) for c in calls),
        "output_tokens": sum(int(c["output_tokens"]) for c in calls),
        # None: unknown (a model without a price), never a false $0
        "cost_usd": None if unpriced else sum(float(c["cost_usd"]) for c in calls),
    }
    per = {key: (value / iterations if iterations and value is not None else None) for key, value in total.items()}
    by_purpose: dict[str, int] = {}
    for call in calls:
        by_purpose[call["purpose"]] = by_purpose.get(call["purpose"], 0) + 1
    return {**total, "iterations": iterations, "per_iteration": per, "calls_by_purpose": by_purpose}


def selection_summary(
    store: RunRecords,
    config: dict[str, Any],
    proxy_best: dict[str, Any] | None,
    benchmark: Callable[[dict[str, Any]], dict[str, Any]] | None,
) -> dict[str, Any]:
    """How the returned architecture was chosen: ``{"method": "proxy"}``, or the final selection's
    settings, every candidate's short-training result (with its benchmark accuracy) and the choice."""
    state = store.meta("final_selection")
    wanted = int(config.get("final_train_top") or 0)
    if not state:
        if wanted:
            return {"method": "proxy", "final_selection": "not run: the evolution did not finish"}
        return {"method": "proxy"}
    candidates = [c.to_dict() for c in store.final_candidates(state["key"])]
    order = {arch_id: i for i, arch_id in enumerate(state["candidates"])}
    candidates = sorted((c for c in candidates if c["arch_id"] in order), key=lambda c: order[c["arch_id"]])
    if benchmark is not None:
        for candidate in candidates:
            candidate["benchmark"] = benchmark({"arch_json": json.dumps(candidate["arch"])})
    summary: dict[str, Any] = {
        "method": "final_training" if state["status"] == "done" else "proxy",
        "settings": state["settings"],
        "status": state["status"],
        "candidates": candidates,
        "seconds": sum(c["seconds"] for c in candidates),
        "proxy_best": {"arch": proxy_best["encoded"], "arch_id": proxy_best["arch_id"], "score": proxy_best["score"]}
        if proxy_best else None,
        "selected": None,
    }
    if state["status"] == "done":
        chosen = next(c for c in candidates if c["arch_id"] == state["selected"])
        summary["selected"] = {k: chosen[k] for k in ("arch_id", "encoded", "rank", "score", "val_acc", "train_acc")}
    else:
        summary["final_selection"] = "interrupted: resume the run to finish it"
    return summary


def write_report(
    store: RunRecords,
    run_dir: str | Path,
    *,
    benchmark: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write every result file of the run in ``run_dir``; returns best_arch.json's content.

    ``benchmark`` maps the best trial row to ground-truth accuracies (or a skip reason).
    """
    run_dir = Path(run_dir)
    config = store.config()
    rows = store.trial_rows()
    write_exports(rows, run_dir)
    best = best_trial(rows)
    selection = selection_summary(store, config, best, benchmark)
    if selection.get("selected") is not None:  # short training chose another candidate than the proxy
        best = next(r for r in rows if r["arch_id"] == selection["selected"]["arch_id"])
    summary: dict[str, Any] = {
        "arch": best["encoded"] if best else None,
        "score": best["score"] if best else None,
        "proxy": config["proxy"],
        "benchmark": benchmark(best) if (best and benchmark) else {},
        "selection": selection,
        # the settings of the final selection that chose "arch" (null: the proxy's best)
        "final_selection": selection["settings"] if selection["method"] == "final_training" else None,
        "space": config["space"],
        "arch_id": best["arch_id"] if best else None,
        "genotype": json.loads(best["arch_json"])["genotype"] if best else None,
        "trial": best["number"] if best else None,
        "iteration": best["iteration"] if best else None,
        "proposer": config["proposer"],
        "llm": config["llm"] if config["proposer"] == "llm" else None,
        "seed": config["seed"],
        "trials": len(rows),
        # parents drawn again because every child of theirs was already evaluated (llm, edit replies)
        "parent_redraws": int(store.meta("parent_redraws", 0)),
        "usage": store.usage(),
        "tokens": token_summary(store.llm_calls(), sum(1 for r in rows if r["iteration"] > 0)),
        "concurrency": config.get("concurrency", 1),
        "fused_reflection": config.get("fused_reflection", False),
        "executor": config.get("executor", "inline"),
    }
    with open(run_dir / "best_arch.json", "w", encoding="utf-8") as handle:
        json.dump(summary, handle, indent=2)
        handle.write("\n")
    series = population_series(rows, int(config["population"]))
    if series:
        try:
            write_plots(series, run_dir, f"{config['space']} / {config['proxy']} / {config['proposer']} (seed {config['seed']})")
        except ImportError as exc:
            print(f"rznas: warning: plots skipped, matplotlib is not installed ({exc})", file=sys.stderr)
    return summary
