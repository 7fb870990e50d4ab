"""The Python API (rznas.run_search / score / load_run): the documented snippet runs verbatim,
every script in examples/ runs, and the wrappers give the commands' numbers and errors."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import rznas
from rznas import ConfigError, InvalidArchitecture
from rznas.cli import main

from .conftest import REPO_ROOT, require_shared

A = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


def python_blocks(markdown: str, section: str) -> list[str]:
    """The ```python blocks of the ``## section`` of a Markdown text (up to the next ## heading)."""
    match = re.search(rf"^## {re.escape(section)}\s*$(.*?)(?=^## |\Z)", markdown, flags=re.M | re.S)
    if match is None:
        return []
    return re.findall(r"^```python\n(.*?)^```", match.group(1), flags=re.M | re.S)


def run_script(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT / "src"), env.get("PYTHONPATH", "")) if p)
    env["OMP_NUM_THREADS"] = "1"  # tiny models: one thread is fastest on a shared 2-core machine
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_the_documented_quick_start_runs_verbatim(tmp_path):
    """docs/api.md's quick start, and the README's Python API section once it has one, as a new user runs them."""
    blocks = python_blocks((REPO_ROOT / "docs" / "api.md").read_text(), "Quick start")
    assert blocks, "docs/api.md must have a python block under '## Quick start'"
    readme = python_blocks((REPO_ROOT / "README.md").read_text(), "Python API")
    for index, code in enumerate(blocks + readme):
        cwd = tmp_path / f"user{index}"
        cwd.mkdir()
        script = cwd / "snippet.py"
        script.write_text(code)
        result = run_script([str(script)], cwd)
        assert result.returncode == 0, result.stderr[-3000:]
        lines = result.stdout.splitlines()
        assert len(lines) >= 3 and (cwd / "runs" / "api-demo" / "best_arch.json").is_file()
        best = json.loads((cwd / "runs" / "api-demo" / "best_arch.json").read_text())
        assert lines[0].split()[0] == best["arch"]  # the printed best is the run's best_arch.json
        assert lines[-1].startswith("finished ")


def test_example_search_and_inspect_runs(tmp_path):
    result = run_script([str(REPO_ROOT / "examples" / "search_and_inspect.py"), str(tmp_path / "run")], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert f"{tmp_path / 'run'}: finished, 12 trials, best |" in out
    assert re.search(r"^params +[0-9.]+ M$", out, flags=re.M) and re.search(r"^flops +[0-9.]+ MFLOPs$", out, flags=re.M)


def test_example_score_own_images_runs_on_real_images(tmp_path):
    from PIL import Image

    from rznas.data.cifar import load_cifar

    root = require_shared("cifar10/cifar-10-batches-py").parents[1]
    test = load_cifar("cifar10", data_dir=root, split="test")
    for i in range(16):  # 16 real test images, labels as folder names
        folder = tmp_path / "images" / f"class{int(test.labels[i])}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(test.images[i].permute(1, 2, 0).numpy()).save(folder / f"{i}.png")
    result = run_script([str(REPO_ROOT / "examples" / "score_own_images.py"), f"folder:{tmp_path / 'images'}"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = result.stdout.splitlines()
    assert len(rows) == 9 and not any("FAILED" in row for row in rows)


def test_score_gives_the_numbers_of_rznas_score(capsys):
    rows = rznas.score([A, rznas.get_space("nb201").decode(A)], "params,grad_norm", data="gaussian", batch_size=4)
    assert [(r.arch, r.proxy) for r in rows] == [(A, "params"), (A, "grad_norm")] * 2
    assert rows[0].unit == "M" and rows[1].unit == "" and all(r.ok for r in rows)
    assert rows[1].value == rows[3].value  # the same arch, the same seeded weights and probe
    assert main(["score", "--proxy", "params,grad_norm", "--arch", A, "--data", "gaussian", "--batch-size", "4",
                 "--json"]) == 0
    cli = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["score"] for row in cli] == [rows[0].value, rows[1].value]


def test_a_failed_score_is_a_row_with_the_error():
    (row,) = rznas.score(A, ["jacob_cov"], data="gaussian", batch_size=1)
    assert not row.ok and row.value is None and "at least 2 samples" in row.error


def test_bad_input_raises_the_command_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="did you mean population"):
        rznas.run_search(proposer="random", populaton=4, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing written for a bad setting
    with pytest.raises(InvalidArchitecture):
        rznas.score("|bad|", "params")
    with pytest.raises(ConfigError, match="did you mean 'synflow'"):
        rznas.score(A, "synflo")
    with pytest.raises(ConfigError, match="holds no rznas run"):
        rznas.load_run(tmp_path)


def test_run_search_returns_what_load_run_reads_back(tmp_path):
    base = rznas.SearchConfig(population=3, iterations=2, batch_size=4, probe_chunks=1, score_cache="none")
    run = rznas.run_search("nb201", "params", proposer="random", config=base, seed=1, out=tmp_path / "run")
    assert run.status == "finished" and run.config.seed == 1 and run.config.population == 3
    assert len(run.trials) == 5 and run.best is not None and run.best_score == max(t.score for t in run.complete_trials())
    again = rznas.load_run(tmp_path / "run")
    assert again == run and str(again).startswith(f"{tmp_path / 'run'}: finished, 5 trials, best |")
    assert run.best_arch == rznas.get_space("nb201").decode(run.best_encoded)


def test_listing_functions_and_names_survive_importing_the_subpackages():
    import rznas.search.runner  # noqa: F401  (a subpackage import must not shadow an API function)
    import rznas.spaces  # noqa: F401

    assert callable(rznas.run_search) and callable(rznas.list_spaces) and callable(rznas.score)
    assert "nb201" in rznas.list_spaces() and "synflow" in rznas.list_proxies()


def test_import_rznas_does_not_import_torch():
    result = run_script(["-c", "import sys, rznas; print('torch' in sys.modules)"], REPO_ROOT)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr


def test_a_search_records_the_score_that_rznas_score_gives(tmp_path):
    run = rznas.run_search("nb201", "synflow", proposer="random", population=3, iterations=1, batch_size=4,
                           probe_chunks=2, score_cache="none", out=tmp_path / "run")
    (again,) = rznas.score(run.best_encoded, "synflow", data="gaussian", batch_size=4, seed=run.config.score_seed)
    assert again.value == run.best_score


def test_load_run_reads_a_live_then_sigkilled_run_without_writing_it(tmp_path):
    import signal

    from .live_search import POPULATION, committed_trials, start_slow_search, store_bytes, wait_for_trials

    out = tmp_path / "killed"
    process = start_slow_search(tmp_path, out, iterations=40, delay=0.1)
    try:
        wait_for_trials(process, out, POPULATION + 1)
        live = rznas.load_run(out)
        assert live.status == "running" and len(live.trials) >= POPULATION + 1
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    before = store_bytes(out)
    killed = rznas.load_run(out)
    assert killed.status == "interrupted" and "--resume" in killed.reason
    assert len(killed.trials) == committed_trials(out) and killed.best is not None
    assert killed.best_score == max(t.score for t in killed.complete_trials())
    assert store_bytes(out) == before  # a reader never writes
