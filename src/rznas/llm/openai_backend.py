"""The ``openai`` backend: any OpenAI-compatible chat-completions endpoint via the official SDK.

Works with OpenAI, Azure OpenAI (v1 API base URL), vLLM, Ollama, llama.cpp's server and
LM Studio through ``base_url``. The key comes from RZNAS_OPENAI_API_KEY or OPENAI_API_KEY;
a self-hosted server (``base_url`` set) gets a placeholder when neither is set.
The SDK's own retries are disabled: :mod:`rznas.llm.retry` does them, counted and recorded.

Structured output is negotiated (``structured="auto"``): json_schema, then json_object with
the schema attached (llama.cpp's server), then plain json_object, then none. A server that
refuses a mode (an HTTP error whose message names response_format or json_schema, whatever
its status: llama-cpp-python answers json_schema with a 500 validation error) is asked
again at once with the next mode, which is then kept for the session; each fallback and
the mode used are reported in ``Completion.extra`` (the run store keeps them). A fixed
mode that the server refuses is a non-retryable error naming the setting to change.
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
#: structured-output modes, most to least constraining (``auto`` tries them in this order)
STRUCTURED_MODES = ("json_schema", "json_object_schema", "json_object", "none")
STRUCTURED_CHOICES = ("auto", *STRUCTURED_MODES)
#: words in an error message that mean "this server cannot do that response_format"
_STRUCTURED_WORDS = ("responseformat", "json_schema", "jsonschema", "structured output", "json mode", "json_object")
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
        structured: str = "auto",
        seed: int | None = None,
        organization: str | None = None,
    ):
        try:
            import openai
        except ImportError:  # pragma: no cover - a declared dependency
            raise ConfigError("the openai backend needs the openai package: pip install openai") from None
        if not model:
            raise ConfigError("the openai backend needs a model name, e.g. --llm openai:gpt-4o")
        if structured not in STRUCTURED_CHOICES:
            raise ConfigError(f"structured output must be one of {', '.join(STRUCTURED_CHOICES)}, got {structured!r}")
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
        self.structured = structured
        #: the mode sent with the next schema request (auto: lowered by each refusal)
        self._mode = STRUCTURED_MODES[0] if structured == "auto" else structured
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
        seed: int | None = None,
    ) -> Completion:
        """One request; a refused structured-output mode is retried at once with the next one
        (auto), a 400 naming max_tokens or seed once without it. ``seed`` overrides the
        client's default seed for this call."""
        msgs = normalize_messages(messages)
        fallbacks: list[str] = []
        structured_fallbacks: list[dict[str, str]] = []
        seed = self.seed if seed is None else seed
        while True:
            params, mode = self._params(msgs, temperature, max_tokens, json_schema, seed)
            started = time.perf_counter()
            try:
                response = self._client.chat.completions.create(**params)
            except self._openai.APIStatusError as exc:
                if mode != "none" and self._refuses_structured(exc):
                    structured_fallbacks.append({"mode": mode, "error": self._map_error(exc).args[0][:300]})
                    self._lower_mode(mode, exc)
                    continue
                rejected = self._rejected_param(exc, params) if isinstance(exc, self._openai.BadRequestError) else None
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
            completion = self._completion(response, msgs, latency, fallbacks)
            completion.extra["structured"] = mode
            if structured_fallbacks:
                completion.extra["structured_fallbacks"] = structured_fallbacks
            if "seed" in params:
                completion.extra["seed"] = params["seed"]
            return completion

    def _params(
        self,
        msgs: list[Message],
        temperature: float,
        max_tokens: int,
        json_schema: dict[str, Any] | None,
        seed: int | None,
    ) -> tuple[dict[str, Any], str]:
        """The request body and the structured-output mode it uses ("none" without a schema)."""
        params: dict[str, Any] = {"model": self.model, "messages": as_dicts(msgs), "temperature": temperature}
        with self._lock:
            dropped = set(self._dropped)
            mode = self._mode if json_schema is not None else "none"
        if "max_tokens" in dropped:
            params["max_completion_tokens"] = max_tokens
        else:
            params["max_tokens"] = max_tokens
        if seed is not None and "seed" not in dropped:
            params["seed"] = seed
        if mode == "json_schema":
            params["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "reply", "schema": json_schema, "strict": False},
            }
        elif mode == "json_object_schema":
            params["response_format"] = {"type": "json_object", "schema": json_schema}
        elif mode == "json_object":
            params["response_format"] = {"type": "json_object"}
        return params, mode

    @staticmethod
    def _refuses_structured(exc: Exception) -> bool:
        """Whether an HTTP error (any status) says the server cannot do the response_format sent."""
        text = error_text(exc).lower()
        squashed = text.replace("_", "").replace(" ", "")
        return any(w.replace("_", "").replace(" ", "") in squashed for w in _STRUCTURED_WORDS)

    def _lower_mode(self, refused: str, exc: Exception) -> None:
        """After a refusal of ``refused``: the next mode (auto), or a clear error (a fixed mode)."""
        if self.structured != "auto":
            raise LLMError(
                f"openai ({self.base_url or 'api.openai.com'}, model {self.model}): the server refuses structured "
                f"output mode {refused!r} ({self._map_error(exc).args[0][:300]}); use --llm-structured auto to negotiate",
                retryable=False,
            )
        with self._lock:
            if self._mode == refused:  # another thread may have lowered it already
                self._mode = STRUCTURED_MODES[STRUCTURED_MODES.index(refused) + 1]

    def _rejected_param(self, exc: Exception, params: dict[str, Any]) -> str | None:
        """Which optional parameter a 400 complains about (and that we can drop), if any:
        max_tokens and seed, only when the server says it does not support them (o-series
        models want max_completion_tokens instead)."""
        text = error_text(exc).lower()
        squashed = text.replace("_", "").replace(" ", "")
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
