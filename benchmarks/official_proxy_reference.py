"""Reference values for az_*, meco and swap from their official code, cell by cell.

Runs the official implementations (checked out here, never committed) on rznas-built
NAS-Bench-201 networks and writes what they return, with the exact command, to a JSON
file that tests/test_proxies_official.py checks rznas against:

- AZ-NAS (github.com/cvlab-yonsei/AZ-NAS, ``NB201/ZeroShotProxy/compute_az_nas_score.py``):
  its ``compute_nas_score`` on the rznas network (which exposes the block features AZ-NAS
  reads as ``extract_cell_features``), Gaussian input, batch 64, global torch seed ``seed``;
- MeCo (github.com/HamsterMimi/MeCo, ``correlation/NAS_Bench_201.py``): its ``get_score``
  (read from the script by name and compiled alone: the script's imports need torchvision)
  on the network's own initial weights and the first CIFAR-10 probe image;
- SWAP (github.com/pym1024/SWAP, ``src/metrics/swap.py``): its ``SWAP`` class driven as
  ``correlation.py`` does (16 images, 32 Gaussian re-inits, mean), unregularised and with
  rznas's regulariser (mu = 1500, sigma = 1.5e6).

Each cell also gets rznas's own proxy scores (its own seeding) so that the JSON shows the
measured rank agreement; ``--official-from`` recomputes only those, reusing the official
values of an earlier file (they do not depend on rznas). Example (the commands recorded
in the committed file):

    git --git-dir=<mirror> archive HEAD | tar -x -C <dir>   # for each repository
    RZNAS_DATA_DIR=../shared/data python benchmarks/official_proxy_reference.py \\
        --az-nas <dir>/AZ-NAS --meco <dir>/MeCo --swap <dir>/SWAP \\
        --cells 12 --seed 0 --out tests/golden/official_proxy_reference.json
"""
from __future__ import annotations

import argparse
import ast
import copy
import importlib.util
import json
import random
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from scipy.stats import spearmanr

from rznas.benchmarks.nb201_table import open_nb201
from rznas.data.probe import make_probe
from rznas.proxies import evaluate, get_proxy
from rznas.proxies.az_nas import stem_cell_features
from rznas.proxies.swap import REPEATS, SAMPLES, Swap
from rznas.spaces import get_space
from rznas.spaces.nb201 import EDGES

AZ_COMPONENTS = ("expressivity", "progressivity", "trainability")
RZNAS_PROXIES = ("az_expressivity", "az_progressivity", "az_trainability", "meco", "swap_noreg", "swap")
PROBE = {"dataset": "cifar10", "batch_size": 64, "chunks": 2, "seed": 0}


def load_module(path: Path, name: str) -> Any:
    """Import one official source file by path."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_function(path: Path, function: str, namespace: dict) -> Callable:
    """Compile only ``function`` from an official script whose own imports are not installed here."""
    tree = ast.parse(path.read_text())
    nodes = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == function]
    if not nodes:
        raise SystemExit(f"{path} defines no function {function!r}")
    code = compile(ast.Module(body=nodes, type_ignores=[]), str(path), "exec")
    exec(code, namespace)  # official code checked out by the user, not model output
    return namespace[function]


def has_path(space, arch: str) -> bool:
    """Whether some chain of non-"none" edges joins the cell's input to its output."""
    reached = {0}
    for (target, source), op in zip(EDGES, space.decode(arch).genotype):
        if op != "none" and source in reached:
            reached.add(target)
    return 3 in reached


def pick_cells(count: int, data_dir: str | None) -> list[str]:
    """``count`` connected cells spread evenly over the CIFAR-10 test-accuracy ranks.

    Cells without an input-output path are left out: their features are all zero, so
    AZ-NAS's entropies are NaN (it reports -inf) and there is nothing to compare."""
    space = get_space("nb201")
    truth = open_nb201(data_dir=data_dir)
    table = truth.table(truth.dataset("cifar10"))
    ranked = sorted((a for a in table if has_path(space, a)), key=lambda arch: (table[arch].test_acc, arch))
    return [ranked[round(i * (len(ranked) - 1) / (count - 1))] for i in range(count)]


