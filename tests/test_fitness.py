"""Fitness: ensemble names, the reference CDF, aggregation, caching, and search == `rznas score`."""
from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
from scipy import stats

import rznas
from rznas import ConfigError, UnknownName
from rznas.cli import main
from rznas.data.probe import gaussian_probe
from rznas.fitness import (
    ENSEMBLES,
    ComponentReference,
    EnsembleFitness,
    EnsembleSpec,
    ProxyFitness,
    ReferenceSpec,
    architecture_scorer,
    component_names,
    ensemble_spec,
    make_fitness,
    score_reference,
)
from rznas.fitness.aliases import AZ_NAS_COMPONENTS
from rznas.proxies import PROXIES, ProxyResult
from rznas.score_cache import ReferenceCache, ScoreCache
from rznas.search import Evaluator, TrialState
from rznas.search.config import SearchConfig
from rznas.search.executors import EvaluatorSpec, ProbeSpec
from rznas.search.progress import Progress
from rznas.search.runner import SearchRun
from rznas.spaces import get_space

TINY = get_space("nb201", channels=4, cells_per_stage=1)


@pytest.fixture(scope="module")
def probe():
    return gaussian_probe(batch_size=4, chunks=2, resolution=16, num_classes=10, seed=3)


# --- names ----------------------------------------------------------------------------------


def test_plus_names_expand_to_their_components_and_single_proxies_stay_single():
    assert component_names("zico+naswot+synflow") == ("zico", "naswot", "synflow")
    assert component_names(" zico + naswot ") == ("zico", "naswot")
    assert component_names("synflow") == ("synflow",) and ensemble_spec("synflow") is None


@pytest.mark.parametrize(
    "name, error, text",
    [
        ("zico+", ConfigError, "empty component"),
        ("zico+zico", ConfigError, "twice"),
        ("zico+naswt", UnknownName, "did you mean 'naswot'"),
        ("zicoo", UnknownName, "did you mean 'zico'"),
        ("zico+az_nas", ConfigError, "itself an ensemble"),
    ],
)
def test_bad_ensemble_names_are_clear_errors(name, error, text):
    with pytest.raises(error, match=text):
        component_names(name)


def test_named_ensembles_resolve_when_their_components_exist(monkeypatch):
    monkeypatch.setitem(ENSEMBLES._items, "test_pair", EnsembleSpec("test_pair", ("params", "synflow")))
    assert component_names("test_pair") == ("params", "synflow")
    monkeypatch.setitem(ENSEMBLES._items, "test_ghost", EnsembleSpec("test_ghost", ("params", "not_a_proxy")))
    with pytest.raises(UnknownName, match="needs the proxies not_a_proxy"):
        component_names("test_ghost")


def test_az_nas_is_registered_and_usable_exactly_when_its_components_are():
    spec = ENSEMBLES.get("az_nas")
    assert spec.components == AZ_NAS_COMPONENTS and spec.aggregation == "sum_log_cdf"
    if all(name in PROXIES for name in AZ_NAS_COMPONENTS):
        assert component_names("az_nas") == AZ_NAS_COMPONENTS
    else:
        with pytest.raises(UnknownName, match="az_nas"):
            component_names("az_nas")


def test_no_name_is_both_a_proxy_and_a_named_ensemble():
    assert not set(PROXIES.names()) & set(ENSEMBLES.names())


# --- the reference CDF and the aggregation --------------------------------------------------


def test_mid_rank_cdf_is_inside_0_1_and_saturates_outside_the_reference():
    ref = ComponentReference("x", (3.0, 1.0, 2.0, 2.0))
    assert ref.values == (1.0, 2.0, 2.0, 3.0)
    assert ref.cdf(0.0) == pytest.approx(0.5 / 5) == ref.cdf(-1e9)
    assert ref.cdf(1.0) == pytest.approx(1 / 5)
    assert ref.cdf(2.0) == pytest.approx(2.5 / 5)  # the mid-rank of a tie
    assert ref.cdf(2.5) == pytest.approx(3.5 / 5)
    assert ref.cdf(9.0) == pytest.approx(4.5 / 5) == ref.cdf(1e9)


