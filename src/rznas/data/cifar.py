"""CIFAR-10 / CIFAR-100 from the official python format, as normalised NCHW float tensors.

Reads whichever training batches exist (the shared subset has only ``data_batch_1``),
unpickles with an allow-list (numpy arrays only, never arbitrary code), and offers a
minimal dataset with a batch iterator (random crop with 4-pixel padding, horizontal
flip and cutout as options) for later training. No torchvision needed.
"""
from __future__ import annotations

import codecs
import functools
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol

import numpy as np
import torch

from ..errors import ConfigError, DataError
from .paths import PathLike, find_folder, resolve_data_dir

SPLITS = ("train", "test")


@dataclass(frozen=True)
class CifarSpec:
    """Where a CIFAR variant's files are and how to read and normalise them."""

    name: str
    folder: str  # the official folder name, e.g. "cifar-10-batches-py"
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: bytes
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def files(self, split: str) -> tuple[str, ...]:
        """File names of ``split`` ("train" or "test")."""
        if split not in SPLITS:
            raise ConfigError(f"unknown CIFAR split {split!r}; use one of {', '.join(SPLITS)}")
        return self.train_files if split == "train" else self.test_files


CIFAR_SPECS: dict[str, CifarSpec] = {
    spec.name: spec
    for spec in (
        CifarSpec(
            name="cifar10",
            folder="cifar-10-batches-py",
            train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
            test_files=("test_batch",),
            label_key=b"labels",
            num_classes=10,
            mean=(0.4914, 0.4822, 0.4465),
            std=(0.2470, 0.2435, 0.2616),
        ),
        CifarSpec(
            name="cifar100",
            folder="cifar-100-python",
            train_files=("train",),
            test_files=("test",),
            label_key=b"fine_labels",
            num_classes=100,
            mean=(0.5071, 0.4865, 0.4409),
            std=(0.2673, 0.2564, 0.2762),
        ),
    )
}


def get_spec(name: str) -> CifarSpec:
    """The spec of ``cifar10`` or ``cifar100``."""
    try:
        return CIFAR_SPECS[name]
    except KeyError:
        raise ConfigError(f"unknown CIFAR dataset {name!r}; use one of {', '.join(CIFAR_SPECS)}") from None


def _numpy_reconstruct() -> Any:
    core = getattr(np, "_core", None)
    return core.multiarray._reconstruct if core is not None else np.core.multiarray._reconstruct


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that only resolves the numpy globals an array pickle needs."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # bytes inside protocol-2 pickles written by Python 3
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        if name == "_reconstruct":
            return _numpy_reconstruct()
        if module == "_codecs":
            return codecs.encode
        return getattr(np, name)


