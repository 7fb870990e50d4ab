"""Probe batches: the small inputs a zero-cost proxy looks at (real or synthetic)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..registry import Registry
from .paths import PathLike

if TYPE_CHECKING:  # pragma: no cover
    from .cifar import CifarDataset


@dataclass(frozen=True, eq=False)
class ProbeBatch:
    """``chunks`` equally sized (inputs, targets) mini-batches; chunk 0 is the default batch.

    Proxies that need several batches (ZiCo) use further chunks; every other proxy uses
    chunk 0, so all proxies scoring one architecture see the same images.
    """

    inputs: torch.Tensor  # (chunks * batch_size, C, H, W), float32
    targets: torch.Tensor  # (chunks * batch_size,), int64
    num_classes: int
    batch_size: int
    source: str  # e.g. "cifar10:train" or "gaussian"

    def __post_init__(self) -> None:
        if self.inputs.ndim != 4:
            raise ConfigError(f"probe inputs must be NCHW, got shape {tuple(self.inputs.shape)}")
        if self.batch_size < 1 or self.inputs.shape[0] % self.batch_size:
            raise ConfigError(
                f"probe of {self.inputs.shape[0]} samples is not a whole number of batches of {self.batch_size}"
            )
        if self.targets.shape[0] != self.inputs.shape[0]:
            raise ConfigError("probe inputs and targets differ in length")

    @property
    def num_chunks(self) -> int:
        return self.inputs.shape[0] // self.batch_size

    @property
    def resolution(self) -> int:
        return int(self.inputs.shape[-1])

    def chunk(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``index``-th mini-batch as (inputs, targets)."""
        if not 0 <= index < self.num_chunks:
            raise ConfigError(f"probe has {self.num_chunks} batches; batch {index} was asked for")
        start = index * self.batch_size
        stop = start + self.batch_size
        return self.inputs[start:stop], self.targets[start:stop]

    def to(self, device: torch.device | str) -> "ProbeBatch":
        return ProbeBatch(self.inputs.to(device), self.targets.to(device), self.num_classes, self.batch_size, self.source)


def gaussian_probe(
    *, batch_size: int = 64, chunks: int = 2, resolution: int = 32, num_classes: int = 10, seed: int = 0
) -> ProbeBatch:
    """Synthetic N(0, 1) images with uniform random labels, for data-free scoring."""
    generator = torch.Generator().manual_seed(seed)
    n = batch_size * chunks
    inputs = torch.randn(n, 3, resolution, resolution, generator=generator)
    targets = torch.randint(0, num_classes, (n,), generator=generator)
    return ProbeBatch(inputs, targets, num_classes, batch_size, "gaussian")


# --- probe factories: one registered builder per probe data source -------------------

ProbeFactory = Callable[..., ProbeBatch]
PROBE_SOURCES: Registry[ProbeFactory] = Registry("probe data")
#: sources whose spec carries a location after the colon ("folder:PATH", "npz:PATH")
WITH_ARGUMENT = ("folder", "npz")


def parse_data_spec(spec: str) -> tuple[str, str | None]:
    """``"cifar10"`` -> ("cifar10", None); ``"folder:PATH"`` -> ("folder", "PATH"); checks the kind.

    Raises UnknownName for an unknown kind and ConfigError for a missing or unexpected argument.
    """
    kind, sep, argument = str(spec).partition(":")
    PROBE_SOURCES.get(kind)  # UnknownName with "did you mean"
    if kind in WITH_ARGUMENT:
        if not sep or not argument:
            raise ConfigError(f"data {kind!r} needs a path: {kind}:PATH")
        return kind, argument
    if sep:
        raise ConfigError(f"data {kind!r} takes no argument, got {spec!r}")
    return kind, None


