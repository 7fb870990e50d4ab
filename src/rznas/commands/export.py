"""`rznas export`: an architecture (optionally with trained weights) as PyTorch source + ONNX."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import COMMANDS
from .train import add_arch_arguments, parse_space_options

FORMATS = ("torch", "onnx")


@COMMANDS.register("export")
def add_parser(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export",
        help="export an architecture as a standalone PyTorch file and as ONNX",
        description="Write NAME.py (standalone, needs only torch) + NAME.pt (state_dict) and NAME.onnx.",
    )
    add_arch_arguments(parser)
    parser.add_argument("--checkpoint", help="a `rznas train` checkpoint: exports its architecture and weights")
    parser.add_argument("--format", nargs="+", choices=FORMATS, default=list(FORMATS))
    parser.add_argument("--out", default="rznas-export", help="output folder")
    parser.add_argument("--name", default="model", help="file stem of the outputs")
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--resolution", type=int, default=32, help="input resolution of the ONNX graph and checks")
    parser.add_argument("--opset", type=int, default=18)
    parser.add_argument("--onnx-exporter", choices=["auto", "dynamo", "torchscript"], default="auto",
                        help="auto: torch.export-based when onnxscript is installed, else the legacy exporter")
    parser.add_argument("--space-option", action="append", default=[], metavar="KEY=VALUE",
                        help="space constructor option, JSON value; repeatable")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    import torch

    from ..arch import Architecture
    from ..errors import ConfigError
    from ..export import export_onnx, export_pytorch
    from ..spaces import get_space
    from ..training import load_architecture, load_checkpoint

    if args.checkpoint:
        if args.arch or args.arch_file or args.arch_json:
            raise ConfigError("--checkpoint already names the architecture; drop --arch/--arch-file/--arch-json")
        state = load_checkpoint(args.checkpoint)
        config = state["config"]
        arch = Architecture.from_dict(config["arch"])
        space = get_space(config["space"], **config["space_options"])
        num_classes = int(config["num_classes"])
        model = space.build(arch, num_classes=num_classes)
        model.load_state_dict(state["model"])
    else:
        arch = load_architecture(space_name=args.space, arch_text=args.arch, arch_file=args.arch_file,
                                 arch_json=args.arch_json)
        space = get_space(arch.space, **parse_space_options(args.space_option))
        num_classes = args.num_classes
        torch.manual_seed(0)
        model = space.build(arch, num_classes=num_classes)
    model.eval()
    written: dict[str, str] = {}
    if "torch" in args.format:
        py_path, pt_path = export_pytorch(space, arch, args.out, num_classes=num_classes, model=model,
                                          stem=args.name, check_resolution=args.resolution)
        written.update(python=str(py_path), state_dict=str(pt_path))
    if "onnx" in args.format:
        onnx_path = export_onnx(model, Path(args.out) / f"{args.name}.onnx", resolution=args.resolution,
                                opset=args.opset, exporter=args.onnx_exporter)
        written["onnx"] = str(onnx_path)
    print(f"rznas export: {arch.space} {arch.id} -> {args.out}", file=sys.stderr)
    print(json.dumps({"space": arch.space, "arch_id": arch.id, "num_classes": num_classes, **written}, indent=2))
    return 0
