"""Records the run store persists about LLM calls and final-selection candidates (plain data).

They live here, outside :mod:`rznas.search`, so that the store (and its readers) need not
import the search package: data flows search -> store, never back.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .arch import Architecture


@dataclass(frozen=True)
class CachedReply:
    """A reply as stored in the cache (what a live call returned, once); ``cost_usd`` None: unknown."""

    text: str
    input_tokens: int
    output_tokens: int
    latency_s: float
    cost_usd: float | None
    model: str
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CallRecord:
    """One LLM call as the run store logs it (never an API key)."""

    purpose: str  # mutate | repair | reflect
    model: str
    request: str  # canonical request JSON
    key: str  # cache key (content hash, "#n" for the n-th repetition)
    request_hash: str  # content hash of the request alone
    prompt_hash: str
    temperature: float
    text: str
    input_tokens: int
    output_tokens: int
    latency_s: float
    cost_usd: float | None  # None: the model has no price (unknown, not free)
    cache_hit: bool
    seed: int | None = None  # the seed the backend applied (None: it has none)
    attempts: int = 1  # attempts the live call took (retries + 1)
    structured: str | None = None  # structured-output mode used (json_schema, grammar, none, ...)
    usage_estimated: bool = False  # token counts estimated from text (the server reported none)
    finish_reason: str | None = None  # "length": the reply was cut off by max_tokens
    details: dict[str, Any] = field(default_factory=dict)  # retries, dropped parameters, fallbacks


@dataclass(frozen=True)
class CandidateResult:
    """One candidate's short training: accuracies in percent, after the last epoch."""

    rank: int  # 1 = the proxy's best
    trial: int  # the trial that scored it
    arch: Architecture
    encoded: str
    score: float  # proxy score
    train_acc: float
    train_loss: float
    val_acc: float
    val_loss: float
    epochs: int
    seconds: float  # training and validation, all epochs
    params: int
    history: tuple[dict[str, float], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (best_arch.json, benchmarks)."""
        data = asdict(self)
        data["arch"] = self.arch.to_dict()
        data["arch_id"] = self.arch.id
        data["history"] = list(self.history)
        return data


__all__ = ["CachedReply", "CallRecord", "CandidateResult"]
