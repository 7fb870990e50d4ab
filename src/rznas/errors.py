"""One exception tree for rznas; each error carries the CLI exit code it maps to."""
from __future__ import annotations


class RznasError(Exception):
    """Base of every error rznas raises on purpose."""

    exit_code: int = 1


class ConfigError(RznasError):
    """Bad user input: flags, config files, paths, budgets."""

    exit_code = 2


class UnknownName(ConfigError):
    """A registry lookup for a name that is not registered."""


class DataError(ConfigError):
    """A data set or benchmark table is missing or malformed."""


class PluginError(ConfigError):
    """An installed plug-in (an ``rznas.spaces`` / ``rznas.proxies`` entry point) is broken."""


class InvalidArchitecture(RznasError):
    """An architecture that does not belong to its search space."""

    exit_code = 3


class BudgetExceeded(InvalidArchitecture):
    """A valid architecture that breaks a parameter, FLOPs or layer budget."""


class ProxyError(RznasError):
    """A proxy could not produce a finite score (NaN, inf, out of memory, ...)."""

    exit_code = 4


class LLMError(RznasError):
    """A language-model call failed; ``retryable`` says whether trying again may help."""

    exit_code = 5

    def __init__(self, message: str, *, retryable: bool = False, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class ParseError(RznasError):
    """A model reply could not be parsed into the requested structure."""

    exit_code = 6


class BudgetExhausted(LLMError):
    """The LLM token or cost budget (``--max-tokens`` / ``--max-cost-usd``) is spent; never retryable."""

    def __init__(self, message: str):
        super().__init__(message, retryable=False)
