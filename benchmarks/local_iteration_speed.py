"""Embedded-model seconds per NB201 search iteration with `--fused-reflection --lean-prompt`
(one constrained call per iteration), and where the time goes, under llama.cpp settings and
weight encodings (`local` = the shipped Q4_1 file, `local:q8_0` = the same model re-encoded).

Every variant is a `LocalLlamaClient` with the search's defaults except the setting named;
variants that differ only in threads share one context (llama_set_n_threads). The calls are
interleaved round by round (variant A, B, C, ... then the next round), so the load of a
shared machine falls on all variants alike; every call has its own reflection notes, so the
dynamic tail is evaluated afresh as in a search. The first call of each context (the static
prefix, ~3,600 tokens) is not timed. Per call: llama.cpp's perf counters give the prompt-eval
time (the tail) and the generation time; the rest of the wall time is sampling, the grammar
and Python. Quality check: every reply must parse into an NB201 architecture (for
`--reply-format edit`, the search's default with the embedded model: an edit that applies to
the parent and changes it).

    python benchmarks/local_iteration_speed.py --reply-format edit --rounds 8 --out benchmarks/results/local_iteration_speed
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
from typing import Any

import llama_cpp

from rznas.llm import local_backend
from rznas.llm.parse import extract_json_object
from rznas.proxies import get_proxy
from rznas.search.memory import Note, clean_note
from rznas.search.edits import edit_format
from rznas.search.prompt import (
    REFLECTION_MAX_CHARS, MutationPrompt, PreviousOutcome, PromptOptions, edit_reply_schema, mutation_schema,
)
from rznas.spaces import get_space

PARENT = "|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|nor_conv_1x1~0|avg_pool_3x3~1|skip_connect~2|"
CHILD = "|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|nor_conv_3x3~0|avg_pool_3x3~1|skip_connect~2|"
#: the search's defaults: mutate_max_tokens + reflect_max_tokens for a fused call
MAX_TOKENS = 160 + 80
TEMPERATURES = (0.2, 0.4, 0.6, 0.8, 1.0)

#: name -> (context settings, threads[, prompt settings]); variants with equal context settings
#: share a context. Prompt settings (PROMPT_DEFAULTS): "note_max_chars" cuts the notes shown and
#: caps the required reflection (`--note-max-chars`); "reflect": False is a call of
#: `--reflect-every N` that reports no previous outcome, and whose grammar has no reflection field.
VARIANTS: dict[str, tuple[Any, ...]] = {
    "default": ({}, None),
    "2 threads": ({}, 2),
    "flash attention": ({"flash_attn": True}, None),
    "flash attention + q8_0 KV cache": ({"flash_attn": True, "kv_cache_type": "q8_0"}, None),
    "q8_0 weights": ({"model": "q8_0"}, None),
    "q8_0 weights + 2 threads": ({"model": "q8_0"}, 2),
    "q8_0 weights + flash attention": ({"model": "q8_0", "flash_attn": True}, None),
    "q8_0 weights + flash attention + q8_0 KV cache": ({"model": "q8_0", "flash_attn": True, "kv_cache_type": "q8_0"}, None),
    "f16 weights": ({"model": "f16"}, None),
    "repeat penalty 1.0": ({"repeat_penalty": 1.0}, None),
    "q8_0 weights + repeat penalty 1.0": ({"model": "q8_0", "repeat_penalty": 1.0}, None),
    "q8_0 2 threads + notes 160": ({"model": "q8_0"}, 2, {"note_max_chars": 160}),
    "q8_0 2 threads + no outcome": ({"model": "q8_0"}, 2, {"reflect": False}),
    "q8_0 2 threads + no outcome + no thinking": ({"model": "q8_0"}, 2, {"reflect": False, "thinking": False}),
    "q8_0 2 threads + no thinking": ({"model": "q8_0"}, 2, {"thinking": False}),
    "q8_0 2 threads + notes 160 + no thinking": ({"model": "q8_0"}, 2, {"note_max_chars": 160, "thinking": False}),
    "q8_0 2 threads + notes 160 + no outcome + no thinking": (
        {"model": "q8_0"}, 2, {"note_max_chars": 160, "reflect": False, "thinking": False},
    ),
}
#: the search's defaults: notes and reflection of up to 300 characters, an outcome in every
#: call, a "thinking" field in the grammar (`--no-thinking` leaves it out)
PROMPT_DEFAULTS: dict[str, Any] = {"note_max_chars": REFLECTION_MAX_CHARS, "reflect": True, "thinking": True}


def prompt_settings(name: str) -> dict[str, Any]:
    """The prompt settings of variant ``name`` (the search's defaults where it names none)."""
    return {**PROMPT_DEFAULTS, **(VARIANTS[name][2] if len(VARIANTS[name]) > 2 else {})}


def call_messages(
    prompt: MutationPrompt, number: int, texts: list[str] | None = None, *, count: int | None = None,
    note_max_chars: int = REFLECTION_MAX_CHARS, reflect: bool = True, thinking: bool = True,
) -> list[Any]:
    """A fused mutation call with ``count`` notes (1-3; default by ``number``) of its own (the tail
    differs from its first token): synthetic ones, or ``texts`` (reflections a search wrote)
    chosen by ``number``, cut to ``note_max_chars`` as the search's memory cuts them; the
    previous outcome with ``reflect`` (``thinking`` changes the grammar only, not the messages).
    The variants of one round get the same count, so none is shown systematically more notes."""
    count = number % 3 + 1 if count is None else count
    if texts:
        notes = [Note(number * 3 + i, clean_note(texts[(number * 3 + i) % len(texts)], note_max_chars))
                 for i in range(count)]
    else:
        notes = [Note(number * 3 + i, f"note {number}.{i}: keep nor_conv_3x3 on edge {i}; avoid none into the last node")
                 for i in range(count)]
    previous = PreviousOutcome(PARENT, 700.0 + number, CHILD, "complete", 701.5 + number, "") if reflect else None
    return prompt.messages(PARENT, 700.0 + number, notes, previous=previous)


def reply_schema(prompt: MutationPrompt, reply_format: str, note_max_chars: int, reflect: bool, thinking: bool) -> dict:
    """The schema a search sends with these settings: per parent for edits; the reflection field
    required and capped at ``note_max_chars`` when the call reports an outcome, absent when not;
    the "thinking" field only with ``thinking``."""
    space = prompt.space
    cap = min(REFLECTION_MAX_CHARS, note_max_chars)
    if reply_format == "edit":
        assert prompt.edits is not None
        return edit_reply_schema(prompt.edits, space.decode(PARENT), fused_reflection=reflect,
                                 require_reflection=reflect, reflection_max_chars=cap, thinking=thinking)
    return mutation_schema(space, constrain=True, fused_reflection=reflect, require_reflection=reflect,
                           reflection_max_chars=cap, thinking=thinking)


def reply_is_valid(text: str, reply_format: str) -> bool:
    """The quality check: the reply is an NB201 architecture (arch) or an edit that changes PARENT."""
    space = get_space("nb201")
    try:
        data = extract_json_object(text)
        if reply_format == "edit":
            parent = space.decode(PARENT)
            return edit_format(space).apply(parent, data["edit"]).id != parent.id
        space.decode(data["arch"])
        return True
    except Exception:  # the quality check: counted, never hidden
        return False


def timed_call(
    client: local_backend.LocalLlamaClient, messages: list[Any], schema: dict, temperature: float, reply_format: str
) -> dict:
    started = time.perf_counter()
    completion = client.complete(messages, temperature=temperature, max_tokens=MAX_TOKENS, json_schema=schema)
    wall = time.perf_counter() - started
    ctx = client.context(completion.extra["slot"]).llama._ctx.ctx
    perf = llama_cpp.llama_perf_context(ctx)
    llama_cpp.llama_perf_context_reset(ctx)
    valid = reply_is_valid(completion.text, reply_format)
    try:
        said = extract_json_object(completion.text).get("reflection")
    except Exception:  # an unparsable reply is already counted as not valid
        said = None
    return {
        "wall_s": wall, "prompt_eval_s": perf.t_p_eval_ms / 1000, "prompt_tokens_evaluated": perf.n_p_eval,
        "generate_s": perf.t_eval_ms / 1000, "output_tokens": completion.output_tokens,
        "other_s": wall - (perf.t_p_eval_ms + perf.t_eval_ms) / 1000, "input_tokens": completion.input_tokens,
        "valid_arch": valid, "finish_reason": completion.extra.get("finish_reason"),
        "reflection_chars": len(said) if isinstance(said, str) else 0,
        "text": completion.text,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--proxy", default="zico")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names of VARIANTS")
    parser.add_argument("--notes", type=Path, metavar="JSON",
                        help='reflection notes to show, {"notes": [text, ...]} (default: short synthetic notes)')
    parser.add_argument("--reply-format", choices=("arch", "edit"), default="arch",
                        help="arch: the whole architecture; edit: one structured edit (per-parent grammar)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/local_iteration_speed"))
    parser.add_argument("--summarize", type=Path, metavar="JSON",
                        help="only rewrite the table of --out from the calls of this result file")
    args = parser.parse_args()
    if args.summarize is not None:
        payload = json.loads(args.summarize.read_text())
        payload.setdefault("rounds", len(next(iter(payload["calls"].values()))))
        payload.setdefault("threads", {r["variant"]: r["threads"] for r in payload.get("rows", [])})
        payload["summarized_by"] = "python benchmarks/local_iteration_speed.py " + " ".join(sys.argv[1:])
        write_results(payload, args.out)
        return 0
    names = [n for n in args.variants.split(",") if n]
    texts = json.loads(args.notes.read_text())["notes"] if args.notes is not None else None
    space = get_space("nb201")
    options = PromptOptions(fused_reflection=True, lean=True, reply_format=args.reply_format)
    prompt = MutationPrompt(space, get_proxy(args.proxy), options)
    schemas = {name: reply_schema(prompt, args.reply_format, **prompt_settings(name)) for name in names}
    clients: dict[str, local_backend.LocalLlamaClient] = {}
    for name in names:
        settings = VARIANTS[name][0]
        key = json.dumps(settings, sort_keys=True)
        if key not in clients:
            clients[key] = local_backend.LocalLlamaClient(seed=0, context_slots=1, **settings)
            started = time.perf_counter()
            clients[key].complete(call_messages(prompt, 0, texts), temperature=0.2, max_tokens=MAX_TOKENS,
                                  json_schema=schemas[name])
            llama_cpp.llama_perf_context_reset(clients[key].context(0).llama._ctx.ctx)  # count the timed calls only
            print(f"{key}: static prefix in {time.perf_counter() - started:.1f} s (not timed)", file=sys.stderr, flush=True)
    calls: dict[str, list[dict]] = {name: [] for name in names}
    default_threads = local_backend.default_threads()
    for round_number in range(1, args.rounds + 1):
        for index, name in enumerate(names):
            settings, threads = VARIANTS[name][:2]
            client = clients[json.dumps(settings, sort_keys=True)]
            llama = client.context(0).llama
            n = threads or default_threads
            llama_cpp.llama_set_n_threads(llama._ctx.ctx, n, n)
            row = timed_call(
                # variants sharing a context get different notes, so none reuses the previous call's tail
                client, call_messages(prompt, round_number * len(names) + index, texts, count=round_number % 3 + 1,
                                      **prompt_settings(name)),
                schemas[name], TEMPERATURES[round_number % 5], args.reply_format,
            )
            calls[name].append(row)
            print(f"round {round_number} {name}: {row['wall_s']:.2f} s ({row['prompt_tokens_evaluated']} tail tokens "
                  f"{row['prompt_eval_s']:.2f} s, {row['output_tokens']} out {row['generate_s']:.2f} s, "
                  f"other {row['other_s']:.2f} s)", file=sys.stderr, flush=True)
        for name in names:  # restore before the next round
            llama = clients[json.dumps(VARIANTS[name][0], sort_keys=True)].context(0).llama
            llama_cpp.llama_set_n_threads(llama._ctx.ctx, default_threads, default_threads)
    command = "python benchmarks/local_iteration_speed.py " + shlex.join(sys.argv[1:])
    payload = {"command": command, "proxy": args.proxy, "rounds": args.rounds, "max_tokens": MAX_TOKENS,
               "reply_format": args.reply_format, "notes": str(args.notes) if args.notes else "synthetic",
               "settings": {name: VARIANTS[name][0] for name in names},
               "prompt_settings": {name: prompt_settings(name) for name in names},
               "weights": {name: clients[json.dumps(VARIANTS[name][0], sort_keys=True)].path.name for name in names},
               "platform": platform.platform(), "cpu_count": os.cpu_count(),
               "load_average_end": [round(x, 2) for x in os.getloadavg()], "llama_cpp_python": llama_cpp.__version__,
               "threads": {name: VARIANTS[name][1] or default_threads for name in names}, "calls": calls}
    write_results(payload, args.out)
    return 0


