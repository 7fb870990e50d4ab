"""MAE-DET entropy (Sun et al., ICML 2022): maximum-entropy score of a detection backbone.

On a private copy: conv/linear weights ~ N(0, 1), biases 0, BN weight 1 / bias 0, BN in
train mode (batch statistics); input x ~ N(0, 1) with the probe's batch size and
resolution; no labels. For each output stage s of the multi-scale backbone
(C3, C4, C5 = ``model.feature_modules()``), the entropy of its Gaussian-approximated
features is

    H_s = 0.5 * log Var(F_s) + sum over the BatchNorm layers run before F_s of
          0.5 * log mean_c Var_batch(BN input)_c

(the BN terms restore the scale each BN normalised away, as Zen-NAS and MAE-DET do;
MAE-DET's TinyNAS code divides by the std after every block instead, which is the
same quantity). The score is sum_s w_s H_s with MAE-DET's multi-scale weights
w = (1, 1, 6) for (C3, C4, C5). Higher is better.

Models without ``feature_modules`` (single-scale classifiers) are scored on their
features before global pooling (``forward_pre_gap`` or the input of the last global
pool), with weight 1.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from ..errors import ProxyError
from .base import PROXIES, Proxy, ScoringContext, finite_log
from .zen import gaussian_init, pre_gap_features

#: MAE-DET multi_block_ratio for (C1, C2, C3, C4, C5) is (0, 0, 1, 1, 6)
STAGE_WEIGHTS = (1.0, 1.0, 6.0)


def stage_weights(count: int) -> tuple[float, ...]:
    """Weights for ``count`` output stages: MAE-DET's (1, 1, 6) for C3-C5, the last ones kept."""
    if count == 1:
        return (1.0,)
    if count <= len(STAGE_WEIGHTS):
        return STAGE_WEIGHTS[-count:]
    return (1.0,) * (count - 1) + (STAGE_WEIGHTS[-1],)


def _bn_hook(log_scales: list[float]) -> Callable:
    def hook(module: nn.Module, inputs: tuple) -> None:
        x = inputs[0].detach().double()
        var = x.transpose(0, 1).reshape(x.shape[1], -1).var(dim=1, unbiased=True).mean()
        log_scales.append(0.5 * finite_log(float(var), "maedet: BN input variance"))

    return hook


@PROXIES.register("maedet")
class MaeDetEntropy(Proxy):
    """Weighted sum over C3-C5 of 0.5 log Var(features) + sum of log BN scales (Gaussian init and input)."""

    name = "maedet"
    needs_data = False
    convention = "multi-scale feature entropy (MAE-DET); larger = better"

    def compute(self, ctx: ScoringContext) -> float:
        model = ctx.copy_model()
        generator = ctx.generator(salt=0x3AED)
        gaussian_init(model, generator)
        model.train()
        shape = (ctx.batch.batch_size, ctx.batch.inputs.shape[1], ctx.batch.resolution, ctx.batch.resolution)
        x = torch.randn(shape, generator=generator).to(ctx.device)
        if x.shape[0] < 2:
            raise ProxyError("maedet: needs a batch of at least 2 inputs for BN statistics")

        log_scales: list[float] = []
        stages: list[tuple[float, int]] = []  # (0.5 log Var(F_s), number of BN layers run before F_s)

        def record(output: torch.Tensor) -> None:
            var = float(output.detach().double().var())
            stages.append((0.5 * finite_log(var, "maedet: feature variance"), len(log_scales)))

        hooks = [m.register_forward_pre_hook(_bn_hook(log_scales))
                 for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        feature_modules = list(model.feature_modules()) if callable(getattr(model, "feature_modules", None)) else []
        hooks += [m.register_forward_hook(lambda mod, inp, out: record(out)) for m in feature_modules]
        try:
            with torch.no_grad():
                if feature_modules:
                    model(x)
                else:
                    record(pre_gap_features(model)(x))
        finally:
            for handle in hooks:
                handle.remove()
        if not stages:
            raise ProxyError("maedet: the model produced no stage features")
        prefix = [0.0]
        for value in log_scales:
            prefix.append(prefix[-1] + value)
        score = sum(w * (h + prefix[n]) for w, (h, n) in zip(stage_weights(len(stages)), stages))
        if not math.isfinite(score):
            raise ProxyError(f"maedet: score is not finite ({score})")
        return score