def build(space, arch: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return space.build(space.decode(arch))


def official_az_nas(module, model: torch.nn.Module, seed: int) -> dict[str, float]:
    model = copy.deepcopy(model)
    model.cuda = lambda *args, **kwargs: model  # the official function moves the model to CUDA
    model.extract_cell_features = lambda x: stem_cell_features(model, x)  # the features AZ-NAS reads
    torch.manual_seed(seed)
    info = module.compute_nas_score(model, gpu=None, trainloader=None, resolution=32, batch_size=64)
    # AZ-NAS reports -inf for degenerate cells (e.g. trainability of a block that is the identity)
    return {key: float(info[key]) if np.isfinite(info[key]) else None for key in AZ_COMPONENTS}


def official_swap(swap_class, init: Callable, model: torch.nn.Module, inputs: torch.Tensor, seed: int) -> dict:
    model = copy.deepcopy(model)
    mu, sigma = Swap.regulariser
    torch.manual_seed(seed)
    swap = swap_class(model=model, inputs=inputs, device="cpu", seed=0)
    regularised = swap_class(model=copy.deepcopy(model), inputs=inputs, device="cpu", seed=0, regular=True, mu=mu, sigma=sigma)
    counts = []
    for _ in range(REPEATS):  # correlation.py's loop
        model.apply(init)
        swap.reinit()
        counts.append(float(swap.forward()))
        swap.clear()
    mean = float(np.mean(counts))
    return {"counts": counts, "swap_noreg": mean, "regular_factor": float(regularised.regular_factor), "swap": mean * float(regularised.regular_factor)}


_OFFICIAL: dict[str, Any] = {}


def official_values(args: argparse.Namespace, space, probe, arch: str) -> dict:
    """What the three official implementations return for one cell (their code loaded once)."""
    if not _OFFICIAL:
        _OFFICIAL["az_nas"] = load_module(args.az_nas / "NB201/ZeroShotProxy/compute_az_nas_score.py", "official_az_nas")
        _OFFICIAL["meco"] = load_function(args.meco / "correlation/NAS_Bench_201.py", "get_score",
                                          {"torch": torch, "random": random})
        sys.path.insert(0, str(args.swap))
        swap_module = load_module(args.swap / "src/metrics/swap.py", "official_swap")
        # numpy >= 2 rejects the official count_parameters' np.sum(generator); count the same
        # parameters (names without "auxiliary", in thousands) with the builtin sum instead
        swap_module.count_parameters = lambda net: sum(
            v.numel() for name, v in net.named_parameters() if "auxiliary" not in name) / 1e3
        _OFFICIAL["swap"] = swap_module.SWAP
        _OFFICIAL["swap_init"] = load_module(args.swap / "src/utils/utilities.py",
                                             "official_swap_utilities").network_weight_gaussian_init
    model = build(space, arch, args.seed)
    return {
        "az_nas": official_az_nas(_OFFICIAL["az_nas"], model, args.seed),
        "meco": float(_OFFICIAL["meco"](copy.deepcopy(model), probe.inputs[:1].clone(), "cpu", measure="meco")),
        "swap": official_swap(_OFFICIAL["swap"], _OFFICIAL["swap_init"], model, probe.inputs[:SAMPLES].clone(), args.seed),
    }


def official_value(row: dict, proxy: str) -> float | None:
    if proxy.startswith("az_"):
        return row["official"]["az_nas"][proxy[3:]]
    return row["official"]["meco"] if proxy == "meco" else row["official"]["swap"][proxy]


def agreement_of(rows: list[dict], proxy: str) -> float | None:
    """Spearman rho of rznas vs official over the cells both score."""
    pairs = [(official_value(r, proxy), r["rznas"][proxy]) for r in rows
             if r["rznas"][proxy] is not None and official_value(r, proxy) is not None]
    return float(spearmanr(*zip(*pairs))[0]) if len(pairs) >= 3 else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--az-nas", type=Path, help="checkout of cvlab-yonsei/AZ-NAS")
    parser.add_argument("--meco", type=Path, help="checkout of HamsterMimi/MeCo")
    parser.add_argument("--swap", type=Path, help="checkout of pym1024/SWAP")
    parser.add_argument("--official-from", type=Path, default=None,
                        help="reuse the official values of an earlier output (same cells and seed); "
                             "recompute only rznas's scores")
    parser.add_argument("--cells", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0, help="torch seed of each network's init and of the official draws")
    parser.add_argument("--data-dir", default=None, help="shared data folder (default: RZNAS_DATA_DIR)")
    parser.add_argument("--out", type=Path, default=Path("tests/golden/official_proxy_reference.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    space = get_space("nb201")
    probe = make_probe(PROBE["dataset"], data_dir=args.data_dir, batch_size=PROBE["batch_size"],
                       chunks=PROBE["chunks"], seed=PROBE["seed"])
    cells = pick_cells(args.cells, args.data_dir)
    if args.official_from is not None:
        earlier = json.loads(args.official_from.read_text())
        if [c["arch"] for c in earlier["cells"]] != cells or earlier["seed"] != args.seed:
            raise SystemExit(f"{args.official_from} holds other cells or another seed")
        official = [c["official"] for c in earlier["cells"]]
        official_command = earlier.get("official_command", earlier["command"])
    else:
        if not (args.az_nas and args.meco and args.swap):
            raise SystemExit("give the --az-nas, --meco and --swap checkouts, or --official-from")
        official, official_command = [], None
    rows = []
    for index, arch in enumerate(cells):
        start = time.perf_counter()
        if args.official_from is None:
            official.append(official_values(args, space, probe, arch))
        results = evaluate(build(space, arch, args.seed), probe, [get_proxy(name) for name in RZNAS_PROXIES], seed=0)
        rows.append({
            "arch": arch,
            "official": official[index],
            "rznas": {name: result.value for name, result in results.items()},
            "rznas_errors": {name: result.error for name, result in results.items() if not result.ok},
        })
        print(f"[{index + 1}/{args.cells}] {arch} {time.perf_counter() - start:.1f} s", file=sys.stderr)

    agreement = {proxy: agreement_of(rows, proxy) for proxy in RZNAS_PROXIES}
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    report = {
        "command": command,
        "official_command": official_command or command,
        "official_code": {
            "az_nas": "github.com/cvlab-yonsei/AZ-NAS NB201/ZeroShotProxy/compute_az_nas_score.py",
            "meco": "github.com/HamsterMimi/MeCo correlation/NAS_Bench_201.py get_score(measure='meco')",
            "swap": "github.com/pym1024/SWAP src/metrics/swap.py SWAP, correlation.py loop",
        },
        "seed": args.seed,
        "probe": PROBE,
        "torch": torch.__version__,
        "spearman_rznas_vs_official": agreement,
        "cells": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(agreement, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
