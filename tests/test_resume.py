"""Resume after SIGKILL and offline replay reproduce the uninterrupted run's trial log."""
from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rznas.cli import main
from rznas.errors import LLMError
from rznas.llm import create_client
from rznas.search.config import SearchConfig
from rznas.search.progress import Progress
from rznas.search.runner import SearchRun
from rznas.store import DB_NAME, RunStore

from .search_fakes import call_kind, mutator_reply, register_mutator

REPO = Path(__file__).resolve().parents[1]
POPULATION, ITERATIONS = 4, 12
ARGS = ["search", "--proxy", "params", "--proposer", "llm", "--population", str(POPULATION),
        "--iterations", str(ITERATIONS), "--seed", "5", "--quiet"]

DRIVER = """
import sys, time
sys.path.insert(0, {repo!r})
from tests.search_fakes import mutator_reply
from rznas.llm.scripted import SCRIPTS

def slow(messages):
    time.sleep(0.05)  # widen the window so the kill can land inside an iteration
    return mutator_reply(messages)

SCRIPTS.register("test-mutator")(slow)
from rznas.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_log(run_dir: Path) -> dict:
    store = RunStore.open(run_dir)
    try:
        return {
            "trials": [t.log_record() for t in store.trials()],
            "calls": [(c["trial_number"], c["seq"], c["purpose"], c["cache_key"], c["temperature"], c["reply_text"])
                      for c in store.llm_calls()],
            "reflections": store.reflections(),
            "cache": sorted(key for key, _, _ in store.cache_entries()),
            "status": store.meta("status"),
        }
    finally:
        store.close()


def committed_trials(run_dir: Path) -> int:
    path = run_dir / DB_NAME
    if not path.exists():
        return 0
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return db.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
        finally:
            db.close()
    except sqlite3.OperationalError:
        return 0


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    register_mutator("test-mutator")
    out = tmp_path_factory.mktemp("reference") / "run"
    assert main([*ARGS, "--llm", "scripted:test-mutator", "--out", str(out)]) == 0
    log = run_log(out)
    assert len(log["trials"]) == POPULATION + ITERATIONS and log["status"] == "finished"
    return log


def test_sigkill_at_a_random_iteration_then_resume_gives_the_same_log(tmp_path, reference):
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(repo=str(REPO)))
    out = tmp_path / "run"
    kill_after = random.Random().randint(2, POPULATION + ITERATIONS - 3)
    process = subprocess.Popen(
        [sys.executable, str(driver), *ARGS, "--llm", "scripted:test-mutator", "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "PYTHONHASHSEED": "1"},
    )
    deadline = time.monotonic() + 120
    while committed_trials(out) < kill_after:
        assert process.poll() is None, f"driver ended early: {process.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, "driver too slow"
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    interrupted = run_log(out)
    assert interrupted["status"] == "running"
    assert interrupted["trials"] == reference["trials"][: len(interrupted["trials"])], f"killed after {kill_after}"

    register_mutator("test-mutator")
    assert main(["search", "--resume", str(out), "--quiet"]) == 0
    resumed = run_log(out)
    assert resumed["trials"] == reference["trials"], f"killed after {kill_after}"
    assert resumed["reflections"] == reference["reflections"]
    assert [c[:5] for c in resumed["calls"]] == [c[:5] for c in reference["calls"]]
    assert [c[5] for c in resumed["calls"]] == [c[5] for c in reference["calls"]]
    assert resumed["cache"] == reference["cache"]  # no LLM request was paid twice
    assert resumed["status"] == "finished"
    best = json.loads((out / "best_arch.json").read_text())
    assert best["arch"] is not None and best["trials"] == POPULATION + ITERATIONS


def test_crash_inside_an_iteration_repeats_no_paid_call(tmp_path, reference):
    """The mutation reply of the crashed iteration was cached; the resumed run reuses it."""
    crashed = {"done": False}

    def flaky(messages):
        if call_kind(messages) == "reflect" and not crashed["done"]:
            flaky.reflections += 1
            if flaky.reflections == 3:
                crashed["done"] = True
                raise LLMError("bad request", retryable=False)
        return mutator_reply(messages)

    flaky.reflections = 0
    config = SearchConfig(proxy="params", population=POPULATION, iterations=ITERATIONS, seed=5, llm="scripted:test-mutator")
    run = SearchRun.start(config, tmp_path / "run", client=create_client("scripted:x", replies=flaky),
                          progress=Progress(enabled=False))
    with pytest.raises(LLMError):
        run.run()
    run.close()
    store = RunStore.open(tmp_path / "run")
    assert store.meta("status") == "stopped" and "bad request" in store.meta("status_reason")
    live_calls_before = store.usage()["calls"]
    store.close()

    counting = create_client("scripted:y", replies=mutator_reply)
    run = SearchRun.resume(tmp_path / "run", client=counting, progress=Progress(enabled=False))
    run.run()
    run.close()
    log = run_log(tmp_path / "run")
    assert log["trials"] == reference["trials"]
    assert log["cache"] == reference["cache"]
    # the resumed run asked the model only for what the crashed one had not already paid for
    assert len(counting.inner.prompts) == len(reference["cache"]) - live_calls_before


def test_offline_replay_reproduces_a_finished_run(tmp_path, reference, tmp_path_factory):
    register_mutator("test-mutator")
    source = tmp_path / "source"
    assert main([*ARGS, "--llm", "scripted:test-mutator", "--out", str(source)]) == 0
    assert main(["search", "--replay", str(source), "--out", str(tmp_path / "replay"), "--quiet"]) == 0
    replay = run_log(tmp_path / "replay")
    assert replay["trials"] == reference["trials"]
    assert all(c["cache_hit"] for c in RunStore.open(tmp_path / "replay").llm_calls())
    # the copied reply cache was paid by the source run, not by the replay
    paid = RunStore.open(source).usage()
    assert paid["calls"] > 0
    assert RunStore.open(tmp_path / "replay").usage() == {"calls": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0}
    assert json.loads((tmp_path / "replay" / "best_arch.json").read_text())["usage"]["calls"] == 0
    from rznas.run_reader import RunReader

    assert RunReader(tmp_path / "replay").usage()["calls"] == 0  # what `rznas report` shows
    assert RunReader(source).usage() == paid


def test_resume_refuses_to_change_the_search(tmp_path):
    register_mutator("test-mutator")
    out = tmp_path / "run"
    assert main([*ARGS[:-1], "--iterations", "1", "--llm", "scripted:test-mutator", "--out", str(out), "--quiet"]) == 0
    assert main(["search", "--resume", str(out), "--proxy", "zico"]) == 2
    # extending the number of iterations is allowed and continues the same run
    assert main(["search", "--resume", str(out), "--iterations", "3", "--quiet"]) == 0
    assert len(run_log(out)["trials"]) == POPULATION + 3
