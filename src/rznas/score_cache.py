"""A persistent proxy-score cache shared between runs (SQLite, WAL, safe for several processes).

A score is stored under a *context* (the canonical JSON of everything that determines
it: space and its options, proxy, probe data spec, score seed, budget, device type, and the
identity of the code that computes it; see :mod:`rznas.score_key`) and the architecture id.
Deterministic failures (proxy errors such as a non-finite score, over-budget cells) are
stored with their reason so that a known-bad cell is not rescored; transient ones (out of
memory, a lost worker: ``Outcome.transient``) never are. Floats round-trip exactly (SQLite
REAL is an IEEE double), so a hit returns the identical Outcome.
"""
from __future__ import annotations

import csv
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, TextIO

from .arch import Architecture
from .cache_root import CACHE_ENV, cache_root
from .canonical import canonical_json
from .errors import ConfigError
from .proxies.base import ProxyResult
from .score_key import context_key, stale_reason
from .sqlite_tx import ImmediateTransaction
from .trial import Outcome, TrialState

CACHE_FILE = "scores.sqlite"

#: states worth remembering: the ones that cost a build or a proxy run to find out
CACHED_STATES = frozenset({TrialState.COMPLETE, TrialState.PROXY_ERROR, TrialState.OVER_BUDGET})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS contexts (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    space TEXT NOT NULL,
    proxy TEXT NOT NULL,
    settings TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS scores (
    context INTEGER NOT NULL REFERENCES contexts(id),
    arch_id TEXT NOT NULL,
    arch TEXT NOT NULL,
    state TEXT NOT NULL,
    score REAL,
    reason TEXT NOT NULL,
    measurements TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (context, arch_id)
) WITHOUT ROWID;
"""


def default_cache_path() -> Path:
    """$RZNAS_CACHE_DIR/scores.sqlite, else ~/.cache/rznas/scores.sqlite."""
    return cache_root() / CACHE_FILE


def resolve_cache_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """A --cache flag (a file, or a folder that gets scores.sqlite), else the default."""
    if explicit is None or str(explicit) == "":
        return default_cache_path()
    path = Path(explicit).expanduser()
    if path.is_dir() or str(explicit).endswith(("/", os.sep)):
        path = path / CACHE_FILE
    return path


@dataclass(frozen=True)
class Context:
    """A resolved cache context: its row id and the settings it stands for."""

    id: int
    key: str
    space: str
    proxy: str


@dataclass(frozen=True)
class ContextSummary:
    """Counts for one context, for ``rznas cache info``."""

    key: str
    space: str
    proxy: str
    settings: dict[str, Any]
    complete: int
    failed: int

    @property
    def stale(self) -> str | None:
        """Why this context's key differs from today's code (None: current)."""
        return stale_reason(self.settings)


class ScoreCache:
    """The persistent score store; one connection per instance, usable from several threads."""

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True, timeout: float = 60.0):
        self.path = Path(path)
        if not create and not self.path.exists():
            raise ConfigError(f"no score cache at {self.path}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(self._unwritable(exc)) from None
        if self.path.exists() and not os.access(self.path, os.R_OK | os.W_OK):
            raise ConfigError(self._unwritable(PermissionError("permission denied")))
        try:
            self._db = sqlite3.connect(self.path, timeout=timeout, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise ConfigError(self._unwritable(exc)) from None
        self._lock = threading.Lock()
        self._contexts: dict[str, Context] = {}

    def _unwritable(self, exc: BaseException) -> str:
        detail = getattr(exc, "strerror", None) or str(exc)
        return (
            f"cannot use the score cache at {self.path}: {detail}; "
            f"point ${CACHE_ENV} or --cache at a writable folder, or disable the cache"
        )

    @classmethod
    def open(cls, explicit: str | os.PathLike[str] | None = None, *, create: bool = True) -> "ScoreCache":
        """The cache named by a flag, else $RZNAS_CACHE_DIR, else ~/.cache/rznas."""
        return cls(resolve_cache_path(explicit), create=create)

    # --- contexts ---------------------------------------------------------------------
    def context(self, settings: Mapping[str, Any]) -> Context:
        """The context row for ``settings`` (created on first use)."""
        key = context_key(settings)
        found = self._contexts.get(key)
        if found is not None:
            return found
        space, proxy = str(settings.get("space", "")), str(settings.get("proxy", ""))
        with self._write():
            self._db.execute(
                "INSERT OR IGNORE INTO contexts (key, space, proxy, settings) VALUES (?, ?, ?, ?)",
                (key, space, proxy, canonical_json(settings)),
            )
            (row_id,) = self._db.execute("SELECT id FROM contexts WHERE key = ?", (key,)).fetchone()
        found = Context(int(row_id), key, space, proxy)
        self._contexts[key] = found
        return found

    def _write(self) -> ImmediateTransaction:
        """A write transaction under the instance lock; a busy or read-only file is a ConfigError."""
        return ImmediateTransaction(self._db, self._lock, on_error=lambda exc: ConfigError(self._unwritable(exc)))

    # --- scores -----------------------------------------------------------------------
    def get(self, context: Context, arch: Architecture) -> Outcome | None:
        """The stored Outcome of ``arch`` in ``context``, or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT state, score, reason, measurements FROM scores WHERE context = ? AND arch_id = ?",
                (context.id, arch.id),
            ).fetchone()
        if row is None:
            return None
        state, score, reason, measurements = row
        return Outcome(TrialState(state), arch, score=score, reason=reason, measurements=json.loads(measurements))

    def known_ids(self, context: Context) -> set[str]:
        """Ids of every architecture stored in ``context`` (for resumable precomputation)."""
        with self._lock:
            rows = self._db.execute("SELECT arch_id FROM scores WHERE context = ?", (context.id,)).fetchall()
        return {r[0] for r in rows}

    def put(self, context: Context, outcome: Outcome) -> bool:
        """Store ``outcome`` (only states in CACHED_STATES, never a transient failure); True when stored."""
        return self.put_many(context, [outcome]) == 1

    def put_many(self, context: Context, outcomes: Iterable[Outcome]) -> int:
        """Store several outcomes in one transaction; returns how many were stored."""
        rows = []
        now = time.time()
        for outcome in outcomes:
            if outcome.state not in CACHED_STATES or outcome.transient or outcome.arch is None:
                continue
            rows.append(
                (
                    context.id,
                    outcome.arch.id,
                    outcome.arch.canonical_json(),
                    outcome.state.value,
                    outcome.score,
                    outcome.reason,
                    json.dumps(outcome.measurements, sort_keys=True),
                    now,
                )
            )
        if rows:
            with self._write():
                self._db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        return len(rows)

    # --- inspection -------------------------------------------------------------------
    def summary(self) -> list[ContextSummary]:
        """Per-context counts of stored scores and failures."""
        with self._lock:
            rows = self._db.execute(
                "SELECT c.key, c.space, c.proxy, c.settings,"
                " COALESCE(SUM(s.state = 'complete'), 0), COALESCE(SUM(s.state != 'complete'), 0)"
                " FROM contexts c LEFT JOIN scores s ON s.context = c.id"
                " GROUP BY c.id ORDER BY c.space, c.proxy, c.key"
            ).fetchall()
        return [ContextSummary(k, sp, px, json.loads(st), int(ok), int(bad)) for k, sp, px, st, ok, bad in rows]

    def size_bytes(self) -> int:
        """Bytes on disk: the database plus its WAL and shared-memory files."""
        total = 0
        for suffix in ("", "-wal", "-shm"):
            candidate = Path(str(self.path) + suffix)
            if candidate.exists():
                total += candidate.stat().st_size
        return total

    def rows(self, *, space: str | None = None, proxy: str | None = None) -> Iterator[dict[str, Any]]:
        """Every stored score (optionally of one space/proxy) as plain dicts."""
        where, params = _filters(space, proxy)
        with self._lock:
            rows = self._db.execute(
                "SELECT c.key, c.space, c.proxy, s.arch_id, s.arch, s.state, s.score, s.reason, s.measurements, s.created"
                f" FROM scores s JOIN contexts c ON c.id = s.context{where} ORDER BY c.key, s.arch_id",
                params,
            ).fetchall()
        for key, sp, px, arch_id, arch, state, score, reason, measurements, created in rows:
            yield {
                "context": key,
                "space": sp,
                "proxy": px,
                "arch_id": arch_id,
                "arch": json.loads(arch),
                "state": state,
                "score": score,
                "reason": reason,
                "measurements": json.loads(measurements),
                "created": created,
            }

    def clear(
        self, *, space: str | None = None, proxy: str | None = None, failed_only: bool = False, stale_only: bool = False
    ) -> int:
        """Delete stored scores (all, or of one space/proxy, only failures, or only the contexts
        whose key no longer matches today's code: :func:`rznas.score_key.stale_reason`); returns the count."""
        where, params = _filters(space, proxy)
        if stale_only:
            stale = [row.key for row in self.summary() if row.stale is not None]
            if not stale:
                return 0
            where += (" AND " if where else " WHERE ") + f"c.key IN ({', '.join('?' * len(stale))})"
            params += stale
        condition = f"context IN (SELECT id FROM contexts c{where})" if where else "1"
        if failed_only:
            condition += " AND state != 'complete'"
        with self._write():
            deleted = self._db.execute(f"DELETE FROM scores WHERE {condition}", params).rowcount
            self._db.execute("DELETE FROM contexts WHERE id NOT IN (SELECT DISTINCT context FROM scores)")
        self._contexts.clear()
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.execute("VACUUM")
        return int(deleted)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "ScoreCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _filters(space: str | None, proxy: str | None) -> tuple[str, list[str]]:
    clauses, params = [], []
    if space is not None:
        clauses.append("c.space = ?")
        params.append(space)
    if proxy is not None:
        clauses.append("c.proxy = ?")
        params.append(proxy)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


