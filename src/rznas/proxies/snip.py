"""SNIP (Lee et al., ICLR 2019) as a zero-cost proxy: sum |W * dL/dW| (connection sensitivity)."""
from __future__ import annotations

from .base import GRADS, PROXIES, Proxy, ScoringContext


@PROXIES.register("snip")
class Snip(Proxy):
    """Saliency |w * g| summed over all conv/linear weights (the mask gradient of SNIP)."""

    name = "snip"
    requirements = {0: frozenset({GRADS})}
    convention = "sum of |weight x gradient|; larger = better (as published)"

    def compute(self, ctx: ScoringContext) -> float:
        gradient_pass = ctx.gradient_pass(0)
        return float(
            sum((w * g).abs().sum() for w, g in zip(gradient_pass.weights.values(), gradient_pass.grads.values()))
        )
