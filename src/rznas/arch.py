"""Architecture: a frozen, hashable, JSON-serialisable genotype with a stable id."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from .errors import InvalidArchitecture

Genotype = Any  # nested tuples of str / int / float / bool / None


def freeze(value: Any) -> Genotype:
    """Turn nested lists into nested tuples so the genotype is hashable."""
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise InvalidArchitecture(f"genotype values must be JSON primitives or lists, got {type(value).__name__}")


def thaw(value: Genotype) -> Any:
    """Inverse of :func:`freeze`: nested tuples back to lists for JSON."""
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class Architecture:
    """A point in a search space: plain data, never an nn.Module."""

    space: str
    genotype: Genotype

    def __post_init__(self) -> None:
        object.__setattr__(self, "genotype", freeze(self.genotype))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"space": self.space, "genotype": thaw(self.genotype)}

    def canonical_json(self) -> str:
        """Canonical JSON text: the basis of the id."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def id(self) -> str:
        """Stable 16-hex-digit id (sha256 of the canonical JSON)."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Architecture":
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(space=str(data["space"]), genotype=data["genotype"])
        except (KeyError, TypeError) as exc:
            raise InvalidArchitecture(f"architecture JSON needs 'space' and 'genotype': {exc}") from None

    @classmethod
    def from_json(cls, text: str) -> "Architecture":
        """Parse the output of :meth:`canonical_json`."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidArchitecture(f"architecture JSON is malformed: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidArchitecture("architecture JSON must be an object")
        return cls.from_dict(data)
