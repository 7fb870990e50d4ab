"""A search in a child process for tests that watch or kill a live run (runs, report, compare, dashboard)."""
from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

from rznas.cli import main
from rznas.store import DB_NAME

from .test_resume import committed_trials

REPO = Path(__file__).resolve().parents[1]
POPULATION = 4
# a slow scripted LLM keeps the run alive long enough to be looked at, then killed; with a gate
# file, every LLM call waits until the test creates it (the initial population needs none)
SLOW_DRIVER = """
import os, sys, time
sys.path.insert(0, {repo!r})
from tests.search_fakes import mutator_reply
from rznas.llm.scripted import SCRIPTS

def slow(messages):
    deadline = time.monotonic() + 300
    while {gate!r} and not os.path.exists({gate!r}) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep({delay})
    return mutator_reply(messages)

SCRIPTS.register("test-mutator")(slow)
from rznas.cli import main
sys.exit(main(sys.argv[1:]))
"""


def start_slow_search(
    tmp_path: Path, out: Path, *, iterations: int, delay: float, gate: Path | None = None
) -> subprocess.Popen:
    """`rznas search` with the scripted mutator in a child process (so that it can be SIGKILLed);
    its LLM calls wait for the file ``gate`` when one is given."""
    driver = tmp_path / "driver.py"
    driver.write_text(SLOW_DRIVER.format(repo=str(REPO), delay=delay, gate=str(gate) if gate else ""))
    args = ["search", "--proxy", "params", "--proposer", "llm", "--llm", "scripted:test-mutator",
            "--population", str(POPULATION), "--iterations", str(iterations), "--seed", "5", "--quiet", "--out", str(out)]
    return subprocess.Popen([sys.executable, str(driver), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_for_trials(process: subprocess.Popen, out: Path, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while committed_trials(out) < count:
        assert process.poll() is None, f"search ended early: {process.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, "search too slow"
        time.sleep(0.02)


def store_bytes(run_dir: Path) -> str:
    """sha256 of the store and its WAL (what a reader must never change; SQLite may create an
    empty WAL for a read-only reader of a cleanly closed store, which holds nothing)."""
    digest = hashlib.sha256()
    for suffix in ("", "-wal"):
        path = run_dir / f"{DB_NAME}{suffix}"
        content = path.read_bytes() if path.exists() else b""
        digest.update(len(content).to_bytes(8, "big") + content)
    return digest.hexdigest()


def random_run(out: Path, seed: int) -> None:
    assert main(["search", "--proposer", "random", "--proxy", "params", "--population", str(POPULATION),
                 "--iterations", "3", "--seed", str(seed), "--out", str(out), "--quiet"]) == 0
