"""The evolution engine (ask/tell), budgets, evaluation, proposers and full runs with a scripted LLM."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from rznas.arch import Architecture
from rznas.errors import ConfigError, InvalidArchitecture, ProxyError
from rznas.llm import create_client
from rznas.proxies.base import Proxy
from rznas.proxies import get_proxy
from rznas.data.probe import gaussian_probe
from rznas.search import ArchBudget, BudgetChecker, Evaluator, Evolution, Outcome, ReflectionMemory, TrialState
from rznas.search.config import SearchConfig, resolve_config
from rznas.search.progress import Progress
from rznas.search.prompt import MutationPrompt
from rznas.search.runner import SearchRun
from rznas.spaces import get_space

from .search_fakes import ADVICE, scripted_mutations

NB201 = get_space("nb201")


def complete(arch: Architecture, score: float) -> Outcome:
    return Outcome(TrialState.COMPLETE, arch, score=score)


def fill(strategy: Evolution, score=lambda a: float(sum(len(op) for op in a.genotype))) -> None:
    while strategy.initialising:
        ask = strategy.ask()
        strategy.tell(ask, complete(ask.arch, score(ask.arch)))


# ---- ask / tell ---------------------------------------------------------------------------
def test_initial_population_is_random_distinct_and_then_parents_are_asked():
    strategy = Evolution(NB201, population_size=6, iterations=3, seed=1)
    fill(strategy)
    assert len(strategy.population) == 6
    assert len({m.id for m in strategy.population}) == 6
    ask = strategy.ask()
    assert ask.iteration == 1 and ask.arch is None
    assert ask.parent in strategy.population


def test_tell_adds_child_and_removes_the_worst_member():
    strategy = Evolution(NB201, population_size=3, iterations=5, seed=0)
    fill(strategy, score=lambda a: 1.0)
    ask = strategy.ask()
    child = NB201.mutate(ask.parent.arch, random.Random(0))
    while strategy.lookup(child) is not None:
        child = NB201.mutate(child, random.Random(1))
    trial = strategy.tell(ask, complete(child, 5.0))
    assert trial.parent_id == ask.parent.id and trial.iteration == 1
    assert len(strategy.population) == 3
    assert strategy.best().id == child.id
    # equal scores: the oldest member (trial 0) left
    assert 0 not in {m.number for m in strategy.population}


def test_failed_trials_never_enter_the_population():
    strategy = Evolution(NB201, population_size=3, iterations=10, seed=0)
    fill(strategy)
    before = list(strategy.population)
    for state in (TrialState.INVALID, TrialState.PARSE_ERROR, TrialState.OVER_BUDGET, TrialState.PROXY_ERROR,
                  TrialState.COPIED_EXAMPLE):
        ask = strategy.ask()
        arch = NB201.sample(random.Random(state.value))
        trial = strategy.tell(ask, Outcome(state, arch, reason="because"))
        assert trial.state is state and trial.score is None
    assert strategy.population == before
    assert strategy.iteration == 5


def test_an_evaluated_architecture_is_never_scored_or_added_twice():
    strategy = Evolution(NB201, population_size=3, iterations=10, seed=0)
    fill(strategy)
    member = strategy.population[0]
    duplicate = strategy.duplicate_outcome(member.arch)
    assert duplicate is not None and duplicate.state is TrialState.DUPLICATE
    assert f"trial {member.number}" in duplicate.reason
    ask = strategy.ask()
    strategy.tell(ask, duplicate)
    assert [m.id for m in strategy.population].count(member.id) == 1
    ask = strategy.ask()
    with pytest.raises(ValueError, match="already in the population"):
        strategy.tell(ask, complete(member.arch, 1.0))


def test_over_budget_architectures_are_cached_as_evaluated():
    strategy = Evolution(NB201, population_size=2, iterations=10, seed=0)
    fill(strategy)
    arch = NB201.make(["nor_conv_3x3"] * 6)
    strategy.tell(strategy.ask(), Outcome(TrialState.OVER_BUDGET, arch, reason="params"))
    assert strategy.duplicate_outcome(arch).state is TrialState.DUPLICATE


def test_run_finishes_after_t_iterations_and_tell_checks_order():
    strategy = Evolution(NB201, population_size=2, iterations=2, seed=0)
    fill(strategy)
    first = strategy.ask()
    stale = strategy.ask()
    strategy.tell(first, Outcome(TrialState.INVALID, None, reason="x"))
    with pytest.raises(ValueError):
        strategy.tell(stale, Outcome(TrialState.INVALID, None, reason="x"))
    strategy.tell(strategy.ask(), Outcome(TrialState.INVALID, None, reason="x"))
    assert strategy.finished and strategy.ask() is None


def test_selection_best_and_tournament():
    strategy = Evolution(NB201, population_size=5, iterations=3, seed=0, selection="best")
    fill(strategy)
    assert strategy.ask().parent == strategy.best()
    tournament = Evolution(NB201, population_size=5, iterations=3, seed=0, selection="tournament", tournament_size=5)
    fill(tournament)
    assert tournament.ask().parent == tournament.best()
    with pytest.raises(ConfigError, match="did you mean"):
        Evolution(NB201, selection="uniforn")


def test_a_skipped_parent_is_drawn_again_at_most_once_per_member():
    strategy = Evolution(NB201, population_size=5, iterations=50, seed=0)
    fill(strategy)
    banned = {m.id for m in strategy.population[:4]}
    seen = []
    for _ in range(20):
        ask = strategy.ask(skip_parent=lambda m: m.id in banned)
        seen.append((ask.parent.id, ask.redraws))
        strategy.tell(ask, Outcome(TrialState.INVALID, None, reason="x"))
    # a banned parent stands only after 5 redraws (one per member); all others were drawn anew
    assert all(parent not in banned or redraws == 5 for parent, redraws in seen)
    assert any(0 < redraws < 5 for _, redraws in seen) and strategy.population[4].id in {p for p, _ in seen}
    # every member skipped: the last draw stands after one redraw per member
    ask = strategy.ask(skip_parent=lambda m: True)
    assert ask.redraws == 5 and ask.parent in strategy.population


def test_same_seed_same_asks():
    def asks(seed):
        strategy = Evolution(NB201, population_size=4, iterations=6, seed=seed)
        fill(strategy)
        out = []
        while (ask := strategy.ask()) is not None:
            out.append(ask.parent.id)
            strategy.tell(ask, Outcome(TrialState.INVALID, None, reason="x"))
        return [m.id for m in strategy.population], out

    assert asks(3) == asks(3)
    assert asks(3) != asks(4)


def test_failing_initial_samples_give_a_clear_error():
    strategy = Evolution(NB201, population_size=3, iterations=1, seed=0, max_init_trials=5)
    with pytest.raises(ConfigError, match="could not fill a population"):
        for _ in range(10):
            ask = strategy.ask()
            strategy.tell(ask, Outcome(TrialState.OVER_BUDGET, ask.arch, reason="too big"))


# ---- budgets and evaluation -----------------------------------------------------------------
class CountingSpace:
    """A wrapper that supplies analytic counts and records the order they were asked for."""

    def __init__(self):
        self.calls = []
        self.name = "nb201"

    def count_layers(self, arch):
        self.calls.append("layers")
        return 10

    def count_params(self, arch):
        self.calls.append("params")
        return 5e5


def test_budget_checks_cheapest_first_and_prefer_analytic_counts():
    space = CountingSpace()
    built = []
    checker = BudgetChecker(space, ArchBudget(max_params=1e6, max_flops=1e12, max_layers=5))
    arch = NB201.make(["none"] * 6)
    with pytest.raises(Exception, match="layers 10 exceeds"):
        checker.check(arch, lambda: built.append(1))
    assert space.calls == ["layers"] and not built


def test_budget_on_built_network_and_nb201_cannot_count_layers():
    big = NB201.make(["nor_conv_3x3"] * 6)
    small = NB201.make(["none"] * 6)
    checker = BudgetChecker(NB201, ArchBudget(max_params=5e5))
    assert checker.check(small, lambda: NB201.build(small))["params"] < 5e5
    with pytest.raises(Exception, match="params .* exceeds the budget"):
        checker.check(big, lambda: NB201.build(big))
    with pytest.raises(ConfigError, match="cannot count layers"):
        BudgetChecker(NB201, ArchBudget(max_layers=10))
    with pytest.raises(ConfigError):
        ArchBudget(max_params=-1)


def test_evaluator_states():
    probe = gaussian_probe(batch_size=4, chunks=1)
    evaluator = Evaluator(NB201, get_proxy("params"), probe, score_seed=0, budget=ArchBudget(max_flops=50e6))
    small = NB201.make(["none", "skip_connect", "none", "nor_conv_1x1", "none", "none"])
    big = NB201.make(["nor_conv_3x3"] * 6)
    ok = evaluator(small)
    assert ok.state is TrialState.COMPLETE and ok.score > 0
    over = evaluator(big)
    assert over.state is TrialState.OVER_BUDGET and "flops" in over.reason
    bad = evaluator(Architecture("nb201", ("conv_9x9",) * 6))
    assert bad.state is TrialState.INVALID and "conv_9x9" in bad.reason


class FailingProxy(Proxy):
    name = "failing"
    needs_data = False

    def compute(self, ctx):
        raise ProxyError("failing: NaN score")


def test_proxy_error_is_a_state_not_a_score():
    evaluator = Evaluator(NB201, FailingProxy(), gaussian_probe(batch_size=2, chunks=1), score_seed=0)
    outcome = evaluator(NB201.make(["none"] * 6))
    assert outcome.state is TrialState.PROXY_ERROR and "NaN" in outcome.reason and outcome.score is None


class _BrokenForward(torch.nn.Module):
    """A network whose forward pass fails (as a too-small input does in a real space)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)

    def forward(self, x):
        raise RuntimeError("Output size is too small")


