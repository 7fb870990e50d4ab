"""``create_client``: a backend from a ``BACKEND:MODEL`` spec, wrapped with retries, costs and budget.

The wrapper (:class:`ManagedClient`) is what the search uses: each call checks the budget,
runs the backend with :func:`~rznas.llm.retry.call_with_retries`, prices the tokens from
the :class:`~rznas.llm.pricing.PriceTable` and records them in the :class:`~rznas.llm.budget.UsageBudget`.
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Mapping

from ..errors import ConfigError
from .base import BACKENDS, Completion, LLMClient, Message
from .budget import UsageBudget, UsageSnapshot
from .messages import normalize_messages
from .pricing import Price, PriceTable
from .retry import RetryPolicy, call_with_retries

log = logging.getLogger("rznas.llm")

DEFAULT_TIMEOUT_S = 60.0
DEFAULT_MAX_RETRIES = 4


def parse_spec(spec: str) -> tuple[str, str]:
    """``"openai:gpt-4o"`` -> ("openai", "gpt-4o"); ``"local"`` -> ("local", ""). Splits at the first colon."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError("an LLM spec looks like BACKEND:MODEL, e.g. openai:gpt-4o, anthropic:claude-3-5-sonnet-latest, local")
    backend, _, model = spec.strip().partition(":")
    return backend.strip().lower(), model.strip()


class ManagedClient:
    """An LLMClient with retries, cost estimates and a usage budget around one backend."""

    def __init__(self, inner: LLMClient, *, backend: str, policy: RetryPolicy, price: Price | None, budget: UsageBudget):
        self.inner = inner
        self.backend = backend
        self.model = inner.model
        self.policy = policy
        self.price = price
        self.budget = budget

    @property
    def usage(self) -> UsageSnapshot:
        """Calls, tokens and cost recorded so far in this client's budget."""
        return self.budget.snapshot()

    def complete(
        self,
        messages: list[Message],
        *,
        temperature: float,
        max_tokens: int,
        json_schema: dict[str, Any] | None = None,
        seed: int | None = None,
    ) -> Completion:
        """One chat completion; raises LLMError (``attempts`` attached) or BudgetExhausted.
        Every attempt sends the same ``seed``; an unpriced model's ``cost_usd`` is None."""
        msgs = normalize_messages(messages)
        if not 0.0 <= float(temperature) <= 2.0:
            raise ConfigError(f"temperature must be within [0, 2], got {temperature}")
        if int(max_tokens) < 1:
            raise ConfigError(f"max_tokens must be >= 1, got {max_tokens}")
        self.budget.check()

        def attempt() -> Completion:
            return self.inner.complete(
                msgs, temperature=temperature, max_tokens=max_tokens, json_schema=json_schema, seed=seed
            )

        completion, failures = call_with_retries(attempt, self.policy)
        extra = dict(completion.extra)
        if failures:
            extra["retries"] = [f.as_dict() for f in failures]
        if self.price is None:
            extra["price_known"] = False
        cost = self.price.cost(completion.input_tokens, completion.output_tokens) if self.price else None
        completion = dataclasses.replace(completion, cost_usd=cost, attempts=len(failures) + 1, extra=extra)
        self.budget.record(completion)
        return completion


def create_client(
    spec: str,
    *,
    base_url: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    max_retries: int = DEFAULT_MAX_RETRIES,
    price_table: PriceTable | Mapping[str, Any] | None = None,
    budget: UsageBudget | None = None,
    retry_policy: RetryPolicy | None = None,
    **options: Any,
) -> ManagedClient:
    """A ready client for ``spec`` ("openai:gpt-4o", "anthropic:MODEL", "local[:PATH]", "scripted:NAME").

    ``options`` go to the backend (e.g. ``replies=`` for scripted, ``n_ctx=`` for local,
    ``structured=`` for openai). ``price_table`` maps model -> (input, output) USD per 1M
    tokens on top of the defaults; ``budget`` may be shared between clients.
    """
    backend, model = parse_spec(spec)
    factory = BACKENDS.get(backend)
    if timeout is None or timeout <= 0:
        raise ConfigError(f"timeout must be > 0 seconds, got {timeout}")
    prices = price_table if isinstance(price_table, PriceTable) else PriceTable(price_table)
    budget = budget if budget is not None else UsageBudget()
    policy = retry_policy if retry_policy is not None else RetryPolicy(max_retries=max_retries)
    inner = factory(model, base_url=base_url, timeout=timeout, **options)
    price = prices.lookup(backend, inner.model)
    if price is None:
        if budget.max_cost_usd is not None:
            raise ConfigError(
                f"no price for model {inner.model!r}, so a cost budget cannot be enforced: "
                f"add it to the price table (USD per 1M input/output tokens) or use a token budget"
            )
        log.warning("no price for %s model %r: its cost is shown as unknown", backend, inner.model)
    return ManagedClient(inner, backend=backend, policy=policy, price=price, budget=budget)
