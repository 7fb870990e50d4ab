"""Token and cost accounting across LLM calls, with optional limits that stop a search cleanly.

One :class:`UsageBudget` may be shared by several clients (mutation and reflection calls) and
threads. Before each call :meth:`UsageBudget.check` raises :class:`BudgetExhausted` when a limit
is already reached; a call that crosses a limit is still returned (its tokens were paid
for) and the next call is refused.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

from ..errors import BudgetExhausted, ConfigError
from .base import Completion


@dataclass(frozen=True)
class UsageSnapshot:
    """Totals so far: calls, tokens and estimated cost (None: unknown, some call had no price)."""

    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    #: calls of a model without a price: their cost is unknown, not zero
    unpriced_calls: int = 0

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens


class UsageBudget:
    """Usage tracker with optional ``max_cost_usd`` / ``max_tokens`` limits (None = unlimited)."""

    def __init__(self, max_cost_usd: float | None = None, max_tokens: int | None = None):
        if max_cost_usd is not None and max_cost_usd < 0:
            raise ConfigError(f"max_cost_usd must be >= 0, got {max_cost_usd}")
        if max_tokens is not None and max_tokens < 0:
            raise ConfigError(f"max_tokens must be >= 0, got {max_tokens}")
        self.max_cost_usd = max_cost_usd
        self.max_tokens = max_tokens
        self._lock = threading.Lock()
        self._calls = 0
        self._input = 0
        self._output = 0
        self._cost = 0.0
        self._unpriced = 0

    def add(
        self, input_tokens: int, output_tokens: int, cost_usd: float | None, calls: int = 1, *, unpriced_calls: int | None = None
    ) -> None:
        """Count usage (also used to restore the totals of a resumed run). ``cost_usd`` None: the
        calls' cost is unknown; ``unpriced_calls`` says how many of ``calls`` had no price
        (default: all of them when the cost is None, none otherwise)."""
        if unpriced_calls is None:
            unpriced_calls = calls if cost_usd is None else 0
        with self._lock:
            self._calls += calls
            self._input += int(input_tokens)
            self._output += int(output_tokens)
            self._cost += float(cost_usd or 0.0)
            self._unpriced += int(unpriced_calls)

    def record(self, completion: Completion) -> None:
        """Count one finished call."""
        self.add(completion.input_tokens, completion.output_tokens, completion.cost_usd)

    def snapshot(self) -> UsageSnapshot:
        """The totals so far (for progress displays and the run store)."""
        with self._lock:
            cost = None if self._unpriced else self._cost
            return UsageSnapshot(self._calls, self._input, self._output, cost, self._unpriced)

    def exhausted_reason(self) -> str | None:
        """Why no further call is allowed, or None while within budget."""
        snap = self.snapshot()
        if self.max_tokens is not None and snap.total_tokens >= self.max_tokens:
            return f"LLM token budget exhausted: {snap.total_tokens} of max {self.max_tokens} tokens used"
        if self.max_cost_usd is not None and snap.cost_usd is None:
            return f"LLM cost budget cannot be checked: {snap.unpriced_calls} call(s) of a model without a price"
        if self.max_cost_usd is not None and snap.cost_usd >= self.max_cost_usd:
            return f"LLM cost budget exhausted: ${snap.cost_usd:.4f} of max ${self.max_cost_usd:.4f} spent"
        return None

    def check(self) -> None:
        """Raise :class:`BudgetExhausted` when a limit is reached."""
        reason = self.exhausted_reason()
        if reason is not None:
            raise BudgetExhausted(reason)
