"""`rznas bench KIND`: benchmarks; each kind registers its own sub-parser in BENCHES.

`rznas bench correlation` measures Kendall tau / Spearman rho of proxies against
NAS-Bench-201 200-epoch test accuracy (see rznas.benchmarks.correlation).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import COMMANDS, AddParser
from .score import add_reference_arguments
from ..errors import ConfigError
from ..registry import Registry

BENCHES: Registry[AddParser] = Registry("benchmark")


@COMMANDS.register("bench")
def add_parser(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Register `rznas bench` and every registered benchmark kind under it."""
    parser = subparsers.add_parser("bench", help="run a benchmark (see `rznas bench -h`)")
    kinds = parser.add_subparsers(dest="bench", metavar="KIND")
    for name in BENCHES.names():
        BENCHES.get(name)(kinds)
    parser.set_defaults(func=lambda args: _no_kind(parser))
    return parser


def _no_kind(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


@BENCHES.register("correlation")
def add_correlation(kinds: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Register `rznas bench correlation`."""
    parser = kinds.add_parser(
        "correlation",
        help="rank correlation of proxies with NB201 test accuracy",
        description="Kendall tau and Spearman rho of zero-cost proxies against NAS-Bench-201 200-epoch "
        "test accuracy on N seeded architectures (the same sample for every proxy). Resumable: "
        "results are appended to a JSONL file in --out as each architecture finishes.",
    )
    parser.add_argument("--space", default="nb201", help="benchmark space (default: nb201)")
    parser.add_argument("--dataset", required=True, help="cifar10, cifar100 or imagenet16")
    parser.add_argument(
        "--proxies", required=True,
        help="comma-separated proxy or ensemble names (e.g. zico,synflow,zico+naswot+synflow); "
        "an ensemble's components reuse scores of compatible earlier runs in --out",
    )
    parser.add_argument("--samples", type=int, required=True, help="number of architectures N")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample, probe and weights (default: 0)")
    parser.add_argument(
        "--probe-data",
        help="images fed to the networks: cifar10, cifar100, gaussian, folder:PATH or npz:PATH "
        "(default: the dataset itself when its images are available)",
    )
    parser.add_argument("--batch-size", type=int, default=64, help="probe batch size (default: 64)")
    parser.add_argument("--data-dir", help="data root with the CIFAR folders (default: $RZNAS_DATA_DIR)")
    parser.add_argument(
        "--nb201", help="NB201 ground truth: compact-table folder or NATS-Bench file (default: $RZNAS_NB201_DIR, "
        "else <data dir>/nb201)"
    )
    parser.add_argument("--out", type=Path, default=Path("rznas-bench"), help="output folder (default: ./rznas-bench)")
    parser.add_argument("--json", action="store_true", help="print the JSON summary instead of the Markdown table")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice); recorded")
    parser.add_argument(
        "--bootstrap", type=int, default=1000, metavar="ROUNDS",
        help="bootstrap resamples for the intervals of rho and the top-region metrics (default 1000; 0: none)",
    )
    add_reference_arguments(parser)
    parser.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto",
        help="where networks are scored (default auto: cuda when visible); recorded",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.set_defaults(func=run_correlation_command)
    return parser


def run_correlation_command(args: argparse.Namespace) -> int:
    """Resolve data and ground truth, run (or resume) the benchmark, print the result."""
    from ..benchmarks.correlation import (
        CorrelationConfig,
        choose_probe_data,
        chunks_needed,
        prepare_probe,
        run_correlation,
    )
    from ..benchmarks.ground_truth import GROUND_TRUTH
    from ..data.probe_choice import synthetic_data_notice
    from ..device import choose_device
    from ..proxies import get_proxy
    from ..search.named_fitness import fitness_components
    from .score import parse_names

    import torch

    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be positive, got {args.threads}")
        torch.set_num_threads(args.threads)
    device = choose_device(args.device)  # before any data is read: cuda without a GPU fails at once
    names = parse_names(args.proxies)
    proxies = [get_proxy(name) for name in fitness_components(names)]
    if args.bootstrap < 0:
        raise ConfigError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    open_truth = GROUND_TRUTH.get(args.space)
    ground_truth = open_truth(args.nb201, data_dir=args.data_dir)
    dataset = ground_truth.dataset(args.dataset).name
    config = CorrelationConfig(
        dataset=dataset,
        proxies=tuple(names),
        samples=args.samples,
        seed=args.seed,
        space=args.space,
        probe_data=choose_probe_data(dataset, args.probe_data, data_dir=args.data_dir),
        batch_size=args.batch_size,
        chunks=chunks_needed(proxies),
        reference_size=args.reference_size,
        reference_seed=args.reference_seed,
        device=device,
    )
    notice = synthetic_data_notice(config.probe_data, proxies)
    if notice:
        print(f"rznas: {notice}", file=sys.stderr)
    probe = prepare_probe(config, ground_truth, data_dir=args.data_dir)
    summary = run_correlation(
        config,
        ground_truth=ground_truth,
        probe=probe,
        out_dir=args.out,
        progress=None if args.quiet else sys.stderr,
        bootstrap_rounds=args.bootstrap,
    )
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(Path(summary["files"]["md"]).read_text(encoding="utf-8"), end="")
        print(f"\nwritten: {summary['files']['json']}, {summary['files']['md']}, {summary['files']['jsonl']}")
    return 0


@BENCHES.register("search-quality")
def add_search_quality(kinds: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Register `rznas bench search-quality`."""
    parser = kinds.add_parser(
        "search-quality",
        help="NB201 search quality at the paper's scale (the RZ-NAS table), resumable",
        description="Run `rznas search` for every proxy x proposer x seed on NB201 (default: the paper's protocol, "
        "population 100, 1500 iterations, its five proxies), each in RUNS/<row>; finished runs are skipped and "
        "interrupted ones resumed. Rows accumulate in OUT.json and the table in OUT.md: mean +- std of the returned "
        "cell's 200-epoch test accuracy beside the paper, random search by validation accuracy and the largest "
        "#params at the same number of evaluations.",
    )
    parser.add_argument("--proxies", default="grasp,grad_norm,synflow,zen,zico",
                        help="comma-separated proxies or ensembles (default: the paper's five)")
    parser.add_argument("--proposers", default="random,llm", help="comma-separated: random (plain proxy search), llm (RZ-NAS)")
    parser.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated search seeds (default: 0,1,2,3,4)")
    parser.add_argument("--population", type=int, default=100, help="population size (default: 100, the paper's)")
    parser.add_argument("--iterations", type=int, default=1500, help="iterations (default: 1500, the paper's)")
    parser.add_argument("--data", default="cifar10", help="probe data of the proxies (default: cifar10)")
    parser.add_argument("--score-seed", type=int, default=0, help="score seed of every search (default: 0)")
    parser.add_argument("--llm", default="local:q8_0", help="LLM of the llm proposer (default: local:q8_0, the embedded model)")
    parser.add_argument("--variant", default="paper",
                        help="name of the extra flags below; rows are named <proxy>-<proposer>-<variant>-seed<S> (default: paper = none)")
    parser.add_argument("--search-flags", default="",
                        help="extra `rznas search` flags of this variant, one shell-quoted string (e.g. '--fused-reflection --lean-prompt')")
    parser.add_argument("--jobs", type=int, default=1, help="searches at once, one process each (default: 1; 2 uses both cores)")
    parser.add_argument("--runs", type=Path, default=Path("runs/search_paper_scale"), help="run directories (default: runs/search_paper_scale)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/search_paper_scale"),
                        help="result files OUT.json and OUT.md (default: benchmarks/results/search_paper_scale)")
    parser.add_argument("--summarize-only", action="store_true", help="only tabulate runs that finished")
    parser.set_defaults(func=run_search_quality_command)
    return parser


def run_search_quality_command(args: argparse.Namespace) -> int:
    """Run or tabulate the plan and print the table."""
    import shlex

    from ..benchmarks.search_quality import Protocol, make_plan, run_benchmark
    from .score import parse_names

    if args.jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {args.jobs}")
    if args.variant != "paper" and not args.search_flags:
        raise ConfigError(f"--variant {args.variant} names extra flags: give them with --search-flags")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds must be comma-separated integers, got {args.seeds!r}") from None
    protocol = Protocol(population=args.population, iterations=args.iterations, data=args.data, llm=args.llm,
                        score_seed=args.score_seed)
    plan = make_plan(parse_names(args.proxies), parse_names(args.proposers), seeds, variant=args.variant,
                     flags=shlex.split(args.search_flags))
    run_benchmark(plan, protocol, runs=args.runs, out=args.out, jobs=args.jobs, summarize_only=args.summarize_only)
    print(args.out.with_suffix(".md").read_text(encoding="utf-8"), end="")
    print(f"\nwritten: {args.out.with_suffix('.json')}, {args.out.with_suffix('.md')}")
    return 0
