"""`rznas runs`, `report` and `compare` on finished, live and SIGKILLed runs; the writer lock; readers never write."""
from __future__ import annotations

import csv
import json
import signal
from pathlib import Path

import pytest

from rznas.cli import main
from rznas.errors import ConfigError
from rznas.run_reader import RunReader, find_runs
from rznas.store import DB_NAME, RunStore, writer_alive

from .live_search import POPULATION, committed_trials, random_run, start_slow_search, store_bytes, wait_for_trials
from .search_fakes import register_mutator


def runs_json(root: Path, capsys) -> dict[str, dict]:
    capsys.readouterr()
    assert main(["runs", str(root), "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    return {Path(record["path"]).name: record for record in map(json.loads, lines)}


def test_runs_report_compare_on_a_live_then_sigkilled_run(tmp_path, capsys):
    root = tmp_path / "runs"
    killed = root / "killed"
    process = start_slow_search(tmp_path, killed, iterations=40, delay=0.1)
    try:
        wait_for_trials(process, killed, POPULATION + 2)
        live = runs_json(root, capsys)["killed"]
        assert live["status"] == "running" and live["live"] is True
        # a second writer (here: a resume) is refused while the first one is alive
        assert main(["search", "--resume", str(killed), "--quiet"]) == 2
        assert "being written by another live rznas process" in capsys.readouterr().err
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    random_run(root / "random-0", 0)
    random_run(root / "random-1", 1)
    before = store_bytes(killed)
    committed = committed_trials(killed)

    record = runs_json(root, capsys)["killed"]
    assert record["status"] == "interrupted" and record["live"] is False
    assert record["trials"] == committed and record["iterations_done"] == committed - POPULATION
    assert record["iterations"] == 40 and record["best_score"] is not None and record["llm_calls"] > 0
    assert main(["runs", str(root)]) == 0
    table = capsys.readouterr().out
    assert "interrupted" in table and f"rznas search --resume {killed}" in table
    assert f"{committed - POPULATION}/40" in table and "finished" in table

    assert main(["report", str(killed)]) == 0
    with open(killed / "trials.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == committed
    assert len((killed / "trials.jsonl").read_text().splitlines()) == committed
    best = json.loads((killed / "best_arch.json").read_text())
    assert best["trials"] == committed and best["score"] == record["best_score"]
    assert (killed / "progress.png").stat().st_size > 0 and (killed / "validity.png").stat().st_size > 0

    capsys.readouterr()
    plot = tmp_path / "compare.png"
    assert main(["compare", str(root), "--plot", str(plot), "--json"]) == 0
    groups = {g["label"].split()[0]: g for g in json.loads(capsys.readouterr().out)}
    assert set(groups) == {"nb201/params/llm", "nb201/params/random"}
    seeds = [json.loads((root / f"random-{s}" / "best_arch.json").read_text())["score"] for s in (0, 1)]
    random_group = groups["nb201/params/random"]
    assert random_group["seeds"] == [0, 1]
    assert random_group["best_score"]["mean"] == pytest.approx(sum(seeds) / 2)
    assert random_group["best_score"]["std"] == pytest.approx(abs(seeds[0] - seeds[1]) / 2 ** 0.5)
    assert groups["nb201/params/llm"]["status"] == ["interrupted"]
    assert groups["nb201/params/llm"]["best_score"] == {"mean": record["best_score"], "std": 0.0}
    assert plot.stat().st_size > 0
    assert main(["compare", str(killed), str(root / "random-0"), "--plot", str(plot)]) == 0
    assert "+-" in capsys.readouterr().out

    assert store_bytes(killed) == before, "a reader changed the store"
    # the killed run resumes (its writer lock died with it) and then lists as finished
    register_mutator("test-mutator")
    assert main(["search", "--resume", str(killed), "--quiet"]) == 0
    assert runs_json(root, capsys)["killed"]["status"] == "finished"


def test_writer_lock_is_held_until_close_and_refuses_a_second_writer(tmp_path):
    store = RunStore.create(tmp_path / "run", {"space": "nb201"})
    assert writer_alive(tmp_path / "run") is True
    other = RunStore.open(tmp_path / "run")
    with pytest.raises(ConfigError, match="another live rznas process"):
        other.claim_writer(wait_s=0.1)
    other.close()
    store.close()
    assert writer_alive(tmp_path / "run") is False
    assert writer_alive(tmp_path / "no-lock-file") is False
    reopened = RunStore.open(tmp_path / "run")
    reopened.claim_writer()
    reopened.close()


def test_reader_refuses_what_is_not_a_run(tmp_path, capsys):
    with pytest.raises(ConfigError, match="holds no rznas run"):
        RunReader(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no rznas run below"):
        find_runs(tmp_path / "empty")
    assert main(["runs", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / DB_NAME).write_bytes(b"not a database" * 100)
    assert main(["report", str(tmp_path / "bad")]) == 2
    assert "cannot be read as a run store" in capsys.readouterr().err
