"""`--device auto|cpu|cuda`: one resolution for every command and executor, stored in a run and
kept on resume, and `cuda` without a GPU is a clear error. CI has no GPU: these tests check the
selection logic and the errors; nothing here runs on a GPU."""
from __future__ import annotations

import pytest

from rznas.cli import main
from rznas.device import choose_device, detect_gpus
from rznas.errors import ConfigError
from rznas.search.config import SearchConfig
from rznas.search.executors import EvaluatorSpec, ProbeSpec, ProcessExecutor, create_executor
from rznas.search.progress import Progress
from rznas.search.runner import SearchRun
from rznas.store import RunStore

NO_GPU = detect_gpus() == 0
needs_no_gpu = pytest.mark.skipif(not NO_GPU, reason="checks the behaviour of a machine without a GPU")


def test_auto_picks_cuda_only_when_a_gpu_is_visible() -> None:
    assert choose_device("auto", gpus=lambda: 0) == "cpu"
    assert choose_device("auto", gpus=lambda: 2) == "cuda"
    assert choose_device("cpu", gpus=lambda: 2) == "cpu"  # an explicit cpu stays on the CPU
    assert choose_device("cuda", gpus=lambda: 1) == "cuda"


def test_cuda_without_a_gpu_and_unknown_names_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="--device cuda was asked for, but torch sees no CUDA device"):
        choose_device("cuda", gpus=lambda: 0)
    with pytest.raises(ConfigError, match="unknown device 'gpu'"):
        choose_device("gpu")
    with pytest.raises(ConfigError, match="device must be one of auto, cpu, cuda"):
        SearchConfig(device="tpu")


def test_the_process_executor_scores_where_the_spec_says_even_with_gpus_visible() -> None:
    """Before, a visible GPU silently promoted a cpu spec to cuda (inline stayed on the CPU)."""
    spec = EvaluatorSpec("nb201", "params", ProbeSpec(batch_size=4, chunks=1), device="cpu")
    with ProcessExecutor(spec, workers=1, gpus=1) as executor:
        assert executor.factory.device == "cpu" and executor.gpus == 0
    cuda = spec.with_device("cuda")
    with pytest.raises(ConfigError, match="no CUDA device is visible"):
        ProcessExecutor(cuda, workers=1, gpus=0)


def test_every_executor_gets_the_same_cache_key_for_the_same_device(tmp_path) -> None:
    from rznas.score_cache import ScoreCache

    spec = EvaluatorSpec("nb201", "params", ProbeSpec(batch_size=4, chunks=1), device="cpu")
    with ScoreCache(tmp_path / "s.sqlite") as cache:
        inline = create_executor("inline", spec, cache=cache, evaluator=spec.build())
        process = create_executor("process", spec, workers=1, cache=cache)
        try:
            assert inline.context == process.context  # type: ignore[attr-defined]
        finally:
            inline.close()
            process.close()


@needs_no_gpu
def test_a_search_stores_the_resolved_device_and_keeps_it_on_resume(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    config = SearchConfig(proposer="random", proxy="params", population=2, iterations=1, batch_size=4,
                          probe_chunks=1, score_cache="none")
    assert config.device == "auto"
    run = SearchRun.start(config, out, progress=Progress(enabled=False))
    run.run()
    run.close()
    store = RunStore.open(out)
    try:
        assert store.config()["device"] == "cpu"  # auto, resolved at start on this GPU-less machine
    finally:
        store.close()
    capsys.readouterr()
    assert main(["search", "--resume", str(out), "--device", "cuda"]) == 2
    assert "only" in capsys.readouterr().err  # device is not a setting a resume may change


@needs_no_gpu
@pytest.mark.parametrize(
    "argv",
    [
        ["search", "--proposer", "random", "--population", "2", "--iterations", "1", "--device", "cuda"],
        ["score", "--proxy", "params", "--arch", "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "--device", "cuda"],
        ["cache", "precompute", "--proxy", "params", "--executor", "inline", "--limit", "1", "--device", "cuda"],
        ["bench", "correlation", "--dataset", "cifar10", "--proxies", "params", "--samples", "2", "--device", "cuda"],
    ],
    ids=["search", "score", "cache-precompute", "bench-correlation"],
)
def test_cuda_without_a_gpu_exits_2_with_a_clear_message(tmp_path, monkeypatch, capsys, argv) -> None:
    monkeypatch.setenv("RZNAS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert "--device cuda was asked for, but torch sees no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # nothing was started
