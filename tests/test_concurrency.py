"""Concurrent (steady-state) search, fused reflection, and the executor/score-cache flags."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from rznas.cli import main
from rznas.errors import LLMError
from rznas.llm import create_client
from rznas.search.config import SearchConfig
from rznas.search.progress import Progress
from rznas.search.prompt import MutationPrompt, PromptOptions
from rznas.search.runner import SearchRun
from rznas.proxies import get_proxy
from rznas.spaces import get_space
from rznas.store import RunStore

from .search_fakes import ADVICE, call_kind, mutator_reply

FUSED_ADVICE = "Keep nor_conv_3x3 into node 3."


def config(**changes) -> SearchConfig:
    base = dict(proxy="params", population=4, iterations=10, proposer="llm", llm="scripted:test",
                batch_size=4, probe_chunks=1, seed=3, score_cache="none")
    base.update(changes)
    return SearchConfig(**base)


def fused_mutator(messages):
    """mutator_reply, plus a "reflection" field whenever the prompt reports a previous outcome."""
    text = mutator_reply(messages)
    if call_kind(messages) == "mutate" and "Outcome of your previous mutation" in messages[-1].content:
        data = json.loads(text)
        data["reflection"] = FUSED_ADVICE
        text = json.dumps(data)
    return text


def slow(reply, delay=0.01):
    def answer(messages):
        time.sleep(delay)
        return reply(messages)
    return answer


def run(tmp_path: Path, cfg: SearchConfig, reply=mutator_reply, *, name="run", force_async=False):
    client = create_client("scripted:test", replies=reply)
    search = SearchRun.start(cfg, tmp_path / name, client=client, progress=Progress(enabled=False))
    search.force_async = force_async
    try:
        result = search.run()
        return result, search.store.trials(), search.store.llm_calls(), search.store.reflections(), client
    finally:
        search.close()


def log(trials, calls, reflections):
    return (
        [t.log_record() for t in trials],
        [(c["trial_number"], c["seq"], c["purpose"], c["cache_key"], c["temperature"], c["reply_text"]) for c in calls],
        reflections,
    )


@pytest.mark.parametrize("fused,every", [(False, 1), (True, 1), (False, 3), (True, 3)])
def test_concurrency_one_equals_the_sequential_loop(tmp_path, fused, every):
    cfg = config(fused_reflection=fused, reflect_every=every)
    reply = fused_mutator if fused else mutator_reply
    _, *seq = run(tmp_path, cfg, reply, name="sequential")
    _, *con = run(tmp_path, cfg, reply, name="concurrent", force_async=True)
    assert log(*seq[:3]) == log(*con[:3])
    assert len(seq[0]) == 4 + 10


def test_concurrent_search_completes_without_duplicate_members(tmp_path):
    cfg = config(concurrency=4, iterations=16)
    in_flight, peak = [0], [0]
    lock = threading.Lock()

    def counting(messages):
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        try:
            time.sleep(0.02)
            return mutator_reply(messages)
        finally:
            with lock:
                in_flight[0] -= 1

    result, trials, calls, reflections, _ = run(tmp_path, cfg, counting)
    assert result.status == "finished"
    evolve = [t for t in trials if t.iteration > 0]
    assert [t.iteration for t in evolve] == list(range(1, 17))
    assert [t.number for t in trials] == list(range(len(trials)))
    complete = [t.arch_id for t in trials if t.state.value == "complete"]
    assert len(complete) == len(set(complete))  # nothing scored or added twice
    assert peak[0] > 1  # proposals really overlapped
    # one mutation and one reflection per iteration, each logged with its own trial
    for trial in evolve:
        purposes = [c["purpose"] for c in calls if c["trial_number"] == trial.number]
        assert purposes == ["mutate", "reflect"]
    assert set(reflections) == {t.number for t in evolve}
    store = RunStore.open(tmp_path / "run")
    assert store.pending() == []
    store.close()


def test_fused_reflection_is_parsed_stored_and_shown(tmp_path):
    _, trials, calls, reflections, client = run(tmp_path, config(fused_reflection=True, iterations=5), fused_mutator)
    assert {c["purpose"] for c in calls} == {"mutate"}  # one call per iteration
    evolve = [t for t in trials if t.iteration > 0]
    # the first mutation has no previous outcome; each later one reflects on its predecessor
    assert sorted(reflections) == [t.number for t in evolve[1:]]
    assert set(reflections.values()) == {FUSED_ADVICE}
    prompts = client.inner.prompts
    assert "Outcome of your previous mutation" not in prompts[0][-1].content
    assert "Outcome of your previous mutation" in prompts[1][-1].content
    assert FUSED_ADVICE in prompts[2][-1].content  # the note reached a later prompt
    assert '"reflection"' in prompts[0][0].content  # the system prompt asks for the field
    best = json.loads((tmp_path / "run" / "best_arch.json").read_text())
    assert best["fused_reflection"] is True and best["tokens"]["calls"] == 5
    assert best["tokens"]["per_iteration"]["calls"] == 1.0


@pytest.mark.parametrize("fused", [False, True])
def test_reflect_every_n_reflects_on_the_steps_whose_trial_number_it_divides(tmp_path, fused):
    cfg = config(fused_reflection=fused, reflect_every=3, iterations=9)
    _, trials, calls, reflections, client = run(tmp_path, cfg, fused_mutator if fused else mutator_reply)
    evolve = [t.number for t in trials if t.iteration > 0]  # trials 4..12
    assert sorted(reflections) == [n for n in evolve if n % 3 == 0]  # 6, 9, 12
    if fused:
        assert {c["purpose"] for c in calls} == {"mutate"}
        reported = [n for n, p in zip(evolve, client.inner.prompts) if "Outcome of your previous mutation" in p[-1].content]
        assert reported == [6, 9, 12]
    else:
        assert sorted(c["trial_number"] for c in calls if c["purpose"] == "reflect") == [6, 9, 12]
    # a resumed run reflects on the same steps
    split = config(fused_reflection=fused, reflect_every=3, iterations=4)
    run(tmp_path, split, fused_mutator if fused else mutator_reply, name="split")
    client = create_client("scripted:test", replies=fused_mutator if fused else mutator_reply)
    resumed = SearchRun.resume(tmp_path / "split", overrides={"iterations": 9}, client=client, progress=Progress(enabled=False))
    try:
        resumed.run()
        assert sorted(resumed.store.reflections()) == sorted(reflections)
        assert [t.log_record() for t in resumed.store.trials()] == [t.log_record() for t in trials]
    finally:
        resumed.close()


def test_static_prompt_prefix_is_byte_identical_with_fused_reflection():
    from rznas.search.prompt import PreviousOutcome

    prompt = MutationPrompt(get_space("nb201"), get_proxy("synflow"), PromptOptions(fused_reflection=True))
    parent = "|nor_conv_3x3~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|nor_conv_1x1~1|skip_connect~2|"
    step = PreviousOutcome(parent, 1.0, "(unusable reply) x", "parse_error", None, "no JSON")
    a = prompt.messages(parent, 1.0)
    b = prompt.messages(parent, 2.0, previous=step)
    assert a[:-1] == b[:-1] and a[-1] != b[-1]
    assert "parse_error" in b[-1].content and "no JSON" in b[-1].content


def test_concurrent_crash_then_resume_loses_nothing_and_reuses_replies(tmp_path):
    state = {"reflections": 0}
    lock = threading.Lock()

    def flaky(messages):
        if call_kind(messages) == "reflect":
            with lock:
                state["reflections"] += 1
                fail = state["reflections"] == 3
            if fail:
                raise LLMError("bad request", retryable=False)
        return slow(mutator_reply)(messages)

    cfg = config(concurrency=3, iterations=12)
    search = SearchRun.start(cfg, tmp_path / "run", client=create_client("scripted:x", replies=flaky),
                             progress=Progress(enabled=False))
    with pytest.raises(LLMError):
        search.run()
    search.close()
    store = RunStore.open(tmp_path / "run")
    pending = store.pending()
    assert pending, "the proposal whose reflection failed stays pending"
    store.close()

    counting = create_client("scripted:y", replies=mutator_reply)
    search = SearchRun.resume(tmp_path / "run", client=counting, progress=Progress(enabled=False))
    search.run()
    trials, calls = search.store.trials(), search.store.llm_calls()
    assert search.store.pending() == []
    search.close()
    assert [t.iteration for t in trials if t.iteration > 0] == list(range(1, 13))
    complete = [t.arch_id for t in trials if t.state.value == "complete"]
    assert len(complete) == len(set(complete))
    # the re-asked proposal got its mutation reply from the cache (paid once)
    assert any(c["cache_hit"] and c["purpose"] == "mutate" for c in calls)


def test_resume_may_change_concurrency_and_executor(tmp_path):
    _, trials, *_ = run(tmp_path, config(iterations=2))
    search = SearchRun.resume(tmp_path / "run", overrides={"iterations": 4, "concurrency": 2, "score_cache": "none"},
                              client=create_client("scripted:z", replies=mutator_reply), progress=Progress(enabled=False))
    search.run()
    assert len([t for t in search.store.trials() if t.iteration > 0]) == 4
    search.close()


def random_log(out: Path):
    store = RunStore.open(out)
    try:
        return [t.log_record() for t in store.trials()]
    finally:
        store.close()


def test_executor_and_score_cache_flags_end_to_end(tmp_path):
    args = ["search", "--proposer", "random", "--proxy", "params", "--population", "3", "--iterations", "4",
            "--seed", "2", "--quiet"]
    cache = tmp_path / "scores.sqlite"
    assert main([*args, "--score-cache", "none", "--out", str(tmp_path / "plain")]) == 0
    assert main([*args, "--executor", "process", "--workers", "1", "--score-cache", str(cache),
                 "--out", str(tmp_path / "process")]) == 0
    assert cache.exists()
    from rznas.score_cache import ScoreCache

    with ScoreCache(cache) as scores:
        stored = sum(s.complete + s.failed for s in scores.summary())
    assert stored >= 3
    # a second run is answered from the cache and gives the same trial log
    assert main([*args, "--score-cache", str(cache), "--out", str(tmp_path / "cached")]) == 0
    assert random_log(tmp_path / "plain") == random_log(tmp_path / "process") == random_log(tmp_path / "cached")
    cached = RunStore.open(tmp_path / "cached")
    evaluate_s = [t.timings["evaluate_s"] for t in cached.trials() if t.state.value == "complete"]
    cached.close()
    assert max(evaluate_s) < 0.05  # hits: nothing was built or scored
    assert main([*args, "--executor", "nope", "--out", str(tmp_path / "bad")]) == 2
    assert main([*args, "--ray-address", "127.0.0.1:1", "--out", str(tmp_path / "bad2")]) == 2


def test_concurrent_random_proposer_with_process_workers(tmp_path):
    args = ["search", "--proposer", "random", "--proxy", "params", "--population", "4", "--iterations", "8",
            "--seed", "1", "--quiet", "--executor", "process", "--workers", "2", "--concurrency", "3",
            "--score-cache", "none", "--out", str(tmp_path / "run")]
    assert main(args) == 0
    trials = random_log(tmp_path / "run")
    assert [t["iteration"] for t in trials if t["iteration"]] == list(range(1, 9))
    complete = [t["arch_id"] for t in trials if t["state"] == "complete"]
    assert len(complete) == len(set(complete))


def test_lean_prompt_keeps_every_part_and_the_code():
    import ast

    space, proxy = get_space("nb201"), get_proxy("synflow")
    full = MutationPrompt(space, proxy)
    lean = MutationPrompt(space, proxy, PromptOptions(lean=True))
    assert len(lean.system) < 0.9 * len(full.system)
    for heading in ("## Search space (code level)", "## Zero-cost proxy", "## Internal reflection", "## Mutation rules"):
        assert heading in lean.system
    code = lean.system.split("## Zero-cost proxy", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    tree = ast.parse(code)
    assert "compute" in {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert '"""' not in code
