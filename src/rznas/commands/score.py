"""`rznas score`: zero-cost proxy scores of given architectures (a table, or JSON lines)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import COMMANDS
from ..errors import ConfigError, InvalidArchitecture, ProxyError


def parse_names(text: str) -> list[str]:
    """Comma-separated names -> list, without blanks; duplicates are an error."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise ConfigError("name at least one proxy")
    if len(set(names)) != len(names):
        raise ConfigError(f"proxy list has duplicates: {text}")
    return names


@COMMANDS.register("score")
def add_parser(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    """Register `rznas score`."""
    parser = subparsers.add_parser("score", help="score architectures with zero-cost proxies")
    parser.add_argument("--space", default="nb201", help="search space (default: nb201)")
    parser.add_argument("--proxy", required=True, help="proxy name(s), comma-separated (see `rznas list proxies`)")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--arch", help="one architecture in the space's string encoding")
    which.add_argument("--arch-file", type=Path, help="a file with one architecture per line (# comments allowed)")
    parser.add_argument(
        "--data", default="cifar10", help="probe data: cifar10, cifar100 or gaussian (default: cifar10)"
    )
    parser.add_argument("--data-dir", help="data root (default: $RZNAS_DATA_DIR)")
    parser.add_argument("--batch-size", type=int, default=64, help="probe batch size (default: 64)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the probe sample and the weights (default: 0)")
    parser.add_argument("--json", action="store_true", help="one JSON object per (arch, proxy) line")
    parser.set_defaults(func=run)
    return parser


def read_arch_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the non-blank, non-comment lines of an arch file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"architecture file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read architecture file {path}: {exc}") from None
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)]
    lines = [(n, line) for n, line in lines if line and not line.startswith("#")]
    if not lines:
        raise ConfigError(f"architecture file {path} lists no architectures")
    return lines


def run(args: argparse.Namespace) -> int:
    """Score each architecture with every proxy; exit 4 when any score failed."""
    from ..scoring import chunks_needed, score_architecture
    from ..data.probe import make_probe
    from ..proxies import get_proxy
    from ..spaces import get_space

    space = get_space(args.space)
    proxies = [get_proxy(name) for name in parse_names(args.proxy)]
    if args.arch is not None:
        archs = [space.decode(args.arch)]
    else:
        archs = []
        for number, line in read_arch_lines(args.arch_file):
            try:
                archs.append(space.decode(line))
            except InvalidArchitecture as exc:
                raise InvalidArchitecture(f"{args.arch_file}:{number}: {exc}") from None
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be positive, got {args.batch_size}")
    probe = make_probe(
        args.data,
        data_dir=args.data_dir,
        batch_size=args.batch_size,
        chunks=chunks_needed(proxies),
        seed=args.seed,
    )
    num_classes = probe.num_classes  # the data set's class count (10 for gaussian)
    failed = 0
    if not args.json:
        print(f"# probe: {probe.source}, batch size {probe.batch_size}, seed {args.seed}")
        print(f"{'proxy':12s} {'score':>16s} {'seconds':>9s}  arch")
    for arch in archs:
        scored = score_architecture(space, arch, probe, proxies, seed=args.seed, num_classes=num_classes)
        text = space.encode(arch)
        for name, result in scored.results.items():
            failed += not result.ok
            if args.json:
                row = {"arch": text, "proxy": name, "score": result.value, "seconds": result.seconds}
                if not result.ok:
                    row["error"] = result.error
                print(json.dumps(row))
            else:
                value = f"{result.value:16.6g}" if result.ok else f"{'FAILED':>16s}"
                print(f"{name:12s} {value} {result.seconds:9.4f}  {text}")
                if not result.ok:
                    print(f"{'':12s} error: {result.error}")
    if failed:
        print(f"rznas: {failed} score(s) failed", file=sys.stderr)
        return ProxyError.exit_code
    return 0
