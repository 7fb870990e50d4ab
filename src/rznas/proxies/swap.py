"""SWAP (Peng et al., ICLR 2024): sample-wise activation patterns, with and without size regulariser.

As the official ``src/metrics/swap.py`` with ``correlation.py``'s defaults: 16 real images
(the first 16 of the probe), on a private copy re-initialised ``REPEATS`` = 32 times with
conv/linear weights ~ N(0, 1), biases 0, BN weight 1 / bias 0, BN in train mode. Each
repeat hooks every ``nn.ReLU`` whose input is 4-D, concatenates the signs of their
outputs into a samples x neurons matrix and counts the distinct *columns*: the number
of different on/off patterns a neuron shows across the 16 samples. The score is the mean
count over the repeats (larger = more expressive).

``swap`` multiplies the count by SWAP's size regulariser exp(-(P - mu)^2 / sigma), P the
parameter count in thousands (the official unit). The official code ships no NB201 values
for mu and sigma (its regulariser is off by default); rznas uses mu = 1500 (thousand
parameters, about the largest NB201 network) and sigma = 1.5e6 (the mu = sigma = 1.5 in
millions of a public NAS-Bench port of SWAP), stated here rather than tuned to accuracy.
``swap_noreg`` is the unregularised count (the official default).
"""
from __future__ import annotations

import math
from typing import Callable, ClassVar

import torch
from torch import nn

from ..errors import ProxyError
from .base import PROXIES, Proxy, ScoringContext
from .size import count_parameters
from .zen import gaussian_init

SAMPLES = 16  # correlation.py --input_samples
REPEATS = 32  # correlation.py --repeats
_SALT = 0x5A4F
_MAX_PACKED = 62  # samples that fit one int64 code per neuron
_MAX_BITMAP = 20  # up to 2^20 codes: mark them in a bitmap instead of sorting


def _pattern_hook(seen: list[torch.Tensor], weights: torch.Tensor) -> Callable:
    """Forward hook: pack each neuron's on/off signs over the samples into one integer code and
    record it (a bitmap over all 2^samples codes when that is small, else the distinct codes)."""

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if isinstance(inputs, tuple) and inputs and inputs[0].ndim == 4:
            on = output.detach().reshape(output.shape[0], -1) > 0
            codes = (on.to(torch.int64) * weights[:, None]).sum(dim=0)
            if seen[0].numel():
                seen[0][codes] = True
            else:
                seen.append(torch.unique(codes))

    return hook


def activation_pattern_count(model: nn.Module, inputs: torch.Tensor) -> int:
    """Number of distinct sample-wise activation patterns over all ReLU neurons of ``model``."""
    samples = inputs.shape[0]
    if not 2 <= samples <= _MAX_PACKED:
        raise ProxyError(f"swap: needs 2..{_MAX_PACKED} samples, got {samples}")
    weights = (2 ** torch.arange(samples, dtype=torch.int64)).to(inputs.device)
    bitmap_size = 2**samples if samples <= _MAX_BITMAP else 0
    seen = [torch.zeros(bitmap_size, dtype=torch.bool, device=inputs.device)]
    handles = [m.register_forward_hook(_pattern_hook(seen, weights)) for m in model.modules() if isinstance(m, nn.ReLU)]
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    if bitmap_size:
        count = int(seen[0].sum())
    else:
        count = int(torch.unique(torch.cat(seen[1:])).numel()) if len(seen) > 1 else 0
    if count == 0:
        raise ProxyError("swap: the model has no nn.ReLU on 4-D features")
    return count


def mean_pattern_count(ctx: ScoringContext) -> float:
    """Mean pattern count over ``REPEATS`` Gaussian re-inits on the first ``SAMPLES`` probe images."""
    inputs = ctx.batch.inputs[:SAMPLES]
    model = ctx.copy_model()
    model.train()
    generator = ctx.generator(salt=_SALT)
    counts = []
    for _ in range(REPEATS):
        gaussian_init(model, generator)
        counts.append(activation_pattern_count(model, inputs))
    return sum(counts) / len(counts)


def size_regulariser(parameters_k: float, mu: float, sigma: float) -> float:
    """SWAP's exp(-(P - mu)^2 / sigma) for P thousand parameters."""
    return math.exp(-((parameters_k - mu) ** 2) / sigma)


@PROXIES.register("swap_noreg")
class SwapNoReg(Proxy):
    """Mean distinct activation-pattern count over 32 Gaussian re-inits, 16 real images (no regulariser)."""

    name = "swap_noreg"
    needs_data = True
    convention = "distinct sample-wise ReLU patterns (SWAP, unregularised); larger = better"
    #: (mu, sigma) of the size regulariser in thousands of parameters; None = off
    regulariser: ClassVar[tuple[float, float] | None] = None

    def compute(self, ctx: ScoringContext) -> float:
        if ctx.batch.inputs.shape[0] < SAMPLES:
            raise ProxyError(f"{self.name}: needs {SAMPLES} probe images, the probe has {ctx.batch.inputs.shape[0]}")
        score = float(ctx.shared("swap", lambda: mean_pattern_count(ctx)))  # shared by swap and swap_noreg
        if self.regulariser is not None:
            mu, sigma = self.regulariser
            score *= size_regulariser(count_parameters(ctx.original) / 1e3, mu, sigma)
        return score


@PROXIES.register("swap")
class Swap(SwapNoReg):
    """SWAP with its size regulariser exp(-(P - mu)^2 / sigma), P in thousands of parameters."""

    name = "swap"
    convention = "distinct sample-wise ReLU patterns x size regulariser (SWAP); larger = better"
    regulariser = (1500.0, 1.5e6)
