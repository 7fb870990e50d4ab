"""The SearchSpace interface every space implements, and the space registry."""
from __future__ import annotations

import inspect
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from ..arch import Architecture
from ..errors import InvalidArchitecture
from ..registry import Registry


@dataclass(frozen=True)
class SpaceDescription:
    """What the LLM is told about a space: text level, code level, encoding rules."""

    name: str
    text: str  # operations and their purpose, in words
    code: str  # the real source of the operations and the network builder
    encoding: str  # how an architecture is written, and its rules
    mutation_rules: str  # what one mutation may change
    example: str  # one architecture in the space's string encoding
    # the "thinking" of the prompt's in-context example answer ("": the generic template)
    example_thinking: str = ""


def source_of(*objects: Callable[..., Any] | type) -> str:
    """Source code of classes/functions, taken from the module so it cannot drift."""
    return "\n\n".join(inspect.getsource(obj).rstrip() for obj in objects)


class SearchSpace(ABC):
    """A family of architectures: sample, mutate, validate, build, describe, encode."""

    name: str = ""
    #: input resolution the space's networks are designed for; FLOPs budgets are counted at it
    native_resolution: int = 32

    @abstractmethod
    def sample(self, rng: random.Random) -> Architecture:
        """A uniformly random valid architecture."""

    @abstractmethod
    def mutate(self, arch: Architecture, rng: random.Random) -> Architecture:
        """A valid neighbour of ``arch`` (one elementary change)."""

    @abstractmethod
    def validate(self, arch: Architecture) -> None:
        """Raise InvalidArchitecture when ``arch`` is not in this space."""

    @abstractmethod
    def build(self, arch: Architecture, *, num_classes: int = 10) -> nn.Module:
        """A freshly initialised network for ``arch``."""

    @abstractmethod
    def describe(self) -> SpaceDescription:
        """Text and code description for prompts."""

    @abstractmethod
    def encode(self, arch: Architecture) -> str:
        """The space's conventional string encoding."""

    @abstractmethod
    def decode(self, text: str) -> Architecture:
        """Parse the string encoding (never evaluated); raises InvalidArchitecture."""

    def example_architecture(self) -> Architecture:
        """The prompt's in-context example: ``describe().example`` decoded (spaces with a
        budget return it fitted to the budget, so the example never breaks the rules)."""
        return self.decode(self.describe().example)

    def check_space(self, arch: Architecture) -> None:
        """Shared first check of validate(): the arch names this space."""
        if arch.space != self.name:
            raise InvalidArchitecture(f"architecture belongs to space {arch.space!r}, not {self.name!r}")


def check_space_plugin(name: str, obj: Any) -> None:
    """A plug-in space is a SearchSpace subclass named like its entry point (or a factory of one)."""
    if not callable(obj):
        raise TypeError(f"{obj!r} is neither a SearchSpace subclass nor a factory")
    if inspect.isclass(obj):
        if not issubclass(obj, SearchSpace):
            raise TypeError(f"{obj.__module__}.{obj.__qualname__} does not subclass rznas.spaces.SearchSpace")
        if obj.name != name:
            raise ValueError(f"its name attribute is {obj.name!r}; it must equal the entry point name {name!r}")


#: built-in spaces register by decorator; installed packages add theirs through the entry-point
#: group ``rznas.spaces`` (``name = "package.module:SpaceClass"``), loaded on first lookup
SPACES: Registry[Callable[..., SearchSpace]] = Registry(
    "search space", entry_points="rznas.spaces", check=check_space_plugin
)


def get_space(name: str, **options: Any) -> SearchSpace:
    """Instantiate a registered space by name."""
    return SPACES.get(name)(**options)
