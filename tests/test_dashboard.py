"""`rznas dashboard`: the JSON API over a real server, and the page in a real headless Chromium
(Debian's chromium driven by Playwright) following a live search."""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from rznas.cli import main
from rznas.store import DB_NAME

from .live_search import POPULATION, random_run, start_slow_search, store_bytes, wait_for_trials


def _require_extra() -> None:
    """The dashboard extra (in the test extra); skip without it, fail when CI=true."""
    from rznas.dashboard import require_extra
    from rznas.errors import ConfigError

    try:
        require_extra()
    except ConfigError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(str(exc))
        pytest.skip(str(exc), allow_module_level=True)


_require_extra()

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def require_browser() -> str:
    """Debian's chromium and Playwright for Python; skip when absent, fail when CI=true (.ci/run installs them)."""
    chromium = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    problem = None
    if chromium is None:
        problem = "chromium is not installed (apt-get install -y chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "playwright is not installed (pip install -e '.[test]')"
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(problem)
        pytest.skip(problem)
    return chromium


@contextmanager
def dashboard(path: Path, *extra: str) -> Iterator[str]:
    """`rznas dashboard PATH --port 0` in a child process; yields the URL it prints."""
    process = subprocess.Popen(
        [sys.executable, "-m", "rznas.cli", "dashboard", str(path), "--port", "0", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = process.stdout.readline()
        assert "http://127.0.0.1:" in line, f"no URL printed: {line!r} {process.stderr.read()[-2000:]}"
        yield line.split(" at ", 1)[1].split()[0]
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_api_serves_runs_calls_and_an_optional_final_selection(tmp_path):
    root = tmp_path / "runs"
    random_run(root / "a", 0)
    random_run(root / "b", 1)
    # a final-selection stage's table (another stage adds it; the dashboard shows whatever it holds)
    db = sqlite3.connect(root / "b" / DB_NAME)
    db.execute("CREATE TABLE final_selection (rank INTEGER, arch_id TEXT, proxy_score REAL, trained_acc REAL)")
    db.execute("INSERT INTO final_selection VALUES (1, 'abc', 0.5, 91.25)")
    db.commit()
    db.close()
    before = store_bytes(root / "a")
    with dashboard(root) as url:
        status, listing = get(url + "api/runs")
        assert status == 200 and [r["id"] for r in listing["runs"]] == ["a", "b"]
        assert all(r["status"] == "finished" for r in listing["runs"])
        status, run = get(url + "api/run?run=a")
        assert status == 200 and len(run["trials"]) == POPULATION + 3 and run["final_selection"] is None
        assert len(run["population"]) == POPULATION and run["series"][-1]["iteration"] == 3
        status, run_b = get(url + "api/run?run=b")
        assert run_b["final_selection"] == {"table": "final_selection",
                                            "columns": ["rank", "arch_id", "proxy_score", "trained_acc"],
                                            "rows": [[1, "abc", 0.5, 91.25]]}
        assert get(url + "api/run?run=../a")[0] == 404  # only discovered runs are served
        assert get(url + "api/call?run=a&id=x")[0] == 400
        assert get(url + "api/call?run=a&id=1")[0] == 404  # a random-proposer run has no LLM call
        with urllib.request.urlopen(url + "static/plotly.min.js", timeout=30) as response:
            assert response.status == 200 and b"plotly" in response.read(4096).lower()
    assert store_bytes(root / "a") == before


def test_missing_extra_is_a_clear_error(tmp_path, monkeypatch, capsys):
    random_run(tmp_path / "run", 0)
    monkeypatch.setitem(sys.modules, "plotly", None)  # what an install without rznas[dashboard] looks like
    assert main(["dashboard", str(tmp_path / "run"), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "missing: plotly" in err and "pip install 'rznas[dashboard]'" in err


@pytest.mark.slow
def test_page_follows_a_live_search_in_headless_chromium(tmp_path):
    chromium = require_browser()
    from playwright.sync_api import sync_playwright

    iterations = 12
    out = tmp_path / "runs" / "live"
    gate = tmp_path / "gate"  # the search's LLM calls wait for it: the page must first show the live run
    search = start_slow_search(tmp_path, out, iterations=iterations, delay=0.05, gate=gate)
    try:
        wait_for_trials(search, out, POPULATION)
        with dashboard(tmp_path / "runs", "--refresh-s", "0.5") as url, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.goto(url + "?run=live")
                page.wait_for_function("document.body.dataset.status === 'running'", timeout=60_000)
                page.wait_for_function(f"Number(document.body.dataset.trials) >= {POPULATION}", timeout=60_000)
                assert page.locator("#status").text_content() == "running"
                assert "live: refreshing" in page.locator("#refresh-note").text_content()
                assert page.locator("#calls tbody tr").count() == 0
                gate.touch()
                # the page updates as the search commits trials, without a reload
                page.wait_for_function(f"Number(document.body.dataset.trials) > {POPULATION + 1}", timeout=60_000)
                page.wait_for_function("document.querySelectorAll('#calls tbody tr').length > 0", timeout=60_000)
                assert page.locator("#chart .main-svg").count() > 0
                # an LLM call: prompt, whole reply and the trial's reflection
                page.locator("#calls tbody tr", has_text="mutate").first.click()
                detail = page.locator("#call-detail")
                detail.locator("pre.prompt").first.wait_for(timeout=30_000)
                text = detail.text_content()
                assert "Mutate the below architecture." in text and '"arch"' in text
                assert "tokens in" in text and "$" in text
                page.locator("#calls tbody tr", has_text="reflect").first.click()
                page.wait_for_function("document.querySelector('#call-detail h3').textContent.includes('reflect')",
                                       timeout=30_000)
                assert "reflection of this trial" in detail.text_content()
                assert search.wait(timeout=300) == 0, search.stderr.read().decode()[-2000:]
                page.wait_for_function("document.body.dataset.status === 'finished'", timeout=60_000)
                assert page.locator("#trials tbody tr").count() == POPULATION + iterations
                assert page.locator("#population tbody tr").count() == POPULATION
                assert f"{iterations} / {iterations}" in page.locator("#summary").text_content()
            finally:
                browser.close()
    finally:
        if search.poll() is None:
            search.kill()
            search.wait()
