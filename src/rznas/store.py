"""The run store: one SQLite file (stdlib, WAL) per run directory.

It holds the resolved config, every trial, every LLM call, every reflection, the RNG
state of the last committed trial, the LLM reply cache and the final-selection results. Each trial is committed in
one transaction together with its LLM calls, its reflection and the RNG state, so the
state after trial i is exactly reconstructible (replay the trials, restore the RNG):
that is what ``rznas search --resume`` does after a crash, SIGKILL included. Cached
replies are committed as soon as they arrive, so no paid call is ever repeated. API keys
are never written here (requests hold model name, messages and sampling settings only).

The process writing a run holds an exclusive lock on ``run.sqlite-lock`` (flock) for as long
as its store is open; the kernel drops it when the process dies, SIGKILL included. Readers
(``rznas runs``, ``report``, ``compare``, ``dashboard``) tell a live run from a killed one
with :func:`writer_alive`, and a second writer of the same run is refused.

Each LLM call row records how it was answered (seed, attempts, structured-output mode,
whether the token counts were reported or estimated, finish reason, retry details); a cost
of NULL means unknown (an unpriced model), never $0. Stores of schema 1 are migrated to 2
when opened.
"""
from __future__ import annotations

import errno
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from .arch import Architecture
from .errors import ConfigError, DataError
from .records import CachedReply, CallRecord, CandidateResult
from .sqlite_tx import ImmediateTransaction
from .trial import Trial, TrialState

DB_NAME = "run.sqlite"
LOCK_NAME = f"{DB_NAME}-lock"
SCHEMA_VERSION = 2

try:  # POSIX; elsewhere a run's liveness cannot be told (writer_alive says so)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    number INTEGER PRIMARY KEY,
    iteration INTEGER NOT NULL,
    state TEXT NOT NULL,
    arch_id TEXT,
    arch_json TEXT,
    encoded TEXT,
    score REAL,
    reason TEXT NOT NULL,
    parent_id TEXT,
    parent_number INTEGER,
    parent_score REAL,
    thinking TEXT NOT NULL,
    measurements TEXT NOT NULL,
    timings TEXT NOT NULL,
    notes_shown TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS trials_arch ON trials(arch_id);
CREATE TABLE IF NOT EXISTS llm_calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    trial_number INTEGER NOT NULL REFERENCES trials(number),
    seq INTEGER NOT NULL,
    purpose TEXT NOT NULL,
    model TEXT NOT NULL,
    cache_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    prompt_hash TEXT NOT NULL,
    temperature REAL NOT NULL,
    reply_text TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    latency_s REAL NOT NULL,
    cost_usd REAL,
    cache_hit INTEGER NOT NULL,
    seed INTEGER,
    attempts INTEGER,
    structured TEXT,
    usage_estimated INTEGER,
    finish_reason TEXT,
    details TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS llm_calls_trial ON llm_calls(trial_number);
