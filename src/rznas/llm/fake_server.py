"""Faithful local stand-ins for the OpenAI chat-completions and Anthropic Messages APIs.

For tests and benchmarks: a threaded stdlib HTTP server on 127.0.0.1 (port 0, so the OS
picks a free one), used as a context manager::

    with FakeOpenAIServer(reply=lambda body: '{"arch": "..."}', delay_s=2.0) as server:
        client = create_client("openai:fake-model", base_url=server.base_url)

It answers with proper ``chat.completion`` (or Anthropic ``message``) JSON including usage,
and injects faults per request: 429 with Retry-After, 500, a dropped connection, a hang,
401 for a bad key, a malformed JSON body, empty content, a 1 MB reply, a 400 rejecting
``response_format``, or any 400 message. Every request is recorded; API keys are kept only as a SHA-256
fingerprint, so tests can check that a key was sent while nothing stores or logs it.
"""
from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable, Mapping, Union

from ..errors import ConfigError
from .tokens import approx_tokens

# fault kinds
RATE_LIMIT = "rate_limit"
SERVER_ERROR = "server_error"
DROP = "drop"
HANG = "hang"
BAD_KEY = "bad_key"
MALFORMED_JSON = "malformed_json"
EMPTY_CONTENT = "empty_content"
HUGE_CONTENT = "huge_content"
REJECT_RESPONSE_FORMAT = "reject_response_format"
BAD_REQUEST = "bad_request"
FAULT_KINDS = (
    RATE_LIMIT, SERVER_ERROR, DROP, HANG, BAD_KEY, MALFORMED_JSON, EMPTY_CONTENT, HUGE_CONTENT, REJECT_RESPONSE_FORMAT,
    BAD_REQUEST,
)


@dataclass(frozen=True)
class Fault:
    """One injected fault; ``retry_after`` for 429, ``hang_s`` for hangs, ``size`` for huge
    replies, ``message`` for a 400 ``bad_request``."""

    kind: str
    retry_after: float | None = 1.0
    hang_s: float = 30.0
    size: int = 1_000_000
    message: str = "Invalid request"

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ConfigError(f"unknown fault {self.kind!r} (known: {', '.join(FAULT_KINDS)})")


FaultLike = Union[Fault, str, None]
ReplyFn = Callable[[dict[str, Any]], str]
FaultFn = Callable[[int, dict[str, Any]], FaultLike]


@dataclass
class RecordedRequest:
    """What the server received: path, JSON body, headers with secrets masked, key fingerprint."""

    method: str
    path: str
    body: Any
    headers: dict[str, str]
    key_sha256: str | None
    fault: str | None = None
    received_at: float = field(default_factory=time.time)

    @property
    def key_present(self) -> bool:
        """Whether the request carried an API key."""
        return self.key_sha256 is not None

    def key_matches(self, key: str) -> bool:
        """Whether the request carried exactly ``key``."""
        return self.key_sha256 == _fingerprint(key)


def _fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _as_fault(item: FaultLike) -> Fault | None:
    if item is None or isinstance(item, Fault):
        return item
    return Fault(str(item))


