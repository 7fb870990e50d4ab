"""Model size proxies: parameter count and multiply-accumulate count (FLOPs convention of NB201)."""
from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from .base import PROXIES, Proxy, ScoringContext


def count_parameters(model: torch.nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_macs(model: torch.nn.Module, resolution: int, channels: int = 3) -> int:
    """Multiply-accumulates of one forward pass on one image (torch counts 2 FLOPs per MAC).

    Counted in eval mode; every module's train/eval mode is restored afterwards."""
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, channels, resolution, resolution, device=device))
    finally:
        for module, training in modes:
            module.training = training
    return counter.get_total_flops() // 2


@PROXIES.register("params")
class Params(Proxy):
    """Trainable parameters in millions."""

    name = "params"
    needs_data = False
    convention = "parameters (millions); larger = better (the classic size baseline)"
    unit = "M"

    def compute(self, ctx: ScoringContext) -> float:
        return count_parameters(ctx.original) / 1e6


@PROXIES.register("flops")
class Flops(Proxy):
    """Multiply-accumulates of one image at the probe resolution, in millions."""

    name = "flops"
    needs_data = False
    convention = "multiply-adds per image (millions) at the probe's resolution; larger = better"
    unit = "MFLOPs"  # multiply-adds, the NB201 / Zen-NAS convention
    at_probe_resolution = True

    def compute(self, ctx: ScoringContext) -> float:
        return count_macs(ctx.copy_model(), ctx.batch.resolution) / 1e6
