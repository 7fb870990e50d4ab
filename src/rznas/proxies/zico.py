"""ZiCo (Li et al., ICLR 2023): sum over layers of log(sum mean|g| / std(g)) across batches."""
from __future__ import annotations

import math

import torch

from ..errors import ProxyError
from .base import GRADS, PROXIES, Proxy, ScoringContext

BATCHES = 2


@PROXIES.register("zico")
class Zico(Proxy):
    """Gradient signal-to-noise: per weight, mean |g| / std g over 2 labelled batches."""

    name = "zico"
    requirements = {index: frozenset({GRADS}) for index in range(BATCHES)}
    convention = "sum of log gradient signal-to-noise ratios; larger = better"

    def compute(self, ctx: ScoringContext) -> float:
        if ctx.batch.num_chunks < BATCHES:
            raise ProxyError(f"zico needs {BATCHES} batches; the probe has {ctx.batch.num_chunks}")
        passes = [ctx.gradient_pass(index) for index in range(BATCHES)]
        total = 0.0
        for name in passes[0].grads:
            stacked = torch.stack([p.grads[name].reshape(-1) for p in passes]).double()
            std = stacked.std(dim=0, unbiased=False)
            nonzero = std != 0
            ratio_sum = float((stacked.abs().mean(dim=0)[nonzero] / std[nonzero]).sum())
            if ratio_sum != 0.0:
                total += math.log(ratio_sum)
        return total
