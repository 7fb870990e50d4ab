"""Scrub API keys out of any text that may reach an error message, a log or the run store."""
from __future__ import annotations

import re
from typing import Iterable

#: things that look like provider keys (OpenAI sk-/sk-proj-, Anthropic sk-ant-, bearer tokens)
_KEY_LIKE = re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-*.]{4,}|\bBearer\s+[A-Za-z0-9_\-.=]{8,}")
REDACTED = "[REDACTED]"


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every given secret (and anything shaped like an API key) replaced."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    return _KEY_LIKE.sub(REDACTED, text)
