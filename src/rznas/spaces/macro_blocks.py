"""The macro-space block library: Zen-NAS super blocks and MAE-DET bottlenecks.

Every block is first expanded into a *plan*: a tuple of primitive layers
(:class:`Conv`, :class:`SE`, :class:`Residual`). The same plan builds the
``nn.Module`` and gives the analytic parameter and multiply-add counts, so the
budget check and the built network cannot disagree.

Block semantics follow the reference implementations:
- Zen-NAS (Lin et al., ICCV 2021, github.com/idstcv/ZenNAS, ``PlainNet/``):
  ``SuperConvK{k}BNRELU``, ``SuperResK1K{k}K1``, ``SuperResK{k}K{k}``,
  ``SuperResIDWE{e}K{k}``. One *sub-layer* of a SuperResK1KXK1 or SuperResIDWE
  block is two residual units; of a SuperResKXKX block one unit. The first unit
  of a block always has a 1x1-conv (with bias) + BN projection shortcut.
- MAE-DET (Sun et al., ICML 2022, github.com/alibaba/lightweight-neural-architecture-search):
  ``SuperResConvK1K{k}K1``: ``sub_layers`` ResNet bottlenecks; the shortcut is
  2x2 average pooling when strided, then a 1x1 conv + BN only when channels change.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple, Union

import torch
from torch import nn

MAX_CHANNELS = 2048
CHANNEL_BASE = 8
SE_RATIO = 0.25


def smart_round(value: float, base: int = CHANNEL_BASE) -> int:
    """Round to the nearest multiple of ``base`` (at least ``base``), as Zen-NAS does."""
    return max(base, round(value / float(base)) * base)


def out_size(resolution: int, stride: int) -> int:
    """Spatial size after a 'same'-padded conv (or ceil-mode pool) with this stride."""
    return (resolution - 1) // stride + 1


# ----------------------------------------------------------------------------- plan primitives
@dataclass(frozen=True)
class Conv:
    """Conv2d (no bias) -> BatchNorm (-> ReLU); 'same' padding; groups=c_in makes it depthwise."""

    c_in: int
    c_out: int
    kernel: int
    stride: int = 1
    groups: int = 1
    relu: bool = True


@dataclass(frozen=True)
class SE:
    """Squeeze-excitation as in Zen-NAS: GAP -> 1x1 conv -> BN -> ReLU -> 1x1 conv -> BN -> sigmoid."""

    channels: int

    @property
    def hidden(self) -> int:
        return max(1, int(round(self.channels * SE_RATIO)))


@dataclass(frozen=True)
class Residual:
    """relu(branch(x) + shortcut(x)); the shortcut projects when forced, strided or reshaped."""

    branch: tuple[Union[Conv, SE], ...]
    c_in: int
    c_out: int
    stride: int
    force_proj: bool = False
    pool_shortcut: bool = False  # MAE-DET: 2x2 avg-pool for stride, 1x1 conv only for channels
    proj_bias: bool = True  # Zen-NAS projections use a biased conv; MAE-DET's do not

    @property
    def has_proj(self) -> bool:
        if self.pool_shortcut:
            return self.c_in != self.c_out
        return self.force_proj or self.stride != 1 or self.c_in != self.c_out


Item = Union[Conv, SE, Residual]
Plan = tuple[Item, ...]


# ----------------------------------------------------------------------------- block plans
def plan_conv_bn_relu(kernel: int, c_in: int, c_out: int, stride: int, sub_layers: int) -> Plan:
    """SuperConvK{k}BNRELU: ``sub_layers`` x (kxk conv -> BN -> ReLU); only the first is strided."""
    items: list[Item] = []
    for i in range(sub_layers):
        items.append(Conv(c_in if i == 0 else c_out, c_out, kernel, stride if i == 0 else 1))
    return tuple(items)


def plan_res_k1kxk1(kernel: int, c_in: int, c_out: int, stride: int, bottleneck: int, sub_layers: int) -> Plan:
    """SuperResK1K{k}K1 (Zen-NAS): each sub-layer = two 1x1-kxk-1x1 bottleneck residual units."""
    items: list[Item] = []
    last, s = c_in, stride
    for i in range(sub_layers):
        items.append(Residual(
            (Conv(last, bottleneck, 1), Conv(bottleneck, bottleneck, kernel, s), Conv(bottleneck, c_out, 1, relu=False)),
            last, c_out, s, force_proj=(i == 0)))
        items.append(Residual(
            (Conv(c_out, bottleneck, 1), Conv(bottleneck, bottleneck, kernel), Conv(bottleneck, c_out, 1, relu=False)),
            c_out, c_out, 1))
        last, s = c_out, 1
    return tuple(items)


def plan_res_kxkx(kernel: int, c_in: int, c_out: int, stride: int, bottleneck: int, sub_layers: int) -> Plan:
    """SuperResK{k}K{k} (Zen-NAS): each sub-layer = one kxk-kxk basic residual unit (bottleneck = middle width)."""
    items: list[Item] = []
    last, s = c_in, stride
    for i in range(sub_layers):
        items.append(Residual(
            (Conv(last, bottleneck, kernel, s), Conv(bottleneck, c_out, kernel, relu=False)),
            last, c_out, s, force_proj=(i == 0)))
        last, s = c_out, 1
    return tuple(items)


def plan_res_idw(
    expansion: int, kernel: int, se: bool, c_in: int, c_out: int, stride: int, bottleneck: int, sub_layers: int
) -> Plan:
    """SuperResIDWE{e}K{k} (Zen-NAS): each sub-layer = two inverted-bottleneck depthwise units.

    Unit 1 maps the input to ``bottleneck`` channels through a 1x1 expansion to
    round8(bottleneck*e), a kxk depthwise conv (strided) and a linear 1x1 projection;
    unit 2 maps ``bottleneck`` to ``out`` the same way with width round8(out*e).
    """
    items: list[Item] = []
    last, s = c_in, stride
    for i in range(sub_layers):
        for unit_in, unit_out, width, unit_stride, forced in (
            (last, bottleneck, smart_round(bottleneck * expansion), s, i == 0),
            (bottleneck, c_out, smart_round(c_out * expansion), 1, False),
        ):
            branch: list[Union[Conv, SE]] = [Conv(unit_in, width, 1), Conv(width, width, kernel, unit_stride, groups=width)]
            if se:
                branch.append(SE(width))
            branch.append(Conv(width, unit_out, 1, relu=False))
            items.append(Residual(tuple(branch), unit_in, unit_out, unit_stride, force_proj=forced))
        last, s = c_out, 1
    return tuple(items)


def plan_maedet_k1kxk1(kernel: int, c_in: int, c_out: int, stride: int, bottleneck: int, sub_layers: int) -> Plan:
    """SuperResConvK1K{k}K1 (MAE-DET): ``sub_layers`` ResNet bottlenecks 1x1-kxk-1x1, first one strided."""
    items: list[Item] = []
    last, s = c_in, stride
    for _ in range(sub_layers):
        items.append(Residual(
            (Conv(last, bottleneck, 1), Conv(bottleneck, bottleneck, kernel, s), Conv(bottleneck, c_out, 1, relu=False)),
            last, c_out, s, pool_shortcut=True, proj_bias=False))
        last, s = c_out, 1
    return tuple(items)


# ----------------------------------------------------------------------------- modules
class ConvBNAct(nn.Sequential):
    """Conv2d (bias-free, 'same' padding) -> BatchNorm2d (-> ReLU)."""

    def __init__(self, spec: Conv):
        layers: list[nn.Module] = [
            nn.Conv2d(spec.c_in, spec.c_out, spec.kernel, spec.stride, (spec.kernel - 1) // 2,
                      groups=spec.groups, bias=False),
            nn.BatchNorm2d(spec.c_out),
        ]
        if spec.relu:
            layers.append(nn.ReLU(inplace=False))
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """Channel attention: x * sigmoid(BN(conv(relu(BN(conv(GAP(x))))))) (Zen-NAS SE block)."""

    def __init__(self, spec: SE):
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(spec.channels, spec.hidden, 1, bias=False),
            nn.BatchNorm2d(spec.hidden),
            nn.ReLU(inplace=False),
            nn.Conv2d(spec.hidden, spec.channels, 1, bias=False),
            nn.BatchNorm2d(spec.channels),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class ResidualUnit(nn.Module):
    """relu(branch(x) + shortcut(x)) with the shortcut the plan asks for."""

    def __init__(self, spec: Residual):
        super().__init__()
        self.branch = nn.Sequential(*(build_item(item) for item in spec.branch))
        shortcut: list[nn.Module] = []
        if spec.pool_shortcut and spec.stride != 1:
            shortcut.append(nn.AvgPool2d(spec.stride, spec.stride, ceil_mode=True, count_include_pad=False))
        if spec.has_proj:
            conv_stride = 1 if spec.pool_shortcut else spec.stride
            shortcut += [nn.Conv2d(spec.c_in, spec.c_out, 1, conv_stride, bias=spec.proj_bias),
                         nn.BatchNorm2d(spec.c_out)]
        self.shortcut = nn.Sequential(*shortcut) if shortcut else nn.Identity()
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.branch(x) + self.shortcut(x))


def build_item(item: Item) -> nn.Module:
    """The module for one plan primitive."""
    if isinstance(item, Conv):
        return ConvBNAct(item)
    if isinstance(item, SE):
        return SqueezeExcite(item)
    return ResidualUnit(item)


def build_plan(plan: Plan) -> nn.Sequential:
    """A block module: its plan's primitives in sequence."""
    return nn.Sequential(*(build_item(item) for item in plan))


