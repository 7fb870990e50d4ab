"""One writer per run directory: an exclusive ``flock`` on ``RUN_DIR/run.lock``.

The lock belongs to the open file, so the operating system releases it when the
writing process ends, however it ends (SIGKILL included): a stale lock file never
blocks a resume. The file holds the writer's pid and host, for the error message only.
Readers never take the lock; :func:`lock_is_held` probes it without blocking.
"""
from __future__ import annotations

import os
import socket
from pathlib import Path

from .errors import ConfigError

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX (Windows): no advisory locks
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = "run.lock"


class RunBusy(ConfigError):
    """Another live process is writing this run directory (exit code 2)."""


class RunLock:
    """The held writer lock of one run directory; :meth:`release` (or process exit) frees it."""

    def __init__(self, path: Path, fd: int | None):
        self.path = path
        self._fd = fd

    @classmethod
    def acquire(cls, run_dir: str | Path) -> "RunLock":
        """Take the lock of ``run_dir`` (which must exist) or raise :class:`RunBusy` at once."""
        path = Path(run_dir) / LOCK_NAME
        if fcntl is None:  # pragma: no cover
            import warnings

            warnings.warn(f"no file locks on this platform: nothing stops a second writer of {run_dir}", stacklevel=2)
            return cls(path, None)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise ConfigError(f"cannot create the run lock {path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunBusy(
                f"{run_dir} is being written by another live rznas process{holder}; "
                "wait for it to finish (or stop it) before resuming, or choose another --out"
            ) from None
        except OSError as exc:
            os.close(fd)
            raise ConfigError(f"cannot lock {path}: {exc.strerror or exc}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        return cls(path, fd)

    def release(self) -> None:
        """Unlock (idempotent); the file stays, it is only a rendezvous."""
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor releases the flock
            self._fd = None


def lock_is_held(run_dir: str | Path) -> bool:
    """Whether some process holds the writer lock of ``run_dir`` now (never blocks, never locks)."""
    path = Path(run_dir) / LOCK_NAME
    if fcntl is None or not path.is_file():
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # also drops the shared lock just taken
    return False


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""
    return f" ({text})" if text else ""
