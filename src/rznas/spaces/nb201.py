"""NAS-Bench-201 cell space: 4 nodes, 6 edges, 5 operations (15,625 cells).

The network is built exactly as the benchmark defines it (Dong & Yang, ICLR 2020):
3x3 conv stem (C=16) + BN, three stages of N=5 cells at 16/32/64 channels joined by
residual reduction blocks, BN-ReLU, global average pooling and a linear classifier.
"""
from __future__ import annotations

import itertools
import random
import re

import torch
from torch import nn

from ..arch import Architecture
from ..errors import InvalidArchitecture
from .base import SPACES, SearchSpace, SpaceDescription, source_of

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
# Edge order of the arch string: node1<-0 | node2<-0, node2<-1 | node3<-0, node3<-1, node3<-2
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
NUM_EDGES = len(EDGES)


class ReLUConvBN(nn.Module):
    """ReLU -> Conv2d (no bias) -> BatchNorm: the NB201 convolution operation."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Zero(nn.Module):
    """The 'none' operation: outputs zeros (the edge is absent)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


class AvgPool3x3(nn.Module):
    """3x3 average pooling, stride 1, padding not counted."""

    def __init__(self) -> None:
        super().__init__()
        self.op = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


def make_op(name: str, channels: int) -> nn.Module:
    """Build one cell operation (all operations keep shape inside a cell)."""
    factories = {
        "none": Zero,
        "skip_connect": nn.Identity,
        "nor_conv_1x1": lambda: ReLUConvBN(channels, channels, 1, 1, 0),
        "nor_conv_3x3": lambda: ReLUConvBN(channels, channels, 3, 1, 1),
        "avg_pool_3x3": AvgPool3x3,
    }
    return factories[name]()


