"""Read and write the Zen-NAS architecture string notation, e.g.
``SuperConvK3BNRELU(3,88,1,1)SuperResK1K7K1(88,120,1,16,1)SuperConvK1BNRELU(120,512,1,1)``.

A small hand-written tokenizer + parser (never eval): a block is ``Name(int,int,...)``;
blocks follow each other directly or separated by whitespace. Errors say where
the text went wrong, so they can be fed back to whoever wrote it.
"""
from __future__ import annotations

import difflib
from typing import Iterable, Mapping, NamedTuple

from ..errors import InvalidArchitecture

MAX_TEXT = 20_000
#: longest integer argument accepted (channels and repeats are far smaller)
MAX_INT_DIGITS = 9
MAX_BLOCKS = 256


class Token(NamedTuple):
    """One lexical token: kind in {'name', 'int', '(', ')', ','} and its position."""

    kind: str
    text: str
    pos: int


class RawBlock(NamedTuple):
    """A parsed block before any semantic check: a name and its integer arguments."""

    name: str
    args: tuple[int, ...]
    pos: int


def _snippet(text: str, pos: int) -> str:
    start = max(0, pos - 20)
    return f"...{text[start:pos]}>>>{text[pos:pos + 20]}..." if text else "''"


def tokenize(text: str) -> list[Token]:
    """Split the text into names, non-negative integers and punctuation."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch.isascii() and ch.isalpha():
            j = i
            while j < n and text[j].isascii() and (text[j].isalnum() or text[j] == "_"):
                j += 1
            tokens.append(Token("name", text[i:j], i))
            i = j
        elif ch.isascii() and ch.isdigit():
            j = i
            while j < n and text[j].isascii() and text[j].isdigit():
                j += 1
            if j - i > MAX_INT_DIGITS:  # also keeps int() below Python's 4,300-digit conversion limit
                raise InvalidArchitecture(
                    f"number of {j - i} digits at position {i} (at most {MAX_INT_DIGITS}): {_snippet(text, i)}"
                )
            tokens.append(Token("int", text[i:j], i))
            i = j
        elif ch in "(),":
            tokens.append(Token(ch, ch, i))
            i += 1
        else:
            hint = " (negative numbers are not allowed)" if ch == "-" else ""
            hint = " (Zen-NAS block-name prefixes 'name|...' are not supported)" if ch == "|" else hint
            raise InvalidArchitecture(
                f"unexpected character {ch!r} at position {i}{hint}: {_snippet(text, i)}"
            )
    return tokens


def parse(text: str) -> list[RawBlock]:
    """Parse a Zen-NAS string into blocks (syntax only; names and arities are not checked)."""
    if not isinstance(text, str):
        raise InvalidArchitecture(f"an architecture string is text, got {type(text).__name__}")
    if len(text) > MAX_TEXT:
        raise InvalidArchitecture(f"architecture string is too long ({len(text)} > {MAX_TEXT} characters)")
    tokens = tokenize(text)
    if not tokens:
        raise InvalidArchitecture("empty architecture string; expected blocks like SuperConvK3BNRELU(3,32,1,1)")
    blocks: list[RawBlock] = []
    i = 0

    def expect(kind: str, what: str) -> Token:
        nonlocal i
        if i >= len(tokens):
            raise InvalidArchitecture(f"architecture string ended early: expected {what} at the end: {_snippet(text, len(text))}")
        token = tokens[i]
        if token.kind != kind:
            raise InvalidArchitecture(
                f"expected {what} at position {token.pos}, found {token.text!r}: {_snippet(text, token.pos)}"
            )
        i += 1
        return token

    while i < len(tokens):
        name = expect("name", "a block name such as SuperResK1K3K1")
        expect("(", f"'(' after {name.text}")
        args = [int(expect("int", f"an integer argument of {name.text}").text)]
        while i < len(tokens) and tokens[i].kind == ",":
            i += 1
            args.append(int(expect("int", f"an integer argument of {name.text}").text))
        expect(")", f"',' or ')' in the arguments of {name.text}")
        blocks.append(RawBlock(name.text, tuple(args), name.pos))
        if len(blocks) > MAX_BLOCKS:
            raise InvalidArchitecture(f"too many blocks (more than {MAX_BLOCKS})")
    return blocks


def check_blocks(blocks: Iterable[RawBlock], arity: Mapping[str, int]) -> list[tuple]:
    """Check names (with 'did you mean') and argument counts; return genotype tuples."""
    result = []
    for index, block in enumerate(blocks):
        if block.name not in arity:
            close = difflib.get_close_matches(block.name, list(arity), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else f" (known: {', '.join(sorted(arity))})"
            raise InvalidArchitecture(f"block {index} ({block.name}) is not a block type of this space{hint}")
        expected = arity[block.name]
        if len(block.args) != expected:
            raise InvalidArchitecture(
                f"block {index} ({block.name}) takes {expected} arguments, got {len(block.args)}: "
                f"{format_block(block.name, block.args)}"
            )
        result.append((block.name, *block.args))
    return result


def format_block(name: str, args: Iterable[int]) -> str:
    """``Name(a,b,c)``."""
    return f"{name}({','.join(str(a) for a in args)})"


def format_blocks(blocks: Iterable[tuple]) -> str:
    """Genotype tuples (name, *ints) back to the Zen-NAS string."""
    return "".join(format_block(block[0], block[1:]) for block in blocks)
