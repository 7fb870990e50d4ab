"""DARTS cell space (Liu et al., ICLR 2019): normal + reduction cell, 8 operations.

A cell has two inputs (the outputs of the two previous cells, states 0 and 1) and 4
intermediate nodes (states 2..5); each node sums two operations applied to two
distinct earlier states, and the cell output concatenates the 4 intermediate nodes.
The network is DARTS's CIFAR evaluation network (``NetworkCIFAR``): a 3x3 conv stem
with 3C channels, ``layers`` cells with reduction cells at 1/3 and 2/3 of the depth
(channels doubled there), an optional auxiliary head after the 2/3 cell, global
average pooling and a linear classifier. Operations follow the DARTS reference code
(separable convolutions applied twice, BatchNorm with affine parameters).

'none' is one of the 8 DARTS operations, but DARTS drops it when it derives the final
genotype, so by default this space neither samples nor accepts it
(``DartsSpace(allow_none=True)`` permits it everywhere).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from ..arch import Architecture
from ..errors import ConfigError, InvalidArchitecture
from .base import SPACES, SearchSpace, SpaceDescription, source_of

PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
STEPS = 4  # intermediate nodes per cell
EDGES_PER_CELL = 2 * STEPS
CONCAT: tuple[int, ...] = tuple(range(2, 2 + STEPS))  # every intermediate node is concatenated
CELL_KINDS: tuple[str, ...] = ("normal", "reduce")


# --------------------------------------------------------------------------- operations


class Zero(nn.Module):
    """The 'none' operation: zeros of the output shape (an absent edge)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class ReLUConvBN(nn.Module):
    """ReLU -> Conv2d (no bias) -> BatchNorm: the cell-input preprocessing."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class FactorizedReduce(nn.Module):
    """Halve the resolution with two offset stride-2 1x1 convolutions, concatenated."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, padding=0, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out - c_out // 2, 1, stride=2, padding=0, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(x[:, :, 1:, 1:])], dim=1))


