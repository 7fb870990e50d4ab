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
