"""Searches in every registered space: budgets honoured end to end, LLM replies in each
space's encoding, over-budget proposals recorded and reflected on, encoding patterns."""
from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
from pathlib import Path

import pytest

from rznas.arch import Architecture
from rznas.errors import BudgetExceeded, ConfigError
from rznas.llm import create_client
from rznas.llm.base import Message
from rznas.proxies import get_proxy
from rznas.search.budget import ArchBudget, BudgetChecker, make_space
from rznas.search.config import SearchConfig, resolve_config
from rznas.search.progress import Progress
from rznas.search.prompt import MutationPrompt, arch_pattern, mutation_schema
from rznas.search.runner import SearchRun
from rznas.trial import TrialState
from rznas.spaces import SPACES, get_space

from .search_fakes import call_kind, parent_of

# every registered space: search settings (small budgets) and a cheap proxy that fits it
CASES = {
    "nb201": dict(max_params=8e5, proxy="synflow"),
    "darts": dict(max_params=3e5, proxy="synflow", space_options={"channels": 16, "layers": 8}),
    "zen_resnet": dict(max_params=8e5, proxy="zen"),
    "mobilenet": dict(max_flops=400e6, proxy="synflow"),
    "maedet": dict(max_layers=60, proxy="maedet"),
}


def test_every_built_in_space_is_covered():
    """Plug-in spaces (entry points) have no budget case here: test_space_conformance.py covers them."""
    assert set(CASES) == {name for name in SPACES.names() if name not in SPACES.plugins}


def small_config(space: str, proposer: str, **changes) -> SearchConfig:
    case = dict(CASES[space])
    base = dict(space=space, proposer=proposer, population=4, iterations=4, batch_size=2, probe_chunks=1,
                repair_attempts=0, seed=0, llm="scripted:spaces", score_cache="none")
    base.update(case)
    base.update(changes)
    fields = SearchConfig.__dataclass_fields__
    return SearchConfig(**{k: v for k, v in base.items() if k in fields})


def within_all_budgets(config: SearchConfig, arch: Architecture) -> list[str]:
    """Every violation of ``arch`` against the space's budget and the search limits, counted
    analytically at the space's native resolution (parameters of the built net for NB201)."""
    space = config.make_space()
    problems: list[str] = []
    if getattr(space, "budget", None) is not None:
        problems += space.budget_violations(arch)
    own = getattr(space, "budget", None)
    classes = own.num_classes if own is not None else 10
    if config.max_params is not None:
        counter = getattr(space, "count_params", None)
        params = counter(arch, num_classes=classes) if counter else sum(p.numel() for p in space.build(arch).parameters())
        if params > config.max_params:
            problems.append(f"params {params}")
    if config.max_flops is not None:
        flops = space.count_flops(arch, resolution=space.native_resolution, num_classes=classes)
        if flops > config.max_flops:
            problems.append(f"flops {flops}")
    if config.max_layers is not None and space.count_layers(arch) > config.max_layers:
        problems.append(f"layers {space.count_layers(arch)}")
    return problems


def over_budget_child(config: SearchConfig, parent: Architecture) -> Architecture:
    """A valid architecture of the space that breaks the search's budget (for a scripted reply)."""
    space = config.make_space()
    if config.space in ("zen_resnet", "mobilenet", "maedet"):
        blocks = [list(b) for b in parent.genotype]
        middle = 1 if len(blocks) > 2 else 0
        blocks[middle][-1] = 30  # 30 sub-layers: over every layer budget here, small enough to build
        child = Architecture(space.name, tuple(tuple(b) for b in blocks))
    elif config.space == "darts":
        cell = tuple(("sep_conv_5x5", i) for i in (0, 1, 0, 1, 0, 1, 0, 1))
        child = Architecture("darts", (cell, cell))
    else:
        child = Architecture("nb201", ("nor_conv_3x3",) * 6)
    space.validate(child)
    assert within_all_budgets(config, child), "the scripted over-budget child must break the budget"
    return child


