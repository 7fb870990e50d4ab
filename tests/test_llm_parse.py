"""Reply parsing: the first JSON object out of whatever a model wraps around it; never evaluated."""
from __future__ import annotations

import builtins
import inspect
import io
import os
import time
import tokenize

import pytest

from rznas.errors import ParseError
from rznas.llm import parse
from rznas.llm.parse import extract_json_object


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"arch": "a", "score": 1}', {"arch": "a", "score": 1}),
        ('Sure!\n```json\n{"arch": "a|b"}\n```\nHope this helps: {"x": 1}', {"arch": "a|b"}),
        ("```\n{\"arch\": \"plain fence\"}\n```", {"arch": "plain fence"}),
        ('<think>maybe {"arch": "draft"}?</think>\nFinal answer: {"arch": "final"}', {"arch": "final"}),
        ('<thinking>\nhmm\n</thinking>```json\n{"arch": "t"}\n```', {"arch": "t"}),
        ('The child is {"arch": "c", "type": "mutation"}. It should score well.', {"arch": "c", "type": "mutation"}),
        ("{'arch': 'single', 'n': [1, 2,],}", {"arch": "single", "n": [1, 2]}),
        ("{'arch': 'it\\'s'}", {"arch": "it's"}),
        ('{"arch": "x", }', {"arch": "x"}),
        ('{"say": "a \\"quoted\\" } brace"}', {"say": 'a "quoted" } brace'}),
        ('prose {not json} then {"a": {"b": [1, {"c": "}"}]}} end', {"a": {"b": [1, {"c": "}"}]}}),
        ('{"score": NaN, "arch": "n"}', {"score": None, "arch": "n"}),
        ('```json\n{"arch": "unclosed fence"}', {"arch": "unclosed fence"}),
    ],
)
def test_extracts_first_object(text: str, expected: dict) -> None:
    assert extract_json_object(text) == expected


def test_single_quote_repair_keeps_double_quotes_inside() -> None:
    assert extract_json_object("""{'arch': 'say "hi"'}""") == {"arch": 'say "hi"'}


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "empty"),
        ("   \n\t ", "empty"),
        ("I think you should add more convolutions.", "no JSON object"),
        ('{"arch": "nor|conv_3x3~0|+|', "no complete"),
        ('{"arch": "a" "b"}', "no complete"),
        ("{arch: nor|conv}", "no complete"),
        ("[1, 2, 3]", "no JSON object"),
        ('"just a string"', "no JSON object"),
    ],
)
def test_malformed_replies_raise_parse_error(text: str, fragment: str) -> None:
    with pytest.raises(ParseError, match=fragment):
        extract_json_object(text)


def test_raw_newline_inside_a_string_is_read() -> None:
    # a grammar-constrained SmolLM2 reply (benchmarks/local_iteration_speed.py): llama.cpp's JSON
    # grammar let a literal newline into the "reflection" string, which strict json.loads rejects
    text = '{"edit": {"edge": 4, "op": "none"}, "reflection": "]/*reflected*/\nThe previous", "thinking": "x"}'
    assert extract_json_object(text) == {"edit": {"edge": 4, "op": "none"}, "reflection": "]/*reflected*/\nThe previous",
                                         "thinking": "x"}


def test_non_string_reply_is_rejected() -> None:
    with pytest.raises(ParseError, match="string"):
        extract_json_object(None)  # type: ignore[arg-type]


def test_code_like_text_is_never_executed(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []

    def trap(*args: object, **kwargs: object) -> None:
        calls.append(args)
        raise AssertionError("model text was executed")

    monkeypatch.setattr(os, "system", trap)
    monkeypatch.setattr(builtins, "eval", trap)
    monkeypatch.setattr(builtins, "exec", trap)
    payloads = [
        "__import__('os').system('rm -rf /')",
        "{'arch': __import__('os').system('touch /tmp/rznas_pwned')}",
        '{"arch": "x"} ; __import__("os").system("rm -rf /")',
    ]
    with pytest.raises(ParseError):
        extract_json_object(payloads[0])
    with pytest.raises(ParseError):
        extract_json_object(payloads[1])
    # the JSON part is taken as data, the rest ignored
    assert extract_json_object(payloads[2]) == {"arch": "x"}
    assert calls == []
    assert not os.path.exists("/tmp/rznas_pwned")


def test_parser_source_has_no_eval() -> None:
    source = inspect.getsource(parse)
    names = {tok.string for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.NAME}
    assert not names & {"eval", "exec", "literal_eval", "compile", "__import__"}


def test_one_megabyte_reply_is_rejected_fast() -> None:
    huge = '{"arch": "' + "x" * 1_000_000 + '"}'
    started = time.perf_counter()
    with pytest.raises(ParseError, match="too long"):
        extract_json_object(huge)
    assert time.perf_counter() - started < 0.1


@pytest.mark.parametrize(
    "text",
    [
        "{" * 99_000,
        ("{" + "a" * 50) * 1_900,
        "{'a': 1" + "{" * 90_000,
        '{"a": "' + "\\" * 99_000,
        "[" * 99_000,
    ],
    ids=["open-braces", "spaced-open-braces", "sloppy-then-braces", "backslashes", "brackets"],
)
def test_adversarial_replies_within_the_limit_fail_fast(text: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ParseError):
        extract_json_object(text)
    assert time.perf_counter() - started < 2.0


def test_max_chars_is_configurable() -> None:
    with pytest.raises(ParseError, match="limit 10"):
        extract_json_object('{"arch": "abcdef"}', max_chars=10)
    assert extract_json_object('{"a": 1}', max_chars=10) == {"a": 1}
