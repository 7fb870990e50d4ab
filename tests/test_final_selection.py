"""The final-selection stage: short training of the top-K cells on held-out CIFAR training images."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from rznas.arch import Architecture
from rznas.cli import main
from rznas.errors import ConfigError
from rznas.search import final_selection
from rznas.search.config import SearchConfig
from rznas.search.final_selection import FinalSelectionSettings, top_candidates
from rznas.search.runner import SearchRun
from rznas.trial import Trial, TrialState
from rznas.store import DB_NAME, RunStore

from .conftest import require_shared

TINY = ["--proxy", "params", "--proposer", "random", "--population", "4", "--iterations", "4", "--seed", "3",
        "--data", "cifar10", "--final-train-top", "2", "--final-epochs", "1", "--final-train-images", "256",
        "--final-val-images", "128", "--final-batch-size", "64", "--final-space-option", "cells_per_stage=1",
        "--quiet"]


@pytest.fixture
def data_dir() -> Path:
    return require_shared("cifar10/cifar-10-batches-py").parents[1]


def tiny_config(data_dir: Path, **changes) -> SearchConfig:
    base = SearchConfig(
        proxy="params", proposer="random", population=4, iterations=4, seed=3, data="cifar10", data_dir=str(data_dir),
        final_train_top=2, final_train_images=256, final_val_images=128, final_batch_size=64,
        final_space_options={"cells_per_stage": 1},
    )
    return base.replace(**changes)


def trial(number: int, genotype: tuple[str, ...], score: float | None, state: TrialState = TrialState.COMPLETE) -> Trial:
    arch = Architecture("nb201", genotype)
    return Trial(number=number, iteration=number, state=state, arch=arch, encoded=None, score=score, reason="",
                 parent_id=None, parent_number=None, parent_score=None, thinking="", measurements={}, timings={},
                 notes_shown=())


def test_top_candidates_are_the_best_distinct_complete_trials():
    a, b, c = ("none",) * 6, ("skip_connect",) * 6, ("nor_conv_1x1",) * 6
    trials = [
        trial(0, a, 1.0),
        trial(1, b, 3.0),
        trial(2, c, None, TrialState.PROXY_ERROR),
        trial(3, a, 5.0, TrialState.DUPLICATE),  # not scored: never a candidate
        trial(4, c, 3.0),  # ties with trial 1: the earlier trial ranks first
    ]
    assert [t.number for t in top_candidates(trials, 2)] == [1, 4]
    assert [t.number for t in top_candidates(trials, 10)] == [1, 4, 0]


def test_settings_key_ignores_k_but_not_what_a_result_depends_on(data_dir):
    settings = FinalSelectionSettings.from_config(tiny_config(data_dir))
    assert settings is not None and settings.space_options == {"cells_per_stage": 1}
    assert FinalSelectionSettings.from_config(tiny_config(data_dir, final_train_top=5)).key == settings.key
    for change in ({"final_epochs": 2}, {"final_seed": 1}, {"final_train_images": 300}, {"final_space_options": None}):
        assert FinalSelectionSettings.from_config(tiny_config(data_dir, **change)).key != settings.key
    assert FinalSelectionSettings.from_config(tiny_config(data_dir, final_train_top=0)) is None


def test_bad_settings_fail_before_a_run_directory_is_made(tmp_path, data_dir, capsys):
    out = tmp_path / "run"
    # a Gaussian probe has no images to train on: the user must name a CIFAR dataset
    code = main(["search", "--proxy", "params", "--proposer", "random", "--final-train-top", "2", "--out", str(out)])
    assert code == ConfigError.exit_code and "final selection trains on real images" in capsys.readouterr().err
    assert not out.exists()
    # more images than the training split holds (the test split is never borrowed)
    code = main(["search", *TINY, "--data-dir", str(data_dir), "--final-train-images", "9000", "--final-val-images", "2000",
                 "--out", str(out)])
    assert code == ConfigError.exit_code and "exceed the 10000 images" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(ConfigError, match="final_epochs"):
        SearchConfig(final_epochs=0)
    with pytest.raises(ConfigError, match="unknown training recipe"):
        FinalSelectionSettings.from_config(tiny_config(data_dir, final_recipe="quik"))


@pytest.mark.slow
def test_tiny_search_with_final_selection_end_to_end(tmp_path, data_dir, capsys):
    out = tmp_path / "run"
    assert main(["search", *TINY, "--data-dir", str(data_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "best_arch.json").read_text())
    selection = summary["selection"]
    assert selection["method"] == "final_training" and selection["status"] == "done"
    assert summary["final_selection"] == selection["settings"]  # what `rznas bench search-quality` rows record
    assert selection["settings"]["train_images"] == 256 and selection["settings"]["val_images"] == 128
    candidates = selection["candidates"]
    store = RunStore.open(out)
    try:
        trials = store.trials()
        rows = store.db.execute("SELECT arch_id, val_acc FROM final_candidates").fetchall()
    finally:
        store.close()
    # the candidates are the two best-scoring distinct cells, in proxy order, each trained once
    expected = [t.arch_id for t in top_candidates(trials, 2)]
    assert [c["arch_id"] for c in candidates] == expected and [c["rank"] for c in candidates] == [1, 2]
    assert sorted(r["arch_id"] for r in rows) == sorted(expected)
    for candidate in candidates:
        assert candidate["epochs"] == 1 and candidate["seconds"] > 0 and len(candidate["history"]) == 1
        assert 0.0 <= candidate["val_acc"] <= 100.0 and 0.0 <= candidate["train_acc"] <= 100.0
        assert "cifar10" in candidate["benchmark"] or "skipped" in candidate["benchmark"]
    # the returned cell is the best by validation accuracy (ties: the better proxy rank)
    best = max(candidates, key=lambda c: (c["val_acc"], -c["rank"]))
    assert selection["selected"]["arch_id"] == best["arch_id"] == summary["arch_id"]
    assert summary["arch"] == best["encoded"] and summary["score"] == best["score"]
    assert selection["proxy_best"]["arch_id"] == expected[0]
    assert f"best architecture: {best['encoded']}" in printed and "selected by short training" in printed
    assert not list((out / final_selection.CHECKPOINT_FOLDER).glob("*.pt"))  # per-candidate checkpoints removed
    # the read-only reader (`rznas report`) rebuilds the same choice from the store
    from rznas.report import write_report
    from rznas.run_reader import RunReader

    (tmp_path / "again").mkdir()
    with RunReader(out) as reader:
        again = write_report(reader, tmp_path / "again")
    assert again["arch_id"] == best["arch_id"] and again["final_selection"] == selection["settings"]


@pytest.mark.slow
def test_the_benchmark_trains_the_candidates_the_stage_trained(tmp_path, data_dir, monkeypatch):
    """benchmarks/final_selection.py --candidates-from RUN measures what the search's stage did."""
    import importlib.util
    import shutil

    from .conftest import REPO_ROOT

    out = tmp_path / "run"
    assert main(["search", *TINY, "--data-dir", str(data_dir), "--out", str(out)]) == 0
    selection = json.loads((out / "best_arch.json").read_text())["selection"]
    spec = importlib.util.spec_from_file_location("final_selection_bench", REPO_ROOT / "benchmarks" / "final_selection.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)  # type: ignore[union-attr]
    monkeypatch.setenv("RZNAS_DATA_DIR", str(data_dir))
    result_path = tmp_path / "bench" / "fs"
    shutil.copytree(out, tmp_path / "copy")  # a second run with the same candidates shares their row
    assert bench.main(["--top", "2", "--epochs", "1", "--candidates-from", str(out), "--candidates-from",
                       str(tmp_path / "copy"), "--train-images", "256",
                       "--val-images", "128", "--batch-size", "64", "--space-option", "cells_per_stage=1",
                       "--out", str(result_path)]) == 0
    summary = json.loads(result_path.with_suffix(".json").read_text())
    assert summary["candidate_runs"] == ["RUNS/run", "RUNS/copy"] and "--candidates-from RUNS/run" in summary["command"]
    (row,) = summary["results"]
    candidates = selection["candidates"]
    assert row["proxy"] == "params (run, copy)" and row["top"] == 2 and row["epochs"] == 1
    assert row["proxy_top1"]["arch"] == candidates[0]["encoded"]
    # same cells, same settings, same training code: the same validation accuracies and the same pick
    assert row["val_acc"] == [round(c["val_acc"], 2) for c in candidates]
    assert row["selected"]["arch"] == selection["selected"]["encoded"]


@pytest.mark.slow
def test_a_run_killed_during_final_selection_resumes_without_retraining(tmp_path, data_dir, monkeypatch):
    real = final_selection.train_candidate
    trained: list[str] = []

    def interrupted_on_second(trial, *args, **kwargs):
        if len(trained) == 1:
            raise KeyboardInterrupt  # the kill lands while the second candidate trains
        trained.append(trial.arch_id)
        return real(trial, *args, **kwargs)

    monkeypatch.setattr(final_selection, "train_candidate", interrupted_on_second)
    out = tmp_path / "run"
    run = SearchRun.start(tiny_config(data_dir), out)
    try:
        with pytest.raises(KeyboardInterrupt):
            run.run()
    finally:
        run.close()
    store = RunStore.open(out)
    assert store.meta("status") == "interrupted" and store.meta("final_selection")["status"] == "running"
    store.close()

    def counted(trial, *args, **kwargs):
        trained.append(trial.arch_id)
        return real(trial, *args, **kwargs)

    monkeypatch.setattr(final_selection, "train_candidate", counted)
    run = SearchRun.resume(out)
    try:
        result = run.run()
    finally:
        run.close()
    assert len(trained) == 2 and trained[0] != trained[1]  # the finished candidate was not trained again
    assert result.selection["method"] == "final_training" and len(result.selection["candidates"]) == 2
    assert result.best is not None and result.best.arch.id == result.selection["selected"]["arch_id"]

    # a finished run may redo the stage with other settings: new results, the old ones kept apart
    trained.clear()
    run = SearchRun.resume(out, overrides={"final_train_top": 3})
    try:
        result = run.run()
    finally:
        run.close()
    assert len(trained) == 1 and len(result.selection["candidates"]) == 3  # same settings key: only the third


def test_old_stores_gain_the_final_selection_table(tmp_path):
    store = RunStore.create(tmp_path, {"proxy": "params"})
    store.close()
    db = sqlite3.connect(tmp_path / DB_NAME)
    db.execute("DROP TABLE final_candidates")  # a store written before the table existed
    db.commit()
    db.close()
    store = RunStore.open(tmp_path)
    try:
        assert store.final_candidates("any") == []
    finally:
        store.close()
