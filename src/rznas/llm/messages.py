"""Chat message normalisation shared by all backends."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from ..errors import LLMError
from .base import Message

ROLES = ("system", "user", "assistant")


def normalize_messages(messages: Iterable[Message | Mapping[str, Any]]) -> list[Message]:
    """Messages as :class:`Message` objects (dicts with role/content accepted); checks roles."""
    out: list[Message] = []
    for item in messages:
        if isinstance(item, Message):
            message = item
        elif isinstance(item, Mapping):
            message = Message(str(item.get("role", "")), item.get("content", ""))  # type: ignore[arg-type]
        else:
            raise LLMError(f"a chat message must be a Message or a dict, got {type(item).__name__}")
        if message.role not in ROLES:
            raise LLMError(f"unknown chat role {message.role!r} (expected one of {', '.join(ROLES)})")
        if not isinstance(message.content, str):
            raise LLMError(f"message content must be a string, got {type(message.content).__name__}")
        out.append(message)
    if not out:
        raise LLMError("no messages to send")
    return out


def as_dicts(messages: Iterable[Message]) -> list[dict[str, str]]:
    """OpenAI-style [{"role", "content"}] dictionaries."""
    return [{"role": m.role, "content": m.content} for m in messages]
