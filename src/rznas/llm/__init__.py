"""LLM clients: backends (openai, anthropic, local, scripted), retries, costs, budgets, reply parsing.

Use :func:`create_client` with a ``BACKEND:MODEL`` spec; see docs/llm.md.
"""
from __future__ import annotations

from ..errors import BudgetExhausted, LLMError, ParseError
from . import anthropic_backend, local_backend, openai_backend, scripted  # noqa: F401 - register backends
from .base import BACKENDS, Completion, LLMClient, Message
from .budget import UsageBudget, UsageSnapshot
from .client import ManagedClient, create_client, parse_spec
from .parse import extract_json_object
from .pricing import DEFAULT_PRICES, Price, PriceTable
from .retry import RetryPolicy
from .scripted import SCRIPTS

__all__ = [
    "BACKENDS",
    "UsageBudget",
    "BudgetExhausted",
    "Completion",
    "DEFAULT_PRICES",
    "LLMClient",
    "LLMError",
    "ManagedClient",
    "Message",
    "ParseError",
    "Price",
    "PriceTable",
    "RetryPolicy",
    "SCRIPTS",
    "UsageSnapshot",
    "create_client",
    "extract_json_object",
    "parse_spec",
]
