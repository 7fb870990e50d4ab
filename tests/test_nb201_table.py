"""NB201 ground truth: compact JSON tables and the NATS-Bench adapter behind one interface."""
from __future__ import annotations

import csv
import json
import sys
import types

import pytest
from scipy import stats

from rznas import ConfigError, DataError, InvalidArchitecture
from rznas.benchmarks.nb201_table import (
    NB201_DATASETS,
    CompactTable,
    GroundTruth,
    NatsBenchTable,
    open_nb201,
)
from rznas.spaces import get_space

from .conftest import require_shared

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"
EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


@pytest.fixture(scope="module")
def shared_table() -> CompactTable:
    return CompactTable(require_shared("nb201"))


@pytest.mark.parametrize(
    "dataset, max_test, max_val",
    [("cifar10", 94.373, 91.607), ("cifar100", 73.513, 73.493), ("imagenet16", 47.311, 46.733)],
)
def test_shared_tables_match_documented_maxima(shared_table, dataset, max_test, max_val):
    table = shared_table.table(NB201_DATASETS[dataset])
    assert len(table) == 15_625
    assert max(r.test_acc for r in table.values()) == pytest.approx(max_test, abs=1e-3)
    assert max(r.val_acc for r in table.values()) == pytest.approx(max_val, abs=1e-3)


def test_lookup_by_string_architecture_and_alias(shared_table):
    space = get_space("nb201")
    record = shared_table.lookup(BEST, "cifar10")
    assert record.test_acc == pytest.approx(94.373, abs=1e-3) and record.rank == 1
    assert shared_table.lookup(space.decode(BEST), "cifar10") == record
    example = shared_table.lookup(EXAMPLE, "cifar100")
    assert example.test_acc == pytest.approx(70.293, abs=1e-3)
    assert shared_table.lookup(EXAMPLE, "ImageNet16-120") == shared_table.lookup(EXAMPLE, "imagenet16")
    assert shared_table.test_accuracy(EXAMPLE, "imagenet16") == pytest.approx(44.033, abs=1e-3)


def test_keys_agree_with_an_independent_nats_export(shared_table):
    """Same ranking as the NATS-Bench CSV export (per-seed averages differ slightly)."""
    path = require_shared("reference/nats_bench.csv")
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))[:2000]
    ours = [shared_table.test_accuracy(r["ArchitectureString"], "cifar10") for r in rows]
    theirs = [float(r["CIFAR10TestAccuracy200Epochs"]) for r in rows]
    assert stats.spearmanr(ours, theirs).statistic > 0.98


def test_bad_queries(shared_table):
    with pytest.raises(InvalidArchitecture):
        shared_table.lookup("|conv~0|", "cifar10")
    with pytest.raises(ConfigError, match="cifar10"):
        shared_table.lookup(EXAMPLE, "svhn")


# --- compact format errors --------------------------------------------------------------------


def test_compact_table_errors_name_the_file(tmp_path):
    table = CompactTable(tmp_path)
    with pytest.raises(DataError, match="nasbench201_cifar10.json"):
        table.lookup(EXAMPLE, "cifar10")
    (tmp_path / "nasbench201_cifar100.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        table.lookup(EXAMPLE, "cifar100")
    (tmp_path / "nasbench201_imagenet.json").write_text(json.dumps({EXAMPLE: {"val_acc_200": 1.0}}))
    with pytest.raises(DataError, match="test_acc_200"):
        table.lookup(EXAMPLE, "imagenet16")
    (tmp_path / "nasbench201_cifar10.json").write_text(
        json.dumps({BEST: {"val_acc_200": 1.0, "test_acc_200": 2.0, "rank": 5}})
    )
    assert table.lookup(BEST, "cifar10").test_acc == 2.0
    with pytest.raises(DataError, match="is not in"):
        table.lookup(EXAMPLE, "cifar10")
    with pytest.raises(DataError):
        CompactTable(tmp_path / "missing")


# --- NATS-Bench adapter -------------------------------------------------------------------------


class FakeNatsApi:
    """Implements the two NATS-Bench methods rznas calls, and records the calls."""

    def __init__(self) -> None:
        self.archs = [EXAMPLE, BEST]
        self.calls: list[tuple] = []

    def query_index_by_arch(self, arch):
        return self.archs.index(arch) if arch in self.archs else -1

    def get_more_info(self, index, dataset, iepoch=None, hp="12", is_random=True):
        self.calls.append((index, dataset, hp, is_random))
        base = {"cifar10-valid": 80.0, "cifar10": 90.0, "cifar100": 70.0, "ImageNet16-120": 40.0}[dataset]
        return {"valid-accuracy": base + index, "test-accuracy": base + 0.5 + index, "train-loss": 0.1}


def test_nats_adapter_reads_200_epoch_seed_averaged_accuracies():
    api = FakeNatsApi()
    truth: GroundTruth = NatsBenchTable(api)
    c10 = truth.lookup(BEST, "cifar10")
    assert (c10.val_acc, c10.test_acc) == (81.0, 91.5)  # valid from cifar10-valid, test from cifar10
    assert {(call[1], call[2], call[3]) for call in api.calls} == {
        ("cifar10", "200", False),
        ("cifar10-valid", "200", False),
    }
    img = truth.lookup(get_space("nb201").decode(EXAMPLE), "imagenet16")
    assert (img.val_acc, img.test_acc) == (40.0, 40.5)
    unknown = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    with pytest.raises(DataError, match="not in the NATS-Bench"):
        truth.lookup(unknown, "cifar100")


def test_nats_adapter_without_the_package_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "nats_bench", None)  # import raises ImportError
    with pytest.raises(ConfigError, match="pip install"):
        NatsBenchTable.open(tmp_path / "NATS-tss-v1_0-3ffb9-simple")


def test_open_nb201_picks_the_source_from_the_path(monkeypatch, tmp_path):
    monkeypatch.delenv("RZNAS_NB201_DIR", raising=False)
    monkeypatch.delenv("RZNAS_DATA_DIR", raising=False)
    compact = tmp_path / "data" / "nb201"
    compact.mkdir(parents=True)
    (compact / "nasbench201_cifar10.json").write_text(
        json.dumps({BEST: {"val_acc_200": 1.0, "test_acc_200": 2.0, "rank": 1}})
    )
    with pytest.raises(DataError, match="RZNAS_NB201_DIR"):
        open_nb201()
    assert isinstance(open_nb201(data_dir=tmp_path / "data"), CompactTable)
    monkeypatch.setenv("RZNAS_DATA_DIR", str(tmp_path / "data"))
    assert open_nb201().lookup(BEST, "cifar10").test_acc == 2.0

    nats_path = tmp_path / "NATS-tss-v1_0-3ffb9-simple"
    nats_path.mkdir()
    created = []
    fake = types.ModuleType("nats_bench")
    fake.create = lambda path, space, fast_mode, verbose: created.append((path, space, fast_mode, verbose)) or FakeNatsApi()
    monkeypatch.setitem(sys.modules, "nats_bench", fake)
    monkeypatch.setenv("RZNAS_NB201_DIR", str(nats_path))
    truth = open_nb201()
    assert isinstance(truth, NatsBenchTable)
    assert created == [(str(nats_path), "tss", True, False)]
    assert truth.lookup(EXAMPLE, "cifar100").test_acc == 70.5

    other = tmp_path / "something-else"
    other.mkdir()
    with pytest.raises(DataError, match="neither"):
        open_nb201(other)