def _ratio(calls: list[dict], amount: str, seconds: str) -> float:
    total = sum(r[seconds] for r in calls)
    return sum(r[amount] for r in calls) / total if total > 0 else float("nan")


def summarize_calls(payload: dict) -> list[dict]:
    """Mean per variant over rounds 2.. (round 1 is each context's first call after the cold prefix)."""
    mean = lambda rows, key: statistics.mean(r[key] for r in rows)  # noqa: E731
    rows = []
    for name, all_calls in payload["calls"].items():
        calls = all_calls[1:]
        rows.append({
            "variant": name, "settings": VARIANTS[name][0], "threads": payload["threads"][name], "calls": len(calls),
            **{f"mean_{k}": round(mean(calls, k), 3) for k in
               ("wall_s", "prompt_eval_s", "generate_s", "other_s", "prompt_tokens_evaluated", "output_tokens")},
            "valid_arch": sum(r["valid_arch"] for r in all_calls), "replies": len(all_calls),
            # complete for every row (payloads from before prompt variants had the defaults)
            "prompt_settings": {**PROMPT_DEFAULTS, **payload.get("prompt_settings", {}).get(name, {})},
            "mean_reflection_chars": round(mean(calls, "reflection_chars"), 1) if "reflection_chars" in calls[0] else None,
            # throughput over the timed calls: tokens summed over seconds summed (not a mean of ratios)
            "tail_tokens_per_s": _ratio(calls, "prompt_tokens_evaluated", "prompt_eval_s"),
            "output_tokens_per_s": _ratio(calls, "output_tokens", "generate_s"),
        })
    return rows


