"""The ``anthropic`` backend: Claude through the official ``anthropic`` SDK (Messages API).

System messages go into the top-level ``system`` parameter, as the Messages API requires;
consecutive messages of one role are merged so that user and assistant turns alternate.
A JSON schema is requested through structured outputs (``output_config.format``) and is
also stated in the system prompt, so models without structured outputs still see it; a
400 about that parameter drops it for the rest of the session (recorded in ``extra``).
The key comes from RZNAS_ANTHROPIC_API_KEY or ANTHROPIC_API_KEY.
"""
from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

from ..errors import ConfigError, LLMError
from .base import BACKENDS, Completion, Message
from .messages import normalize_messages
from .openai_backend import PLACEHOLDER_KEY, api_key_from_env
from .sdk_errors import error_text, map_sdk_error

KEY_ENV_VARS = ("RZNAS_ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY")
BASE_URL_ENV = "ANTHROPIC_BASE_URL"
SCHEMA_INSTRUCTION = "Reply with one JSON object that matches this JSON Schema, and nothing else:\n"


def to_anthropic(messages: list[Message], json_schema: dict[str, Any] | None) -> tuple[str, list[dict[str, str]]]:
    """(system text, alternating user/assistant turns) as the Messages API expects."""
    system_parts = [m.content for m in messages if m.role == "system"]
    if json_schema is not None:
        system_parts.append(SCHEMA_INSTRUCTION + json.dumps(json_schema, sort_keys=True))
    turns: list[dict[str, str]] = []
    for message in messages:
        if message.role == "system":
            continue
        if turns and turns[-1]["role"] == message.role:
            turns[-1]["content"] += "\n\n" + message.content
        else:
            turns.append({"role": message.role, "content": message.content})
    if not turns or turns[0]["role"] != "user":
        raise LLMError("anthropic: the conversation must start with a user message after the system prompt")
    return "\n\n".join(p for p in system_parts if p), turns


class AnthropicClient:
    """One-attempt Messages API calls."""

    backend = "anthropic"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        timeout: float = 60.0,
        structured_output: bool = True,
        seed: int | None = None,
    ):
        """``seed`` is accepted for a uniform call signature; the Messages API has no seed."""
        try:
            import anthropic
        except ImportError:  # pragma: no cover - a declared dependency
            raise ConfigError("the anthropic backend needs the anthropic package: pip install anthropic") from None
        if not model:
            raise ConfigError("the anthropic backend needs a model name, e.g. --llm anthropic:claude-3-5-sonnet-latest")
        base_url = base_url or os.environ.get(BASE_URL_ENV) or None
        key = api_key_from_env(KEY_ENV_VARS)
        if key is None:
            if base_url is None:
                raise ConfigError("no Anthropic API key: set ANTHROPIC_API_KEY (or RZNAS_ANTHROPIC_API_KEY)")
            key = PLACEHOLDER_KEY
        self.model = model
        self.base_url = base_url
        self._secret = key
        self._anthropic = anthropic
        self._client = anthropic.Anthropic(api_key=key, base_url=base_url, timeout=timeout, max_retries=0)
        self._lock = threading.Lock()
        self._structured = structured_output
        #: whether to send temperature (dropped after a 400 from a model that rejects it)
        self._temperature = True

    def complete(
        self,
        messages: list[Message],
        *,
        temperature: float,
        max_tokens: int,
        json_schema: dict[str, Any] | None = None,
        seed: int | None = None,
    ) -> Completion:
        """One request; a 400 about structured outputs is retried once without them. The
        Messages API has no seed: ``seed`` is ignored (the run store records it as not applied)."""
        msgs = normalize_messages(messages)
        system, turns = to_anthropic(msgs, json_schema)
        fallbacks: list[str] = []
        while True:
            params: dict[str, Any] = {"model": self.model, "max_tokens": max_tokens, "messages": turns}
            if system:
                params["system"] = system
            with self._lock:
                structured = self._structured
                send_temperature = self._temperature
            if json_schema is not None and structured:
                params["output_config"] = {"format": {"type": "json_schema", "schema": json_schema}}
            if send_temperature:
                # this SDK version has no temperature argument; the API still accepts the field
                params["extra_body"] = {"temperature": temperature}
            started = time.perf_counter()
            try:
                response = self._client.messages.create(**params)
            except self._anthropic.BadRequestError as exc:
                rejected = self._rejected_param(exc, params)
                if rejected is None:
                    raise self._map_error(exc) from None
                with self._lock:
                    if rejected == "output_config":
                        self._structured = False
                    else:
                        self._temperature = False
                fallbacks.append(rejected)
                continue
            except self._anthropic.AnthropicError as exc:
                raise self._map_error(exc) from None
            except ValueError as exc:
                # a 200 whose body is not valid JSON (a broken proxy or server): transient
                raise LLMError(
                    f"anthropic ({self.base_url or 'default endpoint'}, model {self.model}): malformed response body "
                    f"({type(exc).__name__})",
                    retryable=True,
                ) from None
            latency = time.perf_counter() - started
            completion = self._completion(response, latency, fallbacks)
            # the schema is always stated in the system prompt; "json_schema" when also enforced
            completion.extra["structured"] = "json_schema" if "output_config" in params else "none"
            return completion

    @staticmethod
    def _rejected_param(exc: Exception, params: dict[str, Any]) -> str | None:
        """Which optional field a 400 complains about (and that we can drop), if any."""
        text = error_text(exc).lower()
        if "output_config" in params and any(
            w in text for w in ("output_config", "output_format", "structured output", "json_schema")
        ):
            return "output_config"
        if "extra_body" in params and "temperature" in text:
            return "temperature"
        return None

    def _completion(self, response: Any, latency: float, fallbacks: list[str]) -> Completion:
        blocks = getattr(response, "content", None) or []
        text = "".join(getattr(b, "text", "") or "" for b in blocks if getattr(b, "type", "") == "text")
        usage = response.usage
        extra: dict[str, Any] = {"finish_reason": getattr(response, "stop_reason", None)}
        if fallbacks:
            extra["dropped_params"] = fallbacks
        return Completion(
            text=text,
            input_tokens=int(usage.input_tokens or 0),
            output_tokens=int(usage.output_tokens or 0),
            model=getattr(response, "model", None) or self.model,
            latency_s=latency,
            cached_input_tokens=int(getattr(usage, "cache_read_input_tokens", 0) or 0),
            extra=extra,
        )

    def _map_error(self, exc: Exception) -> LLMError:
        """The SDK exception as an LLMError (retryable or not), with the key scrubbed."""
        where = f"anthropic ({self.base_url or 'api.anthropic.com'}, model {self.model})"
        return map_sdk_error(self._anthropic, exc, where=where, secret=self._secret)


@BACKENDS.register("anthropic")
def make_anthropic(model: str, **options: Any) -> AnthropicClient:
    """Factory for ``anthropic:MODEL``."""
    return AnthropicClient(model, **options)
