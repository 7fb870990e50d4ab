"""Make docs/dashboard.png: a real search (embedded local LLM, synflow) seen live in `rznas dashboard`.

    python scripts/dashboard_screenshot.py --out docs/dashboard.png

Starts `rznas search` (default settings but a small budget) in a temporary folder, waits until
it has committed a few evolution iterations, serves `rznas dashboard` on a free port, opens the
page in Debian's headless chromium (Playwright), opens the newest mutation call and saves a
full-page screenshot. Needs rznas[dashboard], playwright and /usr/bin/chromium.
"""
from __future__ import annotations

import argparse
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def committed(run_dir: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{run_dir / 'run.sqlite'}?mode=ro", uri=True, timeout=5)
        try:
            return db.execute("SELECT COUNT(*) FROM trials").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/dashboard.png")
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--shoot-after", type=int, default=5, help="evolution iterations committed before the shot")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="rznas-dashboard-shot-"))
    run_dir = work / "runs" / "synflow-llm-seed0"
    search = subprocess.Popen([sys.executable, "-m", "rznas.cli", "search", "--proxy", "synflow",
                               "--population", str(args.population), "--iterations", str(args.iterations),
                               "--seed", "0", "--score-cache", "none", "--out", str(run_dir), "--quiet"])
    served = None
    try:
        while committed(run_dir) < args.population + args.shoot_after:
            if search.poll() is not None:
                break
            time.sleep(0.5)
        served = subprocess.Popen([sys.executable, "-m", "rznas.cli", "dashboard", str(work / "runs"), "--port", "0"],
                                  stdout=subprocess.PIPE, text=True)
        url = served.stdout.readline().split(" at ", 1)[1].split()[0]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(url)
            page.wait_for_function("Number(document.body.dataset.trials) > 0")
            page.locator("#calls tbody tr", has_text="mutate").first.click()
            page.locator("#call-detail pre.reply").wait_for()
            page.wait_for_timeout(500)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=args.out, full_page=True)
            status = page.locator("#status").text_content()
            trials = page.evaluate("document.body.dataset.trials")
            browser.close()
        print(f"{args.out}: run {status}, {trials} trials shown (run folder {run_dir})")
    finally:
        if served is not None:
            served.send_signal(signal.SIGINT)
            served.wait(timeout=30)
        if search.poll() is None:
            search.send_signal(signal.SIGINT)  # a clean stop: the run stays resumable
            search.wait(timeout=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
