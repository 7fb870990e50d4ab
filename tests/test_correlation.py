"""Correlation harness: sampling, seeding, failure policy, JSONL resume, summary and report."""
from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

from rznas import ConfigError, DataError, UnknownName
from rznas.benchmarks import correlation as corr
from rznas.benchmarks.correlation import (
    CorrelationConfig,
    ResultLog,
    arch_seed,
    choose_probe_data,
    prepare_probe,
    rank_correlations,
    run_correlation,
    sample_architectures,
    summarize,
)
from rznas.benchmarks.nb201_table import Accuracy, CompactTable, GroundTruth, NB201Dataset
from rznas.data.probe import gaussian_probe
from rznas.proxies.size import count_parameters
from rznas.spaces import get_space

from .conftest import require_shared

SPACE = get_space("nb201")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run faster on one thread, especially on a shared, loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class ParamsTruth(GroundTruth):
    """Fake ground truth: 'test accuracy' = parameter count, so the params proxy has rho 1."""

    source = "fake:params"

    def __init__(self) -> None:
        self.lookups = 0

    def lookup_string(self, arch: str, dataset: NB201Dataset) -> Accuracy:
        self.lookups += 1
        params = count_parameters(SPACE.build(SPACE.decode(arch), num_classes=dataset.num_classes))
        return Accuracy(val_acc=params / 2, test_acc=float(params))


# --- sampling and seeding ---------------------------------------------------------------------


def test_sample_is_distinct_seeded_and_prefix_stable():
    a = sample_architectures(SPACE, 50, seed=3)
    assert len(set(a)) == 50
    assert a == sample_architectures(SPACE, 50, seed=3)
    assert a[:10] == sample_architectures(SPACE, 10, seed=3)
    assert a != sample_architectures(SPACE, 50, seed=4)
    with pytest.raises(ConfigError, match="15625"):
        sample_architectures(SPACE, 15_626, seed=0)
    with pytest.raises(ConfigError):
        sample_architectures(SPACE, 0, seed=0)


def test_arch_seed_depends_on_seed_and_arch_only():
    x, y = sample_architectures(SPACE, 2, seed=0)
    assert arch_seed(0, x) == arch_seed(0, x)
    assert len({arch_seed(0, x), arch_seed(1, x), arch_seed(0, y)}) == 3


def test_building_under_the_arch_seed_is_reproducible_and_leaves_global_rng_alone():
    arch = sample_architectures(SPACE, 1, seed=0)[0]
    probe = gaussian_probe(batch_size=4, chunks=1, seed=0)
    proxies = [corr.get_proxy("grad_norm")]
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    one = corr.score_architecture(SPACE, arch, probe, proxies, seed=7, num_classes=10)
    after = torch.rand(1)
    two = corr.score_architecture(SPACE, arch, probe, proxies, seed=7, num_classes=10)
    assert torch.equal(before, after)
    assert one.results["grad_norm"].value == two.results["grad_norm"].value
    assert one.seconds >= one.build_seconds > 0


# --- correlation and failure policy --------------------------------------------------------------


def test_rank_correlations_perfect_and_reversed():
    up = rank_correlations([1.0, 2.0, 3.0, 4.0], [10, 20, 30, 40])
    down = rank_correlations([4.0, 3.0, 2.0, 1.0], [10, 20, 30, 40])
    for policy in ("failures_lowest", "successes_only"):
        assert up["kendall_tau"][policy] == pytest.approx(1.0)
        assert up["spearman_rho"][policy] == pytest.approx(1.0)
        assert down["spearman_rho"][policy] == pytest.approx(-1.0)
    assert up["failed"] == 0 and up["n"] == 4


def test_failures_rank_lowest_or_are_dropped():
    scores = [None, 1.0, 2.0, 3.0, None]
    targets = [50.0, 10.0, 20.0, 30.0, 5.0]
    result = rank_correlations(scores, targets)
    assert result["failed"] == 2
    assert result["spearman_rho"]["successes_only"] == pytest.approx(1.0)
    expected = stats.spearmanr([-1, 1, 2, 3, -1], targets).statistic  # failures tied at the bottom
    assert result["spearman_rho"]["failures_lowest"] == pytest.approx(expected)
    assert result["kendall_tau"]["failures_lowest"] == pytest.approx(stats.kendalltau([-1, 1, 2, 3, -1], targets).statistic)
    everything_failed = rank_correlations([None, None], [1.0, 2.0])
    assert everything_failed["spearman_rho"] == {"failures_lowest": None, "successes_only": None}
    constant = rank_correlations([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])
    assert constant["kendall_tau"]["successes_only"] is None


