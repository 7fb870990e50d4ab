"""`rznas score`: zero-cost proxy scores of given architectures (a table, or JSON lines)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from . import COMMANDS
from ..errors import ConfigError, InvalidArchitecture, ProxyError

if TYPE_CHECKING:  # pragma: no cover
    from ..arch import Architecture
    from ..proxies import Proxy
    from ..spaces import SearchSpace


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
    parser.add_argument("--proxy", required=True, help="proxy or ensemble name(s), comma-separated: zico, zico+naswot+synflow, az_nas (see `rznas list proxies`)")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--arch", help="one architecture in the space's string encoding")
    which.add_argument("--arch-file", type=Path, help="a file with one architecture per line (# comments allowed)")
    parser.add_argument(
        "--data", default="auto",
        help="probe data: auto (default: cifar10 when a proxy is data-dependent, else gaussian), cifar10, cifar100, "
        "gaussian, folder:PATH (class sub-folders of PNG/JPEG images) or npz:PATH (x/y arrays); the class count "
        "comes from the data",
    )
    parser.add_argument("--data-dir", help="data root (default: $RZNAS_DATA_DIR)")
    parser.add_argument("--batch-size", type=int, default=64, help="probe batch size (default: 64)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the probe sample and the weights (default: 0)")
    parser.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help="where to score (default auto: cuda when visible)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per (arch, proxy) line")
    parser.add_argument(
        "--threads", type=int, default=1,
        help="torch CPU threads (default 1, as `rznas search`: the thread count changes the last digits of some scores)",
    )
    parser.add_argument(
        "--cache", default="default", metavar="PATH",
        help="score cache for ensemble reference scores (default: $RZNAS_CACHE_DIR or ~/.cache/rznas; none: off)",
    )
    add_reference_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def score_unit(proxy: "Proxy", resolution: int) -> str:
    """The printed unit of a proxy's score, e.g. "M" or "MFLOPs @32px" ("-" for a unitless score)."""
    unit = proxy.unit or "-"
    return f"{unit} @{resolution}px" if proxy.at_probe_resolution else unit


def format_flops(flops: float) -> str:
    """Multiply-adds with a unit: 400.1 MFLOPs, 18.8 GFLOPs (FLOPs = multiply-adds, as NB201 counts them)."""
    return f"{flops / 1e9:.4g} GFLOPs" if flops >= 1e9 else f"{flops / 1e6:.4g} MFLOPs"


def describe_size(space: "SearchSpace", arch: "Architecture", num_classes: int) -> str:
    """Params and FLOPs as the budgets count them: at the space's native resolution, with units."""
    import torch

    from ..search.budget import measure_size

    def build() -> "torch.nn.Module":
        with torch.random.fork_rng(devices=[]):  # the counts need no particular weights
            return space.build(arch, num_classes=num_classes)

    size = measure_size(space, arch, build, num_classes=num_classes)
    classes = f", {size.num_classes} classes" if size.num_classes not in (None, num_classes) else ""
    return f"params {size.params / 1e6:.4g} M, flops {format_flops(size.flops)} @{size.resolution}px{classes}"


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


def add_reference_arguments(parser: argparse.ArgumentParser, *, default: object = 256, seed_default: object = 0) -> None:
    """--reference-size / --reference-seed: the sample an ensemble ranks its components against."""
    parser.add_argument(
        "--reference-size", type=int, default=default, metavar="R",
        help="ensembles (a+b+c, az_nas): reference cells each component is ranked against (default 256)",
    )
    parser.add_argument(
        "--reference-seed", type=int, default=seed_default, metavar="S",
        help="ensembles: seed that draws the reference cells (default 0)",
    )


def run(args: argparse.Namespace) -> int:
    """Score each architecture with every proxy or ensemble; exit 4 when any score failed."""
    from ..data.probe_choice import choose_probe_data, synthetic_data_notice
    from ..device import choose_device
    from ..fitness import ProxyFitness
    from ..proxies import get_proxy
    from ..scoring import chunks_needed, score_architecture
    from ..search.executors import ProbeSpec
    from ..search.named_fitness import fitness_components, named_fitnesses
    from ..spaces import get_space

    space = get_space(args.space)
    names = parse_names(args.proxy)
    proxies = [get_proxy(name) for name in fitness_components(names)]
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
    if args.threads < 1:
        raise ConfigError(f"--threads must be positive, got {args.threads}")
    import torch

    torch.set_num_threads(args.threads)  # summation order: the same as a search's default torch_threads=1
    device = choose_device(args.device)
    data = choose_probe_data(args.data, proxies, data_dir=args.data_dir)
    notice = synthetic_data_notice(data, proxies)
    if notice:
        print(f"rznas: {notice}", file=sys.stderr)
    probe_spec = ProbeSpec(
        dataset=data, data_dir=args.data_dir, batch_size=args.batch_size, chunks=chunks_needed(proxies), seed=args.seed
    )
    probe = probe_spec.make()
    if device != "cpu":
        probe = probe.to(device)  # scoring copies each network to the probe's device
    num_classes = probe.num_classes  # the data set's class count (10 for gaussian)
    # ensembles: the reference cells and cache a search with these settings reads
    fitnesses = named_fitnesses(
        names, space_name=args.space, space=space, probe_spec=probe_spec, probe=probe, device=device,
        score_seed=args.seed, reference_size=args.reference_size, reference_seed=args.reference_seed,
        cache=args.cache, progress=sys.stderr,
    )
    # an ensemble's value (a sum of log CDFs) has no unit
    units = {
        name: score_unit(fitness.proxy, probe.resolution) if isinstance(fitness, ProxyFitness) else "-"
        for name, fitness in fitnesses.items()
    }
    failed = 0
    if not args.json:
        print(
            f"# probe: {probe.source} ({probe.resolution}x{probe.resolution} px, {probe.num_classes} classes), "
            f"batch size {probe.batch_size}, seed {args.seed}, device {device}"
        )
        print(f"{'proxy':12s} {'score':>16s} {'unit':14s} {'seconds':>9s}  arch")
    for arch in archs:
        scored = score_architecture(space, arch, probe, proxies, seed=args.seed, num_classes=num_classes)
        text = space.encode(arch)
        for name, fitness in fitnesses.items():
            result = fitness.combine(scored.results)
            failed += not result.ok
            if args.json:
                row = {"arch": text, "proxy": name, "score": result.value, "seconds": result.seconds}
                proxy = getattr(fitness, "proxy", None)
                if proxy is not None and proxy.unit:
                    row["unit"] = proxy.unit
                if proxy is not None and proxy.at_probe_resolution:
                    row["resolution_px"] = probe.resolution
                if fitness.components:
                    row["components"] = result.components
                if not result.ok:
                    row["error"] = result.error
                print(json.dumps(row))
            else:
                value = f"{result.value:16.6g}" if result.ok else f"{'FAILED':>16s}"
                print(f"{name:12s} {value} {units[name]:14s} {result.seconds:9.4f} s  {text}")
                if not result.ok:
                    print(f"{'':12s} error: {result.error}")
        if not args.json:
            print(f"{'':12s} size: {describe_size(space, arch, num_classes)}")
    if failed:
        print(f"rznas: {failed} score(s) failed", file=sys.stderr)
        return ProxyError.exit_code
    return 0
