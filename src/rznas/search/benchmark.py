"""Ground-truth accuracy of a found architecture, when its space has a benchmark table.

The spaces with a table are those in :data:`rznas.benchmarks.ground_truth.GROUND_TRUTH`
(today NAS-Bench-201); when the table's location is not configured (--nb201,
$RZNAS_NB201_DIR or $RZNAS_DATA_DIR/nb201) the lookup is skipped and the reason is
reported instead of numbers.
"""
from __future__ import annotations

from typing import Any, Mapping

from ..arch import Architecture
from ..errors import ConfigError, DataError


def benchmark_accuracies(space: str, arch: Architecture, *, table: str | None = None, data_dir: str | None = None) -> dict[str, Any]:
    """{dataset: {"val_acc", "test_acc"}, "source": ...} from the space's table at ``table``
    (None: its default location), or {"skipped": reason}."""
    try:
        from ..benchmarks.ground_truth import GROUND_TRUTH
    except ImportError as exc:  # the table modules are optional
        return {"skipped": f"benchmark table support is unavailable ({exc})"}
    if space not in GROUND_TRUTH:
        return {"skipped": f"no benchmark table for space {space!r} (tables exist for: {', '.join(GROUND_TRUTH.names())})"}
    try:
        ground_truth = GROUND_TRUTH.get(space)(table, data_dir=data_dir)
        results: dict[str, Any] = {"source": ground_truth.source}
        for dataset in ground_truth.datasets:
            accuracy = ground_truth.lookup(arch, dataset)
            results[dataset] = {"val_acc": accuracy.val_acc, "test_acc": accuracy.test_acc}
        return results
    except (DataError, ConfigError) as exc:
        return {"skipped": str(exc)}


def trial_accuracies(config: Mapping[str, Any], row: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`benchmark_accuracies` of a stored trial row of a run with resolved ``config``."""
    arch = Architecture.from_json(row["arch_json"])
    return benchmark_accuracies(config["space"], arch, table=config.get("nb201"), data_dir=config.get("data_dir"))
