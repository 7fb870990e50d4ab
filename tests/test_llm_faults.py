"""The openai backend, through the real openai SDK, against a fake server injecting every fault."""
from __future__ import annotations

import logging
import time
from typing import Iterator

import pytest

from rznas.errors import LLMError, ParseError
from rznas.llm import Message, RetryPolicy, create_client, extract_json_object
from rznas.llm.client import ManagedClient
from rznas.llm.fake_server import Fault, FakeOpenAIServer

KEY = "sk-test-Zq8vR3mK1pL0sN7xW4yT"
MSGS = [Message("system", "You propose architectures."), Message("user", "Mutate the parent.")]
REPLY = '{"arch": "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|nor_conv_3x3~2|"}'


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RZNAS_OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(reply=REPLY, api_key=KEY) as srv:
        yield srv


class Sleeps(list):
    """Records backoff delays instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client_for(server: FakeOpenAIServer, *, max_retries: int = 3, timeout: float = 5.0, sleeps: Sleeps | None = None) -> ManagedClient:
    policy = RetryPolicy(max_retries=max_retries, seed=0, sleep=sleeps if sleeps is not None else Sleeps())
    return create_client("openai:gpt-4o", base_url=server.base_url, timeout=timeout, retry_policy=policy)


def ask(client: ManagedClient):
    return client.complete(MSGS, temperature=0.6, max_tokens=200, json_schema={"type": "object"})


@pytest.mark.parametrize("fault", ["rate_limit", "server_error", "drop", "malformed_json"])
def test_transient_fault_recovers_and_is_recorded(server: FakeOpenAIServer, fault: str) -> None:
    server.inject(fault)
    completion = ask(client_for(server))
    assert extract_json_object(completion.text)["arch"].startswith("|nor_conv_3x3")
    assert completion.attempts == 2
    assert len(server.completion_requests) == 2
    [retry] = completion.extra["retries"]
    assert retry["retryable"] is True and retry["attempt"] == 1


def test_rate_limit_honours_retry_after(server: FakeOpenAIServer) -> None:
    sleeps = Sleeps()
    server.inject(Fault("rate_limit", retry_after=7), Fault("rate_limit", retry_after=3))
    completion = ask(client_for(server, sleeps=sleeps))
    assert completion.attempts == 3
    assert sleeps == [7.0, 3.0]
    assert "429" in completion.extra["retries"][0]["error"]


def test_rate_limit_with_real_sleep(server: FakeOpenAIServer) -> None:
    server.inject(Fault("rate_limit", retry_after=0.3))
    policy = RetryPolicy(max_retries=2, seed=0)
    client = create_client("openai:gpt-4o", base_url=server.base_url, retry_policy=policy)
    started = time.perf_counter()
    assert ask(client).attempts == 2
    assert time.perf_counter() - started >= 0.3


def test_retry_after_beyond_the_cap_stops(server: FakeOpenAIServer) -> None:
    server.inject(Fault("rate_limit", retry_after=3600))
    with pytest.raises(LLMError, match="3600") as info:
        ask(client_for(server))
    assert info.value.retryable is False


def test_persistent_server_errors_give_up_after_max_retries(server: FakeOpenAIServer) -> None:
    sleeps = Sleeps()
    server.inject(*["server_error"] * 10)
    with pytest.raises(LLMError, match="gave up after 3 attempts") as info:
        ask(client_for(server, max_retries=2, sleeps=sleeps))
    assert info.value.retryable is True
    assert len(info.value.attempts) == 3  # type: ignore[attr-defined]
    assert len(server.completion_requests) == 3
    # exponential backoff with jitter: second delay is about twice the first
    assert len(sleeps) == 2 and 1.2 < sleeps[1] / sleeps[0] < 3.4


def test_hang_times_out_then_recovers(server: FakeOpenAIServer) -> None:
    server.inject(Fault("hang", hang_s=10))
    started = time.perf_counter()
    completion = ask(client_for(server, timeout=0.5))
    assert completion.attempts == 2
    assert "timed out" in completion.extra["retries"][0]["error"]
    assert time.perf_counter() - started < 5


def test_timeouts_retried_then_fail_cleanly(server: FakeOpenAIServer) -> None:
    server.inject(*[Fault("hang", hang_s=10)] * 3)
    started = time.perf_counter()
    with pytest.raises(LLMError, match="timed out.*gave up after 3 attempts") as info:
        ask(client_for(server, max_retries=2, timeout=0.4))
    assert info.value.retryable is True
    assert time.perf_counter() - started < 6
    assert len(server.completion_requests) == 3


def test_bad_key_stops_without_retry_or_leaking_the_key(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "sk-proj-WRONGwrongWRONG1234"
    monkeypatch.setenv("OPENAI_API_KEY", wrong)
    caplog.set_level(logging.DEBUG)
    with FakeOpenAIServer(reply=REPLY, api_key=KEY) as srv:
        client = client_for(srv)
        with pytest.raises(LLMError) as info:
            ask(client)
        [request] = srv.completion_requests
    error = info.value
    assert error.retryable is False
    assert "401" in str(error) and "API key" in str(error)
    everything = str(error) + repr(error.attempts) + caplog.text + repr(request)  # type: ignore[attr-defined]
    for fragment in (wrong, wrong[-4:], "WRONGwrong"):
        assert fragment not in everything
    # the key was sent (fingerprint matches) but the server kept no copy of it
    assert request.key_present and request.key_matches(wrong)
    assert request.headers["authorization"] == "<redacted>"
    assert wrong not in repr(srv.requests)


def test_correct_key_is_sent_as_bearer(server: FakeOpenAIServer) -> None:
    ask(client_for(server))
    assert server.completion_requests[0].key_matches(KEY)


def test_empty_content_is_a_parse_error_not_a_crash(server: FakeOpenAIServer) -> None:
    server.inject("empty_content")
    completion = ask(client_for(server))
    assert completion.text == "" and completion.attempts == 1
    with pytest.raises(ParseError, match="empty"):
        extract_json_object(completion.text)


def test_one_megabyte_reply_is_received_and_rejected_by_the_parser(server: FakeOpenAIServer) -> None:
    server.inject("huge_content")
    completion = ask(client_for(server))
    assert len(completion.text) == 1_000_000
    started = time.perf_counter()
    with pytest.raises(ParseError, match="too long"):
        extract_json_object(completion.text)
    assert time.perf_counter() - started < 0.1


def test_code_like_reply_is_data_only(server: FakeOpenAIServer, tmp_path) -> None:
    target = tmp_path / "pwned"
    server.reply_fn = lambda body: f"__import__('os').system('touch {target}')"
    completion = ask(client_for(server))
    with pytest.raises(ParseError):
        extract_json_object(completion.text)
    assert not target.exists()


def test_bad_request_is_not_retried(server: FakeOpenAIServer) -> None:
    with pytest.raises(LLMError, match="HTTP 404") as info:
        create_client(
            "openai:gpt-4o", base_url=server.base_url.replace("/v1", "/nope"), retry_policy=RetryPolicy(sleep=Sleeps())
        ).complete(MSGS, temperature=0.2, max_tokens=10)
    assert info.value.retryable is False


def test_connection_refused_is_retryable() -> None:
    with FakeOpenAIServer() as srv:
        url = srv.base_url
    with pytest.raises(LLMError, match="connection failed") as info:
        create_client("openai:gpt-4o", base_url=url, retry_policy=RetryPolicy(max_retries=1, sleep=Sleeps())).complete(
            MSGS, temperature=0.2, max_tokens=10
        )
    assert info.value.retryable is True
    assert len(info.value.attempts) == 2  # type: ignore[attr-defined]


def test_unsupported_max_tokens_switches_to_max_completion_tokens(server: FakeOpenAIServer) -> None:
    server.inject(Fault("bad_request", message="Unsupported parameter: 'max_tokens' is not supported with this model. "
                                               "Use 'max_completion_tokens' instead."))
    completion = ask(client_for(server))
    first, second = (r.body for r in server.completion_requests)
    assert "max_tokens" in first and "max_completion_tokens" not in first
    assert second["max_completion_tokens"] == 200 and "max_tokens" not in second
    assert completion.extra["dropped_params"] == ["max_tokens"]


def test_other_bad_requests_are_not_worked_around(server: FakeOpenAIServer) -> None:
    server.inject(Fault("bad_request", message="max_tokens is too large: 200. This model supports at most 100 tokens."))
    with pytest.raises(LLMError, match="HTTP 400 bad request: max_tokens is too large") as info:
        ask(client_for(server))
    assert info.value.retryable is False
    assert len(server.completion_requests) == 1
