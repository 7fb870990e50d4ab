"""MAE-DET backbone space for COCO detection (Sun et al., ICML 2022).

Stem SuperConvK3BNRELU (stride 2), then a chain of SuperResConvK1K{3,5,7}K1 blocks:
``sub_layers`` ResNet bottlenecks 1x1 -> kxk -> 1x1 (MAE-DET / TinyNAS). The strides
must multiply to exactly 32 so that the network emits C3, C4 and C5 (the outputs of
the last block at strides 8, 16 and 32) for an FPN; ``forward_features`` returns them.
Budgets: multiply-adds at 480x480 (e.g. 18.8G, ResNet-50's cost) and layers (e.g. 91),
where layers = 1 per stem conv + 3 per bottleneck, as MAE-DET counts them.

String notation (Zen-NAS style): SuperConvK3BNRELU(3,out,2,sub_layers) then
SuperResConvK1K{k}K1(in,out,stride,bottleneck,sub_layers) blocks.
"""
from __future__ import annotations

from typing import Any, ClassVar

from .base import SPACES
from .macro_blocks import MAEDET_RES_TYPES
from .macro_space import MacroBudget, MacroSpace, StageSpec

RESNET50_LIKE = (
    "SuperConvK3BNRELU(3,32,2,1)SuperResConvK1K3K1(32,256,2,64,3)SuperResConvK1K3K1(256,512,2,128,4)"
    "SuperResConvK1K3K1(512,1024,2,256,6)SuperResConvK1K3K1(1024,2048,2,512,3)"
)

TEXT = """\
MAE-DET detection-backbone space (COCO, searched at 480x480). A backbone is a chain of
blocks whose multi-scale outputs C3, C4, C5 (strides 8, 16, 32) feed a detection neck.
Block types:
- SuperConvK3BNRELU(3, out, 2, sub_layers): the stem, strided 3x3 conv -> BN -> ReLU.
- SuperResConvK1K{3,5,7}K1(in, out, stride, bottleneck, sub_layers): sub_layers ResNet
  bottleneck units 1x1 (to bottleneck) -> kxk (stride on the first unit) -> 1x1 (to out),
  with a shortcut (2x2 average pooling when strided, 1x1 conv when channels change).
  Wider bottlenecks and more units add capacity; the kernel k sets the receptive field.
The strides must multiply to exactly 32 (the stem and four stride-2 blocks)."""

ENCODING = """\
An architecture is a Zen-NAS-style string: blocks written as Name(arguments) one after
the other, e.g. SuperConvK3BNRELU(3,32,2,1)SuperResConvK1K3K1(32,128,2,32,2)
SuperResConvK1K5K1(128,256,2,64,2)SuperResConvK1K3K1(256,512,2,128,3)SuperResConvK1K3K1(512,1024,2,256,2)
(without spaces). The stem takes (in, out, stride, sub_layers); bottleneck blocks take
(in, out, stride, bottleneck, sub_layers). The first block is SuperConvK3BNRELU with
in=3, all others are SuperResConvK1K*K1; the last block gives C5."""

MUTATION = """\
Change one block (Zen-NAS-style mutation): multiply its out (and bottleneck) channels by
one of 2.5, 2, 1.5, 1.25, 1, 1/1.25, 1/1.5, 1/2, 1/2.5 and round to a multiple of 8
(8..2048); change sub_layers by -2..+2 (at least 1); a bottleneck block may switch its
kernel (3, 5, 7); keep its stride. Then set the next block's input channels to the new
output channels. Keep the product of strides at 32."""


@SPACES.register("maedet")
class MaeDetSpace(MacroSpace):
    """MAE-DET ResNet-like detection backbone space with FLOPs/layer budgets at 480px."""

    name = "maedet"
    stem_types = ("SuperConvK3BNRELU",)
    body_types = MAEDET_RES_TYPES
    head_types = ()
    presets: ClassVar[dict[str, MacroBudget]] = {
        "18.8G": MacroBudget(flops=18.8e9, layers=91, resolution=480, num_classes=1000),
    }
    default_budget = "18.8G"
    total_stride = 32
    exact_total_stride = True
    feature_strides = (8, 16, 32)
    stem_type = "SuperConvK3BNRELU"
    stem_stride = 2
    stem_channels = (16, 64)
    stages = (
        StageSpec(2, 64, 256, 2),
        StageSpec(2, 128, 512, 2),
        StageSpec(2, 256, 1024, 2),
        StageSpec(2, 512, 2048, 2),
    )
    head_type = None
    max_sample_sub_layers = 5
    layer_rule = "1 per stem conv layer + 3 per bottleneck unit (MAE-DET definition)"
    text = TEXT
    encoding_text = ENCODING
    mutation_text = MUTATION
    example_text = RESNET50_LIKE

    def code_objects(self, mb: Any) -> tuple:
        return (mb.plan_conv_bn_relu, mb.plan_maedet_k1kxk1, mb.ConvBNAct, mb.ResidualUnit, mb.MacroNetwork)
