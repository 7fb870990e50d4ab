"""MeCo (Jiang et al., NeurIPS 2023): minimum eigenvalue of the feature maps' correlation.

As MeCo's NB201 correlation script (``correlation/NAS_Bench_201.py``, measure ``meco``):
one real image (the first of probe batch 0), the network's own initial weights, train
mode (BN statistics of that image); a forward hook on *every* module (the model itself
included) takes its output for the image, a C x (H*W) matrix of channels over
positions, forms the C x C Pearson correlation matrix between channels (NaN/inf entries,
from constant channels, set to 0) and keeps its smallest eigenvalue; the score is the
sum over modules. Larger = better (decorrelated channels).

Outputs that are not tensors are skipped; one-dimensional outputs (e.g. logits, pooled
vectors) give 1 x 1 "maps" whose correlation is 0/0 and contribute 0, as in MeCo.
Eigenvalues are taken in float64 with ``eigvalsh`` (MeCo: float32 ``eig``, real part).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from ..errors import ProxyError
from .base import PROXIES, Proxy, ScoringContext


def min_correlation_eigenvalue(feature: torch.Tensor) -> float:
    """Smallest eigenvalue of the row-wise Pearson correlation of ``feature`` reshaped to rows x rest."""
    rows = feature.reshape(feature.shape[0], -1).double()
    if rows.shape[0] < 2:  # a single row: MeCo's eig would fail; no correlation to speak of
        return 0.0
    if rows.shape[1] < 2:  # one position: every correlation is 0/0, set to 0 as MeCo does
        return 0.0
    corr = torch.corrcoef(rows)
    corr = torch.nan_to_num(corr, nan=0.0, posinf=0.0, neginf=0.0)
    return float(torch.linalg.eigvalsh(corr)[0])


def _meco_hook(values: list[float]) -> Callable:
    def hook(module: nn.Module, inputs: tuple, output: object) -> None:
        if not isinstance(output, torch.Tensor) or output.ndim < 2:
            return
        values.append(min_correlation_eigenvalue(output[0].detach()))

    return hook


def meco_score(model: nn.Module, image: torch.Tensor) -> float:
    """Sum over all modules of the minimum channel-correlation eigenvalue for one image (1, C, H, W)."""
    values: list[float] = []
    handles = [module.register_forward_hook(_meco_hook(values)) for module in model.modules()]
    try:
        with torch.no_grad():
            model(image)
    except ValueError as exc:  # e.g. BatchNorm on a 1x1 map cannot train on a single image
        raise ProxyError(f"meco: the forward pass of a single image failed ({exc})") from exc
    finally:
        for handle in handles:
            handle.remove()
    finite = [v for v in values if math.isfinite(v)]  # MeCo drops NaN/inf per-module values
    if not finite:
        raise ProxyError("meco: no module produced a feature map")
    return sum(finite)


@PROXIES.register("meco")
class Meco(Proxy):
    """Sum over every module of the minimum eigenvalue of its channel correlation, on one image."""

    name = "meco"
    needs_data = True  # MeCo's NB201 results use one real training image
    convention = "sum of minimum channel-correlation eigenvalues over modules; larger = better"

    def compute(self, ctx: ScoringContext) -> float:
        inputs, _ = ctx.batch.chunk(0)
        model = ctx.copy_model()
        model.train()
        return meco_score(model, inputs[:1].clone())
