"""Retry policy for LLM calls: exponential backoff with jitter, honouring Retry-After.

Backends make exactly one attempt per call (the SDKs' own retries are disabled) and
raise :class:`LLMError` with ``retryable`` set for timeouts, 429, 5xx and dropped
connections; :func:`call_with_retries` is the only place that retries, so every retry
is counted and recorded.
"""
from __future__ import annotations

import email.utils
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, TypeVar

from ..errors import ConfigError, LLMError

T = TypeVar("T")
log = logging.getLogger("rznas.llm")


@dataclass
class RetryPolicy:
    """How often and how long to wait between attempts; ``seed`` makes the jitter reproducible."""

    max_retries: int = 4
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0
    multiplier: float = 2.0
    #: relative jitter: the delay is scaled by a factor drawn from [1 - jitter, 1 + jitter]
    jitter: float = 0.25
    #: a Retry-After longer than this is not waited for: the call fails (non-retryable)
    max_retry_after_s: float = 120.0
    seed: int | None = None
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.base_delay_s < 0 or self.max_delay_s < 0 or not 0 <= self.jitter <= 1:
            raise ConfigError("retry delays must be >= 0 and jitter within [0, 1]")
        self._rng = random.Random(self.seed)

    def backoff(self, retry_index: int) -> float:
        """Delay before retry number ``retry_index`` (0-based) without a server hint."""
        delay = min(self.max_delay_s, self.base_delay_s * self.multiplier**retry_index)
        return max(0.0, delay * (1.0 + self._rng.uniform(-self.jitter, self.jitter)))

    def delay_for(self, error: LLMError, retry_index: int) -> float:
        """Delay before the next attempt: the server's Retry-After if given, else backoff."""
        if error.retry_after is not None:
            return max(0.0, error.retry_after)
        return self.backoff(retry_index)


@dataclass(frozen=True)
class AttemptRecord:
    """One failed attempt: which, why, and how long we waited afterwards."""

    attempt: int
    error: str
    retryable: bool
    delay_s: float

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly form for Completion.extra and the run store."""
        return {"attempt": self.attempt, "error": self.error, "retryable": self.retryable, "delay_s": self.delay_s}


def call_with_retries(fn: Callable[[], T], policy: RetryPolicy) -> tuple[T, list[AttemptRecord]]:
    """Run ``fn`` until it succeeds, retrying retryable LLMErrors; returns (result, failed attempts).

    On final failure the raised LLMError carries ``attempts`` (list of AttemptRecord dicts).
    """
    failures: list[AttemptRecord] = []
    retry_index = 0
    while True:
        try:
            return fn(), failures
        except LLMError as exc:
            attempt = len(failures) + 1
            if not exc.retryable:
                failures.append(AttemptRecord(attempt, str(exc), False, 0.0))
                _attach(exc, failures)
                raise
            if retry_index >= policy.max_retries:
                failures.append(AttemptRecord(attempt, str(exc), True, 0.0))
                final = LLMError(
                    f"{exc} (gave up after {attempt} attempts)", retryable=True, retry_after=exc.retry_after
                )
                _attach(final, failures)
                raise final from None
            if exc.retry_after is not None and exc.retry_after > policy.max_retry_after_s:
                failures.append(AttemptRecord(attempt, str(exc), True, 0.0))
                final = LLMError(
                    f"{exc}: the server asks to wait {exc.retry_after:.0f} s, more than the "
                    f"{policy.max_retry_after_s:.0f} s allowed (RetryPolicy.max_retry_after_s)",
                    retryable=False,
                    retry_after=exc.retry_after,
                )
                _attach(final, failures)
                raise final from None
            delay = policy.delay_for(exc, retry_index)
            failures.append(AttemptRecord(attempt, str(exc), True, delay))
            log.warning("LLM call failed (%s); retry %d/%d in %.2f s", exc, retry_index + 1, policy.max_retries, delay)
            policy.sleep(delay)
            retry_index += 1


def _attach(exc: LLMError, failures: list[AttemptRecord]) -> None:
    exc.attempts = [f.as_dict() for f in failures]  # type: ignore[attr-defined]


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``Retry-After`` (seconds or HTTP date); None if absent."""
    if not headers:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000.0)
    except (TypeError, ValueError):
        pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


#: HTTP status -> (retryable, what it means) for statuses the SDKs report
STATUS_MEANING: dict[int, tuple[bool, str]] = {
    400: (False, "bad request"),
    401: (False, "authentication failed: check the API key environment variable"),
    402: (False, "payment required"),
    403: (False, "permission denied: the API key may not use this model"),
    404: (False, "not found: check the model name and base URL"),
    408: (True, "request timeout"),
    409: (True, "conflict"),
    413: (False, "request too large"),
    422: (False, "unprocessable request"),
    429: (True, "rate limited"),
}


def status_error(status: int, detail: str, *, backend: str, retry_after: float | None = None) -> LLMError:
    """The LLMError for an HTTP error status: 408/409/429/5xx retryable, other 4xx not."""
    retryable, meaning = STATUS_MEANING.get(status, (status >= 500, "server error" if status >= 500 else "client error"))
    message = f"{backend}: HTTP {status} {meaning}"
    if detail:
        message += f": {detail[:500]}"
    return LLMError(message, retryable=retryable, retry_after=retry_after if retryable else None)
