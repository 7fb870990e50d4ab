"""The SQLite run store: config, atomic trial commits, call log, reply cache, no secrets."""
from __future__ import annotations

import sqlite3

import pytest

from rznas.arch import Architecture
from rznas.errors import ConfigError
from rznas.llm import create_client
from rznas.search.config import SearchConfig
from rznas.search.gateway import CachedReply, CallRecord, LLMGateway
from rznas.search.progress import Progress
from rznas.search.runner import SearchRun
from rznas.trial import Trial, TrialState
from rznas.llm.base import Message
from rznas.store import DB_NAME, RunStore

from .search_fakes import mutator_reply

ARCH = Architecture("nb201", ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3", "none"))


def trial(number: int, state=TrialState.COMPLETE, score=1.0) -> Trial:
    return Trial(number, 0, state, ARCH, "enc", score if state is TrialState.COMPLETE else None, "", None, None,
                 timings={"total_s": 0.1})


def call(purpose="mutate") -> CallRecord:
    return CallRecord(purpose, "m", "{}", "k", "k", "p", 0.4, "reply", 10, 2, 0.01, 0.0, False)


def test_create_open_and_config_round_trip(tmp_path):
    store = RunStore.create(tmp_path / "run", {"a": 1})
    assert store.config() == {"a": 1} and store.meta("status") == "running"
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()
    with pytest.raises(ConfigError, match="already holds a run"):
        RunStore.create(tmp_path / "run", {})
    with pytest.raises(ConfigError, match="holds no rznas run"):
        RunStore.open(tmp_path / "nothing")
    reopened = RunStore.open(tmp_path / "run")
    assert reopened.config() == {"a": 1}


def test_trial_commit_is_atomic(tmp_path):
    store = RunStore.create(tmp_path, {})
    store.commit_trial(trial(0), [call(), call("reflect")], {"strategy": [1]}, ("note", "raw note"))
    assert [t.number for t in store.trials()] == [0]
    assert store.trials()[0].arch == ARCH and store.trials()[0].timings == {"total_s": 0.1}
    assert [c["purpose"] for c in store.llm_calls()] == ["mutate", "reflect"]
    assert store.reflections() == {0: "note"}
    assert store.rng_state() == {"strategy": [1]}
    # a failing commit (duplicate trial number) leaves nothing behind: no calls, no new RNG state
    with pytest.raises(sqlite3.IntegrityError):
        store.commit_trial(trial(0), [call()], {"strategy": [2]})
    assert len(store.llm_calls()) == 2 and store.rng_state() == {"strategy": [1]}


def test_reply_cache_and_usage(tmp_path):
    store = RunStore.create(tmp_path, {})
    reply = CachedReply("text", 100, 20, 0.5, 0.002, "model")
    store.put_reply("key", '{"model": "m"}', reply)
    store.put_reply("key", '{"model": "m"}', CachedReply("other", 1, 1, 0, 0, "m"))  # first reply wins
    assert store.get_reply("key") == reply and store.get_reply("nope") is None
    assert store.usage() == {"calls": 1, "input_tokens": 100, "output_tokens": 20, "cost_usd": 0.002, "unpriced_calls": 0}


def test_gateway_uses_the_cache_and_counts_repetitions(tmp_path):
    store = RunStore.create(tmp_path, {})
    client = create_client("scripted:t", replies=["one", "two", "three"])
    gateway = LLMGateway(client, model="scripted:t", cache=store)
    messages = [Message("user", "hi")]
    first = gateway.complete("mutate", messages, temperature=0.2, max_tokens=5)
    second = gateway.complete("mutate", messages, temperature=0.2, max_tokens=5)
    assert (first.text, second.text) == ("one", "two")  # a repeated request is asked again
    assert first.request_hash == second.request_hash and first.key != second.key
    # a fresh gateway on the same store (a resumed run) is answered from the cache
    again = LLMGateway(None, model="scripted:t", cache=store)
    assert again.complete("mutate", messages, temperature=0.2, max_tokens=5).cache_hit
    assert again.complete("mutate", messages, temperature=0.2, max_tokens=5).text == "two"
    with pytest.raises(Exception, match="offline replay: no cached reply"):
        again.complete("mutate", messages, temperature=0.4, max_tokens=5)


def test_api_keys_never_reach_the_store(tmp_path, monkeypatch):
    secret = "sk-test-SECRET-0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("ANTHROPIC_API_KEY", secret)
    config = SearchConfig(proxy="params", population=3, iterations=2, llm="scripted:t", batch_size=4, probe_chunks=1)
    run = SearchRun.start(config, tmp_path / "run", client=create_client("scripted:t", replies=mutator_reply),
                          progress=Progress(enabled=False))
    run.run()
    run.close()
    for path in (tmp_path / "run").iterdir():
        assert secret.encode() not in path.read_bytes(), path
    assert (tmp_path / "run" / DB_NAME).exists()


# -- one writer per run (issue 11 item 4) ------------------------------------------------

HOLDER = """
import sys, time
from rznas.search.config import SearchConfig
from rznas.store import RunStore
store = RunStore.create(sys.argv[1], SearchConfig(proposer="random", population=2, iterations=1).to_dict())
print("ready", flush=True)
time.sleep(300)
"""


def test_a_live_writer_blocks_a_second_one_with_exit_2_and_a_killed_one_does_not(tmp_path, capsys):
    """Another process (not a thread) writes the run: the CLI refuses a resume and a new
    search there with exit code 2 and a clear message; once it is SIGKILLed, resume works."""
    import os
    import signal
    import subprocess
    import sys

    from rznas.cli import main
    from rznas.store import writer_alive

    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE, env=os.environ.copy())
    try:
        assert holder.stdout.readline().strip() == b"ready"
        assert writer_alive(run) is True
        capsys.readouterr()
        assert main(["search", "--resume", str(run), "--quiet"]) == 2
        assert main(["search", "--proposer", "random", "--population", "2", "--iterations", "1", "--out", str(run)]) == 2
        err = capsys.readouterr().err
        assert "being written by another live rznas process" in err and "Traceback" not in err
        assert "sqlite" not in err.lower()
        assert writer_alive(run) is True  # the refused attempts left the writer's lock alone
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert writer_alive(run) is False  # the lock file stays, the lock went with the process
    assert main(["search", "--resume", str(run), "--quiet"]) == 0