def make_probe(
    dataset: str,
    *,
    data_dir: PathLike | None = None,
    batch_size: int = 64,
    chunks: int = 2,
    seed: int = 0,
    resolution: int | None = None,
    num_classes: int | None = None,
) -> ProbeBatch:
    """A seeded probe batch from ``dataset``: "gaussian", "cifar10", "cifar100", or the user's
    images "folder:PATH" / "npz:PATH" (see :mod:`rznas.data.user`).

    ``resolution`` resizes real images (average pooling, e.g. 32 -> 16 for an
    ImageNet16-120 network) and ``num_classes`` is the network's class count; the
    probe's ``source`` string records both the data and any resizing.
    """
    if batch_size < 1 or chunks < 1:
        raise ConfigError(f"probe batch size and chunk count must be positive, got {batch_size} and {chunks}")
    if resolution is not None and resolution < 1:
        raise ConfigError(f"probe resolution must be positive, got {resolution}")
    kind, argument = parse_data_spec(dataset)
    factory = PROBE_SOURCES.get(kind)
    options = {"argument": argument} if argument is not None else {}
    return factory(
        data_dir=data_dir,
        batch_size=batch_size,
        chunks=chunks,
        seed=seed,
        resolution=resolution,
        num_classes=num_classes,
        **options,
    )


def data_fingerprint(dataset: str) -> str | None:
    """A content digest of the user's data ("folder:"/"npz:"), None for the built-in sources
    (whose identity is their name): the score cache keys on what the images are, not where."""
    kind, argument = parse_data_spec(dataset)
    if argument is None:
        return None
    from .user import UserDataSpec, fingerprint

    return fingerprint(UserDataSpec.parse(kind, argument))


@PROBE_SOURCES.register("gaussian")
def _gaussian_source(
    *, data_dir: PathLike | None, batch_size: int, chunks: int, seed: int, resolution: int | None, num_classes: int | None
) -> ProbeBatch:
    """Synthetic images: needs no data folder (``data_dir`` is ignored)."""
    return gaussian_probe(
        batch_size=batch_size, chunks=chunks, resolution=resolution or 32, num_classes=num_classes or 10, seed=seed
    )


def _sample_probe(
    data: "CifarDataset", name: str, *, batch_size: int, chunks: int, seed: int, resolution: int | None,
    num_classes: int | None,
) -> ProbeBatch:
    """A seeded random sample of ``data`` (a CIFAR or user dataset), resized to ``resolution``."""
    n = batch_size * chunks
    if n > len(data):
        raise ConfigError(f"a probe of {chunks} x {batch_size} images needs {n} images; {name} has {len(data)}")
    classes = num_classes or data.num_classes
    if classes < data.num_classes:
        raise ConfigError(f"{name} has {data.num_classes} classes; a network with {classes} outputs cannot score it")
    generator = torch.Generator().manual_seed(seed)
    indices = torch.randperm(len(data), generator=generator)[:n]
    inputs, targets = data.tensors(indices)
    source = data.source
    if resolution is not None and resolution != inputs.shape[-1]:
        inputs = F.adaptive_avg_pool2d(inputs, resolution)
        source = f"{source}@{resolution}px"
    return ProbeBatch(inputs.contiguous(), targets, classes, batch_size, source)


def _cifar_source(name: str) -> ProbeFactory:
    def factory(
        *, data_dir: PathLike | None, batch_size: int, chunks: int, seed: int, resolution: int | None, num_classes: int | None
    ) -> ProbeBatch:
        from .cifar import load_cifar

        data = load_cifar(name, data_dir=data_dir, split="train")
        return _sample_probe(
            data, name, batch_size=batch_size, chunks=chunks, seed=seed, resolution=resolution, num_classes=num_classes
        )

    factory.__doc__ = f"A seeded random sample of {name} training images with their labels."
    return factory


for _name in ("cifar10", "cifar100"):
    PROBE_SOURCES.register(_name)(_cifar_source(_name))


def _user_source(kind: str) -> ProbeFactory:
    def factory(
        *, argument: str, data_dir: PathLike | None, batch_size: int, chunks: int, seed: int, resolution: int | None,
        num_classes: int | None,
    ) -> ProbeBatch:
        from .user import UserDataSpec, load_user_data

        spec = UserDataSpec.parse(kind, argument)
        data = load_user_data(spec, "train")
        return _sample_probe(
            data, spec.label, batch_size=batch_size, chunks=chunks, seed=seed, resolution=resolution,
            num_classes=num_classes,
        )

    what = "class sub-folders of PNG/JPEG images" if kind == "folder" else "an .npz with x/y arrays"
    factory.__doc__ = f"A seeded random sample of the user's images ({kind}:PATH, {what}); data_dir is not used."
    return factory


for _name in WITH_ARGUMENT:
    PROBE_SOURCES.register(_name)(_user_source(_name))
