"""Shared fixtures: locating ../shared/data (fail loudly in CI, skip elsewhere)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Tiny models run fastest single-threaded, and 2-core CI machines are shared by the suite's
# subprocess tests: one intra-op thread keeps the suite fast and its timings stable.
torch.set_num_threads(1)

REPO_ROOT = Path(__file__).resolve().parents[1]

# searches use the persistent score cache by default: keep the suite's out of ~/.cache
if "RZNAS_CACHE_DIR" not in os.environ:
    import tempfile

    os.environ["RZNAS_CACHE_DIR"] = tempfile.mkdtemp(prefix="rznas-test-cache-")


def shared_data_dir() -> Path:
    """RZNAS_SHARED_DATA, else ../shared/data beside the repository."""
    return Path(os.environ.get("RZNAS_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def require_shared(relative: str) -> Path:
    """Path inside the shared data folder; skip when absent, but fail when CI=true."""
    path = shared_data_dir() / relative
    if not path.exists():
        message = f"shared data {path} is missing (set RZNAS_SHARED_DATA)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def shared_data() -> Path:
    return require_shared("")
