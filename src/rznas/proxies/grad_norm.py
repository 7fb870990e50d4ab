"""GradNorm (Abdelfattah et al., ICLR 2021): sum over layers of ||dL/dW||_2."""
from __future__ import annotations

from .base import GRADS, PROXIES, Proxy, ScoringContext


@PROXIES.register("grad_norm")
class GradNorm(Proxy):
    """Sum of per-layer L2 norms of the CE-loss weight gradients on one labelled batch."""

    name = "grad_norm"
    requirements = {0: frozenset({GRADS})}
    convention = "sum of per-layer gradient L2 norms; larger = better (as published)"

    def compute(self, ctx: ScoringContext) -> float:
        grads = ctx.gradient_pass(0).grads
        return float(sum(g.norm() for g in grads.values()))
