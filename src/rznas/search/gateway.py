"""The search's single door to an LLM: reply cache, usage budget and a record of every call.

Every request is keyed by the hash of (model, messages, temperature, max_tokens, JSON
schema). A key found in the run's reply cache is answered from it without calling the
model, which is what makes resume repeat no paid work and lets a finished run be
replayed offline (client ``None``: a cache miss is then an error, never a live call).

The n-th repetition of an identical request within one run (same parent, notes and
temperature) gets its own key (the content hash of the request plus "#n"), so a sampling
model is asked again instead of being answered with its first reply forever; the
repetition counts are rebuilt from the committed call log on resume.

Each call carries a seed derived from what the run store persists (:func:`call_seed`: run
seed, trial or dispatch number, purpose, attempt), never from a per-process counter, so a
sampling model asked again after a resume draws the same reply. What the backend reports about a live call
(seed applied, attempts, structured-output mode, estimated token counts, finish reason)
is kept with the reply and logged with every call that uses it.

Runs started since seeds were added key seeded calls by request *and* seed
(``seeded_keys``, the store's ``reply_keys = "seeded"``): each call of a search has its own
seed, so two identical concurrent requests of different proposals get their own keys
whatever order their threads arrive in. Older runs keep the repetition keys above.
"""
from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from typing import Any, Protocol

from ..canonical import canonical_json
from ..errors import LLMError
from ..llm.base import Completion, LLMClient, Message
from ..llm.budget import UsageBudget
from ..records import CachedReply, CallRecord  # noqa: F401  (re-exported: the records the store persists)


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


#: how a run's reply-cache keys are made (store meta ``reply_keys``); absent = "repetition"
REPLY_KEYS_SEEDED = "seeded"
REPLY_KEYS_REPETITION = "repetition"

#: seeds are 31-bit non-negative integers (what llama.cpp and OpenAI's ``seed`` accept)
SEED_MODULUS = 2**31 - 1


def call_seed(*identity: object) -> int:
    """A model seed from a call's persisted identity, e.g. (run seed, "trial", 12, "mutate", 0)."""
    digest = hashlib.sha256(":".join(str(part) for part in identity).encode()).digest()
    return int.from_bytes(digest[:8], "big") % SEED_MODULUS


def call_info(completion: Completion, requested_seed: int | None) -> dict[str, Any]:
    """How a live call was answered, from the backend's and the retry wrapper's report
    (:attr:`Completion.extra`): stored with the reply, logged with every call that uses it."""
    extra = completion.extra or {}
    info: dict[str, Any] = {
        "seed": extra.get("seed"),
        "attempts": int(getattr(completion, "attempts", 1) or 1),
        "structured": extra.get("structured"),
        "usage_estimated": bool(extra.get("usage_estimated", False)),
        "finish_reason": extra.get("finish_reason"),
    }
    details = {key: extra[key] for key in ("retries", "dropped_params", "structured_fallbacks") if extra.get(key)}
    if requested_seed is not None and info["seed"] is None:
        details["seed_not_applied"] = requested_seed  # the backend has no seed parameter
    if details:
        info["details"] = details
    return info


class ReplyCache(Protocol):
    """Where replies are kept: the run store implements it."""

    def get_reply(self, key: str) -> CachedReply | None: ...

    def put_reply(self, key: str, request: str, reply: CachedReply) -> None: ...


class LLMGateway:
    """Wraps an :class:`LLMClient` with the reply cache, a usage budget and call records."""

    def __init__(
        self,
        client: LLMClient | None,
        *,
        model: str,
        cache: ReplyCache | None = None,
        usage: UsageBudget | None = None,
        seeded_keys: bool = False,
    ):
        self.client = client
        self.seeded_keys = seeded_keys  # key a seeded call by request + seed (not by repetition)
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
        seed: int | None = None,
    ) -> CallRecord:
        """One call (or cache hit); LLM errors propagate, every answer is recorded. ``seed``
        (from :func:`call_seed`) goes to the backend and, with ``seeded_keys``, into the key."""
        request = request_json(self.model, messages, temperature, max_tokens, json_schema)
        request_hash = cache_key(request)
        with self._lock:
            seen = self.repetitions[request_hash]
            self.repetitions[request_hash] += 1
        if self.seeded_keys and seed is not None:
            key = cache_key(f"{request}\n#seed={seed}")
        else:
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
                messages, temperature=temperature, max_tokens=max_tokens, json_schema=json_schema, seed=seed
            )
            cost = getattr(completion, "cost_usd", None)
            reply = CachedReply(
                text=completion.text if isinstance(completion.text, str) else str(completion.text),
                input_tokens=int(completion.input_tokens),
                output_tokens=int(completion.output_tokens),
                latency_s=float(completion.latency_s or (time.perf_counter() - start)),
                cost_usd=None if cost is None else float(cost),
                model=completion.model or self.model,
                info=call_info(completion, seed),
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
        info = reply.info
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
            seed=info.get("seed"),
            attempts=int(info.get("attempts") or 1),
            structured=info.get("structured"),
            usage_estimated=bool(info.get("usage_estimated", False)),
            finish_reason=info.get("finish_reason"),
            details=dict(info.get("details") or {}),
        )
