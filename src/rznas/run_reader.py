"""Read-only access to run stores, shared by ``rznas runs``, ``report``, ``compare`` and ``dashboard``.

A :class:`RunReader` opens ``run.sqlite`` through a read-only URI (``mode=ro``): it never
writes the store, it reads a run while its search is still committing trials (WAL readers
see the last committed transaction and wait out the writer's locks) and it reads a run
whose process was killed. Whether a run is live comes from the writer lock the searching
process holds (:func:`rznas.store.writer_alive`), not from the status it last wrote, which
a SIGKILLed run leaves at "running".
"""
from __future__ import annotations

import json
import sqlite3
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator
from urllib.parse import quote

from .errors import ConfigError, DataError
from .report import best_trial, population_series, token_summary
from .store import DB_NAME, SCHEMA_VERSION, spent_usage, trial_rows, writer_alive

if TYPE_CHECKING:  # pragma: no cover
    from .trial import Trial

#: tables a final-selection stage may add to the store; the first one present is shown
FINAL_SELECTION_TABLES = ("final_selection", "final_candidates", "selection_candidates")

#: settings that do not change what a search finds: runs differing only in these are compared as one group
NON_SEARCH_SETTINGS = frozenset(
    {
        "seed", "iterations", "max_cost_usd", "max_tokens", "llm_base_url", "llm_timeout", "llm_max_retries", "nb201",
        "executor", "workers", "ray_address", "score_cache", "concurrency", "data_dir", "torch_threads", "price_table",
    }
)


