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
