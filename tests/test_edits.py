"""Structured-edit replies: per-parent grammars that reject the parent, edits applied by code
(channel chain and budget kept on every macro space), caps that fit the reply, the search."""
from __future__ import annotations

import itertools
import json
import random

import pytest

from rznas.errors import ConfigError
from rznas.proxies import get_proxy
from rznas.search.config import SearchConfig
from rznas.search.edits import EDIT_FORMATS, EXCLUDE_LIMIT, edit_format, resolve_reply_format
from rznas.search.gateway import LLMGateway
from rznas.search.prompt import MutationPrompt, PromptOptions, edit_reply_schema, min_reply_tokens
from rznas.search.proposers import LLMProposer, ProposerContext, salvage_edit
from rznas.search.runner import llm_proposer_options, prompt_options, stored_settings
from rznas.trial import Member, TrialState
from rznas.spaces import get_space

SPACE_OPTIONS = {
    "nb201": {},
    "darts": {"channels": 8, "layers": 5},
    "zen_resnet": {"budget": "1M"},
    "mobilenet": {},
    "maedet": {},
}
MACRO = ("zen_resnet", "mobilenet", "maedet")


def parents(name: str, count: int = 4):
    space = get_space(name, **SPACE_OPTIONS[name])
    rng = random.Random(f"edits:{name}")
    return space, [space.example_architecture()] + [space.sample(rng) for _ in range(count - 1)]


def every_edit(alternatives):
    """All edits of a union of product sets (small spaces only)."""
    for alternative in alternatives:
        names = list(alternative)
        for values in itertools.product(*(alternative[n] for n in names)):
            yield dict(zip(names, values))


def test_every_space_with_edits_is_covered():
    assert set(EDIT_FORMATS.names()) == set(SPACE_OPTIONS)


@pytest.mark.parametrize("name", ["nb201", "darts"])
def test_cell_edits_are_exactly_the_single_changes_and_never_the_parent(name):
    space, archs = parents(name)
    fmt = edit_format(space)
    rng = random.Random(0)
    for parent in archs:
        children = [fmt.apply(parent, edit) for edit in every_edit(fmt.alternatives(parent))]
        # the space's own one-step mutation reaches exactly this set (the paper's rule)
        mutations = {space.mutate(parent, rng).id for _ in range(3000)}
        assert {c.id for c in children} == mutations
        assert parent.id not in {c.id for c in children}
        assert len(children) == len({c.id for c in children})  # one edit per child


@pytest.mark.parametrize("name", ["nb201", "darts"])
def test_the_schema_rejects_edits_that_keep_the_parent(name):
    space, archs = parents(name)
    fmt = edit_format(space)
    for parent in archs:
        if name == "nb201":
            keep = [{"edge": e, "op": op} for e, op in enumerate(parent.genotype)]
        else:
            keep = [{"cell": kind, "pair": p, "op": op, "input": i}
                    for kind, cell in zip(("normal", "reduce"), parent.genotype) for p, (op, i) in enumerate(cell)]
        for edit in keep:
            assert fmt.apply(parent, edit).id == parent.id  # applying it would return the parent ...
            assert not fmt.admits(parent, edit)  # ... so the schema does not admit it
        assert all(fmt.admits(parent, e) for e in every_edit(fmt.alternatives(parent)))