def sparse_reflection_lines(rows: list[dict], every: tuple[int, ...] = (2, 3, 5)) -> list[str]:
    """Mean seconds per iteration with `--reflect-every N`: one call in N reports the outcome
    (the variant with it), N - 1 do not (the same variant without it), from the measured means."""
    def key(row: dict) -> tuple:
        return json.dumps(row["settings"], sort_keys=True), row["threads"], row["prompt_settings"]["note_max_chars"]

    lines = []
    for quiet in (r for r in rows if not r["prompt_settings"]["reflect"]):
        # the reporting call of the same settings, with thinking as the quiet call has it (else any)
        same = [r for r in rows if r["prompt_settings"]["reflect"] and key(r) == key(quiet)]
        thinking = quiet["prompt_settings"]["thinking"]
        same.sort(key=lambda r: r["prompt_settings"]["thinking"] != thinking)
        if not same:
            continue
        loud = same[0]
        means = ", ".join(
            f"N = {n}: {(loud['mean_wall_s'] + (n - 1) * quiet['mean_wall_s']) / n:.2f} s" for n in every
        )
        lines.append(f"- `--reflect-every N` from \"{loud['variant']}\" (1 call in N) and \"{quiet['variant']}\" "
                     f"(N - 1 in N): {means}")
    return ["", "Seconds per iteration with sparse reflection (computed from the rows above):", ""] + lines if lines else []


