"""Zero-cost proxies; importing this package registers every built-in proxy."""
from .base import PROXIES, Proxy, ProxyResult, ScoringContext, evaluate, get_proxy, score_model
from . import (  # noqa: F401
    az_nas,
    fisher,
    grad_norm,
    grasp,
    jacob_cov,
    maedet,
    meco,
    naswot,
    random_proxy,
    size,
    snip,
    swap,
    synflow,
    te_nas,
    zen,
    zico,
)

__all__ = ["PROXIES", "Proxy", "ProxyResult", "ScoringContext", "evaluate", "get_proxy", "score_model"]
