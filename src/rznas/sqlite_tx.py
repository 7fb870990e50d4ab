"""One SQLite write transaction helper for the run store and the score cache."""
from __future__ import annotations

import sqlite3
from typing import Any, Callable, ContextManager


class ImmediateTransaction:
    """``BEGIN IMMEDIATE ... COMMIT`` (``ROLLBACK`` on error) while holding ``lock``: one writer
    at a time across threads (the lock) and processes (SQLite's write lock). ``on_error`` turns a
    busy or read-only database into the caller's own error (e.g. a ConfigError that names the file)."""

    def __init__(
        self,
        db: sqlite3.Connection,
        lock: ContextManager[Any],
        *,
        on_error: Callable[[sqlite3.OperationalError], Exception] | None = None,
    ):
        self.db = db
        self.lock = lock
        self.on_error = on_error

    def _translated(self, exc: sqlite3.OperationalError) -> BaseException:
        return self.on_error(exc) if self.on_error is not None else exc

    def __enter__(self) -> sqlite3.Connection:
        self.lock.__enter__()
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            self.lock.__exit__(None, None, None)
            raise self._translated(exc) from None
        except BaseException:
            self.lock.__exit__(None, None, None)
            raise
        return self.db

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                try:
                    self.db.execute("COMMIT")
                except sqlite3.OperationalError as error:
                    self.db.execute("ROLLBACK")
                    raise self._translated(error) from None
            else:
                self.db.execute("ROLLBACK")
        finally:
            self.lock.__exit__(None, None, None)


__all__ = ["ImmediateTransaction"]
