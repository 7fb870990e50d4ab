"""Result files built from the run store: exports, best_arch.json, plots, benchmark lookup."""
from __future__ import annotations

import csv
import json

from rznas.cli import main
from rznas.report import best_trial, population_series
from rznas.search.benchmark import benchmark_accuracies
from rznas.spaces import get_space

from .conftest import require_shared


def row(number, iteration, state, score=None):
    return {"number": number, "iteration": iteration, "state": state, "score": score}


def test_population_series_keeps_the_top_n_and_counts_valid_proposals():
    rows = [
        row(0, 0, "complete", 1.0), row(1, 0, "over_budget"), row(2, 0, "complete", 3.0), row(3, 0, "complete", 2.0),
        row(4, 1, "complete", 5.0),  # population {5, 3, 2}: 1.0 is evicted
        row(5, 2, "invalid"),
        row(6, 3, "duplicate"),
        row(7, 4, "complete", 0.5),  # worse than everything: evicted at once
    ]
    series = population_series(rows, population_size=3)
    assert [s.iteration for s in series] == [0, 1, 2, 3, 4]
    assert series[0].best == 3.0 and series[0].median == 2.0 and series[0].valid_rate is None
    assert series[1].best == 5.0 and series[1].median == 3.0
    assert [s.valid for s in series[1:]] == [True, False, True, True]
    assert series[-1].valid_rate == 0.75 and series[-1].median == 3.0
    assert best_trial(rows)["number"] == 4


def test_cli_run_writes_every_result_file(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["search", "--proposer", "random", "--proxy", "params", "--population", "4", "--iterations", "5",
                 "--out", str(out), "--quiet"])
    assert code == 0
    for name in ("best_arch.json", "trials.csv", "trials.jsonl", "progress.png", "validity.png", "run.sqlite"):
        assert (out / name).exists(), name
    assert (out / "progress.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    best = json.loads((out / "best_arch.json").read_text())
    assert set(best) >= {"arch", "score", "proxy", "benchmark"} and best["proxy"] == "params"
    get_space("nb201").decode(best["arch"])
    rows = list(csv.DictReader(open(out / "trials.csv")))
    assert len(rows) == 9 and float(rows[0]["score"]) > 0
    lines = [json.loads(line) for line in open(out / "trials.jsonl")]
    assert [r["number"] for r in lines] == list(range(9))
    assert max(float(r["score"]) for r in rows if r["score"]) == best["score"]
    printed = capsys.readouterr().out
    assert f"best architecture: {best['arch']}" in printed


def test_benchmark_is_skipped_gracefully_without_a_table(monkeypatch):
    monkeypatch.delenv("RZNAS_NB201_DIR", raising=False)
    monkeypatch.delenv("RZNAS_DATA_DIR", raising=False)
    arch = get_space("nb201").make(["nor_conv_3x3"] * 6)
    result = benchmark_accuracies("nb201", arch)
    assert "NAS-Bench-201" in result["skipped"]
    assert "skipped" in benchmark_accuracies("darts", arch)


def test_benchmark_accuracies_on_three_datasets(tmp_path, capsys):
    folder = require_shared("nb201")
    arch = get_space("nb201").decode("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|")
    result = benchmark_accuracies("nb201", arch, table=str(folder))
    assert abs(result["cifar10"]["test_acc"] - 94.37) < 0.01  # the benchmark optimum
    assert 0 < result["cifar100"]["val_acc"] < 100 and 0 < result["imagenet16"]["test_acc"] < 100
    out = tmp_path / "run"
    assert main(["search", "--proposer", "random", "--proxy", "params", "--population", "3", "--iterations", "2",
                 "--out", str(out), "--quiet", "--nb201", str(folder)]) == 0
    best = json.loads((out / "best_arch.json").read_text())
    assert set(best["benchmark"]) >= {"cifar10", "cifar100", "imagenet16"}
    assert "imagenet16  val" in capsys.readouterr().out


def test_benchmark_accuracies_come_from_the_ground_truth_registry(monkeypatch):
    """A space with a registered table is looked up there (the report used to know only nb201)."""
    from rznas.benchmarks.ground_truth import GROUND_TRUTH
    from rznas.benchmarks.nb201_table import Accuracy

    class Table:
        source = "test-table"
        datasets = ("tiny",)

        def lookup(self, arch, dataset):
            return Accuracy(50.0, 60.0, None)

    opened = []
    monkeypatch.setitem(GROUND_TRUTH._items, "darts", lambda location, data_dir=None: opened.append(location) or Table())
    arch = get_space("darts").sample(__import__("random").Random(0))
    assert benchmark_accuracies("darts", arch, table="/somewhere") == {
        "source": "test-table", "tiny": {"val_acc": 50.0, "test_acc": 60.0}
    }
    assert opened == ["/somewhere"]
    assert "no benchmark table for space 'zen_resnet'" in benchmark_accuracies("zen_resnet", arch)["skipped"]
