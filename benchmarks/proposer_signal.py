"""Does the embedded model's mutation beat a random mutation? NB201, the same parents for every variant.

For N parents (sampled uniformly with a seed), every edit the paper's rule allows (one edge's
operation into another: 24 per parent) is applied and its child scored with the proxy, as a
search scores it (CIFAR-10 probe, 2 x 64 images, score seed 0), and looked up in the
NAS-Bench-201 table (200-epoch CIFAR-10 test accuracy). The llm proposer, built as
`rznas search --llm local:q8_0 --fused-reflection --lean-prompt` builds it (the edit reply with
the per-parent grammar; no reflection notes yet), then proposes one child of each parent.
The variant "choice4" is a prototype reply format that rznas does not have: the model picks
one of 4 candidate edits drawn uniformly, listed by number (see VARIANTS).

What a random mutation would get is known exactly from the enumeration: the child's proxy
percentile among the parent's children is 0.5 in expectation, its chance to score above the
parent is the share of children that do, and its accuracy is the children's mean. The model's
child is compared with those, per parent, and the differences are averaged over parents
(mean and 95% interval, normal approximation). A model that reads the proxy's code and the
parent's score and understands them lands above 0.5 and above the random rates.

    python benchmarks/proposer_signal.py --parents 40 --out benchmarks/results/proposer_signal
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from rznas.arch import Architecture
from rznas.benchmarks.nb201_table import open_nb201
from rznas.data.probe import make_probe
from rznas.llm.client import create_client
from rznas.proxies import get_proxy
from rznas.scoring import arch_seed, score_architecture
from rznas.search.config import SearchConfig
from rznas.search.edits import edit_format, edit_json, edits_of
from rznas.search.gateway import LLMGateway
from rznas.llm.base import Message
from rznas.llm.parse import extract_json_object
from rznas.search.prompt import MutationPrompt, parent_json, render
from rznas.search.proposers import LLMProposer, ProposerContext
from rznas.search.runner import llm_proposer_options, prompt_options
from rznas.trial import Member

#: variants: "edit" is the search's llm proposer (edit reply, per-parent grammar); "choice4" is a
#: prototype that is not in rznas: the same prompt, then CHOICES candidate edits drawn uniformly
#: from the parent's 24 and listed after the parent, and a grammar-constrained reply that picks one
#: by its number (a reply format whose floor would be random mutation, if the model's pick were)
VARIANTS = ("edit", "choice4")
CHOICES = 4
DATASET = "cifar10"
TEMPERATURES = (0.2, 0.4, 0.6, 0.8, 1.0)
CHOICE_SCHEMA = {
    "type": "object",
    "properties": {"choice": {"enum": list(range(1, CHOICES + 1))}, "thinking": {"type": "string", "maxLength": 160}},
    "required": ["choice"],
}


def percentile(value: float, others: list[float]) -> float:
    """Mid-rank of ``value`` among ``others`` (itself included once), scaled to 0..1: 0.5 for a random pick."""
    below = sum(o < value for o in others)
    ties = sum(o == value for o in others)
    rank = below + (ties + 1) / 2  # 1-based average rank
    return (rank - 1) / (len(others) - 1) if len(others) > 1 else 0.5


def mean_interval(values: list[float]) -> dict[str, float]:
    """Mean and its 95% interval (normal approximation)."""
    mean = statistics.fmean(values)
    half = 1.96 * statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return {"mean": round(mean, 4), "low": round(mean - half, 4), "high": round(mean + half, 4)}


class ChildTable:
    """Every child of one parent: its edit, proxy score (failures lowest) and test accuracy."""

    def __init__(self, space: Any, parent: Architecture, score: Any, truth: Any):
        self.edits = edit_format(space)
        self.children: dict[str, dict[str, Any]] = {}
        for alternative in self.edits.alternatives(parent):
            for edit in edits_of(alternative):
                child = self.edits.apply(parent, edit)
                self.children[child.id] = {
                    "edit": edit, "arch": space.encode(child), "score": score(child),
                    "acc": truth.test_accuracy(child, DATASET),
                }

    def scores(self) -> list[float]:
        return [c["score"] for c in self.children.values()]

    def accs(self) -> list[float]:
        return [c["acc"] for c in self.children.values()]


def run(args: argparse.Namespace) -> dict[str, Any]:
    base = SearchConfig(space="nb201", proxy=args.proxy, llm=args.llm, reply_format="edit", seed=args.seed,
                        fused_reflection=True, lean_prompt=True, data="cifar10", data_dir=args.data_dir)
    space = base.make_space()
    proxy = get_proxy(args.proxy)
    probe = make_probe("cifar10", data_dir=args.data_dir, batch_size=64, chunks=2, seed=0)
    truth = open_nb201(None, data_dir=args.data_dir)

    def score(arch: Architecture) -> float:
        result = score_architecture(space, arch, probe, [proxy], seed=0, num_classes=10).results[proxy.name]
        return float(result.value) if result.ok else float("-inf")

    client = make_client(args)
    rng = random.Random(f"proposer-signal:{args.seed}")
    parents = [space.sample(rng) for _ in range(args.parents)]
    started = time.perf_counter()
    tables = []
    for number, parent in enumerate(parents):
        tables.append((parent, score(parent), ChildTable(space, parent, score, truth)))
        print(f"scored parent {number + 1}/{len(parents)} and its children", file=sys.stderr, flush=True)
    scoring_seconds = time.perf_counter() - started
    variants = {}
    prompt = MutationPrompt(space, proxy, prompt_options(base, space))
    for name in args.variants:
        gateway = LLMGateway(client, model=args.llm)
        proposer = LLMProposer(ProposerContext(space, args.seed, gateway, prompt, llm_proposer_options(base, space, prompt.options)))
        rows = []
        for number, (parent, parent_score, table) in enumerate(tables):
            t0 = time.perf_counter()
            row: dict[str, Any] = {"parent": space.encode(parent), "parent_score": parent_score}
            if name == "choice4":
                child, row["position"], row["offered"] = choose(client, prompt, space, parent, parent_score, table, args.seed, number)
                row["state"] = "child"
            else:
                proposal = proposer.propose(Member(parent, parent_score, number), seed_key=(args.seed, number))
                child = table.children.get(proposal.arch.id) if proposal.arch is not None else None
                row["state"] = proposal.state.value if proposal.state is not None else "child"
            seconds = time.perf_counter() - t0
            row["seconds"] = round(seconds, 2)
            scores, accs = table.scores(), table.accs()
            row["random_improve_rate"] = sum(s > parent_score for s in scores) / len(scores)
            row["random_acc"] = statistics.fmean(accs)
            if child is not None:
                row.update(edit=child["edit"], score=child["score"], acc=child["acc"],
                           score_percentile=percentile(child["score"], scores),
                           acc_percentile=percentile(child["acc"], accs), improved=child["score"] > parent_score)
            rows.append(row)
            print(f"{name} {number + 1}/{len(tables)}: {row['state']} {row.get('edit')} ({seconds:.1f} s)", file=sys.stderr, flush=True)
        variants[name] = summarize(rows)
        variants[name]["rows"] = rows
    return {
        "command": "python benchmarks/proposer_signal.py " + " ".join(sys.argv[1:]),
        "model": client.model, "proxy": args.proxy, "parents": args.parents, "seed": args.seed,
        "threads": args.threads if args.llm.startswith("local") else None, "dataset": DATASET, "scoring_seconds": round(scoring_seconds, 1),
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
        "variants": variants,
    }


def choose(
    client: Any, prompt: MutationPrompt, space: Any, parent: Architecture, parent_score: float, table: ChildTable,
    seed: int, number: int,
) -> tuple[dict[str, Any], int, list[str]]:
    """The "choice4" prototype for one parent: the child picked, its position (1-based) and the ops offered."""
    rng = random.Random(f"proposer-signal-choice:{seed}:{number}")
    offered = rng.sample(list(table.children.values()), CHOICES)
    listing = "\n".join(f"{i + 1}. {edit_json(c['edit'])}" for i, c in enumerate(offered))
    user = (
        f"{render('user', parent=parent_json(space.encode(parent), prompt.proxy.name, parent_score))}\n"
        f"Instead of writing an edit, choose one of these candidate edits of it by its number, and reply "
        f'{{"choice": <1..{CHOICES}>, "thinking": "<why>"}}:\n{listing}'
    )
    reply = client.complete([*prompt.prefix, Message("user", user)], temperature=rng.choice(TEMPERATURES),
                            max_tokens=120, json_schema=CHOICE_SCHEMA, seed=number)
    position = int(extract_json_object(reply.text)["choice"])
    return offered[position - 1], position, [c["edit"]["op"] for c in offered]


def make_client(args: argparse.Namespace) -> Any:
    """The client `rznas search --llm SPEC` makes (llama.cpp threads for the local backend)."""
    local = args.llm.split(":", 1)[0] == "local"
    return create_client(args.llm, **({"n_threads": args.threads, "seed": args.seed} if local else {}))


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-variant means over the parents whose proposal was a child (see the module docstring)."""
    children = [r for r in rows if "edit" in r]
    out: dict[str, Any] = {"proposals": len(rows), "children": len(children)}
    if not children:
        return out
    out["score_percentile"] = mean_interval([r["score_percentile"] for r in children])
    out["acc_percentile"] = mean_interval([r["acc_percentile"] for r in children])
    out["improve_rate"] = round(sum(r["improved"] for r in children) / len(children), 4)
    out["random_improve_rate"] = round(statistics.fmean(r["random_improve_rate"] for r in children), 4)
    out["acc_minus_random"] = mean_interval([r["acc"] - r["random_acc"] for r in children])
    out["ops"] = dict(Counter(r["edit"]["op"] for r in children).most_common())
    if any("position" in r for r in children):
        out["positions"] = {str(k): v for k, v in sorted(Counter(r["position"] for r in children).items())}
        out["ops_offered"] = dict(Counter(op for r in children for op in r["offered"]).most_common())
    out["seconds_per_proposal"] = round(statistics.fmean(r["seconds"] for r in rows[1:] or rows), 2)
    return out


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Does the embedded model's mutation beat a random one? (NB201)",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Model: {result['model']}; proxy {result['proxy']}; {result['parents']} parents sampled uniformly (seed "
        f"{result['seed']}); all 24 children of each scored ({result['scoring_seconds']} s) and looked up "
        f"(200-epoch {result['dataset']} test accuracy); llama.cpp threads {result['threads']}; machine: {result['machine']}.",
        "A random mutation's expectation per parent: percentile 0.5, improve rate = share of children scoring above "
        "the parent, accuracy = children's mean. Intervals: 95%, normal approximation over parents.",
        "",
        "| variant | children / proposals | proxy percentile | accuracy percentile | improves on parent (model / random) | "
        "accuracy - random child (points) | ops chosen | s / proposal |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, v in result["variants"].items():
        if not v.get("children"):
            lines.append(f"| {name} | 0 / {v['proposals']} | - | - | - | - | - | - |")
            continue
        lines.append(
            f"| {name} | {v['children']} / {v['proposals']} | {_iv(v['score_percentile'])} | {_iv(v['acc_percentile'])} | "
            f"{v['improve_rate']:.2f} / {v['random_improve_rate']:.2f} | {_iv(v['acc_minus_random'], 2)} | "
            f"{', '.join(f'{k} {n}' for k, n in v['ops'].items())} | {v['seconds_per_proposal']} |"
        )
    for name, v in result["variants"].items():
        if "positions" in v:
            lines += ["", f"{name}: position of the chosen candidate (1 = first listed) {v['positions']}; "
                          f"operations offered {v['ops_offered']}."]
    return "\n".join(lines) + "\n"


def _iv(stat: dict[str, float], digits: int = 3) -> str:
    return f"{stat['mean']:.{digits}f} [{stat['low']:.{digits}f}, {stat['high']:.{digits}f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parents", type=int, default=40)
    parser.add_argument("--proxy", default="synflow")
    parser.add_argument("--llm", default="local:q8_0",
                        help="the model, as `rznas search --llm` takes it (default: the embedded model, local:q8_0)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads")
    parser.add_argument("--data-dir", default=None, help="rznas data directory (default: $RZNAS_DATA_DIR)")
    parser.add_argument("--out", default="benchmarks/results/proposer_signal", help="output path without extension")
    args = parser.parse_args()
    result = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
