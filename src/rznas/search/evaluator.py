"""Judge one candidate: validate in the space, check budgets (cheap first), then score."""
from __future__ import annotations

import hashlib

import torch
from torch import nn

from ..arch import Architecture
from ..data.probe import ProbeBatch
from ..errors import BudgetExceeded, InvalidArchitecture, ProxyError
from ..proxies.base import Proxy, evaluate
from ..spaces.base import SearchSpace
from .budget import Budget, BudgetChecker
from .trial import Outcome, TrialState


def derive_seed(seed: int, arch_id: str) -> int:
    """A 63-bit seed from the run seed and an architecture id (order-independent scoring)."""
    digest = hashlib.sha256(f"{seed}:{arch_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


class Evaluator:
    """Turns an architecture into an :class:`Outcome`; never lets a failure look like a score."""

    def __init__(self, space: SearchSpace, proxy: Proxy, probe: ProbeBatch, *, seed: int, budget: Budget | None = None):
        self.space = space
        self.proxy = proxy
        self.probe = probe
        self.seed = seed
        self.budget = budget or Budget(resolution=probe.resolution)
        self.checker = BudgetChecker(space, self.budget, num_classes=probe.num_classes)

    def __call__(self, arch: Architecture) -> Outcome:
        """Validate, check the budget and score ``arch``; every failure becomes a state."""
        try:
            self.space.validate(arch)
        except InvalidArchitecture as exc:
            return Outcome(TrialState.INVALID, arch, reason=str(exc))
        arch_seed = derive_seed(self.seed, arch.id)
        model: list[nn.Module] = []

        def build() -> nn.Module:
            # one seeded build per candidate, shared by the budget checks and the proxy
            if not model:
                torch.manual_seed(arch_seed)
                model.append(self.space.build(arch, num_classes=self.probe.num_classes))
            return model[0]

        try:
            measurements = self.checker.check(arch, build)
        except BudgetExceeded as exc:
            return Outcome(TrialState.OVER_BUDGET, arch, reason=str(exc))
        except InvalidArchitecture as exc:  # the space refused to build what it validated
            return Outcome(TrialState.INVALID, arch, reason=str(exc))
        except (RuntimeError, ValueError) as exc:  # building or the counting forward pass failed
            return Outcome(TrialState.PROXY_ERROR, arch, reason=f"budget check: {type(exc).__name__}: {exc}")
        try:
            net = build().train()
            results = evaluate(net, self.probe, [self.proxy], seed=arch_seed % (2**31))
        except InvalidArchitecture as exc:
            return Outcome(TrialState.INVALID, arch, reason=str(exc))
        except (ProxyError, RuntimeError, ValueError) as exc:
            return Outcome(TrialState.PROXY_ERROR, arch, reason=f"{type(exc).__name__}: {exc}")
        result = results[self.proxy.name]
        if not result.ok:
            return Outcome(TrialState.PROXY_ERROR, arch, reason=str(result.error), measurements=measurements)
        return Outcome(TrialState.COMPLETE, arch, score=float(result.value), measurements=measurements)