@pytest.mark.slow  # eight embedded-model calls (seconds on an idle machine)
def test_llama_cpp_grammar_of_the_schema_never_yields_the_parent():
    """The embedded model, told to answer with the parent's own operation, at temperature 1.5
    over 8 seeds: the per-parent grammar only lets it write edits that change the parent."""
    pytest.importorskip("llama_cpp")
    from rznas.llm.base import Message
    from rznas.llm.local_backend import LocalLlamaClient

    space = get_space("nb201")
    fmt = edit_format(space)
    parent = space.decode("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")
    # the "edit" field of the reply schema alone (no free-text thinking: short, never cut off)
    schema = {"type": "object", "properties": {"edit": edit_reply_schema(fmt, parent)["properties"]["edit"]},
              "required": ["edit"]}
    client = LocalLlamaClient(n_ctx=512, seed=7, context_slots=1)
    ask = 'Reply with exactly this JSON: {"edit": {"edge": 2, "op": "nor_conv_3x3"}}'
    seen = set()
    for _ in range(8):
        reply = client.complete([Message("user", ask)], temperature=1.5, max_tokens=40, json_schema=schema)
        edit = json.loads(reply.text)["edit"]
        child = fmt.apply(parent, edit)
        assert child.id != parent.id and fmt.admits(parent, edit)
        seen.add(child.id)
    assert len(seen) >= 2  # the samples differ: the grammar, not one fixed answer, did this


@pytest.mark.parametrize("name", MACRO)
def test_macro_edits_keep_the_channel_chain_and_the_budget(name):
    space, archs = parents(name, 6)
    fmt = edit_format(space)
    rng = random.Random(1)
    for parent in archs:
        alternatives = fmt.alternatives(parent)
        assert alternatives
        for _ in range(40):
            edit = fmt.random_edit(parent, rng)
            child = fmt.apply(parent, edit)  # validate() inside: chain, strides, channel rules
            blocks = space.blocks(child)
            assert all(b.c_in == a.c_out for a, b in zip(blocks, blocks[1:]))
            assert child.id != parent.id
            assert space.within_budget(child), (space.encode(parent), edit)
        # every block the space may change is offered (a fixed head is not)
        offered = {a["block"][0] for a in alternatives}
        movable = set(range(len(parent.genotype)))
        if space.fixed_head:
            movable.discard(len(parent.genotype) - 1)
        assert offered <= movable and len(offered) >= len(movable) - 1


def test_macro_edit_sets_the_next_block_input_and_rejects_bad_values():
    space = get_space("zen_resnet", budget=None)
    fmt = edit_format(space)
    parent = space.decode(space.describe().example)
    child = fmt.apply(parent, {"block": 1, "out": 64})
    assert space.blocks(child)[1].c_out == 64 and space.blocks(child)[2].c_in == 64
    from rznas.errors import InvalidArchitecture

    with pytest.raises(InvalidArchitecture, match="conv block"):
        fmt.apply(parent, {"block": 0, "sub_layers": 2})
    with pytest.raises(InvalidArchitecture, match="block' must be in"):
        fmt.apply(parent, {"block": 99, "out": 64})
    with pytest.raises(InvalidArchitecture, match="multiple of 8"):
        fmt.apply(parent, {"block": 1, "out": 65})
    with pytest.raises(InvalidArchitecture, match="unknown edit field"):
        fmt.apply(parent, {"block": 1, "colour": 3})


def test_darts_replies_fit_their_output_cap():
    """The real tokenizer: the longest edit reply and a whole-genotype reply fit the caps the
    search gives them (main's fixed 160 tokens cut the genotype off)."""
    pytest.importorskip("llama_cpp")
    from rznas.llm.local_backend import LocalLlamaClient

    llm = LocalLlamaClient(n_ctx=512, context_slots=1).context(0).llama
    tokens = lambda text: len(llm.tokenize(text.encode(), add_bos=False))  # noqa: E731
    thinking = "Changed one pair of the normal cell to a separable convolution: more capacity where the features are"[:160]
    space = get_space("darts", **SPACE_OPTIONS["darts"])
    config = SearchConfig(space="darts", llm="local", space_options=SPACE_OPTIONS["darts"])
    edit_cap = llm_proposer_options(config, space, prompt_options(config, space))["max_tokens"]
    longest_edit = {"edit": {"cell": "reduce", "pair": 7, "op": "dil_conv_5x5", "input": 4}, "thinking": thinking}
    assert tokens(json.dumps(longest_edit)) <= edit_cap
    arch_cap = llm_proposer_options(config.replace(reply_format="arch"), space, PromptOptions(reply_format="arch"))["max_tokens"]
    rng = random.Random(0)
    for _ in range(20):
        reply = {"arch": space.encode(space.sample(rng)), "thinking": thinking}
        assert tokens(json.dumps(reply)) <= arch_cap
    assert tokens(json.dumps({"arch": space.encode(space.example_architecture())})) > 160


