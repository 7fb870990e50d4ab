"""USD prices per million tokens, per model, and the cost of one call.

The table is configurable (``price_table=`` of ``create_client``); lookups match the
exact model name first, then the longest registered prefix, so dated snapshots such as
``gpt-4o-2024-08-06`` get the ``gpt-4o`` price and ``gpt-4o-mini-...`` the mini price.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from ..errors import ConfigError


@dataclass(frozen=True)
class Price:
    """USD per 1M input tokens and per 1M output tokens."""

    input_per_mtok: float
    output_per_mtok: float

    def __post_init__(self) -> None:
        if self.input_per_mtok < 0 or self.output_per_mtok < 0:
            raise ConfigError(f"prices must be >= 0, got {self}")

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """Cost in USD of a call with these token counts."""
        return (input_tokens * self.input_per_mtok + output_tokens * self.output_per_mtok) / 1e6


FREE = Price(0.0, 0.0)

#: defaults (list prices, USD per 1M tokens); override with your contract's prices
DEFAULT_PRICES: dict[str, Price] = {
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "claude-3-5-sonnet": Price(3.00, 15.00),
    "claude-3-5-haiku": Price(0.80, 4.00),
    "claude-3-7-sonnet": Price(3.00, 15.00),
    "claude-sonnet-4": Price(3.00, 15.00),
}

#: backends that run on your own hardware cost nothing per token
FREE_BACKENDS = frozenset({"local", "scripted"})


class PriceTable:
    """Model name -> :class:`Price`, with prefix matching and free local backends."""

    def __init__(self, prices: Mapping[str, Price | tuple[float, float] | Mapping[str, float]] | None = None):
        table = dict(DEFAULT_PRICES)
        for name, value in (prices or {}).items():
            table[name] = _as_price(name, value)
        self._prices = table

    def lookup(self, backend: str, model: str) -> Price | None:
        """The price of ``model`` on ``backend``; None when the model is not in the table."""
        if backend in FREE_BACKENDS:
            return FREE
        if model in self._prices:
            return self._prices[model]
        matches = [name for name in self._prices if model.startswith(name)]
        return self._prices[max(matches, key=len)] if matches else None

    def names(self) -> list[str]:
        """Models with a price, sorted."""
        return sorted(self._prices)


def _as_price(name: str, value: Price | tuple[float, float] | Mapping[str, float]) -> Price:
    if isinstance(value, Price):
        return value
    if isinstance(value, Mapping):
        try:
            return Price(float(value["input"]), float(value["output"]))
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"price for {name!r} needs numeric 'input' and 'output' (USD per 1M tokens)") from None
    try:
        inp, out = value
        return Price(float(inp), float(out))
    except (TypeError, ValueError):
        raise ConfigError(f"price for {name!r} must be (input, output) USD per 1M tokens, got {value!r}") from None
