"""Jacob-cov (Mellor et al. 2020, v1): spread of the input-Jacobian correlation spectrum."""
from __future__ import annotations

import numpy as np

from ..errors import ProxyError
from .base import INPUT_JACOBIAN, PROXIES, Proxy, ScoringContext

EPSILON = 1e-5


@PROXIES.register("jacob_cov")
class JacobCov(Proxy):
    """-sum(log(l + k) + 1/(l + k)) over eigenvalues l of corrcoef(J), J = d sum(logits)/dx."""

    name = "jacob_cov"
    requirements = {0: frozenset({INPUT_JACOBIAN})}
    convention = "negated spectrum penalty of the Jacobian correlation; larger = better"

    def compute(self, ctx: ScoringContext) -> float:
        jacobian = ctx.gradient_pass(0).input_jacobian.to("cpu").double().numpy()
        if jacobian.shape[0] < 2:  # corrcoef of one row is a scalar: no spectrum to score
            raise ProxyError("jacob_cov: needs at least 2 samples in the probe batch to correlate their Jacobians")
        with np.errstate(invalid="ignore", divide="ignore"):
            correlations = np.corrcoef(jacobian)
        if not np.all(np.isfinite(correlations)):
            raise ProxyError("jacob_cov: input Jacobian has a constant row (no input dependence)")
        eigenvalues = np.linalg.eigvalsh(correlations)
        return float(-np.sum(np.log(eigenvalues + EPSILON) + 1.0 / (eigenvalues + EPSILON)))
