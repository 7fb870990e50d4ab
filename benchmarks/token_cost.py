"""Tokens and estimated GPT-4o cost per iteration of the prompts rznas actually sends, vs the paper.

Requests are built by rznas's own prompt code (MutationPrompt / ReflectionPrompt) for NB201
with a full reflection memory (2 recent + 1 useful notes of the maximum 300 characters) and
counted with the tokenizer-free estimate the fake server and the scripted backend report
(rznas.llm.tokens: ceil(characters / 4) per message + 4 per message). Output tokens are the
configured caps (mutate_max_tokens, reflect_max_tokens; fused: their sum): an upper bound.
Prices: gpt-4o list price $2.50 / 1M input, $10.00 / 1M output, $1.25 / 1M cached input
(OpenAI prompt caching: automatic for prompts >= 1024 tokens, cached in 128-token steps of a
byte-identical prefix; rznas puts the static system message and the example first).

    python benchmarks/token_cost.py --out benchmarks/results/token_cost
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rznas.llm.tokens import approx_prompt_tokens
from rznas.proxies import get_proxy
from rznas.search.config import SearchConfig
from rznas.search.memory import Note
from rznas.search.prompt import MutationPrompt, PreviousOutcome, PromptOptions, ReflectionPrompt
from rznas.spaces import get_space

PRICE_IN, PRICE_CACHED, PRICE_OUT = 2.50e-6, 1.25e-6, 10.00e-6
PAPER_IN, PAPER_OUT, PAPER_SEARCH_USD, PAPER_ITERATIONS = (2300, 2600), (150, 200), 75.0, 1500
PARENT = "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|nor_conv_1x1~1|skip_connect~2|"
CHILD = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|+|avg_pool_3x3~0|nor_conv_1x1~1|skip_connect~2|"


def cacheable(prefix_tokens: int) -> int:
    """Tokens of a byte-identical prefix that OpenAI serves from its prompt cache."""
    return 0 if prefix_tokens < 1024 else prefix_tokens - prefix_tokens % 128


def row(space: str, proxy: str, *, fused: bool, lean: bool) -> dict:
    cfg = SearchConfig()
    note_text = ("x" * (cfg.note_max_chars - 1)).strip()
    notes = [Note(i, note_text) for i in range(cfg.memory_recent + cfg.memory_useful)]
    prompt = MutationPrompt(get_space(space), get_proxy(proxy), PromptOptions(fused_reflection=fused, lean=lean))
    step = PreviousOutcome(PARENT, 41.5, CHILD, "complete", 42.25, "")
    calls = [prompt.messages(PARENT, 41.5, notes, step if fused else None)]
    out_caps = [cfg.mutate_max_tokens + (cfg.reflect_max_tokens if fused else 0)]
    if not fused:
        calls.append(ReflectionPrompt(prompt).messages(parent=PARENT, parent_score=41.5, child=CHILD,
                                                       outcome="complete", child_score=42.25, exception=""))
        out_caps.append(cfg.reflect_max_tokens)
    tokens_in = sum(approx_prompt_tokens(m) for m in calls)
    prefix = approx_prompt_tokens(list(prompt.prefix))
    reflection_prefix = approx_prompt_tokens(calls[1][:1]) if not fused else 0
    cached = cacheable(prefix) + cacheable(reflection_prefix)
    out = sum(out_caps)
    cost = tokens_in * PRICE_IN + out * PRICE_OUT
    cost_cached = cached * PRICE_CACHED + (tokens_in - cached) * PRICE_IN + out * PRICE_OUT
    name = ("fused reflection" if fused else "mutate + reflect calls (paper)") + (", lean prompt" if lean else "")
    return {"space": space, "proxy": proxy, "setting": name, "calls": len(calls), "input_tokens": tokens_in,
            "static_prefix_tokens": prefix, "cached_tokens": cached, "output_tokens_cap": out,
            "usd_per_iteration": cost, "usd_per_iteration_cached": cost_cached}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--proxies", default="synflow,zico")
    parser.add_argument("--measured", default="benchmarks/results/concurrency_wallclock.json",
                        help="wall-clock benchmark results whose fake-server token counts are listed too")
    parser.add_argument("--out", default="benchmarks/results/token_cost")
    args = parser.parse_args(argv)
    rows = [row("nb201", p, fused=f, lean=l) for p in args.proxies.split(",") for f, l in
            ((False, False), (True, False), (True, True))]
    paper_lo = 2 * (PAPER_IN[0] * PRICE_IN + PAPER_OUT[0] * PRICE_OUT)
    paper_hi = 2 * (PAPER_IN[1] * PRICE_IN + PAPER_OUT[1] * PRICE_OUT)
    paper_reported = PAPER_SEARCH_USD / PAPER_ITERATIONS
    command = "python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])])
    lines = [
        "# Tokens and estimated GPT-4o cost per iteration (NB201)",
        "",
        f"`{command}`",
        "",
        "Token counts: ceil(chars/4) + 4 per message of the exact requests rznas builds (full reflection memory); "
        "output: the configured caps (upper bound). Prices: gpt-4o $2.50/M in, $1.25/M cached in, $10/M out.",
        "",
        "| proxy | setting | calls / it. | tokens in / it. | cached prefix | out cap / it. | $ / it. | $ / it. with prompt cache | $ / 1500 it. (cached) | vs paper (same prices) |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| paper | GPT-4o, 2 calls x 2300-2600 in / 150-200 out | 2 | 4600-5200 | - | 300-400 | "
        f"{paper_lo:.5f}-{paper_hi:.5f} | - | {paper_lo * 1500:.1f}-{paper_hi * 1500:.1f} (paper reports ~$75: "
        f"{paper_reported:.3f}/it.) | 1 |",
    ]
    paper_mid = (paper_lo + paper_hi) / 2
    for r in rows:
        lines.append(
            f"| {r['proxy']} | {r['setting']} | {r['calls']} | {r['input_tokens']} | {r['cached_tokens']} | "
            f"{r['output_tokens_cap']} | {r['usd_per_iteration']:.5f} | {r['usd_per_iteration_cached']:.5f} | "
            f"{r['usd_per_iteration_cached'] * 1500:.2f} | {r['usd_per_iteration_cached'] / paper_mid:.2f} |"
        )
    measured = Path(args.measured)
    payload = {"command": command, "rows": rows, "paper": {"usd_per_iteration": [paper_lo, paper_hi],
               "reported_usd_per_iteration": paper_reported}}
    if measured.exists():
        data = json.loads(measured.read_text())
        payload["measured"] = [{"row": r["row"], "per_iteration": r["tokens"].get("per_iteration")} for r in data["rows"]]
        lines += ["", f"Measured in `{measured}` (fake server's own chars/4 counts, 2 s delay runs, synflow):", "",
                  "| run | calls / it. | tokens in / out per it. | $ / it. (no cache) |", "|---|---|---|---|"]
        for r in payload["measured"]:
            per = r["per_iteration"] or {}
            lines.append(f"| {r['row']} | {per.get('calls', 0):.2f} | {per.get('input_tokens', 0):.0f} / "
                         f"{per.get('output_tokens', 0):.0f} | {per.get('cost_usd', 0):.5f} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    (out.parent / f"{out.name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    (out.parent / f"{out.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
