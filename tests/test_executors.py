"""Evaluation executors: inline, process pool and Ray give the search's outcomes; a killed
worker loses no trial; a task that keeps killing workers ends as a failed Outcome."""
from __future__ import annotations

import os
import pickle
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from rznas.arch import Architecture
from rznas.data.probe import make_probe
from rznas.errors import ConfigError, UnknownName
from rznas.proxies import get_proxy
from rznas.score_cache import ScoreCache
from rznas.search.budget import ArchBudget
from rznas.search.config import SearchConfig
from rznas.search.evaluator import Evaluator
from rznas.search.executors import (
    EXECUTORS,
    CachingExecutor,
    EvaluatorSpec,
    InlineExecutor,
    ProbeSpec,
    ProcessExecutor,
    create_executor,
    import_ray,
    is_worker_lost,
)
from rznas.trial import Outcome, TrialState
from rznas.spaces import get_space

SPACE = get_space("nb201")


def sample(n: int, seed: int = 0) -> list[Architecture]:
    rng = random.Random(seed)
    return [SPACE.sample(rng) for _ in range(n)]


def spec_for(proxy: str) -> EvaluatorSpec:
    return EvaluatorSpec("nb201", proxy, ProbeSpec(batch_size=4, chunks=1, seed=0), score_seed=0)


def inline_outcomes(spec: EvaluatorSpec, archs: list[Architecture]) -> dict[str, Outcome]:
    with InlineExecutor(spec) as executor:
        return {arch.id: outcome for arch, outcome in executor.map_unordered(archs)}


# --- picklable evaluator factories that misbehave on purpose (rebuilt in each worker) ---


@dataclass(frozen=True)
class CrashOnce:
    """The first task of the whole test kills its worker (os._exit); later ones score normally."""

    spec: EvaluatorSpec
    marker: str

    def build(self):
        evaluator = self.spec.build()

        def evaluate(arch: Architecture) -> Outcome:
            try:
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return evaluator(arch)
            os.close(fd)
            os._exit(17)

        return evaluate


@dataclass(frozen=True)
class CrashOn:
    """Kills its worker whenever it evaluates ``arch_id``; counts its attempts in ``log``."""

    spec: EvaluatorSpec
    arch_id: str
    log: str

    def build(self):
        evaluator = self.spec.build()

        def evaluate(arch: Architecture) -> Outcome:
            if arch.id == self.arch_id:
                with open(self.log, "a") as f:
                    f.write("x")
                os._exit(9)
            return evaluator(arch)

        return evaluate


@dataclass(frozen=True)
class Raises:
    """An evaluator with a bug: the exception reaches the caller through the future."""

    def build(self):
        def evaluate(arch: Architecture) -> Outcome:
            raise KeyError("bug in the evaluator")

        return evaluate


# --- the spec --------------------------------------------------------------------------


def test_spec_is_plain_picklable_and_rebuilds_the_search_evaluator() -> None:
    config = SearchConfig(proxy="naswot", data="gaussian", batch_size=4, probe_chunks=1, seed=1, score_seed=3, max_params=5e5)
    spec = EvaluatorSpec.from_config(config)
    assert pickle.loads(pickle.dumps(spec)) == spec and hash(spec) == hash(pickle.loads(pickle.dumps(spec)))
    # the evaluator SearchRun builds from the same config
    probe = make_probe(config.data, data_dir=config.data_dir, batch_size=4, chunks=1, seed=3)
    reference = Evaluator(
        SPACE, get_proxy("naswot"), probe, score_seed=3, budget=ArchBudget(max_params=5e5, resolution=probe.resolution)
    )
    rebuilt = spec.build()
    for arch in sample(4, seed=5):
        assert rebuilt(arch) == reference(arch)


def test_registry_and_flag_errors() -> None:
    assert set(EXECUTORS.names()) >= {"inline", "process", "ray"}
    with pytest.raises(UnknownName, match="did you mean 'process'"):
        create_executor("proces", spec_for("params"))
    with pytest.raises(ConfigError, match="--ray-address needs --executor ray"):
        create_executor("process", spec_for("params"), ray_address="127.0.0.1:6379")
    with pytest.raises(ConfigError, match="--workers"):
        ProcessExecutor(spec_for("params"), workers=0)
    with pytest.raises(ConfigError, match="not fork"):
        ProcessExecutor(spec_for("params"), workers=1, context="fork")


def test_missing_ray_is_a_clear_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    with pytest.raises(ConfigError, match=r"pip install 'rznas\[ray\]'"):
        import_ray()
    with pytest.raises(ConfigError, match="needs Ray"):
        create_executor("ray", spec_for("params"))


def test_inline_map_unordered_and_errors_travel_in_the_future() -> None:
    archs = sample(5)
    results = list(InlineExecutor(spec_for("params")).map_unordered(archs, window=2))
    assert sorted(a.id for a, _ in results) == sorted(a.id for a in archs)
    assert all(o.state is TrialState.COMPLETE for _, o in results)
    future = InlineExecutor(Raises()).submit(archs[0])
    with pytest.raises(KeyError, match="bug in the evaluator"):
        future.result()


