"""Zen-score (Lin et al., ICCV 2021, Zen-NAS): expressivity of the pre-pooling features.

As Zen-NAS's ``compute_zen_score`` with ``repeat=1`` (its evolution search setting):
on a private copy, conv/linear weights ~ N(0, 1) and biases 0, BN weight 1 / bias 0;
BN in train mode; x ~ N(0, 1) and x' = x + 0.01 * eps (Gaussian, batch size and
resolution of the probe); f = the features before global average pooling;
score = log E_n ||f(x) - f(x')||_1 + sum over BatchNorm2d layers of log sqrt(mean running_var).

Zen-NAS scores a freshly built network, so every running_var starts at 1 and, with
PyTorch's default momentum 0.1, holds 0.81 + 0.09 var(x-pass) + 0.1 var(x'-pass) after
the two forward passes; the copy's BN statistics are reset and momentum set to 0.1 to
reproduce exactly that.

Features before pooling: a model exposing ``forward_pre_gap(x)`` (or Zen-NAS's
``forward_pre_GAP``) is used directly; otherwise the input of the model's last global
pooling module (``nn.AdaptiveAvgPool2d`` / ``nn.AdaptiveMaxPool2d`` with output 1, e.g.
NAS-Bench-201's ``global_pooling``) is captured with a forward hook.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from ..errors import ProxyError
from .base import PROXIES, Proxy, ScoringContext, finite_log

MIXUP_GAMMA = 1e-2
ZEN_BN_MOMENTUM = 0.1
_GLOBAL_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def gaussian_init(model: nn.Module, generator: torch.Generator) -> None:
    """Zen-NAS's re-initialisation: conv/linear weights N(0, 1), biases 0, norm weight 1 / bias 0."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator))
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
                if module.weight is not None:
                    module.weight.fill_(1.0)
                    module.bias.zero_()


def _is_global_pool(module: nn.Module) -> bool:
    size = getattr(module, "output_size", None)
    return isinstance(module, _GLOBAL_POOLS) and size in (1, (1, 1))


def pre_gap_features(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function x -> features before global pooling, by method or by a hook on the last pool."""
    for method in ("forward_pre_gap", "forward_pre_GAP"):
        if callable(getattr(model, method, None)):
            return getattr(model, method)
    pools = [m for m in model.modules() if _is_global_pool(m)]
    if not pools:
        raise ProxyError(
            "zen: the model has no forward_pre_gap(x) method and no global pooling module "
            "(nn.AdaptiveAvgPool2d(1)) whose input could be captured"
        )
    pool = pools[-1]

    def features(x: torch.Tensor) -> torch.Tensor:
        captured: list[torch.Tensor] = []
        handle = pool.register_forward_hook(lambda module, inputs, output: captured.append(inputs[0]))
        try:
            model(x)
        finally:
            handle.remove()
        if not captured:
            raise ProxyError("zen: the global pooling module was not called in the forward pass")
        return captured[-1]

    return features


@PROXIES.register("zen")
class Zen(Proxy):
    """log E||f(x) - f(x + 0.01 eps)||_1 + sum log sqrt(mean BN running_var), Gaussian weights and inputs."""

    name = "zen"
    needs_data = False
    convention = "log feature perturbation norm plus BN scaling (Zen-score); larger = better"

    def compute(self, ctx: ScoringContext) -> float:
        model = ctx.copy_model()
        generator = ctx.generator(salt=0x2E4)
        gaussian_init(model, generator)
        batch_norms = [
            m for m in model.modules() if isinstance(m, nn.BatchNorm2d) and m.running_var is not None
        ]
        for bn in batch_norms:
            bn.reset_running_stats()
            bn.momentum = ZEN_BN_MOMENTUM
        channels = ctx.batch.inputs.shape[1]
        shape = (ctx.batch.batch_size, channels, ctx.batch.resolution, ctx.batch.resolution)
        x = torch.randn(shape, generator=generator).to(ctx.device)
        eps = torch.randn(shape, generator=generator).to(ctx.device)
        features = pre_gap_features(model)
        model.train()
        with torch.no_grad():
            clean = features(x).double()
            mixed = features(x + MIXUP_GAMMA * eps).double()
        if clean.ndim < 2:
            raise ProxyError(f"zen: pre-pooling features must be batched, got shape {tuple(clean.shape)}")
        difference = (clean - mixed).abs().reshape(clean.shape[0], -1).sum(dim=1).mean()
        score = finite_log(float(difference), "zen: mean L1 feature difference")
        for bn in batch_norms:
            score += 0.5 * finite_log(float(bn.running_var.double().mean()), "zen: BN mean running_var")
        if not math.isfinite(score):
            raise ProxyError(f"zen: score is not finite ({score})")
        return score
