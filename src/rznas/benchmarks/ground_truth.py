"""Benchmark tables of trained accuracies, one opener per search space: the registry that both
``rznas bench correlation`` and a search's final report look spaces up in."""
from __future__ import annotations

from typing import Callable

from ..registry import Registry
from .nb201_table import GroundTruth, open_nb201

#: ground-truth openers per search space: (location | None, data_dir=...) -> GroundTruth
GROUND_TRUTH: Registry[Callable[..., GroundTruth]] = Registry("benchmark space")
GROUND_TRUTH.register("nb201")(open_nb201)

__all__ = ["GROUND_TRUTH"]