@pytest.mark.parametrize("name", list(SPACE_OPTIONS))
def test_edit_prompt_example_is_a_valid_edit_and_the_schema_builds_a_grammar(name):
    pytest.importorskip("llama_cpp")
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    space = get_space(name, **SPACE_OPTIONS[name])
    prompt = MutationPrompt(space, get_proxy("params"), PromptOptions(reply_format="edit"))
    answer = json.loads(prompt.prefix[-1].content)
    assert prompt.edits.apply(prompt.example_input, answer["edit"]).id == prompt.example_answer.id
    assert '"edit"' in prompt.system and "Reply format" in prompt.system
    grammar = json_schema_to_gbnf(json.dumps(edit_reply_schema(prompt.edits, prompt.example_input)))
    assert "root" in grammar and len(grammar) < 40_000  # grammar size drives llama.cpp's sampling cost
    assert min_reply_tokens(space, "edit") <= min_reply_tokens(space, "arch") + 60


class EditSpy:
    """A backend that answers every mutation with the first edit its schema admits, or a fixed reply."""

    model = "spy"

    def __init__(self, fixed: str | None = None):
        self.fixed = fixed
        self.schemas = []

    def complete(self, messages, *, temperature, max_tokens, json_schema=None, seed=None):
        from rznas.llm.base import Completion

        self.schemas.append(json_schema)
        if json_schema is None:
            return Completion("keep going", 5, 3, "spy")
        if self.fixed is not None:
            return Completion(self.fixed, 10, 5, "spy")
        edit_schema = json_schema["properties"]["edit"]
        first = (edit_schema.get("anyOf") or [edit_schema])[0]["properties"]
        edit = {k: v["const"] if "const" in v else v["enum"][-1] for k, v in first.items()}
        return Completion(json.dumps({"edit": edit, "thinking": "t"}), 10, 5, "spy")


def run_with(tmp_path, client, **changes):
    from rznas.search.progress import Progress
    from rznas.search.runner import SearchRun

    base = dict(proxy="params", population=4, iterations=3, proposer="llm", llm="scripted:test",
                batch_size=4, probe_chunks=1, repair_attempts=0, seed=0)
    base.update(changes)
    run = SearchRun.start(SearchConfig(**base), tmp_path / "run", client=client, progress=Progress(enabled=False))
    try:
        run.run()
        return run.store.trials()
    finally:
        run.close()


def test_search_sends_per_parent_edit_schemas_and_scores_the_children(tmp_path):
    spy = EditSpy()
    trials = run_with(tmp_path, spy, constrain_arch="on", reply_format="edit", iterations=12)
    mutate = [s for s in spy.schemas if s is not None]
    assert len(mutate) == 12 and all("anyOf" in s["properties"]["edit"] for s in mutate)
    evolved = [t for t in trials if t.iteration > 0]
    # the spy always takes the schema's first edit: only because the schema leaves out the
    # children already evaluated does it never repeat one (4 parents, 12 proposals)
    assert [t.state for t in evolved] == [TrialState.COMPLETE] * 12
    assert len({t.arch.id for t in trials}) == len(trials)
    # off (and for runs stored before the setting): the same spy repeats children
    spy = EditSpy()
    trials = run_with(tmp_path / "off", spy, constrain_arch="on", reply_format="edit", iterations=12,
                      exclude_evaluated=False)
    assert TrialState.DUPLICATE in {t.state for t in trials}
    assert stored_settings({"reply_format": "edit"})["exclude_evaluated"] is False