class RunReader:
    """One run's store, opened read-only; the same read methods as :class:`rznas.store.RunStore`
    (``config``, ``meta``, ``trial_rows``, ``llm_calls``, ``usage``), so :func:`rznas.report.write_report`
    works from either."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / DB_NAME
        if not self.path.is_file():
            raise ConfigError(f"{self.run_dir} holds no rznas run ({DB_NAME} not found)")
        uri = f"file:{quote(str(self.path.resolve()))}?mode=ro"
        try:
            self.db = sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None, check_same_thread=False)
            self.db.row_factory = sqlite3.Row
            version = self.meta("schema_version")
        except sqlite3.DatabaseError as exc:
            raise DataError(f"{self.path} cannot be read as a run store: {exc}") from None
        if version not in (1, SCHEMA_VERSION):  # schema 1 lacks only the per-call columns (read as absent)
            raise DataError(f"{self.path} has store schema {version}; this rznas reads schemas 1 and {SCHEMA_VERSION}")
        self._tables = {row[0] for row in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "RunReader":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def snapshot(self) -> "_Snapshot":
        """A read transaction: every read inside it sees the same committed state."""
        return _Snapshot(self.db)

    # ---- the RunStore read interface ----------------------------------------------------
    def meta(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row["value"]) if row else default

    def config(self) -> dict[str, Any]:
        return self.meta("config")

    def trial_rows(self) -> list[dict[str, Any]]:
        return trial_rows(self.db)

    def trials(self) -> list["Trial"]:
        """Every committed trial as a :class:`~rznas.trial.Trial`, in order (the Python API's view)."""
        from .store import _trial_from_row

        return [_trial_from_row(row) for row in self.db.execute("SELECT * FROM trials ORDER BY number")]

    def llm_calls(self) -> list[dict[str, Any]]:
        return [dict(row) for row in self.db.execute("SELECT * FROM llm_calls ORDER BY trial_number, seq")]

    def usage(self) -> dict[str, Any]:
        """What the run spent, as the store counts it (a replay's copied replies excluded;
        ``cost_usd`` None when some call had no price)."""
        return spent_usage(self.db)

    # ---- what only the viewers need ---------------------------------------------------
    def reflections(self) -> dict[int, dict[str, str]]:
        """trial number -> {"note": kept advice, "reply": the reflection reply}."""
        return {
            row["trial_number"]: {"note": row["note"], "reply": row["reply_text"]}
            for row in self.db.execute("SELECT trial_number, note, reply_text FROM reflections")
        }

    def call_request(self, call_id: int) -> dict[str, Any] | None:
        """One logged LLM call with its request (model, messages, sampling settings) from the reply cache."""
        row = self.db.execute(
            "SELECT c.*, k.request_json FROM llm_calls c LEFT JOIN llm_cache k ON k.key = c.cache_key WHERE c.id = ?",
            (call_id,),
        ).fetchone()
        if row is None:
            return None
        record = dict(row)
        request = record.pop("request_json")
        record["request"] = json.loads(request) if request else None
        return record

    def final_selection(self) -> dict[str, Any] | None:
        """{"table", "columns", "rows"} of the final-selection stage's table, or None when the run has no
        results in one."""
        for table in FINAL_SELECTION_TABLES:
            if table in self._tables:
                cursor = self.db.execute(f'SELECT * FROM "{table}"')  # name from the fixed tuple above
                columns = [d[0] for d in cursor.description]
                rows = [list(r) for r in cursor.fetchall()]
                if rows:  # every store has an empty final_candidates table: a run without the stage
                    return {"table": table, "columns": columns, "rows": rows}
        return None

    def final_candidates(self, settings_key: str) -> list[Any]:
        """The final-selection results under ``settings_key``, by proxy rank (as RunStore.final_candidates;
        none in a store written before the stage existed)."""
        if "final_candidates" not in self._tables:
            return []
        from .store import _candidate_from_row

        rows = self.db.execute(
            "SELECT * FROM final_candidates WHERE settings_key = ? ORDER BY rank", (settings_key,)
        ).fetchall()
        return [_candidate_from_row(row) for row in rows]

    def status(self) -> "RunStatus":
        """finished | stopped | running | interrupted, with the reason (see :func:`run_status`)."""
        return run_status(self.run_dir, self.meta("status", "running"), self.meta("status_reason", ""))


class _Snapshot:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN")

    def __exit__(self, *exc: Any) -> None:
        self.db.execute("COMMIT")


@dataclass(frozen=True)
class RunStatus:
    state: str  # finished | stopped | running | interrupted | unknown
    reason: str
    live: bool


def run_status(run_dir: Path, stored: str, reason: str) -> RunStatus:
    """The run's state from its stored status and its writer lock: a run that says "running"
    but whose writer lock nobody holds was killed (or crashed) and is "interrupted"."""
    alive = writer_alive(run_dir)
    if stored == "running":
        if alive is None:
            return RunStatus("unknown", "liveness cannot be told on this platform (no flock)", False)
        if not alive:
            return RunStatus(
                "interrupted",
                f"the search process ended without closing the run (killed?); continue with: rznas search --resume {run_dir}",
                False,
            )
        return RunStatus("running", reason, True)
    return RunStatus(stored, reason, bool(alive))


def find_runs(root: str | Path) -> list[Path]:
    """ROOT itself when it is a run directory, else every run directory below it (sorted)."""
    root = Path(root)
    if not root.exists():
        raise ConfigError(f"{root} does not exist")
    if (root / DB_NAME).is_file():
        return [root]
    runs = sorted(path.parent for path in root.rglob(DB_NAME))
    if not runs:
        raise ConfigError(f"no rznas run below {root} (no {DB_NAME} found)")
    return runs


@dataclass
class RunSummary:
    """One line of ``rznas runs``: what the run is, how far it got, what it found and cost."""

    path: str
    status: str
    reason: str
    live: bool
    space: str
    proxy: str
    proposer: str
    llm: str | None
    seed: int
    population: int
    iterations_done: int
    iterations: int
    trials: int
    best_score: float | None
    best_trial: int | None
    best_arch: str | None
    accuracy: dict[str, Any] = field(default_factory=dict)
    cost_usd: float | None = 0.0  # None: unknown (a model without a price)
    input_tokens: int = 0
    output_tokens: int = 0
    llm_calls: int = 0
    updated: float | None = None  # time of the last committed trial (s since the epoch)
    settings: dict[str, Any] = field(default_factory=dict)  # the settings that determine the search

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def search_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The settings that determine what a search finds (``config`` less :data:`NON_SEARCH_SETTINGS`)."""
    return {key: value for key, value in sorted(config.items()) if key not in NON_SEARCH_SETTINGS}


def summarize(reader: RunReader, rows: list[dict[str, Any]] | None = None, *, accuracy: bool = True) -> RunSummary:
    """The :class:`RunSummary` of a run (``accuracy``: look the best trial up in the benchmark table)."""
    from .search.benchmark import trial_accuracies

    config = reader.config()
    rows = reader.trial_rows() if rows is None else rows
    best = best_trial(rows)
    status = reader.status()
    spent = token_summary(reader.llm_calls(), 0)
    last = reader.db.execute("SELECT MAX(created) FROM trials").fetchone()[0]
    return RunSummary(
        path=str(reader.run_dir),
        status=status.state,
        reason=status.reason,
        live=status.live,
        space=config["space"],
        proxy=config["proxy"],
        proposer=config["proposer"],
        llm=config.get("llm") if config["proposer"] == "llm" else None,
        seed=int(config["seed"]),
        population=int(config["population"]),
        iterations_done=sum(1 for r in rows if r["iteration"] > 0),
        iterations=int(config["iterations"]),
        trials=len(rows),
        best_score=best["score"] if best else None,
        best_trial=best["number"] if best else None,
        best_arch=best["encoded"] if best else None,
        accuracy=trial_accuracies(config, best) if (best and accuracy) else {},
        cost_usd=None if spent["cost_usd"] is None else float(spent["cost_usd"]),
        input_tokens=int(spent["input_tokens"]),
        output_tokens=int(spent["output_tokens"]),
        llm_calls=int(spent["calls"]),
        updated=last,
        settings=search_settings(config),
    )


def best_so_far(rows: list[dict[str, Any]], population_size: int) -> list[tuple[int, float]]:
    """(iteration, best population score) after every iteration that has a scored member."""
    return [(s.iteration, s.best) for s in population_series(rows, population_size) if s.best is not None]


def population(rows: list[dict[str, Any]], population_size: int) -> list[dict[str, Any]]:
    """The current population: the ``population_size`` best COMPLETE trials, ties newest first
    (the same order :func:`rznas.report.population_series` uses)."""
    complete = [r for r in rows if r["state"] == "complete"]
    return sorted(complete, key=lambda r: (r["score"], r["number"]), reverse=True)[:population_size]


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def age_text(updated: float | None) -> str:
    """How long ago the last trial was committed, for humans (s/min/h)."""
    if updated is None:
        return "-"
    seconds = max(0.0, time.time() - updated)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def iter_readers(paths: list[Path]) -> Iterator[RunReader]:
    """Open each run in turn (closed after use)."""
    for path in paths:
        reader = RunReader(path)
        try:
            yield reader
        finally:
            reader.close()
