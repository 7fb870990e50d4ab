"""``tinychain``: a chain of DEPTH operations (3x3 conv, 1x1 conv or identity) at one width.

Small enough to read in a minute; it implements the whole rznas SearchSpace interface (sample,
mutate, validate, build, describe, encode, decode) so that searches, scoring, training and the
LLM prompt work with it unchanged.
"""
from __future__ import annotations

import random
import re

from torch import nn

from rznas.arch import Architecture
from rznas.errors import InvalidArchitecture
from rznas.spaces import SearchSpace, SpaceDescription
from rznas.spaces.base import source_of

OPS = ("conv3x3", "conv1x1", "skip")
SEPARATOR = ">"


def make_op(name: str, channels: int) -> nn.Module:
    """One layer of the chain: conv-BN-ReLU with a 3x3 or 1x1 kernel, or the identity."""
    if name == "skip":
        return nn.Identity()
    kernel = 3 if name == "conv3x3" else 1
    return nn.Sequential(
        nn.Conv2d(channels, channels, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(channels),
        nn.ReLU(),
    )


class TinyChainNet(nn.Module):
    """Stem conv -> the chain of operations -> global average pool -> linear classifier."""

    def __init__(self, ops: tuple[str, ...], channels: int, num_classes: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels), nn.ReLU())
        self.chain = nn.Sequential(*(make_op(op, channels) for op in ops))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.classifier(self.pool(self.chain(self.stem(x))).flatten(1))


class TinyChainSpace(SearchSpace):
    """A chain of 3x3 conv / 1x1 conv / identity layers (example plug-in space)."""

    name = "tinychain"
    native_resolution = 32

    def __init__(self, depth: int = 4, channels: int = 8):
        if depth < 1 or channels < 1:
            raise ValueError(f"depth and channels must be positive, got {depth} and {channels}")
        self.depth = depth
        self.channels = channels
        ops = "|".join(OPS)
        #: every valid encoding matches it (the LLM's replies can be constrained to it)
        self.encoding_pattern = f"({ops})({SEPARATOR}({ops})){{{depth - 1}}}"

    def sample(self, rng: random.Random) -> Architecture:
        return Architecture(self.name, tuple(rng.choice(OPS) for _ in range(self.depth)))

    def mutate(self, arch: Architecture, rng: random.Random) -> Architecture:
        self.validate(arch)
        ops = list(arch.genotype)
        layer = rng.randrange(self.depth)
        ops[layer] = rng.choice([op for op in OPS if op != ops[layer]])
        return Architecture(self.name, tuple(ops))

    def validate(self, arch: Architecture) -> None:
        self.check_space(arch)
        ops = arch.genotype
        if not isinstance(ops, tuple) or len(ops) != self.depth:
            raise InvalidArchitecture(f"a tinychain architecture has {self.depth} operations, got {ops!r}")
        unknown = [op for op in ops if op not in OPS]
        if unknown:
            raise InvalidArchitecture(f"unknown tinychain operation(s) {unknown}; use {', '.join(OPS)}")

    def build(self, arch: Architecture, *, num_classes: int = 10) -> nn.Module:
        self.validate(arch)
        return TinyChainNet(arch.genotype, self.channels, num_classes)

    def encode(self, arch: Architecture) -> str:
        self.validate(arch)
        return SEPARATOR.join(arch.genotype)

    def decode(self, text: str) -> Architecture:
        text = text.strip()
        if not re.fullmatch(self.encoding_pattern, text):
            raise InvalidArchitecture(
                f"malformed tinychain arch {text[:80]!r}: expected {self.depth} of {', '.join(OPS)} joined by '{SEPARATOR}'"
            )
        return Architecture(self.name, tuple(text.split(SEPARATOR)))

    def describe(self) -> SpaceDescription:
        return SpaceDescription(
            name=self.name,
            text=(
                f"A plain chain of {self.depth} layers at {self.channels} channels after a 3x3 stem. Each layer is "
                "conv3x3 (a 3x3 conv-BN-ReLU: spatial context), conv1x1 (a 1x1 conv-BN-ReLU: channel mixing) "
                "or skip (the identity: fewer layers)."
            ),
            code=source_of(make_op, TinyChainNet),
            encoding=f"The {self.depth} operations in order, joined by '{SEPARATOR}', e.g. conv3x3>skip>conv1x1>conv3x3.",
            mutation_rules="Change exactly one layer's operation to another of conv3x3, conv1x1, skip.",
            example=SEPARATOR.join(OPS[i % len(OPS)] for i in range(self.depth)),
        )
