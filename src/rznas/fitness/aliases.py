"""Named ensembles. Components are checked when a name is used, so an alias may name proxies
that another package (or a later version) registers."""
from __future__ import annotations

from .ensemble import register_ensemble

#: AZ-NAS (Lee & Ham, CVPR 2024): four scores from one forward + backward, summed log-ranks
AZ_NAS_COMPONENTS = ("az_expressivity", "az_progressivity", "az_trainability", "az_complexity")

register_ensemble(
    "az_nas",
    AZ_NAS_COMPONENTS,
    aggregation="sum_log_cdf",
    description="AZ-NAS: expressivity, progressivity, trainability and complexity, sum of log ranks",
)

#: the subset of the built-in proxies with the best held-out rho on NB201 CIFAR-10 (chosen on the
#: even-indexed half of the committed N = 1000 sample, rho 0.891 on the odd half; see
#: benchmarks/results/correlation/ENSEMBLE_CEILING.md): size, Jacobian covariance and SynFlow
register_ensemble(
    "zc_trio",
    ("flops", "jacob_cov", "synflow"),
    aggregation="sum_log_cdf",
    description="flops + jacob_cov + synflow, sum of log ranks (best held-out rho on NB201 CIFAR-10)",
)
