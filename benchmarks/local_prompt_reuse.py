"""Embedded-model latency per search iteration with one llama.cpp context vs one per prompt family.

Sends the prompts an NB201 search sends (mutation with the in-context example, reflection
notes and the schema-constrained reply; then reflection), alternating, through
`LocalLlamaClient` with `context_slots=1` and `context_slots=2`, in one process, same
prompts and seeds. Reports the prompt tokens llama.cpp evaluated (its perf counters) and
the seconds per iteration, first iteration (cold) excluded.

    python benchmarks/local_prompt_reuse.py --iterations 6 --out benchmarks/results/local_prompt_reuse
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import llama_cpp

from rznas.llm import local_backend
from rznas.proxies import get_proxy
from rznas.search.memory import Note
from rznas.search.prompt import MutationPrompt, ReflectionPrompt, mutation_schema
from rznas.spaces import get_space

PARENT = "|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|nor_conv_1x1~0|avg_pool_3x3~1|skip_connect~2|"
REFLECTION_SCHEMA = {"type": "object", "properties": {"advice": {"type": "string", "maxLength": 300}}, "required": ["advice"]}


def measure(slots: int, iterations: int, proxy: str) -> dict:
    space = get_space("nb201")
    mutation = MutationPrompt(space, get_proxy(proxy))
    reflection = ReflectionPrompt(mutation)
    schema = mutation_schema(space, constrain=True)
    client = local_backend.LocalLlamaClient(context_slots=slots, seed=0)
    notes = [Note(i, f"keep nor_conv_3x3 on edge {i}; avoid none into the last node; try 1x1 convs where pools sit")
             for i in range(3)]
    evaluated = seconds = 0.0
    for step in range(iterations):
        calls = [
            (mutation.messages(PARENT, 700.0 + step, notes[: step % 3 + 1]), schema, 90),
            (reflection.messages(parent=PARENT, parent_score=700.0, child=PARENT, outcome="complete",
                                 child_score=701.0 + step, exception=""), REFLECTION_SCHEMA, 70),
        ]
        for messages, call_schema, max_tokens in calls:
            started = time.perf_counter()
            completion = client.complete(messages, temperature=0.0, max_tokens=max_tokens, json_schema=call_schema)
            elapsed = time.perf_counter() - started
            loaded = client.context(completion.extra["slot"])
            perf = llama_cpp.llama_perf_context(loaded.llama._ctx.ctx)
            llama_cpp.llama_perf_context_reset(loaded.llama._ctx.ctx)
            if step > 0:  # the first iteration fills the caches
                evaluated += perf.n_p_eval
                seconds += elapsed
    measured = iterations - 1
    return {"context_slots": slots, "iterations_timed": measured,
            "prompt_tokens_evaluated_per_iteration": evaluated / measured,
            "seconds_per_iteration": seconds / measured}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=6)
    parser.add_argument("--proxy", default="zico")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/local_prompt_reuse"))
    args = parser.parse_args()
    if args.iterations < 2:
        raise SystemExit("--iterations must be >= 2 (the first one is not timed)")
    rows = [measure(slots, args.iterations, args.proxy) for slots in (1, 2)]
    speedup = rows[0]["seconds_per_iteration"] / rows[1]["seconds_per_iteration"]
    command = "python benchmarks/local_prompt_reuse.py " + " ".join(sys.argv[1:])
    payload = {"command": command, "proxy": args.proxy, "threads": local_backend.default_threads(),
               "platform": platform.platform(), "rows": rows, "speedup": speedup}
    lines = [
        "# Embedded model: one llama.cpp context vs one per prompt family",
        "",
        f"Command: `{command}`. NB201 {args.proxy} mutation (constrained) and reflection prompts, alternating, "
        f"SmolLM2-135M, {payload['threads']} llama.cpp thread(s); first iteration not timed.",
        "",
        "| context slots | prompt tokens evaluated / iteration | seconds / iteration |",
        "|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(f"| {row['context_slots']} | {row['prompt_tokens_evaluated_per_iteration']:.0f} | "
                     f"{row['seconds_per_iteration']:.2f} |")
    lines += ["", f"Speed-up of 2 slots over 1: {speedup:.2f}x."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
