"""Build the fitness a name stands for; an ensemble first gets its reference distributions."""
from __future__ import annotations

from typing import Mapping, TextIO

from ..arch import Architecture
from ..data.probe import ProbeBatch
from ..proxies import ProxyResult, get_proxy
from ..scoring import score_architecture
from ..spaces import SearchSpace
from .ensemble import EnsembleFitness, Fitness, ProxyFitness, ensemble_spec
from .reference import CellScorer, ComponentReference, ReferenceSpec, ReferenceStore, score_reference


def make_fitness(
    name: str,
    *,
    space: SearchSpace | None = None,
    score_cell: CellScorer | None = None,
    reference: ReferenceSpec = ReferenceSpec(),
    references: Mapping[str, ComponentReference] | None = None,
    store: ReferenceStore | None = None,
    progress: TextIO | None = None,
) -> Fitness:
    """The fitness for ``name``. An ensemble uses ``references`` when given, else scores the
    reference cells of ``space`` with ``score_cell`` (reading and filling ``store``)."""
    spec = ensemble_spec(name)
    if spec is None:
        return ProxyFitness(get_proxy(name))
    if references is None:
        if space is None or score_cell is None:
            raise ValueError(f"ensemble {name} needs a space and a cell scorer to build its reference")
        references = score_reference(reference.cells(space), spec.components, score_cell, store=store, progress=progress)
    return EnsembleFitness(spec, references, reference)


def architecture_scorer(space: SearchSpace, probe: ProbeBatch, *, seed: int, num_classes: int) -> CellScorer:
    """Score cells exactly as ``rznas score`` and ``rznas bench correlation`` do (:func:`score_architecture`)."""

    def score_cell(arch: Architecture, names: "list[str] | tuple[str, ...]") -> Mapping[str, ProxyResult]:
        proxies = [get_proxy(name) for name in names]
        return score_architecture(space, arch, probe, proxies, seed=seed, num_classes=num_classes).results

    return score_cell


__all__ = ["architecture_scorer", "make_fitness"]