class ScriptedLLM:
    """A fake LLM: the first mutation calls return an over-budget child, an invalid
    architecture and prose; later ones a valid random mutation of the parent in the space's
    encoding (derived from the parent parsed out of the prompt). Records every call."""

    def __init__(self, config: SearchConfig):
        self.config = config
        self.space = config.make_space()
        self.calls: list[tuple[str, list[Message]]] = []
        self.mutations = 0

    def __call__(self, messages: list[Message]) -> str:
        kind = call_kind(messages)
        self.calls.append((kind, messages))
        if kind == "reflect":
            return "Keep blocks narrow and shallow to stay within the budget."
        parent = self.space.decode(parent_of(messages))
        self.mutations += 1
        if self.mutations == 1:
            child = over_budget_child(self.config, parent)
            return json.dumps({"arch": self.space.encode(child), "thinking": "go big"})
        if self.mutations == 2:
            return json.dumps({"arch": "NotAnArchitecture(1,2,3)", "thinking": "oops"})
        if self.mutations == 3:
            return "I would widen the network."
        digest = hashlib.sha256(messages[-1].content.encode()).hexdigest()
        child = self.space.mutate(parent, random.Random(digest))
        return "```json\n" + json.dumps({"arch": self.space.encode(child), "thinking": "one mutation"}) + "\n```"


def run_search(tmp_path: Path, config: SearchConfig, llm: ScriptedLLM | None = None):
    client = create_client("scripted:spaces", replies=llm) if llm is not None else None
    run = SearchRun.start(config, tmp_path / "run", client=client, progress=Progress(enabled=False))
    try:
        result = run.run()
        return run, result, run.store.trials()
    finally:
        run.close()


def assert_budgets_honoured(config: SearchConfig, run: SearchRun, result, trials) -> None:
    space = config.make_space()
    assert result.status == "finished"
    assert len(run.strategy.population) == config.population
    for member in run.strategy.population:
        assert not within_all_budgets(config, member.arch), space.encode(member.arch)
    best = json.loads((run.run_dir / "best_arch.json").read_text())
    best_arch = space.decode(best["arch"]) if isinstance(best["arch"], str) else None
    assert best_arch is not None and not within_all_budgets(config, best_arch)
    for trial in trials:
        if trial.state is TrialState.COMPLETE:
            assert not within_all_budgets(config, trial.arch)
        elif trial.state is TrialState.OVER_BUDGET:
            assert trial.reason and within_all_budgets(config, trial.arch)


@pytest.mark.parametrize("space", sorted(CASES))
def test_random_search_honours_the_budget_in_every_space(tmp_path, space):
    config = small_config(space, "random")
    run, result, trials = run_search(tmp_path, config)
    assert_budgets_honoured(config, run, result, trials)
    assert sum(t.iteration > 0 for t in trials) == config.iterations


@pytest.mark.parametrize("space", sorted(CASES))
def test_llm_search_in_every_space_records_failures_and_reflects_on_budget_errors(tmp_path, space):
    config = small_config(space, "llm", iterations=5)
    llm = ScriptedLLM(config)
    run, result, trials = run_search(tmp_path, config, llm)
    assert_budgets_honoured(config, run, result, trials)
    evolved = [t for t in trials if t.iteration > 0]
    assert len(evolved) == config.iterations
    states = [t.state for t in evolved]
    assert states[0] is TrialState.OVER_BUDGET
    assert states[1] is TrialState.INVALID and "NotAnArchitecture" in evolved[1].reason
    assert states[2] is TrialState.PARSE_ERROR and evolved[2].reason
    assert TrialState.COMPLETE in states[3:] or TrialState.DUPLICATE in states[3:]
    over = evolved[0]
    assert "budget" in over.reason
    # the reflection after the over-budget trial was shown the budget error text
    reflections = [m for kind, m in llm.calls if kind == "reflect"]
    assert len(reflections) == config.iterations
    assert over.reason in reflections[0][-1].content
    assert "over_budget" in reflections[0][-1].content
    # every mutation prompt names the space's encoding rules and shows a parent in it
    mutate_prompts = [m for kind, m in llm.calls if kind == "mutate"]
    assert all(config.make_space().decode(parent_of(m)) for m in mutate_prompts)


