"""How rznas scores one architecture: the one seeding scheme of search, `rznas score` and benchmarks.

A score depends only on the architecture, the probe batch, the proxy and a *score seed*:
the network's weights are drawn under ``arch_seed(score_seed, arch)`` (a forked torch RNG,
so the caller's global RNG is untouched) and the proxies are evaluated with that same seed.
The search, ``rznas score`` and ``rznas bench correlation`` all go through these
functions, so a committed correlation score is exactly what a search records for the
same cell, probe and score seed, and the persistent score cache can be shared across
search seeds and proposers.
"""
from __future__ import annotations

import hashlib
import random
import time
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import nn

from .arch import Architecture
from .data.probe import ProbeBatch
from .errors import ConfigError
from .proxies import Proxy, ProxyResult, evaluate
from .spaces import SearchSpace


def arch_seed(seed: int, arch: Architecture) -> int:
    """Per-architecture seed (32 bits) from the score seed and the arch id (independent of order)."""
    digest = hashlib.sha256(f"{seed}:{arch.id}".encode()).hexdigest()
    return int(digest[:8], 16)


def sample_architectures(space: SearchSpace, n: int, seed: int) -> list[Architecture]:
    """``n`` distinct architectures; a smaller ``n`` with the same seed gives a prefix
    (the correlation benchmark's sample and an ensemble's reference sample)."""
    if n < 1:
        raise ConfigError(f"the number of samples must be positive, got {n}")
    rng = random.Random(seed)
    enumerate_all = getattr(space, "all_architectures", None)
    if enumerate_all is not None:
        population = list(enumerate_all())
        if n > len(population):
            raise ConfigError(f"space {space.name} has only {len(population)} architectures; {n} were requested")
        rng.shuffle(population)
        return population[:n]
    seen: dict[Architecture, None] = {}
    attempts = 0
    while len(seen) < n:
        attempts += 1
        if attempts > 100 * n + 1000:
            raise ConfigError(f"could not draw {n} distinct architectures from space {space.name}")
        seen.setdefault(space.sample(rng), None)
    return list(seen)


def build_seeded(space: SearchSpace, arch: Architecture, *, seed: int, num_classes: int) -> nn.Module:
    """Build ``arch`` with weights drawn under :func:`arch_seed` (the global torch RNG is left alone)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(arch_seed(seed, arch))
        return space.build(arch, num_classes=num_classes)


def chunks_needed(proxies: Iterable[Proxy], minimum: int = 2) -> int:
    """Probe batches the proxies ask for (ZiCo uses two), at least ``minimum``."""
    highest = max((index for proxy in proxies for index in proxy.requirements), default=0)
    return max(minimum, highest + 1)


@dataclass(frozen=True)
class ArchScores:
    """Every requested proxy's outcome on one architecture, plus timing."""

    results: dict[str, ProxyResult]
    build_seconds: float
    seconds: float  # build + all proxies


def score_model(model: nn.Module, arch: Architecture, probe: ProbeBatch, proxies: Sequence[Proxy], *, seed: int) -> dict[str, ProxyResult]:
    """Score a network built by :func:`build_seeded` (same ``seed``) with all ``proxies`` together."""
    return evaluate(model, probe, proxies, seed=arch_seed(seed, arch))


def score_architecture(
    space: SearchSpace,
    arch: Architecture,
    probe: ProbeBatch,
    proxies: Sequence[Proxy],
    *,
    seed: int,
    num_classes: int,
) -> ArchScores:
    """Build ``arch`` once under the score seed and score all ``proxies`` together (shared passes)."""
    start = time.perf_counter()
    model = build_seeded(space, arch, seed=seed, num_classes=num_classes)
    built = time.perf_counter()
    results = score_model(model, arch, probe, proxies, seed=seed)
    return ArchScores(results, built - start, time.perf_counter() - start)


__all__ = [
    "ArchScores", "arch_seed", "build_seeded", "chunks_needed", "sample_architectures", "score_architecture", "score_model",
]
