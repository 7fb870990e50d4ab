"""Search quality at the paper's scale on NAS-Bench-201: the RZ-NAS table, resumable.

For every (proxy, proposer, seed) of a plan this runs one ``rznas search`` in its own run
directory (``RUNS/<row name>``): skipped when it finished, resumed when an earlier
invocation was interrupted, started otherwise; up to ``jobs`` searches at once, each in
its own process (a search stays sequential and deterministic; two at once use both
cores). The score cache is shared by all of them (scores do not depend on the search
seed, see :mod:`rznas.scoring`), so every later seed and proposer reads what earlier
ones scored.

Each finished run becomes one row (arch, 200-epoch test accuracy on the three datasets,
evaluations, proposal states, tokens, seconds, final selection); rows accumulate in
``OUT.json`` across invocations (a row is keyed by its name, so an invocation adds or
refreshes its rows and keeps the others) and ``OUT.md`` tabulates all of them: per
(configuration) the mean +- std over seeds next to the paper's rows, random search by
validation accuracy and the largest-#params pick at the same number of evaluations, and
the benchmark optimum.
"""
from __future__ import annotations

import json
import math
import os
import shlex
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from ..errors import ConfigError, DataError

DATASETS = ("cifar10", "cifar100", "imagenet16")
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "imagenet16": 120}
#: the paper's five NB201 proxies (RZ-NAS section 4)
PAPER_PROXIES = ("grasp", "grad_norm", "synflow", "zen", "zico")
#: RZ-NAS Table (NB201 test accuracy %, mean of 3 runs, population 100, 1500 iterations, GPT-4o)
PAPER_ROWS: dict[str, dict[str, tuple[float, float, float]]] = {
    "grasp": {"plain proxy search": (89.34, 60.89, 22.99), "RZ-NAS (GPT-4o)": (92.79, 69.34, 43.16)},
    "grad_norm": {"plain proxy search": (89.27, 61.06, 24.10), "RZ-NAS (GPT-4o)": (93.99, 71.61, 42.61)},
    "synflow": {"plain proxy search": (93.48, 71.35, 45.12), "RZ-NAS (GPT-4o)": (93.47, 73.21, 46.16)},
    "zen": {"plain proxy search": (93.76, 70.67, 41.44), "RZ-NAS (GPT-4o)": (93.48, 71.35, 45.12)},
    "zico": {"plain proxy search": (93.35, 70.71, 46.18), "RZ-NAS (GPT-4o)": (94.24, 73.30, 46.24)},
}
OPTIMUM = (94.37, 73.51, 47.31)
#: the project's target for the best offline configuration (issue "Search quality at the paper's scale")
TARGET = (94.30, 73.40, 46.60)
#: proposal states that were scored by the proxy (an evaluation)
EVALUATED_STATES = ("complete", "proxy_error")


@dataclass(frozen=True)
class PlanEntry:
    """One search of the plan: a configuration (proxy, proposer, extra flags) at one seed."""

    proxy: str
    proposer: str
    seed: int
    variant: str = "paper"  # names the extra flags; part of the row name when not "paper"
    flags: tuple[str, ...] = ()

    @property
    def configuration(self) -> str:
        """The row group: every seed of one configuration."""
        suffix = "" if self.variant == "paper" else f"-{self.variant}"
        return f"{self.proxy}-{self.proposer}{suffix}"

    @property
    def name(self) -> str:
        """The run directory's name and the row's key."""
        return f"{self.configuration}-seed{self.seed}"


@dataclass(frozen=True)
class Protocol:
    """The settings every search of the plan shares (the paper's NB201 protocol by default)."""

    population: int = 100
    iterations: int = 1500
    data: str = "cifar10"
    llm: str = "local:q8_0"
    score_seed: int = 0
    common_flags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.population < 1 or self.iterations < 0:
            raise ConfigError(f"population must be >= 1 and iterations >= 0, got {self.population} and {self.iterations}")


