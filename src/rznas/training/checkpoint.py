"""Checkpoints written atomically (temp file + os.replace) and read back with checks."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError

CHECKPOINT_VERSION = 1


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``state`` with torch.save so that ``path`` is always either old or new, never partial."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as tmp:
            torch.save({"version": CHECKPOINT_VERSION, **state}, tmp)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    return target


def load_checkpoint(path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors and plain data only)."""
    source = Path(path)
    if not source.is_file():
        raise ConfigError(f"checkpoint {source} does not exist")
    try:
        state = torch.load(source, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise ConfigError(f"{source} is not a readable rznas checkpoint: {exc}") from None
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise ConfigError(f"{source} is not an rznas checkpoint (version {CHECKPOINT_VERSION})")
    return state