def test_summary_reports_failures_and_timing():
    config = CorrelationConfig(dataset="cifar10", proxies=("a", "b"), samples=3, probe_data="gaussian")
    records = [
        {"scores": {"a": 1.0, "b": None}, "errors": {"b": "b: synflow-like failure"}, "proxy_seconds": {"a": 1, "b": 3},
         "seconds": 4.0, "test_acc": 1.0},
        {"scores": {"a": 2.0, "b": 5.0}, "errors": {}, "proxy_seconds": {"a": 1, "b": 1}, "seconds": 2.0, "test_acc": 2.0},
        {"scores": {"a": 3.0, "b": 6.0}, "errors": {}, "proxy_seconds": {"a": 1, "b": 2}, "seconds": 3.0, "test_acc": 3.0},
    ]
    summary = summarize(config, records, probe=gaussian_probe(batch_size=2), ground_truth=ParamsTruth())
    assert summary["results"]["b"]["failed"] == 1
    assert summary["results"]["b"]["failure_example"] == "b: synflow-like failure"
    assert summary["results"]["b"]["seconds_per_arch"] == pytest.approx(2.0)
    assert summary["results"]["a"]["failed"] == 0
    assert summary["seconds_per_arch"]["mean"] == pytest.approx(3.0)
    assert summary["environment"]["torch"] == torch.__version__
    assert "ranked" in summary["failure_policy"] or "rank" in summary["failure_policy"]
    markdown = corr.render_markdown(summary)
    assert "| b | 1.000 |" in markdown and "1/3" in markdown and summary["command"] in markdown


# --- the JSONL log ----------------------------------------------------------------------------


def test_result_log_resumes_and_drops_a_torn_last_line(tmp_path):
    path = tmp_path / "log.jsonl"
    log = ResultLog(path, {"k": 1})
    assert log.open() == {}
    log.append({"type": "arch", "arch_id": "x", "v": 1})
    with open(path, "a") as handle:
        handle.write('{"type": "arch", "arch_id": "y", "v"')  # crash mid-write
    records = ResultLog(path, {"k": 1}).open()
    assert list(records) == ["x"]
    assert path.read_text().endswith('"v": 1}\n')
    with pytest.raises(ConfigError, match="other settings"):
        ResultLog(path, {"k": 2}).open()
    path.write_text('{"type": "header", "identity": {"k": 1}}\nbroken\n{"type": "arch", "arch_id": "z"}\n')
    with pytest.raises(DataError, match="line 2"):
        ResultLog(path, {"k": 1}).open()


# --- probe choice -------------------------------------------------------------------------------


def test_probe_choice_for_datasets_without_local_images(monkeypatch, tmp_path):
    monkeypatch.delenv("RZNAS_DATA_DIR", raising=False)
    with pytest.raises(ConfigError, match="--probe-data cifar10"):
        choose_probe_data("imagenet16", None)
    assert choose_probe_data("imagenet16", "gaussian") == "gaussian"
    with pytest.raises(UnknownName):
        choose_probe_data("cifar10", "cifar1")
    with pytest.raises(DataError, match="--probe-data cifar10"):
        choose_probe_data("cifar100", None, data_dir=tmp_path)


def test_imagenet16_probe_from_cifar10_is_downsampled():
    root = require_shared("cifar10/cifar-10-batches-py").parents[1]
    assert choose_probe_data("cifar10", None, data_dir=root) == "cifar10"
    config = CorrelationConfig(dataset="imagenet16", proxies=("params",), samples=1, probe_data="cifar10", batch_size=4)
    probe = prepare_probe(config, ParamsTruth(), data_dir=root)
    assert probe.source == "cifar10:train@16px"
    assert probe.inputs.shape == (8, 3, 16, 16) and probe.num_classes == 120


# --- end to end -------------------------------------------------------------------------------


@pytest.fixture
def scored(monkeypatch) -> list[str]:
    """Arch ids that run_correlation builds and scores, in order."""
    calls: list[str] = []
    real = corr.score_architecture

    def counting(space, arch, *args, **kwargs):
        calls.append(arch.id)
        return real(space, arch, *args, **kwargs)

    monkeypatch.setattr(corr, "score_architecture", counting)
    return calls


