"""rznas: LLM-guided neural architecture search with a reflective zero-cost strategy."""
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

__all__ = [
    "Architecture",
    "BudgetExceeded",
    "ConfigError",
    "DataError",
    "InvalidArchitecture",
    "LLMError",
    "ParseError",
    "PluginError",
    "ProxyError",
    "RznasError",
    "UnknownName",
    "__version__",
]
