"""`rznas search`: run, resume or replay an RZ-NAS search (see docs/search.md)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from . import COMMANDS

# flag dest -> config key, for flags that map 1:1 onto SearchConfig
_VALUE_FLAGS = {
    "space": "space",
    "proxy": "proxy",
    "reference_size": "reference_size",
    "reference_seed": "reference_seed",
    "proposer": "proposer",
    "llm": "llm",
    "llm_base_url": "llm_base_url",
    "llm_structured": "llm_structured",
    "llm_threads": "llm_threads",
    "population": "population",
    "iterations": "iterations",
    "seed": "seed",
    "score_seed": "score_seed",
    "max_cost_usd": "max_cost_usd",
    "max_tokens": "max_tokens",
    "temperature": "temperature",
    "selection": "selection",
    "data": "data",
    "data_dir": "data_dir",
    "nb201": "nb201",
    "max_params": "max_params",
    "max_flops": "max_flops",
    "max_layers": "max_layers",
    "budget": "budget",
    "probe_resolution": "probe_resolution",
    "repair_attempts": "repair_attempts",
    "constrain_arch": "constrain_arch",
    "reply_format": "reply_format",
    "executor": "executor",
    "device": "device",
    "workers": "workers",
    "ray_address": "ray_address",
    "score_cache": "score_cache",
    "concurrency": "concurrency",
    "reflect_every": "reflect_every",
    "note_max_chars": "note_max_chars",
    "final_train_top": "final_train_top",
    "final_epochs": "final_epochs",
    "final_data": "final_data",
    "final_train_images": "final_train_images",
    "final_val_images": "final_val_images",
    "final_batch_size": "final_batch_size",
    "final_recipe": "final_recipe",
    "final_seed": "final_seed",
    "final_device": "final_device",
}
_SWITCHES = {
    "no_reflection": "reflection",
    "no_example": "example",
    "no_code_description": "code_description",
    "no_text_description": "text_description",
    "no_thinking": "reply_thinking",
}
_ON_SWITCHES = {"fused_reflection": "fused_reflection", "lean_prompt": "lean_prompt"}


@COMMANDS.register("search")
def add_parser(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "search",
        help="run an RZ-NAS search (evolution with LLM-guided mutation and reflection)",
        description="Evolutionary search scored by a zero-cost proxy, with LLM (RZ-NAS) or random mutation. "
        "Settings: defaults <- --config FILE <- flags. The paper's NB201 setting is --population 100 --iterations 1500.",
    )
    s = argparse.SUPPRESS
    run = parser.add_argument_group("run")
    run.add_argument("--config", metavar="FILE", help="JSON or TOML file of settings (flags override it)")
    run.add_argument("--out", metavar="RUN_DIR", help="run directory (default: runs/search-<time>)")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run (settings come from the run)")
    run.add_argument("--replay", metavar="RUN_DIR", help="re-run a finished run offline from its reply cache into --out")
    run.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    what = parser.add_argument_group("search")
    what.add_argument("--space", default=s, help="search space (default nb201)")
    what.add_argument(
        "--proxy", default=s,
        help="zero-cost proxy or ensemble (default synflow; e.g. zico+naswot+synflow, az_nas); see `rznas list proxies`",
    )
    what.add_argument("--reference-size", type=int, default=s, metavar="R",
                      help="ensembles: reference cells each component is ranked against (default 256)")
    what.add_argument("--reference-seed", type=int, default=s, metavar="S",
                      help="ensembles: seed that draws the reference cells (default 0)")
    what.add_argument("--proposer", default=s, help="llm (RZ-NAS, default) or random")
    what.add_argument("--population", type=int, default=s, metavar="N", help="population size (default 20; paper 100)")
    what.add_argument("--iterations", type=int, default=s, metavar="T", help="iterations (default 30; paper 1500)")
    what.add_argument("--seed", type=int, default=s, metavar="S", help="search seed: initial population, parents, mutations (default 0)")
    what.add_argument("--score-seed", type=int, default=s, metavar="S",
                      help="seed of the probe sample and the scored weights, as `rznas score --seed` (default 0)")
    what.add_argument("--selection", default=s, help="parent selection: uniform (default), best, tournament")
    what.add_argument(
        "--data", default=s,
        help="probe data: auto (default: cifar10 for a data-dependent proxy, gaussian for a data-free one), "
        "cifar10, cifar100, gaussian, folder:PATH or npz:PATH (your images)",
    )
    what.add_argument("--data-dir", default=s, metavar="DIR", help="data folder (else $RZNAS_DATA_DIR)")
    what.add_argument("--nb201", default=s, metavar="PATH", help="NB201 ground truth for the final report")
    what.add_argument("--max-params", type=float, default=s, metavar="P", help="parameter budget (count)")
    what.add_argument("--max-flops", type=float, default=s, metavar="F", help="FLOPs budget (multiply-adds per image)")
    what.add_argument("--max-layers", type=int, default=s, metavar="L", help="layer budget (spaces that count layers)")
    what.add_argument("--budget", default=s, metavar="PRESET",
                      help="the space's budget preset (zen_resnet 1M/2M, mobilenet 450M/600M/1000M, maedet 18.8G; none: off)")
    what.add_argument("--space-option", action="append", default=s, metavar="KEY=VALUE",
                      help="space constructor option, JSON value (e.g. channels=16 for darts); repeatable")
    what.add_argument("--probe-resolution", type=int, default=s, metavar="PX",
                      help="probe image size for proxy scoring (default 32; FLOPs budgets use the space's own size)")
    llm = parser.add_argument_group("LLM")
    llm.add_argument(
        "--llm", default=s, metavar="BACKEND:MODEL",
        help="local:q8_0 (default: the embedded SmolLM2, re-encoded once from its shipped Q4_1 weights), "
        "local (as shipped), local:PATH.gguf, openai:gpt-4o, anthropic:MODEL, scripted:NAME",
    )
    llm.add_argument("--llm-base-url", default=s, metavar="URL", help="OpenAI-compatible endpoint (vLLM, Ollama, llama.cpp, Azure)")
    llm.add_argument(
        "--llm-structured", choices=["auto", "json_schema", "json_object_schema", "json_object", "none"], default=s,
        help="structured output with OpenAI-compatible servers (default auto: json_schema, then json_object "
        "with schema, then json_object, then none, as the server accepts; the mode used is logged per call)",
    )
    llm.add_argument(
        "--llm-threads", type=int, default=s, metavar="N",
        help="llama.cpp threads of the local backend (default: half the CPUs; all of an idle machine's are faster, "
        "see docs/llm.md)",
    )
    llm.add_argument("--max-cost-usd", type=float, default=s, metavar="X", help="stop cleanly when the estimated cost reaches X")
    llm.add_argument("--max-tokens", type=int, default=s, metavar="N", help="stop cleanly when N tokens were used")
    llm.add_argument("--temperature", type=float, default=s, metavar="X", help="fixed temperature (default: drawn from 0.2..1.0)")
    llm.add_argument("--repair-attempts", type=int, default=s, metavar="K", help="repairs after an invalid reply (default 1)")
    llm.add_argument(
        "--constrain-arch",
        choices=["auto", "on", "off"],
        default=s,
        help="grammar-constrain replies to the space's encoding (default auto: only for the local backend)",
    )
    llm.add_argument(
        "--reply-format",
        choices=["auto", "edit", "arch"],
        default=s,
        help="edit: the LLM names one change of the parent, applied by code; arch: it writes the whole "
        "architecture (the paper); default auto: edit with the local backend, arch otherwise",
    )
    llm.add_argument("--no-reflection", action="store_true", default=s, help="ablation: no reflection calls or notes")
    llm.add_argument("--no-example", action="store_true", default=s, help="ablation: no in-context example")
    llm.add_argument("--no-code-description", action="store_true", default=s, help="ablation: no code-level space description")
    llm.add_argument("--no-text-description", action="store_true", default=s, help="ablation: no text-level space description")
    llm.add_argument(
        "--concurrency", type=int, default=s, metavar="K",
        help="proposals in flight at once (default 1: the paper's sequential loop; K > 1 is not deterministic)",
    )
    llm.add_argument(
        "--fused-reflection", action="store_true", default=s,
        help="reflect on the previous trial inside the next mutation call (one LLM call per iteration)",
    )
    llm.add_argument(
        "--reflect-every", type=int, default=s, metavar="N",
        help="reflect on every N-th mutation step only (default 1: every step, the paper); fewer LLM "
        "tokens per iteration, fewer notes",
    )
    llm.add_argument(
        "--no-thinking", action="store_true", default=s,
        help="constrained replies without the free 'thinking' field (fewer output tokens per iteration)",
    )
    llm.add_argument(
        "--note-max-chars", type=int, default=s, metavar="N",
        help="longest reflection note kept and shown (default 300); a constrained fused reflection is "
        "capped there too, so a smaller N means fewer LLM tokens per iteration",
    )
    llm.add_argument(
        "--lean-prompt", action="store_true", default=s,
        help="code blocks of the prompt without docstrings and comments (same code, fewer tokens)",
    )
    scale = parser.add_argument_group("scale (docs/scale.md)")
    scale.add_argument("--executor", default=s, help="where proxies run: inline (default), process, ray")
    scale.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default=s,
        help="where networks are scored, for every executor (default auto: cuda when a GPU is visible); "
        "stored resolved in the run and kept on resume",
    )
    scale.add_argument("--workers", type=int, default=s, metavar="N", help="process/ray workers (default: CPUs, or one per GPU)")
    scale.add_argument("--ray-address", default=s, metavar="ADDR", help="join this Ray cluster (default: a private local one)")
    scale.add_argument(
        "--score-cache", default=s, metavar="PATH|none",
        help="persistent proxy-score cache (default: $RZNAS_CACHE_DIR or ~/.cache/rznas; none: off)",
    )
    final = parser.add_argument_group("final selection (docs/search.md)")
    final.add_argument("--final-train-top", type=int, default=s, metavar="K",
                       help="after the evolution, train the K best-scoring distinct architectures briefly and return "
                       "the best by held-out validation accuracy (default 0: off, the proxy's best is returned)")
    final.add_argument("--final-epochs", type=int, default=s, metavar="E", help="epochs per candidate (default 1)")
    final.add_argument("--final-data", default=s, metavar="DATASET",
                       help="cifar10 or cifar100 (default: the probe data, --data, which must then be CIFAR)")
    final.add_argument("--final-train-images", type=int, default=s, metavar="N",
                       help="images of the dataset's training split trained on (default 5000)")
    final.add_argument("--final-val-images", type=int, default=s, metavar="N",
                       help="other images of the training split held out for validation (default 2000; "
                       "the test split is never used)")
    final.add_argument("--final-batch-size", type=int, default=s, metavar="B", help="training batch size (default 128)")
    final.add_argument("--final-recipe", default=s, metavar="NAME", help="training recipe (default quick; `rznas train --recipe`)")
    final.add_argument("--final-seed", type=int, default=s, metavar="S",
                       help="split, data order and weight init (default 0; independent of --seed)")
    final.add_argument("--final-space-option", action="append", default=s, metavar="KEY=VALUE",
                       help="space option of the trained network, e.g. cells_per_stage=1 for a cheaper NB201 net; repeatable")
    final.add_argument("--final-device", choices=["auto", "cpu", "cuda"], default=s, help="training device (default auto)")
    parser.set_defaults(func=run_command)
    return parser


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    """Config keys for the flags the user actually gave."""
    given = vars(args)
    values = {key: given[dest] for dest, key in _VALUE_FLAGS.items() if dest in given}
    values.update({key: False for dest, key in _SWITCHES.items() if given.get(dest)})
    if given.get("space_option"):
        from .train import parse_space_options

        values["space_options"] = parse_space_options(given["space_option"])
    if given.get("final_space_option"):
        from .train import parse_space_options

        values["final_space_options"] = parse_space_options(given["final_space_option"])
    values.update({key: True for dest, key in _ON_SWITCHES.items() if given.get(dest)})
    return values


def run_command(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..search.config import resolve_config
    from ..search.progress import Progress
    from ..search.runner import SearchRun

    progress = Progress(enabled=not args.quiet)
    overrides = overrides_from(args)
    if args.resume and args.replay:
        raise ConfigError("--resume and --replay exclude each other")
    if args.resume:
        if args.config or args.out:
            raise ConfigError("--resume continues RUN_DIR with its own settings; drop --config/--out")
        run = SearchRun.resume(args.resume, overrides=overrides, progress=progress)
    elif args.replay:
        if overrides or args.config:
            raise ConfigError("--replay re-runs RUN_DIR with its own settings; only --out may be given")
        run = SearchRun.replay(args.replay, args.out or f"{args.replay.rstrip('/')}-replay", progress=progress)
    else:
        config = resolve_config(args.config, overrides)
        out = args.out or str(Path("runs") / time.strftime("search-%Y%m%d-%H%M%S"))
        run = SearchRun.start(config, out, progress=progress)
    try:
        result = run.run()
    finally:
        run.close()
    print_result(result, proxy=run.config.proxy)
    return 0


def _unit(proxy: str | None) -> str:
    """" M" / " MFLOPs" for proxies with a unit, else "" (unitless scores, or a name that is not one proxy)."""
    from ..proxies import PROXIES

    if proxy is None or proxy not in PROXIES:
        return ""
    unit = PROXIES.get(proxy).unit
    return f" {unit}" if unit else ""


def print_result(result: Any, *, proxy: str | None = None) -> None:
    """The found architecture, its benchmark accuracy and where the files are (stdout)."""
    if result.best is None:
        print(f"no architecture was scored; see {result.run_dir}/trials.csv")
        return
    print(f"best architecture: {result.best_encoded}")
    print(f"proxy score: {result.best.score:.6g}{_unit(proxy)} ({proxy + ', ' if proxy else ''}trial {result.best.number})")
    selection = getattr(result, "selection", None) or {}
    if selection.get("method") == "final_training":
        chosen, settings = selection["selected"], selection["settings"]
        print(
            f"selected by short training: val {chosen['val_acc']:.2f}% (proxy rank {chosen['rank']} of "
            f"{len(selection['candidates'])}, {settings['epochs']} epoch(s) on {settings['train_images']} "
            f"{settings['dataset']} images, {selection['seconds']:.0f} s)"
        )
    elif selection.get("final_selection"):
        print(f"final selection: {selection['final_selection']}")
    bench = result.benchmark
    if "skipped" in bench:
        print(f"benchmark: skipped ({bench['skipped']})")
    else:
        for dataset in ("cifar10", "cifar100", "imagenet16"):
            if dataset in bench:
                acc = bench[dataset]
                print(f"{dataset:11s} val {acc['val_acc']:.2f}%  test {acc['test_acc']:.2f}%")
    usage = getattr(result, "usage", None) or {}
    per = usage.get("per_iteration") or {}
    if usage.get("calls") and per.get("input_tokens") is not None:
        cost = "cost unknown (no price for the model)" if usage["cost_usd"] is None else f"${usage['cost_usd']:.4f}"
        per_cost = "" if per.get("cost_usd") is None else f", ${per['cost_usd']:.5f}"
        print(
            f"LLM: {usage['calls']} calls, {usage['input_tokens']} tokens in / {usage['output_tokens']} out, "
            f"{cost}; per iteration {per['input_tokens']:.0f} in / {per['output_tokens']:.0f} out{per_cost}"
        )
    state = "" if result.status == "finished" else f" ({result.status}: {result.reason})"
    print(f"run directory: {result.run_dir}{state}")