# ----------------------------------------------------------------------------- analytic cost
class Cost(NamedTuple):
    """Trainable parameters and multiply-adds (conv and linear layers only)."""

    params: int = 0
    macs: int = 0

    def __add__(self, other: "Cost") -> "Cost":  # type: ignore[override]
        return Cost(self.params + other.params, self.macs + other.macs)


def item_cost(item: Item, resolution: int) -> tuple[Cost, int]:
    """Cost of one primitive at an input resolution, and its output resolution."""
    if isinstance(item, Conv):
        r = out_size(resolution, item.stride)
        weights = item.c_in // item.groups * item.kernel * item.kernel * item.c_out
        return Cost(weights + 2 * item.c_out, weights * r * r), r
    if isinstance(item, SE):
        c, h = item.channels, item.hidden
        return Cost(2 * c * h + 2 * h + 2 * c, 2 * c * h), resolution
    cost, r = plan_cost(item.branch, resolution)
    if item.has_proj:
        weights = item.c_in * item.c_out
        cost += Cost(weights + (item.c_out if item.proj_bias else 0) + 2 * item.c_out, weights * r * r)
    return cost, r


def plan_cost(plan: Plan | tuple, resolution: int) -> tuple[Cost, int]:
    """Total cost of a plan and its output resolution."""
    total = Cost()
    for item in plan:
        cost, resolution = item_cost(item, resolution)
        total += cost
    return total, resolution