def test_with_the_sample_as_reference_the_ensemble_is_az_nas_in_sample_rank_aggregation():
    rng = np.random.default_rng(0)
    scores = {"params": rng.normal(size=50), "flops": rng.normal(size=50).round(1)}  # flops has ties
    refs = {name: ComponentReference(name, tuple(values)) for name, values in scores.items()}
    fitness = EnsembleFitness(EnsembleSpec("params+flops", ("params", "flops")), refs, ReferenceSpec(size=50))
    ours = [fitness.value_of({"params": scores["params"][i], "flops": scores["flops"][i]}) for i in range(50)]
    az_nas = sum(np.log(stats.rankdata(values) / 50) for values in scores.values())
    assert ours == pytest.approx(list(az_nas + 2 * math.log(50 / 51)))


def test_a_failed_component_fails_the_ensemble_with_its_reason():
    refs = {name: ComponentReference(name, (1.0, 2.0)) for name in ("params", "flops")}
    fitness = EnsembleFitness(EnsembleSpec("params+flops", ("params", "flops")), refs, ReferenceSpec(size=2))
    result = fitness.combine(
        {"params": ProxyResult("params", 1.5, 0.1), "flops": ProxyResult("flops", None, 0.2, "flops: boom")}
    )
    assert not result.ok and result.value is None and "flops: boom" in result.error
    assert result.components == {"params": 1.5, "flops": None}


def test_a_component_failing_on_the_whole_reference_is_a_config_error():
    def failing(arch, names):
        return {name: ProxyResult(name, None, 0.0, f"{name}: undefined") for name in names}

    with pytest.raises(ConfigError, match="succeeded on only 0 of 3"):
        make_fitness("params+flops", space=TINY, score_cell=failing, reference=ReferenceSpec(size=3))


# --- order independence, determinism, caching ------------------------------------------------


def test_ensemble_scores_do_not_depend_on_the_order_trials_arrive(probe):
    archs = [TINY.sample(random.Random(seed)) for seed in range(6)]

    def run(order):
        fitness = make_fitness(
            "params+synflow+naswot",
            space=TINY,
            score_cell=architecture_scorer(TINY, probe, seed=5, num_classes=10),
            reference=ReferenceSpec(size=6, seed=1),
        )
        evaluator = Evaluator(TINY, fitness, probe, score_seed=5)
        return {arch.id: evaluator(arch) for arch in order}

    forward = run(archs)
    backward = run(list(reversed(archs)))
    assert all(o.state is TrialState.COMPLETE for o in forward.values())
    assert {k: o.score for k, o in forward.items()} == {k: o.score for k, o in backward.items()}
    assert len({o.score for o in forward.values()}) > 1
    first = next(iter(forward.values()))
    assert {"component:params", "component:synflow", "component:naswot"} <= set(first.measurements)


def test_reference_scores_are_cached_and_reused(tmp_path, probe):
    spec = EvaluatorSpec(
        space="nb201", proxy="params+flops", probe=ProbeSpec(batch_size=2, chunks=1), reference_size=4, reference_seed=2
    )
    calls = []
    real = architecture_scorer(get_space("nb201"), spec.probe.make(), seed=0, num_classes=10)

    def counting(arch, names):
        calls.append((arch.id, tuple(names)))
        return real(arch, names)

    cells = spec.reference_spec().cells(get_space("nb201"))
    with ScoreCache(tmp_path / "scores.sqlite") as cache:
        store = ReferenceCache(cache, spec.reference_settings)
        first = score_reference(cells, ("params", "flops"), counting, store=store)
        assert len(calls) == 4 and all(names == ("params", "flops") for _, names in calls)  # one build per cell
        again = score_reference(cells, ("params", "flops"), counting, store=store)
        assert len(calls) == 4 and again == first
        assert {row.proxy for row in cache.summary()} == {"params", "flops"}
        resolved = spec.with_references(cache)
    assert len(calls) == 4  # the spec read the cached reference too
    assert dict((n, v) for n, v, _ in resolved.references) == {n: r.values for n, r in first.items()}
    assert resolved.cache_settings()["fitness"] == {
        "components": ["flops", "params"], "aggregation": "sum_log_cdf", "reference": {"size": 4, "seed": 2}
    }


