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
from rznas.search.trial import Trial, TrialState
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
