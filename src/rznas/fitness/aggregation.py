"""How an ensemble turns its components' reference CDF values into one number (a registry)."""
from __future__ import annotations

import math
import statistics
from typing import Callable, Sequence

from ..registry import Registry

Aggregation = Callable[[Sequence[float]], float]

#: name -> f(cdf values in (0, 1), one per component) -> fitness (higher is better)
AGGREGATIONS: Registry[Aggregation] = Registry("ensemble aggregation")

#: what a `a+b+c` name uses: AZ-NAS's sum of log ranks, with ranks taken on the reference sample
DEFAULT_AGGREGATION = "sum_log_cdf"


@AGGREGATIONS.register("sum_log_cdf")
def sum_log_cdf(cdfs: Sequence[float]) -> float:
    """AZ-NAS's rule: sum of log(rank / N); a cell must be good in every component to score high."""
    return math.fsum(math.log(value) for value in cdfs)


@AGGREGATIONS.register("mean_cdf")
def mean_cdf(cdfs: Sequence[float]) -> float:
    """Borda-style mean of the component CDFs: one weak component costs less than under the log."""
    return statistics.fmean(cdfs)


__all__ = ["AGGREGATIONS", "Aggregation", "DEFAULT_AGGREGATION", "mean_cdf", "sum_log_cdf"]