def test_single_proxy_cache_keys_are_unchanged_by_the_fitness_layer():
    from rznas.score_key import FITNESS_MODULES, score_modules

    settings = EvaluatorSpec(space="nb201", proxy="synflow").cache_settings()
    assert "fitness" not in settings and settings["proxy"] == "synflow"
    assert not set(FITNESS_MODULES) & set(score_modules("nb201", "synflow"))  # no fitness code in its fingerprint
    ensemble = EvaluatorSpec(space="nb201", proxy="synflow+params").cache_settings()
    assert ensemble["fitness"]["components"] and set(FITNESS_MODULES) <= set(score_modules("nb201", "synflow+params"))
    assert isinstance(make_fitness("synflow"), ProxyFitness)


# --- a search records what `rznas score` prints --------------------------------------------


@pytest.mark.slow
def test_a_searchs_ensemble_score_equals_rznas_score(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RZNAS_CACHE_DIR", str(tmp_path / "cache"))
    name = "params+synflow+naswot"
    config = SearchConfig(
        proxy=name, proposer="random", population=3, iterations=2, seed=11, score_seed=4, batch_size=4,
        reference_size=5, reference_seed=1, data="gaussian",  # as the `rznas score --data gaussian` below
    )
    run = SearchRun.start(config, tmp_path / "run", progress=Progress(enabled=False))
    try:
        run.run()
        trials = [t for t in run.store.trials() if t.state is TrialState.COMPLETE]
    finally:
        run.close()
    assert len(trials) >= 3
    encoded = tmp_path / "archs.txt"
    encoded.write_text("\n".join(t.encoded for t in trials) + "\n")
    capsys.readouterr()
    code = main([
        "score", "--proxy", name, "--arch-file", str(encoded), "--data", "gaussian", "--batch-size", "4",
        "--seed", "4", "--reference-size", "5", "--reference-seed", "1", "--json",
    ])
    assert code == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["score"] for row in rows] == [t.score for t in trials]  # exactly, not approximately
    assert rows[0]["components"]["synflow"] == trials[0].measurements["component:synflow"]
    # the Python API builds the same fitness (same reference cells, same cache)
    api_rows = rznas.score([t.encoded for t in trials], name, data="gaussian", batch_size=4, seed=4,
                           reference_size=5, reference_seed=1)
    assert [(r.proxy, r.value) for r in api_rows] == [(name, t.score) for t in trials]
    assert api_rows[0].unit == "" and api_rows[0].components["synflow"] == rows[0]["components"]["synflow"]


def test_the_llm_prompt_shows_an_ensembles_components_and_aggregation(probe):
    from rznas.search.prompt import MutationPrompt, proxy_source

    fitness = make_fitness(
        "params+naswot", space=TINY, score_cell=architecture_scorer(TINY, probe, seed=0, num_classes=10),
        reference=ReferenceSpec(size=3),
    )
    source = proxy_source(fitness)
    assert "class Params" in source or "params" in source.lower()
    assert "class NASWOT" in source or "naswot" in source.lower()
    assert "def cdf" in source and "def sum_log_cdf" in source
    prompt = MutationPrompt(TINY, fitness)
    assert "params+naswot" in prompt.system and "mid-rank CDF" in prompt.system


def test_cache_precompute_and_list_take_ensembles(tmp_path, capsys):
    cache = tmp_path / "cache"
    code = main([
        "cache", "precompute", "--proxy", "params+flops", "--limit", "2", "--executor", "inline",
        "--reference-size", "3", "--batch-size", "2", "--cache", str(cache) + "/", "--quiet",
    ])
    assert code == 0
    assert "2/15625 nb201 cells stored for proxy params+flops" in capsys.readouterr().out
    with ScoreCache(cache / "scores.sqlite") as store:
        counts = {(row.proxy, row.complete) for row in store.summary()}
    assert counts == {("params", 3), ("flops", 3), ("params+flops", 2)}  # reference per component + the cells
    assert main(["list", "proxies"]) == 0
    listing = capsys.readouterr().out
    assert "zc_trio      flops+jacob_cov+synflow (sum_log_cdf)" in listing and "az_nas" in listing