# ----------------------------------------------------------------------------- block types
class BlockSpec(NamedTuple):
    """One block of a macro architecture; ``bottleneck`` is None for plain conv blocks."""

    type: str
    c_in: int
    c_out: int
    stride: int
    bottleneck: int | None
    sub_layers: int

    def as_tuple(self) -> tuple:
        """The genotype tuple: (type, in, out, stride[, bottleneck], sub_layers)."""
        if self.bottleneck is None:
            return (self.type, self.c_in, self.c_out, self.stride, self.sub_layers)
        return (self.type, self.c_in, self.c_out, self.stride, self.bottleneck, self.sub_layers)

    def replace(self, **changes: int | str | None) -> "BlockSpec":
        return self._replace(**changes)


@dataclass(frozen=True)
class BlockType:
    """A named block kind: its family, kernel/expansion/SE, plan function and layer count."""

    name: str
    family: str  # "conv", "zen_res", "idw", "maedet_res"
    kernel: int
    planner: Callable[..., Plan]
    expansion: int = 0
    se: bool = False
    layers_per_sub_layer: int = 1

    @property
    def has_bottleneck(self) -> bool:
        return self.family != "conv"

    @property
    def arity(self) -> int:
        """Number of integer arguments in the string notation."""
        return 5 if self.has_bottleneck else 4

    def plan(self, spec: BlockSpec) -> Plan:
        """Expand a block into primitives."""
        if self.has_bottleneck:
            return self.planner(spec.c_in, spec.c_out, spec.stride, spec.bottleneck, spec.sub_layers)
        return self.planner(spec.c_in, spec.c_out, spec.stride, spec.sub_layers)

    def cost(self, spec: BlockSpec, resolution: int) -> tuple[Cost, int]:
        """Analytic (params, multiply-adds) at an input resolution, and the output resolution."""
        return plan_cost(self.plan(spec), resolution)

    def layers(self, spec: BlockSpec) -> int:
        """This block's contribution to the layer count."""
        return spec.sub_layers * self.layers_per_sub_layer

    def build(self, spec: BlockSpec) -> nn.Sequential:
        return build_plan(self.plan(spec))


