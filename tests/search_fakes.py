"""Deterministic stand-ins for an LLM in search tests (content-addressed, so resume-safe)."""
from __future__ import annotations

import hashlib
import json
import random
from typing import Callable, Iterable

from rznas.llm.base import Message
from rznas.llm.scripted import SCRIPTS
from rznas.spaces import get_space

ADVICE = "Prefer nor_conv_3x3 on the edges into node 3 and avoid none on the 0->3 edge."


def call_kind(messages: list[Message]) -> str:
    """mutate | repair | reflect, from the last user message."""
    last = messages[-1].content
    if last.startswith("Reflection task"):
        return "reflect"
    if last.startswith("Your reply was rejected"):
        return "repair"
    return "mutate"


def parent_of(messages: list[Message]) -> str:
    """The parent arch string of the latest "Mutate the below architecture." message."""
    for message in reversed(messages):
        marker = "Mutate the below architecture.\n"
        if message.role == "user" and marker in message.content:
            return json.loads(message.content.split(marker, 1)[1].strip())["arch"]
    raise AssertionError("no parent in the prompt")


def mutator_reply(messages: list[Message]) -> str:
    """A well-behaved "LLM": one random mutation of the parent, seeded by the prompt content."""
    if call_kind(messages) == "reflect":
        return ADVICE
    space = get_space("nb201")
    digest = hashlib.sha256("\x00".join(m.content for m in messages).encode()).hexdigest()
    child = space.mutate(space.decode(parent_of(messages)), random.Random(digest))
    return json.dumps({"arch": space.encode(child), "thinking": "one edge changed", "score": 99.0})


def scripted_mutations(replies: Iterable[str]) -> Callable[[list[Message]], str]:
    """Mutate/repair calls get ``replies`` in order (then the mutator); reflections get ADVICE."""
    queue = list(replies)

    def reply(messages: list[Message]) -> str:
        if call_kind(messages) == "reflect":
            return ADVICE
        if queue:
            return queue.pop(0)
        return mutator_reply(messages)

    return reply


def register_mutator(name: str = "test-mutator") -> str:
    """Make ``--llm scripted:<name>`` answer with :func:`mutator_reply`."""
    if name not in SCRIPTS:
        SCRIPTS.register(name)(mutator_reply)
    return name
