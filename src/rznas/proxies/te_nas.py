"""TE-NAS (Chen et al., ICLR 2021) as a single per-architecture score.

TE-NAS judges a network by two training-free indicators:
- trainability: the condition number of the empirical NTK, K = J J^T with J[n] the
  gradient of sum(logits[n]) w.r.t. every ``*weight`` parameter (conv, linear, BN), per
  sample, BN in train mode, kaiming-normal fan-out initialisation (lower is better);
- expressivity: the number of linear regions, lower-bounded by the number of distinct
  ReLU activation patterns over many inputs, counted on a *thin* twin of the network
  (TE-NAS: C=1, N=1) fed 3,000 3x3 crops in 3 batches of 1,000, kaiming-normal fan-in
  initialisation (higher is better).

TE-NAS itself turns these into ranks within a population of candidate pruning steps
and sums the ranks; a rank needs a population, so it cannot score one architecture.
This proxy exposes ``log(linear regions) - log(cond(NTK))`` instead: both indicators in
log space with equal weight, each contributing with its published direction. It is not
the paper's rank sum (and, like Zen-NAS's port of TE-NAS, uses one repeat, not three).

Cost choices (CPU): the NTK uses the first ``NTK_SAMPLES`` = 16 images of probe batch 0
(TE-NAS uses 72 on NAS-Bench-201; each sample costs one backward pass through the whole
batch's graph, so the cost grows quadratically). Linear regions use TE-NAS's 3 x 1,000
crops when the model exposes ``thin_network()`` (a fresh thin twin, e.g. NAS-Bench-201's
C=1, N=1 network; unlike TE-NAS's it keeps the 3-channel stem, so each 1x3x3 crop of one
random channel is repeated over the 3 input channels); otherwise they are counted on the model itself over probe batch 0,
where a full-width network almost always gives every image its own pattern, so the
count saturates at the batch size and the score reduces to -log cond(NTK) + const.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ProxyError
from .base import PROXIES, Proxy, ScoringContext, finite_log

NTK_SAMPLES = 16
REGION_BATCHES = 3
REGION_BATCH_SIZE = 1000
CROP = 3
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm)


def kaiming_init(model: nn.Module, mode: str, generator: torch.Generator) -> None:
    """TE-NAS initialisation: conv/linear kaiming-normal (``mode`` fan_in/fan_out), bias 0, norms 1/0."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, mode=mode, nonlinearity="relu", generator=generator)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, _NORMS) and module.weight is not None:
                module.weight.fill_(1.0)
                module.bias.zero_()


def ntk_condition_number(model: nn.Module, inputs: torch.Tensor) -> float:
    """lambda_max / lambda_min of the per-sample NTK of sum(logits) (BN statistics from ``inputs``)."""
    params = [p for name, p in model.named_parameters() if name.endswith("weight") and p.requires_grad]
    if not params:
        raise ProxyError("te_nas: the model has no weight parameters to build an NTK from")
    logits = model(inputs)
    rows = []
    for index in range(inputs.shape[0]):
        grads = torch.autograd.grad(logits[index].sum(), params, retain_graph=True, allow_unused=True)
        rows.append(torch.cat([g.reshape(-1) for g in grads if g is not None]))
    jacobian = torch.stack(rows).double()
    eigenvalues = torch.linalg.eigvalsh(jacobian @ jacobian.T)  # ascending
    smallest, largest = float(eigenvalues[0]), float(eigenvalues[-1])
    if not smallest > 0 or not math.isfinite(largest):
        raise ProxyError(
            f"te_nas: the NTK is singular (eigenvalues {smallest:.3g} .. {largest:.3g}); "
            "the samples' gradients are linearly dependent, so its condition number is infinite"
        )
    return largest / smallest


def count_activation_patterns(model: nn.Module, batches: list[torch.Tensor]) -> int:
    """Number of distinct ReLU on/off patterns (over every ReLU's 4-D output) across all inputs."""
    captured: list[torch.Tensor] = []

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if output.ndim == 4:
            captured.append((output.detach() > 0).reshape(output.shape[0], -1))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.ReLU)]
    patterns = []
    try:
        with torch.no_grad():
            for batch in batches:
                captured.clear()
                model(batch)
                if not captured:
                    raise ProxyError("te_nas: the model has no nn.ReLU on 4-D features; no linear regions to count")
                patterns.append(torch.cat(captured, dim=1))
    finally:
        for handle in handles:
            handle.remove()
    return int(torch.unique(torch.cat(patterns).to(torch.uint8), dim=0).shape[0])


def random_crops(images: torch.Tensor, count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` random size x size crops of one random channel of random images (TE-NAS's 1x3x3
    region inputs), repeated over the image channels so a 3-channel stem accepts them."""
    n, _, height, width = images.shape
    if height < size or width < size:
        raise ProxyError(f"te_nas: probe images of {height}x{width} are smaller than the {size}x{size} crops")
    index = torch.randint(0, n, (count,), generator=generator)
    top = torch.randint(0, height - size + 1, (count,), generator=generator)
    left = torch.randint(0, width - size + 1, (count,), generator=generator)
    rows = (top[:, None] + torch.arange(size))[:, :, None]
    cols = (left[:, None] + torch.arange(size))[:, None, :]
    channel = torch.randint(0, images.shape[1], (count,), generator=generator)
    cpu = images.cpu()
    crops = cpu[index[:, None, None], channel[:, None, None], rows, cols]  # (count, size, size)
    return crops[:, None].expand(-1, images.shape[1], -1, -1).contiguous().to(images.device)


@PROXIES.register("te_nas")
class TeNas(Proxy):
    """log(#linear regions) - log(cond(NTK)): TE-NAS's two indicators as one number (not its rank sum)."""

    name = "te_nas"
    needs_data = True  # TE-NAS feeds real images to both indicators
    convention = "log linear-region count minus log NTK condition number; larger = better"

    def compute(self, ctx: ScoringContext) -> float:
        inputs, _ = ctx.batch.chunk(0)
        condition = self._condition_number(ctx, inputs[:NTK_SAMPLES])
        regions = self._linear_regions(ctx, inputs)
        return finite_log(float(regions), "te_nas: linear-region count") - finite_log(
            condition, "te_nas: NTK condition number"
        )

    def _condition_number(self, ctx: ScoringContext, inputs: torch.Tensor) -> float:
        if inputs.shape[0] < 2:
            raise ProxyError("te_nas: the NTK condition number needs at least 2 samples in the probe batch")
        model = ctx.copy_model()
        kaiming_init(model, "fan_out", ctx.generator(salt=0x7E1))
        model.train()
        return ntk_condition_number(model, inputs)

    def _linear_regions(self, ctx: ScoringContext, inputs: torch.Tensor) -> int:
        make_thin = getattr(ctx.original, "thin_network", None)
        generator = ctx.generator(salt=0x7E2)
        if callable(make_thin):
            model = make_thin().to(ctx.device)
            batches = [
                random_crops(ctx.batch.inputs, REGION_BATCH_SIZE, CROP, generator) for _ in range(REGION_BATCHES)
            ]
        else:
            model = ctx.copy_model()
            batches = [inputs]
        kaiming_init(model, "fan_in", generator)
        model.train()
        return count_activation_patterns(model, batches)