def make_plan(
    proxies: Sequence[str], proposers: Sequence[str], seeds: Sequence[int], *, variant: str = "paper", flags: Sequence[str] = ()
) -> list[PlanEntry]:
    """Every (proxy, proposer, seed); seeds outermost so an interrupted plan leaves whole seeds behind."""
    if not proxies or not proposers or not seeds:
        raise ConfigError("the plan needs at least one proxy, one proposer and one seed")
    for values, what in ((proxies, "proxy"), (proposers, "proposer"), (seeds, "seed")):
        if len(set(values)) != len(values):
            raise ConfigError(f"{what} list has duplicates: {','.join(map(str, values))}")
    return [PlanEntry(proxy, proposer, seed, variant, tuple(flags)) for seed in seeds for proposer in proposers for proxy in proxies]


def search_command(entry: PlanEntry, protocol: Protocol, run_dir: Path, *, executable: Sequence[str] = ("rznas",)) -> list[str]:
    """The ``rznas search`` command line of one plan entry (what a user reruns)."""
    command = [
        *executable, "search", "--space", "nb201", "--proxy", entry.proxy, "--proposer", entry.proposer,
        "--population", str(protocol.population), "--iterations", str(protocol.iterations),
        "--seed", str(entry.seed), "--score-seed", str(protocol.score_seed), "--data", protocol.data,
        "--out", str(run_dir), "--quiet",
    ]
    if entry.proposer == "llm":
        command += ["--llm", protocol.llm]
    return command + list(protocol.common_flags) + list(entry.flags)


def resume_command(run_dir: Path, *, executable: Sequence[str] = ("rznas",)) -> list[str]:
    return [*executable, "search", "--resume", str(run_dir), "--quiet"]


def run_state(run_dir: Path) -> str:
    """'finished' (best_arch.json and a finished status), 'started' (a store), or 'new'."""
    if not (run_dir / "run.sqlite").exists():
        return "new"
    status = read_store(run_dir).get("status")
    if (run_dir / "best_arch.json").exists() and status == "finished":
        return "finished"
    return "started"


def read_store(run_dir: Path) -> dict[str, Any]:
    """Trial states, per-trial seconds, LLM usage and the run's status, read-only from its store."""
    uri = f"file:{(run_dir / 'run.sqlite').resolve()}?mode=ro"
    try:
        return _read_store(sqlite3.connect(uri, uri=True, timeout=30.0))
    except sqlite3.Error as exc:
        raise DataError(f"cannot read the run store of {run_dir}: {exc}; delete the run directory to start it again") from None


def _read_store(connection: sqlite3.Connection) -> dict[str, Any]:
    with closing(connection) as db:
        meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        states = dict(db.execute("SELECT state, COUNT(*) FROM trials WHERE iteration > 0 GROUP BY state").fetchall())
        initial = db.execute("SELECT COUNT(*) FROM trials WHERE iteration = 0").fetchone()[0]
        timings = [json.loads(t) for (t,) in db.execute("SELECT timings FROM trials")]
        scored = [e for (e,) in db.execute("SELECT encoded FROM trials WHERE state = 'complete' AND encoded IS NOT NULL")]
        calls = db.execute(
            "SELECT purpose, COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(latency_s) FROM llm_calls "
            "WHERE cache_hit = 0 GROUP BY purpose"
        ).fetchall()
    status = meta.get("status")
    try:
        status = json.loads(status) if status is not None else None
    except json.JSONDecodeError:
        pass
    if isinstance(status, dict):
        status = status.get("status")
    return {
        "status": status,
        "states": states,
        "initial_trials": initial,
        "seconds": sum(float(t.get("total_s", 0.0)) for t in timings),
        "scored_archs": scored,
        "llm": {p: {"calls": n, "input_tokens": i or 0, "output_tokens": o or 0, "seconds": s or 0.0} for p, n, i, o, s in calls},
    }


