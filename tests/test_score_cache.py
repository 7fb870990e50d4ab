"""The persistent proxy-score cache: identical hits without work, key separation, failures,
concurrent writers from two processes, clear errors, and the `rznas cache` command."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rznas.arch import Architecture
from rznas.cli import main
from rznas.errors import ConfigError
from rznas.score_cache import CachedEvaluator, ScoreCache, context_key, default_cache_path, resolve_cache_path
from rznas.search.executors import EvaluatorSpec, ProbeSpec
from rznas.trial import Outcome, TrialState
from rznas.spaces import get_space

SPACE = get_space("nb201")
ARCHS = [
    SPACE.make(["nor_conv_3x3", "skip_connect", "avg_pool_3x3", "none", "nor_conv_1x1", "skip_connect"]),
    SPACE.make(["skip_connect"] * 6),
    SPACE.make(["nor_conv_1x1", "nor_conv_3x3", "none", "avg_pool_3x3", "skip_connect", "nor_conv_3x3"]),
]
SPEC = EvaluatorSpec("nb201", "params", ProbeSpec(batch_size=4, chunks=1), score_seed=0)


class Counting:
    """An evaluator that counts its calls and returns awkward floats (exact round trip matters)."""

    def __init__(self, fail: set[str] = frozenset()):
        self.calls: list[str] = []
        self.fail = fail

    def __call__(self, arch: Architecture) -> Outcome:
        self.calls.append(arch.id)
        if arch.id in self.fail:
            return Outcome(TrialState.PROXY_ERROR, arch, reason="naswot produced a non-finite score (nan)")
        value = 0.1 + 0.2 + int(arch.id[:6], 16) * 1e-17  # not representable "nicely"
        return Outcome(TrialState.COMPLETE, arch, score=value, measurements={"params": 1234.5})


@pytest.fixture
def cache(tmp_path: Path) -> ScoreCache:
    with ScoreCache(tmp_path / "scores.sqlite") as store:
        yield store


def test_hits_return_identical_outcomes_and_skip_the_work(cache: ScoreCache) -> None:
    inner = Counting()
    cached = CachedEvaluator(inner, cache, SPEC.cache_settings())
    first = [cached(a) for a in ARCHS]
    assert len(inner.calls) == 3 and cached.misses == 3
    again = [cached(a) for a in ARCHS]
    assert len(inner.calls) == 3, "a hit must not call the evaluator"
    assert cached.hits == 3
    assert again == first  # state, arch, score (bit-identical), reason, measurements
    for a, b in zip(first, again):
        assert a.score is not None and a.score.hex() == b.score.hex()
    # a new instance over the same file (a later run) hits as well
    other = Counting()
    assert [CachedEvaluator(other, ScoreCache(cache.path), SPEC.cache_settings())(a) for a in ARCHS] == first
    assert other.calls == []


def test_real_evaluator_scores_are_reused_exactly(cache: ScoreCache) -> None:
    evaluator = SPEC.with_device("cpu").build()
    calls: list[str] = []

    def counted(arch: Architecture) -> Outcome:
        calls.append(arch.id)
        return evaluator(arch)

    cached = CachedEvaluator(counted, cache, SPEC.cache_settings())
    first = cached(ARCHS[0])
    assert first.state is TrialState.COMPLETE
    assert cached(ARCHS[0]) == first == evaluator(ARCHS[0])
    assert calls == [ARCHS[0].id]


def test_failures_are_stored_with_their_reason(cache: ScoreCache) -> None:
    inner = Counting(fail={ARCHS[1].id})
    cached = CachedEvaluator(inner, cache, SPEC.cache_settings())
    bad = cached(ARCHS[1])
    assert bad.state is TrialState.PROXY_ERROR
    again = cached(ARCHS[1])
    assert again == bad and "non-finite" in again.reason
    assert inner.calls == [ARCHS[1].id]
    (summary,) = cache.summary()
    assert (summary.complete, summary.failed) == (0, 1)


def test_invalid_outcomes_are_not_stored(cache: ScoreCache) -> None:
    context = cache.context(SPEC.cache_settings())
    stray = Architecture("nb201", ("conv_9x9",) * 6)
    assert not cache.put(context, Outcome(TrialState.INVALID, stray, reason="not in the space"))
    assert cache.get(context, stray) is None


@pytest.mark.parametrize(
    "changed",
    [
        EvaluatorSpec("nb201", "params", ProbeSpec(batch_size=4, chunks=1), score_seed=1),  # seed
        EvaluatorSpec("nb201", "params", ProbeSpec(batch_size=8, chunks=1), score_seed=0),  # probe batch size
        EvaluatorSpec("nb201", "params", ProbeSpec(dataset="cifar10", batch_size=4, chunks=1), score_seed=0),  # data
        EvaluatorSpec("nb201", "params", ProbeSpec(batch_size=4, chunks=1, seed=3), score_seed=0),  # probe seed
        EvaluatorSpec("nb201", "flops", ProbeSpec(batch_size=4, chunks=1), score_seed=0),  # proxy
        EvaluatorSpec("nb201", "params", ProbeSpec(batch_size=4, chunks=1), score_seed=0, max_params=1e6),  # budget
        EvaluatorSpec("nb201", "params", ProbeSpec(batch_size=4, chunks=1), space_options=(("channels", 8),)),
    ],
    ids=["seed", "batch", "dataset", "probe-seed", "proxy", "budget", "space-options"],
)
def test_different_settings_miss(cache: ScoreCache, changed: EvaluatorSpec) -> None:
    inner = Counting()
    CachedEvaluator(inner, cache, SPEC.cache_settings())(ARCHS[0])
    assert context_key(changed.cache_settings()) != context_key(SPEC.cache_settings())
    other = CachedEvaluator(inner, cache, changed.cache_settings())
    other(ARCHS[0])
    assert other.misses == 1 and len(inner.calls) == 2


def test_data_folder_is_not_part_of_the_key() -> None:
    a = EvaluatorSpec("nb201", "params", ProbeSpec(dataset="cifar10", data_dir="/a"))
    b = EvaluatorSpec("nb201", "params", ProbeSpec(dataset="cifar10", data_dir="/b"))
    assert a.cache_settings() == b.cache_settings()


WRITER = textwrap.dedent(
    """
    import sys
    from rznas.score_cache import ScoreCache
    from rznas.trial import Outcome, TrialState
    from rznas.arch import Architecture
    path, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    cache = ScoreCache(path, timeout=60)
    ctx = cache.context({"space": "nb201", "proxy": "params", "k": 1})
    sys.stdout.write("ready\\n"); sys.stdout.flush(); sys.stdin.readline()  # start together
    for i in range(n):
        shared = Architecture("nb201", ("shared", i))
        own = Architecture("nb201", (tag, i))
        cache.put(ctx, Outcome(TrialState.COMPLETE, shared, score=float(i)))
        cache.put(ctx, Outcome(TrialState.COMPLETE, own, score=i + 0.5))
    cache.close()
    """
)


def test_two_processes_write_concurrently(tmp_path: Path) -> None:
    path = tmp_path / "scores.sqlite"
    n = 150
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), tag, str(n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("a", "b")
    ]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    for proc in procs:
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    with ScoreCache(path) as cache:
        ctx = cache.context({"space": "nb201", "proxy": "params", "k": 1})
        assert len(cache.known_ids(ctx)) == 3 * n  # n shared + n per writer, nothing lost
        for i in (0, n - 1):
            assert cache.get(ctx, Architecture("nb201", ("a", i))).score == i + 0.5
            assert cache.get(ctx, Architecture("nb201", ("shared", i))).score == float(i)
        assert len(cache.summary()) == 1  # both writers agreed on one context row


def test_unwritable_location_is_a_clear_config_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="cannot use the score cache.*RZNAS_CACHE_DIR"):
        ScoreCache(blocker / "sub" / "scores.sqlite")
    with pytest.raises(ConfigError, match="no score cache"):
        ScoreCache(tmp_path / "missing.sqlite", create=False)


def test_location_from_flag_env_or_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RZNAS_CACHE_DIR", str(tmp_path / "env"))
    assert default_cache_path() == tmp_path / "env" / "scores.sqlite"
    assert resolve_cache_path(None) == tmp_path / "env" / "scores.sqlite"
    assert resolve_cache_path(tmp_path) == tmp_path / "scores.sqlite"  # a folder
    assert resolve_cache_path(tmp_path / "x.sqlite") == tmp_path / "x.sqlite"
    monkeypatch.delenv("RZNAS_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_path() == tmp_path / "home" / ".cache" / "rznas" / "scores.sqlite"


def test_cache_command_precompute_info_export_clear(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RZNAS_CACHE_DIR", str(tmp_path))
    assert main(["cache", "info"]) == 0
    assert "no score cache" in capsys.readouterr().out
    base = ["cache", "precompute", "--proxy", "params", "--executor", "inline", "--batch-size", "4", "--quiet"]
    assert main(base + ["--limit", "3"]) == 0
    assert "3/15625 nb201 cells stored" in capsys.readouterr().out
    assert main(base + ["--limit", "2"]) == 0  # resumes: skips the 3 stored cells
    assert "5/15625 nb201 cells stored" in capsys.readouterr().out
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert "params" in out and " 5 " in out and "on disk" in out
    target = tmp_path / "rows.jsonl"
    assert main(["cache", "export", "--out", str(target)]) == 0
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(rows) == 5 and all(r["state"] == "complete" and r["proxy"] == "params" for r in rows)
    # the stored score equals what the search's evaluator computes for that cell
    arch = Architecture.from_dict(rows[0]["arch"])
    spec = EvaluatorSpec("nb201", "params", ProbeSpec(batch_size=4, chunks=2))
    assert spec.build()(arch).score == rows[0]["score"]
    assert main(["cache", "clear", "--proxy", "flops"]) == 0
    assert "deleted 0" in capsys.readouterr().out
    assert main(["cache", "clear"]) == 0
    assert "deleted 5" in capsys.readouterr().out


def test_precompute_rejects_a_space_it_cannot_enumerate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RZNAS_CACHE_DIR", str(tmp_path))
    assert main(["cache", "precompute", "--space", "darts", "--proxy", "params", "--executor", "inline"]) == 2
    assert not (tmp_path / "scores.sqlite").exists()  # refused before the cache was opened


# --- the key: what decides a score (rznas.score_key) --------------------------------------


def test_key_holds_versions_device_and_a_fingerprint_of_the_score_code() -> None:
    import numpy
    import torch

    import rznas

    settings = SPEC.cache_settings()
    code = settings["code"]
    assert code["rznas"] == rznas.__version__ and code["torch"] == torch.__version__
    assert code["numpy"] == numpy.__version__ and len(code["fingerprint"]) == 64
    assert settings["device"] == "cpu" and "proxy_version" not in settings
    cuda = SPEC.with_device("cuda:0").cache_settings()
    assert cuda["device"] == "cuda" and context_key(cuda) != context_key(settings)


def test_fingerprint_covers_the_score_code_and_nothing_else() -> None:
    from rznas.score_key import CORE_MODULES, score_modules

    modules = score_modules("zen_resnet", "maedet")
    assert set(CORE_MODULES) <= set(modules)
    # the space's and proxy's own modules and what they use inside rznas.spaces / rznas.proxies
    for name in ("rznas.spaces.zen_resnet", "rznas.spaces.macro_space", "rznas.spaces.macro_blocks",
                 "rznas.spaces.zen_notation", "rznas.spaces.base", "rznas.proxies.maedet", "rznas.proxies.zen"):
        assert name in modules
    # not other proxies or spaces, nor the LLM, prompt, runner, executors or stores
    for name in ("rznas.proxies.synflow", "rznas.spaces.nb201", "rznas.spaces.darts", "rznas.llm.parse",
                 "rznas.search.prompt", "rznas.search.runner", "rznas.search.executors", "rznas.score_cache"):
        assert name not in modules
    assert "rznas.spaces.nb201" in score_modules("nb201", "zico") and "rznas.proxies.zico" in score_modules("nb201", "zico")


def _edited(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    """Pretend the source of ``module`` was edited (a fix in a proxy, say)."""
    from rznas import score_key

    original = score_key.module_source
    monkeypatch.setattr(score_key, "module_source", lambda name: original(name) + (b"\n# fix" if name == module else b""))
    score_key.code_fingerprint.cache_clear()


def test_editing_the_proxy_makes_old_scores_stale_and_unread(cache: ScoreCache, monkeypatch: pytest.MonkeyPatch) -> None:
    from rznas import score_key

    before = SPEC.cache_settings()
    cached = CachedEvaluator(Counting(), cache, before)
    cached(ARCHS[0])
    assert score_key.stale_reason(before) is None
    try:
        _edited(monkeypatch, "rznas.llm.parse")  # unrelated code: the key stays
        assert SPEC.cache_settings() == before
        _edited(monkeypatch, "rznas.proxies.size")  # the params proxy's module
        after = SPEC.cache_settings()
        assert context_key(after) != context_key(before)
        assert score_key.stale_reason(before) == "score code changed"
        again = CachedEvaluator(Counting(), cache, after)
        again(ARCHS[0])
        assert again.misses == 1, "a score computed by the old code must not be served"
    finally:
        monkeypatch.undo()
        score_key.code_fingerprint.cache_clear()


def test_other_versions_make_a_context_stale() -> None:
    from rznas.score_key import stale_reason

    settings = SPEC.cache_settings()
    older = dict(settings, code=dict(settings["code"], torch="1.0.0"))
    assert stale_reason(older) == f"torch 1.0.0 -> {settings['code']['torch']}"
    assert stale_reason({k: v for k, v in settings.items() if k != "code"}) == "written without a code identity"
    assert "evaluation version" in stale_reason(dict(settings, evaluation="1"))
    assert "cannot fingerprint" in stale_reason(dict(settings, proxy="gone"))


# --- what is cached: deterministic outcomes only ---------------------------------------------


def test_transient_failures_are_never_stored(cache: ScoreCache) -> None:
    context = cache.context(SPEC.cache_settings())
    oom = Outcome(TrialState.PROXY_ERROR, ARCHS[0], reason="zico: OutOfMemoryError (CUDA out of memory)", transient=True)
    assert not cache.put(context, oom) and cache.get(context, ARCHS[0]) is None
    nan = Outcome(TrialState.PROXY_ERROR, ARCHS[1], reason="zico produced a non-finite score (nan)")
    assert cache.put(context, nan) and cache.get(context, ARCHS[1]) == nan


@pytest.mark.parametrize(
    "error",
    ["cuda_oom", "cpu_oom", "memory_error", "cuda_fault"],
)
def test_the_evaluator_marks_machine_failures_transient(error: str) -> None:
    import torch

    from rznas.proxies.base import PROXIES, Proxy

    raised = {
        "cuda_oom": torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        "cpu_oom": RuntimeError("[enforce fail at alloc_cpu.cpp:114] DefaultCPUAllocator: can't allocate memory"),
        "memory_error": MemoryError(),
        "cuda_fault": RuntimeError("CUDA error: an illegal memory access was encountered"),
    }[error]

    class Exhausting(Proxy):
        name = "exhausting"

        def compute(self, ctx):  # noqa: ANN001
            raise raised

    PROXIES.register("exhausting")(Exhausting)
    try:
        evaluator = EvaluatorSpec("nb201", "exhausting", ProbeSpec(batch_size=4, chunks=1)).build()
        outcome = evaluator(ARCHS[0])
    finally:
        PROXIES._items.pop("exhausting")  # type: ignore[attr-defined]
    assert outcome.state is TrialState.PROXY_ERROR and outcome.transient, outcome


def test_a_deterministic_proxy_failure_is_not_transient() -> None:
    spec = EvaluatorSpec("nb201", "synflow", ProbeSpec(batch_size=4, chunks=1))
    dead = SPACE.make(["none"] * 6)  # no path from input to output: synflow is exactly zero
    outcome = spec.build()(dead)
    assert outcome.state is TrialState.PROXY_ERROR and not outcome.transient


# --- rznas cache info / clear --stale ----------------------------------------------------------


def test_cache_info_marks_stale_contexts_and_clear_stale_deletes_only_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RZNAS_CACHE_DIR", str(tmp_path))
    current = SPEC.cache_settings()
    old = dict(current, code=dict(current["code"], rznas="0.0.1"))
    with ScoreCache(tmp_path / "scores.sqlite") as cache:
        for settings, archs in ((current, ARCHS[:2]), (old, ARCHS)):
            evaluator = CachedEvaluator(Counting(), cache, settings)
            for arch in archs:
                evaluator(arch)
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert out.count("STALE") == 1 and out.count("current") == 1
    assert f"stale: rznas 0.0.1 -> {current['code']['rznas']}" in out
    assert "rznas cache clear --stale" in out
    assert main(["cache", "clear", "--stale"]) == 0
    assert "deleted 3" in capsys.readouterr().out
    with ScoreCache(tmp_path / "scores.sqlite") as cache:
        (left,) = cache.summary()
        assert left.stale is None and left.complete == 2
    assert main(["cache", "clear", "--stale"]) == 0
    assert "deleted 0" in capsys.readouterr().out


# --- a cache that cannot write loses nothing ------------------------------------------------


def test_a_cache_write_failure_keeps_the_result_and_warns_once(cache: ScoreCache) -> None:
    from rznas.search.executors import CachingExecutor, InlineExecutor

    def broken_put(context, outcome):  # noqa: ANN001
        raise ConfigError("cannot use the score cache: disk I/O error")

    cache.put = broken_put  # type: ignore[method-assign]
    warnings: list[str] = []
    executor = CachingExecutor(InlineExecutor(evaluator=Counting()), cache, SPEC.cache_settings(), notify=warnings.append)
    outcomes = [executor.submit(arch).result(timeout=10) for arch in ARCHS]
    assert [o.state for o in outcomes] == [TrialState.COMPLETE] * 3
    assert executor.store_failures == 3
    assert len(warnings) == 1 and "could not store" in warnings[0] and "disk I/O error" in warnings[0]
    executor.close()
    assert len(warnings) == 2 and "3 results" in warnings[1]


def test_the_cache_does_not_import_the_search_package() -> None:
    """Data flows one way: search uses the cache and the store; they (and the key, the run reader)
    never import rznas.search."""
    script = "import sys, rznas.score_cache, rznas.store, rznas.run_reader; print(sorted(m for m in sys.modules if m.startswith('rznas.search')))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
