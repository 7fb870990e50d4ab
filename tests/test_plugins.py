"""Plug-ins through entry points (``rznas.spaces``, ``rznas.proxies``).

Three layers, cheapest first:
* registry mechanics on a private entry-point group, with distributions written as
  ``.dist-info`` folders on a temporary ``sys.path`` entry (what ``pip install`` leaves behind);
* the example package ``examples/rznas-plugin-example`` seen through its own declared entry
  points in a subprocess (``rznas list``, ``rznas score``, the LLM prompt, and the registry-driven
  conformance suites run on it), so this test process's registries never see it;
* (slow) a real ``pip install -e examples/rznas-plugin-example`` into a throwaway venv layered
  over the running environment.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest

from rznas import PluginError
from rznas.registry import Registry

from .conftest import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "rznas-plugin-example"
GROUP = "rznas.test_things"


def write_distribution(root: Path, name: str, entry_points: dict[str, dict[str, str]], modules: dict[str, str]) -> Path:
    """An installed distribution as pip leaves it: modules plus NAME-VERSION.dist-info with entry_points.txt."""
    for filename, source in modules.items():
        (root / filename).parent.mkdir(parents=True, exist_ok=True)
        (root / filename).write_text(source)
    info = root / f"{name.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    lines = []
    for group, entries in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{key} = {value}" for key, value in entries.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return root


def things(check=None) -> Registry:
    registry: Registry = Registry("thing", entry_points=GROUP, check=check)
    registry.register("builtin")(object())
    return registry


# --- registry mechanics -----------------------------------------------------------------------


def test_plugins_load_lazily_once_and_record_their_origin(tmp_path, monkeypatch):
    write_distribution(tmp_path, "good-things", {GROUP: {"alpha": "good_things:Alpha"}},
                       {"good_things.py": "LOADS = []\nLOADS.append(1)\nclass Alpha:\n    pass\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = things()
    assert "good_things" not in sys.modules  # nothing is imported before the first lookup
    assert registry.names() == ["alpha", "builtin"]
    module = sys.modules["good_things"]
    assert registry.get("alpha") is module.Alpha and "alpha" in registry and len(registry) == 2
    assert module.LOADS == [1]  # loaded once
    origin = registry.plugins["alpha"]
    assert (origin.distribution, origin.version, origin.value) == ("good-things", "0.1.0", "good_things:Alpha")
    assert "builtin" not in registry.plugins
    monkeypatch.delitem(sys.modules, "good_things")


def test_a_plugin_that_registers_itself_by_decorator_is_accepted(tmp_path, monkeypatch):
    registry = things()
    monkeypatch.setitem(sys.modules, "shared_registry_for_test", type(sys)("shared_registry_for_test"))
    sys.modules["shared_registry_for_test"].REGISTRY = registry
    source = "from shared_registry_for_test import REGISTRY\n@REGISTRY.register('beta')\nclass Beta:\n    pass\n"
    write_distribution(tmp_path, "self-registering", {GROUP: {"beta": "self_registering:Beta"}},
                       {"self_registering.py": source})
    monkeypatch.syspath_prepend(str(tmp_path))
    assert registry.names() == ["beta", "builtin"] and "beta" in registry.plugins
    monkeypatch.delitem(sys.modules, "self_registering")


def test_a_broken_plugin_is_a_clear_error_naming_it_every_time(tmp_path, monkeypatch):
    write_distribution(tmp_path, "broken-things", {GROUP: {"gamma": "broken_things:Gamma"}},
                       {"broken_things.py": "import a_module_that_does_not_exist\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = things()
    for lookup in (registry.names, lambda: registry.get("builtin"), lambda: "gamma" in registry):
        with pytest.raises(PluginError) as info:
            lookup()
        message = str(info.value)
        assert "thing plug-in 'gamma' from broken-things 0.1.0 (broken_things:Gamma)" in message
        assert "ModuleNotFoundError" in message and "pip uninstall broken-things" in message
    assert PluginError.exit_code == 2


def test_a_plugin_may_not_take_a_registered_name(tmp_path, monkeypatch):
    write_distribution(tmp_path, "clashing", {GROUP: {"builtin": "clashing:Thing"}},
                       {"clashing.py": "class Thing:\n    pass\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match="the name 'builtin' is already taken by rznas itself; rename the entry point"):
        things().names()
    monkeypatch.delitem(sys.modules, "clashing")


def test_the_registry_check_refuses_the_wrong_kind_of_object(tmp_path, monkeypatch):
    from rznas.proxies.base import check_proxy_plugin
    from rznas.spaces.base import check_space_plugin

    write_distribution(tmp_path, "wrong-kind", {GROUP: {"delta": "wrong_kind:NotAProxy"}},
                       {"wrong_kind.py": "class NotAProxy:\n    name = 'delta'\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match=r"'delta' .* is not a valid thing: .*does not subclass rznas.proxies.Proxy"):
        things(check_proxy_plugin).names()
    with pytest.raises(TypeError, match="does not subclass rznas.spaces.SearchSpace"):
        check_space_plugin("delta", sys.modules["wrong_kind"].NotAProxy)
    from rznas.spaces.nb201 import NB201Space

    with pytest.raises(ValueError, match="name attribute is 'nb201'; it must equal the entry point name 'other'"):
        check_space_plugin("other", NB201Space)
    monkeypatch.delitem(sys.modules, "wrong_kind")


def test_the_cli_reports_a_broken_plugin_without_a_traceback(tmp_path):
    write_distribution(tmp_path, "broken-space", {"rznas.spaces": {"broken": "broken_space:Space"}},
                       {"broken_space.py": "raise RuntimeError('bad plug-in code')\n"})
    result = run_python(["-m", "rznas.cli", "list", "spaces"], extra_path=[tmp_path])
    assert result.returncode == 2
    assert "search space plug-in 'broken' from broken-space 0.1.0" in result.stderr
    assert "RuntimeError: bad plug-in code" in result.stderr and "Traceback" not in result.stderr


# --- the example package, through its declared entry points ------------------------------------


def run_python(args: list[str], *, extra_path: list[Path], cwd: Path = REPO_ROOT, python: str = sys.executable,
               timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    paths = [str(p) for p in extra_path] + [str(REPO_ROOT / "src")] + [env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["OMP_NUM_THREADS"] = "1"  # tiny models: one thread is fastest on a shared 2-core machine
    return subprocess.run([python, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def example_installed(tmp_path_factory) -> list[Path]:
    """The example's dist-info, built from the entry points its pyproject.toml declares."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    root = tmp_path_factory.mktemp("site")
    write_distribution(root, project["name"], project["entry-points"], {})
    return [root, EXAMPLE / "src"]


