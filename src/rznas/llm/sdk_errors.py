"""SDK exceptions -> LLMError, shared by the OpenAI and Anthropic backends.

Both official SDKs raise the same family of exceptions (APITimeoutError,
APIConnectionError, APIStatusError, APIResponseValidationError), so one mapping
serves both; the backend passes its SDK module and a description of the endpoint.
"""
from __future__ import annotations

from types import ModuleType

from ..errors import LLMError
from .redact import redact
from .retry import parse_retry_after, status_error


def error_text(exc: Exception) -> str:
    """The server's error message if the SDK parsed one, else the exception text."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(getattr(exc, "message", None) or exc)


def map_sdk_error(sdk: ModuleType, exc: Exception, *, where: str, secret: str | None) -> LLMError:
    """The SDK exception as an LLMError (retryable or not), with the key scrubbed."""
    detail = redact(error_text(exc), [secret])
    if isinstance(exc, sdk.APITimeoutError):
        return LLMError(f"{where}: request timed out", retryable=True)
    if isinstance(exc, sdk.APIConnectionError):
        return LLMError(f"{where}: connection failed ({detail})", retryable=True)
    if isinstance(exc, sdk.APIStatusError):
        headers = getattr(exc.response, "headers", None)
        # 5xx (Anthropic's 529 "overloaded" included) and 429 are retryable; other 4xx are not
        return status_error(exc.status_code, detail, backend=where, retry_after=parse_retry_after(headers))
    if isinstance(exc, getattr(sdk, "APIResponseValidationError", ())):
        return LLMError(f"{where}: malformed response ({detail})", retryable=True)
    # other SDK errors (e.g. an unparseable body): treat as a transient server fault
    return LLMError(f"{where}: {type(exc).__name__}: {detail}", retryable=True)