class Cell(nn.Module):
    """A NB201 cell: node j = sum over i<j of op(i->j)(node i); output = node 3."""

    def __init__(self, ops: tuple[str, ...], channels: int):
        super().__init__()
        self.edges = EDGES
        self.ops = nn.ModuleList(make_op(name, channels) for name in ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for target in range(1, 4):
            nodes.append(
                sum(op(nodes[src]) for op, (dst, src) in zip(self.ops, self.edges) if dst == target)
            )
        return nodes[3]


class ResidualReduction(nn.Module):
    """NB201 reduction block: two ReLUConvBN 3x3 (first strided) + avgpool/1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(c_in, c_out, kernel_size=1, stride=1, padding=0, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class NB201Network(nn.Module):
    """The NAS-Bench-201 macro skeleton around one repeated cell."""

    def __init__(self, ops: tuple[str, ...], num_classes: int = 10, channels: int = 16, cells_per_stage: int = 5):
        super().__init__()
        self.genotype = tuple(ops)
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        layers: list[nn.Module] = []
        c = channels
        for stage in range(3):
            if stage > 0:
                layers.append(ResidualReduction(c, c * 2))
                c *= 2
            layers.extend(Cell(ops, c) for _ in range(cells_per_stage))
        self.cells = nn.Sequential(*layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(inplace=True))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.lastact(self.cells(self.stem(x)))
        return self.classifier(torch.flatten(self.global_pooling(features), 1))

    def thin_network(self) -> "NB201Network":
        """A fresh thin twin (C=1, N=1, same cell) for TE-NAS's linear-region count."""
        return NB201Network(self.genotype, self.classifier.out_features, channels=1, cells_per_stage=1)


_ARCH_RE = re.compile(r"^\|([^|]+)\|\+\|([^|]+)\|([^|]+)\|\+\|([^|]+)\|([^|]+)\|([^|]+)\|$")

TEXT = """\
NAS-Bench-201 cell space. A network is a fixed skeleton (3x3 conv stem with 16
channels; three stages of 5 identical cells at 16, 32 and 64 channels joined by
residual reduction blocks; BN-ReLU; global average pooling; linear classifier).
Only the cell is searched: a directed acyclic graph of 4 nodes (node 0 is the
cell input, node 3 its output) and 6 edges i->j (i<j). Each node is the sum of
its incoming edges. Every edge carries one of 5 operations:
- none: no connection (outputs zeros); removes the edge.
- skip_connect: identity; passes features unchanged, helps gradient flow.
- nor_conv_1x1: ReLU -> 1x1 conv -> BatchNorm; cheap channel mixing.
- nor_conv_3x3: ReLU -> 3x3 conv -> BatchNorm; spatial feature extraction, most
  parameters and FLOPs.
- avg_pool_3x3: 3x3 average pooling, stride 1; smoothing, no parameters.
All operations keep the channel count and resolution inside a cell."""

ENCODING = """\
An architecture is the NAS-Bench-201 arch string listing each node's incoming
edges as op~source: |op~0|+|op~0|op~1|+|op~0|op~1|op~2|
(node 1 <- 0; node 2 <- 0, 1; node 3 <- 0, 1, 2). Exactly 6 operations, each one
of: none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3. The source
indices are fixed by position and must be written exactly as shown."""

MUTATION_RULES = """\
Change the operation on one or more edges into another operation from the list.
Keep the 6 positions and their source indices; do not add or remove edges."""


@SPACES.register("nb201")
class NB201Space(SearchSpace):
    """The NAS-Bench-201 topology search space."""

    name = "nb201"
    ops = OPS

    def __init__(self, channels: int = 16, cells_per_stage: int = 5):
        self.channels = channels
        self.cells_per_stage = cells_per_stage

    def make(self, ops: tuple[str, ...] | list[str]) -> Architecture:
        """Architecture from six operation names in edge order."""
        arch = Architecture(self.name, tuple(ops))
        self.validate(arch)
        return arch

    def sample(self, rng: random.Random) -> Architecture:
        return Architecture(self.name, tuple(rng.choice(OPS) for _ in range(NUM_EDGES)))

    def mutate(self, arch: Architecture, rng: random.Random) -> Architecture:
        self.validate(arch)
        ops = list(arch.genotype)
        edge = rng.randrange(NUM_EDGES)
        ops[edge] = rng.choice([op for op in OPS if op != ops[edge]])
        return Architecture(self.name, tuple(ops))

    def validate(self, arch: Architecture) -> None:
        self.check_space(arch)
        genotype = arch.genotype
        if not isinstance(genotype, tuple) or len(genotype) != NUM_EDGES:
            count = len(genotype) if isinstance(genotype, tuple) else "no"
            raise InvalidArchitecture(f"a NB201 cell has exactly {NUM_EDGES} edges, got {count}")
        for position, op in enumerate(genotype):
            if op not in OPS:
                raise InvalidArchitecture(
                    f"edge {position} has operation {op!r}, which is not in the NB201 space "
                    f"(allowed: {', '.join(OPS)})"
                )

    def build(self, arch: Architecture, *, num_classes: int = 10) -> nn.Module:
        self.validate(arch)
        return NB201Network(arch.genotype, num_classes, self.channels, self.cells_per_stage)

    def encode(self, arch: Architecture) -> str:
        self.validate(arch)
        o = arch.genotype
        return f"|{o[0]}~0|+|{o[1]}~0|{o[2]}~1|+|{o[3]}~0|{o[4]}~1|{o[5]}~2|"

    def decode(self, text: str) -> Architecture:
        if not isinstance(text, str):
            raise InvalidArchitecture(f"a NB201 arch string is text, got {type(text).__name__}")
        match = _ARCH_RE.match(text.strip())
        if match is None:
            raise InvalidArchitecture(
                f"malformed NB201 arch string {text[:200]!r}; expected |op~0|+|op~0|op~1|+|op~0|op~1|op~2|"
            )
        ops = []
        for token, (_, src) in zip(match.groups(), EDGES):
            op, sep, index = token.partition("~")
            if sep != "~" or index != str(src):
                raise InvalidArchitecture(f"edge {token!r} must be written as op~{src} in this position")
            ops.append(op)
        return self.make(ops)

    def count_params(self, arch: Architecture, *, num_classes: int = 10) -> int:
        """Parameters of the built network, computed analytically (no module is built)."""
        self.validate(arch)
        conv_per_cell = {"nor_conv_3x3": 9, "nor_conv_1x1": 1}
        c = self.channels
        total = 3 * c * 9 + 2 * c  # stem conv + BN
        for stage in range(3):
            if stage > 0:  # residual reduction c -> 2c: conv_a, conv_b (+BNs), 1x1 shortcut
                total += c * 2 * c * 9 + 2 * (2 * c) + (2 * c) * (2 * c) * 9 + 2 * (2 * c) + c * 2 * c
                c *= 2
            per_cell = sum(conv_per_cell[op] * c * c + 2 * c for op in arch.genotype if op in conv_per_cell)
            total += self.cells_per_stage * per_cell
        return total + 2 * c + c * num_classes + num_classes  # last BN + classifier

    def count_flops(self, arch: Architecture, resolution: int = 32, *, num_classes: int = 10) -> int:
        """Multiply-adds of conv and linear layers for one image (torch's counter / 2)."""
        self.validate(arch)
        conv_per_cell = {"nor_conv_3x3": 9, "nor_conv_1x1": 1}
        c, size = self.channels, resolution
        total = 3 * c * 9 * size * size  # stem
        for stage in range(3):
            if stage > 0:
                size = (size - 1) // 2 + 1  # 3x3 conv, stride 2, padding 1
                total += (c * 2 * c * 9 + (2 * c) * (2 * c) * 9 + c * 2 * c) * size * size
                c *= 2
            per_cell = sum(conv_per_cell[op] * c * c for op in arch.genotype if op in conv_per_cell)
            total += self.cells_per_stage * per_cell * size * size
        return total + c * num_classes

    def all_architectures(self):
        """Iterate over all 15,625 cells in a fixed order."""
        for ops in itertools.product(OPS, repeat=NUM_EDGES):
            yield Architecture(self.name, ops)

    def describe(self) -> SpaceDescription:
        return SpaceDescription(
            name=self.name,
            text=TEXT,
            code=source_of(ReLUConvBN, Zero, AvgPool3x3, make_op, Cell, ResidualReduction, NB201Network),
            encoding=ENCODING,
            mutation_rules=MUTATION_RULES,
            example="|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
        )
