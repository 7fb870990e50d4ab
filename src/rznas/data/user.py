"""The user's own labelled images: a folder of class sub-folders (PNG/JPEG) or an ``.npz``.

Both load into the same in-memory :class:`~rznas.data.cifar.CifarDataset` that CIFAR uses
(uint8 NCHW images, int64 labels, normalised on access), so probes and ``rznas train`` treat
them exactly like CIFAR: the same per-channel standardisation, the same crop/flip/cutout
augmentation. The class count comes from the data. Normalisation statistics are the data's
own per-channel mean/std by default (CIFAR's constants are CIFAR's own statistics), or a
named set (``?norm=cifar10|cifar100|imagenet|none``) appended to the spec.
"""
from __future__ import annotations

import functools
import hashlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..registry import Registry
from .cifar import CIFAR_SPECS, CifarDataset

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
#: splits a folder may hold as sub-folders (``train`` is the probe's split)
TEST_FOLDERS = ("test", "val")


@dataclass(frozen=True)
class ImageStats:
    """What normalising one data set needs: its class count and per-channel mean/std (0..1 scale)."""

    name: str
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


NAMED_NORMS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    **{name: (spec.mean, spec.std) for name, spec in CIFAR_SPECS.items()},
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),  # only scaled to [0, 1]
}
DATA_NORM = "data"  # the default: the data set's own per-channel statistics


@dataclass(frozen=True)
class UserDataSpec:
    """A parsed ``folder:PATH[?norm=NAME]`` or ``npz:PATH[?norm=NAME]`` data spec."""

    kind: str  # "folder" | "npz"
    path: Path
    norm: str = DATA_NORM

    @classmethod
    def parse(cls, kind: str, argument: str) -> "UserDataSpec":
        text, _, query = argument.partition("?")
        if not text:
            raise ConfigError(f"--data {kind}: needs a path, e.g. {kind}:/data/my-images")
        norm = DATA_NORM
        if query:
            key, sep, value = query.partition("=")
            if key != "norm" or not sep:
                raise ConfigError(f"--data {kind}:{argument}: the only option is ?norm=NAME, got ?{query}")
            norm = value
        if norm != DATA_NORM and norm not in NAMED_NORMS:
            raise ConfigError(
                f"unknown normalisation {norm!r}; use {DATA_NORM} (the data's own mean/std, default) "
                f"or one of {', '.join(NAMED_NORMS)}"
            )
        return cls(kind, Path(text).expanduser(), norm)

    @property
    def label(self) -> str:
        suffix = "" if self.norm == DATA_NORM else f"?norm={self.norm}"
        return f"{self.kind}:{self.path}{suffix}"


@dataclass(frozen=True)
class RawImages:
    """Decoded images before normalisation: uint8 N x 3 x H x W, int64 labels, class names."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    where: str  # the folder or file they came from


# --- readers: one registered reader per kind -------------------------------------------

Reader = Callable[[Path, str], RawImages]
READERS: Registry[Reader] = Registry("user data format")


def _decode_image(path: Path) -> np.ndarray:
    """One PNG/JPEG file -> uint8 H x W x 3 (grey and palette images become RGB, alpha is dropped)."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as exc:  # a dependency of rznas; a broken install says so
        raise DataError(f"reading image folders needs Pillow ({exc}); pip install pillow") from None
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"cannot decode image {path}: {exc}") from None


def _split_folder(root: Path, split: str) -> Path:
    """``root/train`` / ``root/test`` (or ``root/val``) when present, else ``root`` for the train split."""
    if split == "train":
        train = root / "train"
        return train if train.is_dir() else root
    for name in TEST_FOLDERS:
        if (root / name).is_dir():
            return root / name
    raise DataError(f"{root} has no test split (a {' or '.join(TEST_FOLDERS)} sub-folder of class folders)")


#: folders with at least this many images report decoding progress on stderr
PROGRESS_FROM = 2000


