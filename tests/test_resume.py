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


def count_rows(run_dir: Path, table: str) -> int:
    """Rows of ``table`` in a (possibly live, possibly absent) run store, read-only."""
    path = run_dir / DB_NAME
    if not path.exists():
        return 0
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        finally:
            db.close()
    except sqlite3.OperationalError:
        return 0


def committed_trials(run_dir: Path) -> int:
    return count_rows(run_dir, "trials")


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


def test_sigterm_stops_a_search_like_ctrl_c_and_the_run_resumes(tmp_path, reference):
    """kill / docker stop / a scheduler's preemption: the store records an interrupted run, not a cut-off one."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(repo=str(REPO)))
    out = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, str(driver), *ARGS, "--llm", "scripted:test-mutator", "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "PYTHONHASHSEED": "1"},
    )
    deadline = time.monotonic() + 120
    while committed_trials(out) < POPULATION + 2:
        assert process.poll() is None, f"driver ended early: {process.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, "driver too slow"
        time.sleep(0.005)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143, err.decode()[-2000:]
    assert "rznas: terminated (SIGTERM)" in err.decode()
    store = RunStore.open(out)
    try:
        assert store.meta("status") == "interrupted"
        assert f"rznas search --resume {out}" in store.meta("status_reason")
    finally:
        store.close()
    register_mutator("test-mutator")
    assert main(["search", "--resume", str(out), "--quiet"]) == 0
    resumed = run_log(out)
    assert resumed["trials"] == reference["trials"] and resumed["status"] == "finished"


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
    assert RunStore.open(tmp_path / "replay").usage() == {"calls": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0, "unpriced_calls": 0}
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


# -- exact resume with the embedded model at sampled temperatures (issue 11 item 3) ------

LOCAL_SETTINGS = {"reflect_max_tokens": 40, "code_description": False, "example": False, "score_cache": "none"}
LOCAL_ARGS = ["search", "--proxy", "params", "--proposer", "llm", "--llm", "local:q8_0", "--population", "4",
              "--iterations", "5", "--seed", "3", "--quiet"]
LOCAL_DRIVER = "import sys; from rznas.cli import main; sys.exit(main(sys.argv[1:]))"


def local_log(run_dir: Path) -> dict:
    """What an exact resume must reproduce, the model seed of every call included."""
    store = RunStore.open(run_dir)
    try:
        return {
            "trials": [t.log_record() for t in store.trials()],
            "calls": [(c["trial_number"], c["seq"], c["purpose"], c["cache_key"], c["temperature"], c["seed"],
                       c["reply_text"]) for c in store.llm_calls()],
            "reflections": store.reflections(),
            "cache": sorted(key for key, _, _ in store.cache_entries()),
            "status": store.meta("status"),
        }
    finally:
        store.close()


def cached_replies(run_dir: Path) -> int:
    return count_rows(run_dir, "llm_cache")


def run_until_killed(argv: list[str], reached) -> None:
    """Run the CLI in a subprocess and SIGKILL it the moment ``reached()`` holds."""
    process = subprocess.Popen([sys.executable, "-c", LOCAL_DRIVER, *argv],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not reached():
        assert process.poll() is None, f"search ended before the kill point: {process.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, "search too slow to reach the kill point"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_sigkill_and_resume_with_the_embedded_sampling_model_gives_the_same_log(tmp_path):
    """SmolLM2 at temperatures drawn from 0.2..1.0, killed three times (after its first cached
    reply, after trial 6 was committed, after its 6th cached reply) and resumed each time:
    the same trials, calls (seeds and reply texts) and reflections as an uninterrupted run."""
    pytest.importorskip("llama_cpp")
    config = tmp_path / "settings.json"
    config.write_text(json.dumps(LOCAL_SETTINGS))
    reference_dir, out = tmp_path / "reference", tmp_path / "run"
    assert main([*LOCAL_ARGS, "--config", str(config), "--out", str(reference_dir)]) == 0
    reference = local_log(reference_dir)
    assert reference["status"] == "finished" and len({c[4] for c in reference["calls"]}) > 1  # sampled

    run_until_killed([*LOCAL_ARGS, "--config", str(config), "--out", str(out)], lambda: cached_replies(out) >= 1)
    kill_points = [local_log(out)]
    run_until_killed(["search", "--resume", str(out), "--quiet"], lambda: committed_trials(out) >= 6)
    kill_points.append(local_log(out))
    run_until_killed(["search", "--resume", str(out), "--quiet"], lambda: cached_replies(out) >= 6)
    kill_points.append(local_log(out))
    for killed in kill_points:
        assert killed["status"] == "running"
        assert killed["trials"] == reference["trials"][: len(killed["trials"])]
    assert main(["search", "--resume", str(out), "--quiet"]) == 0
    resumed = local_log(out)
    assert resumed["trials"] == reference["trials"]
    assert resumed["calls"] == reference["calls"]
    assert resumed["reflections"] == reference["reflections"]
    assert resumed["cache"] == reference["cache"] and resumed["status"] == "finished"


class SeedSampler:
    """A fast stand-in for a sampling model: the reply depends on the seed it is given (a
    mutation drawn from the seed), as llama.cpp's does; raises once at ``fail_at`` calls."""

    model = "seed-sampler"

    def __init__(self, fail_at: int | None = None):
        self.seeds: list[int | None] = []
        self.fail_at = fail_at

    def complete(self, messages, *, temperature, max_tokens, json_schema=None, seed=None):
        from rznas.llm.base import Completion
        from rznas.spaces import get_space

        from .search_fakes import parent_of

        if self.fail_at is not None and len(self.seeds) == self.fail_at:
            self.fail_at = None
            raise LLMError("crash", retryable=False)
        self.seeds.append(seed)
        rng = random.Random(seed)
        if call_kind(messages) == "reflect":
            text = f"advice {rng.random():.6f}"
        else:
            space = get_space("nb201")
            text = json.dumps({"arch": space.encode(space.mutate(space.decode(parent_of(messages)), rng))})
        return Completion(text, 10, 5, self.model, extra={"seed": seed})


@pytest.mark.parametrize("concurrency", [1, 3])
def test_model_seeds_come_from_the_persisted_run_not_a_process_counter(tmp_path, concurrency):
    """A crash and a resume in a new client: the live calls after the resume get the seeds
    (and so the replies) of the uninterrupted run, at concurrency 1 and at K > 1 alike."""
    config = SearchConfig(proxy="params", population=3, iterations=6, seed=11, llm="scripted:x",
                          concurrency=concurrency, score_cache="none")
    quiet = Progress(enabled=False)
    whole = SeedSampler()
    run = SearchRun.start(config, tmp_path / "whole", client=whole, progress=quiet)
    run.run()
    run.close()
    assert None not in whole.seeds and len(set(whole.seeds)) == len(whole.seeds)  # one seed per call

    crashing = SeedSampler(fail_at=5)
    run = SearchRun.start(config, tmp_path / "run", client=crashing, progress=quiet)
    with pytest.raises(LLMError):
        run.run()
    run.close()
    resumed = SeedSampler()
    run = SearchRun.resume(tmp_path / "run", client=resumed, progress=quiet)
    run.run()
    run.close()
    assert resumed.seeds and sorted(crashing.seeds + resumed.seeds) == sorted(whole.seeds)
    if concurrency == 1:  # the sequential loop is deterministic: the same log, call for call
        assert run_log(tmp_path / "run")["trials"] == run_log(tmp_path / "whole")["trials"]
        assert run_log(tmp_path / "run")["calls"] == run_log(tmp_path / "whole")["calls"]