def write_results(payload: dict, out: Path) -> None:
    rows = payload["rows"] = summarize_calls(payload)
    command, rounds = payload["command"], payload["rounds"]
    lines = [
        "# Embedded model: seconds per fused-lean NB201 iteration under llama.cpp settings",
        "",
        f"Command: `{command}`. One `--fused-reflection --lean-prompt` mutation call per iteration (NB201, "
        f"{payload['proxy']}, {payload.get('reply_format', 'arch')} reply, constrained JSON, max_tokens "
        f"{payload['max_tokens']}), SmolLM2-135M (weights per variant below; default = the shipped Q4_1), "
        f"llama-cpp-python {payload['llama_cpp_python']}, {payload['cpu_count']} cores shared with other jobs "
        f"(load average at the end {payload['load_average_end'][0]}); {rounds} interleaved calls per variant, the "
        "static prefix not timed, means over rounds 2.. (round 1 is each context's first call after its prefix). "
        "Seconds are wall time: prompt eval = the dynamic tail, generate = output tokens, other = sampling, "
        "grammar and Python (the rest of the wall time). Valid replies: over all rounds. Reflection notes shown: "
        f"{payload.get('notes', 'synthetic')}; client settings per variant: "
        f"{json.dumps(payload.get('settings', 'not recorded (llama.cpp repeat penalty 1.0 then)'))}.",
        "",
        "| variant | weights | threads | notes / reflection cap (chars) | outcome reported | thinking field | s / iteration | "
        "tail tokens | prompt eval s | output tokens | generate s | other s | tail tokens / s | output tokens / s | "
        "reflection chars | valid replies |",
        "|---|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ps = r["prompt_settings"]
        chars = "-" if r.get("mean_reflection_chars") is None else f"{r['mean_reflection_chars']:.0f}"
        lines.append(
            f"| {r['variant']} | {payload.get('weights', {}).get(r['variant'], 'Q4_1 (shipped)')} | {r['threads']} | "
            f"{ps['note_max_chars']} | {'yes' if ps['reflect'] else 'no'} | {'yes' if ps['thinking'] else 'no'} | "
            f"{r['mean_wall_s']:.2f} | {r['mean_prompt_tokens_evaluated']:.0f} | "
            f"{r['mean_prompt_eval_s']:.2f} | {r['mean_output_tokens']:.0f} | {r['mean_generate_s']:.2f} | "
            f"{r['mean_other_s']:.2f} | {r['tail_tokens_per_s']:.0f} | {r['output_tokens_per_s']:.1f} | "
            f"{chars} | {r['valid_arch']}/{r['replies']} |"
        )
    lines += sparse_reflection_lines(rows)
    if payload.get("summarized_by"):
        lines += ["", f"Table recomputed from the JSON's calls by `{payload['summarized_by']}`."]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