# ---- the space's own budget, native resolution and the probe resolution ----------------
def test_llm_child_over_the_space_budget_is_rejected_even_without_search_limits(tmp_path):
    config = small_config("zen_resnet", "llm", iterations=1, max_params=None)
    llm = ScriptedLLM(config)
    run, result, trials = run_search(tmp_path, config, llm)
    over = [t for t in trials if t.iteration == 1][0]
    assert over.state is TrialState.OVER_BUDGET
    assert "zen_resnet architecture over budget" in over.reason and "layers > 18" in over.reason
    assert over.reason in [m for kind, m in llm.calls if kind == "reflect"][0][-1].content


def test_flops_budget_is_counted_at_the_native_resolution_not_the_probe_resolution():
    space = get_space("mobilenet", budget=None)
    arch = space.decode(space.describe().example)  # Zen-NAS 400M network
    at_224 = space.count_flops(arch, resolution=224)
    checker = BudgetChecker(space, ArchBudget(max_flops=at_224 * 0.9, resolution=32))
    assert checker.resolution == 224
    with pytest.raises(BudgetExceeded, match="at 224x224"):
        checker.check(arch, lambda: None)
    assert BudgetChecker(space, ArchBudget(max_flops=at_224 * 1.01, resolution=32)).check(arch, lambda: None)["flops"] == at_224
    assert BudgetChecker(get_space("maedet"), ArchBudget()).resolution == 480
    assert BudgetChecker(get_space("darts"), ArchBudget(resolution=16)).resolution == 32


def test_space_budget_is_checked_with_its_classes():
    space = get_space("mobilenet", budget="450M")
    arch = space.decode(space.describe().example)
    params_1000 = space.count_params(arch, num_classes=1000)
    measured = BudgetChecker(space, ArchBudget(max_params=params_1000)).check(arch, lambda: None)
    assert measured["params"] == params_1000


def test_make_space_folds_search_limits_into_the_space_budget():
    space = make_space("zen_resnet", max_params=5e5)
    assert space.budget.params == 5e5 and space.budget.layers == 18  # preset 1M / 18 layers, tightened
    assert make_space("zen_resnet", budget="2M", max_params=3e6).budget.params == 2e6  # the tighter limit wins
    mobile = make_space("mobilenet", budget="600M", max_layers=12)
    assert (mobile.budget.flops, mobile.budget.layers, mobile.budget.resolution) == (600e6, 12, 224)
    unlimited = make_space("maedet", budget="none", max_flops=5e9)
    assert unlimited.budget.flops == 5e9 and unlimited.budget.resolution == 480
    rng = random.Random(0)
    for _ in range(20):  # sampling and mutation respect the folded-in limit
        arch = space.sample(rng)
        assert space.count_params(arch) <= 5e5
        assert space.count_params(space.mutate(arch, rng)) <= 5e5
    custom = make_space("zen_resnet", budget="params=4e5,layers=12", max_layers=14)
    assert (custom.budget.params, custom.budget.layers) == (4e5, 12)
    assert SearchConfig(space="zen_resnet", max_params=5e5).space_kwargs() == {
        "budget": "params=500000.0,layers=18,resolution=32,num_classes=10"
    }
    for bad in ("params=lots", "params", "watts=3"):
        with pytest.raises(ConfigError):
            make_space("zen_resnet", budget=bad)
    darts = make_space("darts", {"channels": 8, "layers": 5}, max_params=1e5)
    assert (darts.channels, darts.layers) == (8, 5)
    with pytest.raises(ConfigError, match="no budget presets"):
        make_space("darts", budget="1M")
    with pytest.raises(ConfigError, match="unknown zen_resnet budget preset"):
        make_space("zen_resnet", budget="3M")
    with pytest.raises(ConfigError, match="cannot be met"):
        make_space("zen_resnet", max_params=1000)
    with pytest.raises(ConfigError, match="its options are: channels"):
        make_space("darts", {"chanels": 8})


