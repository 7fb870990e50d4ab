"""The LLMClient protocol every backend implements, and the backend registry.

A backend turns chat messages into a :class:`Completion` (text plus token counts).
Errors are :class:`rznas.errors.LLMError` with ``retryable`` set for timeouts, 429,
5xx and dropped connections, unset for authentication and bad requests.
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
    #: estimated price of this call in USD (from the price table; 0 for local/scripted)
    cost_usd: float = 0.0
    #: attempts made, retries included (1 = first try succeeded)
    attempts: int = 1

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens, the unit of the ``max_tokens`` budget."""
        return self.input_tokens + self.output_tokens


@runtime_checkable
class LLMClient(Protocol):
    """Anything that completes a chat; ``json_schema`` asks for schema-constrained JSON."""

    model: str

    def complete(
        self,
        messages: list[Message],
        *,
        temperature: float,
        max_tokens: int,
        json_schema: dict[str, Any] | None = None,
    ) -> Completion: ...


#: backend name -> factory(model: str, **options) -> LLMClient
BACKENDS: Registry[Callable[..., LLMClient]] = Registry("LLM backend")
