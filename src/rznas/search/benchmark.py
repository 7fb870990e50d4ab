"""Ground-truth accuracy of a found architecture, when a benchmark table is configured.

Only NAS-Bench-201 has a table (rznas.benchmarks.nb201_table); when its location is not
configured (--nb201, $RZNAS_NB201_DIR or $RZNAS_DATA_DIR/nb201) the lookup is skipped and
the reason is reported instead of numbers.
"""
from __future__ import annotations

from typing import Any, Mapping

from ..arch import Architecture
from ..errors import ConfigError, DataError

NB201_DATASETS = ("cifar10", "cifar100", "imagenet16")


def benchmark_accuracies(space: str, arch: Architecture, *, nb201: str | None = None, data_dir: str | None = None) -> dict[str, Any]:
    """{dataset: {"val_acc", "test_acc"}} for NB201 cells, or {"skipped": reason}."""
    if space != "nb201":
        return {"skipped": f"no benchmark table for space {space!r}"}
    try:
        from ..benchmarks.nb201_table import open_nb201
    except ImportError as exc:  # the table module is optional
        return {"skipped": f"NB201 table support is unavailable ({exc})"}
    try:
        table = open_nb201(nb201, data_dir=data_dir)
        results: dict[str, Any] = {"source": table.source}
        for dataset in NB201_DATASETS:
            accuracy = table.lookup(arch, dataset)
            results[dataset] = {"val_acc": accuracy.val_acc, "test_acc": accuracy.test_acc}
        return results
    except (DataError, ConfigError) as exc:
        return {"skipped": str(exc)}


def trial_accuracies(config: Mapping[str, Any], row: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`benchmark_accuracies` of a stored trial row of a run with resolved ``config``."""
    arch = Architecture.from_json(row["arch_json"])
    return benchmark_accuracies(config["space"], arch, nb201=config.get("nb201"), data_dir=config.get("data_dir"))
