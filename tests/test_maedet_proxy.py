"""The MAE-DET entropy proxy (``maedet``)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rznas.data.probe import gaussian_probe
from rznas.proxies import PROXIES, get_proxy
from rznas.proxies.base import ScoringContext
from rznas.proxies.maedet import STAGE_WEIGHTS, stage_weights
from rznas.proxies.zen import gaussian_init
from rznas.spaces import get_space

SMALL = (
    "SuperConvK3BNRELU(3,16,2,1)SuperResConvK1K3K1(16,32,2,8,1)SuperResConvK1K5K1(32,48,2,16,1)"
    "SuperResConvK1K3K1(48,64,2,16,1)SuperResConvK1K7K1(64,96,2,24,1)"
)
WIDE = (
    "SuperConvK3BNRELU(3,32,2,1)SuperResConvK1K3K1(32,64,2,16,1)SuperResConvK1K5K1(64,96,2,32,1)"
    "SuperResConvK1K3K1(96,128,2,32,1)SuperResConvK1K7K1(128,192,2,48,1)"
)


def build(text: str) -> nn.Module:
    space = get_space("maedet", budget=None)
    torch.manual_seed(0)
    return space.build(space.decode(text), num_classes=10)


@pytest.fixture(scope="module")
def probe():
    return gaussian_probe(batch_size=4, chunks=1, resolution=64, num_classes=10, seed=0)


def test_registered_data_free():
    assert "maedet" in PROXIES
    proxy = get_proxy("maedet")
    assert proxy.needs_data is False and "larger = better" in proxy.convention


def test_matches_an_independent_computation(probe):
    """Recompute 0.5 log Var(C_s) + BN log scales with BN momentum 1 (running_var = batch var)."""
    model = build(SMALL)
    value = get_proxy("maedet").score(model, probe, seed=3)

    ctx = ScoringContext(model, probe, [], seed=3)
    copy = ctx.copy_model()
    generator = ctx.generator(salt=0x3AED)
    gaussian_init(copy, generator)
    x = torch.randn(4, 3, 64, 64, generator=generator)
    for module in copy.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = 1.0
    with torch.no_grad():
        features = copy.forward_features(x)
    expected = 0.0
    for weight, index, feature in zip(STAGE_WEIGHTS, copy.feature_indices, features):
        bns = [m for block in copy.blocks[: index + 1] for m in block.modules() if isinstance(m, nn.BatchNorm2d)]
        log_bn = sum(0.5 * math.log(float(m.running_var.double().mean())) for m in bns)
        expected += weight * (0.5 * math.log(float(feature.double().var())) + log_bn)
    assert value == pytest.approx(expected, rel=1e-4)


def test_deterministic_and_model_untouched(probe):
    model = build(SMALL)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    first = get_proxy("maedet").score(model, probe, seed=1)
    assert get_proxy("maedet").score(model, probe, seed=1) == first
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert math.isfinite(first)


def test_wider_backbone_has_higher_entropy(probe):
    assert get_proxy("maedet").score(build(WIDE), probe) > get_proxy("maedet").score(build(SMALL), probe)


def test_stage_weights():
    assert stage_weights(3) == (1.0, 1.0, 6.0)
    assert stage_weights(1) == (1.0,)
    assert stage_weights(2) == (1.0, 6.0)
    assert stage_weights(4) == (1.0, 1.0, 1.0, 6.0)


def test_single_scale_models_use_pre_pooling_features(probe):
    space = get_space("zen_resnet", budget=None)
    model = space.build(space.decode(
        "SuperConvK3BNRELU(3,16,1,1)SuperResK1K3K1(16,32,2,8,1)SuperConvK1BNRELU(32,64,1,1)"))
    assert math.isfinite(get_proxy("maedet").score(model, probe))