class _Progress:
    """A line on stderr every few seconds while a large folder is decoded."""

    def __init__(self, what: str, total: int, every: float = 5.0):
        self.what, self.total, self.every = what, total, every
        self.count = 0
        self.start = self.last = time.perf_counter()
        print(f"rznas: {what} ...", file=sys.stderr, flush=True)

    def step(self) -> None:
        self.count += 1
        now = time.perf_counter()
        if now - self.last >= self.every:
            self.last = now
            print(f"rznas: {self.count}/{self.total} images decoded ({now - self.start:.0f} s)", file=sys.stderr, flush=True)

    def done(self) -> None:
        print(f"rznas: {self.what}: done in {time.perf_counter() - self.start:.1f} s", file=sys.stderr, flush=True)


@READERS.register("folder")
def read_folder(root: Path, split: str) -> RawImages:
    """Class sub-folders of PNG/JPEG images; labels are the sorted folder names' indices."""
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist or is not a folder")
    folder = _split_folder(root, split)
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in ("train", *TEST_FOLDERS))
    if not class_dirs:
        raise DataError(f"{folder} has no class sub-folders (expected {folder}/<class>/<image>.png)")
    arrays: list[np.ndarray] = []
    labels: list[int] = []
    first: tuple[tuple[int, ...], Path] | None = None
    per_class = []
    for class_dir in class_dirs:
        files = sorted(p for p in class_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"class folder {class_dir} holds no {'/'.join(IMAGE_SUFFIXES)} images")
        per_class.append(files)
    total = sum(len(files) for files in per_class)
    report = _Progress(f"decoding {total} images from {folder}", total) if total >= PROGRESS_FROM else None
    for label, files in enumerate(per_class):
        for file in files:
            if report is not None:
                report.step()
            array = _decode_image(file)
            if first is None:
                first = (array.shape, file)
            elif array.shape != first[0]:
                raise DataError(
                    f"images differ in size: {file} is {array.shape[1]}x{array.shape[0]} px, "
                    f"{first[1]} is {first[0][1]}x{first[0][0]} px; resize them to one size"
                )
            arrays.append(array)
            labels.append(label)
    if report is not None:
        report.done()
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return RawImages(images, torch.tensor(labels, dtype=torch.int64), tuple(p.name for p in class_dirs), str(folder))


def _npz_images(x: np.ndarray, where: str) -> torch.Tensor:
    """``x`` as uint8 N x 3 x H x W: NHWC, NCHW or N x H x W, uint8 or floats in [0, 1]."""
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise DataError(f"{where}: x must be N x H x W x C, N x C x H x W or N x H x W, got shape {x.shape}")
    if x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    if x.shape[1] not in (1, 3):
        raise DataError(f"{where}: x must have 1 or 3 channels, got shape {x.shape}")
    if x.dtype == np.uint8:
        data = x
    elif np.issubdtype(x.dtype, np.floating):
        if not np.isfinite(x).all() or x.min() < 0.0 or x.max() > 1.0:
            raise DataError(f"{where}: float images must lie in [0, 1], got {x.min():g}..{x.max():g}")
        data = np.rint(x * 255.0).astype(np.uint8)  # 8-bit, as decoded PNG/JPEG images are
    else:
        raise DataError(f"{where}: x must be uint8 or float in [0, 1], got {x.dtype}")
    if data.shape[1] == 1:
        data = np.repeat(data, 3, axis=1)  # networks take RGB: grey is replicated
    return torch.from_numpy(np.ascontiguousarray(data))


