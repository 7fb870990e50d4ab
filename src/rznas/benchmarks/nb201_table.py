"""NAS-Bench-201 ground truth (200-epoch validation/test accuracy) behind one interface.

Two sources: the compact JSON tables (``nasbench201_<dataset>.json``, keyed by arch
string, as shipped by GENIUS/LAPT) and the official NATS-Bench topology benchmark
through the ``nats_bench`` package (imported lazily). :func:`open_nb201` picks the
right one for a path, so callers only see :class:`GroundTruth`.
"""
from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..arch import Architecture
from ..data.paths import PathLike, resolve_nb201_dir
from ..errors import ConfigError, DataError, InvalidArchitecture
from ..spaces.nb201 import NB201Space


@dataclass(frozen=True)
class NB201Dataset:
    """One benchmark dataset: its names in each source and its network shape."""

    name: str  # rznas name
    compact_file: str
    nats_name: str  # dataset name in NATS-Bench for test accuracy (and valid, except cifar10)
    nats_valid: str  # dataset name in NATS-Bench that holds the validation accuracy
    num_classes: int
    resolution: int


NB201_DATASETS: dict[str, NB201Dataset] = {
    d.name: d
    for d in (
        # cifar10: test accuracy of the train+valid run, validation accuracy of the train-only run
        NB201Dataset("cifar10", "nasbench201_cifar10.json", "cifar10", "cifar10-valid", 10, 32),
        NB201Dataset("cifar100", "nasbench201_cifar100.json", "cifar100", "cifar100", 100, 32),
        NB201Dataset("imagenet16", "nasbench201_imagenet.json", "ImageNet16-120", "ImageNet16-120", 120, 16),
    )
}
_ALIASES = {"imagenet16-120": "imagenet16", "imagenet": "imagenet16", "cifar10-valid": "cifar10"}


def nb201_dataset(name: str) -> NB201Dataset:
    """Look up a benchmark dataset by rznas name (or a NATS-Bench alias such as ImageNet16-120)."""
    key = _ALIASES.get(name.lower(), name.lower())
    try:
        return NB201_DATASETS[key]
    except KeyError:
        raise ConfigError(
            f"unknown NB201 dataset {name!r}; use one of {', '.join(NB201_DATASETS)}"
        ) from None


@dataclass(frozen=True)
class Accuracy:
    """200-epoch accuracies (%) of one cell on one dataset, and the table's rank if it has one.

    In the shared compact tables rank 1 is the best test accuracy (checked: the 94.37%
    cell has rank 1), although ../shared/data/README.md describes the opposite order.
    """

    val_acc: float
    test_acc: float
    rank: int | None = None


_SPACE = NB201Space()


def arch_string(arch: Architecture | str) -> str:
    """The canonical NB201 arch string of an Architecture or a (validated) arch string."""
    if isinstance(arch, Architecture):
        return _SPACE.encode(arch)
    if isinstance(arch, str):
        return _SPACE.encode(_SPACE.decode(arch))
    raise InvalidArchitecture(f"expected an Architecture or an NB201 arch string, got {type(arch).__name__}")


class GroundTruth(ABC):
    """Benchmark accuracies of NB201 cells; implementations differ only in where they read."""

    source: str
    #: the benchmark datasets every cell has accuracies for (what a search's report lists)
    datasets: tuple[str, ...] = tuple(NB201_DATASETS)

    @abstractmethod
    def lookup_string(self, arch: str, dataset: NB201Dataset) -> Accuracy:
        """Accuracy of a canonical arch string (raises DataError when absent)."""

    def lookup(self, arch: Architecture | str, dataset: str) -> Accuracy:
        """200-epoch validation and test accuracy of ``arch`` on ``dataset``."""
        return self.lookup_string(arch_string(arch), nb201_dataset(dataset))

    def dataset(self, name: str) -> NB201Dataset:
        """Class count and input resolution of a benchmark dataset."""
        return nb201_dataset(name)

    def test_accuracy(self, arch: Architecture | str, dataset: str) -> float:
        """200-epoch test accuracy (%)."""
        return self.lookup(arch, dataset).test_acc


