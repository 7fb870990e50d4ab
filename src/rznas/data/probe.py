"""Probe batches: the small inputs a zero-cost proxy looks at (real or synthetic)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ConfigError


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
