"""Fitness names and objects: a registered proxy, `a+b+c`, or a registered (named) ensemble.

An ensemble is a plain number per architecture, comparable between any two trials and
reproducible by ``rznas score``: each component is mapped through its mid-rank CDF on a
fixed reference sample (:mod:`rznas.fitness.reference`), never ranked against whatever
other trials happen to exist, and the CDF values are combined by a registered
aggregation (default: AZ-NAS's sum of logs). A failed component fails the ensemble.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Mapping, Sequence

from ..errors import ConfigError, UnknownName
from ..proxies import PROXIES, Proxy, ProxyResult, get_proxy
from ..registry import Registry
from .aggregation import AGGREGATIONS, DEFAULT_AGGREGATION
from .reference import ComponentReference, ReferenceSpec

SEPARATOR = "+"


@dataclass(frozen=True)
class EnsembleSpec:
    """Which proxies an ensemble combines and how (the components are not checked here)."""

    name: str
    components: tuple[str, ...]
    aggregation: str = DEFAULT_AGGREGATION
    description: str = ""

    def key(self) -> dict[str, object]:
        """What determines the ensemble's values (component order does not matter)."""
        return {"components": sorted(self.components), "aggregation": self.aggregation}


#: named ensembles (aliases); their components may come from plug-ins, so they are checked on use
ENSEMBLES: Registry[EnsembleSpec] = Registry("named ensemble")


def register_ensemble(
    name: str, components: Sequence[str], *, aggregation: str = DEFAULT_AGGREGATION, description: str = ""
) -> EnsembleSpec:
    """Register a named ensemble; its components need to be registered only when it is used."""
    if SEPARATOR in name:
        raise ValueError(f"an ensemble name cannot contain {SEPARATOR!r}: {name!r}")
    if len(set(components)) != len(components) or len(components) < 2:
        raise ValueError(f"ensemble {name!r} needs at least two distinct components, got {list(components)}")
    AGGREGATIONS.get(aggregation)
    spec = EnsembleSpec(name, tuple(components), aggregation, description)
    ENSEMBLES.register(name)(spec)
    return spec


def ensemble_spec(name: str) -> EnsembleSpec | None:
    """The ensemble ``name`` stands for (checked), or None when it names a single proxy.

    Raises UnknownName for an unknown component or proxy, ConfigError for a malformed
    `a+b` name (blank or repeated parts, a single component, a nested named ensemble).
    """
    if SEPARATOR in name:
        parts = [part.strip() for part in name.split(SEPARATOR)]
        if any(not part for part in parts):
            raise ConfigError(f"ensemble {name!r} has an empty component (write e.g. zico+naswot+synflow)")
        if len(set(parts)) != len(parts):
            raise ConfigError(f"ensemble {name!r} names a component twice")
        for part in parts:
            if part in ENSEMBLES and part not in PROXIES:
                raise ConfigError(f"ensemble {name!r}: {part!r} is itself an ensemble; list its proxies instead")
            PROXIES.get(part)  # UnknownName with "did you mean"
        return EnsembleSpec(SEPARATOR.join(parts), tuple(parts))
    if name in PROXIES:
        if name in ENSEMBLES:
            raise ConfigError(f"{name!r} is both a proxy and a named ensemble; rename one of them")
        return None
    if name in ENSEMBLES:
        spec = ENSEMBLES.get(name)
        missing = [part for part in spec.components if part not in PROXIES]
        if missing:
            raise UnknownName(
                f"ensemble {name!r} needs the proxies {', '.join(missing)}, which this installation "
                f"does not register (it combines {', '.join(spec.components)})"
            )
        return spec
    lookup: Registry[None] = Registry("proxy")  # its "known" list names the ensembles too
    for item in fitness_names():
        lookup.register(item)(None)
    lookup.get(name)  # raises UnknownName with close matches
    raise AssertionError("unreachable")  # pragma: no cover


def names_ensemble(name: str) -> bool:
    """True when ``name`` is written as an ensemble (a+b or a named ensemble), without checking it."""
    return SEPARATOR in name or (name in ENSEMBLES and name not in PROXIES)


def component_names(name: str) -> tuple[str, ...]:
    """The proxies a fitness name needs scored: its components, or the proxy itself."""
    spec = ensemble_spec(name)
    return spec.components if spec is not None else (name,)