class CachedEvaluator:
    """Wraps an ``arch -> Outcome`` evaluator: answers hits from the cache, stores misses."""

    def __init__(self, evaluator: Callable[[Architecture], Outcome], cache: ScoreCache, settings: Mapping[str, Any]):
        self.evaluator = evaluator
        self.cache = cache
        self.context = cache.context(settings)
        self.hits = 0
        self.misses = 0

    def __call__(self, arch: Architecture) -> Outcome:
        hit = self.cache.get(self.context, arch)
        if hit is not None:
            self.hits += 1
            return hit
        self.misses += 1
        outcome = self.evaluator(arch)
        self.cache.put(self.context, outcome)
        return outcome


class ReferenceCache:
    """The cache as an ensemble's :class:`~rznas.fitness.ReferenceStore`: one context per component,
    keyed by ``settings_for(proxy)``, so reference scores are computed once and shared by every
    ensemble (and every run) that uses the same component, probe and seed."""

    def __init__(self, cache: ScoreCache, settings_for: Callable[[str], Mapping[str, Any]]):
        self.cache = cache
        self.settings_for = settings_for
        self._contexts: dict[str, Context] = {}

    def _context(self, proxy: str) -> Context:
        if proxy not in self._contexts:
            self._contexts[proxy] = self.cache.context(self.settings_for(proxy))
        return self._contexts[proxy]

    def get(self, proxy: str, arch: Architecture) -> ProxyResult | None:
        outcome = self.cache.get(self._context(proxy), arch)
        if outcome is None:
            return None
        seconds = float(outcome.measurements.get("seconds", 0.0))
        if outcome.state is TrialState.COMPLETE:
            return ProxyResult(proxy, outcome.score, seconds)
        return ProxyResult(proxy, None, seconds, outcome.reason)

    def put(self, proxy: str, arch: Architecture, result: ProxyResult) -> None:
        measurements = {"seconds": result.seconds}
        if result.ok:
            outcome = Outcome(TrialState.COMPLETE, arch, score=result.value, measurements=measurements)
        else:
            outcome = Outcome(TrialState.PROXY_ERROR, arch, reason=str(result.error), measurements=measurements)
        self.cache.put(self._context(proxy), outcome)


def write_export(rows: Iterable[dict[str, Any]], out: TextIO, fmt: str) -> int:
    """Write cache rows as JSON lines or CSV; returns the number of rows."""
    count = 0
    if fmt == "jsonl":
        for row in rows:
            out.write(json.dumps(row, sort_keys=True) + "\n")
            count += 1
    elif fmt == "csv":
        fields = ["context", "space", "proxy", "arch_id", "arch", "state", "score", "reason", "measurements", "created"]
        writer = csv.DictWriter(out, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            row = dict(row, arch=json.dumps(row["arch"]["genotype"]), measurements=json.dumps(row["measurements"]))
            writer.writerow(row)
            count += 1
    else:
        raise ConfigError(f"export format must be jsonl or csv, got {fmt!r}")
    return count


__all__ = [
    "CACHED_STATES",
    "CACHE_ENV",
    "CachedEvaluator",
    "Context",
    "ContextSummary",
    "ReferenceCache",
    "ScoreCache",
    "context_key",
    "default_cache_path",
    "resolve_cache_path",
    "write_export",
]