CREATE TABLE IF NOT EXISTS llm_cache (
    key TEXT PRIMARY KEY,
    request_json TEXT NOT NULL,
    reply_text TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    latency_s REAL NOT NULL,
    cost_usd REAL,
    model TEXT NOT NULL,
    created REAL NOT NULL,
    info TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS pending (
    seq INTEGER PRIMARY KEY,
    payload TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS reflections (
    trial_number INTEGER PRIMARY KEY REFERENCES trials(number),
    iteration INTEGER NOT NULL,
    note TEXT NOT NULL,
    reply_text TEXT NOT NULL
);
""" + """
-- final selection (search/final_selection.py): one short-training result per candidate and settings key;
-- added after schema 1 was released: RunStore.open creates it in older stores (an additive migration)
CREATE TABLE IF NOT EXISTS final_candidates (
    settings_key TEXT NOT NULL,
    arch_id TEXT NOT NULL,
    rank INTEGER NOT NULL,
    trial_number INTEGER NOT NULL REFERENCES trials(number),
    arch_json TEXT NOT NULL,
    encoded TEXT NOT NULL,
    score REAL NOT NULL,
    train_acc REAL NOT NULL,
    train_loss REAL NOT NULL,
    val_acc REAL NOT NULL,
    val_loss REAL NOT NULL,
    epochs INTEGER NOT NULL,
    seconds REAL NOT NULL,
    params INTEGER NOT NULL,
    history TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (settings_key, arch_id)
);
"""


#: schema 1 -> 2: cost may be NULL (unknown) and each call records how it was answered
_LLM_CALLS_V1 = (
    "id, trial_number, seq, purpose, model, cache_key, request_hash, prompt_hash, temperature, reply_text,"
    " input_tokens, output_tokens, latency_s, cost_usd, cache_hit"
)
_LLM_CACHE_V1 = "key, request_json, reply_text, input_tokens, output_tokens, latency_s, cost_usd, model, created"


def _table_sql(name: str) -> str:
    """The CREATE TABLE statement of ``name`` in :data:`_SCHEMA`."""
    start = _SCHEMA.index(f"CREATE TABLE IF NOT EXISTS {name} (")
    return _SCHEMA[start : _SCHEMA.index(");", start) + 2]


class RunStore:
    """One run's SQLite database; see the module docstring."""

    def __init__(self, path: Path, connection: sqlite3.Connection):
        self.path = path
        self.db = connection
        # concurrent proposals read and write the reply cache from worker threads
        self._lock = threading.RLock()
        self._writer_fd: int | None = None

    # ---- opening ----------------------------------------------------------------------
    @classmethod
    def create(cls, run_dir: str | Path, config: dict[str, Any]) -> "RunStore":
        """A new store in ``run_dir`` (created); refuses a directory that already holds a run."""
        run_dir = Path(run_dir)
        path = run_dir / DB_NAME
        if path.exists():
            raise ConfigError(f"{run_dir} already holds a run; continue it with --resume {run_dir} or choose another --out")
        run_dir.mkdir(parents=True, exist_ok=True)
        store = cls(path, cls._connect(path))
        try:
            store.claim_writer()
        except BaseException:
            store.close()
            raise
        store.db.executescript(_SCHEMA)
        with store.transaction():
            store._set_meta("schema_version", SCHEMA_VERSION)
            store._set_meta("config", config)
            store._set_meta("status", "running")
            store._set_meta("created", time.time())
        return store

    @classmethod
    def open(cls, run_dir: str | Path) -> "RunStore":
        """The store of an existing run."""
        path = Path(run_dir) / DB_NAME
        if not path.is_file():
            raise ConfigError(f"{run_dir} holds no rznas run ({DB_NAME} not found)")
        store = cls(path, cls._connect(path))
        try:
            store._upgrade()
        except BaseException:
            store.db.close()
            raise
        return store

    def _upgrade(self) -> None:
        """Bring an older store to :data:`SCHEMA_VERSION` in one transaction (resume of old runs)."""
        version = self.meta("schema_version")
        if version == SCHEMA_VERSION:
            self.db.executescript(_SCHEMA)  # tables added since (all additive)
            return
        if version != 1:
            raise DataError(f"{self.path} has store schema {version}; this rznas reads schemas 1 and {SCHEMA_VERSION}")
        if self._writer_fd is None and writer_alive(self.path.parent):
            raise ConfigError(  # migrating under an older writer would break its inserts
                f"{self.path.parent} (store schema 1) is being written by another live rznas process; "
                "open it once that process has ended"
            )
        with self.transaction():
            if self.meta("schema_version") == 1:  # not migrated meanwhile by another process
                for table, columns in (("llm_calls", _LLM_CALLS_V1), ("llm_cache", _LLM_CACHE_V1)):
                    self.db.execute(f"ALTER TABLE {table} RENAME TO {table}_v1")
                    self.db.execute(_table_sql(table))
                    self.db.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {table}_v1")
                    self.db.execute(f"DROP TABLE {table}_v1")
                self._set_meta("schema_version", SCHEMA_VERSION)
                self._set_meta("migrated_from_schema", 1)
        self.db.executescript(_SCHEMA)  # the index dropped with the old table

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(str(path), isolation_level=None, timeout=30.0, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        db.row_factory = sqlite3.Row
        return db

    def close(self) -> None:
        with self._lock:
            self.db.close()
            if self._writer_fd is not None:
                os.close(self._writer_fd)  # releases the writer lock
                self._writer_fd = None

    def claim_writer(self, wait_s: float = 2.0) -> None:
        """Hold the run's writer lock until :meth:`close` (idempotent); refuse a run another
        live process is writing. ``wait_s`` rides out a reader's momentary probe of the lock."""
        if self._writer_fd is not None or fcntl is None:
            return
        fd = os.open(self.path.parent / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() >= deadline:
                    os.close(fd)
                    raise ConfigError(
                        f"{self.path.parent} is being written by another live rznas process; "
                        "wait for it to end (or stop it) before resuming"
                    ) from exc
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._writer_fd = fd

    def transaction(self) -> ImmediateTransaction:
        return ImmediateTransaction(self.db, self._lock)

    # ---- meta -------------------------------------------------------------------------
    def _set_meta(self, key: str, value: Any) -> None:
        self.db.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )

    def meta(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row["value"]) if row else default

    def config(self) -> dict[str, Any]:
        """The resolved configuration the run was started with."""
        return self.meta("config")

    def set_status(self, status: str, reason: str = "") -> None:
        """running | finished | stopped | interrupted, with a reason."""
        with self.transaction():
            self._set_meta("status", status)
            self._set_meta("status_reason", reason)
            self._set_meta("status_time", time.time())

    def set_meta(self, key: str, value: Any) -> None:
        with self.transaction():
            self._set_meta(key, value)

    def rng_state(self) -> dict[str, Any] | None:
        """RNG states saved with the last committed trial."""
        return self.meta("rng_state")

    # ---- trials -----------------------------------------------------------------------
    def commit_trial(
        self,
        trial: Trial,
        calls: list[CallRecord],
        rng_state: dict[str, Any],
        reflection: tuple[str, str] | None = None,
        *,
        pending_seq: int | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        """Write one trial with its LLM calls, reflection (note, reply) and RNG state, atomically
        (and retire the pending dispatch ``pending_seq`` it completes, and set ``meta`` keys)."""
        with self.transaction():
            for key, value in (meta or {}).items():
                self._set_meta(key, value)
            if pending_seq is not None:
                self.db.execute("DELETE FROM pending WHERE seq = ?", (pending_seq,))
            self.db.execute(
                "INSERT INTO trials VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    trial.number,
                    trial.iteration,
                    trial.state.value,
                    trial.arch_id,
                    trial.arch.canonical_json() if trial.arch is not None else None,
                    trial.encoded,
                    trial.score,
                    trial.reason,
                    trial.parent_id,
                    trial.parent_number,
                    trial.parent_score,
                    trial.thinking,
                    json.dumps(trial.measurements),
                    json.dumps(trial.timings),
                    json.dumps(list(trial.notes_shown)),
                    time.time(),
                ),
            )
            for seq, call in enumerate(calls):
                self.db.execute(
                    "INSERT INTO llm_calls(trial_number, seq, purpose, model, cache_key, request_hash, prompt_hash,"
                    " temperature, reply_text, input_tokens, output_tokens, latency_s, cost_usd, cache_hit,"
                    " seed, attempts, structured, usage_estimated, finish_reason, details)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        trial.number,
                        seq,
                        call.purpose,
                        call.model,
                        call.key,
                        call.request_hash,
                        call.prompt_hash,
                        call.temperature,
                        call.text,
                        call.input_tokens,
                        call.output_tokens,
                        call.latency_s,
                        call.cost_usd,
                        int(call.cache_hit),
                        call.seed,
                        call.attempts,
                        call.structured,
                        int(call.usage_estimated),
                        call.finish_reason,
                        json.dumps(call.details, sort_keys=True),
                    ),
                )
            if reflection is not None:
                self.db.execute(
                    "INSERT INTO reflections VALUES (?,?,?,?)", (trial.number, trial.iteration, reflection[0], reflection[1])
                )
            self._set_meta("rng_state", rng_state)

    # ---- dispatched, not yet committed proposals (concurrent search) ---------------------
    def add_pending(self, seq: int, payload: dict[str, Any], rng_state: dict[str, Any]) -> None:
        """Record a dispatched proposal (parent, notes, ...) and the RNG states after it, atomically."""
        with self.transaction():
            self.db.execute("INSERT INTO pending VALUES (?, ?, ?)", (seq, json.dumps(payload), time.time()))
            self._set_meta("rng_state", rng_state)

    def pending(self) -> list[tuple[int, dict[str, Any]]]:
        """Dispatched proposals that no committed trial completes yet, in dispatch order."""
        with self._lock:
            rows = self.db.execute("SELECT seq, payload FROM pending ORDER BY seq").fetchall()
        return [(int(seq), json.loads(payload)) for seq, payload in rows]

    def trials(self) -> list[Trial]:
        """Every committed trial, in order."""
        return [_trial_from_row(row) for row in self.db.execute("SELECT * FROM trials ORDER BY number")]

    def trial_rows(self) -> list[dict[str, Any]]:
        """Every trial as a plain dict (exports, reports)."""
        return trial_rows(self.db)

    def reflections(self) -> dict[int, str]:
        """trial number -> kept advice note ("" when the reply was empty)."""
        return {row["trial_number"]: row["note"] for row in self.db.execute("SELECT * FROM reflections")}

    def llm_calls(self) -> list[dict[str, Any]]:
        """Every logged LLM call, in order (``details`` decoded; ``cost_usd`` None: unknown;
        the columns added in schema 2 are None for calls of a migrated schema-1 run)."""
        calls = []
        for row in self.db.execute("SELECT * FROM llm_calls ORDER BY trial_number, seq"):
            call = dict(row)
            call["details"] = json.loads(call["details"] or "{}")
            calls.append(call)
        return calls

    def committed_request_hashes(self) -> list[str]:
        return [row[0] for row in self.db.execute("SELECT request_hash FROM llm_calls ORDER BY id")]

    def usage(self) -> dict[str, Any]:
        """Calls, tokens and cost this run actually spent (:func:`spent_usage`); ``cost_usd`` is
        None when some call had no price (``unpriced_calls`` of them)."""
        return spent_usage(self.db)

    def _cache_totals(self) -> dict[str, float]:
        return _cache_totals(self.db)

    def copy_replies_from(self, source: "RunStore") -> None:
        """Copy every cached reply of ``source`` (a replay answers from them), recording what they
        cost so that :meth:`usage` does not count them as spent by this run."""
        with self.transaction():
            for key, request, reply in source.cache_entries():
                self._put_reply(key, request, reply)
            self._set_meta("inherited_usage", source._cache_totals())

    # ---- final selection ---------------------------------------------------------------
    def add_final_candidate(self, settings_key: str, result: CandidateResult) -> None:
        """Commit one candidate's short-training result under the settings that produced it."""
        with self.transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO final_candidates VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    settings_key, result.arch.id, result.rank, result.trial, result.arch.canonical_json(),
                    result.encoded, result.score, result.train_acc, result.train_loss, result.val_acc,
                    result.val_loss, result.epochs, result.seconds, result.params,
                    json.dumps(list(result.history)), time.time(),
                ),
            )

    def final_candidates(self, settings_key: str) -> list[CandidateResult]:
        """The candidates trained under ``settings_key``, by proxy rank."""
        with self._lock:
            rows = self.db.execute(
                "SELECT * FROM final_candidates WHERE settings_key = ? ORDER BY rank", (settings_key,)
            ).fetchall()
        return [_candidate_from_row(row) for row in rows]

    # ---- the reply cache (ReplyCache protocol) ----------------------------------------
    def get_reply(self, key: str) -> CachedReply | None:
        with self._lock:
            row = self.db.execute("SELECT * FROM llm_cache WHERE key = ?", (key,)).fetchone()
        return None if row is None else _reply_from_row(row)

    def put_reply(self, key: str, request: str, reply: CachedReply) -> None:
        with self.transaction():
            self._put_reply(key, request, reply)

    def _put_reply(self, key: str, request: str, reply: CachedReply) -> None:
        self.db.execute(
            "INSERT OR IGNORE INTO llm_cache VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                key,
                request,
                reply.text,
                reply.input_tokens,
                reply.output_tokens,
                reply.latency_s,
                reply.cost_usd,
                reply.model,
                time.time(),
                json.dumps(reply.info, sort_keys=True),
            ),
        )

    def cache_entries(self) -> Iterator[tuple[str, str, CachedReply]]:
        """(key, request JSON, reply) of every cached reply (for copying into a replay)."""
        for row in self.db.execute("SELECT * FROM llm_cache ORDER BY created"):
            yield row["key"], row["request_json"], _reply_from_row(row)


