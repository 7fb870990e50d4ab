"""Random proxy: a seeded uniform draw per architecture, the floor every proxy must beat."""
from __future__ import annotations

import hashlib

import torch

from .base import PROXIES, Proxy, ScoringContext


def structure_key(model: torch.nn.Module) -> int:
    """An integer derived from the model's layer types and weight shapes (not its values)."""
    text = ";".join(f"{name}:{type(m).__name__}" for name, m in model.named_modules())
    text += ";" + ";".join(f"{name}:{tuple(p.shape)}" for name, p in model.named_parameters())
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:6], "big")


@PROXIES.register("random")
class RandomProxy(Proxy):
    """U(0, 1) drawn from (seed, model structure): deterministic, uninformative."""

    name = "random"
    needs_data = False
    convention = "uniform noise; carries no information (a baseline)"

    def compute(self, ctx: ScoringContext) -> float:
        generator = ctx.generator(salt=structure_key(ctx.original))
        return float(torch.rand(1, generator=generator))
