"""The one canonical JSON text that rznas hashes (score-cache contexts, LLM request keys)."""
from __future__ import annotations

import json
from typing import Any


def canonical_json(value: Any) -> str:
    """Compact, key-sorted JSON with non-ASCII kept as is: equal values give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


__all__ = ["canonical_json"]