def test_space_options_budget_and_probe_resolution_from_flags_and_files(tmp_path):
    from rznas.commands import search as search_cmd

    parser = argparse.ArgumentParser()
    search_cmd.add_parser(parser.add_subparsers())
    args = parser.parse_args(["search", "--space", "darts", "--space-option", "channels=8", "--space-option",
                              "layers=5", "--probe-resolution", "16"])
    overrides = search_cmd.overrides_from(args)
    assert overrides == {"space": "darts", "space_options": {"channels": 8, "layers": 5}, "probe_resolution": 16}
    args = parser.parse_args(["search", "--space", "mobilenet", "--budget", "600M"])
    config = resolve_config(None, search_cmd.overrides_from(args))
    assert config.space_kwargs() == {"budget": "600M"} and config.make_space().budget.flops == 600e6
    file = tmp_path / "search.toml"
    file.write_text('[search]\nspace = "darts"\n[search.space_options]\nchannels = 8\n')
    assert resolve_config(file, {}).make_space().channels == 8
    file.write_text('[search]\nspace = "darts"\nbudget = "1M"\n')
    with pytest.raises(ConfigError, match="no budget presets"):
        resolve_config(file, {}).make_space()
    file.write_text('space = "darts"\nprobe_resolution = 16\n[space_options]\nchannels = 8\nlayers = 5\n')
    config = resolve_config(file, {})
    assert config.make_space().channels == 8 and config.probe_resolution == 16
    with pytest.raises(ConfigError, match="probe_resolution"):
        SearchConfig(probe_resolution=0)
    with pytest.raises(ConfigError, match="space_options"):
        SearchConfig(space_options=["channels=8"])


def test_the_run_builds_the_space_and_probe_from_the_config(tmp_path):
    config = small_config("zen_resnet", "random", iterations=1, max_params=None, budget="2M",
                          space_options={}, probe_resolution=16, proxy="params")
    run = SearchRun.start(config, tmp_path / "run", progress=Progress(enabled=False))
    try:
        assert run.space.budget == config.make_space().budget and run.space.budget.params == 2e6
        assert run.probe.resolution == 16
        result = run.run()
    finally:
        run.close()
    assert result.status == "finished"
    assert all(run.space.count_params(m.arch) <= 2e6 for m in run.strategy.population)


def test_search_limits_folded_into_the_space_budget_reach_sampling(tmp_path):
    # zen_resnet samples shrink until they fit the space's budget: with --max-params folded
    # in, the initial population needs no over-budget resampling
    config = small_config("zen_resnet", "random", iterations=0, max_params=6e5, proxy="params")
    run, result, trials = run_search(tmp_path, config)
    assert run.space.budget.params == 6e5 and run.space.budget.layers == 18
    assert [t.state for t in trials] == [TrialState.COMPLETE] * config.population


# ---- prompts and reply parsing in every space ------------------------------------------
@pytest.mark.parametrize("space_name", sorted(CASES))
def test_prompt_describes_the_space_and_its_example_is_valid(space_name):
    space = get_space(space_name)
    prompt = MutationPrompt(space, get_proxy("synflow"))
    d = space.describe()
    for part in (d.text, d.code, d.encoding, d.mutation_rules):
        assert part.strip() and part.strip()[:40] in prompt.system
    assert "class " in d.code or "def " in d.code
    user, answer = prompt.prefix[1].content, json.loads(prompt.prefix[2].content)
    example = space.decode(json.loads(user)["arch"])
    child = space.decode(answer["arch"])
    assert child != example and answer["thinking"]
    if getattr(space, "budget", None) is not None:
        assert space.within_budget(example) and space.within_budget(child)
    if space_name in ("zen_resnet", "mobilenet", "maedet"):
        assert "multiple of 8" in prompt.system and "Budget:" in prompt.system
        assert "Replaced one operation" not in prompt.prefix[2].content  # an NB201-specific example note


