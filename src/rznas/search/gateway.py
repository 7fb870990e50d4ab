"""The search's single door to an LLM: reply cache, usage budget and a record of every call.

Every request is keyed by the hash of (model, messages, temperature, max_tokens, JSON
schema). A key found in the run's reply cache is answered from it without calling the
model, which is what makes resume repeat no paid work and lets a finished run be
replayed offline (client ``None``: a cache miss is then an error, never a live call).

The n-th repetition of an identical request within one run (same parent, notes and
temperature) gets its own key (the content hash of the request plus "#n"), so a sampling
model is asked again instead of being answered with its first reply forever; the
repetition counts are rebuilt from the committed call log on resume.
"""
from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol

from ..canonical import canonical_json
from ..errors import LLMError
from ..llm.base import Completion, LLMClient, Message
from ..llm.budget import UsageBudget


def messages_payload(messages: list[Message]) -> list[dict[str, str]]:
    return [{"role": m.role, "content": m.content} for m in messages]


def prompt_hash(messages: list[Message]) -> str:
    """sha256 of the messages alone (what identifies a prompt across models/temperatures)."""
    return hashlib.sha256(canonical_json(messages_payload(messages)).encode()).hexdigest()


def request_json(model: str, messages: list[Message], temperature: float, max_tokens: int, schema: dict | None) -> str:
    """The canonical request text stored in the run store and hashed for the cache key."""
    return canonical_json(
        {
            "model": model,
            "messages": messages_payload(messages),
            "temperature": temperature,
            "max_tokens": max_tokens,
            "json_schema": schema,
        }
    )


def cache_key(request: str) -> str:
    return hashlib.sha256(request.encode()).hexdigest()


@dataclass(frozen=True)
class CachedReply:
    """A reply as stored in the cache (what a live call returned, once)."""

    text: str
    input_tokens: int
    output_tokens: int
    latency_s: float
    cost_usd: float
    model: str


class ReplyCache(Protocol):
    """Where replies are kept: the run store implements it."""

    def get_reply(self, key: str) -> CachedReply | None: ...

    def put_reply(self, key: str, request: str, reply: CachedReply) -> None: ...


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
    cost_usd: float
    cache_hit: bool


class LLMGateway:
    """Wraps an :class:`LLMClient` with the reply cache, a usage budget and call records."""

    def __init__(
        self,
        client: LLMClient | None,
        *,
        model: str,
        cache: ReplyCache | None = None,
        usage: UsageBudget | None = None,
    ):
        self.client = client
        self.model = model
        self.cache = cache
        self.usage = usage or UsageBudget()
        self._local = threading.local()  # per thread: the calls since its last drain()
        self._lock = threading.Lock()
        self.repetitions: Counter[str] = Counter()  # request hash -> calls so far this run

    @property
    def records(self) -> list[CallRecord]:
        """The calls made by the current thread since its last drain() (concurrent proposals
        each run in their own thread and drain their own calls)."""
        records = getattr(self._local, "records", None)
        if records is None:
            records = self._local.records = []
        return records

    def restore(self, request_hashes: list[str]) -> None:
        """Rebuild the repetition counts from the committed call log (resume)."""
        self.repetitions = Counter(request_hashes)

    def complete(
        self,
        purpose: str,
        messages: list[Message],
        *,
        temperature: float,
        max_tokens: int,
        json_schema: dict[str, Any] | None = None,
    ) -> CallRecord:
        """One call (or cache hit); LLM errors propagate, every answer is recorded."""
        request = request_json(self.model, messages, temperature, max_tokens, json_schema)
        request_hash = cache_key(request)
        with self._lock:
            seen = self.repetitions[request_hash]
            self.repetitions[request_hash] += 1
        key = request_hash if seen == 0 else cache_key(f"{request}\n#{seen}")
        cached = self.cache.get_reply(key) if self.cache is not None else None
        if cached is not None:
            record = self._record(purpose, request, key, messages, temperature, cached, cache_hit=True)
        else:
            if self.client is None:
                raise LLMError(
                    f"offline replay: no cached reply for this {purpose} request (key {key[:12]}); "
                    "the replayed run diverged from the recorded one or its cache is incomplete"
                )
            self.usage.check()
            start = time.perf_counter()
            completion: Completion = self.client.complete(
                messages, temperature=temperature, max_tokens=max_tokens, json_schema=json_schema
            )
            reply = CachedReply(
                text=completion.text if isinstance(completion.text, str) else str(completion.text),
                input_tokens=int(completion.input_tokens),
                output_tokens=int(completion.output_tokens),
                latency_s=float(completion.latency_s or (time.perf_counter() - start)),
                cost_usd=float(getattr(completion, "cost_usd", 0.0) or 0.0),
                model=completion.model or self.model,
            )
            self.usage.add(reply.input_tokens, reply.output_tokens, reply.cost_usd)
            if self.cache is not None:
                self.cache.put_reply(key, request, reply)  # committed at once: survives a crash
            record = self._record(purpose, request, key, messages, temperature, reply, cache_hit=False)
        self.records.append(record)
        return record

    def drain(self) -> list[CallRecord]:
        """The calls made since the previous drain (one trial's calls)."""
        records = self.records
        self._local.records = []
        return records

    def _record(
        self,
        purpose: str,
        request: str,
        key: str,
        messages: list[Message],
        temperature: float,
        reply: CachedReply,
        *,
        cache_hit: bool,
    ) -> CallRecord:
        return CallRecord(
            purpose=purpose,
            model=reply.model,
            request=request,
            key=key,
            request_hash=cache_key(request),
            prompt_hash=prompt_hash(messages),
            temperature=temperature,
            text=reply.text,
            input_tokens=reply.input_tokens,
            output_tokens=reply.output_tokens,
            latency_s=reply.latency_s,
            cost_usd=reply.cost_usd,
            cache_hit=cache_hit,
        )
