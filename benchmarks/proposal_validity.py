"""How often the embedded model's mutation replies are usable children, per space and reply format.

For each space, N parents are sampled (seeded); the llm proposer is asked for one child of
each, exactly as `rznas search` builds it (same prompt parts, schema, output cap, one repair
attempt; no reflection notes), with the embedded model (`local` backend). Each proposal is
classified: valid child (decodes, differs from its parent, meets the space's budget), over
budget, invalid, parse error, copied example, or parent copy (the child equals its parent).
Variants:

- ``main``: the whole-architecture reply with main's fixed 160-token output cap (before);
- ``arch``: the whole-architecture reply with the cap derived from the space;
- ``edit``: the structured edit with the per-parent grammar (after; the local default);
- ``edit_noexample``: the same without the in-context example exchange (``--no-example``).

Besides validity, what the edits choose: the share of replies whose new operation / block
type is the one the in-context example's edit shows (a small model may copy it whatever
the parent), the share that repeat the example's edit exactly, and the distinct children.

The parent's score shown in the prompt is its parameter count (the ``params`` proxy).
Also reported: prompt and output tokens, seconds per proposal, and the size and build time
of the per-parent grammar (llama.cpp's JSON-schema-to-GBNF converter).

    nice -n 10 python benchmarks/proposal_validity.py --proposals 30 --threads 1 \\
        --out benchmarks/results/proposal_validity
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

from llama_cpp.llama_grammar import json_schema_to_gbnf

from rznas.arch import Architecture
from rznas.errors import InvalidArchitecture
from rznas.llm.local_backend import LocalLlamaClient
from rznas.proxies import get_proxy
from rznas.search.config import SearchConfig
from rznas.search.gateway import LLMGateway
from rznas.search.edits import edit_format
from rznas.search.proposers import LLMProposer, ProposerContext, salvage_edit
from rznas.search.prompt import MutationPrompt
from rznas.search.runner import llm_proposer_options, prompt_options
from rznas.trial import Member
from rznas.spaces import get_space

#: space -> (constructor options, flags as a user gives them)
SPACES: dict[str, dict[str, Any]] = {
    "nb201": {},
    "darts": {"space_options": {"channels": 8, "layers": 5}},
    "zen_resnet": {"budget": "1M"},
    "mobilenet": {},
    "maedet": {},
}
#: variant -> (reply format, fixed mutation cap or None for the runner's, SearchConfig overrides)
VARIANTS: dict[str, tuple[str, int | None, dict[str, Any]]] = {
    "main": ("arch", 160, {}),
    "arch": ("arch", None, {}),
    "edit": ("edit", None, {}),
    "edit_noexample": ("edit", None, {"example": False}),
}
#: the edit field that says what the new operation or block is (the rest say where)
CHOICE_FIELDS = ("op", "type")
OUTCOMES = ("valid", "over_budget", "invalid", "parse_error", "copied_example", "parent_copy")


def classify(space: Any, parent: Architecture, proposal: Any) -> str:
    """The outcome of one proposal (see the module docstring)."""
    if proposal.state is not None:
        return str(proposal.state.value)
    child = proposal.arch
    if child.id == parent.id:
        return "parent_copy"
    try:
        space.validate(child)
    except InvalidArchitecture:
        return "invalid"
    within = getattr(space, "within_budget", None)
    if within is not None and not within(child):
        return "over_budget"
    return "valid"


def edit_stats(space: Any, rows: list[dict[str, Any]], example: dict[str, Any] | None) -> dict[str, Any]:
    """What the edit replies chose: the share with the in-context example's op/type, exact copies of
    the example's edit, and distinct valid children. Rows of older result files (no "edit" field)
    are read from their stored reply text."""
    if example is None:
        return {"example_edit": None, "edits_read": 0, "example_choice_share": None,
                "example_edit_copies": None, "distinct_children": None}
    edits, children = [], set()
    for row in rows:
        edit = row["edit"] if "edit" in row else salvage_edit(row.get("reply", ""))
        if edit is None:
            continue
        edits.append(edit)
        if row["outcome"] == "valid":
            child = row.get("child") or space.encode(edit_format(space).apply(space.decode(row["parent"]), edit))
            children.add(child)
    choice = edit_choice(example)
    share = round(100.0 * sum(edit_choice(e) == choice for e in edits) / len(edits), 1) if edits else None
    return {"example_edit": example, "edits_read": len(edits), "example_choice_share": share,
            "example_edit_copies": sum(e == example for e in edits), "distinct_children": len(children)}


def edit_choice(edit: dict[str, Any]) -> Any:
    """What an edit changes to (its op or block type), ignoring where."""
    return next((edit[f] for f in CHOICE_FIELDS if f in edit), None)


def variant_prompt(space_name: str, variant: str, seed: int = 0) -> tuple[SearchConfig, Any, MutationPrompt]:
    """The search config, space and mutation prompt of one (space, variant), as `rznas search` builds them."""
    reply_format, _, overrides = VARIANTS[variant]
    config = SearchConfig(space=space_name, proxy="params", llm="local", reply_format=reply_format, seed=seed,
                          **SPACES[space_name], **overrides)
    space = config.make_space()
    return config, space, MutationPrompt(space, get_proxy("params"), prompt_options(config, space))


def run_variant(space_name: str, variant: str, proposals: int, seed: int, client: LocalLlamaClient) -> dict[str, Any]:
    reply_format, fixed_cap, _ = VARIANTS[variant]
    config, space, prompt = variant_prompt(space_name, variant, seed)
    proposer_options = llm_proposer_options(config, space, prompt.options)
    if fixed_cap is not None:
        proposer_options["max_tokens"] = fixed_cap
    gateway = LLMGateway(client, model="local")
    proposer = LLMProposer(ProposerContext(space, seed, gateway, prompt, proposer_options))
    rng = random.Random(f"proposal-validity:{space_name}:{seed}")
    counts = dict.fromkeys(OUTCOMES, 0)
    rows = []
    grammar_chars = grammar_seconds = 0.0
    for number in range(proposals):
        parent = space.sample(rng)
        schema = proposer.reply_schema(parent)
        started = time.perf_counter()
        grammar = json_schema_to_gbnf(json.dumps(schema)) if schema is not None else ""
        grammar_seconds += time.perf_counter() - started
        grammar_chars += len(grammar)
        calls_before = len(gateway.records)
        started = time.perf_counter()
        proposal = proposer.propose(Member(parent, float(space.count_params(parent)), number))
        seconds = time.perf_counter() - started
        calls = gateway.records[calls_before:]
        outcome = classify(space, parent, proposal)
        counts[outcome] += 1
        edit = salvage_edit(proposal.raw) if reply_format == "edit" else None
        rows.append({
            "edit": edit,
            "child": space.encode(proposal.arch) if outcome == "valid" else None,
            "parent": space.encode(parent),
            "outcome": outcome,
            "reason": proposal.reason[:300],
            "reply": proposal.raw[:600],
            "calls": len(calls),
            "prompt_tokens": sum(c.input_tokens for c in calls),
            "output_tokens": sum(c.output_tokens for c in calls),
            "seconds": round(seconds, 3),
        })
        print(f"{space_name} {variant} {number + 1}/{proposals}: {outcome} ({seconds:.1f} s)", file=sys.stderr, flush=True)
    timed = rows[1:] or rows  # the first call fills the KV cache with the long static prompt
    return {
        **edit_stats(space, rows, prompt.example_edit if reply_format == "edit" else None),
        "space": space_name,
        "variant": variant,
        "reply_format": reply_format,
        "max_tokens": proposer.max_tokens,
        "proposals": proposals,
        "counts": counts,
        "per_100": {k: round(100.0 * v / proposals, 1) for k, v in counts.items()},
        "calls_per_proposal": sum(r["calls"] for r in rows) / proposals,
        "prompt_tokens_per_proposal": sum(r["prompt_tokens"] for r in rows) / proposals,
        "output_tokens_per_proposal": sum(r["output_tokens"] for r in rows) / proposals,
        "seconds_per_proposal_after_first": sum(r["seconds"] for r in timed) / len(timed),
        "first_proposal_seconds": rows[0]["seconds"] if rows else None,
        "grammar_chars_mean": grammar_chars / proposals,
        "grammar_build_ms_mean": 1000.0 * grammar_seconds / proposals,
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Embedded-model proposal validity per space and reply format",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Model: {result['model']}; {result['proposals']} proposals per space and variant (see the table) (parents sampled with "
        f"seed {result['seed']}), llama.cpp threads {result['threads']}; machine: {result['machine']}.",
        "main = whole-architecture reply with main's 160-token cap (before); arch = the same with the cap "
        "derived from the space; edit = structured edit with the per-parent grammar (after); edit_noexample = "
        "the same without the in-context example (`--no-example`).",
        "Outcomes per 100 proposals (one repair attempt included, as in `rznas search`). Example's op/type: % of the "
        "edit replies whose new operation (NB201, DARTS) or block type (macro spaces) is the one the in-context "
        "example's edit shows; example edit: replies equal to the example's edit; distinct: distinct valid children.",
        "",
        "| space | variant | proposals | valid | over budget | invalid | parse error | copied example | parent copy | "
        "example's op/type | example edit | distinct | "
        "prompt tokens / proposal | output tokens / proposal | s / proposal (after the first) | grammar (kchars, ms) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        p = r["per_100"]
        lines.append(
            f"| {r['space']} | {r['variant']} | {r['proposals']} | {p['valid']} | {p['over_budget']} | {p['invalid']} | "
            f"{p['parse_error']} | {p['copied_example']} | {p['parent_copy']} | "
            f"{_dash(r.get('example_choice_share'))} | {_dash(r.get('example_edit_copies'))} | "
            f"{_dash(r.get('distinct_children'))} | {r['prompt_tokens_per_proposal']:.0f} | "
            f"{r['output_tokens_per_proposal']:.0f} | {r['seconds_per_proposal_after_first']:.1f} | "
            f"{r['grammar_chars_mean'] / 1000:.1f}, {r['grammar_build_ms_mean']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def _dash(value: Any) -> str:
    return "-" if value is None else str(value)


def combine(paths: list[str], out: Path, argv: list[str]) -> int:
    """One result from several (their commands listed), runs ordered by space, then variant."""
    parts = [json.loads(Path(p).read_text()) for p in paths]
    runs = [r for part in parts for r in part["runs"]]
    for run in runs:  # files made before the edit statistics existed: read them from the replies
        if run["reply_format"] == "edit" and run.get("example_choice_share") is None:
            _, space, prompt = variant_prompt(run["space"], run["variant"])
            run.update(edit_stats(space, run["rows"], prompt.example_edit))
    order = {name: i for i, name in enumerate(SPACES)}
    runs.sort(key=lambda r: (order[r["space"]], list(VARIANTS).index(r["variant"])))
    result = dict(parts[0])
    result["command"] = " && ".join([p["command"] for p in parts] + ["python benchmarks/proposal_validity.py " + " ".join(argv)])
    result["proposals"] = "/".join(sorted({str(p["proposals"]) for p in parts}))
    result["wall_seconds"] = [p.get("wall_seconds") for p in parts]
    result["runs"] = runs
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spaces", nargs="+", default=list(SPACES), choices=list(SPACES))
    parser.add_argument("--variants", nargs="+", default=["main", "edit"], choices=list(VARIANTS))
    parser.add_argument("--proposals", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads")
    parser.add_argument("--out", default="benchmarks/results/proposal_validity", help="output path without extension")
    parser.add_argument("--combine", nargs="+", metavar="JSON",
                        help="only merge finished result files (e.g. variants run in parallel) into --out")
    args = parser.parse_args(argv)
    if args.combine:
        return combine(args.combine, Path(args.out), argv if argv is not None else sys.argv[1:])
    client = LocalLlamaClient(n_threads=args.threads, seed=args.seed)
    started = time.perf_counter()
    runs = []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "command": "python benchmarks/proposal_validity.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": client.model,
        "threads": args.threads,
        "seed": args.seed,
        "proposals": args.proposals,
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
        "runs": runs,
    }
    for space_name in args.spaces:
        for variant in args.variants:
            runs.append(run_variant(space_name, variant, args.proposals, args.seed, client))
            result["wall_seconds"] = round(time.perf_counter() - started, 1)
            # written after every variant: an interrupted benchmark keeps what it measured
            out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
            out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
