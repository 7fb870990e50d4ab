"""Budgets on params / FLOPs / layers, checked cheapest first before a proxy runs.

A space may supply analytic counts through optional methods ``count_params(arch)``,
``count_flops(arch, resolution)`` and ``count_layers(arch)`` (the macro spaces and DARTS
do); otherwise parameters are counted on the built network and FLOPs (multiply-adds, the
NB201/Zen-NAS convention) with :func:`rznas.proxies.size.count_macs`.

FLOPs are counted at the space's ``native_resolution`` (224 for mobilenet, 480 for
maedet, 32 for the CIFAR spaces), never at the proxy's probe resolution, so a budget
means the same whatever probe scores the candidates. A space with its own budget (the
macro spaces: ``space.budget`` and ``space.check_budget``) is held to it as well, so an
LLM proposal can never slip past the limits that sampling and mutation respect.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from torch import nn

from ..arch import Architecture
from ..errors import BudgetExceeded, ConfigError
from ..proxies.size import count_macs, count_parameters
from ..spaces.base import SPACES, SearchSpace

ModelFactory = Callable[[], nn.Module]

# cost ranks: analytic counts are free, building a network costs more, a forward pass most
ANALYTIC, BUILD, FORWARD = 0, 1, 2


@dataclass(frozen=True)
class ArchBudget:
    """Upper limits for a candidate; ``None`` means unlimited."""

    max_params: float | None = None  # trainable parameters (absolute count)
    max_flops: float | None = None  # multiply-adds of one image at ``resolution``
    max_layers: int | None = None  # as counted by the space's count_layers()
    # FLOPs resolution for a space that states no ``native_resolution`` (all built-in ones do)
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


def flops_resolution(space: Any, budget: ArchBudget) -> int:
    """Where FLOPs are counted: the space's native resolution, else ``budget.resolution``."""
    native = getattr(space, "native_resolution", None)
    return int(native) if native else budget.resolution


def _space_budget(space: Any) -> Any:
    """The space's own budget when it can check one (macro spaces), else None."""
    own = getattr(space, "budget", None)
    return own if own is not None and callable(getattr(space, "check_budget", None)) else None


def counting_classes(space: Any, num_classes: int | None) -> dict[str, Any]:
    """Class count to count params/FLOPs for: the task the space's budget names (mobilenet:
    1000 ImageNet classes), else ``num_classes`` of the network that is built."""
    own = _space_budget(space)
    if own is not None and getattr(own, "num_classes", None):
        return {"num_classes": own.num_classes}
    return {} if num_classes is None else {"num_classes": num_classes}


@dataclass(frozen=True)
class Size:
    """Parameters and FLOPs (multiply-adds of one image) of one network, as the budgets count them."""

    params: float
    flops: float
    resolution: int  # FLOPs are counted at this input size (the space's native resolution)
    num_classes: int | None  # the classifier the counts include (None: the space's default)


def measure_size(space: SearchSpace, arch: Architecture, build: ModelFactory, *, num_classes: int | None = None) -> Size:
    """Params and FLOPs of ``arch`` exactly as a :class:`BudgetChecker` measures them: the space's
    analytic counters where it has them, else the built network, at the native resolution."""
    resolution = flops_resolution(space, ArchBudget())
    classes = counting_classes(space, num_classes)
    params_of = getattr(space, "count_params", None)
    flops_of = getattr(space, "count_flops", None)
    params = float(params_of(arch, **classes)) if params_of else float(count_parameters(build()))
    flops = float(flops_of(arch, resolution=resolution, **classes)) if flops_of else float(count_macs(build(), resolution))
    return Size(params, flops, resolution, classes.get("num_classes"))


