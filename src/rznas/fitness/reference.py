"""The reference sample an ensemble ranks against: fixed, seeded cells of the space, scored once.

Each component score ``v`` is mapped through the empirical distribution of that component
on the reference cells with the mid-rank CDF

    F(v) = (#{r < v} + #{r = v} / 2 + 1/2) / (R + 1)

(R = reference cells on which the component succeeded). F is the mid-rank of ``v``
among the reference values, so for a cell of the reference itself it is exactly its
rank / (R + 1), as AZ-NAS ranks a population; it lies strictly inside (0, 1), so its log
is finite. Values outside the reference range saturate: every value below the reference
minimum maps to 0.5 / (R + 1), every value above its maximum to (R + 0.5) / (R + 1).
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Protocol, Sequence, TextIO

from ..arch import Architecture
from ..errors import ConfigError
from ..proxies import ProxyResult
from ..scoring import sample_architectures
from ..spaces import SearchSpace

#: scores all requested components of one cell together (one build, shared passes)
CellScorer = Callable[[Architecture, Sequence[str]], Mapping[str, ProxyResult]]


@dataclass(frozen=True)
class ReferenceSpec:
    """Which cells form the reference: ``size`` cells drawn from the space with ``seed``."""

    size: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if self.size < 2:
            raise ConfigError(f"the ensemble reference needs at least 2 cells, got {self.size}")

    def cells(self, space: SearchSpace) -> list[Architecture]:
        """The reference cells (a smaller size with the same seed gives a prefix)."""
        return sample_architectures(space, self.size, self.seed)

    def key(self) -> dict[str, int]:
        return {"size": self.size, "seed": self.seed}


@dataclass(frozen=True)
class ComponentReference:
    """One component's successful scores on the reference cells, sorted, and its failure count."""

    proxy: str
    values: tuple[float, ...]
    failed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(sorted(float(v) for v in self.values)))

    def cdf(self, value: float) -> float:
        """The mid-rank CDF of ``value`` on the reference, in (0, 1) (see the module docstring)."""
        below = bisect.bisect_left(self.values, value)
        equal = bisect.bisect_right(self.values, value) - below
        return (below + 0.5 * equal + 0.5) / (len(self.values) + 1)


class ReferenceStore(Protocol):
    """Persistent component scores of reference cells (the score cache implements it)."""

    def get(self, proxy: str, arch: Architecture) -> ProxyResult | None: ...

    def put(self, proxy: str, arch: Architecture, result: ProxyResult) -> None: ...


def score_reference(
    cells: Sequence[Architecture],
    components: Sequence[str],
    score_cell: CellScorer,
    *,
    store: ReferenceStore | None = None,
    progress: TextIO | None = None,
) -> dict[str, ComponentReference]:
    """Every component's reference distribution: stored scores first, the rest scored (and stored).

    A cell's missing components are scored together in one call; a component that failed
    on a reference cell is left out of that component's distribution and counted.
    """
    found: dict[str, list[ProxyResult]] = {name: [] for name in components}
    todo: list[tuple[Architecture, list[str]]] = []
    for arch in cells:
        missing = []
        for name in components:
            hit = store.get(name, arch) if store is not None else None
            if hit is None:
                missing.append(name)
            else:
                found[name].append(hit)
        if missing:
            todo.append((arch, missing))
    if todo and progress is not None:
        print(
            f"ensemble reference: scoring {len(todo)} of {len(cells)} reference cells "
            f"({', '.join(components)}); stored ones are reused",
            file=progress,
            flush=True,
        )
    for number, (arch, missing) in enumerate(todo, 1):
        results = score_cell(arch, missing)
        for name in missing:
            found[name].append(results[name])
            if store is not None:
                store.put(name, arch, results[name])
        if progress is not None and (number % 32 == 0 or number == len(todo)):
            print(f"  reference cells scored: {number}/{len(todo)}", file=progress, flush=True)
    return {name: distribution(name, results) for name, results in found.items()}


def distribution(proxy: str, results: Iterable[ProxyResult]) -> ComponentReference:
    """A component's reference from its results; fewer than 2 successes is an error."""
    results = list(results)
    values = [r.value for r in results if r.ok and r.value is not None]
    failed = len(results) - len(values)
    if len(values) < 2:
        example = next((r.error for r in results if not r.ok), None)
        raise ConfigError(
            f"ensemble component {proxy} succeeded on only {len(values)} of {len(results)} reference cells "
            f"(e.g. {example}); an ensemble cannot rank against it"
        )
    return ComponentReference(proxy, tuple(values), failed)


__all__ = [
    "CellScorer",
    "ComponentReference",
    "ReferenceSpec",
    "ReferenceStore",
    "distribution",
    "score_reference",
]
