"""The fitness objects for proxy or ensemble names, built as a search's evaluator builds them.

One implementation for ``rznas score`` and :func:`rznas.score`: an ensemble ranks its components
against the same seeded reference cells, read from (and stored in) the same score cache, as a
search with the same probe and score seed, so the numbers are the ones the search records.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence, TextIO

if TYPE_CHECKING:  # pragma: no cover
    from ..data.probe import ProbeBatch
    from ..fitness import Fitness
    from ..spaces import SearchSpace
    from .executors import ProbeSpec


def fitness_components(names: Sequence[str]) -> list[str]:
    """The proxies that must be scored for ``names`` (ensembles expanded), each once, in order."""
    from ..fitness import component_names

    ordered: dict[str, None] = {}
    for name in names:
        ordered.update(dict.fromkeys(component_names(name)))
    return list(ordered)


def named_fitnesses(
    names: Sequence[str],
    *,
    space_name: str,
    space: "SearchSpace",
    probe_spec: "ProbeSpec",
    probe: "ProbeBatch",
    device: str,
    score_seed: int,
    reference_size: int = 256,
    reference_seed: int = 0,
    cache: str | None = "default",
    progress: TextIO | None = None,
) -> "dict[str, Fitness]":
    """name -> fitness for each proxy or ensemble name. Ensembles score their reference cells
    once (or read them from the score cache ``cache``: a path, "default" or "none")."""
    from ..fitness import ProxyFitness, ensemble_spec
    from ..proxies import get_proxy
    from ..score_cache import ReferenceCache
    from .executors import EvaluatorSpec
    from .runner import open_score_cache

    fitnesses: dict[str, Any] = {}
    opened = None
    try:
        for name in names:
            if ensemble_spec(name) is None:
                fitnesses[name] = ProxyFitness(get_proxy(name))
                continue
            spec = EvaluatorSpec(
                space=space_name, proxy=name, probe=probe_spec, score_seed=score_seed, device=device,
                reference_size=reference_size, reference_seed=reference_seed,
            )
            if opened is None:
                opened = open_score_cache(cache)
            store = ReferenceCache(opened, spec.reference_settings) if opened is not None else None
            fitnesses[name] = spec.fitness(space, probe, store=store, progress=progress)
    finally:
        if opened is not None:
            opened.close()
    return fitnesses