@READERS.register("npz")
def read_npz(path: Path, split: str) -> RawImages:
    """An ``.npz`` with ``x`` (images) and ``y`` (integer labels); ``x_test``/``y_test`` for the test split."""
    keys = ("x", "y") if split == "train" else ("x_test", "y_test")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [k for k in keys if k not in archive.files]
            if missing:
                raise DataError(
                    f"{path} has no {' and '.join(missing)} array(s) (found: {', '.join(archive.files) or 'none'})"
                )
            x, y = archive[keys[0]], archive[keys[1]]
    except FileNotFoundError:
        raise DataError(f"npz file {path} does not exist") from None
    except (OSError, ValueError) as exc:  # not a zip, or object arrays (pickles are refused)
        raise DataError(f"cannot read {path} as an .npz of arrays: {exc}") from None
    where = f"{path}:{keys[0]}"
    images = _npz_images(x, where)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"{path}: {keys[1]} must be a 1-D integer array of labels, got {y.dtype} {y.shape}")
    if y.shape[0] != images.shape[0]:
        raise DataError(f"{path}: {images.shape[0]} images in {keys[0]} but {y.shape[0]} labels in {keys[1]}")
    if y.shape[0] and y.min() < 0:
        raise DataError(f"{path}: labels must be >= 0, got {y.min()}")
    classes = tuple(str(i) for i in range(int(y.max()) + 1)) if y.shape[0] else ()
    return RawImages(images, torch.from_numpy(y.astype(np.int64)), classes, str(path))


def has_test_split(spec: UserDataSpec) -> bool:
    """Whether the data brings its own test split (``test``/``val`` sub-folder, ``x_test`` in the npz)."""
    if spec.kind == "folder":
        return any((spec.path / name).is_dir() for name in TEST_FOLDERS)
    try:
        with np.load(spec.path, allow_pickle=False) as archive:
            return "x_test" in archive.files
    except (OSError, ValueError):
        return False  # unreadable: reading the train split reports why


# --- loading ------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _read_cached(kind: str, path: str, split: str, stamp: tuple[float, int]) -> RawImages:
    raw = READERS.get(kind)(Path(path), split)
    if raw.images.shape[0] == 0:
        raise DataError(f"{raw.where} holds no images")
    if len(raw.classes) < 2:
        raise DataError(f"{raw.where} has {len(raw.classes)} class(es); a classifier needs at least 2")
    return raw


def _stamp(path: Path) -> tuple[float, int]:
    """Latest modification time and file count/size: changed data is read again (not the cached copy)."""
    if path.is_dir():
        files = [p for p in path.rglob("*") if p.is_file()]
        return (max((p.stat().st_mtime for p in files), default=0.0), len(files))
    try:
        info = path.stat()
    except FileNotFoundError:
        return (0.0, 0)
    return (info.st_mtime, info.st_size)


def data_stats(raw: RawImages, norm: str, name: str) -> ImageStats:
    """The normalisation of ``raw``: its own per-channel mean/std, or a named set."""
    if norm == DATA_NORM:
        pixels = raw.images.to(torch.float64).div_(255.0)
        mean = pixels.mean(dim=(0, 2, 3))
        std = pixels.std(dim=(0, 2, 3)).clamp_min(1e-3)  # a constant channel stays finite
        return ImageStats(name, len(raw.classes), tuple(mean.tolist()), tuple(std.tolist()))  # type: ignore[arg-type]
    mean, std = NAMED_NORMS[norm]
    return ImageStats(name, len(raw.classes), mean, std)


def load_user_data(spec: UserDataSpec, split: str = "train", *, stats: ImageStats | None = None) -> CifarDataset:
    """One split of the user's data as a dataset; ``stats`` (the train split's) normalise a test split."""
    raw = _read_cached(spec.kind, str(spec.path.resolve()), split, _stamp(spec.path))
    if stats is None:
        stats = data_stats(raw, spec.norm, spec.label)
    elif len(raw.classes) > stats.num_classes:
        raise DataError(f"{raw.where}: the {split} split has {len(raw.classes)} classes, the train split {stats.num_classes}")
    return CifarDataset(raw.images, raw.labels, stats, f"{spec.label}:{split}", (raw.where,), raw.classes)


def fingerprint(spec: UserDataSpec, split: str = "train") -> str:
    """SHA-256 of the decoded images, labels and class names (the score cache keys on content, not path)."""
    raw = _read_cached(spec.kind, str(spec.path.resolve()), split, _stamp(spec.path))
    digest = hashlib.sha256()
    digest.update(repr((tuple(raw.images.shape), raw.classes, spec.norm)).encode())
    digest.update(raw.images.numpy().tobytes())
    digest.update(raw.labels.numpy().tobytes())
    return digest.hexdigest()
