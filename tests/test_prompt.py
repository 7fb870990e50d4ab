"""The mutation prompt: parts, order, ablations, the proxy's real code, and the pinned NB201 prompt.

Regenerate the golden file after an intended prompt change with
RZNAS_UPDATE_GOLDEN=1 pytest tests/test_prompt.py
"""
from __future__ import annotations

import inspect
import json
import os
from importlib import resources
from pathlib import Path

import pytest

from rznas.errors import ConfigError
from rznas.proxies import PROXIES, get_proxy
from rznas.search.memory import Note
from rznas.search.prompt import (
    EXAMPLE_SCORE,
    MUTATION_SCHEMA,
    MutationPrompt,
    PromptOptions,
    ReflectionPrompt,
    load_template,
    proxy_source,
    render,
)
from rznas.spaces import get_space

GOLDEN = Path(__file__).parent / "golden" / "nb201_zico_mutation_prompt.txt"
PARENT = "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|nor_conv_1x1~1|skip_connect~2|"
NOTES = [Note(3, "Convolutions on the edges into node 3 raised the score."), Note(7, "Avoid none on 0->1.")]


def render_messages(messages) -> str:
    return "".join(f"=== {m.role} ===\n{m.content}\n" for m in messages)


@pytest.fixture(scope="module")
def prompt() -> MutationPrompt:
    return MutationPrompt(get_space("nb201"), get_proxy("zico"))


