"""Fisher (Theis et al. 2018; Turner et al. 2020): sum of channel Fisher information."""
from __future__ import annotations

from .base import FISHER, PROXIES, Proxy, ScoringContext


@PROXIES.register("fisher")
class Fisher(Proxy):
    """Sum over conv/linear output channels of 0.5 * E_n[(sum_hw activation * gradient)^2]."""

    name = "fisher"
    requirements = {0: frozenset({FISHER})}
    convention = "summed Fisher information of layer outputs; larger = better (as published)"

    def compute(self, ctx: ScoringContext) -> float:
        return float(sum(v.sum() for v in ctx.gradient_pass(0).fisher.values()))
