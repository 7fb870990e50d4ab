"""`rznas bench search-quality`: the paper-scale NB201 table harness, on a tiny budget."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from rznas.benchmarks import search_quality as sq
from rznas.cli import main
from rznas.errors import ConfigError, DataError

from .conftest import require_shared

REQUIRED = ("proxy", "proposer", "seed", "population", "iterations", "evaluations", "final_selection", "arch", "test_acc", "seconds")
#: mutation replies of a scripted LLM, cycled by the search: valid NB201 cells (one may equal its parent: a duplicate)
CELLS = [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|nor_conv_1x1~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|",
    "|avg_pool_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|nor_conv_1x1~0|nor_conv_3x3~1|nor_conv_1x1~2|",
]


@pytest.fixture
def nb201_env(monkeypatch: pytest.MonkeyPatch) -> Path:
    """The subprocess searches find the NB201 ground truth through RZNAS_DATA_DIR."""
    data = require_shared("nb201").parent
    monkeypatch.setenv("RZNAS_DATA_DIR", str(data))
    return data


def scripted_replies(path: Path, iterations: int) -> str:
    """A JSONL reply file: per iteration one mutation (a JSON arch) and one reflection, enough for every run."""
    lines = []
    for i in range(iterations):
        lines.append(json.dumps(json.dumps({"arch": CELLS[i % len(CELLS)], "thinking": "swap one edge"})))
        lines.append(json.dumps("Prefer nor_conv_3x3 on the edges into node 3."))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return f"scripted:{path}"


def bench(tmp_path: Path, *extra: str, llm: str = "scripted:none") -> int:
    return main([
        "bench", "search-quality", "--proxies", "params", "--population", "3", "--iterations", "2",
        "--data", "gaussian", "--llm", llm, "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "table"), *extra,
    ])


@pytest.mark.slow
def test_tiny_table_end_to_end_with_a_scripted_llm_and_resumable_reruns(tmp_path, nb201_env, capsys):
    llm = scripted_replies(tmp_path / "replies.jsonl", iterations=8)
    assert bench(tmp_path, "--proposers", "random,llm", "--seeds", "0", "--jobs", "2", llm=llm) == 0
    data = json.loads((tmp_path / "table.json").read_text())
    rows = {row["name"]: row for row in data["rows"]}
    assert set(rows) == {"params-random-seed0", "params-llm-seed0"}
    for row in rows.values():
        assert all(key in row for key in REQUIRED)
        assert set(row["test_acc"]) == {"cifar10", "cifar100", "imagenet16"}
        assert row["population"] == 3 and row["iterations"] == 2 and row["final_selection"] is None
        assert 3 <= row["evaluations"] <= 5 and row["proposals"]["total"] == 2
        assert row["command"].startswith("rznas search --space nb201 --proxy params")
    assert rows["params-llm-seed0"]["tokens_per_iteration"]["input"] > 0
    assert rows["params-random-seed0"]["llm_calls"] == {}
    table = (tmp_path / "table.md").read_text()
    assert "paper: plain proxy search" not in table  # params is not one of the paper's proxies
    assert table.startswith("# NB201 search quality (below the paper's scale")  # a tiny budget is not called the paper's
    assert "| rznas: RZ-NAS (LLM mutation + reflection) | params | 3 / 2 | 1 |" in table
    assert "random search (validation accuracy), same evaluations" in table
    # a rerun skips every finished run and keeps the rows; another invocation adds its rows to the same files
    capsys.readouterr()
    calls: list[list[str]] = []
    runner = sq.Runner(sq.Protocol(population=3, iterations=2, data="gaussian"), tmp_path / "runs", launch=lambda c: calls.append(c) or 0)
    plan = sq.make_plan(["params"], ["random", "llm"], [0])
    assert runner.run(plan) == {entry.name: "skipped" for entry in plan} and calls == []
    assert bench(tmp_path, "--proposers", "random", "--seeds", "1") == 0
    names = {row["name"] for row in json.loads((tmp_path / "table.json").read_text())["rows"]}
    assert names == set(rows) | {"params-random-seed1"}
    # a fresh checkout has the committed table but no run directories: rows in the table are not run again
    protocol = sq.Protocol(population=3, iterations=2, data="gaussian", llm=llm)
    spy = sq.Runner(protocol, tmp_path / "gone", launch=lambda c: calls.append(c) or 0)
    sq.run_benchmark(plan, protocol, runs=tmp_path / "gone", out=tmp_path / "table", runner=spy)
    assert calls == [] and not (tmp_path / "gone").exists()
    # the same row name under other settings is refused, not mixed into the table
    assert bench(tmp_path, "--proposers", "random", "--seeds", "1", "--iterations", "3") == ConfigError.exit_code
    assert "made with other settings" in capsys.readouterr().err


def test_an_interrupted_run_is_resumed_and_a_failed_one_reported(tmp_path):
    protocol = sq.Protocol(population=3, iterations=2, data="gaussian")
    entry = sq.PlanEntry("params", "random", 0)
    started = tmp_path / "runs" / entry.name
    started.mkdir(parents=True)
    (started / "run.sqlite").write_bytes(b"")  # a store without best_arch.json: an interrupted run
    calls: list[list[str]] = []
    runner = sq.Runner(protocol, tmp_path / "runs", launch=lambda c: calls.append(c) or 0)
    with pytest.raises(DataError, match="cannot read the run store"):
        sq.run_state(started)  # an unreadable store is an error, not "finished"
    (started / "run.sqlite").unlink()
    assert runner.run_entry(entry) == "started"
    assert calls[-1][-2:] == [str(started), "--quiet"] and "--seed" in calls[-1]
    failing = sq.Runner(protocol, tmp_path / "runs", launch=lambda c: 3)
    with pytest.raises(DataError, match="exited with status 3; rerun to resume it"):
        failing.run([entry])


@pytest.mark.slow
def test_sigterm_to_the_bench_stops_its_running_search_cleanly(tmp_path, nb201_env):
    """The bench forwards the stop to its child search, whose store then says 'interrupted' (resumable),
    instead of leaving it running on its own or killing it mid-trial."""
    import signal
    import subprocess
    import sys
    import time

    from rznas.store import writer_alive

    from .test_resume import committed_trials

    run_dir = tmp_path / "runs" / "params-random-seed0"
    process = subprocess.Popen(
        [sys.executable, "-m", "rznas", "bench", "search-quality", "--proxies", "params", "--proposers", "random",
         "--seeds", "0,1", "--population", "4", "--iterations", "1000000", "--data", "gaussian",
         "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "table")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while committed_trials(run_dir) < 20:
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "search too slow"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 143, err.decode()[-2000:]
    assert writer_alive(run_dir) is False  # the child search is gone too
    assert sq.read_store(run_dir)["status"] == "interrupted" and sq.run_state(run_dir) == "started"
    assert not (tmp_path / "runs" / "params-random-seed1").exists()  # no further run was started


def test_plan_and_flag_errors(tmp_path):
    with pytest.raises(ConfigError, match="duplicates"):
        sq.make_plan(["zico", "zico"], ["random"], [0])
    with pytest.raises(ConfigError, match="at least one"):
        sq.make_plan(["zico"], ["random"], [])
    assert bench(tmp_path, "--variant", "lean") == ConfigError.exit_code
    assert bench(tmp_path, "--jobs", "0") == ConfigError.exit_code
    plan = sq.make_plan(["zico", "synflow"], ["random", "llm"], [0, 1], variant="lean", flags=["--lean-prompt"])
    assert [e.name for e in plan][:4] == ["zico-random-lean-seed0", "synflow-random-lean-seed0", "zico-llm-lean-seed0", "synflow-llm-lean-seed0"]
    command = sq.search_command(plan[2], sq.Protocol(), Path("runs/x"))
    assert command[:2] == ["rznas", "search"] and command[-1] == "--lean-prompt" and "--llm" in command
    assert command[command.index("--population") + 1] == "100" and command[command.index("--iterations") + 1] == "1500"


def test_two_bench_commands_at_once_merge_their_rows(tmp_path, nb201_env):
    # rows as the committed table holds them; each "command" read the table before the other wrote
    committed = json.loads((Path(__file__).parents[1] / "benchmarks/results/search_paper_scale.json").read_text())
    first, second = committed["rows"][0], committed["rows"][1]
    out = tmp_path / "table"
    mine: dict = sq.load_rows(out.with_suffix(".json"))  # empty: nothing written yet
    sq.merge_and_write(out, {first["name"]: first})  # the other command finishes a run first
    mine[second["name"]] = second
    sq.merge_and_write(out, mine)
    names = {row["name"] for row in json.loads(out.with_suffix(".json").read_text())["rows"]}
    assert names == {first["name"], second["name"]}  # the other command's row survived
    assert set(mine) == names and out.with_suffix(".lock").exists()
