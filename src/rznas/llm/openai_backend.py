"""The ``openai`` backend: any OpenAI-compatible chat-completions endpoint via the official SDK.

Works with OpenAI, Azure OpenAI (v1 API base URL), vLLM, Ollama, llama.cpp's server and
LM Studio through ``base_url``. The key comes from RZNAS_OPENAI_API_KEY or OPENAI_API_KEY;
a self-hosted server (``base_url`` set) gets a placeholder when neither is set.
The SDK's own retries are disabled: :mod:`rznas.llm.retry` does them, counted and recorded.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any

from ..errors import ConfigError, LLMError
from .base import BACKENDS, Completion, Message
from .messages import as_dicts, normalize_messages
from .sdk_errors import error_text, map_sdk_error
from .tokens import approx_prompt_tokens, approx_tokens

KEY_ENV_VARS = ("RZNAS_OPENAI_API_KEY", "OPENAI_API_KEY")
BASE_URL_ENV = "OPENAI_BASE_URL"
#: sent to self-hosted servers that ignore the key (the SDK insists on one)
PLACEHOLDER_KEY = "no-key-required"
#: json_schema: structured outputs; json_object: plain JSON mode; off: no response_format
JSON_MODES = ("json_schema", "json_object", "off")
#: phrases servers use when they do not know a request parameter
_UNSUPPORTED_WORDS = ("unsupported", "not supported", "unrecognized", "unknown", "not permitted", "extra inputs", "use 'max_completion_tokens'")


def api_key_from_env(names: tuple[str, ...]) -> str | None:
    """The first non-empty environment variable among ``names``."""
    for name in names:
        value = os.environ.get(name, "").strip()
        if value:
            return value
    return None


class OpenAIChatClient:
    """One-attempt chat completions against an OpenAI-compatible server."""

    backend = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        timeout: float = 60.0,
        json_mode: str = "json_schema",
        seed: int | None = None,
        organization: str | None = None,
    ):
        try:
            import openai
        except ImportError:  # pragma: no cover - a declared dependency
            raise ConfigError("the openai backend needs the openai package: pip install openai") from None
        if not model:
            raise ConfigError("the openai backend needs a model name, e.g. --llm openai:gpt-4o")
        if json_mode not in JSON_MODES:
            raise ConfigError(f"json_mode must be one of {', '.join(JSON_MODES)}, got {json_mode!r}")
        base_url = base_url or os.environ.get(BASE_URL_ENV) or None
        key = api_key_from_env(KEY_ENV_VARS)
        if key is None:
            if base_url is None:
                raise ConfigError(
                    "no OpenAI API key: set OPENAI_API_KEY (or RZNAS_OPENAI_API_KEY), "
                    "or pass a base URL for a self-hosted server"
                )
            key = PLACEHOLDER_KEY
        self.model = model
        self.base_url = base_url
        self.json_mode = json_mode
        self.seed = seed
        self._secret = key
        self._openai = openai
        self._client = openai.OpenAI(
            api_key=key, base_url=base_url, timeout=timeout, max_retries=0, organization=organization
        )
        self._lock = threading.Lock()
        #: parameters the server rejected once; not sent again (recorded in Completion.extra)
        self._dropped: set[str] = set()

    def complete(
        self,
        messages: list[Message],
        *,
        temperature: float,
        max_tokens: int,
        json_schema: dict[str, Any] | None = None,
    ) -> Completion:
        """One request; a 400 naming response_format or max_tokens is retried once without it."""
        msgs = normalize_messages(messages)
        fallbacks: list[str] = []
        while True:
            params = self._params(msgs, temperature, max_tokens, json_schema)
            started = time.perf_counter()
            try:
                response = self._client.chat.completions.create(**params)
            except self._openai.BadRequestError as exc:
                rejected = self._rejected_param(exc, params)
                if rejected is None:
                    raise self._map_error(exc) from None
                with self._lock:
                    self._dropped.add(rejected)
                fallbacks.append(rejected)
                continue
            except self._openai.OpenAIError as exc:
                raise self._map_error(exc) from None
            except ValueError as exc:
                # a 200 whose body is not valid JSON (a broken proxy or server): transient
                raise LLMError(
                    f"openai ({self.base_url or 'default endpoint'}, model {self.model}): malformed response body "
                    f"({type(exc).__name__})",
                    retryable=True,
                ) from None
            latency = time.perf_counter() - started
            return self._completion(response, msgs, latency, fallbacks)

    def _params(
        self, msgs: list[Message], temperature: float, max_tokens: int, json_schema: dict[str, Any] | None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"model": self.model, "messages": as_dicts(msgs), "temperature": temperature}
        with self._lock:
            dropped = set(self._dropped)
        if "max_tokens" in dropped:
            params["max_completion_tokens"] = max_tokens
        else:
            params["max_tokens"] = max_tokens
        if self.seed is not None and "seed" not in dropped:
            params["seed"] = self.seed
        if json_schema is not None and "response_format" not in dropped and self.json_mode != "off":
            if self.json_mode == "json_schema":
                params["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "reply", "schema": json_schema, "strict": False},
                }
            else:
                params["response_format"] = {"type": "json_object"}
        return params

    def _rejected_param(self, exc: Exception, params: dict[str, Any]) -> str | None:
        """Which optional parameter a 400 complains about (and that we can drop), if any.

        Any 400 about response_format / JSON schema drops structured output; max_tokens and
        seed are dropped only when the server says it does not support them (o-series models
        want max_completion_tokens instead).
        """
        text = error_text(exc).lower()
        squashed = text.replace("_", "").replace(" ", "")
        if "response_format" in params and (
            "responseformat" in squashed or "json_schema" in text or "structured output" in text or "json mode" in text
        ):
            return "response_format"
        unsupported = any(w in text for w in _UNSUPPORTED_WORDS)
        for name in ("max_tokens", "seed"):
            if name in params and name.replace("_", "") in squashed and unsupported:
                return name
        return None

    def _completion(self, response: Any, msgs: list[Message], latency: float, fallbacks: list[str]) -> Completion:
        choices = getattr(response, "choices", None) or []
        if not choices:
            raise LLMError(f"openai: the server returned no choices (model {self.model})", retryable=True)
        choice = choices[0]
        text = getattr(choice.message, "content", None) or ""
        usage = getattr(response, "usage", None)
        extra: dict[str, Any] = {"finish_reason": getattr(choice, "finish_reason", None)}
        if fallbacks:
            extra["dropped_params"] = fallbacks
        if usage is not None and getattr(usage, "prompt_tokens", None) is not None:
            input_tokens = int(usage.prompt_tokens or 0)
            output_tokens = int(usage.completion_tokens or 0)
            details = getattr(usage, "prompt_tokens_details", None)
            cached = int(getattr(details, "cached_tokens", 0) or 0) if details is not None else 0
        else:
            input_tokens, output_tokens, cached = approx_prompt_tokens(msgs), approx_tokens(text), 0
            extra["usage_estimated"] = True
        return Completion(
            text=text,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            model=getattr(response, "model", None) or self.model,
            latency_s=latency,
            cached_input_tokens=cached,
            extra=extra,
        )

    def _map_error(self, exc: Exception) -> LLMError:
        """The SDK exception as an LLMError (retryable or not), with the key scrubbed."""
        where = f"openai ({self.base_url or 'api.openai.com'}, model {self.model})"
        return map_sdk_error(self._openai, exc, where=where, secret=self._secret)


@BACKENDS.register("openai")
def make_openai(model: str, **options: Any) -> OpenAIChatClient:
    """Factory for ``openai:MODEL``."""
    return OpenAIChatClient(model, **options)
