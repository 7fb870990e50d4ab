"""Run a short search from Python, read its run directory back and rescore the winner.

    python examples/search_and_inspect.py [RUN_DIR]

A random-mutation search on NAS-Bench-201 scored by synflow on synthetic images: no LLM,
no data set, about a minute on one CPU core. Use proposer="llm" (and llm="openai:gpt-4o",
...) for RZ-NAS proper.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import rznas


def main(run_dir: Path) -> None:
    run = rznas.run_search(
        space="nb201", proxy="synflow", proposer="random", population=6, iterations=6, seed=0,
        batch_size=16, out=run_dir,
    )
    print(run)
    states: dict[str, int] = {}
    for trial in run.trials:
        states[trial.state.value] = states.get(trial.state.value, 0) + 1
    print("trial states:", ", ".join(f"{state} {count}" for state, count in sorted(states.items())))

    again = rznas.load_run(run_dir)  # what any later session (or a crashed run) reads
    assert again.best_encoded == run.best_encoded

    for row in rznas.score(run.best_encoded, ["params", "flops", "synflow"], data="gaussian", batch_size=16):
        unit = f" {row.unit}" if row.unit else ""
        print(f"{row.proxy:8s} {row.value:.6g}{unit}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="rznas-example-")) / "run")
