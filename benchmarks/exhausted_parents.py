"""Where do a constrained llm run's duplicates come from? Replays stored runs; scores nothing.

With ``exclude_evaluated`` the per-parent grammar leaves out every edit whose child was
evaluated, so a duplicate can only come from a parent all of whose children were evaluated
(an "exhausted" parent). This script replays each run's committed trials through the
strategy (population and evaluated cells exactly as the run had them) and reports, per run:
duplicates, how many had an exhausted parent, how often an exhausted parent was drawn, and
how many population members still had an unseen child at each duplicate, i.e. whether
drawing another parent (``redraw_exhausted``) could have found one.

    python benchmarks/exhausted_parents.py RUNS/synflow-llm-fused_lean-seed0 ... --out benchmarks/results/exhausted_parents

(RUNS: the ``--runs`` folder of ``rznas bench search-quality``.)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rznas.search.config import SearchConfig
from rznas.search.edits import edit_format
from rznas.search.runner import stored_settings
from rznas.search.strategy import Evolution
from rznas.store import RunStore
from rznas.trial import TrialState


def replay_run(run_dir: Path) -> dict[str, Any]:
    """The duplicate and exhaustion counts of one stored run (see the module docstring)."""
    store = RunStore.open(run_dir)
    try:
        settings = stored_settings(store.config())
        trials = store.trials()
    finally:
        store.close()
    config = SearchConfig.from_dict(settings)
    space = config.make_space()
    edits = edit_format(space)
    strategy = Evolution(space, population_size=config.population, iterations=config.iterations, seed=config.seed)
    exhausted_draws = 0
    duplicates: list[dict[str, Any]] = []
    for trial in trials:
        if trial.iteration > 0:
            parent = next(m for m in strategy.population if m.number == trial.parent_number)
            exhausted = edits.exhausted(parent.arch, strategy.evaluated.keys())
            exhausted_draws += exhausted
            if trial.state is TrialState.DUPLICATE:
                free = sum(not edits.exhausted(m.arch, strategy.evaluated.keys()) for m in strategy.population)
                duplicates.append({"iteration": trial.iteration, "parent_exhausted": exhausted, "members_with_unseen_child": free})
        strategy.replay(trial)
    free = [d["members_with_unseen_child"] for d in duplicates]
    return {
        "run": run_dir.name,
        "iterations": strategy.iteration,
        "population": config.population,
        "exclude_evaluated": settings.get("exclude_evaluated"),
        "redraw_exhausted": settings.get("redraw_exhausted"),
        "duplicates": len(duplicates),
        "duplicates_with_exhausted_parent": sum(d["parent_exhausted"] for d in duplicates),
        "exhausted_parents_drawn": exhausted_draws,
        "first_duplicate_iteration": duplicates[0]["iteration"] if duplicates else None,
        "members_with_unseen_child_at_duplicates": [min(free), max(free)] if free else None,
    }


def markdown(rows: list[dict[str, Any]], command: str) -> str:
    lines = [
        "# Duplicates of constrained llm runs: exhausted parents",
        "",
        "A parent is exhausted when every one of its edits leads to a cell the run had already evaluated; "
        "replayed from each run's committed trials (no scoring).",
        "",
        f"Command: `{command}`",
        "",
        "| run | iterations | duplicates | of them with an exhausted parent | exhausted parents drawn | first duplicate (iteration) | members with an unseen child at the duplicates (of the population) | redraw_exhausted |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        free = r["members_with_unseen_child_at_duplicates"]
        members = f"{free[0]}-{free[1]} of {r['population']}" if free else "-"
        lines.append(
            f"| {r['run']} | {r['iterations']} | {r['duplicates']} ({100 * r['duplicates'] / max(r['iterations'], 1):.1f}%) | "
            f"{r['duplicates_with_exhausted_parent']} | {r['exhausted_parents_drawn']} | {r['first_duplicate_iteration'] or '-'} | "
            f"{members} | {r['redraw_exhausted']} |"
        )
    return "\n".join(lines) + "\n"


REPO_ROOT = Path(__file__).resolve().parent.parent


def portable_command(runs: list[Path], out: Path) -> str:
    """The command as a reader can rerun it: runs as ``RUNS/<name>``, ``--out`` relative to the repository."""
    resolved = out.resolve()
    shown_out = resolved.relative_to(REPO_ROOT) if resolved.is_relative_to(REPO_ROOT) else out
    return " ".join(
        ["python benchmarks/exhausted_parents.py", *(f"RUNS/{run.resolve().name}" for run in runs), "--out", str(shown_out)]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (each holding run.sqlite)")
    parser.add_argument("--out", type=Path, required=True, help="output path without suffix (.json and .md are written)")
    args = parser.parse_args(argv)
    rows = [replay_run(run) for run in args.runs]
    command = portable_command(args.runs, args.out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"command": command, "runs": rows}, indent=2) + "\n", encoding="utf-8")
    args.out.with_suffix(".md").write_text(markdown(rows, command), encoding="utf-8")
    print(markdown(rows, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
