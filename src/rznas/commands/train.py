"""`rznas train`: train an architecture on CIFAR-10/100 or the user's images with a registered recipe."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import COMMANDS


def _format_seconds(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def add_arch_arguments(parser: argparse.ArgumentParser) -> None:
    """--space / --arch / --arch-file / --arch-json, shared with `rznas export`."""
    parser.add_argument("--space", help="search space of --arch (e.g. darts, nb201); read from JSON otherwise")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--arch", help="architecture in the space's encoding (DARTS: Genotype(...) or DARTS_V2)")
    group.add_argument("--arch-file", help="JSON file: an architecture or a search run's best_arch.json")
    group.add_argument("--arch-json", help='inline JSON {"space": ..., "genotype": ...}')


@COMMANDS.register("train")
def add_parser(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    from ..training.recipes import RECIPES

    parser = subparsers.add_parser(
        "train",
        help="train an architecture on CIFAR-10/100 or your own images",
        description="Train an architecture with a registered recipe; checkpoints every epoch and resumes.",
    )
    add_arch_arguments(parser)
    parser.add_argument(
        "--data", "--dataset", dest="dataset", default="cifar10", metavar="DATA",
        help="cifar10 (default), cifar100, folder:PATH (class sub-folders of PNG/JPEG; train/ and test/ "
        "sub-folders, else 10%% held out) or npz:PATH (x/y arrays, x_test/y_test optional); "
        "append ?norm=cifar10|cifar100|imagenet|none to replace the data's own mean/std",
    )
    parser.add_argument("--data-dir", help="data root (default: $RZNAS_DATA_DIR)")
    parser.add_argument("--recipe", choices=RECIPES.names(), help="default: darts for DARTS cells, zen for macro spaces")
    parser.add_argument("--epochs", type=int, help="override the recipe's epoch count")
    parser.add_argument("--batch-size", type=int, help="override the recipe's batch size")
    parser.add_argument("--train-subset", type=int, help="train on a seeded random subset of N images")
    parser.add_argument("--test-subset", type=int, help="evaluate on a seeded random subset of N test images")
    parser.add_argument("--space-option", action="append", default=[], metavar="KEY=VALUE",
                        help="space constructor option, JSON value (e.g. channels=16, layers=8); repeatable")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="rznas-train", help="output folder (checkpoint.pt, summary.json)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    parser.set_defaults(func=run)
    return parser


def parse_space_options(items: list[str]) -> dict[str, object]:
    """KEY=VALUE pairs with JSON values (bare words are strings)."""
    from ..errors import ConfigError

    options: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--space-option {item!r} must be KEY=VALUE")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def run(args: argparse.Namespace) -> int:
    from ..training import default_recipe, load_architecture, load_train_data, train_architecture
    from ..training.recipes import RECIPES

    arch = load_architecture(space_name=args.space, arch_text=args.arch, arch_file=args.arch_file,
                             arch_json=args.arch_json)
    recipe = RECIPES.get(args.recipe) if args.recipe else default_recipe(arch.space)
    recipe = recipe.with_overrides(epochs=args.epochs, batch_size=args.batch_size)
    data = load_train_data(args.dataset, data_dir=args.data_dir, train_subset=args.train_subset,
                            test_subset=args.test_subset, seed=args.seed)
    out = Path(args.out)
    print(f"rznas train: {arch.space} {arch.id}, recipe {recipe.name} ({recipe.epochs} epochs, "
          f"batch {recipe.batch_size}), {data.description}", file=sys.stderr)

    def progress(stats) -> None:
        print(
            f"epoch {stats.epoch:>4}/{stats.epochs}  lr {stats.lr:.4f}  loss {stats.train_loss:.4f}  "
            f"train {stats.train_acc:5.2f}%  test {stats.test_acc:5.2f}%  {stats.seconds:.1f}s  "
            f"ETA {_format_seconds(stats.eta_seconds)}",
            file=sys.stderr,
            flush=True,
        )

    result = train_architecture(
        arch, data, recipe, space_options=parse_space_options(args.space_option), seed=args.seed,
        device=args.device, checkpoint=out / "checkpoint.pt", resume=args.resume, on_epoch=progress,
    )
    text = json.dumps(result.summary, indent=2)
    (out / "summary.json").write_text(text + "\n")
    print(text)
    return 0
