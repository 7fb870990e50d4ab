"""Trial records: the outcome of one proposal, with a state instead of a magic score."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .arch import Architecture


class TrialState(str, Enum):
    """How a trial ended; only COMPLETE trials may enter the population."""

    COMPLETE = "complete"  # valid, within budget, scored
    INVALID = "invalid"  # parsed but not an architecture of the space
    PARSE_ERROR = "parse_error"  # the LLM reply held no usable JSON/arch field
    COPIED_EXAMPLE = "copied_example"  # the LLM returned the in-context example's answer
    DUPLICATE = "duplicate"  # already seen: not scored again, never added twice
    OVER_BUDGET = "over_budget"  # params / FLOPs / layers above the budget
    PROXY_ERROR = "proxy_error"  # NaN, inf, out of memory, ...

    @property
    def valid_proposal(self) -> bool:
        """True when the proposer produced a well-formed architecture of the space."""
        return self not in (TrialState.INVALID, TrialState.PARSE_ERROR, TrialState.COPIED_EXAMPLE)


@dataclass(frozen=True)
class Member:
    """A population member: a scored architecture and the trial that produced it."""

    arch: Architecture
    score: float
    number: int  # trial number

    @property
    def id(self) -> str:
        return self.arch.id


@dataclass(frozen=True)
class Ask:
    """What the strategy wants next: an initial sample (``arch`` set) or a child of ``parent``."""

    number: int  # trial number, 0-based over the whole run
    iteration: int  # 0 = initial population, 1..T = evolution iterations
    arch: Architecture | None = None
    parent: Member | None = None
    #: parents drawn before ``parent`` and skipped because every child of theirs was evaluated
    redraws: int = 0

    @property
    def phase(self) -> str:
        return "init" if self.iteration == 0 else "evolve"


@dataclass(frozen=True)
class Outcome:
    """What happened to a candidate: a state, a score when COMPLETE, a reason otherwise."""

    state: TrialState
    arch: Architecture | None = None
    score: float | None = None
    reason: str = ""
    measurements: dict[str, float] = field(default_factory=dict)
    #: a failure of the machine, not of the architecture (out of memory, a lost worker): another
    #: try may succeed, so it is never stored in the persistent score cache
    transient: bool = False

    def __post_init__(self) -> None:
        if (self.state is TrialState.COMPLETE) != (self.score is not None):
            raise ValueError("a score is given exactly when the trial is COMPLETE")
        if self.transient and self.state is TrialState.COMPLETE:
            raise ValueError("a COMPLETE outcome cannot be transient")


@dataclass(frozen=True)
class Trial:
    """One committed trial: what was asked, what came back, and how it was judged."""

    number: int
    iteration: int
    state: TrialState
    arch: Architecture | None
    encoded: str | None
    score: float | None
    reason: str
    parent_id: str | None
    parent_number: int | None
    parent_score: float | None = None
    thinking: str = ""
    measurements: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    notes_shown: tuple[int, ...] = ()

    @property
    def arch_id(self) -> str | None:
        return self.arch.id if self.arch is not None else None

    def log_record(self) -> dict[str, Any]:
        """The deterministic part of the trial (no timings): what resume must reproduce."""
        return {
            "number": self.number,
            "iteration": self.iteration,
            "state": self.state.value,
            "arch_id": self.arch_id,
            "encoded": self.encoded,
            "score": self.score,
            "reason": self.reason,
            "parent_id": self.parent_id,
            "parent_number": self.parent_number,
        }