@pytest.mark.parametrize("name", ["nb201", "darts"])
def test_the_schema_leaves_out_children_already_evaluated(name):
    space, archs = parents(name, 2)
    edits = edit_format(space)
    for parent in archs:
        children = {}
        for edit in every_edit(edits.alternatives(parent)):
            children.setdefault(edits.apply(parent, edit).id, edit)
        keep = next(iter(children))
        seen = set(children) - {keep}
        left = list(every_edit(edits.unseen_alternatives(parent, seen)))
        assert {edits.apply(parent, e).id for e in left} == {keep}
        schema = edit_reply_schema(edits, parent, exclude=seen)["properties"]["edit"]
        assert schema == edits.schema(parent, seen) != edits.schema(parent)
        # every child evaluated: the edits stay as they were (the reply is then a recorded duplicate)
        assert edits.unseen_alternatives(parent, set(children)) == edits.alternatives(parent)
        assert edits.unseen_alternatives(parent, set()) == edits.alternatives(parent)


@pytest.mark.parametrize("name", ["nb201", "darts"])
def test_a_parent_is_exhausted_only_when_every_child_was_evaluated(name):
    space, archs = parents(name, 2)
    edits = edit_format(space)
    for parent in archs:
        children = {edits.apply(parent, e).id for e in every_edit(edits.alternatives(parent))}
        assert edits.exhausted(parent, children)
        assert edits.exhausted(parent, children | {parent.id, "unrelated"})
        assert not edits.exhausted(parent, children - {next(iter(children))})
        assert not edits.exhausted(parent, set())


@pytest.fixture(scope="module")
def redrawing_run(tmp_path_factory):
    """150 iterations at population 3 with the params fitness: the largest cells stay and the
    spy walks through all their children, so members run out of unseen children."""
    out = tmp_path_factory.mktemp("redraw")
    trials = run_with(out, EditSpy(), constrain_arch="on", reply_format="edit", iterations=150, population=3)
    return trials, json.loads((out / "run" / "best_arch.json").read_text())["parent_redraws"]


def test_a_parent_whose_children_were_all_evaluated_is_drawn_again(tmp_path, redrawing_run):
    # once every child of a member is evaluated, its next child could only be a duplicate, so
    # another member is drawn (measured: 4 duplicates of 150 without, 0 with)
    on, redraws = redrawing_run
    off = run_with(tmp_path / "off", EditSpy(), constrain_arch="on", reply_format="edit", iterations=150, population=3,
                   redraw_exhausted=False)
    assert [t.state for t in on if t.iteration > 0] == [TrialState.COMPLETE] * 150
    assert redraws > 0
    assert TrialState.DUPLICATE in {t.state for t in off}
    assert json.loads((tmp_path / "off" / "run" / "best_arch.json").read_text())["parent_redraws"] == 0
    # runs stored before the setting resume and replay as they ran
    assert stored_settings({"reply_format": "edit", "exclude_evaluated": True})["redraw_exhausted"] is False


def test_a_resumed_run_redraws_the_same_parents_and_keeps_the_count(tmp_path, redrawing_run):
    from rznas.search.progress import Progress
    from rznas.search.runner import SearchRun

    straight, redraws = redrawing_run
    run_with(tmp_path / "split", EditSpy(), constrain_arch="on", reply_format="edit", iterations=145, population=3)
    # stopped after the first redraws (3 by iteration 145, 8 by 150): the count and the draws carry on
    run = SearchRun.resume(tmp_path / "split" / "run", overrides={"iterations": 150}, client=EditSpy(),
                           progress=Progress(enabled=False))
    try:
        run.run()
        resumed = run.store.trials()
    finally:
        run.close()
    assert [t.log_record() for t in resumed] == [t.log_record() for t in straight]
    assert json.loads((tmp_path / "split" / "run" / "best_arch.json").read_text())["parent_redraws"] == redraws > 0


