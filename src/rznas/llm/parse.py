"""Extract the first JSON object from a model reply, tolerating what models wrap around it.

Tolerated: ```json code fences, a <think>...</think> (or <thinking>, <reasoning>) section,
prose before and after, and two kinds of sloppiness repaired without evaluating anything:
trailing commas and single-quoted strings. Only ``json.loads`` ever interprets the text;
nothing a model writes is evaluated or executed. Scanning is linear in the reply length
(no backtracking regexes) and replies above ``max_chars`` are rejected before scanning.
"""
from __future__ import annotations

import json
from typing import Any, Iterator

from ..errors import ParseError

#: replies longer than this are rejected unread (a normal reply is a few hundred tokens)
DEFAULT_MAX_CHARS = 100_000
#: deeper nesting than this is not a reply we want (and would hit json's recursion limit)
MAX_DEPTH = 64
#: balanced {...} spans tried per text before giving up
MAX_CANDIDATES = 64

_THINK_TAGS = ("think", "thinking", "reasoning", "reflection")


def extract_json_object(text: str, *, max_chars: int = DEFAULT_MAX_CHARS) -> dict[str, Any]:
    """The first JSON object in ``text``; raises ParseError for empty, oversized or JSON-free replies."""
    if not isinstance(text, str):
        raise ParseError(f"reply must be a string, got {type(text).__name__}")
    if len(text) > max_chars:
        raise ParseError(f"reply too long: {len(text)} characters (limit {max_chars})")
    if not text.strip():
        raise ParseError("empty reply")
    for region in _regions(text):
        found = _first_object(region)
        if found is not None:
            return found
    if "{" not in text:
        raise ParseError(f"no JSON object in reply: {_preview(text)}")
    raise ParseError(f"no complete, valid JSON object in reply (truncated or malformed?): {_preview(text)}")


def _preview(text: str, limit: int = 120) -> str:
    flat = " ".join(text.split())
    return repr(flat[:limit] + ("..." if len(flat) > limit else ""))


def _regions(text: str) -> Iterator[str]:
    """Places to look, best first: fenced blocks after the thinking, the answer part, everything."""
    answer = _strip_thinking(text)
    yield from _fenced_blocks(answer)
    yield answer
    if answer is not text:
        yield from _fenced_blocks(text)
        yield text


def _strip_thinking(text: str) -> str:
    """The text after the last closing think tag (or with closed think sections removed)."""
    lower = text.lower()
    cut = -1
    for tag in _THINK_TAGS:
        close = f"</{tag}>"
        pos = lower.rfind(close)
        if pos >= 0:
            cut = max(cut, pos + len(close))
    return text[cut:] if cut >= 0 else text


def _fenced_blocks(text: str) -> Iterator[str]:
    """Contents of ``` fenced blocks (any info string), in order; an unclosed fence runs to the end."""
    pos = 0
    while True:
        start = text.find("```", pos)
        if start < 0:
            return
        body_start = text.find("\n", start + 3)
        if body_start < 0:
            return
        end = text.find("```", body_start)
        if end < 0:
            yield text[body_start + 1 :]
            return
        yield text[body_start + 1 : end]
        pos = end + 3


def _first_object(text: str) -> dict[str, Any] | None:
    """The first balanced {...} span in ``text`` that parses (strictly, then repaired) to a dict."""
    tried = 0
    for span in _balanced_spans(text):
        tried += 1
        for candidate in (span, _repair(span)):
            if candidate is None:
                continue
            value = _loads(candidate)
            if isinstance(value, dict):
                return value
        if tried >= MAX_CANDIDATES:
            return None
    return None


def _loads(candidate: str) -> Any:
    try:
        # strict=False: raw control characters (a newline) inside strings, as llama.cpp grammars let through
        return json.loads(candidate, parse_constant=_no_constants, strict=False)
    except (ValueError, RecursionError):
        return None


def _no_constants(name: str) -> None:
    """NaN / Infinity are not JSON: read them as null so results stay JSON-serialisable."""
    return None


def _balanced_spans(text: str) -> Iterator[str]:
    """Top-level {...} spans, brace-matched with string awareness ("..." and '...').

    A failed match restarts at the next brace; the total characters scanned are capped at a
    small multiple of the text length, so adversarial input stays linear.
    """
    n = len(text)
    budget = 8 * n + 1024
    i = 0
    while i < n and budget > 0:
        start = text.find("{", i)
        if start < 0:
            return
        end, scanned = _match_brace(text, start, budget)
        budget -= scanned
        if end is None:
            if start + scanned >= n:
                return  # ran off the end: nothing later can close either (truncated reply)
            i = start + 1
            continue
        yield text[start : end + 1]
        i = end + 1


def _match_brace(text: str, start: int, budget: int) -> tuple[int | None, int]:
    """(index of the brace closing the one at ``start`` or None, characters scanned)."""
    depth = 0
    quote = ""
    prev_significant = ""
    i = start
    n = min(len(text), start + budget)
    while i < n:
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = ""
                prev_significant = '"'
            i += 1
            continue
        if ch == '"':
            quote = '"'
        elif ch == "'" and prev_significant in "{[,:":
            quote = "'"
        elif ch in "{[":
            depth += 1
            if depth > MAX_DEPTH:
                return None, i - start + 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return (i if ch == "}" else None), i - start + 1
            if depth < 0:
                return None, i - start + 1
        if not ch.isspace():
            prev_significant = ch
        i += 1
    return None, i - start


def _repair(span: str) -> str | None:
    """``span`` with single-quoted strings made double-quoted and trailing commas dropped.

    Works token by token outside strings, so the contents of strings are never changed
    except for re-quoting; returns None when nothing needed repairing.
    """
    out: list[str] = []
    changed = False
    i = 0
    n = len(span)
    prev_significant = ""
    while i < n:
        ch = span[i]
        if ch == '"':
            end = _string_end(span, i, '"')
            if end is None:
                return None
            out.append(span[i : end + 1])
            prev_significant = '"'
            i = end + 1
            continue
        if ch == "'" and prev_significant in "{[,:":
            end = _string_end(span, i, "'")
            if end is None:
                return None
            out.append(_requote(span[i + 1 : end]))
            changed = True
            prev_significant = '"'
            i = end + 1
            continue
        if ch == ",":
            j = i + 1
            while j < n and span[j].isspace():
                j += 1
            if j < n and span[j] in "}]":
                changed = True
                i += 1
                continue
        out.append(ch)
        if not ch.isspace():
            prev_significant = ch
        i += 1
    return "".join(out) if changed else None


def _string_end(text: str, start: int, quote: str) -> int | None:
    i = start + 1
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == quote:
            return i
        i += 1
    return None


def _requote(body: str) -> str:
    """A single-quoted string body as a double-quoted JSON string literal."""
    chars: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body) and body[i + 1] == "'":
            chars.append("'")
            i += 2
            continue
        if ch == "\\" and i + 1 < len(body):
            chars.append(body[i : i + 2])
            i += 2
            continue
        chars.append('\\"' if ch == '"' else ch)
        i += 1
    return '"' + "".join(chars) + '"'
