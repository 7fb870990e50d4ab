"""AZ-NAS (Lee & Ham, CVPR 2024): four training-free components from one forward + backward.

As AZ-NAS's NB201 ``compute_az_nas_score``: on a private copy, conv/linear weights
kaiming-normal (fan_in, ReLU gain), biases 0, BN weight 1 / bias 0, BN in train mode;
the input is Gaussian noise with the probe's batch size and resolution (AZ-NAS scores
NB201 on random inputs, not images). The network's block features f_0 (stem), f_1 .. f_L
(every cell and reduction block) are read as ``block_features`` describes (a model's own
``cell_features(x)`` method, else the layout of rznas's NB201, DARTS or macro networks).

- expressivity = sum_l H(f_l), with H the entropy of the normalised eigenvalues of the
  channel covariance of f_l over batch x positions (isotropic features score high);
- progressivity = min_l H(f_l) - H(f_{l-1}) (every block should add expressivity);
- trainability = mean over blocks of 2 - s - 1/s, with s the largest singular value of
  the (sign-random) Jacobian estimate E[g_in g_out^T] between a block's output and input
  (0 when gradients keep their scale, negative when they explode or vanish);
- complexity = FLOPs (AZ-NAS reads them from the NB201 API; here multiply-adds, as ``flops``).

AZ-NAS combines the four by the sum of log-ranks inside a population; that aggregation is
population-dependent and lives with the proxy ensembles, not here. The three data
components share one forward and one backward per architecture (``ScoringContext.shared``).
A block that passes gradients unchanged (output == input, e.g. a cell whose only path is a
skip) gets trainability -inf from AZ-NAS, and a ProxyError of az_trainability here; all-zero
features (no input-output path) make the entropies NaN there and ProxyErrors here. One
deliberate difference: AZ-NAS also gets NaN when round-off makes a covariance eigenvalue
slightly negative (rank-deficient features, e.g. small batches or parameter-free NB201
cells); rznas clamps those eigenvalues to 0 (a covariance has none below 0), so such
networks get a finite expressivity instead of AZ-NAS's -inf.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..errors import ProxyError
from .base import PROXIES, Proxy, ScoringContext
from .size import Flops
from .te_nas import kaiming_init

ENTROPY_EPS = 1e-8  # AZ-NAS: -p log(p + 1e-8)
SINGULAR_EPS = 1e-6  # AZ-NAS: 1 / (s + 1e-6)
SHARED_KEY = "az_nas"
_SALT = 0xA2A5


@dataclass(frozen=True)
class AzNasComponents:
    """The three data-dependent AZ-NAS components of one network; a degenerate network gets
    AZ-NAS's own values (-inf trainability for an identity block, NaN entropies for all-zero
    features), which the proxies turn into ProxyErrors with the reason."""

    expressivity: float
    progressivity: float
    trainability: float

    def value(self, component: str) -> float:
        """One component, or a ProxyError saying why AZ-NAS would not rank it."""
        value = getattr(self, component)
        if math.isfinite(value):
            return value
        if component == "trainability" and value == -math.inf:
            raise ProxyError("az_trainability: a block passes gradients unchanged (AZ-NAS scores it -inf)")
        raise ProxyError(
            f"az_{component}: not finite ({value}): some block's features are all zero (e.g. no path from "
            "input to output), so their eigen-spectrum entropy is undefined (AZ-NAS scores it -inf)"
        )


def stem_cell_features(model: nn.Module, inputs: torch.Tensor) -> list[torch.Tensor]:
    """NB201 layout (``stem``, then ``cells`` of one-input blocks): the stem's output and every
    cell's and reduction block's output; the head is not run (AZ-NAS's extract_cell_features)."""
    features = [model.stem(inputs)]
    for block in model.cells:
        features.append(block(features[-1]))
    return features


def two_input_cell_features(model: nn.Module, inputs: torch.Tensor) -> list[torch.Tensor]:
    """DARTS layout (cells read the two previous states): the stem's output and every cell's."""
    s0 = s1 = model.stem(inputs)
    features = [s1]
    for cell in model.cells:
        s0, s1 = s1, cell(s0, s1, model.drop_path_prob)
        features.append(s1)
    return features


def sequential_block_features(model: nn.Module, inputs: torch.Tensor) -> list[torch.Tensor]:
    """Macro layout (``blocks`` in sequence): every block's output, a block-level analogue of
    AZ-NAS's MobileNet code (which reads every ReLU output inside the blocks)."""
    features, x = [], inputs
    for block in model.blocks:
        x = block(x)
        features.append(x)
    return features


def _method_features(model: nn.Module, inputs: torch.Tensor) -> list[torch.Tensor]:
    method = getattr(model, "cell_features", None) or getattr(model, "extract_cell_features")
    return list(method(inputs))


#: how to read a network's block features, first match wins: a method the model provides,
#: else the layout of rznas's own networks (read from outside so their source, which the
#: mutation prompt shows the LLM, stays as it is)
FEATURE_LAYOUTS: tuple[tuple[str, Callable[[nn.Module], bool], Callable], ...] = (
    ("cell_features method", lambda m: callable(getattr(m, "cell_features", None))
     or callable(getattr(m, "extract_cell_features", None)), _method_features),
    ("DARTS stem + two-input cells", lambda m: all(hasattr(m, a) for a in ("stem", "cells", "drop_path_prob")),
     two_input_cell_features),
    ("NB201 stem + cells", lambda m: hasattr(m, "stem") and isinstance(getattr(m, "cells", None), nn.Module),
     stem_cell_features),
    ("macro blocks", lambda m: isinstance(getattr(m, "blocks", None), nn.ModuleList), sequential_block_features),
)


def block_features(model: nn.Module, inputs: torch.Tensor) -> list[torch.Tensor]:
    """f_0 .. f_L: the block-wise features AZ-NAS scores, by the first matching layout."""
    for _, matches, extract in FEATURE_LAYOUTS:
        if matches(model):
            features = extract(model, inputs)
            break
    else:
        raise ProxyError(
            "az_nas: cannot find the model's blocks: give it a cell_features(x) method returning the "
            "stem's and every block's output (rznas's NB201, DARTS and macro networks are read directly)"
        )
    if len(features) < 2:
        raise ProxyError(f"az_nas: needs at least 2 block features, the model gave {len(features)}")
    if any(f.ndim != 4 for f in features):
        raise ProxyError("az_nas: block features must be NCHW feature maps")
    return features


def feature_entropy(feature: torch.Tensor) -> float:
    """Entropy of the normalised eigenvalue spectrum of the channel covariance of ``feature``."""
    b, c, h, w = feature.shape
    flat = feature.detach().permute(0, 2, 3, 1).reshape(b * h * w, c)
    flat = flat - flat.mean(dim=0, keepdim=True)
    covariance = flat.t() @ flat / flat.shape[0]
    # a covariance is positive semi-definite: negative eigenvalues are round-off (rank-deficient
    # features, b*h*w < c); AZ-NAS takes log(p + 1e-8) of them and gets NaN, here they count as 0
    eigenvalues = torch.linalg.eigvalsh(covariance).clamp(min=0)
    p = eigenvalues / eigenvalues.sum()
    return float((-p * torch.log(p + ENTROPY_EPS)).sum())


def block_trainability(f_in: torch.Tensor, f_out: torch.Tensor, generator: torch.Generator) -> float:
    """2 - s - 1/s for the largest singular value s of E[g_in g_out^T] (Rademacher g_out);
    -inf, as in AZ-NAS, when the block passes the gradient unchanged."""
    g_out = (torch.bernoulli(torch.full_like(f_out, 0.5), generator=generator) - 0.5) * 2
    (g_in,) = torch.autograd.grad(f_out, f_in, grad_outputs=g_out, retain_graph=False)
    if g_in.shape == g_out.shape and torch.equal(g_in, g_out):
        return -math.inf  # an identity block: AZ-NAS's value
    if g_in.shape[2:] != g_out.shape[2:]:
        g_in = nn.functional.pixel_unshuffle(g_in, g_in.shape[2] // g_out.shape[2])
    bo, co, ho, wo = g_out.shape
    g_out = g_out.permute(0, 2, 3, 1).reshape(bo * ho * wo, co)
    g_in = g_in.permute(0, 2, 3, 1).reshape(-1, g_in.shape[1])
    jacobian = g_in.t() @ g_out / (bo * ho * wo)
    largest = float(torch.linalg.svdvals(jacobian).max())
    return -largest - 1.0 / (largest + SINGULAR_EPS) + 2.0


def az_nas_components(model: nn.Module, inputs: torch.Tensor, generator: torch.Generator) -> AzNasComponents:
    """Expressivity, progressivity and trainability of ``model`` (already initialised) on ``inputs``.

    ``generator`` draws the Rademacher output gradients, last block first (AZ-NAS's order).
    """
    with torch.enable_grad():
        features = block_features(model, inputs)
        entropies = [feature_entropy(f) for f in features]
        scores = [block_trainability(features[i - 1], features[i], generator) for i in reversed(range(1, len(features)))]
    gains = [b - a for a, b in zip(entropies, entropies[1:])]
    return AzNasComponents(
        expressivity=sum(entropies),
        progressivity=math.nan if any(math.isnan(g) for g in gains) else min(gains),  # np.min keeps NaN
        trainability=sum(scores) / len(scores),
    )


def context_components(ctx: ScoringContext) -> AzNasComponents:
    """The components for ``ctx``'s architecture, computed once and shared by the three proxies."""

    def compute() -> AzNasComponents:
        model = ctx.copy_model()
        generator = ctx.generator(salt=_SALT)
        kaiming_init(model, "fan_in", generator)
        model.train()
        shape = (ctx.batch.batch_size, ctx.batch.inputs.shape[1], ctx.batch.resolution, ctx.batch.resolution)
        inputs = torch.randn(shape, generator=generator).to(ctx.device)
        return az_nas_components(model, inputs, generator)

    return ctx.shared(SHARED_KEY, compute)  # type: ignore[return-value]


@PROXIES.register("az_expressivity")
class AzExpressivity(Proxy):
    """Sum over blocks of the eigen-spectrum entropy of the channel covariance (AZ-NAS)."""

    name = "az_expressivity"
    needs_data = False
    convention = "sum of feature eigen-spectrum entropies (AZ-NAS expressivity); larger = better"

    def compute(self, ctx: ScoringContext) -> float:
        return context_components(ctx).value("expressivity")


@PROXIES.register("az_progressivity")
class AzProgressivity(Proxy):
    """Smallest entropy increase from one block to the next (AZ-NAS)."""

    name = "az_progressivity"
    needs_data = False
    convention = "minimum block-to-block expressivity gain (AZ-NAS progressivity); larger = better"

    def compute(self, ctx: ScoringContext) -> float:
        return context_components(ctx).value("progressivity")


@PROXIES.register("az_trainability")
class AzTrainability(Proxy):
    """Mean over blocks of 2 - s - 1/s, s = spectral norm of the block Jacobian estimate (AZ-NAS)."""

    name = "az_trainability"
    needs_data = False
    convention = "mean of 2 - s - 1/s over blocks, 0 at s = 1 (AZ-NAS trainability); larger = better"

    def compute(self, ctx: ScoringContext) -> float:
        return context_components(ctx).value("trainability")


@PROXIES.register("az_complexity")
class AzComplexity(Flops):
    """AZ-NAS's complexity component: multiply-adds per image in millions (same number as ``flops``)."""

    name = "az_complexity"
    convention = "multiply-adds per image (millions) at the probe's resolution, AZ-NAS complexity; larger = better"