def test_run_scores_each_arch_once_and_resumes(tmp_path, scored):
    calls = scored
    config = CorrelationConfig(
        dataset="cifar10", proxies=("params", "grad_norm"), samples=4, seed=1, probe_data="gaussian", batch_size=4
    )
    probe = gaussian_probe(batch_size=4, chunks=2, seed=1)
    stream = io.StringIO()
    summary = run_correlation(
        config, ground_truth=ParamsTruth(), probe=probe, out_dir=tmp_path, progress=stream, progress_interval=0
    )
    sample = sample_architectures(SPACE, 4, seed=1)
    assert calls == [a.id for a in sample]  # one build+score per arch, all proxies together
    assert summary["results"]["params"]["spearman_rho"]["failures_lowest"] == pytest.approx(1.0)
    assert summary["results"]["params"]["kendall_tau"]["successes_only"] == pytest.approx(1.0)
    assert summary["samples"] == 4 and summary["probe"]["source"] == "gaussian"
    assert "[4/4]" in stream.getvalue() and "ETA" in stream.getvalue()

    jsonl = tmp_path / f"{config.stem()}.jsonl"
    lines = jsonl.read_text().splitlines()
    assert len(lines) == 5 and json.loads(lines[0])["type"] == "header"
    first = json.loads(lines[1])
    assert first["arch"] == SPACE.encode(sample[0]) and set(first["scores"]) == {"params", "grad_norm"}
    assert first["seed"] == arch_seed(1, sample[0]) and first["seconds"] > 0
    on_disk = json.loads((tmp_path / f"{config.stem()}.json").read_text())
    assert on_disk["results"] == json.loads(json.dumps(summary["results"]))
    assert "Spearman" in (tmp_path / f"{config.stem()}.md").read_text()

    # simulate a crash during the last architecture: its line is torn
    jsonl.write_text("\n".join(lines[:4]) + "\n" + lines[4][:25])
    calls.clear()
    again = run_correlation(config, ground_truth=ParamsTruth(), probe=probe, out_dir=tmp_path, progress=None)
    assert calls == [sample[3].id]
    assert len(jsonl.read_text().splitlines()) == 5
    for name in ("params", "grad_norm"):
        assert again["results"][name]["spearman_rho"] == summary["results"][name]["spearman_rho"]

    calls.clear()
    run_correlation(config, ground_truth=ParamsTruth(), probe=probe, out_dir=tmp_path, progress=None)
    assert calls == []


def test_a_larger_run_reuses_compatible_logs_and_scores_only_the_rest(tmp_path, scored):
    calls = scored
    probe = gaussian_probe(batch_size=4, chunks=2, seed=1)
    common = dict(dataset="cifar10", seed=1, probe_data="gaussian", batch_size=4)
    small = CorrelationConfig(proxies=("params", "grad_norm"), samples=3, **common)
    run_correlation(small, ground_truth=ParamsTruth(), probe=probe, out_dir=tmp_path, progress=None)
    other_seed = CorrelationConfig(proxies=("params", "grad_norm"), samples=3, **{**common, "seed": 2})
    run_correlation(other_seed, ground_truth=ParamsTruth(), probe=probe, out_dir=tmp_path, progress=None)

    calls.clear()
    stream = io.StringIO()
    large = CorrelationConfig(proxies=("grad_norm",), samples=5, **common)
    summary = run_correlation(large, ground_truth=ParamsTruth(), probe=probe, out_dir=tmp_path, progress=stream)
    sample = sample_architectures(SPACE, 5, seed=1)
    assert calls == [a.id for a in sample[3:]]  # only the two new architectures are scored
    assert "reusing 3 scored architectures" in stream.getvalue() and "resuming" not in stream.getvalue()
    lines = [json.loads(line) for line in (tmp_path / f"{large.stem()}.jsonl").read_text().splitlines()[1:]]
    assert [r["arch_id"] for r in lines] == [a.id for a in sample]
    assert all(set(r["scores"]) == {"grad_norm"} for r in lines)
    assert lines[0]["borrowed_from"] == f"{small.stem()}.jsonl" and "borrowed_from" not in lines[4]

    fresh_dir = tmp_path / "fresh"
    fresh = run_correlation(large, ground_truth=ParamsTruth(), probe=probe, out_dir=fresh_dir, progress=None)
    assert fresh["results"]["grad_norm"]["spearman_rho"] == summary["results"]["grad_norm"]["spearman_rho"]


