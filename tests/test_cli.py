"""`rznas score` and `rznas bench correlation`: output formats and exit codes (in-process and subprocess)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rznas.cli import main
from rznas.proxies.size import count_parameters
from rznas.spaces import get_space

from .conftest import require_shared

A = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
B = "|nor_conv_1x1~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run faster on one thread, especially on a shared, loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def params_of(arch: str, num_classes: int = 10) -> float:
    space = get_space("nb201")
    return count_parameters(space.build(space.decode(arch), num_classes=num_classes)) / 1e6


# --- rznas score -----------------------------------------------------------------------------


def test_score_json_lines_from_an_arch_file(tmp_path, capsys):
    arch_file = tmp_path / "archs.txt"
    arch_file.write_text(f"# two cells\n{A}\n\n{B}\n")
    code = main(
        ["score", "--space", "nb201", "--proxy", "params,grad_norm", "--arch-file", str(arch_file),
         "--data", "gaussian", "--batch-size", "4", "--json"]
    )
    assert code == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["arch"], r["proxy"]) for r in rows] == [(A, "params"), (A, "grad_norm"), (B, "params"), (B, "grad_norm")]
    assert [set(r) for r in rows[:2]] == [{"arch", "proxy", "score", "seconds", "unit"}, {"arch", "proxy", "score", "seconds"}]
    assert rows[0]["unit"] == "M"  # raw numbers in JSON, the unit beside them
    assert rows[0]["score"] == pytest.approx(params_of(A))
    assert rows[2]["score"] == pytest.approx(params_of(B))
    assert rows[1]["score"] > 0 and rows[1]["seconds"] >= 0


def test_score_is_deterministic_under_a_seed(capsys):
    args = ["score", "--proxy", "grad_norm", "--arch", A, "--data", "gaussian", "--batch-size", "4", "--json"]
    assert main([*args, "--seed", "3"]) == 0
    first = json.loads(capsys.readouterr().out)["score"]
    assert main([*args, "--seed", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["score"] == first
    assert main([*args, "--seed", "4"]) == 0
    assert json.loads(capsys.readouterr().out)["score"] != first


def test_score_table_on_real_cifar10(capsys):
    root = require_shared("cifar10/cifar-10-batches-py").parents[1]
    code = main(["score", "--proxy", "params,naswot", "--arch", A, "--data-dir", str(root), "--batch-size", "8"])
    out = capsys.readouterr().out
    assert code == 0
    assert "probe: cifar10:train" in out
    assert out.count(A) == 2 and "naswot" in out


def test_score_table_labels_units_and_counts_flops_at_the_native_resolution(capsys):
    """The 400M-FLOPs MobileNet example: the flops proxy at the 32-px probe is labelled as such and
    the size line counts at 224 px for 1000 classes, as the mobilenet budgets do."""
    space = get_space("mobilenet")
    arch = space.describe().example
    assert main(["score", "--space", "mobilenet", "--proxy", "params,flops", "--arch", arch, "--data", "gaussian",
                 "--batch-size", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("# probe: gaussian (32x32 px, 10 classes)")
    params_row = next(line for line in lines if line.startswith("params "))
    flops_row = next(line for line in lines if line.startswith("flops "))
    assert " M " in params_row and "MFLOPs @32px" in flops_row
    size = next(line for line in lines if "size:" in line).split("size:")[1].strip()
    expected = space.count_flops(space.decode(arch), resolution=224, num_classes=1000)
    assert 390e6 < expected < 410e6
    assert size == (f"params {space.count_params(space.decode(arch), num_classes=1000) / 1e6:.4g} M, "
                    f"flops {expected / 1e6:.4g} MFLOPs @224px, 1000 classes")


def test_score_json_keeps_raw_numbers_with_their_unit_and_resolution(capsys):
    assert main(["score", "--proxy", "flops", "--arch", A, "--data", "gaussian", "--batch-size", "2", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["unit"] == "MFLOPs" and row["resolution_px"] == 32
    assert isinstance(row["score"], float) and row["score"] > 1  # millions, unrounded


@pytest.mark.parametrize(
    "argv, code, message",
    [
        (["score", "--proxy", "grad_nom", "--arch", A, "--data", "gaussian"], 2, "did you mean 'grad_norm'"),
        (["score", "--proxy", "params", "--arch", "|conv~0|+|", "--data", "gaussian"], 3, "malformed NB201 arch"),
        (["score", "--proxy", "params", "--arch", A.replace("avg_pool", "max_pool"), "--data", "gaussian"], 3,
         "max_pool_3x3"),
        (["score", "--space", "darts9", "--proxy", "params", "--arch", A], 2, "unknown search space"),
        (["score", "--proxy", "params,params", "--arch", A, "--data", "gaussian"], 2, "duplicates"),
        (["score", "--proxy", "params", "--arch", A, "--data", "gaussian", "--batch-size", "0"], 2, "batch-size"),
        (["score", "--proxy", "naswot", "--arch", A, "--data-dir", "/nonexistent/rznas-data"], 2,
         "/nonexistent/rznas-data"),
        (["score", "--proxy", "params", "--arch-file", "/nonexistent/archs.txt", "--data", "gaussian"], 2,
         "does not exist"),
    ],
)
def test_bad_input_gives_a_clear_error_and_exit_code(argv, code, message, capsys):
    assert main(argv) == code
    assert message in capsys.readouterr().err


def test_missing_data_folder_names_the_env_var(monkeypatch, capsys):
    """A data-dependent proxy gets CIFAR-10 by default; without it the error says where rznas looked."""
    monkeypatch.delenv("RZNAS_DATA_DIR", raising=False)
    assert main(["score", "--proxy", "naswot", "--arch", A]) == 2
    assert "RZNAS_DATA_DIR" in capsys.readouterr().err


def test_arch_file_errors_name_the_line(tmp_path, capsys):
    arch_file = tmp_path / "archs.txt"
    arch_file.write_text(f"{A}\n|bad|\n")
    assert main(["score", "--proxy", "params", "--arch-file", str(arch_file), "--data", "gaussian"]) == 3
    assert f"{arch_file}:2" in capsys.readouterr().err


# --- rznas bench correlation -------------------------------------------------------------------


def test_bench_correlation_smoke_and_resume(tmp_path, capsys):
    root = require_shared("cifar10/cifar-10-batches-py").parents[1]
    argv = [
        "bench", "correlation", "--space", "nb201", "--dataset", "cifar10", "--proxies", "params,grad_norm",
        "--samples", "5", "--seed", "0", "--batch-size", "8", "--data-dir", str(root), "--out", str(tmp_path), "--json",
    ]
    assert main(argv) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["samples"] == 5 and summary["probe"]["source"] == "cifar10:train"
    assert summary["probe"]["batch_size"] == 8 and summary["ground_truth"].startswith("compact-json:")
    assert "--samples 5" in summary["command"] and "--probe-data cifar10" in summary["command"]
    assert set(summary["results"]) == {"params", "grad_norm"}
    assert "[5/5]" in captured.err
    for ext in ("json", "md", "jsonl"):
        assert Path(summary["files"][ext]).is_file()
    assert main(argv[:-1]) == 0  # same arguments: everything is resumed from the JSONL
    captured = capsys.readouterr()
    assert "5/5 architectures already scored" in captured.err
    assert "| params |" in captured.out


def test_bench_imagenet16_needs_an_explicit_probe_choice(tmp_path, capsys):
    root = require_shared("nb201").parent
    argv = ["bench", "correlation", "--dataset", "imagenet16", "--proxies", "params", "--samples", "2",
            "--data-dir", str(root), "--out", str(tmp_path), "--quiet"]
    assert main(argv) == 2
    assert "--probe-data cifar10" in capsys.readouterr().err
    assert main([*argv, "--probe-data", "cifar10", "--batch-size", "4", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["probe"]["source"] == "cifar10:train@16px" and summary["probe"]["num_classes"] == 120
    assert summary["results"]["params"]["n"] == 2


def test_bench_bad_dataset_and_missing_ground_truth(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("RZNAS_NB201_DIR", raising=False)
    monkeypatch.delenv("RZNAS_DATA_DIR", raising=False)
    base = ["bench", "correlation", "--proxies", "params", "--samples", "2", "--out", str(tmp_path)]
    assert main([*base, "--dataset", "cifar10"]) == 2
    assert "RZNAS_NB201_DIR" in capsys.readouterr().err
    root = require_shared("nb201").parent
    assert main([*base, "--dataset", "svhn", "--data-dir", str(root)]) == 2
    assert "unknown NB201 dataset" in capsys.readouterr().err


# --- the real process: exit codes as a shell sees them -----------------------------------------


def run_cli(*args: str, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    env.pop("RZNAS_DATA_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "rznas.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.mark.slow  # four interpreter starts, each importing torch
def test_process_exit_codes():
    ok = run_cli("score", "--proxy", "params", "--arch", A, "--data", "gaussian", "--json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["score"] == pytest.approx(params_of(A))
    unknown = run_cli("score", "--proxy", "nope", "--arch", A, "--data", "gaussian")
    assert unknown.returncode == 2 and "unknown proxy 'nope'" in unknown.stderr
    malformed = run_cli("score", "--proxy", "params", "--arch", "|nor_conv_3x3~1|", "--data", "gaussian")
    assert malformed.returncode == 3 and "malformed" in malformed.stderr
    missing = run_cli("score", "--proxy", "naswot", "--arch", A)
    assert missing.returncode == 2 and "RZNAS_DATA_DIR" in missing.stderr
    assert "Traceback" not in unknown.stderr + malformed.stderr + missing.stderr


def test_search_prints_the_best_score_with_its_proxy_and_unit(tmp_path, capsys):
    argv = ["search", "--proxy", "params", "--proposer", "random", "--population", "2", "--iterations", "1",
            "--score-cache", "none", "--quiet", "--out", str(tmp_path / "run")]
    assert main(argv) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("proxy score:"))
    assert line.endswith(")") and " M (params, trial " in line
