"""Wall-clock of an NB201 search against a slow OpenAI-compatible server: sequential vs concurrent.

A FakeOpenAIServer on 127.0.0.1 answers every chat completion after a fixed delay (2 s by
default). Mutation replies are valid mutations generated deterministically from the request
(the parent is parsed from the user message and one edge is changed, seeded by a hash of the
request); reflection replies are a short sentence; with --fused-reflection the mutation reply
also carries a "reflection" field. Every row runs the same number of evaluations (population
+ iterations) with the score cache off, through the real `openai` SDK and rznas's LLM stack.

    python benchmarks/concurrency_wallclock.py --iterations 200 --delay 2 \
        --out benchmarks/results/concurrency_wallclock

writes concurrency_wallclock.{json,md} (with the exact command) and the run directories.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from rznas.llm.fake_server import FakeOpenAIServer
from rznas.search.config import SearchConfig
from rznas.search.progress import Progress
from rznas.search.runner import SearchRun
from rznas.spaces import get_space

MARKER = "Mutate the below architecture.\n"
ADVICE = "Convolutions on the edges into node 3 raised the score; avoid none on 0->3."


def reply(body: dict[str, Any]) -> str:
    """A deterministic 'LLM': one-edge mutation of the parent named in the request."""
    messages = body.get("messages") or []
    last = str(messages[-1].get("content", "")) if messages else ""
    if last.startswith("Reflection task"):
        return ADVICE
    space = get_space("nb201")
    parent = None
    for message in reversed(messages):
        content = str(message.get("content", ""))
        if message.get("role") == "user" and MARKER in content:
            parent = json.loads(content.split(MARKER, 1)[1].strip())["arch"]
            break
    if parent is None:
        return "no parent found"
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    child = space.mutate(space.decode(parent), random.Random(digest))
    out = {"arch": space.encode(child), "thinking": "changed one edge"}
    if "Outcome of your previous mutation" in last:
        out["reflection"] = ADVICE
    return json.dumps(out)


ROWS = {
    "sequential (paper loop: mutate + reflect calls)": {"concurrency": 1},
    "concurrency 8": {"concurrency": 8},
    "concurrency 8 + fused reflection": {"concurrency": 8, "fused_reflection": True},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--population", type=int, default=20)
    parser.add_argument("--delay", type=float, default=2.0, help="server delay per call (s)")
    parser.add_argument("--proxy", default="synflow")
    parser.add_argument("--rows", default=",".join(str(i) for i in range(len(ROWS))), help="row indices to run")
    parser.add_argument("--out", default="benchmarks/results/concurrency_wallclock")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    with FakeOpenAIServer(reply=reply, delay_s=args.delay) as server:
        for index in [int(i) for i in args.rows.split(",")]:
            name, changes = list(ROWS.items())[index]
            run_dir = out / f"run{index}"
            shutil.rmtree(run_dir, ignore_errors=True)
            config = SearchConfig(
                space="nb201", proxy=args.proxy, proposer="llm", llm="openai:gpt-4o", llm_base_url=server.base_url,
                population=args.population, iterations=args.iterations, seed=0, score_cache="none", **changes,
            )
            start = time.perf_counter()
            run = SearchRun.start(config, run_dir, progress=Progress(enabled=False))
            try:
                result = run.run()
                trials = run.store.trials()
            finally:
                run.close()
            wall = time.perf_counter() - start
            evaluations = sum(1 for t in trials if t.state.value in ("complete", "over_budget", "proxy_error"))
            row = {
                "row": name,
                "settings": changes,
                "wall_s": round(wall, 1),
                "trials": len(trials),
                "iterations": sum(1 for t in trials if t.iteration > 0),
                "evaluations": evaluations,
                "states": {s: sum(1 for t in trials if t.state.value == s) for s in sorted({t.state.value for t in trials})},
                "best_score": result.best.score if result.best else None,
                "tokens": result.usage,
            }
            results.append(row)
            print(json.dumps({k: row[k] for k in ("row", "wall_s", "trials", "evaluations", "best_score")}), flush=True)
    base = results[0]["wall_s"] if results and results[0]["settings"].get("concurrency") == 1 else None
    command = "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    payload = {"command": command, "delay_s": args.delay, "population": args.population,
               "iterations": args.iterations, "proxy": args.proxy, "rows": results}
    (out.parent / f"{out.name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [
        f"# NB201 search wall-clock against a {args.delay:g} s-latency OpenAI-compatible server",
        "",
        f"`{command}`",
        "",
        f"population {args.population}, {args.iterations} iterations, proxy {args.proxy}, score cache off, "
        "inline evaluation, one shared 2-core machine (other jobs running).",
        "",
        "| row | wall (s) | speed-up | trials | evaluations | LLM calls | tokens in / out per iteration | est. GPT-4o $ / iteration |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in results:
        t, per = row["tokens"], row["tokens"].get("per_iteration", {})
        speed = f"{base / row['wall_s']:.1f}x" if base else "-"
        lines.append(
            f"| {row['row']} | {row['wall_s']:.0f} | {speed} | {row['trials']} | {row['evaluations']} | {t.get('calls')} | "
            f"{per.get('input_tokens', 0):.0f} / {per.get('output_tokens', 0):.0f} | {per.get('cost_usd', 0):.5f} |"
        )
    (out.parent / f"{out.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
