"""Conformance suite driven by the space registry: every registered space (built-in or plug-in)
keeps the SearchSpace contract, renders a prompt, and runs a tiny search end to end."""
from __future__ import annotations

import json
import random
import re

import pytest
import torch

from rznas import InvalidArchitecture
from rznas.arch import Architecture
from rznas.proxies import get_proxy
from rznas.search.config import SearchConfig
from rznas.search.progress import Progress
from rznas.search.prompt import MutationPrompt, arch_pattern
from rznas.search.runner import SearchRun
from rznas.spaces import SPACES, SearchSpace, get_space

NAMES = SPACES.names()


@pytest.fixture(scope="module", params=NAMES)
def space(request) -> SearchSpace:
    return get_space(request.param)


def walk(space: SearchSpace, steps: int = 12, seed: int = 0) -> list[Architecture]:
    """Samples and mutations, alternating: the archs a search visits."""
    rng = random.Random(seed)
    archs = [space.sample(rng)]
    for i in range(steps):
        archs.append(space.mutate(archs[-1], rng) if i % 2 else space.sample(rng))
    return archs


def test_the_registry_entry_is_named_like_the_space(space):
    assert space.name in NAMES and isinstance(space, SearchSpace)
    assert int(space.native_resolution) >= 1


def test_sample_and_mutate_give_valid_architectures_that_round_trip(space):
    rng = random.Random(1)
    for arch in walk(space):
        assert arch.space == space.name
        space.validate(arch)
        assert space.decode(space.encode(arch)) == arch
        assert Architecture.from_json(arch.canonical_json()) == arch
        child = space.mutate(arch, rng)
        space.validate(child)
        assert child != arch, "a mutation must change the architecture"


def test_sampling_is_a_function_of_the_rng(space):
    assert walk(space, seed=5) == walk(space, seed=5)


def test_foreign_and_malformed_architectures_are_refused(space):
    other = "nb201" if space.name != "nb201" else "darts"
    with pytest.raises(InvalidArchitecture):
        space.validate(Architecture(other, space.sample(random.Random(0)).genotype))
    for text in ("", "not an architecture", "__import__('os').system('true')"):
        with pytest.raises(InvalidArchitecture):
            space.decode(text)


def test_build_gives_a_fresh_network_with_the_requested_classes(space):
    arch = space.sample(random.Random(2))
    torch.manual_seed(0)
    model = space.build(arch, num_classes=7)
    assert isinstance(model, torch.nn.Module) and sum(p.numel() for p in model.parameters()) > 0
    model.eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 7) and torch.isfinite(logits).all()


def test_description_and_prompt(space):
    d = space.describe()
    assert d.name == space.name
    for part in (d.text, d.code, d.encoding, d.mutation_rules, d.example):
        assert part.strip()
    assert "class " in d.code or "def " in d.code  # the code level is real source
    example = space.example_architecture()
    space.validate(example)
    prompt = MutationPrompt(space, get_proxy("params"))
    assert d.text.strip()[:40] in prompt.system and d.code.strip()[:40] in prompt.system
    assert space.decode(json.loads(prompt.prefix[1].content)["arch"]) == example


def test_encoding_pattern_when_the_space_has_one(space):
    pattern = arch_pattern(space)
    if pattern is None:
        pytest.skip(f"space {space.name} declares no encoding pattern (LLM replies are not constrained)")
    for arch in walk(space):
        assert re.fullmatch(pattern, space.encode(arch))


def test_a_tiny_random_search_runs_end_to_end(space, tmp_path):
    config = SearchConfig(space=space.name, proxy="params", proposer="random", population=2, iterations=2,
                          data="gaussian", batch_size=2, probe_chunks=1, score_cache="none")
    run = SearchRun.start(config, tmp_path / "run", progress=Progress(enabled=False))
    try:
        result = run.run()
    finally:
        run.close()
    assert result.status == "finished" and result.best is not None
    best = json.loads((tmp_path / "run" / "best_arch.json").read_text())
    assert space.decode(best["arch"]) == result.best.arch