def _partial(fn: Callable[..., Plan], *head: object) -> Callable[..., Plan]:
    def planner(*args: int) -> Plan:
        return fn(*head, *args)

    return planner


KERNELS = (3, 5, 7)
EXPANSIONS = (1, 2, 4, 6)
BLOCK_TYPES: dict[str, BlockType] = {}


def _register(block: BlockType) -> None:
    BLOCK_TYPES[block.name] = block


for _k in (1, 3, 5, 7):
    _register(BlockType(f"SuperConvK{_k}BNRELU", "conv", _k, _partial(plan_conv_bn_relu, _k)))
for _k in KERNELS:
    _register(BlockType(f"SuperResK1K{_k}K1", "zen_res", _k, _partial(plan_res_k1kxk1, _k)))
for _k in KERNELS:
    _register(BlockType(f"SuperResK{_k}K{_k}", "zen_res", _k, _partial(plan_res_kxkx, _k)))
for _se in (False, True):
    for _k in KERNELS:
        for _e in EXPANSIONS:
            _register(BlockType(f"SuperResIDWE{_e}K{_k}" + ("SE" if _se else ""), "idw", _k,
                                _partial(plan_res_idw, _e, _k, _se), expansion=_e, se=_se))
for _k in KERNELS:
    _register(BlockType(f"SuperResConvK1K{_k}K1", "maedet_res", _k, _partial(plan_maedet_k1kxk1, _k),
                        layers_per_sub_layer=3))

ZEN_RES_TYPES = tuple(name for name, b in BLOCK_TYPES.items() if b.family == "zen_res")
IDW_TYPES = tuple(name for name, b in BLOCK_TYPES.items() if b.family == "idw" and not b.se)
IDW_SE_TYPES = tuple(name for name, b in BLOCK_TYPES.items() if b.family == "idw" and b.se)
MAEDET_RES_TYPES = tuple(name for name, b in BLOCK_TYPES.items() if b.family == "maedet_res")
CONV_TYPES = tuple(name for name, b in BLOCK_TYPES.items() if b.family == "conv")


# ----------------------------------------------------------------------------- the network
class MacroNetwork(nn.Module):
    """Blocks in sequence -> global average pooling -> linear classifier.

    ``forward_pre_gap`` returns the last feature map (what the Zen-score looks at);
    ``forward_features`` returns the outputs of the last block at each of
    ``feature_strides`` (e.g. C3, C4, C5 at strides 8, 16, 32 for detection).
    """

    def __init__(self, blocks: list[nn.Module], strides: list[int], last_channels: int, num_classes: int,
                 feature_strides: tuple[int, ...] = ()):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(last_channels, num_classes)
        total, last_at = 1, {}
        for index, stride in enumerate(strides):
            total *= stride
            last_at[total] = index
        self.feature_indices: tuple[int, ...] = tuple(last_at[s] for s in feature_strides if s in last_at)

    def forward_pre_gap(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Multi-scale features: the output of each block listed in ``feature_indices``."""
        features = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in self.feature_indices:
                features.append(x)
        return features

    def feature_modules(self) -> list[nn.Module]:
        """The blocks whose outputs are the multi-scale features (for hooks)."""
        return [self.blocks[i] for i in self.feature_indices]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.forward_pre_gap(x)
        return self.classifier(torch.flatten(self.global_pooling(features), 1))


def head_cost(last_channels: int, num_classes: int) -> Cost:
    """The classifier: Linear(last_channels, num_classes) with bias."""
    return Cost(last_channels * num_classes + num_classes, last_channels * num_classes)