def _cache_totals(db: sqlite3.Connection) -> dict[str, float]:
    row = db.execute(
        "SELECT COUNT(*) AS calls, COALESCE(SUM(input_tokens),0) AS input_tokens,"
        " COALESCE(SUM(output_tokens),0) AS output_tokens, COALESCE(SUM(cost_usd),0) AS cost_usd,"
        " COALESCE(SUM(cost_usd IS NULL),0) AS unpriced_calls FROM llm_cache"
    ).fetchone()
    return {key: row[key] for key in ("calls", "input_tokens", "output_tokens", "cost_usd", "unpriced_calls")}


def trial_rows(db: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every trial of a store as a plain dict, JSON columns decoded (the store and its readers)."""
    rows = []
    for row in db.execute("SELECT * FROM trials ORDER BY number"):
        record = dict(row)
        for key in ("measurements", "timings", "notes_shown"):
            record[key] = json.loads(record[key])
        rows.append(record)
    return rows


def spent_usage(db: sqlite3.Connection) -> dict[str, Any]:
    """Calls, tokens and cost a run store's own live calls cost: its reply-cache entries, less
    those a replay copied from the run it replays (paid there, recorded as ``inherited_usage``);
    ``cost_usd`` is None (unknown, not $0) when some of its own calls had no price."""
    totals = _cache_totals(db)
    row = db.execute("SELECT value FROM meta WHERE key = 'inherited_usage'").fetchone()
    inherited = json.loads(row[0]) if row else {}
    usage: dict[str, Any] = {key: value - inherited.get(key, 0) for key, value in totals.items()}
    if usage["unpriced_calls"]:
        usage["cost_usd"] = None
    return usage


def writer_alive(run_dir: str | Path) -> bool | None:
    """Whether a live process holds the run's writer lock (None: cannot be told on this
    platform). Never creates or writes anything: a run without a lock file has no writer."""
    if fcntl is None:  # pragma: no cover - Windows
        return None
    try:
        fd = os.open(Path(run_dir) / LOCK_NAME, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return True
        raise
    finally:
        os.close(fd)  # also drops the shared lock just taken
    return False


def _reply_from_row(row: sqlite3.Row) -> CachedReply:
    return CachedReply(
        row["reply_text"],
        row["input_tokens"],
        row["output_tokens"],
        row["latency_s"],
        row["cost_usd"],
        row["model"],
        json.loads(row["info"] or "{}"),
    )


def _trial_from_row(row: sqlite3.Row) -> Trial:
    return Trial(
        number=row["number"],
        iteration=row["iteration"],
        state=TrialState(row["state"]),
        arch=Architecture.from_json(row["arch_json"]) if row["arch_json"] else None,
        encoded=row["encoded"],
        score=row["score"],
        reason=row["reason"],
        parent_id=row["parent_id"],
        parent_number=row["parent_number"],
        parent_score=row["parent_score"],
        thinking=row["thinking"],
        measurements=json.loads(row["measurements"]),
        timings=json.loads(row["timings"]),
        notes_shown=tuple(json.loads(row["notes_shown"])),
    )


def _candidate_from_row(row: sqlite3.Row) -> CandidateResult:
    """A ``final_candidates`` row as the stage's result (shared with the read-only RunReader)."""
    return CandidateResult(
        rank=row["rank"], trial=row["trial_number"], arch=Architecture.from_json(row["arch_json"]),
        encoded=row["encoded"], score=row["score"], train_acc=row["train_acc"], train_loss=row["train_loss"],
        val_acc=row["val_acc"], val_loss=row["val_loss"], epochs=row["epochs"], seconds=row["seconds"],
        params=row["params"], history=tuple(json.loads(row["history"])),
    )
