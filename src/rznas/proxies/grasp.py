"""GraSP (Wang et al., ICLR 2020) as a zero-cost proxy (Abdelfattah et al., ICLR 2021).

As the zero-cost-nas reference ("grasp", BN kept, train mode, T=1, one batch): g is the
CE-loss gradient w.r.t. the conv/linear weights on batch 0 (shared with grad_norm, snip
and the other gradient proxies), taken with ``create_graph`` so that the same pass also
gives Hg = d(g_fixed . dL/dw)/dw (the reference repeats the forward pass for this: same
batch, same weights, same values); the score is sum over layers of sum(-w * Hg).

Sign: zero-cost-nas negates GraSP's pruning score ("-theta_q Hg") because accuracy
correlated negatively with +theta Hg; with that sign their NAS-Bench-201 notebook reports
Spearman +0.514 (CIFAR-10), and NASLib's precomputed scores agree. The same quantity is
exposed here unchanged, so larger = better.
"""
from __future__ import annotations

import torch

from ..errors import ProxyError
from .base import GRADS, GRAPH, PROXIES, Proxy, ScoringContext, prunable_layers


@PROXIES.register("grasp")
class Grasp(Proxy):
    """sum(-w * Hg) over conv/linear weights, g = CE-loss gradient on batch 0 (BN in train mode)."""

    name = "grasp"
    requirements = {0: frozenset({GRADS, GRAPH})}
    convention = "sum of -weight x Hessian-gradient product (zero-cost-nas sign); larger = better"

    def compute(self, ctx: ScoringContext) -> float:
        first = ctx.gradient_pass(0)
        layers = prunable_layers(ctx.working)  # the copy the pass differentiated
        weights = [layer.weight for _, layer in layers]
        inner = sum(
            (first.grads[name] * first.graph_grads[name]).sum()
            for name, _ in layers
            if first.graph_grads[name] is not None
        )
        if not isinstance(inner, torch.Tensor) or not inner.requires_grad:
            raise ProxyError("grasp: the loss does not depend on any conv/linear weight")
        hessian_grads = torch.autograd.grad(inner, weights, allow_unused=True)
        total = 0.0
        for weight, hg in zip(weights, hessian_grads):
            if hg is not None:
                total += float((-weight.detach() * hg).double().sum())
        return total