@pytest.mark.parametrize("reply_format", ["edit", "arch"])
def test_constrained_fused_reflection_requires_the_reflection_after_the_first_call(tmp_path, reply_format):
    # a small model skips an optional field: with it optional, SmolLM2 wrote no note in 5 of 5 calls
    spy = EditSpy('{"arch": "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"}') if reply_format == "arch" else EditSpy()
    run_with(tmp_path, spy, constrain_arch="on", reply_format=reply_format, fused_reflection=True)
    mutate = [s for s in spy.schemas if s is not None]
    assert len(mutate) == 3
    assert "reflection" not in mutate[0]["required"]  # nothing to reflect on yet
    assert all("reflection" in s["required"] and s["properties"]["reflection"]["minLength"] == 1 for s in mutate[1:])
    # without --fused-reflection there is no such field at all
    plain = EditSpy()
    run_with(tmp_path / "plain", plain, constrain_arch="on", reply_format="edit")
    assert all("reflection" not in s["properties"] for s in plain.schemas if s is not None)


@pytest.mark.parametrize("reply_format", ["edit", "arch"])
def test_sparse_fused_reflection_offers_the_field_only_where_an_outcome_is_reported(tmp_path, reply_format):
    # reflect_every 3: only trials 6, 9 (numbers; population 4) report an outcome and must reflect;
    # the other calls' grammar has no "reflection" field (no output tokens spent on it)
    spy = EditSpy('{"arch": "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"}') if reply_format == "arch" else EditSpy()
    run_with(tmp_path, spy, constrain_arch="on", reply_format=reply_format, fused_reflection=True,
             iterations=6, reflect_every=3, note_max_chars=120)
    mutate = [s for s in spy.schemas if s is not None]
    assert len(mutate) == 6  # trials 4..9
    reflecting = [n for n, s in zip(range(4, 10), mutate) if "reflection" in s["properties"]]
    assert reflecting == [6, 9]
    for number, schema in zip(range(4, 10), mutate):
        if number in reflecting:
            assert "reflection" in schema["required"]
            assert schema["properties"]["reflection"]["maxLength"] == 120  # capped at the note length
    with pytest.raises(ConfigError, match="reflect_every must be >= 1"):
        SearchConfig(proxy="params", reflect_every=0)


@pytest.mark.parametrize("reply_format", ["edit", "arch"])
def test_no_thinking_leaves_the_field_out_of_constrained_grammars_only(tmp_path, reply_format):
    spy = EditSpy('{"arch": "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|"}') if reply_format == "arch" else EditSpy()
    run_with(tmp_path, spy, constrain_arch="on", reply_format=reply_format, fused_reflection=True, reply_thinking=False)
    mutate = [s for s in spy.schemas if s is not None]
    assert mutate and all("thinking" not in s["properties"] for s in mutate)
    assert all("reflection" in s["properties"] for s in mutate[1:])  # the reflection is still asked for
    # without a grammar the reply is free text; the field stays in the loose schema
    loose = edit_reply_schema(edit_format(get_space("nb201")), None, thinking=False)
    assert "thinking" in loose["properties"]


def test_the_search_flags_for_fewer_llm_tokens_reach_the_config():
    import argparse

    from rznas.commands.search import add_parser, overrides_from

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["search", "--no-thinking", "--reflect-every", "3", "--note-max-chars", "160"])
    assert overrides_from(args) == {"reply_thinking": False, "reflect_every": 3, "note_max_chars": 160}
    assert overrides_from(parser.parse_args(["search"])) == {}


def test_unconstrained_edit_that_changes_nothing_is_a_duplicate(tmp_path):
    # without a grammar (remote backends) the edit is checked by code: the parent back is a duplicate
    space = get_space("nb201")
    prompt = MutationPrompt(space, get_proxy("params"), PromptOptions(reply_format="edit"))
    parent = space.sample(random.Random(3))
    keep = json.dumps({"edit": {"edge": 0, "op": parent.genotype[0]}})
    proposer = LLMProposer(ProposerContext(space, 0, LLMGateway(EditSpy(keep), model="spy"), prompt,
                                           {"reply_format": "edit", "repair_attempts": 0}))
    proposal = proposer.propose(Member(parent, 1.0, 0))
    assert proposal.state is None and proposal.arch.id == parent.id  # the runner marks it DUPLICATE
    assert proposer.reply_schema(parent)["properties"]["edit"] == {"type": "object"}
    trials = run_with(tmp_path, EditSpy('{"edit": {"edge": 0, "op": "no_such_op"}}'), reply_format="edit")
    evolved = [t for t in trials if t.iteration > 0]
    assert {t.state for t in evolved} == {TrialState.INVALID}
    assert "edit field 'op' must be one of" in evolved[0].reason