EXAMPLE_SESSION = """
import contextlib, io, json, sys
from rznas.cli import main

def run(*argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()

results = {"list spaces": run("list", "spaces"), "list proxies": run("list", "proxies")}
results["score"] = run("score", "--space", "tinychain", "--proxy", "grad_l1,grad_norm",
                       "--arch", "conv3x3>skip>conv1x1>conv3x3", "--data", "gaussian", "--batch-size", "4", "--json")
results["search"] = run("search", "--space", "tinychain", "--proxy", "grad_l1", "--proposer", "random",
                        "--data", "gaussian", "--population", "3", "--iterations", "2", "--score-cache", "none", "--quiet", "--out", sys.argv[1])
from rznas.proxies import get_proxy
from rznas.search.prompt import MutationPrompt
from rznas.spaces import get_space
results["prompt"] = (0, MutationPrompt(get_space("tinychain"), get_proxy("grad_l1")).system)
print(json.dumps(results))
"""


def test_the_example_plugin_works_in_every_command_and_the_prompt(example_installed, tmp_path):
    """One subprocess: `rznas list`, `score`, `search` and the LLM prompt, with the example installed."""
    session = run_python(["-c", EXAMPLE_SESSION, str(tmp_path / "run")], extra_path=example_installed)
    assert session.returncode == 0, session.stderr
    results = json.loads(session.stdout.splitlines()[-1])
    assert {name: code for name, (code, _) in results.items()} == dict.fromkeys(results, 0), session.stderr
    spaces, proxies = results["list spaces"][1].splitlines(), results["list proxies"][1].splitlines()
    assert any(line.startswith("tinychain ") and line.endswith("[plug-in: rznas-plugin-example 0.1.0]") for line in spaces)
    assert any(line.startswith("grad_l1 ") and line.endswith("[plug-in: rznas-plugin-example 0.1.0]") for line in proxies)
    assert any(line.startswith("nb201 ") for line in spaces) and any(line.startswith("synflow ") for line in proxies)
    rows = [json.loads(line) for line in results["score"][1].splitlines()]
    assert [row["proxy"] for row in rows] == ["grad_l1", "grad_norm"] and rows[0]["score"] > 0
    assert "best architecture: " in results["search"][1] and (tmp_path / "run" / "best_arch.json").is_file()
    assert re.search(r"^proxy score: \S+ \(grad_l1, trial \d+\)$", results["search"][1], flags=re.M)
    prompt = results["prompt"][1]
    assert "class GradL1(Proxy)" in prompt and "def total_abs" in prompt  # the plug-in's helper is shown too
    assert "class TinyChainNet" in prompt and "def make_op" in prompt


@pytest.mark.slow
def test_the_registry_driven_conformance_suites_pass_for_the_example_plugin(example_installed):
    """The suites parametrised over SPACES / PROXIES pick the plug-in up and pass (run in a subprocess)."""
    selected = "tinychain or grad_l1 or scores_differ or shared_passes"
    result = run_python(
        ["-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", "tests/test_space_conformance.py", "tests/test_proxies.py",
         "tests/test_prompt.py", "-k", selected],
        extra_path=example_installed,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary
    passed = int(summary.split(" passed")[0].split()[-1])
    assert passed >= 12, summary  # 8 space tests for tinychain, 2 proxy tests for grad_l1, prompt, shared


# --- a real pip install -e -------------------------------------------------------------------------


@pytest.mark.slow
def test_pip_install_e_of_the_example_registers_it(tmp_path):
    """`pip install -e examples/rznas-plugin-example` into a throwaway venv that sees this environment
    (a .pth runs site.addsitedir on the running interpreter's site-packages, so rznas and torch come
    from here and nothing is downloaded)."""
    import site
    import sysconfig

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / ("Scripts" if os.name == "nt" else "bin") / "python"
    target = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                            capture_output=True, text=True, check=True).stdout.strip()
    parents = [sysconfig.get_paths()["purelib"], *site.getsitepackages()]
    lines = [f"import site; site.addsitedir({p!r})" for p in dict.fromkeys(parents)]
    (Path(target) / "_rznas_parent_env.pth").write_text("\n".join(lines) + "\n")
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-e", str(EXAMPLE)],
        capture_output=True, text=True, timeout=600,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    listed = run_python(["-m", "rznas.cli", "list", "proxies"], extra_path=[], python=str(python))
    assert listed.returncode == 0, listed.stderr
    assert "grad_l1 " in listed.stdout and "[plug-in: rznas-plugin-example 0.1.0]" in listed.stdout
    spaces = run_python(["-m", "rznas.cli", "list", "spaces"], extra_path=[], python=str(python))
    assert "tinychain " in spaces.stdout
