"""MobileNet-like macro space for ImageNet (Zen-NAS "IDW" space, used by ZiCo and RZ-NAS).

Stem SuperConvK3BNRELU (stride 2), a chain of inverted-bottleneck depthwise blocks
SuperResIDWE{1,2,4,6}K{3,5,7} (optionally with squeeze-excitation, written with an
``SE`` suffix, e.g. SuperResIDWE6K5SE), and a fixed SuperConvK1BNRELU head (2048
channels by default) before pooling and the classifier. FLOPs budgets 450M / 600M /
1000M multiply-adds at 224x224 with at most 14 / 14 / 16 layers.
"""
from __future__ import annotations

from typing import Any, ClassVar, Mapping

from .base import SPACES
from .macro_blocks import BLOCK_TYPES, CHANNEL_BASE, IDW_SE_TYPES, IDW_TYPES, MAX_CHANNELS
from .macro_space import MacroBudget, MacroSpace, StageSpec
from ..errors import ConfigError

ZENNET_400M = (
    "SuperConvK3BNRELU(3,16,2,1)SuperResIDWE1K7(16,40,2,40,1)SuperResIDWE1K7(40,64,2,64,1)"
    "SuperResIDWE4K7(64,96,2,96,5)SuperResIDWE2K7(96,224,2,224,5)SuperConvK1BNRELU(224,2048,1,1)"
)

TEXT = """\
MobileNet-like macro space (ImageNet, 224x224 input). A network is a chain of blocks,
then global average pooling and a linear classifier. Block types:
- SuperConvK3BNRELU(3, out, 2, 1): the stem, a strided 3x3 conv -> BN -> ReLU.
- SuperResIDWE{e}K{k}(in, out, stride, bottleneck, sub_layers), e in {1,2,4,6},
  k in {3,5,7}: inverted-bottleneck depthwise block. Each sub-layer is two residual
  units: 1x1 expansion to round8(e*width) -> kxk depthwise conv -> 1x1 linear
  projection; the first unit maps in -> bottleneck, the second bottleneck -> out.
  A larger expansion e adds capacity at a FLOPs cost that grows with e; a larger
  kernel k widens the receptive field cheaply (depthwise).
- SuperResIDWE{e}K{k}SE: the same block with squeeze-excitation (channel attention)
  after each depthwise conv.
- SuperConvK1BNRELU(in, 2048, 1, 1): the head, a 1x1 conv to 2048 channels (fixed).
stride=2 halves the resolution; FLOPs grow with resolution squared, so wide blocks
are cheapest late in the network."""

ENCODING = """\
An architecture is the Zen-NAS string: blocks written as Name(arguments) one after the
other, e.g. SuperConvK3BNRELU(3,16,2,1)SuperResIDWE6K3(16,32,2,24,2)SuperConvK1BNRELU(32,2048,1,1).
Conv blocks take (in, out, stride, sub_layers); IDW blocks take
(in, out, stride, bottleneck, sub_layers). The first block is SuperConvK3BNRELU with
in=3, the last is SuperConvK1BNRELU, the blocks between are SuperResIDWE* blocks."""

MUTATION = """\
Change one IDW block or the stem (Zen-NAS mutation): multiply its out (and bottleneck)
channels by one of 2.5, 2, 1.5, 1.25, 1, 1/1.25, 1/1.5, 1/2, 1/2.5 and round to a
multiple of 8 (8..2048); change sub_layers by -2..+2 (at least 1); an IDW block may
switch expansion e and kernel k (keeping its SE choice); keep its stride and the head.
Then set the next block's input channels to the new output channels."""


@SPACES.register("mobilenet")
class MobileNetSpace(MacroSpace):
    """MobileNetV2-like ImageNet space with FLOPs/layer budgets (Zen-NAS IDW blocks, optional SE)."""

    name = "mobilenet"
    stem_types = ("SuperConvK3BNRELU",)
    body_types = IDW_TYPES + IDW_SE_TYPES
    head_types = ("SuperConvK1BNRELU",)
    presets: ClassVar[dict[str, MacroBudget]] = {
        "450M": MacroBudget(flops=450e6, layers=14, resolution=224, num_classes=1000),
        "600M": MacroBudget(flops=600e6, layers=14, resolution=224, num_classes=1000),
        "1000M": MacroBudget(flops=1000e6, layers=16, resolution=224, num_classes=1000),
    }
    default_budget = "450M"
    total_stride = 32
    stem_type = "SuperConvK3BNRELU"
    stem_stride = 2
    stem_channels = (16, 48)
    stages = (
        StageSpec(2, 16, 64),
        StageSpec(2, 24, 96),
        StageSpec(2, 32, 192),
        StageSpec(1, 48, 256),
        StageSpec(2, 64, 512),
    )
    head_type = "SuperConvK1BNRELU"
    fixed_head = True
    text = TEXT
    encoding_text = ENCODING
    mutation_text = MUTATION
    example_text = ZENNET_400M

    def __init__(self, budget: str | MacroBudget | Mapping[str, Any] | None = "default", *,
                 use_se: bool = False, head_channels: int = 2048):
        if head_channels % CHANNEL_BASE or not CHANNEL_BASE <= head_channels <= MAX_CHANNELS:
            raise ConfigError(f"head_channels must be a multiple of 8 in [8, 2048], got {head_channels}")
        self.use_se = bool(use_se)
        self.head_channels = head_channels
        super().__init__(budget)

    @property
    def sample_types(self) -> tuple[str, ...]:
        return IDW_SE_TYPES if self.use_se else IDW_TYPES

    def _head_out(self, channels) -> int:
        return self.head_channels

    def family_of(self, block_type: str) -> tuple[str, ...]:
        if block_type in IDW_TYPES:
            return IDW_TYPES
        if block_type in IDW_SE_TYPES:
            return IDW_SE_TYPES
        return (block_type,)

    def code_objects(self, mb: Any) -> tuple:
        return (mb.SE, mb.plan_conv_bn_relu, mb.plan_res_idw, mb.ConvBNAct, mb.SqueezeExcite,
                mb.ResidualUnit, mb.MacroNetwork)


assert all(BLOCK_TYPES[name].family == "idw" for name in IDW_TYPES + IDW_SE_TYPES)