class BudgetChecker:
    """Measures a candidate against a :class:`ArchBudget` and the space's own budget, cheapest first."""

    def __init__(self, space: SearchSpace, budget: ArchBudget, *, num_classes: int | None = None):
        self.space = space
        self.budget = budget
        self.space_budget = _space_budget(space)
        self.resolution = res = flops_resolution(space, budget)
        # counts for the task the space's budget names (mobilenet: 1000 ImageNet classes),
        # else for the network the search builds (``num_classes`` of its probe)
        classes = counting_classes(space, num_classes)
        checks: list[_Check] = []
        if budget.max_layers is not None:
            counter = getattr(space, "count_layers", None)
            if counter is None:
                raise ConfigError(f"space {space.name!r} cannot count layers; remove the layer budget")
            checks.append(_Check("layers", budget.max_layers, ANALYTIC, lambda a, _, counter=counter: float(counter(a))))
        if budget.max_params is not None:
            counter = getattr(space, "count_params", None)
            if counter is not None:
                checks.append(
                    _Check("params", budget.max_params, ANALYTIC, lambda a, _, counter=counter: float(counter(a, **classes)))
                )
            else:
                checks.append(_Check("params", budget.max_params, BUILD, lambda _, b: float(count_parameters(b()))))
        if budget.max_flops is not None:
            counter = getattr(space, "count_flops", None)
            if counter is not None:
                checks.append(
                    _Check("flops", budget.max_flops, ANALYTIC,
                           lambda a, _, counter=counter: float(counter(a, resolution=res, **classes)))
                )
            else:
                checks.append(_Check("flops", budget.max_flops, FORWARD, lambda _, b: float(count_macs(b(), res))))
        # stable sort: equal costs keep the order layers, params, flops
        self.checks = sorted(checks, key=lambda c: c.cost)

    def check(self, arch: Architecture, build: ModelFactory) -> dict[str, float]:
        """Measurements of ``arch``; raises BudgetExceeded at the first broken limit.

        The space's own budget comes first (analytic); its message lists every violation.
        """
        if self.space_budget is not None:
            self.space.check_budget(arch)  # type: ignore[attr-defined]
        measured: dict[str, float] = {}
        for check in self.checks:
            value = check.measure(arch, build)
            measured[check.name] = value
            if value > check.limit:
                unit = f" at {self.resolution}x{self.resolution}" if check.name == "flops" else ""
                raise BudgetExceeded(f"{check.name} {value:g}{unit} exceeds the budget of {check.limit:g}")
        return measured


# ---- the search's space ----------------------------------------------------------------
def space_takes_budget(name: str) -> bool:
    """Whether the registered space ``name`` has budget presets (a ``budget`` constructor option)."""
    try:
        return "budget" in inspect.signature(SPACES.get(name)).parameters
    except (TypeError, ValueError):
        return False


def _create(name: str, options: Mapping[str, Any]) -> SearchSpace:
    factory = SPACES.get(name)
    try:
        return factory(**options)
    except TypeError as exc:
        try:
            known = ", ".join(p for p in inspect.signature(factory).parameters if p != "self")
        except (TypeError, ValueError):
            known = "?"
        raise ConfigError(f"bad option for space {name!r} ({exc}); its options are: {known or 'none'}") from None


def space_kwargs(
    name: str,
    options: Mapping[str, Any] | None = None,
    *,
    budget: str | None = None,
    max_params: float | None = None,
    max_flops: float | None = None,
    max_layers: int | None = None,
) -> dict[str, Any]:
    """Constructor options of the search's space: ``options`` (as ``rznas train
    --space-option``), the budget preset ``budget`` and, for spaces with budgets, the
    search limits folded into it.

    In a space with budgets (the macro spaces) ``max_params`` / ``max_flops`` (at the
    space's native resolution) / ``max_layers`` tighten the preset (the tighter limit
    wins), so that sampling and mutation respect them too; the result's ``budget`` is then
    canonical ``KEY=VALUE`` text (plain data: hashable, picklable, JSON-ready, for workers
    and the score cache key). Other spaces keep the limits in the evaluator's
    :class:`BudgetChecker`. Bad options and budgets no network can meet are ConfigErrors.
    """
    kwargs = dict(options or {})
    takes_budget = space_takes_budget(name)
    if budget is not None:
        if "budget" in kwargs:
            raise ConfigError("give the space budget either as budget or as the space option 'budget', not both")
        kwargs["budget"] = budget
    if "budget" in kwargs and not takes_budget:
        raise ConfigError(
            f"space {name!r} has no budget presets; limit it with max_params / max_flops / max_layers "
            "(--max-params / --max-flops / --max-layers)"
        )
    space = _create(name, kwargs)  # checks the options and the preset
    limits = {"params": max_params, "flops": max_flops, "layers": max_layers}
    if not takes_budget or all(v is None for v in limits.values()):
        return kwargs
    from ..spaces.macro_space import MacroBudget

    own = getattr(space, "budget", None)
    merged: dict[str, Any] = {
        "resolution": own.resolution if own is not None else int(getattr(space, "native_resolution", 32)),
        "num_classes": own.num_classes if own is not None else 10,
    }
    for key, limit in limits.items():
        current = getattr(own, key, None) if own is not None else None
        values = [v for v in (current, limit) if v is not None]
        merged[key] = min(values) if values else None
    if merged["layers"] is not None:
        merged["layers"] = int(merged["layers"])
    kwargs["budget"] = MacroBudget(**merged).to_spec()
    _create(name, kwargs)  # a folded budget that no network meets fails here, before any work
    return kwargs


def make_space(
    name: str,
    options: Mapping[str, Any] | None = None,
    *,
    budget: str | None = None,
    max_params: float | None = None,
    max_flops: float | None = None,
    max_layers: int | None = None,
) -> SearchSpace:
    """The search's space, created with :func:`space_kwargs` (options, preset, folded limits)."""
    kwargs = space_kwargs(name, options, budget=budget, max_params=max_params, max_flops=max_flops, max_layers=max_layers)
    return _create(name, kwargs)
