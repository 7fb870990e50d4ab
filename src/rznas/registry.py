"""Name -> object registries with "did you mean" errors (replaces if/elif chains).

A registry may also take plug-ins from an entry-point group (``rznas.spaces``,
``rznas.proxies``): installed packages declare ``name = module:object`` and the registry
loads them lazily, once, on its first lookup, so that every command, the registry-driven
test suites and the LLM prompt see them exactly like the built-ins. A plug-in that fails to
import, clashes with a registered name or is not the right kind of object is a PluginError
naming the plug-in, its package and the fix.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable, Generic, Iterator, TypeVar

from .errors import PluginError, UnknownName

T = TypeVar("T")

#: checks a plug-in's object before it is registered; raises TypeError/ValueError saying what is wrong
PluginCheck = Callable[[str, Any], None]


@dataclass(frozen=True)
class PluginOrigin:
    """Where a plug-in entry came from: its distribution and its entry point."""

    distribution: str
    version: str
    value: str  # "module:object"
    group: str

    def __str__(self) -> str:
        return f"{self.distribution} {self.version} ({self.value})"


class Registry(Generic[T]):
    """A named collection of factories or objects, filled by a decorator (and by plug-ins)."""

    def __init__(self, kind: str, *, entry_points: str | None = None, check: PluginCheck | None = None):
        self.kind = kind
        self.group = entry_points
        self._check = check
        self._items: dict[str, T] = {}
        self.plugins: dict[str, PluginOrigin] = {}  # name -> origin, for entries that came from plug-ins
        self._plugins_state = "none" if entry_points is None else "pending"  # pending | loading | done | none
        self._plugin_error: PluginError | None = None

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register ``obj`` under ``name`` (names are unique)."""

        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return decorator

    # ---- plug-ins ------------------------------------------------------------------------
    def load_plugins(self) -> None:
        """Register the entry points of ``self.group`` (once); a broken plug-in raises PluginError,
        now and on every later lookup, so it is never silently missing."""
        if self._plugin_error is not None:
            raise self._plugin_error
        if self._plugins_state != "pending":
            return
        self._plugins_state = "loading"  # a plug-in that looks up this registry while importing sees the built-ins
        try:
            for entry in sorted(metadata.entry_points(group=self.group), key=lambda e: e.name):  # type: ignore[arg-type]
                self._load_one(entry)
        except PluginError as exc:
            self._plugin_error = exc
            raise
        finally:
            self._plugins_state = "done"

    def _load_one(self, entry: metadata.EntryPoint) -> None:
        dist = entry.dist
        origin = PluginOrigin(
            dist.metadata["Name"] if dist is not None else "an unknown distribution",
            dist.version if dist is not None else "?",
            entry.value,
            str(self.group),
        )
        where = f"{self.kind} plug-in {entry.name!r} from {origin} (entry point group {self.group})"
        fix = f"fix it or uninstall it (pip uninstall {origin.distribution})"
        try:
            obj = entry.load()
        except Exception as exc:  # any import-time failure of third-party code
            raise PluginError(f"{where} failed to load: {type(exc).__name__}: {exc}; {fix}") from exc
        if entry.name in self._items:
            if self._items[entry.name] is obj:  # the plug-in's module registered itself by decorator
                self.plugins[entry.name] = origin
                return
            owner = f"plug-in {self.plugins[entry.name]}" if entry.name in self.plugins else "rznas itself"
            raise PluginError(f"{where}: the name {entry.name!r} is already taken by {owner}; rename the entry point")
        if self._check is not None:
            try:
                self._check(entry.name, obj)
            except (TypeError, ValueError) as exc:
                raise PluginError(f"{where} is not a valid {self.kind}: {exc}; {fix}") from None
        self._items[entry.name] = obj
        self.plugins[entry.name] = origin

    # ---- lookups ---------------------------------------------------------------------------
    def get(self, name: str) -> T:
        """Return the entry for ``name`` or raise UnknownName with close matches."""
        self.load_plugins()
        try:
            return self._items[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._items, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownName(
                f"unknown {self.kind} {name!r}{hint} (known: {', '.join(self.names())})"
            ) from None

    def names(self) -> list[str]:
        """Registered names (built-ins and plug-ins), sorted."""
        self.load_plugins()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self.load_plugins()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self.load_plugins()
        return len(self._items)