def test_caching_executor_answers_hits_without_the_inner_executor(tmp_path: Path) -> None:
    archs = sample(4)
    with ScoreCache(tmp_path / "s.sqlite") as cache:
        first = create_executor("inline", spec_for("params"), cache=cache)
        assert isinstance(first, CachingExecutor)
        a = dict((x.id, o) for x, o in first.map_unordered(archs))
        calls: list[str] = []

        def never(arch: Architecture) -> Outcome:
            calls.append(arch.id)
            raise AssertionError("a cached cell was scored again")

        again = CachingExecutor(InlineExecutor(evaluator=never), cache, spec_for("params").cache_settings())
        b = dict((x.id, o) for x, o in again.map_unordered(archs))
        assert b == a and calls == [] and again.hits == len(archs)


# --- the local process pool --------------------------------------------------------------


@pytest.mark.slow
def test_process_pool_with_two_workers_matches_inline() -> None:
    archs = sample(6, seed=1)
    for proxy in ("params", "flops", "naswot"):
        spec = spec_for(proxy)
        expected = inline_outcomes(spec, archs)
        with ProcessExecutor(spec, workers=2, gpus=0) as executor:
            got = {arch.id: outcome for arch, outcome in executor.map_unordered(archs)}
            futures = [executor.submit(a) for a in archs[:2]]  # plain submit too
            assert [f.result(timeout=120) for f in futures] == [expected[a.id] for a in archs[:2]]
        assert got == expected, proxy
        assert executor.restarts == 0


@pytest.mark.slow
def test_killed_worker_loses_no_trial(tmp_path: Path) -> None:
    archs = sample(6, seed=2)
    spec = spec_for("params")
    expected = inline_outcomes(spec, archs)
    marker = tmp_path / "crashed"
    with ProcessExecutor(CrashOnce(spec, str(marker)), workers=2, gpus=0, max_retries=2) as executor:
        got = {arch.id: outcome for arch, outcome in executor.map_unordered(archs)}
    assert marker.exists(), "no worker was killed: the test did not test anything"
    assert executor.restarts >= 1
    assert got == expected  # every trial came back, with the inline score


@pytest.mark.slow
def test_task_that_keeps_killing_workers_becomes_a_failed_outcome(tmp_path: Path) -> None:
    archs = sample(4, seed=3)
    bad = archs[1]
    log = tmp_path / "attempts"
    spec = spec_for("params")
    expected = inline_outcomes(spec, archs)
    start = time.monotonic()
    with ProcessExecutor(CrashOn(spec, bad.id, str(log)), workers=2, gpus=0, max_retries=1) as executor:
        got = {arch.id: outcome for arch, outcome in executor.map_unordered(archs)}
    assert time.monotonic() - start < 300  # bounded, no hang
    lost = got.pop(bad.id)
    assert lost.state is TrialState.PROXY_ERROR and is_worker_lost(lost)
    assert "died 2 time(s)" in lost.reason
    assert got == {k: v for k, v in expected.items() if k != bad.id}  # innocent tasks unharmed
    assert len(log.read_text()) == 3  # once among others, then twice alone (max_retries=1)


def test_process_pool_reports_evaluator_exceptions(tmp_path: Path) -> None:
    with ProcessExecutor(Raises(), workers=1, gpus=0) as executor:
        with pytest.raises(KeyError, match="bug in the evaluator"):
            executor.submit(sample(1)[0]).result(timeout=120)
        assert executor.restarts == 0


# --- Ray ---------------------------------------------------------------------------------


def _ray():
    try:
        import ray  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("ray is not installed; it is in the test extra and must run in CI")
        pytest.skip("ray is not installed (pip install 'rznas[ray]')")
    return ray


@pytest.fixture(scope="module")
def ray_executor_factory():
    """Starts a private local 2-CPU Ray cluster on 127.0.0.1 (dashboard and usage stats off)."""
    ray = _ray()
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["RAY_AUTH_MODE"] = "disabled"  # loopback-only test cluster
    root = Path(__file__).resolve().parents[1]
    ray.init(
        num_cpus=2,
        num_gpus=0,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
        runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}},
    )
    yield lambda factory, **kw: create_executor("ray", factory, workers=2, **kw)
    ray.shutdown()


@pytest.mark.slow
def test_ray_local_cluster_evaluates_a_batch(ray_executor_factory) -> None:
    archs = sample(6, seed=4)
    spec = spec_for("naswot")
    expected = inline_outcomes(spec, archs)
    executor = ray_executor_factory(spec)
    got = {arch.id: outcome for arch, outcome in executor.map_unordered(archs)}
    executor.close()  # a cluster it did not start stays up
    assert got == expected


@pytest.mark.slow
def test_ray_retries_a_killed_worker(ray_executor_factory, tmp_path: Path) -> None:
    archs = sample(4, seed=5)
    spec = spec_for("params")
    expected = inline_outcomes(spec, archs)
    marker = tmp_path / "crashed"
    executor = ray_executor_factory(CrashOnce(spec, str(marker)), max_retries=2)
    got = {arch.id: outcome for arch, outcome in executor.map_unordered(archs)}
    assert marker.exists()
    assert got == expected