@pytest.mark.parametrize("name", list(SPACE_OPTIONS))
def test_the_fused_prompt_names_the_previous_child_by_its_edit(name):
    from rznas.search.prompt import PreviousOutcome

    space, (parent, *_) = parents(name, 1)
    edit_prompt = MutationPrompt(space, get_proxy("params"), PromptOptions(reply_format="edit", fused_reflection=True))
    edit = edit_prompt.edits.random_edit(parent, random.Random(1))
    child = space.encode(edit_prompt.edits.apply(parent, edit))
    previous = PreviousOutcome(space.encode(parent), 1.0, child, "complete", 2.0, "")
    text = edit_prompt.user_message(space.encode(parent), 1.0, (), previous)
    # the edit (~15 tokens) instead of the child's string (NB201: 61); every example parent has
    # at most EXCLUDE_LIMIT edits (nb201 24, darts 120, macro 302-989)
    assert sum(1 for _ in every_edit(edit_prompt.edits.alternatives(parent))) <= EXCLUDE_LIMIT
    assert edits_equal(json.loads(edit_prompt.previous_edit(previous)), edit, edit_prompt.edits, parent)
    assert "Child: the parent after your edit {" in text and child not in text
    # an unusable reply and the whole-architecture format are written out as before
    broken = PreviousOutcome(space.encode(parent), 1.0, "not an architecture", "parse_error", None, "bad")
    assert "Child: not an architecture" in edit_prompt.user_message(space.encode(parent), 1.0, (), broken)
    arch_prompt = MutationPrompt(space, get_proxy("params"), PromptOptions(reply_format="arch", fused_reflection=True))
    assert f"Child: {child}" in arch_prompt.user_message(space.encode(parent), 1.0, (), previous)


def edits_equal(found, edit, edits, parent):
    """Two edits that make the same child (a cell may be reached by one edit only, but say so by the child)."""
    return edits.apply(parent, found).id == edits.apply(parent, edit).id


def test_a_cut_off_edit_reply_is_salvaged():
    assert salvage_edit('{"edit": {"edge": 3, "op": "none"}, "thinking": "the score wi') == {"edge": 3, "op": "none"}
    assert salvage_edit('{"edit": {"edge": 3, "op": "no') is None
    assert salvage_edit('{"thinking": "x"}') is None


def test_reply_format_resolution_and_settings():
    nb201, darts = get_space("nb201"), get_space("darts")
    assert resolve_reply_format("auto", constrained=True, space=nb201) == "edit"
    assert resolve_reply_format("auto", constrained=False, space=darts) == "arch"
    assert resolve_reply_format("arch", constrained=True, space=nb201) == "arch"
    assert SearchConfig(llm="local").constrain and SearchConfig().reply_format == "auto"
    with pytest.raises(ConfigError, match="reply_format"):
        SearchConfig(reply_format="diff")

    class Spaceless:
        name = "other"

    with pytest.raises(ConfigError, match="no edit reply format"):
        resolve_reply_format("edit", constrained=True, space=Spaceless())  # type: ignore[arg-type]
    # runs stored before reply formats existed resume with the reply they were started with
    assert stored_settings({"space": "nb201"})["reply_format"] == "arch"
    assert stored_settings({"reply_format": "edit"})["reply_format"] == "edit"


def test_cli_reply_format_flag():
    from rznas.cli import build_parser
    from rznas.commands.search import overrides_from

    args = build_parser().parse_args(["search", "--reply-format", "arch"])
    assert overrides_from(args)["reply_format"] == "arch"
