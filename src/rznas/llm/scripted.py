"""The ``scripted`` backend: deterministic replies for tests and offline replays.

Replies come from a list (strings, or exceptions to raise, consumed in order), a callable
``(messages) -> str``, a JSONL file (one reply per line: a JSON string or an object with
a ``"text"`` field), or a script registered under a name in :data:`SCRIPTS`. Token counts
are approximate (4 characters per token).
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence, Union

from ..errors import ConfigError, LLMError
from ..registry import Registry
from .base import BACKENDS, Completion, Message
from .messages import normalize_messages
from .tokens import approx_prompt_tokens, approx_tokens

ReplyItem = Union[str, BaseException]
ReplyFn = Callable[[list[Message]], str]
Replies = Union[Sequence[ReplyItem], ReplyFn]

#: name -> replies (list or callable), for ``--llm scripted:NAME``
SCRIPTS: Registry[Replies] = Registry("reply script")


def load_jsonl(path: str | Path) -> list[str]:
    """Replies from a JSONL file: each line a JSON string or an object with "text"."""
    replies: list[str] = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read scripted replies {path}: {exc.strerror}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            raise ConfigError(f"{path}:{number}: not valid JSON") from None
        if isinstance(item, dict) and isinstance(item.get("text"), str):
            replies.append(item["text"])
        elif isinstance(item, str):
            replies.append(item)
        else:
            raise ConfigError(f'{path}:{number}: expected a JSON string or {{"text": ...}}')
    return replies


class ScriptedClient:
    """Replays scripted replies; ``cycle`` restarts a list instead of failing when it runs out."""

    backend = "scripted"

    def __init__(
        self, model: str = "scripted", *, replies: Replies | None = None, cycle: bool = False, seed: int | None = None
    ):
        """``seed`` is accepted for a uniform call signature; scripted replies are deterministic anyway."""
        if replies is None:
            replies = self._resolve(model)
        self.model = model or "scripted"
        self._fn: ReplyFn | None = replies if callable(replies) else None
        self._items: list[ReplyItem] = [] if callable(replies) else list(replies)
        if self._fn is None and not self._items:
            raise ConfigError("scripted backend: no replies given")
        self.cycle = cycle
        self._next = 0
        self._lock = threading.Lock()
        #: every prompt received, for tests to inspect
        self.prompts: list[list[Message]] = []

    @staticmethod
    def _resolve(name: str) -> Replies:
        if name in SCRIPTS:
            return SCRIPTS.get(name)
        if name and Path(name).is_file():
            return load_jsonl(name)
        raise ConfigError(
            f"scripted backend: {name!r} is neither a registered script ({', '.join(SCRIPTS.names()) or 'none'}) "
            "nor a JSONL file; pass replies= to create_client"
        )

    def complete(
        self,
        messages: list[Message],
        *,
        temperature: float,
        max_tokens: int,
        json_schema: dict[str, Any] | None = None,
        seed: int | None = None,
    ) -> Completion:
        """The next scripted reply (or the callable's answer); scripted exceptions are raised.
        ``seed`` is accepted and ignored (scripted replies do not sample)."""
        msgs = normalize_messages(messages)
        started = time.perf_counter()
        with self._lock:
            self.prompts.append(msgs)
            if self._fn is None:
                if self._next >= len(self._items):
                    if not self.cycle:
                        raise LLMError(f"scripted backend {self.model!r}: all {len(self._items)} replies used")
                    self._next = 0
                item: ReplyItem = self._items[self._next]
                self._next += 1
        if self._fn is not None:
            item = self._fn(msgs)
        if isinstance(item, BaseException):
            raise item
        if not isinstance(item, str):
            raise LLMError(f"scripted backend: a reply must be a string, got {type(item).__name__}")
        return Completion(
            text=item,
            input_tokens=approx_prompt_tokens(msgs),
            output_tokens=approx_tokens(item),
            model=self.model,
            latency_s=time.perf_counter() - started,
            extra={"usage_estimated": True, "structured": "none"},
        )


@BACKENDS.register("scripted")
def make_scripted(model: str, **options: Any) -> ScriptedClient:
    """Factory for ``scripted:NAME`` (``replies=`` list/callable, or NAME a script or JSONL path)."""
    if options.pop("base_url", None) is not None:
        raise ConfigError("a base URL applies to the openai and anthropic backends, not to scripted")
    options.pop("timeout", None)  # nothing to time out
    return ScriptedClient(model, **options)