def test_a_new_run_in_a_directory_with_a_finished_run_is_refused(tmp_path):
    RunStore.create(tmp_path, {}).close()
    with pytest.raises(ConfigError, match="already holds a run"):
        RunStore.create(tmp_path, {})


# -- per-call records and old stores (issue 11 item 5) ----------------------------------

def test_each_call_records_how_it_was_answered_and_unknown_cost_is_not_zero(tmp_path):
    from rznas.errors import LLMError
    from rznas.llm import RetryPolicy

    replies = [LLMError("HTTP 503", retryable=True), "one"]
    client = create_client("scripted:x", replies=replies, retry_policy=RetryPolicy(max_retries=2, sleep=lambda s: None))
    client.price = None  # as for an openai model missing from the price table
    store = RunStore.create(tmp_path, {})
    gateway = LLMGateway(client, model="m", cache=store)
    record = gateway.complete("mutate", [Message("user", "hi")], temperature=0.2, max_tokens=5, seed=77)
    assert record.cost_usd is None and record.attempts == 2 and record.usage_estimated
    assert record.structured == "none" and record.seed is None  # scripted replies apply no seed
    assert record.details["seed_not_applied"] == 77 and "HTTP 503" in record.details["retries"][0]["error"]
    store.commit_trial(trial(0), [record], {})
    [row] = store.llm_calls()
    assert row["cost_usd"] is None and row["attempts"] == 2 and row["usage_estimated"] == 1
    assert row["details"]["retries"][0]["retryable"] is True
    assert store.usage()["cost_usd"] is None and store.usage()["unpriced_calls"] == 1
    assert gateway.usage.snapshot().cost_usd is None
    again = LLMGateway(None, model="m", cache=store)  # a cache hit keeps what the live call reported
    hit = again.complete("mutate", [Message("user", "hi")], temperature=0.2, max_tokens=5, seed=77)
    assert hit.cache_hit and hit.attempts == 2 and hit.cost_usd is None and hit.details == record.details
    store.close()


def test_a_schema_1_run_is_migrated_and_resumes(tmp_path):
    import shutil

    from rznas.cli import main

    from .conftest import REPO_ROOT
    from .search_fakes import register_mutator

    run = tmp_path / "old"
    run.mkdir()
    shutil.copy(REPO_ROOT / "tests" / "golden" / "run_schema1" / DB_NAME, run / DB_NAME)
    db = sqlite3.connect(run / DB_NAME)
    old_calls = db.execute("SELECT cache_key, reply_text, cost_usd FROM llm_calls ORDER BY id").fetchall()
    db.close()
    from rznas.run_reader import RunReader

    with RunReader(run) as reader:  # read-only viewers read a schema-1 run without migrating it
        assert reader.usage()["calls"] == len(old_calls) and reader.meta("schema_version") == 1
    register_mutator("test-mutator")
    assert main(["search", "--resume", str(run), "--iterations", "4", "--quiet"]) == 0
    store = RunStore.open(run)
    assert store.meta("schema_version") == 2 and store.meta("migrated_from_schema") == 1
    calls = store.llm_calls()
    assert [(c["cache_key"], c["reply_text"], c["cost_usd"]) for c in calls[: len(old_calls)]] == old_calls
    assert all(c["attempts"] is None and c["structured"] is None for c in calls[: len(old_calls)])  # unknown then
    new = calls[len(old_calls):]
    assert new and all(c["attempts"] == 1 and c["structured"] == "none" and c["usage_estimated"] == 1 for c in new)
    assert len(store.trials()) == 3 + 4 and store.meta("status") == "finished"
    store.close()


def test_identical_requests_of_different_calls_are_keyed_by_seed_not_arrival_order(tmp_path):
    """Two proposals asking the same prompt (concurrent search): whichever arrives first, each
    gets the reply sampled with its own seed, also from the cache after a resume."""

    def sampler(seed_replies):
        class Sampler:
            model = "sampler"

            def complete(self, messages, *, temperature, max_tokens, json_schema=None, seed=None):
                from rznas.llm.base import Completion

                return Completion(f"reply for seed {seed}", 1, 1, "sampler", extra={"seed": seed})

        return Sampler()

    messages = [Message("user", "same prompt")]
    answers = []
    for order in ((1, 2), (2, 1)):
        store = RunStore.create(tmp_path / f"run{order}", {})
        gateway = LLMGateway(sampler(None), model="m", cache=store, seeded_keys=True)
        got = {seed: gateway.complete("mutate", messages, temperature=0.5, max_tokens=5, seed=seed) for seed in order}
        offline = LLMGateway(None, model="m", cache=store, seeded_keys=True)  # resumed: from the cache only
        again = {seed: offline.complete("mutate", messages, temperature=0.5, max_tokens=5, seed=seed) for seed in order[::-1]}
        assert {s: r.text for s, r in got.items()} == {s: r.text for s, r in again.items()}
        answers.append({s: (r.key, r.text) for s, r in got.items()})
        store.close()
    assert answers[0] == answers[1] == {s: (answers[0][s][0], f"reply for seed {s}") for s in (1, 2)}