def test_nb201_prompt_matches_the_golden_file(prompt):
    text = render_messages(prompt.messages(PARENT, 123.456789, NOTES))
    if os.environ.get("RZNAS_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text, encoding="utf-8")
    assert GOLDEN.exists(), "golden prompt missing: run with RZNAS_UPDATE_GOLDEN=1"
    assert text == GOLDEN.read_text(encoding="utf-8"), "prompt changed: review, then RZNAS_UPDATE_GOLDEN=1"


def test_parts_are_in_the_paper_order(prompt):
    system = prompt.system
    headings = [
        "You are an expert in zero-cost neural architecture search",
        '## Search space "nb201" (text level)',
        "## Search space (code level)",
        "## Internal reflection",
        "## Network construction",
        "## Mutation rules",
        '## Zero-cost proxy "zico"',
        "## Reply format",
        "Do not copy its architecture",
    ]
    positions = [system.index(h) for h in headings]
    assert positions == sorted(positions)
    messages = prompt.messages(PARENT, 1.5, NOTES)
    assert [m.role for m in messages] == ["system", "user", "assistant", "user"]
    assert json.loads(messages[1].content) == {
        "arch": prompt.description.example,
        "type": "zico",
        "score": EXAMPLE_SCORE,
    }
    answer = json.loads(messages[2].content)
    assert answer["arch"] != prompt.description.example and answer["thinking"]
    last = messages[-1].content
    assert last.index(NOTES[0].text) < last.index("Mutate the below architecture.")
    assert json.loads(last.split("Mutate the below architecture.\n")[1]) == {"arch": PARENT, "type": "zico", "score": 1.5}


def test_static_prefix_is_byte_identical_across_calls(prompt):
    a = prompt.messages(PARENT, 1.0, [])
    b = prompt.messages("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", 2.0, NOTES)
    assert a[:-1] == b[:-1] and a[-1] != b[-1]
    other = MutationPrompt(get_space("nb201"), get_proxy("zico"))
    assert other.messages(PARENT, 1.0)[:-1] == a[:-1]
    reflection = ReflectionPrompt(prompt).messages(
        parent=PARENT, parent_score=1.0, child="x", outcome="invalid", child_score=None, exception="boom"
    )
    assert reflection[0] == a[0]  # the reflection call shares the long system prefix
    assert "boom" in reflection[-1].content and "none (the child was not scored)" in reflection[-1].content


def test_proxy_code_is_the_real_source(prompt):
    zico = get_proxy("zico")
    source = proxy_source(zico)
    assert inspect.getsource(type(zico)).strip() in source
    assert "def _run_pass" in source and "def prunable_layers" in source  # the gradient pass it relies on
    assert "_relu_code_hook" not in source.split("def _run_pass")[0]
    assert "def _relu_code_hook" not in source  # naswot's statistic, not zico's
    assert source in prompt.system
    synflow = proxy_source(get_proxy("synflow")) if "synflow" in PROXIES else ""
    if synflow:
        assert "def remove_batch_norm" in synflow and "def finite_log" in synflow


@pytest.mark.parametrize("name", PROXIES.names())
def test_every_registered_proxy_renders_a_prompt(name):
    prompt = MutationPrompt(get_space("nb201"), get_proxy(name))
    assert f'## Zero-cost proxy "{name}"' in prompt.system
    assert f"class {PROXIES.get(name).__name__}(" in prompt.system  # the real code, plug-ins included
    assert len(prompt.system) < 20_000


def test_ablation_switches_remove_their_parts():
    space, proxy = get_space("nb201"), get_proxy("zico")
    full = MutationPrompt(space, proxy).system
    code = space.describe().code
    assert code in full
    assert code not in MutationPrompt(space, proxy, PromptOptions(code_description=False)).system
    no_text = MutationPrompt(space, proxy, PromptOptions(text_description=False)).system
    assert space.describe().text not in no_text and "(text level)" not in no_text
    no_example = MutationPrompt(space, proxy, PromptOptions(example=False))
    assert "Do not copy" not in no_example.system
    assert [m.role for m in no_example.messages(PARENT, 1.0)] == ["system", "user"]
    assert not no_example.is_example_copy(no_example.example_answer)
    no_reflection = MutationPrompt(space, proxy, PromptOptions(reflection=False))
    assert NOTES[0].text not in no_reflection.messages(PARENT, 1.0, NOTES)[-1].content


def test_example_copy_detection(prompt):
    assert prompt.is_example_copy(prompt.example_answer)
    assert not prompt.is_example_copy(prompt.example_input)


def test_templates_are_package_data_and_render_checks_placeholders():
    names = [p.name for p in resources.files("rznas.search").joinpath("prompts").iterdir()]
    for name in ("role.txt", "user.txt", "proxy.txt", "reflect_user.txt", "repair.txt"):
        assert name in names
    assert load_template("user").startswith("Mutate the below architecture.")
    with pytest.raises(ConfigError, match="needs values for parent"):
        render("user")
    # inserted text is not re-scanned for placeholders
    assert "{{parent}}" in render("user", parent="{{parent}}")
    with pytest.raises(ConfigError, match="missing"):
        load_template("no_such_template")


def test_reply_schema_is_for_constrained_decoding():
    assert MUTATION_SCHEMA == {
        "type": "object",
        "properties": {"arch": {"type": "string"}, "thinking": {"type": "string"}},
        "required": ["arch"],
    }


def test_constrained_schema_matches_exactly_the_space_encodings():
    import random
    import re

    from rznas.search.config import SearchConfig
    from rznas.search.prompt import arch_pattern, mutation_schema

    space = get_space("nb201")
    pattern = arch_pattern(space)
    rng = random.Random(0)
    assert all(re.fullmatch(pattern, space.encode(space.sample(rng))) for _ in range(300))
    for bad in ("|none~0|+|none~0|none~1|+|none~0|none~1|", "|conv_7x7~0|+|none~0|none~1|+|none~0|none~1|none~2|",
                "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|"):
        assert not re.fullmatch(pattern, bad)
    schema = mutation_schema(space, constrain=True)
    assert schema["properties"]["arch"]["pattern"] == pattern and schema["required"] == ["arch"]
    assert mutation_schema(space, constrain=False) == MUTATION_SCHEMA
    assert SearchConfig(llm="local").constrain and not SearchConfig(llm="openai:gpt-4o").constrain
    assert SearchConfig(llm="openai:gpt-4o", constrain_arch="on").constrain
    with pytest.raises(ConfigError):
        SearchConfig(constrain_arch="maybe")