def test_real_ground_truth_smoke(tmp_path):
    """Five real architectures against the shared CIFAR-10 table (params is cheap)."""
    truth = CompactTable(require_shared("nb201"))
    config = CorrelationConfig(dataset="cifar10", proxies=("params",), samples=5, probe_data="gaussian", batch_size=2)
    summary = run_correlation(
        config, ground_truth=truth, probe=gaussian_probe(batch_size=2), out_dir=tmp_path, progress=None
    )
    records = [json.loads(line) for line in (tmp_path / f"{config.stem()}.jsonl").read_text().splitlines()[1:]]
    sample = sample_architectures(SPACE, 5, seed=0)
    assert [r["test_acc"] for r in records] == [truth.test_accuracy(a, "cifar10") for a in sample]
    rho = stats.spearmanr([r["scores"]["params"] for r in records], [r["test_acc"] for r in records]).statistic
    assert summary["results"]["params"]["spearman_rho"]["successes_only"] == pytest.approx(rho)
    assert math.isfinite(summary["seconds_per_arch"]["mean"])


# --- ensembles and top-region metrics ----------------------------------------------------------


def test_top_k_accuracy_counts_a_tie_across_the_cut_at_its_mean():
    from rznas.benchmarks.top_region import metrics, top_k_accuracy

    accuracy = np.array([90.0, 80.0, 70.0, 60.0])
    ranks = stats.rankdata([4.0, 3.0, 3.0, 1.0])
    assert top_k_accuracy(ranks, accuracy, 1) == 90.0
    assert top_k_accuracy(ranks, accuracy, 2) == pytest.approx((90 + 75) / 2)  # half of the 80/70 tie
    constant = stats.rankdata([1.0] * 4)
    assert top_k_accuracy(constant, accuracy, 1) == pytest.approx(accuracy.mean())
    perfect = metrics(stats.rankdata(accuracy), accuracy)
    assert perfect["spearman_rho"] == pytest.approx(1.0) and perfect["top1_acc"] == 90.0


def test_an_ensemble_run_reuses_component_scores_from_several_logs(tmp_path, scored):
    calls = scored
    probe = gaussian_probe(batch_size=4, chunks=2, seed=1)
    common = dict(dataset="cifar10", seed=1, probe_data="gaussian", batch_size=4)
    for proxies in (("params",), ("grad_norm", "snip")):  # components scored by two separate runs
        run_correlation(CorrelationConfig(proxies=proxies, samples=6, **common), ground_truth=ParamsTruth(),
                        probe=probe, out_dir=tmp_path, progress=None, bootstrap_rounds=0)
    calls.clear()
    config = CorrelationConfig(proxies=("params+grad_norm", "params"), samples=6, reference_size=4, reference_seed=1, **common)
    summary = run_correlation(config, ground_truth=ParamsTruth(), probe=probe, out_dir=tmp_path, progress=None,
                              bootstrap_rounds=20)
    assert calls == []  # every component was scored before, and the reference is the sample's prefix
    entry = summary["results"]["params+grad_norm"]
    assert entry["ensemble"]["components"] == ["params", "grad_norm"]
    assert entry["ensemble"]["reference"] == {"size": 4, "seed": 1, "succeeded": {"params": 4, "grad_norm": 4}}
    assert set(entry["top_region"]["values"]) == {"spearman_rho", "tau_top10pct", "top1_acc", "top10_acc", "top1pct_acc"}
    low, high = entry["top_region"]["intervals"]["top10_acc"]
    assert low <= entry["top_region"]["values"]["top10_acc"] <= high
    assert summary["results"]["params"]["top_region"]["values"]["top1_acc"] == summary["top_region"]["oracle"]["top1_acc"]
    assert "--reference-size 4" in summary["command"] and "params+grad_norm" in (tmp_path / f"{config.stem()}.md").read_text()

    calls.clear()  # a reference drawn with another seed is scored (not logged) with the run's probe and seed
    other = CorrelationConfig(proxies=("params+grad_norm",), samples=6, reference_size=3, reference_seed=9, **common)
    again = run_correlation(other, ground_truth=ParamsTruth(), probe=probe, out_dir=tmp_path, progress=None,
                            bootstrap_rounds=0)
    reference = sample_architectures(SPACE, 3, seed=9)
    sample_ids = {a.id for a in sample_architectures(SPACE, 6, seed=1)}
    assert calls == [a.id for a in reference if a.id not in sample_ids]
    assert again["results"]["params+grad_norm"]["spearman_rho"]["failures_lowest"] is not None


def test_configs_without_ensembles_keep_their_identity():
    config = CorrelationConfig(dataset="cifar10", proxies=("zico", "synflow"), samples=10)
    assert "reference" not in config.identity() and "--reference-size" not in config.command()
    assert config.scored_proxies() == ("zico", "synflow")
    ensemble = CorrelationConfig(dataset="cifar10", proxies=("zico+synflow", "synflow"), samples=10)
    assert ensemble.identity()["reference"] == {"size": 256, "seed": 0}
    assert ensemble.scored_proxies() == ("zico", "synflow")
