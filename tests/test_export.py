"""Export: standalone PyTorch source (imported without rznas) and ONNX, equal outputs."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass

import pytest
import torch

from rznas import ConfigError
from rznas.cli import main
from rznas.export import _Closure, export_onnx, export_pytorch, run_onnx, standalone_source
from rznas.spaces import get_space
from rznas.spaces.darts import DARTS_V2
from rznas.spaces.nb201 import NB201Space

# Imports a generated file with every rznas import blocked, and writes its outputs.
RUNNER = textwrap.dedent(
    """
    import importlib.abc, importlib.util, sys, torch

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "rznas" or name.startswith("rznas."):
                raise ImportError("rznas is blocked in this process")
            return None

    sys.meta_path.insert(0, Block())
    py, pt, x_path, out_path = sys.argv[1:]
    spec = importlib.util.spec_from_file_location("exported", py)
    module = importlib.util.module_from_spec(spec)
    sys.modules["exported"] = module
    spec.loader.exec_module(module)
    model = module.load_model(pt)
    with torch.no_grad():
        torch.save(model(torch.load(x_path)), out_path)
    assert not any(m == "rznas" or m.startswith("rznas.") for m in sys.modules), "rznas was imported"
    """
)


def trained_like(model: torch.nn.Module) -> torch.nn.Module:
    """Perturb weights and BN statistics so that the check cannot pass with default values."""
    torch.manual_seed(5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.uniform_(0.5, 2.0)
            elif name.endswith("running_mean"):
                b.normal_(0, 0.1)
    return model.eval()


@pytest.mark.parametrize(
    "space, text",
    [
        (get_space("darts", channels=8, layers=5, auxiliary=True), DARTS_V2),
        (NB201Space(channels=8, cells_per_stage=1), "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"),
    ],
    ids=["darts", "nb201"],
)
def test_standalone_file_runs_without_rznas(tmp_path, space, text):
    arch = space.decode(text)
    torch.manual_seed(0)
    model = trained_like(space.build(arch, num_classes=7))
    py_path, pt_path = export_pytorch(space, arch, tmp_path, num_classes=7, model=model)
    source = py_path.read_text()
    assert "rznas" not in source.replace("exported by rznas", "")  # no rznas import
    assert "ARCHITECTURE = " in source
    x = torch.randn(3, 3, 32, 32)
    torch.save(x, tmp_path / "x.pt")
    subprocess.run(
        [sys.executable, "-c", RUNNER, str(py_path), str(pt_path), str(tmp_path / "x.pt"), str(tmp_path / "y.pt")],
        check=True, cwd=tmp_path, capture_output=True, text=True,
    )
    with torch.no_grad():
        expected = model(x)
    assert torch.allclose(torch.load(tmp_path / "y.pt"), expected, atol=1e-5)


@pytest.mark.parametrize("name", ["zen_resnet", "mobilenet", "maedet"])
def test_macro_spaces_export_standalone(tmp_path, name):
    from rznas.spaces import SPACES

    if name not in SPACES:
        pytest.skip(f"space {name} is not registered")
    import random

    space = get_space(name)
    arch = space.sample(random.Random(1))
    torch.manual_seed(0)
    model = trained_like(space.build(arch, num_classes=5))
    py_path, pt_path = export_pytorch(space, arch, tmp_path, num_classes=5, model=model)
    x = torch.randn(2, 3, 32, 32)
    torch.save(x, tmp_path / "x.pt")
    subprocess.run(
        [sys.executable, "-c", RUNNER, str(py_path), str(pt_path), str(tmp_path / "x.pt"), str(tmp_path / "y.pt")],
        check=True, cwd=tmp_path, capture_output=True, text=True,
    )
    with torch.no_grad():
        assert torch.allclose(torch.load(tmp_path / "y.pt"), model(x), atol=1e-5)


@pytest.mark.parametrize("exporter", ["torchscript", pytest.param("dynamo", marks=pytest.mark.slow)])
def test_onnx_matches_pytorch(tmp_path, exporter):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    if exporter == "dynamo":
        pytest.importorskip("onnxscript")
    space = get_space("darts", channels=8, layers=5)
    torch.manual_seed(0)
    model = trained_like(space.build(space.decode(DARTS_V2)))
    path = export_onnx(model, tmp_path / "m.onnx", exporter=exporter)
    x = torch.randn(4, 3, 32, 32)  # batch 4 although exported with batch 1: dynamic batch axis
    with torch.no_grad():
        expected = model(x)
    assert torch.allclose(run_onnx(path, x), expected, atol=1e-4)


def test_missing_onnx_is_a_clear_error(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    space = get_space("darts", channels=8, layers=5)
    with pytest.raises(ConfigError, match=r"pip install 'rznas\[onnx\]'"):
        export_onnx(space.build(space.decode(DARTS_V2)), tmp_path / "m.onnx")


def test_space_without_export_entry_is_a_clear_error():
    class Other(NB201Space):
        name = "other"

    space = Other()
    with pytest.raises(ConfigError, match="no standalone PyTorch export"):
        standalone_source(space, space.decode("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"))


@dataclass(frozen=True)
class _Spec:
    width: int
    kind: str = "a"


def test_closure_renders_literals_and_dataclasses():
    closure = _Closure()
    assert closure.render((1, ("x", 2.5), [None, True]), "t") == "(1, ('x', 2.5), [None, True])"
    assert closure.render((_Spec(3),), "t") == "(_Spec(width=3, kind='a'),)"
    with pytest.raises(ConfigError, match="no literal form"):
        closure.render(object(), "t")


def test_cli_export_both_formats(tmp_path, capsys):
    pytest.importorskip("onnx")
    out = tmp_path / "e"
    assert main(["export", "--space", "darts", "--arch", "DARTS_V2", "--space-option", "channels=8",
                 "--space-option", "layers=5", "--num-classes", "4", "--onnx-exporter", "torchscript",
                 "--out", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["num_classes"] == 4
    assert {p.name for p in out.iterdir()} >= {"model.py", "model.pt", "model.onnx"}
    assert main(["export", "--space", "darts", "--arch", "bogus", "--out", str(out)]) == 3
