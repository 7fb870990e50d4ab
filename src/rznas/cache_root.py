"""The folder rznas keeps its caches in (scores, re-encoded models): one place for both."""
from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "RZNAS_CACHE_DIR"


def cache_root() -> Path:
    """$RZNAS_CACHE_DIR, else ~/.cache/rznas."""
    root = os.environ.get(CACHE_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "rznas"
