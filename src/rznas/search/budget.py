"""Budgets on params / FLOPs / layers, checked cheapest first before a proxy runs.

A space may supply analytic counts through optional methods ``count_params(arch)``,
``count_flops(arch, resolution)`` and ``count_layers(arch)`` (the macro spaces do);
otherwise parameters are counted on the built network and FLOPs (multiply-adds, the
NB201/Zen-NAS convention) with :func:`rznas.proxies.size.count_macs`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from ..arch import Architecture
from ..errors import BudgetExceeded, ConfigError
from ..proxies.size import count_macs, count_parameters
from ..spaces.base import SearchSpace

ModelFactory = Callable[[], nn.Module]

# cost ranks: analytic counts are free, building a network costs more, a forward pass most
ANALYTIC, BUILD, FORWARD = 0, 1, 2


@dataclass(frozen=True)
class Budget:
    """Upper limits for a candidate; ``None`` means unlimited."""

    max_params: float | None = None  # trainable parameters (absolute count)
    max_flops: float | None = None  # multiply-adds of one image at ``resolution``
    max_layers: int | None = None  # as counted by the space's count_layers()
    resolution: int = 32

    def __post_init__(self) -> None:
        for name in ("max_params", "max_flops", "max_layers"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"budget {name} must be positive, got {value}")
        if self.resolution < 1:
            raise ConfigError(f"budget resolution must be positive, got {self.resolution}")

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.max_params, self.max_flops, self.max_layers))

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_params": self.max_params,
            "max_flops": self.max_flops,
            "max_layers": self.max_layers,
            "resolution": self.resolution,
        }


@dataclass(frozen=True)
class _Check:
    name: str
    limit: float
    cost: int
    measure: Callable[[Architecture, ModelFactory], float]


class BudgetChecker:
    """Measures a candidate against a :class:`Budget`, cheapest measurement first."""

    def __init__(self, space: SearchSpace, budget: Budget):
        self.space = space
        self.budget = budget
        checks: list[_Check] = []
        if budget.max_layers is not None:
            counter = getattr(space, "count_layers", None)
            if counter is None:
                raise ConfigError(f"space {space.name!r} cannot count layers; remove the layer budget")
            checks.append(_Check("layers", budget.max_layers, ANALYTIC, lambda a, _, counter=counter: float(counter(a))))
        if budget.max_params is not None:
            counter = getattr(space, "count_params", None)
            if counter is not None:
                checks.append(_Check("params", budget.max_params, ANALYTIC, lambda a, _, counter=counter: float(counter(a))))
            else:
                checks.append(_Check("params", budget.max_params, BUILD, lambda _, b: float(count_parameters(b()))))
        if budget.max_flops is not None:
            counter = getattr(space, "count_flops", None)
            res = budget.resolution
            if counter is not None:
                checks.append(_Check("flops", budget.max_flops, ANALYTIC, lambda a, _, counter=counter: float(counter(a, res))))
            else:
                checks.append(_Check("flops", budget.max_flops, FORWARD, lambda _, b: float(count_macs(b(), res))))
        # stable sort: equal costs keep the order layers, params, flops
        self.checks = sorted(checks, key=lambda c: c.cost)

    def check(self, arch: Architecture, build: ModelFactory) -> dict[str, float]:
        """Measurements of ``arch``; raises BudgetExceeded at the first broken limit."""
        measured: dict[str, float] = {}
        for check in self.checks:
            value = check.measure(arch, build)
            measured[check.name] = value
            if value > check.limit:
                raise BudgetExceeded(f"{check.name} {value:g} exceeds the budget of {check.limit:g}")
        return measured
