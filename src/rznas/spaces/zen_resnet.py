"""Zen-NAS ResNet-like macro space for CIFAR (the space of the RZ-NAS released code).

Stem SuperConvK{1,3,5,7}BNRELU, a chain of SuperResK1K{3,5,7}K1 (bottleneck) and
SuperResK{3,5,7}K{3,5,7} (basic) blocks, and a SuperConvK1BNRELU head before global
pooling and the classifier. Budgets follow Zen-NAS: 1M parameters / 18 layers and
2M parameters / 20 layers at 32x32, layers = sum of sub_layers.
"""
from __future__ import annotations

from typing import Any, ClassVar

from .base import SPACES
from .macro_blocks import CONV_TYPES, ZEN_RES_TYPES
from .macro_space import MacroBudget, MacroSpace, StageSpec

ZENNET_1M = (
    "SuperConvK3BNRELU(3,88,1,1)SuperResK1K7K1(88,120,1,16,1)SuperResK1K7K1(120,192,2,16,3)"
    "SuperResK1K5K1(192,224,1,24,4)SuperResK1K5K1(224,96,2,24,2)SuperResK1K3K1(96,168,2,40,3)"
    "SuperResK1K3K1(168,112,1,48,3)SuperConvK1BNRELU(112,512,1,1)"
)

TEXT = """\
Zen-NAS ResNet-like macro space (CIFAR, 32x32 input). A network is a chain of blocks,
then global average pooling and a linear classifier. Block types:
- SuperConvK{1,3,5,7}BNRELU(in, out, stride, sub_layers): sub_layers x (kxk conv -> BN ->
  ReLU). Used as the stem (first block, in=3) and as the head (last block, always
  SuperConvK1BNRELU: a 1x1 conv that widens the features before pooling).
- SuperResK1K{3,5,7}K1(in, out, stride, bottleneck, sub_layers): bottleneck residual
  block; each sub-layer is two residual units 1x1 (to bottleneck) -> kxk -> 1x1 (to
  out). Cheap per layer, deep and wide outputs; larger k sees more context.
- SuperResK{3,5,7}K{3,5,7}(in, out, stride, bottleneck, sub_layers): basic residual
  block; each sub-layer is one unit kxk (to bottleneck) -> kxk (to out). More
  parameters per layer than the bottleneck block.
The first unit of every residual block has a 1x1-conv projection shortcut; the stride
applies to the first unit only. stride=2 halves the resolution; more channels and
sub-layers give capacity but cost parameters and FLOPs."""

ENCODING = """\
An architecture is the Zen-NAS string: blocks written as Name(arguments) one after the
other, e.g. SuperConvK3BNRELU(3,32,1,1)SuperResK1K3K1(32,64,2,16,2)SuperConvK1BNRELU(64,256,1,1).
Conv blocks take (in, out, stride, sub_layers); residual blocks take
(in, out, stride, bottleneck, sub_layers). The first block is a SuperConvK*BNRELU with
in=3, the last is SuperConvK1BNRELU, the blocks between are SuperRes* blocks."""

MUTATION = """\
Change one block (Zen-NAS mutation): multiply its out (and bottleneck) channels by one of
2.5, 2, 1.5, 1.25, 1, 1/1.25, 1/1.5, 1/2, 1/2.5 and round to a multiple of 8 (8..2048);
change sub_layers by -2..+2 (at least 1); a residual block may switch to any
SuperResK1K*K1 / SuperResK*K* type; keep its stride. Then set the next block's input
channels to the new output channels. A block with 6 or more sub-layers may be split
into two blocks (the second with stride 1)."""


@SPACES.register("zen_resnet")
class ZenResNetSpace(MacroSpace):
    """Zen-NAS ResNet-like CIFAR space with parameter/layer budgets and Zen-NAS notation."""

    name = "zen_resnet"
    stem_types = CONV_TYPES
    body_types = ZEN_RES_TYPES
    head_types = ("SuperConvK1BNRELU",)
    presets: ClassVar[dict[str, MacroBudget]] = {
        "1M": MacroBudget(params=1e6, layers=18, resolution=32, num_classes=10),
        "2M": MacroBudget(params=2e6, layers=20, resolution=32, num_classes=10),
    }
    default_budget = "1M"
    total_stride = 32
    stem_type = "SuperConvK3BNRELU"
    stem_stride = 1
    stem_channels = (16, 64)
    stages = (
        StageSpec(1, 16, 128, 2),
        StageSpec(2, 32, 256, 2),
        StageSpec(2, 64, 512, 2),
    )
    head_type = "SuperConvK1BNRELU"
    head_channels_range = (128, 1024)
    text = TEXT
    encoding_text = ENCODING
    mutation_text = MUTATION
    example_text = ZENNET_1M

    def code_objects(self, mb: Any) -> tuple:
        return (mb.plan_conv_bn_relu, mb.plan_res_k1kxk1, mb.plan_res_kxkx,
                mb.ConvBNAct, mb.ResidualUnit, mb.MacroNetwork)
