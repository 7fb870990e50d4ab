"""SynFlow (Tanaka et al., NeurIPS 2020) as a zero-cost proxy (Abdelfattah et al., ICLR 2021).

As the zero-cost-nas reference ("synflow", bn=False): on a private copy with every
BatchNorm disabled, in float64, all parameters replaced by their absolute values, one
all-ones input of batch 1 at the probe resolution; R = sum(outputs) is back-propagated
and the score is sum |w * dR/dw| over the conv/linear weights. The raw total spans
1e26..1e61 on NAS-Bench-201, so its natural log is exposed.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import ProxyError
from .base import PROXIES, Proxy, ScoringContext, finite_log, prunable_layers

_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def remove_batch_norm(model: nn.Module) -> nn.Module:
    """Replace every BatchNorm module of ``model`` by an identity, in place; returns ``model``."""
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, _BATCH_NORMS):
                setattr(parent, child_name, nn.Identity())
    return model


@PROXIES.register("synflow")
class Synflow(Proxy):
    """log sum |w * dR/dw| on a BN-free |w| copy in float64 with an all-ones input (data-free)."""

    name = "synflow"
    needs_data = False
    convention = "log of the synaptic-flow total sum|w * dR/dw|; larger = better (as published)"

    def compute(self, ctx: ScoringContext) -> float:
        model = remove_batch_norm(ctx.copy_model()).double()
        with torch.no_grad():
            for tensor in model.state_dict().values():
                if tensor.is_floating_point():
                    tensor.abs_()
        channels, height, width = ctx.batch.inputs.shape[1:]
        ones = torch.ones(1, channels, height, width, dtype=torch.float64, device=ctx.device)
        model.zero_grad(set_to_none=True)
        model(ones).sum().backward()
        total = torch.zeros((), dtype=torch.float64, device=ctx.device)
        for _, layer in prunable_layers(model):
            if layer.weight.grad is not None:
                total += (layer.weight.detach() * layer.weight.grad).abs().sum()
        total_value = float(total)
        if total_value == 0.0:
            raise ProxyError(
                "synflow: the synaptic flow is exactly zero (no path carries signal from input to output)"
            )
        return finite_log(total_value, "synflow total")