class CompactTable(GroundTruth):
    """The compact JSON tables: {arch string: {val_acc_200, test_acc_200, rank}} per dataset."""

    def __init__(self, folder: PathLike):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise DataError(f"NB201 table folder {self.folder} does not exist")
        self.source = f"compact-json:{self.folder}"
        self._tables: dict[str, dict[str, Accuracy]] = {}

    def table(self, dataset: NB201Dataset) -> dict[str, Accuracy]:
        """The whole table of one dataset (loaded once, validated)."""
        if dataset.name not in self._tables:
            self._tables[dataset.name] = self._load(self.folder / dataset.compact_file)
        return self._tables[dataset.name]

    @staticmethod
    def _load(path: Path) -> dict[str, Accuracy]:
        try:
            with open(path, encoding="utf-8") as handle:
                raw = json.load(handle)
        except FileNotFoundError:
            raise DataError(f"NB201 table {path} is missing") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"NB201 table {path} is not valid JSON: {exc}") from None
        if not isinstance(raw, dict) or not raw:
            raise DataError(f"NB201 table {path} must be a non-empty JSON object keyed by arch string")
        table: dict[str, Accuracy] = {}
        for key, value in raw.items():
            try:
                record = Accuracy(
                    val_acc=float(value["val_acc_200"]),
                    test_acc=float(value["test_acc_200"]),
                    rank=int(value["rank"]) if value.get("rank") is not None else None,
                )
            except (KeyError, TypeError, ValueError, AttributeError):
                raise DataError(
                    f"NB201 table {path}: entry {key!r} needs numeric 'val_acc_200' and 'test_acc_200'"
                ) from None
            table[key] = record
        return table

    def lookup_string(self, arch: str, dataset: NB201Dataset) -> Accuracy:
        try:
            return self.table(dataset)[arch]
        except KeyError:
            raise DataError(f"{arch} is not in {self.folder / dataset.compact_file}") from None


class NatsApi(Protocol):
    """The part of the NATS-Bench API that rznas uses."""

    def query_index_by_arch(self, arch: Any) -> int: ...

    def get_more_info(self, index: int, dataset: str, iepoch: Any = None, hp: str = "12", is_random: bool = True) -> dict: ...


class NatsBenchTable(GroundTruth):
    """The official NATS-Bench topology benchmark (``tss``), through its public API."""

    def __init__(self, api: NatsApi, source: str = "nats-bench"):
        self.api = api
        self.source = source

    @classmethod
    def open(cls, path: PathLike) -> "NatsBenchTable":
        """Open an official NATS-Bench topology file or folder (needs ``pip install nats_bench``)."""
        try:
            import nats_bench  # type: ignore[import-not-found]
        except ImportError:
            raise ConfigError(
                f"{path} looks like an official NATS-Bench benchmark, which needs the nats_bench package: "
                "pip install 'rznas[nats]' (or pip install nats_bench); "
                "or point --nb201 at a folder of compact nasbench201_*.json tables"
            ) from None
        api = nats_bench.create(str(path), "tss", fast_mode=True, verbose=False)
        return cls(api, source=f"nats-bench:{path}")

    def lookup_string(self, arch: str, dataset: NB201Dataset) -> Accuracy:
        index = int(self.api.query_index_by_arch(arch))
        if index < 0:
            raise DataError(f"{arch} is not in the NATS-Bench topology benchmark ({self.source})")
        test = self.api.get_more_info(index, dataset.nats_name, hp="200", is_random=False)
        valid = (
            test
            if dataset.nats_valid == dataset.nats_name
            else self.api.get_more_info(index, dataset.nats_valid, hp="200", is_random=False)
        )
        try:
            val_acc, test_acc = float(valid["valid-accuracy"]), float(test["test-accuracy"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"NATS-Bench returned no 200-epoch accuracy for {arch} on {dataset.nats_name}: {exc}") from None
        if not (math.isfinite(val_acc) and math.isfinite(test_acc)):
            raise DataError(f"NATS-Bench accuracy of {arch} on {dataset.nats_name} is not finite")
        return Accuracy(val_acc, test_acc, None)


def _is_compact_folder(path: Path) -> bool:
    return path.is_dir() and any((path / d.compact_file).is_file() for d in NB201_DATASETS.values())


def open_nb201(path: PathLike | None = None, *, data_dir: PathLike | None = None) -> GroundTruth:
    """Open NB201 ground truth from a flag, $RZNAS_NB201_DIR or <data dir>/nb201.

    A folder holding ``nasbench201_*.json`` is read as compact tables; a NATS-Bench file
    or folder (e.g. ``NATS-tss-v1_0-3ffb9-simple``) goes through the ``nats_bench`` API.
    """
    location = resolve_nb201_dir(path, data_dir=data_dir)
    if _is_compact_folder(location):
        return CompactTable(location)
    if "nats-tss" in location.name.lower() or "nas-bench-201" in location.name.lower():
        return NatsBenchTable.open(location)
    raise DataError(
        f"{location} holds neither compact NB201 tables ({', '.join(d.compact_file for d in NB201_DATASETS.values())}) "
        "nor an official NATS-Bench topology benchmark (a file or folder named NATS-tss-*)"
    )