def read_batch_file(path: Path, label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    """One official batch file -> (uint8 images N x 3 x 32 x 32, int64 labels N)."""
    try:
        with open(path, "rb") as handle:
            content = _ArrayUnpickler(handle, encoding="bytes").load()
    except FileNotFoundError:
        raise DataError(f"CIFAR file {path} is missing") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DataError(f"{path} is not a CIFAR python-format batch: {exc}") from None
    if not isinstance(content, dict) or b"data" not in content or label_key not in content:
        keys = sorted(content) if isinstance(content, dict) else type(content).__name__
        raise DataError(f"{path} is not a CIFAR batch: expected keys b'data' and {label_key!r}, found {keys}")
    data = np.asarray(content[b"data"])
    labels = np.asarray(content[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: b'data' must be uint8 N x 3072, got {data.dtype} {data.shape}")
    if labels.shape != (data.shape[0],):
        raise DataError(f"{path}: {data.shape[0]} images but {labels.shape[0]} labels")
    return data.reshape(-1, 3, 32, 32), labels


def find_cifar_folder(dataset: str, data_dir: PathLike | None = None) -> Path:
    """The official-format folder of ``dataset`` under the resolved data root.

    Accepts the root itself, ``root/<official folder>`` or ``root/<dataset>/<official folder>``
    (the layout of ../shared/data).
    """
    spec = get_spec(dataset)
    root = resolve_data_dir(data_dir)
    return find_folder(
        root,
        ("", spec.folder, f"{spec.name}/{spec.folder}"),
        spec.train_files + spec.test_files,
        f"{spec.name} data ({spec.folder})",
    )


@functools.lru_cache(maxsize=4)
def _load_split_cached(folder: str, dataset: str, split: str) -> tuple[torch.Tensor, torch.Tensor, tuple[str, ...]]:
    spec = get_spec(dataset)
    present = [name for name in spec.files(split) if (Path(folder) / name).is_file()]
    if not present:
        raise DataError(
            f"no {dataset} {split} files in {folder}; expected one of {', '.join(spec.files(split))}"
        )
    parts = [read_batch_file(Path(folder) / name, spec.label_key) for name in present]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    if labels.min() < 0 or labels.max() >= spec.num_classes:
        raise DataError(f"{folder}: {dataset} labels must lie in [0, {spec.num_classes}), got {labels.min()}..{labels.max()}")
    return torch.from_numpy(images), torch.from_numpy(labels), tuple(present)


class Normalization(Protocol):
    """What normalising a data set needs (a CifarSpec, or the user's data's ImageStats)."""

    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def normalize(images: torch.Tensor, spec: Normalization) -> torch.Tensor:
    """uint8 (or 0..255 float) NCHW images -> float32, scaled to [0, 1] and standardised."""
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1)
    return (images.to(torch.float32) / 255.0 - mean) / std


class CifarDataset:
    """One split of CIFAR-10/100 (or the user's images) in memory: uint8 images, int64 labels,
    normalised on access.

    ``images`` and ``labels`` may be shared with other loads of the same files; do not
    modify them in place.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        spec: Normalization,
        source: str,
        files: tuple[str, ...] = (),
        classes: tuple[str, ...] = (),
    ):
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise DataError(f"CIFAR images must be uint8 N x 3 x H x W, got {images.dtype} {tuple(images.shape)}")
        if labels.shape != (images.shape[0],):
            raise DataError("CIFAR images and labels differ in length")
        self.images = images
        self.labels = labels
        self.spec = spec
        self.source = source
        self.files = files  # the batch files that were read
        self.classes = classes  # class names, when the data names them (the user's folders)

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """(normalised float CHW image, label)."""
        return normalize(self.images[index : index + 1], self.spec)[0], int(self.labels[index])

    def tensors(self, indices: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised float NCHW images and labels, for all samples or the given indices."""
        images = self.images if indices is None else self.images[indices]
        labels = self.labels if indices is None else self.labels[indices]
        return normalize(images, self.spec), labels.clone()

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = True,
        augment: bool = False,
        cutout: int = 0,
        drop_last: bool = False,
        seed: int = 0,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One epoch of (float NCHW, labels) batches, optionally augmented (crop+flip, cutout)."""
        if batch_size < 1:
            raise ConfigError(f"batch size must be positive, got {batch_size}")
        if cutout < 0:
            raise ConfigError(f"cutout length must be >= 0, got {cutout}")
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(self), generator=generator) if shuffle else torch.arange(len(self))
        stop = len(self) - len(self) % batch_size if drop_last else len(self)
        for start in range(0, stop, batch_size):
            index = order[start : start + batch_size]
            images = self.images[index]
            if augment:
                images = random_crop_flip(images, generator, padding=4)
            inputs = normalize(images, self.spec)
            if cutout:
                inputs = apply_cutout(inputs, cutout, generator)
            yield inputs, self.labels[index].clone()


def random_crop_flip(images: torch.Tensor, generator: torch.Generator, *, padding: int = 4) -> torch.Tensor:
    """Standard CIFAR augmentation on raw NCHW images: zero-pad, random crop back, random h-flip."""
    n, _, height, width = images.shape
    padded = torch.nn.functional.pad(images, (padding, padding, padding, padding))
    top = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    left = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    rows = (top[:, None] + torch.arange(height))[:, None, :, None]
    cols = (left[:, None] + torch.arange(width))[:, None, None, :]
    batch = torch.arange(n)[:, None, None, None]
    channel = torch.arange(images.shape[1])[None, :, None, None]
    cropped = padded[batch, channel, rows, cols]
    flip = torch.rand(n, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], cropped.flip(-1), cropped)


def apply_cutout(inputs: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
    """Cutout (DeVries & Taylor 2017): zero one length x length square per image, clipped at borders."""
    n, _, height, width = inputs.shape
    cy = torch.randint(0, height, (n,), generator=generator)
    cx = torch.randint(0, width, (n,), generator=generator)
    ys = torch.arange(height)[None, :]
    xs = torch.arange(width)[None, :]
    in_y = (ys >= (cy[:, None] - length // 2)) & (ys < (cy[:, None] - length // 2 + length))
    in_x = (xs >= (cx[:, None] - length // 2)) & (xs < (cx[:, None] - length // 2 + length))
    mask = in_y[:, :, None] & in_x[:, None, :]
    return inputs.masked_fill(mask[:, None, :, :], 0.0)


def load_cifar(dataset: str, *, data_dir: PathLike | None = None, split: str = "train") -> CifarDataset:
    """Load one split of ``cifar10`` / ``cifar100`` from the official python-format folder."""
    spec = get_spec(dataset)
    spec.files(split)  # validates the split name
    folder = find_cifar_folder(dataset, data_dir)
    images, labels, present = _load_split_cached(str(folder.resolve()), dataset, split)
    source = f"{dataset}:{split}"
    # the cached tensors are shared between loads: treat them as read-only
    return CifarDataset(images, labels, spec, source, tuple(str(folder / name) for name in present))
