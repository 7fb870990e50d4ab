"""NASWOT (Mellor et al., ICML 2021): log-determinant of the ReLU binary-code kernel."""
from __future__ import annotations

import torch

from ..errors import ProxyError
from .base import PROXIES, RELU_CODES, Proxy, ScoringContext


@PROXIES.register("naswot")
class Naswot(Proxy):
    """log|K_H| with K_H[i, j] = number of ReLUs on which samples i and j agree (BN in train mode)."""

    name = "naswot"
    requirements = {0: frozenset({RELU_CODES})}
    convention = "log-determinant of the activation-pattern kernel; larger = better"

    def compute(self, ctx: ScoringContext) -> float:
        kernel = ctx.gradient_pass(0).relu_kernel
        sign, logdet = torch.linalg.slogdet(kernel.cpu())
        if sign <= 0:
            raise ProxyError("naswot: the activation-pattern kernel is singular (samples indistinguishable)")
        return float(logdet)