class _UncountedSpace:
    """NB201's validation without analytic counters, so FLOPs are measured on the built network."""

    name = "nb201"

    def __init__(self, build):
        self._build = build

    def validate(self, arch):
        return NB201.validate(arch)

    def build(self, arch, num_classes=10):
        return self._build()


def _refuse():
    raise InvalidArchitecture("cannot build this cell")


@pytest.mark.parametrize(
    "build, state, words",
    [(_BrokenForward, TrialState.PROXY_ERROR, "budget check: RuntimeError"), (_refuse, TrialState.INVALID, "cannot build")],
)
def test_a_failing_budget_measurement_is_a_recorded_state_not_a_crash(build, state, words):
    probe = gaussian_probe(batch_size=2, chunks=1)
    evaluator = Evaluator(_UncountedSpace(build), get_proxy("params"), probe, score_seed=0, budget=ArchBudget(max_flops=1e9))
    outcome = evaluator(NB201.make(["none"] * 6))
    assert outcome.state is state and words in outcome.reason and outcome.score is None


def test_evaluation_is_seeded_per_architecture():
    probe = gaussian_probe(batch_size=4, chunks=2)
    arch = NB201.make(["nor_conv_1x1", "skip_connect", "none", "nor_conv_1x1", "none", "avg_pool_3x3"])
    scores = [Evaluator(NB201, get_proxy("grad_norm"), probe, score_seed=7)(arch).score for _ in range(2)]
    assert scores[0] == scores[1]
    assert Evaluator(NB201, get_proxy("grad_norm"), probe, score_seed=8)(arch).score != scores[0]


