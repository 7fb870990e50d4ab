"""Top-region metrics: how a proxy orders the *best* cells, which is what a search's pick depends on.

For scores (failures ranked below every success, as the harness ranks them) and test
accuracies of the same cells:

- ``tau_top10pct``: Kendall tau between score and accuracy inside the 10% most accurate cells;
- ``top1_acc``, ``top10_acc``, ``top1pct_acc``: mean test accuracy of the proxy's top-1,
  top-10 and top-1% picks. A tie group straddling the cut counts at its mean accuracy
  (the expectation under random tie-breaking), so a constant proxy scores the sample mean.

Bootstrap intervals resample the N cells with replacement (numpy default_rng(seed), one
draw per round shared by every proxy and metric, as benchmarks/correlation_summary.py does
for rho), recomputing every metric on each resample.
"""
from __future__ import annotations

import math
import warnings
from typing import Mapping, Sequence

import numpy as np
from scipy import stats

TOP_FRACTION = 0.10
METRICS = ("spearman_rho", "tau_top10pct", "top1_acc", "top10_acc", "top1pct_acc")


def failure_ranks(scores: Sequence[float | None]) -> np.ndarray:
    """Ranks of the scores, failed (None) scores tied below every success."""
    return stats.rankdata([s if s is not None else -np.inf for s in scores])


def top1pct_k(n: int) -> int:
    """How many picks 'top 1%' of ``n`` cells means (at least one)."""
    return max(1, int(round(0.01 * n)))


def top_k_accuracy(ranks: np.ndarray, accuracy: np.ndarray, k: int) -> float:
    """Mean accuracy of the ``k`` best-ranked cells; a tie group across the cut counts at its mean."""
    k = min(k, len(ranks))
    threshold = np.sort(ranks)[::-1][k - 1]
    above = ranks > threshold
    tied = ranks == threshold
    total = accuracy[above].sum() + (k - int(above.sum())) * accuracy[tied].mean()
    return float(total / k)


def _statistic(function, x: np.ndarray, y: np.ndarray) -> float | None:
    if len(x) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input -> NaN -> None
        value = float(function(x, y).statistic)
    return value if math.isfinite(value) else None


def metrics(ranks: np.ndarray, accuracy: np.ndarray) -> dict[str, float | None]:
    """Every metric of one proxy's ranks against the accuracies (see the module docstring)."""
    n = len(accuracy)
    top = np.argsort(-accuracy, kind="stable")[: max(2, int(math.ceil(TOP_FRACTION * n)))]
    return {
        "spearman_rho": _statistic(stats.spearmanr, ranks, accuracy),
        "tau_top10pct": _statistic(stats.kendalltau, ranks[top], accuracy[top]),
        "top1_acc": top_k_accuracy(ranks, accuracy, 1),
        "top10_acc": top_k_accuracy(ranks, accuracy, 10),
        "top1pct_acc": top_k_accuracy(ranks, accuracy, top1pct_k(n)),
    }


def oracle(accuracy: np.ndarray) -> dict[str, float]:
    """The best possible picks: the most accurate cells themselves."""
    best = np.sort(accuracy)[::-1]
    n = len(accuracy)
    return {
        "top1_acc": float(best[0]),
        "top10_acc": float(best[: min(10, n)].mean()),
        "top1pct_acc": float(best[: top1pct_k(n)].mean()),
        "mean_acc": float(accuracy.mean()),
    }


def bootstrap(
    rankings: Mapping[str, np.ndarray], accuracy: np.ndarray, *, rounds: int, seed: int = 0
) -> dict[str, dict[str, list[float] | None]]:
    """95% percentile intervals of every metric per ranking over ``rounds`` resamples of the cells."""
    rng = np.random.default_rng(seed)
    n = len(accuracy)
    draws: dict[str, dict[str, list[float]]] = {name: {m: [] for m in METRICS} for name in rankings}
    for _ in range(rounds):
        pick = rng.integers(0, n, n)
        y = accuracy[pick]
        for name, ranks in rankings.items():
            for metric, value in metrics(ranks[pick], y).items():
                if value is not None:
                    draws[name][metric].append(value)
    intervals: dict[str, dict[str, list[float] | None]] = {}
    for name, per_metric in draws.items():
        intervals[name] = {
            metric: [float(v) for v in np.percentile(values, [2.5, 97.5])] if values else None
            for metric, values in per_metric.items()
        }
    return intervals


__all__ = ["METRICS", "TOP_FRACTION", "bootstrap", "failure_ranks", "metrics", "oracle", "top1pct_k", "top_k_accuracy"]