def default_reply(body: dict[str, Any]) -> str:
    """The reply used when none is configured: a small JSON object."""
    return '{"reply": "ok"}'


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 512
    fake: "_FakeAPIServer"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silence the default stderr access log (headers are never logged)."""

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        self.server.fake._handle(self, "GET")

    def do_POST(self) -> None:  # noqa: N802
        self.server.fake._handle(self, "POST")


class _FakeAPIServer:
    """Shared machinery: threading, fault queue, recording; subclasses speak one protocol."""

    completion_paths: tuple[str, ...] = ()
    #: the request field asking for structured (JSON) output in this protocol
    structured_param = "response_format"
    secret_headers: tuple[str, ...] = ("authorization", "x-api-key", "api-key")

    def __init__(
        self,
        reply: str | ReplyFn | None = None,
        *,
        delay_s: float = 0.0,
        faults: Iterable[FaultLike] = (),
        fault_fn: FaultFn | None = None,
        api_key: str | None = None,
        model: str = "fake-model",
        reject_response_format: bool = False,
    ):
        if isinstance(reply, str):
            text = reply
            self.reply_fn: ReplyFn = lambda body: text
        else:
            self.reply_fn = reply or default_reply
        self.delay_s = delay_s
        self.fault_fn = fault_fn
        self.model = model
        self.reject_response_format = reject_response_format
        self._expected_key = _fingerprint(api_key) if api_key else None
        self._faults: list[Fault | None] = [_as_fault(f) for f in faults]
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._count = 0
        self.requests: list[RecordedRequest] = []
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle -------------------------------------------------------------
    def start(self) -> "_FakeAPIServer":
        """Bind 127.0.0.1 on a free port and serve in a background thread."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.fake = self
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving; hanging and delayed requests are released at once."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "_FakeAPIServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        """The bound port."""
        if self._httpd is None:
            raise RuntimeError("server not started")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        """The URL to give the SDK as ``base_url``."""
        raise NotImplementedError

    # configuration -----------------------------------------------------------
    def inject(self, *faults: FaultLike) -> None:
        """Queue faults for the next completion requests (None = answer normally)."""
        with self._lock:
            self._faults.extend(_as_fault(f) for f in faults)

    @property
    def completion_requests(self) -> list[RecordedRequest]:
        """Recorded requests to the completion endpoint."""
        with self._lock:
            return [r for r in self.requests if r.path in self.completion_paths]

    # request handling -----------------------------------------------------------
    def _handle(self, handler: _Handler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        path = handler.path.split("?", 1)[0]
        headers = {k.lower(): v for k, v in handler.headers.items()}
        key = self._key_from(headers)
        masked = {k: ("<redacted>" if k in self.secret_headers else v) for k, v in headers.items()}
        record = RecordedRequest(method, path, body, masked, _fingerprint(key) if key else None)
        is_completion = method == "POST" and path in self.completion_paths
        fault: Fault | None = None
        with self._lock:
            self.requests.append(record)
            if is_completion:
                index = self._count
                self._count += 1
                if self._faults:
                    fault = self._faults.pop(0)
                elif self.fault_fn is not None:
                    fault = _as_fault(self.fault_fn(index, body if isinstance(body, dict) else {}))
        if not is_completion:
            self._send_json(handler, 404, self.error_body(404, f"no route {method} {path}", "not_found_error"))
            return
        if not isinstance(body, dict):
            self._send_json(handler, 400, self.error_body(400, "request body must be a JSON object", "invalid_request_error"))
            return
        if fault is None and self._expected_key is not None and record.key_sha256 != self._expected_key:
            fault = Fault(BAD_KEY)
        if fault is None and self.reject_response_format and self.uses_response_format(body):
            fault = Fault(REJECT_RESPONSE_FORMAT)
        record.fault = fault.kind if fault else None
        if fault is not None and fault.kind in (DROP, HANG):
            if fault.kind == HANG:
                self._stopping.wait(fault.hang_s)
            self._drop(handler)
            return
        if self.delay_s > 0 and self._stopping.wait(self.delay_s):
            self._drop(handler)
            return
        if fault is not None and fault.kind == RATE_LIMIT:
            extra = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
            self._send_json(handler, 429, self.error_body(429, "Rate limit reached, slow down", "rate_limit_error"), extra)
        elif fault is not None and fault.kind == SERVER_ERROR:
            self._send_json(handler, 500, self.error_body(500, "The server had an error", "api_error"))
        elif fault is not None and fault.kind == BAD_KEY:
            self._send_json(handler, 401, self.error_body(401, self.bad_key_message(key), "authentication_error"))
        elif fault is not None and fault.kind == REJECT_RESPONSE_FORMAT:
            self._send_json(
                handler, 400, self.error_body(400, f"{self.structured_param} is not supported by this server", "invalid_request_error")
            )
        elif fault is not None and fault.kind == BAD_REQUEST:
            self._send_json(handler, 400, self.error_body(400, fault.message, "invalid_request_error"))
        elif fault is not None and fault.kind == MALFORMED_JSON:
            self._send_raw(handler, 200, b'{"id": "chatcmpl-broken", "choices": [{"message": {"content": "tru', {})
        else:
            if fault is not None and fault.kind == EMPTY_CONTENT:
                text = ""
            elif fault is not None and fault.kind == HUGE_CONTENT:
                text = ('{"arch": "' + "x" * fault.size)[: fault.size]
            else:
                text = self.reply_fn(body)
            self._send_json(handler, 200, self.success_body(body, text))

    def _key_from(self, headers: Mapping[str, str]) -> str | None:
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip() or None
        return headers.get("x-api-key") or headers.get("api-key") or None

    def _send_json(self, handler: _Handler, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send_raw(handler, status, json.dumps(payload).encode("utf-8"), headers or {})

    def _send_raw(self, handler: _Handler, status: int, data: bytes, headers: Mapping[str, str]) -> None:
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(data)
        except OSError:
            handler.close_connection = True  # the client went away (e.g. its timeout fired)

    @staticmethod
    def _drop(handler: _Handler) -> None:
        """Close the socket without sending any response."""
        handler.close_connection = True
        try:
            handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # protocol hooks ---------------------------------------------------------------
    def success_body(self, body: dict[str, Any], text: str) -> dict[str, Any]:
        """The protocol's success JSON for reply ``text``."""
        raise NotImplementedError

    def error_body(self, status: int, message: str, kind: str) -> dict[str, Any]:
        """The protocol's error JSON."""
        raise NotImplementedError

    def uses_response_format(self, body: dict[str, Any]) -> bool:
        """Whether the request asks for structured output."""
        return False

    def bad_key_message(self, key: str | None) -> str:
        """Like the real APIs, the message echoes part of the key (clients must scrub it)."""
        shown = f"{key[:3]}***{key[-4:]}" if key and len(key) > 8 else "(none)"
        return f"Incorrect API key provided: {shown}. You can find your API key in your account settings."

    @staticmethod
    def prompt_tokens(body: dict[str, Any]) -> int:
        """Approximate prompt tokens of a request (messages plus system)."""
        total = 0
        system = body.get("system")
        if isinstance(system, str):
            total += approx_tokens(system) + 4
        for message in body.get("messages") or []:
            content = message.get("content") if isinstance(message, dict) else ""
            if isinstance(content, list):
                content = " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
            total += approx_tokens(str(content or "")) + 4
        return total


class FakeOpenAIServer(_FakeAPIServer):
    """OpenAI chat-completions stand-in (POST /v1/chat/completions)."""

    completion_paths = ("/v1/chat/completions", "/chat/completions")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def success_body(self, body: dict[str, Any], text: str) -> dict[str, Any]:
        prompt = self.prompt_tokens(body)
        completion = approx_tokens(text)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or self.model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
        }

    def error_body(self, status: int, message: str, kind: str) -> dict[str, Any]:
        code = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(status)
        param = "response_format" if "response_format" in message else None
        return {"error": {"message": message, "type": kind, "param": param, "code": code}}

    def uses_response_format(self, body: dict[str, Any]) -> bool:
        return "response_format" in body


class FakeAnthropicServer(_FakeAPIServer):
    """Anthropic Messages API stand-in (POST /v1/messages)."""

    completion_paths = ("/v1/messages",)
    structured_param = "output_config"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def success_body(self, body: dict[str, Any], text: str) -> dict[str, Any]:
        return {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model") or self.model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": self.prompt_tokens(body), "output_tokens": approx_tokens(text)},
        }

    def error_body(self, status: int, message: str, kind: str) -> dict[str, Any]:
        return {"type": "error", "error": {"type": kind, "message": message}}

    def uses_response_format(self, body: dict[str, Any]) -> bool:
        return "output_config" in body or "output_format" in body