def collect_row(entry: PlanEntry, protocol: Protocol, run_dir: Path, command: str) -> dict[str, Any]:
    """One finished run as a row of search_paper_scale.json."""
    try:
        best = json.loads((run_dir / "best_arch.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{run_dir}/best_arch.json cannot be read: {exc}") from None
    bench = best.get("benchmark") or {}
    if any(d not in bench for d in DATASETS):
        raise DataError(
            f"{run_dir}: best_arch.json has no NB201 accuracies ({bench.get('skipped', 'no benchmark')}); "
            "set RZNAS_DATA_DIR or --nb201 so that the ground truth is found"
        )
    store = read_store(run_dir)
    visited = best_visited(store["scored_archs"])
    states = store["states"]
    iterations = sum(states.values())
    evaluations = store["initial_trials"] + sum(states.get(s, 0) for s in EVALUATED_STATES)
    llm = store["llm"]
    llm_seconds = sum(c["seconds"] for c in llm.values())
    return {
        "name": entry.name,
        "configuration": entry.configuration,
        **protocol_of(entry, protocol),
        "evaluations": evaluations,
        "proposals": {"total": iterations, **{s: n for s, n in sorted(states.items())}},
        # parents drawn again because all their children were evaluated (absent: runs before it)
        "parent_redraws": best.get("parent_redraws", 0),
        "final_selection": best.get("final_selection"),
        "arch": best["arch"],
        "score": best.get("score"),
        "test_acc": {d: bench[d]["test_acc"] for d in DATASETS},
        "val_acc": {d: bench[d]["val_acc"] for d in DATASETS},
        # the most accurate cell the search scored (what a perfect final selection could have returned)
        "best_visited_test_acc": visited,
        "seconds": store["seconds"],
        "llm_calls": llm,
        "llm_seconds_per_iteration": llm_seconds / iterations if iterations and llm else None,
        "tokens_per_iteration": (
            {
                "input": sum(c["input_tokens"] for c in llm.values()) / iterations,
                "output": sum(c["output_tokens"] for c in llm.values()) / iterations,
            }
            if iterations and llm
            else None
        ),
        "command": command,
        "run_dir": str(run_dir),
    }


def best_visited(encoded: Sequence[str]) -> dict[str, float] | None:
    """Per dataset, the highest 200-epoch test accuracy among the cells a run scored."""
    from .nb201_table import open_nb201

    if not encoded:
        return None
    truth = open_nb201()
    return {d: max(truth.lookup(arch, d).test_acc for arch in encoded) for d in DATASETS}


# --- running the plan ---------------------------------------------------------------------


def _still_running(processes: list[subprocess.Popen], seconds: float) -> list[subprocess.Popen]:
    """The processes that have not exited after waiting up to ``seconds`` in all."""
    deadline = time.monotonic() + seconds
    running = []
    for process in processes:
        try:
            process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            running.append(process)
    return running


@dataclass
class Runner:
    """Runs (or resumes, or skips) each plan entry; ``launch`` is a seam for tests."""

    protocol: Protocol
    runs: Path
    jobs: int = 1
    # this interpreter's rznas (the recorded commands say `rznas`, what a user types)
    executable: tuple[str, ...] = (sys.executable, "-m", "rznas")
    log: Callable[[str], None] = field(default=lambda line: print(line, file=sys.stderr, flush=True))
    #: runs one search command and returns its exit status; None: a child process of this one
    #: (stopped with it on an interrupt, see :meth:`stop_children`)
    launch: Callable[[list[str]], int] | None = None
    _children: set[subprocess.Popen] = field(default_factory=set, init=False, repr=False)
    _children_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def _launch_child(self, command: list[str]) -> int:
        process = subprocess.Popen(command)
        with self._children_lock:
            self._children.add(process)
        try:
            return process.wait()
        finally:
            with self._children_lock:
                self._children.discard(process)

    def stop_children(self, grace: float = 5.0, timeout: float = 60.0) -> None:
        """Stop the searches still running after an interrupt of this process, as Ctrl-C would, so
        that each store records an interrupted run that a rerun resumes.

        Ctrl-C in a terminal reaches the children too: they get ``grace`` seconds to stop by
        themselves; the rest (e.g. only this process got SIGTERM) get SIGTERM, which ``rznas search``
        handles like Ctrl-C, and are killed if they have not stopped after ``timeout``."""
        with self._children_lock:
            children = list(self._children)
        for process in _still_running(children, grace):
            process.terminate()
        for process in _still_running(children, timeout):
            process.kill()
            process.wait()

    def run_entry(self, entry: PlanEntry) -> str:
        """Make ``entry``'s run finished; returns what was done ('skipped', 'resumed', 'started')."""
        run_dir = self.runs / entry.name
        state = run_state(run_dir)
        if state == "finished":
            return "skipped"
        command = (
            resume_command(run_dir, executable=self.executable)
            if state == "started"
            else search_command(entry, self.protocol, run_dir, executable=self.executable)
        )
        self.log("$ " + shlex.join(command))
        start = time.perf_counter()
        code = (self.launch or self._launch_child)(command)
        if code != 0:
            raise DataError(f"{entry.name}: `{shlex.join(command)}` exited with status {code}; rerun to resume it")
        self.log(f"{entry.name}: done in {time.perf_counter() - start:.0f} s")
        return "resumed" if state == "started" else "started"

    def run(self, plan: Iterable[PlanEntry], on_done: Callable[[PlanEntry], None] | None = None) -> dict[str, str]:
        """Run the whole plan, ``jobs`` at a time, calling ``on_done`` after each finished entry;
        a failed entry is reported after the others ran."""
        entries = list(plan)
        if entries:
            self.runs.mkdir(parents=True, exist_ok=True)
        done: dict[str, str] = {}
        errors: list[str] = []

        def one(entry: PlanEntry) -> str:
            what = self.run_entry(entry)
            if on_done is not None:
                on_done(entry)
            return what

        with ThreadPoolExecutor(max_workers=max(1, self.jobs)) as pool:
            try:
                for entry, future in [(e, pool.submit(one, e)) for e in entries]:
                    try:
                        done[entry.name] = future.result()
                    except DataError as exc:
                        errors.append(str(exc))
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM: start no other run, stop the running ones cleanly
                pool.shutdown(wait=False, cancel_futures=True)
                self.stop_children()
                raise
        if errors:
            raise DataError("; ".join(errors))
        return done


# --- the result files ---------------------------------------------------------------------


def load_rows(path: Path) -> dict[str, dict[str, Any]]:
    """The rows already in ``path`` (by name); {} when there is no file yet."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not JSON ({exc}); repair or delete it") from None
    rows = data.get("rows", []) if isinstance(data, dict) else data
    return {row["name"]: row for row in rows if isinstance(row, dict) and "name" in row}


def mean_std(values: Sequence[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def random_baselines(seeds: Sequence[int], evaluations: int) -> dict[str, dict[str, dict[str, float]]]:
    """Random search by validation accuracy, and the largest-#params pick, of ``evaluations`` seeded cells."""
    from ..spaces import get_space
    from .correlation import sample_architectures
    from .nb201_table import open_nb201

    space = get_space("nb201")
    truth = open_nb201()
    by_val: dict[str, list[float]] = {d: [] for d in DATASETS}
    by_params: dict[str, list[float]] = {d: [] for d in DATASETS}
    for seed in seeds:
        sample = sample_architectures(space, evaluations, seed)
        for d in DATASETS:
            accs = [truth.lookup(a, d) for a in sample]
            by_val[d].append(max(accs, key=lambda acc: acc.val_acc).test_acc)
            largest = max(sample, key=lambda a: space.count_params(a, num_classes=NUM_CLASSES[d]))
            by_params[d].append(truth.lookup(largest, d).test_acc)
    return {
        "random search (validation accuracy)": {d: mean_std(v) for d, v in by_val.items()},
        "largest #params": {d: mean_std(v) for d, v in by_params.items()},
    }


def summarize(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Group rows by configuration: mean +- std over seeds, beside baselines at the same evaluations."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in sorted(rows.values(), key=lambda r: (r["configuration"], r["seed"])):
        groups.setdefault(row["configuration"], []).append(row)
    table: dict[str, Any] = {}
    for name, members in groups.items():
        evaluations = round(statistics.fmean(r["evaluations"] for r in members))
        seeds = [r["seed"] for r in members]
        first = members[0]
        proposals: dict[str, float] = {}
        for state in sorted({s for r in members for s in r["proposals"]}):
            proposals[state] = statistics.fmean(r["proposals"].get(state, 0) for r in members)
        entry: dict[str, Any] = {
            "proxy": first["proxy"],
            "proposer": first["proposer"],
            "variant": first["variant"],
            "flags": first["flags"],
            "final_selection": first["final_selection"],
            "population": first["population"],
            "iterations": first["iterations"],
            "seeds": seeds,
            "test_acc": {d: mean_std([r["test_acc"][d] for r in members]) for d in DATASETS},
            "evaluations": mean_std([r["evaluations"] for r in members]),
            "best_visited_test_acc": {
                d: mean_std([r["best_visited_test_acc"][d] for r in members if r.get("best_visited_test_acc")])
                for d in DATASETS
            }
            if all(r.get("best_visited_test_acc") for r in members)
            else None,
            "proposals_mean": proposals,
            "seconds": mean_std([r["seconds"] for r in members]),
            "baselines": random_baselines(seeds, evaluations),
            "baseline_evaluations": evaluations,
        }
        per_iteration = [r["llm_seconds_per_iteration"] for r in members if r.get("llm_seconds_per_iteration")]
        if per_iteration:
            entry["llm_seconds_per_iteration"] = mean_std(per_iteration)
            entry["tokens_per_iteration"] = {
                k: statistics.fmean(r["tokens_per_iteration"][k] for r in members if r.get("tokens_per_iteration"))
                for k in ("input", "output")
            }
        table[name] = entry
    return table


def _cell(stats: dict[str, float]) -> str:
    return f"{stats['mean']:.2f} +- {stats['std']:.2f}"


#: how each proposer's rows are named in the table (the paper's names)
ROW_LABELS = {"random": "plain proxy search (random mutation)", "llm": "RZ-NAS (LLM mutation + reflection)"}


def render_markdown(summary: dict[str, Any], rows: dict[str, dict[str, Any]]) -> str:
    """The table of every configuration next to the paper's rows and the baselines."""
    paper_scale = all((r.get("population"), r.get("iterations")) == (100, 1500) for r in rows.values())
    lines = [
        "# NB201 search quality" + (" at the paper's scale" if paper_scale else " (below the paper's scale: see each row)"),
        "",
        "Test accuracy (%) of the returned cell in the 200-epoch NAS-Bench-201 table, mean +- std over seeds. "
        "Every search: NB201, random initial population, uniform parent selection, probe = CIFAR-10 training "
        "images (2 x 64) unless the row's flags say otherwise; the paper ran GPT-4o, population 100, 1,500 iterations, "
        "mean of 3 runs. Baselines use the same seeds and the row's mean number of evaluations. Each row's exact "
        "commands are in the JSON file (`rows[].command`); the table is rebuilt by "
        "`rznas bench search-quality --summarize-only --out <this file without suffix>`.",
        "",
        "| row | proxy | population / iterations | seeds | evaluations | CIFAR-10 | CIFAR-100 | ImageNet16-120 |",
        "|---|---|---|---:|---:|---|---|---|",
    ]
    by_proxy: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for name, entry in summary.items():
        by_proxy.setdefault(entry["proxy"], []).append((name, entry))
    for proxy in sorted(by_proxy, key=lambda p: (p not in PAPER_PROXIES, p)):
        for name, entry in by_proxy[proxy]:
            label = ROW_LABELS.get(entry["proposer"], entry["proposer"])
            if entry["variant"] != "paper":
                label += f", {entry['variant']}"
            if entry["final_selection"]:
                label += ", final selection"
            cells = " | ".join(_cell(entry["test_acc"][d]) for d in DATASETS)
            lines.append(
                f"| rznas: {label} | {proxy} | {entry['population']} / {entry['iterations']} | {len(entry['seeds'])} | "
                f"{entry['evaluations']['mean']:.0f} | {cells} |"
            )
            for baseline, values in entry["baselines"].items():
                cells = " | ".join(_cell(values[d]) for d in DATASETS)
                lines.append(f"| {baseline}, same evaluations | - | - | {len(entry['seeds'])} | {entry['baseline_evaluations']} | {cells} |")
        for label, values in PAPER_ROWS.get(proxy, {}).items():
            lines.append(f"| paper: {label} | {proxy} | 100 / 1500 | 3 | - | " + " | ".join(f"{v:.2f}" for v in values) + " |")
    lines.append("| project target (offline) | - | 100 / 1500 | 5 | - | " + " | ".join(f"{v:.2f}" for v in TARGET) + " |")
    lines.append("| benchmark optimum | - | - | - | 15625 | " + " | ".join(f"{v:.2f}" for v in OPTIMUM) + " |")
    lines += [
        "",
        "The optimum row is per dataset (three different cells). No NB201 cell meets the target on all three "
        "datasets, and no mean of returned cells over any number of seeds does: the best any mixture of cells "
        "reaches is 0.033 below it on every dataset at once "
        "([target_feasibility.md](target_feasibility.md), `python benchmarks/target_feasibility.py`).",
        "",
        "## Cost and proposals per run (mean over seeds)",
        "",
        "Seconds: the sum of the runs' per-trial wall time (proposal + scoring + reflection) on the 2-core CPU "
        "machine, one search per process; with the shared score cache, later seeds and proposers read what earlier "
        "ones scored, so the first runs of a proxy are the expensive ones. Best scored cell: the highest test accuracy "
        "among all cells the run scored (mean over seeds), i.e. what a perfect final selection could have returned.",
        "",
        "| row | seconds per run | proposals | complete | duplicate | invalid / parse error | LLM s per iteration | tokens per iteration in / out | best scored cell C10 / C100 / IN16 |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for name, entry in summary.items():
        p = entry["proposals_mean"]
        bad = p.get("invalid", 0) + p.get("parse_error", 0) + p.get("copied_example", 0)
        llm = entry.get("llm_seconds_per_iteration")
        tokens = entry.get("tokens_per_iteration")
        token_cell = f"{tokens['input']:.0f} / {tokens['output']:.0f}" if tokens else "-"
        visited = entry.get("best_visited_test_acc")
        visited_cell = " / ".join(f"{visited[d]['mean']:.2f}" for d in DATASETS) if visited else "-"
        lines.append(
            f"| {name} | {entry['seconds']['mean']:.0f} +- {entry['seconds']['std']:.0f} | {p.get('total', 0):.0f} | "
            f"{p.get('complete', 0):.0f} | {p.get('duplicate', 0):.0f} | {bad:.0f} | "
            f"{_cell(llm) if llm else '-'} | {token_cell} | {visited_cell} |"
        )
    lines += ["", "## Runs", "", "| run | arch | score | CIFAR-10 | CIFAR-100 | ImageNet16-120 | seconds |", "|---|---|---:|---:|---:|---:|---:|"]
    for name in sorted(rows):
        row = rows[name]
        score = row["score"]
        shown = f"{score:.6g}" if isinstance(score, (int, float)) and math.isfinite(score) else "-"
        accs = " | ".join(f"{row['test_acc'][d]:.2f}" for d in DATASETS)
        arch = str(row["arch"]).replace("|", "\\|")  # a pipe inside a table cell must be escaped
        lines.append(f"| {name} | `{arch}` | {shown} | {accs} | {row['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


@contextmanager
def table_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on OUT's result files (``OUT.lock``), so that bench commands running
    at once merge their rows into the table instead of overwriting each other's."""
    import fcntl

    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".lock"), "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def merge_and_write(out: Path, rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Under :func:`table_lock`: add the rows another process wrote to OUT since ``rows`` were
    read (ours win for the same name), then write; ``rows`` is updated in place."""
    with table_lock(out):
        ours = dict(rows)
        rows.update(load_rows(out.with_suffix(".json")))
        rows.update(ours)
        return write_results(out, rows)


def write_results(out: Path, rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Write OUT.json (rows + summary) and OUT.md atomically; returns the summary."""
    summary = summarize(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "search_paper_scale",
        "space": "nb201",
        "paper": {k: {label: list(v) for label, v in rows_.items()} for k, rows_ in PAPER_ROWS.items()},
        "optimum": dict(zip(DATASETS, OPTIMUM)),
        "target": dict(zip(DATASETS, TARGET)),
        "summary": summary,
        "rows": [rows[name] for name in sorted(rows)],
    }
    for path, text in ((out.with_suffix(".json"), json.dumps(payload, indent=2) + "\n"), (out.with_suffix(".md"), render_markdown(summary, rows))):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return summary


#: row fields that must match for a table row to stand for a plan entry
PROTOCOL_FIELDS = ("proxy", "proposer", "variant", "flags", "seed", "score_seed", "population", "iterations", "data", "llm")


def protocol_of(entry: PlanEntry, protocol: Protocol) -> dict[str, Any]:
    """The settings a row of ``entry`` under ``protocol`` records (compared with an existing row)."""
    return {
        "proxy": entry.proxy,
        "proposer": entry.proposer,
        "variant": entry.variant,
        "flags": list(entry.flags),
        "seed": entry.seed,
        "score_seed": protocol.score_seed,
        "population": protocol.population,
        "iterations": protocol.iterations,
        "data": protocol.data,
        "llm": protocol.llm if entry.proposer == "llm" else None,
    }


def run_benchmark(
    plan: Sequence[PlanEntry],
    protocol: Protocol,
    *,
    runs: Path,
    out: Path,
    jobs: int = 1,
    summarize_only: bool = False,
    runner: Runner | None = None,
) -> dict[str, Any]:
    """Run (or only tabulate) the plan; each run becomes a row of OUT as soon as it finishes.

    An entry whose row is already in OUT (same settings) is not run again, even when its run
    directory is gone (a fresh checkout keeps the committed table, not the runs); a row of the
    same name with other settings is an error rather than a silent mix.
    """
    runner = runner or Runner(protocol, runs, jobs=jobs)
    rows = load_rows(out.with_suffix(".json"))
    todo: list[PlanEntry] = []
    for entry in plan:
        row = rows.get(entry.name)
        wanted = protocol_of(entry, protocol)
        if row is not None and {k: row.get(k) for k in PROTOCOL_FIELDS} != wanted:
            raise ConfigError(
                f"{out.with_suffix('.json')} already holds row {entry.name} made with other settings "
                f"({ {k: row.get(k) for k in PROTOCOL_FIELDS} }); use another --out or --runs"
            )
        if row is None:
            todo.append(entry)
    lock = threading.Lock()

    def add_row(entry: PlanEntry) -> None:
        run_dir = runs / entry.name
        if run_state(run_dir) != "finished":
            return
        row = collect_row(entry, protocol, run_dir, shlex.join(search_command(entry, protocol, run_dir)))
        with lock:
            rows[entry.name] = row
            merge_and_write(out, rows)

    if not summarize_only:
        runner.run(todo, on_done=add_row)
    for entry in todo:
        if (runs / entry.name).exists():
            add_row(entry)
    with lock:
        return merge_and_write(out, rows)


__all__ = [
    "DATASETS",
    "PAPER_PROXIES",
    "PAPER_ROWS",
    "PlanEntry",
    "Protocol",
    "Runner",
    "collect_row",
    "load_rows",
    "make_plan",
    "read_store",
    "render_markdown",
    "run_benchmark",
    "run_state",
    "search_command",
    "summarize",
    "write_results",
]
