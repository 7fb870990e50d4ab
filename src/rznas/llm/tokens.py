"""Approximate token counting for backends that report no usage (scripted, some servers)."""
from __future__ import annotations

from typing import Iterable

from .base import Message

#: characters per token of English/JSON text for GPT-style BPE tokenizers (rule of thumb)
CHARS_PER_TOKEN = 4
#: per-message overhead of chat templates (role markers, separators)
MESSAGE_OVERHEAD_TOKENS = 4


def approx_tokens(text: str) -> int:
    """Rough token count of ``text`` (ceil of chars / 4); 0 for an empty string."""
    if not text:
        return 0
    return -(-len(text) // CHARS_PER_TOKEN)


def approx_prompt_tokens(messages: Iterable[Message]) -> int:
    """Rough token count of a chat prompt, including per-message template overhead."""
    return sum(approx_tokens(m.content) + MESSAGE_OVERHEAD_TOKENS for m in messages)
