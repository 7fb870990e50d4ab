"""Fitness: the one comparable number per architecture that a search ranks by.

A fitness is a registered proxy, an ensemble written `a+b+c`, or a named ensemble
(`rznas list proxies` shows both). Importing this package registers the named ensembles.
"""
from .aggregation import AGGREGATIONS, DEFAULT_AGGREGATION
from .ensemble import (
    ENSEMBLES,
    SEPARATOR,
    EnsembleFitness,
    EnsembleSpec,
    Fitness,
    FitnessResult,
    ProxyFitness,
    component_names,
    ensemble_spec,
    fitness_names,
    is_ensemble,
    names_ensemble,
    register_ensemble,
)
from .factory import architecture_scorer, make_fitness
from .reference import ComponentReference, ReferenceSpec, ReferenceStore, score_reference
from . import aliases  # noqa: F401  (registers the named ensembles)

__all__ = [
    "AGGREGATIONS",
    "ComponentReference",
    "DEFAULT_AGGREGATION",
    "ENSEMBLES",
    "EnsembleFitness",
    "EnsembleSpec",
    "Fitness",
    "FitnessResult",
    "ProxyFitness",
    "ReferenceSpec",
    "ReferenceStore",
    "SEPARATOR",
    "architecture_scorer",
    "component_names",
    "ensemble_spec",
    "fitness_names",
    "is_ensemble",
    "make_fitness",
    "names_ensemble",
    "register_ensemble",
    "score_reference",
]