# ---- reflection memory ----------------------------------------------------------------------
@pytest.mark.parametrize("proxy", ["naswot", "grad_norm"])
def test_a_search_records_what_rznas_score_computes_whatever_the_search_seed(tmp_path, capsys, proxy):
    """One seeding scheme: a recorded score equals `rznas score --seed <score_seed>` for the same cell and probe."""
    from rznas.cli import main

    recorded: dict[str, float] = {}
    for seed in (1, 2):
        config = SearchConfig(proxy=proxy, proposer="random", population=3, iterations=2, seed=seed, score_seed=5,
                              data="gaussian", batch_size=4, probe_chunks=2, score_cache="none")
        run = SearchRun.start(config, tmp_path / f"run{seed}", progress=Progress(enabled=False))
        run.run()
        for trial in run.store.trials():
            if trial.score is not None:
                assert recorded.setdefault(trial.encoded, trial.score) == trial.score  # the search seed never enters
        run.close()
    assert len(recorded) >= 3
    (tmp_path / "archs.txt").write_text("\n".join(recorded) + "\n")
    capsys.readouterr()
    assert main(["score", "--space", "nb201", "--proxy", proxy, "--arch-file", str(tmp_path / "archs.txt"),
                 "--data", "gaussian", "--batch-size", "4", "--seed", "5", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {row["arch"]: row["score"] for row in rows} == recorded
    assert torch.get_num_threads() == 1  # the search's default thread count: the same summation order


def test_reflection_memory_keeps_recent_and_useful_notes_bounded():
    memory = ReflectionMemory(recent=2, useful=1, max_chars=40)
    memory.add(1, "first   note")
    memory.credit([1], improved=True)
    for i in range(2, 8):
        memory.add(i, f"note {i}")
    shown = memory.shown()
    assert [n.id for n in shown] == [1, 6, 7]  # the useful one plus the two most recent
    assert shown[0].text == "first note"
    assert len(memory.notes) <= 3
    assert memory.add(9, "   ") is None
    long = memory.add(10, "x" * 100)
    assert len(long.text) == 40 and long.text.endswith("...")


# ---- full runs with a scripted LLM ----------------------------------------------------------
def small_config(**changes) -> SearchConfig:
    base = dict(proxy="params", population=4, iterations=4, proposer="llm", llm="scripted:test",
                batch_size=4, probe_chunks=1, repair_attempts=0, seed=0)
    base.update(changes)
    return SearchConfig(**base)


def run_search(tmp_path: Path, config: SearchConfig, replies, name="run"):
    client = create_client("scripted:test", replies=replies)
    run = SearchRun.start(config, tmp_path / name, client=client, progress=Progress(enabled=False))
    try:
        result = run.run()
        return result, run.store.trials(), run.store.llm_calls(), client
    finally:
        run.close()


def test_llm_proposer_fault_replies_are_recorded_and_the_run_finishes(tmp_path):
    space = NB201
    prompt = MutationPrompt(space, get_proxy("params"))
    example_copy = json.dumps({"arch": space.encode(prompt.example_answer), "thinking": "copied"})
    marker = tmp_path / "executed"
    valid_child = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_1x1~2|"
    faults = [
        ('{"arch": |none~0|+|none~0|none~1|, "thinking": }', TrialState.PARSE_ERROR, "no complete, valid JSON"),
        ("I would replace the pooling by a convolution, it should help.", TrialState.PARSE_ERROR, "no JSON object"),
        (example_copy, TrialState.COPIED_EXAMPLE, "in-context example"),
        ('{"arch": "|conv_7x7~0|+|none~0|none~1|+|none~0|none~1|none~2|"}', TrialState.INVALID, "conv_7x7"),
        ('{"arch": "|none~0|+|none~0|none~1|+|none~0|none~1|"}', TrialState.INVALID, "malformed NB201 arch string"),
        (json.dumps({"arch": f"__import__('pathlib').Path('{marker}').touch()"}), TrialState.INVALID, "malformed"),
        ("", TrialState.PARSE_ERROR, "empty reply"),
        ("{" + '"a": "' + "x" * 1_000_000 + '"}', TrialState.PARSE_ERROR, "too long"),
        ('{"arch": 42}', TrialState.PARSE_ERROR, "'arch' is a int"),
        (json.dumps({"arch": valid_child, "score": 1e9}), TrialState.COMPLETE, ""),
    ]
    config = small_config(iterations=len(faults))
    result, trials, calls, client = run_search(tmp_path, config, scripted_mutations([f[0] for f in faults]))
    assert result.status == "finished"
    evolve = [t for t in trials if t.iteration > 0]
    assert len(evolve) == len(faults)
    for trial, (_, state, reason) in zip(evolve, faults):
        assert trial.state is state, (trial.state, trial.reason)
        assert reason in trial.reason
    assert not marker.exists()
    scored = evolve[-1]
    assert scored.score is not None and scored.score < 10  # the model's "score" was ignored
    # every iteration made one mutation call and one reflection call
    purposes = [c["purpose"] for c in calls]
    assert purposes.count("mutate") == len(faults) and purposes.count("reflect") == len(faults)
    # reflections saw the failure text
    reflect_prompts = [p for p in client.inner.prompts if p[-1].content.startswith("Reflection task")]
    assert "conv_7x7" in reflect_prompts[3][-1].content


def test_failed_llm_children_never_enter_the_population(tmp_path):
    bad = ['{"arch": "|conv_7x7~0|+|none~0|none~1|+|none~0|none~1|none~2|"}'] * 3
    result, trials, _, _ = run_search(tmp_path, small_config(iterations=3), scripted_mutations(bad))
    assert all(t.state is TrialState.INVALID for t in trials if t.iteration > 0)
    best = json.loads((tmp_path / "run" / "best_arch.json").read_text())
    assert best["trial"] < 4  # still an initial member


def test_one_repair_attempt_feeds_the_error_back(tmp_path):
    good = '{"arch": "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|nor_conv_3x3~2|", "thinking": "fixed"}'
    replies = ['{"arch": "|none~0|+|none~0|"}', good]
    result, trials, calls, client = run_search(tmp_path, small_config(iterations=1, repair_attempts=1), scripted_mutations(replies))
    trial = trials[-1]
    assert trial.state is TrialState.COMPLETE and trial.thinking == "fixed"
    assert [c["purpose"] for c in calls if c["trial_number"] == trial.number] == ["mutate", "repair", "reflect"]
    repair_prompt = client.inner.prompts[1]
    assert repair_prompt[-1].content.startswith("Your reply was rejected: malformed NB201 arch string")
    assert repair_prompt[-2].role == "assistant"


def test_repair_failure_is_recorded_with_the_attempt_count(tmp_path):
    replies = ["no json", "still no json"]
    _, trials, _, _ = run_search(tmp_path, small_config(iterations=1, repair_attempts=1), scripted_mutations(replies))
    assert trials[-1].state is TrialState.PARSE_ERROR and "after 1 repair attempt" in trials[-1].reason


def test_truncated_reply_with_complete_arch_is_salvaged(tmp_path):
    cut = '{"arch": "|nor_conv_1x1~0|+|none~0|none~1|+|none~0|none~1|nor_conv_3x3~2|", "thinking": "I changed the po'
    _, trials, _, _ = run_search(tmp_path, small_config(iterations=1), scripted_mutations([cut]))
    assert trials[-1].state is TrialState.COMPLETE


def test_child_equal_to_parent_is_a_duplicate(tmp_path):
    def echo(messages):
        from .search_fakes import call_kind, parent_of
        return ADVICE if call_kind(messages) == "reflect" else json.dumps({"arch": parent_of(messages)})

    _, trials, _, _ = run_search(tmp_path, small_config(iterations=2), echo)
    assert all(t.state is TrialState.DUPLICATE and "equals its parent" in t.reason for t in trials if t.iteration)


def test_reflection_notes_reach_later_prompts_and_ablation_switches(tmp_path):
    from .search_fakes import mutator_reply

    _, trials, calls, client = run_search(tmp_path, small_config(iterations=3), mutator_reply)
    mutate_prompts = [p for p in client.inner.prompts if not p[-1].content.startswith("Reflection task")]
    assert ADVICE not in mutate_prompts[0][-1].content
    assert ADVICE in mutate_prompts[1][-1].content
    assert trials[-1].notes_shown  # recorded which notes were shown

    _, trials, calls, client = run_search(
        tmp_path, small_config(iterations=3, reflection=False, example=False), mutator_reply, name="ablation"
    )
    assert [c["purpose"] for c in calls] == ["mutate"] * 3
    assert all(len(p) == 2 for p in client.inner.prompts)  # system + user: no example exchange


def test_temperatures_are_drawn_from_the_paper_set_or_fixed(tmp_path):
    from .search_fakes import mutator_reply

    _, _, calls, _ = run_search(tmp_path, small_config(iterations=6), mutator_reply)
    assert {c["temperature"] for c in calls} <= {0.2, 0.4, 0.6, 0.8, 1.0}
    assert len({c["temperature"] for c in calls}) > 1
    _, _, calls, _ = run_search(tmp_path, small_config(iterations=3, temperature=0.3), mutator_reply, name="fixed")
    assert {c["temperature"] for c in calls} == {0.3}


def test_random_proposer_run_is_deterministic(tmp_path):
    config = small_config(proposer="random", iterations=6)
    logs = []
    for name in ("a", "b"):
        run = SearchRun.start(config, tmp_path / name, progress=Progress(enabled=False))
        run.run()
        logs.append([t.log_record() for t in run.store.trials()])
        run.close()
    assert logs[0] == logs[1]
    assert len(logs[0]) == 10


def test_llm_budget_stops_the_run_cleanly(tmp_path):
    from .search_fakes import mutator_reply

    result, trials, calls, _ = run_search(tmp_path, small_config(iterations=50, max_tokens=5000), mutator_reply)
    assert result.status == "stopped" and "token budget" in result.reason
    assert 0 < len([t for t in trials if t.iteration]) < 50
    assert (tmp_path / "run" / "best_arch.json").exists()


# ---- configuration ------------------------------------------------------------------------
def test_config_file_and_flag_overrides(tmp_path):
    toml = tmp_path / "search.toml"
    toml.write_text('proxy = "synflow"\npopulation = 7\nno_such = 1\n')
    with pytest.raises(ConfigError, match="unknown setting 'no_such'"):
        resolve_config(toml, {})
    toml.write_text('proxy = "synflow"\npopulation = 7\niterations = 9\n')
    config = resolve_config(toml, {"population": 3})
    assert (config.proxy, config.population, config.iterations) == ("synflow", 3, 9)
    js = tmp_path / "search.json"
    js.write_text(json.dumps({"population": "many"}))
    with pytest.raises(ConfigError, match="must be an integer"):
        resolve_config(js, {})
    with pytest.raises(ConfigError, match="popullation|did you mean population"):
        SearchConfig.from_dict({"popullation": 3})


def test_llm_threads_reach_the_local_backend_and_nothing_else():
    from rznas.search.runner import default_client_factory

    assert default_client_factory(SearchConfig(llm="local:q8_0", llm_threads=2)).inner.n_threads == 2
    assert default_client_factory(SearchConfig(llm="local")).inner.n_threads >= 1  # half the CPUs
    with pytest.raises(ConfigError, match="--llm-threads applies to the local backend"):
        default_client_factory(SearchConfig(llm="scripted:x", llm_threads=2))
    with pytest.raises(ConfigError, match="llm_threads must be >= 1, got 0"):
        SearchConfig(llm_threads=0)


def test_constrained_schema_is_sent_to_the_backend(tmp_path):
    from .search_fakes import mutator_reply

    seen = []

    class Spy:
        model = "spy"

        def complete(self, messages, *, temperature, max_tokens, json_schema=None, seed=None):
            from rznas.llm.base import Completion

            seen.append(json_schema)
            return Completion(mutator_reply(messages), 10, 5, "spy")

    config = small_config(iterations=2, constrain_arch="on", reply_format="arch")
    run = SearchRun.start(config, tmp_path / "run", client=Spy(), progress=Progress(enabled=False))
    run.run()
    run.close()
    mutate_schemas = [s for s in seen if s is not None]
    assert len(mutate_schemas) == 2 and "pattern" in mutate_schemas[0]["properties"]["arch"]
    assert seen.count(None) == 2  # reflections are free text


@pytest.mark.parametrize(
    "flags",
    [
        ["--space", "zen_resnet", "--budget", "no-such-preset"],
        ["--space", "nb201", "--space-option", "no_such_option=1"],
        ["--proxy", "no-such-proxy"],
        ["--proposer", "llm", "--llm", "no-such-backend:model"],
    ],
)
def test_bad_search_settings_exit_non_zero_and_leave_no_run_directory(tmp_path, flags, capsys):
    from rznas.cli import main

    out = tmp_path / "run"
    code = main(["search", "--out", str(out), "--quiet", "--iterations", "1", "--population", "2", "--score-cache", "none", *flags])
    assert code != 0
    assert "error" in capsys.readouterr().err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_run_that_fails_after_validation_removes_its_store(tmp_path, monkeypatch):
    from rznas.search import runner

    def broken_executor(*args, **kwargs):
        raise ConfigError("no such executor setup")

    monkeypatch.setattr(runner, "create_executor", broken_executor)
    config = SearchConfig(proposer="random", population=2, iterations=1, score_cache="none")
    existing = tmp_path / "existing"
    existing.mkdir()
    for out in (tmp_path / "new", existing):
        with pytest.raises(ConfigError, match="no such executor"):
            SearchRun.start(config, out, progress=Progress(enabled=False))
    assert not (tmp_path / "new").exists()
    assert existing.is_dir() and list(existing.iterdir()) == []


def test_analytic_param_budget_counts_the_probe_classes():
    """NB201 params are counted analytically for the network the search builds (100 classes here)."""
    from rznas.errors import BudgetExceeded
    from rznas.spaces import get_space

    space = get_space("nb201")
    arch = space.decode("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    with_10, with_100 = space.count_params(arch, num_classes=10), space.count_params(arch, num_classes=100)
    budget = ArchBudget(max_params=(with_10 + with_100) / 2)
    BudgetChecker(space, budget, num_classes=10).check(arch, lambda: space.build(arch, num_classes=10))
    with pytest.raises(BudgetExceeded):
        BudgetChecker(space, budget, num_classes=100).check(arch, lambda: space.build(arch, num_classes=100))


def test_a_run_from_before_the_score_seed_cannot_be_resumed_under_the_new_scheme(tmp_path):
    config = small_config(proposer="random", iterations=2)
    run = SearchRun.start(config, tmp_path / "old", progress=Progress(enabled=False))
    stored = run.store.config()
    del stored["score_seed"]  # what an older rznas wrote
    run.store.set_meta("config", stored)
    run.close()
    with pytest.raises(ConfigError, match="older rznas"):
        SearchRun.resume(tmp_path / "old", progress=Progress(enabled=False))


# ---- probe data defaults (issue 11 item 6) ------------------------------------------------------
def test_search_and_score_give_a_data_dependent_proxy_the_same_real_default_data(tmp_path, monkeypatch):
    from rznas.cli import build_parser

    from .test_data import solid_images, write_batch

    folder = tmp_path / "data" / "cifar-10-batches-py"
    write_batch(folder / "data_batch_1", solid_images([(255, 0, 0), (0, 255, 0)]), [0, 1])
    write_batch(folder / "test_batch", solid_images([(0, 0, 0)]), [4])
    monkeypatch.delenv("RZNAS_DATA_DIR", raising=False)
    config = SearchConfig(proxy="zico", data_dir=str(tmp_path / "data"))
    assert config.data == "auto" and config.resolved().data == "cifar10"  # before: gaussian noise
    assert SearchConfig(proxy="synflow", data_dir=str(tmp_path / "empty")).resolved().data == "gaussian"  # offline quickstart
    assert build_parser().parse_args(["score", "--proxy", "zico", "--arch", "x"]).data == "auto"


def test_a_data_dependent_proxy_on_noise_is_announced_once_at_start_even_quiet(tmp_path):
    import io

    config = SearchConfig(proxy="naswot", proposer="random", population=2, iterations=2, data="gaussian",
                          batch_size=4, probe_chunks=1, score_cache="none")
    stream = io.StringIO()
    run = SearchRun.start(config, tmp_path / "run", progress=Progress(stream, enabled=False))
    run.run()
    run.close()
    lines = [line for line in stream.getvalue().splitlines() if "data-dependent" in line]
    assert len(lines) == 1 and "naswot" in lines[0] and "gaussian" in lines[0]
    stream = io.StringIO()
    config = config.replace(proxy="synflow")
    run = SearchRun.start(config, tmp_path / "run2", progress=Progress(stream, enabled=True))
    run.run()
    run.close()
    assert "data-dependent" not in stream.getvalue()


def test_a_search_with_the_embedded_model_says_once_what_its_edits_measured(tmp_path):
    """The shipped SmolLM2 (any local alias) gets the proposer_signal note on stderr; an API or
    a user's own model does not, nor does --quiet."""
    import io

    from rznas.llm.local_backend import embedded_model_note

    assert all(embedded_model_note(spec) for spec in ("local", "local:q8_0", "LOCAL:F16", "local:smollm2"))
    assert not any(embedded_model_note(spec) for spec in ("local:/models/mine.gguf", "openai:gpt-4o", "scripted:test"))
    replies = scripted_mutations(["|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|"] * 2)
    for llm, enabled, expected in (("local:q8_0", True, 1), ("local:q8_0", False, 0), ("scripted:test", True, 0)):
        stream = io.StringIO()
        config = small_config(iterations=1, llm=llm, reply_format="arch")
        run = SearchRun.start(config, tmp_path / f"run-{llm}-{enabled}".replace(":", "_"),
                              client=create_client("scripted:test", replies=replies), progress=Progress(stream, enabled=enabled))
        run.run()
        run.close()
        lines = [line for line in stream.getvalue().splitlines() if "proposer_signal.md" in line]
        assert len(lines) == expected, (llm, enabled, stream.getvalue())
        if expected:
            assert "worse than random mutation" in lines[0] and "--proposer random" in lines[0]


def test_config_files_parse_without_tomllib_through_tomli(tmp_path):
    """Python 3.10 has no tomllib: the same parser comes from the tomli package (a dependency there)."""
    import subprocess
    import sys

    path = tmp_path / "s.toml"
    path.write_text("population = 3\n")
    script = (
        "import sys, tomllib, types\n"
        "stand_in = types.ModuleType('tomli')\n"
        "stand_in.loads, stand_in.TOMLDecodeError = tomllib.loads, tomllib.TOMLDecodeError\n"
        "sys.modules['tomli'], sys.modules['tomllib'] = stand_in, None  # import tomllib fails, as on 3.10\n"
        "sys.version_info = (3, 10, 14, 'final', 0)\n"
        "from rznas.search import config\n"
        "assert config.tomllib is stand_in\n"
        f"print(config.load_config_file({str(path)!r}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{'population': 3}"
