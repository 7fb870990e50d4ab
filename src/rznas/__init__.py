"""rznas: LLM-guided neural architecture search with a reflective zero-cost strategy.

The Python API (docs/api.md): :func:`run_search` runs a search, :func:`score` scores
architectures with zero-cost proxies, :func:`load_run` reads a run directory;
:func:`list_spaces` / :func:`list_proxies` list what is registered (plug-ins included).
``import rznas`` stays light: torch is imported when one of them is first called.
"""
from typing import Any

from .api import Run, Score, list_proxies, list_spaces, load_run, run_search, score
from .arch import Architecture
from .errors import (
    BudgetExceeded,
    ConfigError,
    DataError,
    InvalidArchitecture,
    LLMError,
    ParseError,
    PluginError,
    ProxyError,
    RznasError,
    UnknownName,
)

__version__ = "0.1.0"

#: public names imported on first access (they pull in torch)
_LAZY = {
    "SearchConfig": ("rznas.search.config", "SearchConfig"),
    "SearchSpace": ("rznas.spaces", "SearchSpace"),
    "Proxy": ("rznas.proxies", "Proxy"),
    "get_space": ("rznas.spaces", "get_space"),
    "get_proxy": ("rznas.proxies", "get_proxy"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'rznas' has no attribute {name!r}")


__all__ = [
    "Architecture",
    "BudgetExceeded",
    "ConfigError",
    "DataError",
    "InvalidArchitecture",
    "LLMError",
    "ParseError",
    "PluginError",
    "Proxy",
    "ProxyError",
    "Run",
    "RznasError",
    "Score",
    "SearchConfig",
    "SearchSpace",
    "UnknownName",
    "__version__",
    "get_proxy",
    "get_space",
    "list_proxies",
    "list_spaces",
    "load_run",
    "run_search",
    "score",
]
