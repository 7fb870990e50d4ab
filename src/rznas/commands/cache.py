"""`rznas cache`: inspect, clear, export and precompute the persistent proxy-score cache."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

from . import COMMANDS
from ..registry import Registry

Action = Callable[[argparse.Namespace], int]
ACTIONS: Registry[Action] = Registry("cache action")


@COMMANDS.register("cache")
def add_parser(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Register `rznas cache info|clear|export|precompute`."""
    parser = subparsers.add_parser(
        "cache",
        help="inspect, clear, export or precompute the persistent proxy-score cache",
        description="The score cache (default ~/.cache/rznas/scores.sqlite, or $RZNAS_CACHE_DIR/scores.sqlite) "
        "is shared between runs; see docs/scale.md.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--cache", metavar="PATH", help="cache file or folder (default: $RZNAS_CACHE_DIR or ~/.cache/rznas)")
    actions = parser.add_subparsers(dest="cache_action", metavar="ACTION", required=True)

    actions.add_parser("info", parents=[common], help="location, size on disk, counts per space and proxy")

    clear = actions.add_parser("clear", parents=[common], help="delete stored scores")
    clear.add_argument("--space", help="only this space")
    clear.add_argument("--proxy", help="only this proxy")
    clear.add_argument("--failed", action="store_true", help="only stored failures (to rescore them)")
    clear.add_argument(
        "--stale", action="store_true",
        help="only contexts whose key no longer matches today's code (rznas/torch/numpy version or score code)",
    )

    export = actions.add_parser("export", parents=[common], help="write stored scores as JSON lines or CSV")
    export.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    export.add_argument("--out", type=Path, help="output file (default: stdout)")
    export.add_argument("--space", help="only this space")
    export.add_argument("--proxy", help="only this proxy")

    pre = actions.add_parser(
        "precompute",
        parents=[common],
        help="score every architecture of a space (NB201: 15,625 cells); resumable",
        description="Scores every cell with the search's evaluator and stores the results; a second run "
        "skips what is stored. Probe defaults equal `rznas search`'s, so a search with the same "
        "settings reads these scores.",
    )
    pre.add_argument("--space", default="nb201", help="a space that can enumerate its cells (default nb201)")
    pre.add_argument("--proxy", required=True, help="proxy or ensemble name, e.g. zico or zico+naswot+synflow (see `rznas list proxies`)")
    pre.add_argument("--reference-size", type=int, default=None, metavar="R", help="ensembles: reference cells (default 256)")
    pre.add_argument("--reference-seed", type=int, default=None, metavar="S", help="ensembles: reference seed (default 0)")
    pre.add_argument(
        "--data", "--probe-data", dest="data", default=None,
        help="probe data: auto (default, as in the search: cifar10 for a data-dependent proxy, else gaussian), "
        "cifar10, cifar100, gaussian",
    )
    pre.add_argument("--data-dir", help="data folder (else $RZNAS_DATA_DIR)")
    pre.add_argument("--batch-size", type=int, default=None, help="probe batch size (default: the search's, 64)")
    pre.add_argument("--probe-chunks", type=int, default=None, help="probe batches (default: the search's, 2)")
    pre.add_argument("--seed", type=int, default=None, help="seed of probe and weights (default 0)")
    pre.add_argument("--max-params", type=float, default=None, help="parameter budget, as in the search")
    pre.add_argument("--max-flops", type=float, default=None, help="FLOPs budget, as in the search")
    pre.add_argument("--executor", default="process", help="inline, process (default) or ray")
    pre.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto",
        help="where networks are scored (default auto: cuda when visible); part of the cache key",
    )
    pre.add_argument("--workers", type=int, default=None, help="worker count (default: CPUs, or one per GPU)")
    pre.add_argument("--ray-address", help="an existing Ray cluster (with --executor ray)")
    pre.add_argument("--limit", type=int, default=None, help="score at most N cells not yet stored (a trial run)")
    pre.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Dispatch to the chosen action."""
    return ACTIONS.get(args.cache_action)(args)


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _open_existing(args: argparse.Namespace) -> Any:
    """The cache, or None (after saying so) when there is none yet."""
    from ..score_cache import ScoreCache, resolve_cache_path

    path = resolve_cache_path(args.cache)
    if not path.exists():
        print(f"no score cache at {path} (nothing stored yet)")
        return None
    return ScoreCache(path, create=False)


@ACTIONS.register("info")
def info(args: argparse.Namespace) -> int:
    """Print the location, size on disk and per-context counts."""
    cache = _open_existing(args)
    if cache is None:
        return 0
    with cache:
        rows = cache.summary()
        print(f"score cache: {cache.path} ({_human(cache.size_bytes())} on disk)")
        if not rows:
            print("empty")
            return 0
        print(f"{'space':8s} {'proxy':12s} {'scores':>8s} {'failed':>7s} {'state':7s} settings")
        stale = 0
        for row in rows:
            probe = row.settings.get("probe", {})
            brief = (
                f"{row.key[:10]} probe={probe.get('dataset')}x{probe.get('batch_size')}/{probe.get('chunks')} "
                f"score_seed={row.settings.get('score_seed')} device={row.settings.get('device')}"
            )
            why = row.stale
            stale += why is not None
            state = "current" if why is None else "STALE"
            print(f"{row.space:8s} {row.proxy:12s} {row.complete:8d} {row.failed:7d} {state:7s} {brief}")
            if why is not None:
                print(f"{'':38s} stale: {why}")
        print(f"total: {sum(r.complete for r in rows)} scores, {sum(r.failed for r in rows)} failures")
        if stale:
            print(
                f"{stale} stale context(s): no search or precompute reads them any more; "
                "delete them with: rznas cache clear --stale"
            )
    return 0


@ACTIONS.register("clear")
def clear(args: argparse.Namespace) -> int:
    """Delete the selected scores and report how many went."""
    cache = _open_existing(args)
    if cache is None:
        return 0
    with cache:
        deleted = cache.clear(space=args.space, proxy=args.proxy, failed_only=args.failed, stale_only=args.stale)
        print(f"deleted {deleted} stored result(s) from {cache.path} ({_human(cache.size_bytes())} left)")
    return 0


@ACTIONS.register("export")
def export(args: argparse.Namespace) -> int:
    """Write the selected rows to --out or stdout."""
    from ..errors import ConfigError
    from ..score_cache import write_export

    cache = _open_existing(args)
    if cache is None:
        return 0
    with cache:
        rows = cache.rows(space=args.space, proxy=args.proxy)
        if args.out is None:
            try:
                write_export(rows, sys.stdout, args.format)
                sys.stdout.flush()
            except BrokenPipeError:  # e.g. piped into `head`: not an error
                import os

                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        try:
            with open(args.out, "w", encoding="utf-8", newline="") as out:
                count = write_export(rows, out, args.format)
        except OSError as exc:
            raise ConfigError(f"cannot write {args.out}: {exc.strerror or exc}") from None
        print(f"wrote {count} row(s) to {args.out}", file=sys.stderr)
    return 0


@ACTIONS.register("precompute")
def precompute(args: argparse.Namespace) -> int:
    """Score every cell of the space not yet stored, streaming results into the cache."""
    from ..data.probe_choice import synthetic_data_notice
    from ..errors import ConfigError
    from ..fitness import component_names
    from ..proxies import PROXIES
    from ..score_cache import ScoreCache
    from ..search.config import SearchConfig
    from ..search.executors import EvaluatorSpec, create_executor
    from ..spaces import get_space

    if args.limit is not None and args.limit < 0:
        raise ConfigError(f"--limit must be >= 0, got {args.limit}")
    given = {
        "space": args.space,
        "proxy": args.proxy,
        "data": args.data,
        "data_dir": args.data_dir,
        "batch_size": args.batch_size,
        "probe_chunks": args.probe_chunks,
        "score_seed": args.seed,
        "max_params": args.max_params,
        "max_flops": args.max_flops,
        "reference_size": args.reference_size,
        "reference_seed": args.reference_seed,
        "device": args.device,
    }
    config = SearchConfig().replace(**{k: v for k, v in given.items() if v is not None}).resolved()
    notice = synthetic_data_notice(config.data, [PROXIES.get(name) for name in component_names(config.proxy)])
    if notice:
        print(f"rznas: {notice}", file=sys.stderr)
    space = get_space(config.space)
    enumerate_all = getattr(space, "all_architectures", None)
    if enumerate_all is None:
        raise ConfigError(f"space {config.space!r} cannot enumerate its architectures; precompute needs one that can (nb201)")
    cache = ScoreCache.open(args.cache)
    try:
        # an ensemble's reference is scored (or read) once here, so that workers never rescore it
        spec = EvaluatorSpec.from_config(config).with_references(cache, None if args.quiet else sys.stderr)
        spec.build()  # fail early (unknown proxy, missing data) before any worker starts
        executor = create_executor(args.executor, spec, workers=args.workers, ray_address=args.ray_address)
    except BaseException:
        cache.close()
        raise
    with cache, executor:
        context = cache.context(executor.factory.cache_settings())  # type: ignore[attr-defined]
        known = cache.known_ids(context)
        todo = [arch for arch in enumerate_all() if arch.id not in known]
        total = sum(1 for _ in enumerate_all())
        if args.limit is not None:
            todo = todo[: args.limit]
        progress = _Progress(len(todo), len(known), total, quiet=args.quiet)
        progress.start(cache.path, config.proxy, executor)
        pending: list[Any] = []
        lost = 0
        flushed = time.perf_counter()
        for _, outcome in executor.map_unordered(todo):
            if outcome.transient:  # a lost worker, out of memory: not stored, retried by the next run
                lost += 1
            else:
                pending.append(outcome)
            progress.tick(failed=outcome.state.value != "complete")
            if len(pending) >= 64 or time.perf_counter() - flushed >= 2.0:  # resumable: little is lost on a kill
                cache.put_many(context, pending)
                pending.clear()
                flushed = time.perf_counter()
        cache.put_many(context, pending)
        progress.finish()
        stored = len(cache.known_ids(context))
    print(f"{stored}/{total} {config.space} cells stored for proxy {config.proxy} in {cache.path}")
    if lost:
        print(
            f"rznas: {lost} cell(s) failed for a transient reason (a lost worker, out of memory) and were not "
            "stored; run again to retry them",
            file=sys.stderr,
        )
        return 4
    return 0


class _Progress:
    """Throttled progress lines on stderr: done/total, rate, ETA, failures."""

    def __init__(self, todo: int, known: int, total: int, *, quiet: bool, every: float = 2.0):
        self.todo, self.known, self.total = todo, known, total
        self.quiet = quiet
        self.every = every
        self.done = 0
        self.failed = 0
        self.begin = time.perf_counter()
        self.last = self.begin

    def start(self, path: Path, proxy: str, executor: Any) -> None:
        if not self.quiet:
            print(
                f"precompute {proxy}: {self.known}/{self.total} already stored, {self.todo} to score "
                f"with {executor.name} x{executor.workers} -> {path}",
                file=sys.stderr,
            )

    def due(self) -> bool:
        return time.perf_counter() - self.last >= self.every

    def tick(self, *, failed: bool) -> None:
        self.done += 1
        self.failed += failed
        if self.due():
            self.report()

    def report(self) -> None:
        self.last = time.perf_counter()
        if self.quiet:
            return
        elapsed = self.last - self.begin
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.todo - self.done) / rate if rate > 0 else float("inf")
        print(
            f"  {self.done}/{self.todo} scored ({rate:.2f} cells/s, ETA {eta:.0f} s, {self.failed} failed)",
            file=sys.stderr,
        )

    def finish(self) -> None:
        self.report()
