"""``grad_l1``: the L1 norm of the weight gradients of an untrained network (an example plug-in proxy).

It uses the shared gradient pass of rznas (``ScoringContext.gradient_pass``), so scoring it
together with grad_norm, snip or fisher costs no extra forward/backward.
"""
from __future__ import annotations

from typing import Iterable

import torch

from rznas.proxies import Proxy, ScoringContext
from rznas.proxies.base import GRADS


def total_abs(tensors: Iterable[torch.Tensor]) -> float:
    """Sum of absolute values over all tensors, accumulated in float64."""
    return float(sum(t.detach().abs().sum(dtype=torch.float64) for t in tensors))


class GradL1(Proxy):
    """Sum of |dL/dw| over conv and linear weights under the cross-entropy loss of one probe batch."""

    name = "grad_l1"
    requirements = {0: frozenset({GRADS})}
    convention = "sum of absolute weight gradients (cross-entropy, one probe batch); larger = better (example plug-in)"

    def compute(self, ctx: ScoringContext) -> float:
        return total_abs(ctx.gradient_pass(0).grads.values())