class SepConv(nn.Module):
    """Separable convolution applied twice: (ReLU, depthwise kxk, pointwise 1x1, BN) x 2."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride=stride, padding=padding, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_in, 1, padding=0, bias=False),
            nn.BatchNorm2d(c_in, affine=True),
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride=1, padding=padding, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, padding=0, bias=False),
            nn.BatchNorm2d(c_out, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class DilConv(nn.Module):
    """Dilated separable convolution: ReLU, dilated depthwise kxk, pointwise 1x1, BN."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, dilation: int):
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(
                c_in, c_in, kernel, stride=stride, padding=padding, dilation=dilation, groups=c_in, bias=False
            ),
            nn.Conv2d(c_in, c_out, 1, padding=0, bias=False),
            nn.BatchNorm2d(c_out, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


def make_op(name: str, channels: int, stride: int) -> nn.Module:
    """Build one DARTS operation; every operation maps C channels to C channels."""
    factories = {
        "none": lambda: Zero(stride),
        "max_pool_3x3": lambda: nn.MaxPool2d(3, stride=stride, padding=1),
        "avg_pool_3x3": lambda: nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False),
        "skip_connect": lambda: nn.Identity() if stride == 1 else FactorizedReduce(channels, channels),
        "sep_conv_3x3": lambda: SepConv(channels, channels, 3, stride, 1),
        "sep_conv_5x5": lambda: SepConv(channels, channels, 5, stride, 2),
        "dil_conv_3x3": lambda: DilConv(channels, channels, 3, stride, 2, 2),
        "dil_conv_5x5": lambda: DilConv(channels, channels, 5, stride, 4, 2),
    }
    return factories[name]()


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Drop whole samples of a path with probability ``drop_prob`` (scaled to keep the mean)."""
    keep_prob = 1.0 - drop_prob
    mask = torch.bernoulli(torch.full((x.size(0), 1, 1, 1), keep_prob, device=x.device, dtype=x.dtype))
    return x / keep_prob * mask


# --------------------------------------------------------------------------- network


class Cell(nn.Module):
    """One DARTS cell: 4 nodes, each the sum of two operations on earlier states."""

    def __init__(
        self,
        edges: tuple[tuple[str, int], ...],
        c_prev_prev: int,
        c_prev: int,
        channels: int,
        reduction: bool,
        reduction_prev: bool,
    ):
        super().__init__()
        self.reduction = reduction
        if reduction_prev:
            self.preprocess0: nn.Module = FactorizedReduce(c_prev_prev, channels)
        else:
            self.preprocess0 = ReLUConvBN(c_prev_prev, channels, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(c_prev, channels, 1, 1, 0)
        self.indices = [index for _, index in edges]
        self.ops = nn.ModuleList(
            make_op(name, channels, 2 if reduction and index < 2 else 1) for name, index in edges
        )
        self.steps = len(edges) // 2
        self.multiplier = self.steps

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for step in range(self.steps):
            total = None
            for k in (2 * step, 2 * step + 1):
                op = self.ops[k]
                h = op(states[self.indices[k]])
                if self.training and drop_prob > 0.0 and not isinstance(op, nn.Identity):
                    h = drop_path(h, drop_prob)
                total = h if total is None else total + h
            states.append(total)
        return torch.cat(states[2:], dim=1)


class AuxiliaryHeadCIFAR(nn.Module):
    """DARTS auxiliary classifier on the 8x8 feature map after the 2/3-depth cell."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.features = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False),  # 8x8 -> 2x2
            nn.Conv2d(channels, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=False),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class NetworkCIFAR(nn.Module):
    """DARTS CIFAR evaluation network; ``model(x)`` returns logits only.

    ``forward_with_aux(x)`` returns ``(logits, aux_logits)``; ``aux_logits`` is None
    unless the network has an auxiliary head and is in training mode.
    """

    def __init__(
        self,
        genotype: tuple[tuple[tuple[str, int], ...], tuple[tuple[str, int], ...]],
        num_classes: int = 10,
        channels: int = 36,
        layers: int = 20,
        auxiliary: bool = False,
        drop_path_prob: float = 0.0,
        stem_multiplier: int = 3,
    ):
        super().__init__()
        normal, reduce = genotype
        self.layers = layers
        self.has_auxiliary = auxiliary
        self.drop_path_prob = drop_path_prob
        self.aux_position = 2 * layers // 3
        c_curr = stem_multiplier * channels
        self.stem = nn.Sequential(nn.Conv2d(3, c_curr, 3, padding=1, bias=False), nn.BatchNorm2d(c_curr))
        c_prev_prev, c_prev, c_curr = c_curr, c_curr, channels
        self.cells = nn.ModuleList()
        reduction_prev = False
        c_aux = c_prev
        for i in range(layers):
            reduction = i in (layers // 3, 2 * layers // 3)
            if reduction:
                c_curr *= 2
            cell = Cell(reduce if reduction else normal, c_prev_prev, c_prev, c_curr, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, cell.multiplier * c_curr
            if i == self.aux_position:
                c_aux = c_prev
        self.auxiliary_head = AuxiliaryHeadCIFAR(c_aux, num_classes) if auxiliary else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        aux_logits = None
        s0 = s1 = self.stem(x)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.aux_position and self.auxiliary_head is not None and self.training:
                aux_logits = self.auxiliary_head(s1)
        return s1, aux_logits

    def forward_pre_gap(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map of the last cell, before global average pooling."""
        return self._features(x)[0]

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(logits, auxiliary logits or None) for training with the auxiliary loss."""
        features, aux_logits = self._features(x)
        return self.classifier(torch.flatten(self.global_pooling(features), 1)), aux_logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_aux(x)[0]


# --------------------------------------------------------------------------- genotype notation

DARTS_V1 = (
    "Genotype(normal=[('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 0), ('sep_conv_3x3', 1), "
    "('skip_connect', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('skip_connect', 2)], "
    "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
    "('max_pool_3x3', 0), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), "
    "('avg_pool_3x3', 0)], reduce_concat=[2, 3, 4, 5])"
)
DARTS_V2 = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
    "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
    "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), "
    "('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
)
#: published genotypes that ``decode`` also accepts by name
KNOWN_GENOTYPES: dict[str, str] = {"DARTS_V1": DARTS_V1, "DARTS_V2": DARTS_V2, "DARTS": DARTS_V2}


@dataclass(frozen=True)
class _Token:
    kind: str  # name, int, str, punct, end
    value: str
    pos: int


_PUNCT = "()[],="
#: longest integer token accepted (inputs and concat indices are single digits)
_MAX_INT_CHARS = 9
_DIGITS = frozenset("0123456789")  # str.isdigit() also admits '²', which int() rejects


def _tokenize(text: str) -> Iterator[_Token]:
    """Split genotype text into names, integers, quoted strings and punctuation, lazily: the
    parser stops at the first error, so a long malformed reply costs only what precedes it."""
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in _PUNCT:
            yield _Token("punct", ch, i)
            i += 1
        elif ch in "'\"":
            end = text.find(ch, i + 1)
            if end < 0:
                raise InvalidArchitecture(f"unterminated string starting at column {i + 1}")
            yield _Token("str", text[i + 1 : end], i)
            i = end + 1
        elif ch in _DIGITS or (ch == "-" and i + 1 < n and text[i + 1] in _DIGITS):
            j = i + 1
            while j < n and text[j] in _DIGITS:
                j += 1
            if j - i > _MAX_INT_CHARS:  # also keeps int() below Python's 4,300-digit conversion limit
                raise InvalidArchitecture(f"number of {j - i} characters at column {i + 1} of the genotype")
            yield _Token("int", text[i:j], i)
            i = j
        elif ch.isalpha() or ch == "_":
            j = i + 1
            while j < n and (text[j].isalnum() or text[j] == "_"):
                j += 1
            yield _Token("name", text[i:j], i)
            i = j
        else:
            raise InvalidArchitecture(f"unexpected character {ch!r} at column {i + 1} of the genotype")
    yield _Token("end", "", n)


class _GenotypeParser:
    """Recursive-descent parser of DARTS's ``Genotype(...)`` text; evaluates nothing."""

    FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")

    def __init__(self, text: str):
        self._tokens = _tokenize(text)
        self._current = next(self._tokens)

    def _peek(self) -> _Token:
        return self._current

    def _advance(self) -> None:
        if self._current.kind != "end":
            self._current = next(self._tokens)

    def _fail(self, expected: str) -> InvalidArchitecture:
        tok = self._peek()
        found = "end of text" if tok.kind == "end" else repr(tok.value)
        return InvalidArchitecture(f"malformed DARTS genotype: expected {expected} at column {tok.pos + 1}, found {found}")

    def _expect(self, kind: str, value: str | None = None, what: str | None = None) -> _Token:
        tok = self._peek()
        if tok.kind != kind or (value is not None and tok.value != value):
            raise self._fail(what or (repr(value) if value else kind))
        self._advance()
        return tok

    def _accept(self, value: str) -> bool:
        tok = self._peek()
        if tok.kind == "punct" and tok.value == value:
            self._advance()
            return True
        return False

    def parse(self) -> dict[str, list]:
        tok = self._peek()
        if tok.kind == "name" and tok.value == "Genotype":
            self._advance()
        self._expect("punct", "(", "'Genotype(' or '('")
        fields: dict[str, list] = {}
        while not self._accept(")"):
            name = self._expect("name", what="a field name (normal, normal_concat, reduce, reduce_concat)").value
            if name not in self.FIELDS:
                raise InvalidArchitecture(f"unknown genotype field {name!r} (expected one of {', '.join(self.FIELDS)})")
            if name in fields:
                raise InvalidArchitecture(f"genotype field {name!r} is given twice")
            self._expect("punct", "=", "'='")
            fields[name] = self._edges() if name in ("normal", "reduce") else self._concat()
            if not self._accept(","):
                self._expect("punct", ")", "',' or ')'")
                break
        self._expect("end", what="end of text")
        missing = [f for f in self.FIELDS if f not in fields]
        if missing:
            raise InvalidArchitecture(f"genotype lacks field(s) {', '.join(missing)}")
        return fields

    def _int(self) -> int:
        return int(self._expect("int", what="an integer").value)

    def _edges(self) -> list[tuple[str, int]]:
        self._expect("punct", "[", "'[' opening the list of (operation, input) pairs")
        edges: list[tuple[str, int]] = []
        while not self._accept("]"):
            self._expect("punct", "(", "'(' opening an (operation, input) pair")
            op = self._expect("str", what="a quoted operation name").value
            self._expect("punct", ",", "','")
            edges.append((op, self._int()))
            self._accept(",")
            self._expect("punct", ")", "')' closing the pair")
            if not self._accept(","):
                self._expect("punct", "]", "',' or ']'")
                break
        return edges

    def _concat(self) -> list[int]:
        tok = self._peek()
        if tok.kind == "name" and tok.value == "range":  # DARTS prints range(2, 6)
            self._advance()
            self._expect("punct", "(", "'('")
            start = self._int()
            self._expect("punct", ",", "','")
            stop = self._int()
            self._expect("punct", ")", "')'")
            return list(range(start, stop))
        self._expect("punct", "[", "'[' or range(...)")
        values: list[int] = []
        while not self._accept("]"):
            values.append(self._int())
            if not self._accept(","):
                self._expect("punct", "]", "',' or ']'")
                break
        return values


def parse_genotype(text: str) -> dict[str, list]:
    """Parse DARTS ``Genotype(normal=[...], normal_concat=[...], reduce=[...], reduce_concat=[...])``."""
    if not isinstance(text, str):
        raise InvalidArchitecture(f"a DARTS genotype is text, got {type(text).__name__}")
    return _GenotypeParser(text.strip()).parse()


def format_genotype(genotype: tuple) -> str:
    """The DARTS ``Genotype(...)`` text of a (normal, reduce) genotype."""
    normal, reduce = genotype
    edges = lambda cell: "[" + ", ".join(f"({op!r}, {index})" for op, index in cell) + "]"  # noqa: E731
    concat = "[" + ", ".join(str(c) for c in CONCAT) + "]"
    return (
        f"Genotype(normal={edges(normal)}, normal_concat={concat}, "
        f"reduce={edges(reduce)}, reduce_concat={concat})"
    )


# --------------------------------------------------------------------------- analytic sizes


def _conv_out(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _fr_size(c_in: int, c_out: int, size_in: int) -> tuple[int, int, int]:
    """(params, MACs, output size) of FactorizedReduce."""
    out = _conv_out(size_in, 1, 2, 0)
    if _conv_out(size_in - 1, 1, 2, 0) != out:
        raise ConfigError(f"DARTS reduction needs an even feature map, got {size_in}x{size_in}")
    params = c_in * c_out + 2 * c_out
    return params, c_in * c_out * out * out, out


def _op_size(name: str, c: int, stride: int, size_in: int) -> tuple[int, int, int]:
    """(params, MACs, output size) of one operation; BN/pool/add are not multiply-adds."""
    if name == "skip_connect" and stride == 2:
        return _fr_size(c, c, size_in)
    if name in ("none", "skip_connect"):
        return 0, 0, (size_in - 1) // stride + 1
    if name in ("max_pool_3x3", "avg_pool_3x3"):
        return 0, 0, _conv_out(size_in, 3, stride, 1)
    kernel = int(name[-1])
    if name.startswith("sep_conv"):
        out = _conv_out(size_in, kernel, stride, kernel // 2)
        per_half = kernel * kernel * c + c * c
        return 2 * (per_half + 2 * c), 2 * per_half * out * out, out
    out = _conv_out(size_in, kernel, stride, kernel - 1, 2)  # dil_conv
    per = kernel * kernel * c + c * c
    return per + 2 * c, per * out * out, out


# --------------------------------------------------------------------------- the space

TEXT = """\
DARTS cell space (CIFAR). The network is DARTS's evaluation network: a 3x3 conv stem
with 3C channels, then a stack of cells (default 20, C=36); the cells at 1/3 and 2/3
of the depth are reduction cells (stride 2, channels doubled), all others are normal
cells; global average pooling and a linear classifier follow (plus an optional
auxiliary classifier after the 2/3 cell during training). Only two cells are
searched: the normal cell and the reduction cell, each repeated wherever it occurs.
A cell has two input states (0 = output of the cell two steps back, 1 = output of the
previous cell, each preprocessed to C channels) and 4 intermediate nodes (states
2, 3, 4, 5). Node k takes exactly two inputs from two DIFFERENT earlier states
(0 .. k-1), applies one operation to each and sums them; the cell output is the
channel concatenation of states 2, 3, 4, 5. In a reduction cell, operations applied
to states 0 and 1 use stride 2. Operations:
- max_pool_3x3 / avg_pool_3x3: 3x3 pooling, no parameters.
- skip_connect: identity (a factorized 1x1 reduction when stride 2); eases gradient flow.
- sep_conv_3x3 / sep_conv_5x5: separable conv (ReLU, depthwise kxk, pointwise 1x1,
  BN) applied twice; the strongest and most expensive operations.
- dil_conv_3x3 / dil_conv_5x5: dilated (rate 2) separable conv applied once; wide
  receptive field at low cost.
- none: zero (absent edge); only allowed when the space permits it."""

ENCODING = """\
An architecture is a DARTS genotype:
Genotype(normal=[(op, input), ... 8 pairs], normal_concat=[2, 3, 4, 5],
         reduce=[(op, input), ... 8 pairs], reduce_concat=[2, 3, 4, 5])
Pairs 2k and 2k+1 (k = 0..3) are the two inputs of node k+2; their input indices are
states in 0..k+1 and must differ from each other. Operation names are quoted strings.
The concat lists are always [2, 3, 4, 5]."""

MUTATION_RULES = """\
Change one pair in the normal or the reduction cell: either its operation (to another
allowed operation) or its input state (to another earlier state, different from the
other input of the same node). Keep 8 pairs per cell and concat [2, 3, 4, 5]."""


@SPACES.register("darts")
class DartsSpace(SearchSpace):
    """DARTS normal + reduction cells in the CIFAR evaluation network."""

    name = "darts"

    def __init__(
        self,
        channels: int = 36,
        layers: int = 20,
        auxiliary: bool = False,
        drop_path_prob: float = 0.0,
        allow_none: bool = False,
    ):
        if channels < 2 or channels % 2:
            raise ConfigError(f"DARTS channels must be an even number >= 2, got {channels}")
        if layers < 3:
            raise ConfigError(f"a DARTS network needs at least 3 cells, got {layers}")
        if not 0.0 <= drop_path_prob < 1.0:
            raise ConfigError(f"drop_path_prob must be in [0, 1), got {drop_path_prob}")
        self.channels = channels
        self.layers = layers
        self.auxiliary = auxiliary
        self.drop_path_prob = drop_path_prob
        self.allow_none = allow_none
        self.ops = PRIMITIVES if allow_none else tuple(p for p in PRIMITIVES if p != "none")

    # -- construction and checks

    def make(self, normal: list | tuple, reduce: list | tuple) -> Architecture:
        """Architecture from two lists of 8 (operation, input) pairs."""
        arch = Architecture(self.name, (normal, reduce))
        self.validate(arch)
        return arch

    def validate(self, arch: Architecture) -> None:
        self.check_space(arch)
        genotype = arch.genotype
        if not isinstance(genotype, tuple) or len(genotype) != 2:
            raise InvalidArchitecture("a DARTS genotype is a pair (normal cell, reduction cell)")
        for kind, cell in zip(CELL_KINDS, genotype):
            if not isinstance(cell, tuple) or len(cell) != EDGES_PER_CELL:
                count = len(cell) if isinstance(cell, tuple) else "no"
                raise InvalidArchitecture(
                    f"the {kind} cell needs exactly {EDGES_PER_CELL} (operation, input) pairs, got {count}"
                )
            for position, pair in enumerate(cell):
                node = 2 + position // 2
                if not (isinstance(pair, tuple) and len(pair) == 2):
                    raise InvalidArchitecture(f"{kind} cell pair {position} must be (operation, input), got {pair!r}")
                op, index = pair
                if op not in PRIMITIVES:
                    raise InvalidArchitecture(
                        f"{kind} cell pair {position} has operation {op!r}, which is not a DARTS operation "
                        f"(allowed: {', '.join(self.ops)})"
                    )
                if op == "none" and not self.allow_none:
                    raise InvalidArchitecture(
                        f"{kind} cell pair {position} uses 'none': DARTS drops 'none' from final genotypes, "
                        "so this space does not accept it (use allow_none=True to permit it)"
                    )
                if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < node:
                    raise InvalidArchitecture(
                        f"{kind} cell pair {position} (node {node}) has input {index!r}; "
                        f"node {node} may only read states 0..{node - 1}"
                    )
            for step in range(STEPS):
                if cell[2 * step][1] == cell[2 * step + 1][1]:
                    raise InvalidArchitecture(
                        f"{kind} cell node {step + 2} reads state {cell[2 * step][1]} twice; "
                        "its two inputs must be different states"
                    )

    # -- sampling and mutation

    def sample(self, rng: random.Random) -> Architecture:
        cells = []
        for _ in CELL_KINDS:
            cell = []
            for step in range(STEPS):
                for index in rng.sample(range(step + 2), 2):
                    cell.append((rng.choice(self.ops), index))
            cells.append(tuple(cell))
        return Architecture(self.name, tuple(cells))

    def mutate(self, arch: Architecture, rng: random.Random) -> Architecture:
        self.validate(arch)
        cells = [list(cell) for cell in arch.genotype]
        which = rng.randrange(2)
        position = rng.randrange(EDGES_PER_CELL)
        op, index = cells[which][position]
        node = 2 + position // 2
        partner = cells[which][position ^ 1][1]
        free_inputs = [i for i in range(node) if i not in (index, partner)]
        if free_inputs and rng.random() < 0.5:
            cells[which][position] = (op, rng.choice(free_inputs))
        else:
            cells[which][position] = (rng.choice([o for o in self.ops if o != op]), index)
        return Architecture(self.name, tuple(tuple(cell) for cell in cells))

    # -- building and sizes

    def build(self, arch: Architecture, *, num_classes: int = 10) -> nn.Module:
        self.validate(arch)
        return NetworkCIFAR(
            arch.genotype, num_classes, self.channels, self.layers, self.auxiliary, self.drop_path_prob
        )

    def network_kwargs(self, *, num_classes: int = 10) -> dict[str, object]:
        """Keyword arguments of NetworkCIFAR besides the genotype (used by export)."""
        return {
            "num_classes": num_classes,
            "channels": self.channels,
            "layers": self.layers,
            "auxiliary": self.auxiliary,
            "drop_path_prob": self.drop_path_prob,
        }

    def _walk(self, arch: Architecture, resolution: int, num_classes: int) -> tuple[int, int]:
        """(parameters, multiply-adds) of the network as :meth:`build` makes it."""
        self.validate(arch)
        normal, reduce = arch.genotype
        c = self.channels
        c_stem = 3 * c
        params = 27 * c_stem + 2 * c_stem
        size = resolution
        macs = 27 * c_stem * size * size
        c_pp, c_p, c_curr = c_stem, c_stem, c
        size_pp = size_p = size
        reduction_prev = False
        c_aux = c_p
        for i in range(self.layers):
            reduction = i in (self.layers // 3, 2 * self.layers // 3)
            if reduction:
                c_curr *= 2
            if reduction_prev:
                p, m, s0 = _fr_size(c_pp, c_curr, size_pp)
            else:
                p, m, s0 = c_pp * c_curr + 2 * c_curr, c_pp * c_curr * size_pp * size_pp, size_pp
            params += p + c_p * c_curr + 2 * c_curr
            macs += m + c_p * c_curr * size_p * size_p
            if s0 != size_p:
                raise ConfigError(f"resolution {resolution} gives mismatched cell inputs ({s0} vs {size_p})")
            sizes = [size_p, size_p]
            for position, (op, index) in enumerate(reduce if reduction else normal):
                stride = 2 if reduction and index < 2 else 1
                p, m, out = _op_size(op, c_curr, stride, sizes[index])
                params += p
                macs += m
                if position % 2:
                    sizes.append(out)
            size_pp, size_p = size_p, sizes[-1]
            c_pp, c_p = c_p, STEPS * c_curr
            reduction_prev = reduction
            if i == 2 * self.layers // 3:
                c_aux = c_p
        params += c_p * num_classes + num_classes
        macs += c_p * num_classes
        if self.auxiliary:  # training-only head: parameters, but no inference multiply-adds
            params += c_aux * 128 + 2 * 128 + 128 * 768 * 4 + 2 * 768 + 768 * num_classes + num_classes
        return params, macs

    def count_params(self, arch: Architecture, *, num_classes: int = 10) -> int:
        """Parameters of the built network (including the auxiliary head when enabled)."""
        return self._walk(arch, 32, num_classes)[0]

    def count_flops(self, arch: Architecture, resolution: int = 32, *, num_classes: int = 10) -> int:
        """Inference multiply-adds of conv and linear layers for one image (no auxiliary head)."""
        if resolution < 4 or resolution % 4:
            raise ConfigError(f"DARTS networks need a resolution divisible by 4, got {resolution}")
        return self._walk(arch, resolution, num_classes)[1]

    def count_layers(self, arch: Architecture) -> int:
        """Depth in cells (DARTS's ``layers``): the same for every genotype of this space."""
        self.validate(arch)
        return self.layers

    # -- text

    def encode(self, arch: Architecture) -> str:
        self.validate(arch)
        return format_genotype(arch.genotype)

    def decode(self, text: str) -> Architecture:
        if isinstance(text, str) and text.strip() in KNOWN_GENOTYPES:
            text = KNOWN_GENOTYPES[text.strip()]
        fields = parse_genotype(text)
        for name in ("normal_concat", "reduce_concat"):
            if fields[name] != list(CONCAT):
                raise InvalidArchitecture(
                    f"{name} must be {list(CONCAT)} in the DARTS space (all 4 nodes concatenated), got {fields[name]}"
                )
        return self.make(fields["normal"], fields["reduce"])

    @property
    def encoding_pattern(self) -> str:
        """A regex of the canonical ``Genotype(...)`` text (as :meth:`encode` writes it).

        It fixes the layout, the allowed operations and, per pair, the states its node may
        read; that the two inputs of a node differ is checked by decode(). Plain groups
        only, so llama.cpp can turn it into a grammar for constrained replies.
        """
        ops = "(" + "|".join(self.ops) + ")"
        concat = r"\[" + ", ".join(str(c) for c in CONCAT) + r"\]"

        def cell() -> str:
            pairs = [r"\('" + ops + f"', [0-{position // 2 + 1}]" + r"\)" for position in range(EDGES_PER_CELL)]
            return r"\[" + ", ".join(pairs) + r"\]"

        return (
            r"^Genotype\(normal=" + cell() + ", normal_concat=" + concat
            + ", reduce=" + cell() + ", reduce_concat=" + concat + r"\)$"
        )

    def describe(self) -> SpaceDescription:
        return SpaceDescription(
            name=self.name,
            text=TEXT,
            code=source_of(
                Zero, ReLUConvBN, FactorizedReduce, SepConv, DilConv, make_op, drop_path, Cell, NetworkCIFAR
            ),
            encoding=ENCODING,
            mutation_rules=MUTATION_RULES,
            example=DARTS_V2,
            example_thinking="Changed one (operation, input) pair of one cell; the two inputs of every node "
            "stay different states, so the genotype stays valid.",
        )