def test_prompt_example_is_fitted_to_a_small_budget():
    space = get_space("zen_resnet", budget={"params": 3e5, "layers": 12})
    prompt = MutationPrompt(space, get_proxy("synflow"))
    example = space.decode(json.loads(prompt.prefix[1].content)["arch"])
    assert space.within_budget(example) and space.within_budget(prompt.example_answer)


@pytest.mark.parametrize("space_name", sorted(CASES))
def test_reply_parser_accepts_each_space_encoding_inside_json(tmp_path, space_name):
    from rznas.search.proposers import LLMProposer, ProposerContext

    space = get_space(space_name)
    prompt = MutationPrompt(space, get_proxy("synflow"))
    # parse() uses no LLM: any gateway object will do
    proposer = LLMProposer(ProposerContext(space, 0, gateway=object(), prompt=prompt))  # type: ignore[arg-type]
    arch = space.sample(random.Random(3))
    text = space.encode(arch)
    replies = (
        json.dumps({"arch": text}),
        f"Sure!\n```json\n{json.dumps({'arch': text, 'thinking': 'x'})}\n```",
        '{"arch": "' + text + '", "thinking": "cut off by max_tok',  # salvaged
    )
    for reply in replies:
        parsed, _ = proposer.parse(reply)
        assert parsed == arch


@pytest.mark.parametrize("space_name", sorted(CASES))
def test_encoding_pattern_matches_every_encoding_and_compiles_to_a_grammar(space_name):
    space = get_space(space_name)
    pattern = arch_pattern(space)
    assert pattern is not None
    rng = random.Random(0)
    arch = space.sample(rng)
    for i in range(200):
        arch = space.mutate(arch, rng) if i % 2 else space.sample(rng)
        assert re.fullmatch(pattern, space.encode(arch)), space.encode(arch)
    assert re.fullmatch(pattern, space.encode(space.example_architecture()))
    assert "(?" not in pattern  # llama.cpp's converter rejects non-capturing groups
    schema = mutation_schema(space, constrain=True)
    assert schema["properties"]["arch"]["pattern"] == pattern
    grammar = pytest.importorskip("llama_cpp.llama_grammar")
    assert "arch" in grammar.json_schema_to_gbnf(json.dumps(schema))


@pytest.mark.parametrize(
    "space_name, bad",
    [
        ("zen_resnet", "SuperConvK3BNRELU(3,30,1,1)SuperResK1K3K1(30,64,2,16,2)SuperConvK1BNRELU(64,256,1,1)"),
        ("zen_resnet", "SuperConvK3BNRELU(3,32,1,1)SuperResIDWE6K3(32,64,2,16,2)SuperConvK1BNRELU(64,256,1,1)"),
        ("zen_resnet", "SuperResK1K3K1(3,64,2,16,2)SuperConvK1BNRELU(64,256,1,1)"),
        ("mobilenet", "SuperConvK3BNRELU(3,16,2,1)SuperResIDWE6K3(16,32,3,24,2)SuperConvK1BNRELU(32,2048,1,1)"),
        ("maedet", "SuperConvK3BNRELU(3,32,2,1)SuperResConvK1K3K1(32,128,2,32,0)"),
        ("darts", "Genotype(normal=[('sep_conv_3x3', 2)], normal_concat=[2, 3, 4, 5])"),
    ],
)
def test_encoding_pattern_rejects_malformed_architectures(space_name, bad):
    assert not re.fullmatch(arch_pattern(get_space(space_name)), bad)


def test_darts_pattern_fixes_the_inputs_each_node_may_read():
    space = get_space("darts")
    text = space.encode(space.sample(random.Random(0)))
    first_pair = re.search(r"\('(\w+)', (\d)\)", text)
    broken = text[: first_pair.start(2)] + "2" + text[first_pair.end(2):]  # node 2 cannot read state 2
    assert not re.fullmatch(arch_pattern(space), broken)