def is_ensemble(name: str) -> bool:
    """True when ``name`` is a (valid) ensemble rather than a single proxy."""
    return ensemble_spec(name) is not None


def fitness_names() -> list[str]:
    """Every usable single name: the registered proxies and the named ensembles."""
    return sorted(set(PROXIES.names()) | set(ENSEMBLES.names()))


# --- fitness objects ----------------------------------------------------------------------


@dataclass(frozen=True)
class FitnessResult:
    """A fitness value (or why there is none) and the component scores it came from."""

    name: str
    value: float | None
    error: str | None
    components: dict[str, float | None]
    seconds: float

    @property
    def ok(self) -> bool:
        return self.error is None


class Fitness:
    """What a search ranks by: the proxies to evaluate together and how to combine their results."""

    name: str
    proxies: tuple[Proxy, ...]
    convention: str
    components: ClassVar[tuple[str, ...]] | tuple[str, ...] = ()

    def combine(self, results: Mapping[str, ProxyResult]) -> FitnessResult:  # pragma: no cover
        raise NotImplementedError

    def cache_key(self) -> dict[str, object]:
        """The fitness's part of a score-cache key (empty for a single proxy: old keys stay valid)."""
        return {}


class ProxyFitness(Fitness):
    """A single proxy's score as the fitness."""

    def __init__(self, proxy: Proxy):
        self.proxy = proxy
        self.name = proxy.name
        self.proxies = (proxy,)
        self.convention = proxy.convention

    def combine(self, results: Mapping[str, ProxyResult]) -> FitnessResult:
        result = results[self.name]
        return FitnessResult(self.name, result.value, result.error, {self.name: result.value}, result.seconds)


class EnsembleFitness(Fitness):
    """Components mapped through their reference CDFs, combined by the spec's aggregation."""

    def __init__(self, spec: EnsembleSpec, references: Mapping[str, ComponentReference], reference: ReferenceSpec):
        missing = [part for part in spec.components if part not in references]
        if missing:
            raise ConfigError(f"ensemble {spec.name}: no reference distribution for {', '.join(missing)}")
        self.spec = spec
        self.name = spec.name
        self.components = spec.components
        self.proxies = tuple(get_proxy(part) for part in spec.components)
        self.references = {part: references[part] for part in spec.components}
        self.reference = reference
        self.aggregate = AGGREGATIONS.get(spec.aggregation)
        self.convention = (
            f"ensemble of {', '.join(spec.components)}: each score mapped to its mid-rank CDF on "
            f"{reference.size} reference cells (seed {reference.seed}), combined by {spec.aggregation}; higher is better"
        )

    def cdfs(self, values: Mapping[str, float]) -> dict[str, float]:
        """Each component value's CDF on its reference distribution."""
        return {part: self.references[part].cdf(values[part]) for part in self.components}

    def combine(self, results: Mapping[str, ProxyResult]) -> FitnessResult:
        values = {part: results[part].value for part in self.components}
        seconds = math.fsum(results[part].seconds for part in self.components)
        failed = [part for part in self.components if not results[part].ok]
        if failed:
            reasons = "; ".join(f"{part}: {results[part].error}" for part in failed)
            return FitnessResult(self.name, None, f"ensemble {self.name}: component failed ({reasons})", values, seconds)
        value = self.aggregate(list(self.cdfs(values).values()))  # type: ignore[arg-type]
        return FitnessResult(self.name, float(value), None, values, seconds)

    def cache_key(self) -> dict[str, object]:
        return {**self.spec.key(), "reference": self.reference.key()}

    def value_of(self, scores: Mapping[str, float | None]) -> float | None:
        """The ensemble value of recorded component scores (None when a component failed)."""
        if any(scores.get(part) is None for part in self.components):
            return None
        return float(self.aggregate(list(self.cdfs(scores).values())))  # type: ignore[arg-type]


__all__ = [
    "ENSEMBLES",
    "EnsembleFitness",
    "EnsembleSpec",
    "Fitness",
    "FitnessResult",
    "ProxyFitness",
    "SEPARATOR",
    "component_names",
    "ensemble_spec",
    "fitness_names",
    "is_ensemble",
    "names_ensemble",
    "register_ensemble",
]
