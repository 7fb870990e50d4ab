"""Judge one candidate: validate in the space, check budgets (cheap first), then score its fitness."""
from __future__ import annotations

from torch import nn

from ..arch import Architecture
from ..data.probe import ProbeBatch
from ..errors import BudgetExceeded, InvalidArchitecture, ProxyError
from ..fitness import Fitness, ProxyFitness
from ..proxies.base import Proxy, is_environment_failure
from ..scoring import build_seeded, score_model
from ..spaces.base import SearchSpace
from .budget import ArchBudget, BudgetChecker
from ..trial import Outcome, TrialState

#: measurement-key prefix of an ensemble's component scores in a trial record
COMPONENT_PREFIX = "component:"


class Evaluator:
    """Turns an architecture into an :class:`Outcome`; never lets a failure look like a score.

    A failure of the machine (out of memory, a CUDA fault) is marked ``transient``: it is
    reported like any proxy error but never stored in the persistent score cache.

    ``score_seed`` seeds the weights and the proxy exactly as ``rznas score --seed`` does
    (:mod:`rznas.scoring`), so a recorded score can be reproduced outside the search. The
    fitness is a proxy or an ensemble (:mod:`rznas.fitness`); its proxies share one build
    and their passes.
    """

    def __init__(
        self,
        space: SearchSpace,
        fitness: Fitness | Proxy,
        probe: ProbeBatch,
        *,
        score_seed: int,
        budget: ArchBudget | None = None,
    ):
        self.space = space
        self.fitness = fitness if isinstance(fitness, Fitness) else ProxyFitness(fitness)
        self.probe = probe
        self.score_seed = score_seed
        self.budget = budget or ArchBudget(resolution=probe.resolution)
        self.checker = BudgetChecker(space, self.budget, num_classes=probe.num_classes)

    def __call__(self, arch: Architecture) -> Outcome:
        """Validate, check the budget and score ``arch``; every failure becomes a state."""
        try:
            self.space.validate(arch)
        except InvalidArchitecture as exc:
            return Outcome(TrialState.INVALID, arch, reason=str(exc))
        model: list[nn.Module] = []

        def build() -> nn.Module:
            # one seeded build per candidate, shared by the budget checks and the proxy
            if not model:
                model.append(build_seeded(self.space, arch, seed=self.score_seed, num_classes=self.probe.num_classes))
            return model[0]

        try:
            measurements = self.checker.check(arch, build)
        except BudgetExceeded as exc:
            return Outcome(TrialState.OVER_BUDGET, arch, reason=str(exc))
        except InvalidArchitecture as exc:  # the space refused to build what it validated
            return Outcome(TrialState.INVALID, arch, reason=str(exc))
        except (RuntimeError, ValueError, MemoryError) as exc:  # building or the counting forward pass failed
            return Outcome(
                TrialState.PROXY_ERROR,
                arch,
                reason=f"budget check: {type(exc).__name__}: {exc}",
                transient=is_environment_failure(exc),
            )
        try:
            net = build().train()
            results = score_model(net, arch, self.probe, self.fitness.proxies, seed=self.score_seed)
        except InvalidArchitecture as exc:
            return Outcome(TrialState.INVALID, arch, reason=str(exc))
        except (ProxyError, RuntimeError, ValueError, MemoryError) as exc:
            return Outcome(
                TrialState.PROXY_ERROR, arch, reason=f"{type(exc).__name__}: {exc}", transient=is_environment_failure(exc)
            )
        result = self.fitness.combine(results)
        if self.fitness.components:  # an ensemble: keep what each component said
            measurements = {
                **measurements,
                **{COMPONENT_PREFIX + k: v for k, v in result.components.items() if v is not None},
            }
        if not result.ok:
            # a machine failure of any component (out of memory, ...) is not the architecture's fault
            transient = any(r.transient for r in results.values() if not r.ok)
            return Outcome(
                TrialState.PROXY_ERROR, arch, reason=str(result.error), measurements=measurements, transient=transient
            )
        return Outcome(TrialState.COMPLETE, arch, score=float(result.value), measurements=measurements)  # type: ignore[arg-type]
