"""The LLMClient protocol every backend implements, and the backend registry.

A backend turns chat messages into a :class:`Completion` (text plus token counts).
Errors are :class:`rznas.errors.LLMError` with ``retryable`` set for timeouts, 429,
5xx and dropped connections, unset for authentication and bad requests.

``seed`` asks a sampling backend for a reproducible draw (the search derives it from the
run's persisted state); a backend that applies it reports it in ``extra["seed"]``, one
that cannot ignores it. Backends also report in ``extra``: ``finish_reason``,
``structured`` (the structured-output mode used: json_schema, json_object_schema,
json_object, grammar, tool or none) and ``usage_estimated`` (token counts estimated).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, runtime_checkable

from ..registry import Registry


@dataclass(frozen=True)
class Message:
    """One chat message; role is "system", "user" or "assistant"."""

    role: str
    content: str


@dataclass(frozen=True)
class Completion:
    """A backend's reply: the text and what it cost."""

    text: str
    input_tokens: int
    output_tokens: int
    model: str
    latency_s: float = 0.0
    cached_input_tokens: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    #: estimated price of this call in USD (from the price table; 0 for local/scripted; None: unknown)
    cost_usd: float | None = 0.0
    #: attempts made, retries included (1 = first try succeeded)
    attempts: int = 1

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens, the unit of the ``max_tokens`` budget."""
        return self.input_tokens + self.output_tokens


@runtime_checkable
class LLMClient(Protocol):
    """Anything that completes a chat; ``json_schema`` asks for schema-constrained JSON,
    ``seed`` for a reproducible sample where the backend supports one."""

    model: str

    def complete(
        self,
        messages: list[Message],
        *,
        temperature: float,
        max_tokens: int,
        json_schema: dict[str, Any] | None = None,
        seed: int | None = None,
    ) -> Completion: ...


#: backend name -> factory(model: str, **options) -> LLMClient
BACKENDS: Registry[Callable[..., LLMClient]] = Registry("LLM backend")
