"""Zero-cost proxies; importing this package registers every built-in proxy."""
from .base import PROXIES, Proxy, ProxyResult, ScoringContext, evaluate, get_proxy, score_model
from . import fisher, grad_norm, jacob_cov, naswot, random_proxy, size, snip, zico  # noqa: F401

__all__ = ["PROXIES", "Proxy", "ProxyResult", "ScoringContext", "evaluate", "get_proxy", "score_model"]
