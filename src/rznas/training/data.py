"""What the training loop reads: epochs of (inputs, targets) batches, from CIFAR, the user's
images (``folder:PATH`` / ``npz:PATH``) or tensors."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol

import torch

from ..data.cifar import CifarDataset, load_cifar
from ..data.paths import PathLike
from ..errors import ConfigError, DataError

Batch = tuple[torch.Tensor, torch.Tensor]


class TrainData(Protocol):
    """A training set and a test set behind two batch iterators."""

    num_classes: int
    num_train: int
    num_test: int
    description: str

    def train_batches(self, *, batch_size: int, seed: int, augment: bool, cutout: int) -> Iterator[Batch]:
        """One shuffled (and possibly augmented) epoch; the order is a function of ``seed``."""

    def test_batches(self, *, batch_size: int) -> Iterator[Batch]:
        """The test set in a fixed order, unaugmented."""


def _take(dataset: CifarDataset, index: torch.Tensor, source: str) -> CifarDataset:
    return CifarDataset(
        dataset.images[index], dataset.labels[index], dataset.spec, source, dataset.files, dataset.classes
    )


def _subset(dataset: CifarDataset, size: int | None, seed: int) -> CifarDataset:
    if size is None:
        return dataset
    if size < 1:
        raise ConfigError(f"subset size must be positive, got {size}")
    if size >= len(dataset):
        return dataset
    index = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:size]
    index = index.sort().values
    return _take(dataset, index, f"{dataset.source}[{size}]")


@dataclass
class CifarTrainData:
    """CIFAR-10/100 train and test splits (optionally random subsets) for the training loop."""

    train: CifarDataset
    test: CifarDataset

    @property
    def num_classes(self) -> int:
        return self.train.num_classes

    @property
    def num_train(self) -> int:
        return len(self.train)

    @property
    def num_test(self) -> int:
        return len(self.test)

    @property
    def description(self) -> str:
        return f"{self.train.source} ({self.num_train} images), {self.test.source} ({self.num_test} images)"

    def train_batches(self, *, batch_size: int, seed: int, augment: bool, cutout: int) -> Iterator[Batch]:
        return self.train.batches(batch_size, shuffle=True, augment=augment, cutout=cutout, seed=seed)

    def test_batches(self, *, batch_size: int) -> Iterator[Batch]:
        return self.test.batches(batch_size, shuffle=False)


def cifar_train_data(
    dataset: str,
    *,
    data_dir: PathLike | None = None,
    train_subset: int | None = None,
    test_subset: int | None = None,
    seed: int = 0,
) -> CifarTrainData:
    """Load CIFAR for training; subsets are seeded random samples of each split."""
    train = _subset(load_cifar(dataset, data_dir=data_dir, split="train"), train_subset, seed)
    test = _subset(load_cifar(dataset, data_dir=data_dir, split="test"), test_subset, seed + 1)
    return CifarTrainData(train, test)


#: share of the user's images held out for testing when the data has no test split
HOLDOUT_FRACTION = 0.1


def user_train_data(
    spec: str,
    *,
    train_subset: int | None = None,
    test_subset: int | None = None,
    seed: int = 0,
) -> CifarTrainData:
    """The user's images for training: their own test split (a ``test``/``val`` sub-folder, or
    ``x_test``/``y_test`` in the npz) when present, else a seeded hold-out of
    :data:`HOLDOUT_FRACTION`, named in the data's description (printed by ``rznas train``)."""
    from ..data.probe import parse_data_spec
    from ..data.user import UserDataSpec, has_test_split, load_user_data

    kind, argument = parse_data_spec(spec)
    if argument is None:
        raise ConfigError(f"{spec!r} is not the user's data (folder:PATH or npz:PATH)")
    user = UserDataSpec.parse(kind, argument)
    train = load_user_data(user, "train")
    if has_test_split(user):
        test = load_user_data(user, "test", stats=train.spec)  # type: ignore[arg-type]
    else:
        held = max(1, round(HOLDOUT_FRACTION * len(train)))
        if held >= len(train):
            raise DataError(f"{user.label} has {len(train)} image(s): too few to hold out a test split")
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed + 2))
        percent = f"{HOLDOUT_FRACTION:.0%}"
        test = _take(train, order[:held].sort().values, f"{train.source} held-out {percent} (seed {seed})")
        train = _take(train, order[held:].sort().values, f"{train.source} minus held-out {percent}")
    return CifarTrainData(_subset(train, train_subset, seed), _subset(test, test_subset, seed + 1))


def load_train_data(
    data: str,
    *,
    data_dir: PathLike | None = None,
    train_subset: int | None = None,
    test_subset: int | None = None,
    seed: int = 0,
) -> CifarTrainData:
    """Training data named like probe data: ``cifar10``, ``cifar100``, ``folder:PATH``, ``npz:PATH``."""
    from ..data.probe import parse_data_spec

    kind, argument = parse_data_spec(data)
    if argument is not None:
        return user_train_data(data, train_subset=train_subset, test_subset=test_subset, seed=seed)
    if kind not in ("cifar10", "cifar100"):
        raise ConfigError(f"rznas train needs labelled images: cifar10, cifar100, folder:PATH or npz:PATH, not {data!r}")
    return cifar_train_data(kind, data_dir=data_dir, train_subset=train_subset, test_subset=test_subset, seed=seed)


def cifar_holdout_data(
    dataset: str,
    *,
    data_dir: PathLike | None = None,
    train_images: int,
    val_images: int,
    seed: int = 0,
) -> CifarTrainData:
    """Two disjoint seeded random parts of CIFAR's *training* split: ``train_images`` to train on
    and ``val_images`` held out as the loop's evaluation set (the test split is never read).

    For choosing between architectures: a selection made on the test split would be reported
    on the data it was tuned to."""
    if train_images < 1 or val_images < 1:
        raise ConfigError(f"need at least one training and one validation image, got {train_images} and {val_images}")
    full = load_cifar(dataset, data_dir=data_dir, split="train")
    if train_images + val_images > len(full):
        raise ConfigError(
            f"{train_images} training + {val_images} validation images exceed the {len(full)} images "
            f"of {full.source} ({', '.join(full.files) or 'no files'})"
        )
    order = torch.randperm(len(full), generator=torch.Generator().manual_seed(seed))
    val_index = order[:val_images].sort().values
    train_index = order[val_images : val_images + train_images].sort().values
    return CifarTrainData(
        _take(full, train_index, f"{full.source}[{train_images}]"),
        _take(full, val_index, f"{full.source}-holdout[{val_images}]"),
    )


@dataclass
class TensorTrainData:
    """In-memory float tensors (already normalised), no augmentation: for tests and custom data."""

    train_inputs: torch.Tensor
    train_targets: torch.Tensor
    test_inputs: torch.Tensor
    test_targets: torch.Tensor
    num_classes: int
    description: str = "tensors"

    @property
    def num_train(self) -> int:
        return int(self.train_inputs.shape[0])

    @property
    def num_test(self) -> int:
        return int(self.test_inputs.shape[0])

    def train_batches(self, *, batch_size: int, seed: int, augment: bool, cutout: int) -> Iterator[Batch]:
        order = torch.randperm(self.num_train, generator=torch.Generator().manual_seed(seed))
        for start in range(0, self.num_train, batch_size):
            index = order[start : start + batch_size]
            yield self.train_inputs[index], self.train_targets[index]

    def test_batches(self, *, batch_size: int) -> Iterator[Batch]:
        for start in range(0, self.num_test, batch_size):
            yield self.test_inputs[start : start + batch_size], self.test_targets[start : start + batch_size]
