"""Evolution strategy with an ask/tell interface (Optuna style), as in RZ-NAS section 1.

The population is initialised by random sampling until it holds N distinct, valid,
scored architectures; then each iteration picks a parent (uniform by default), the
runner asks a proposer for a child, and :meth:`Evolution.tell` adds a COMPLETE child
and removes the worst member when the population exceeds N. Failed trials never enter
the population, and an architecture is evaluated at most once (cache by arch id).
Everything random comes from one ``random.Random`` owned by the strategy, so a run is
reproducible, and its state can be saved and restored for resume.
"""
from __future__ import annotations

import dataclasses
import random
import statistics
from typing import Any, Callable, Collection

from ..arch import Architecture
from ..errors import ConfigError
from ..registry import Registry
from ..spaces.base import SearchSpace
from ..trial import Ask, Member, Outcome, Trial, TrialState

Selection = Callable[[list[Member], random.Random, int], Member]
SELECTIONS: Registry[Selection] = Registry("parent selection")


@SELECTIONS.register("uniform")
def select_uniform(population: list[Member], rng: random.Random, tournament_size: int) -> Member:
    """Uniformly random parent (the paper's choice)."""
    return population[rng.randrange(len(population))]


@SELECTIONS.register("best")
def select_best(population: list[Member], rng: random.Random, tournament_size: int) -> Member:
    """The highest-scoring member (ties: the earliest trial)."""
    return max(population, key=lambda m: (m.score, -m.number))


@SELECTIONS.register("tournament")
def select_tournament(population: list[Member], rng: random.Random, tournament_size: int) -> Member:
    """The best of ``tournament_size`` members drawn without replacement."""
    entrants = rng.sample(population, min(tournament_size, len(population)))
    return max(entrants, key=lambda m: (m.score, -m.number))


#: states whose architecture was evaluated (validated, budget-checked, maybe scored): cached by id
EVALUATED = (TrialState.COMPLETE, TrialState.OVER_BUDGET, TrialState.PROXY_ERROR)


class Evolution:
    """Population-based search driven by ask()/tell(); see the module docstring."""

    def __init__(
        self,
        space: SearchSpace,
        *,
        population_size: int = 100,
        iterations: int = 1500,
        selection: str = "uniform",
        tournament_size: int = 5,
        seed: int = 0,
        max_init_trials: int | None = None,
    ):
        if population_size < 1:
            raise ConfigError(f"population size must be >= 1, got {population_size}")
        if iterations < 0:
            raise ConfigError(f"iterations must be >= 0, got {iterations}")
        if tournament_size < 1:
            raise ConfigError(f"tournament size must be >= 1, got {tournament_size}")
        self.space = space
        self.population_size = population_size
        self.iterations = iterations
        self.select = SELECTIONS.get(selection)
        self.tournament_size = tournament_size
        self.rng = random.Random(seed)
        self.max_init_trials = max_init_trials or 20 * population_size + 100
        self.population: list[Member] = []  # insertion order: deterministic selection
        self.evaluated: dict[str, Trial] = {}  # arch id -> the trial that evaluated it
        self.trials = 0  # trials told so far (= next trial number)
        self.iteration = 0  # evolution iterations told so far
        self.init_trials = 0
        self._last_failure = ""

    # ---- ask / tell -------------------------------------------------------------------
    @property
    def initialising(self) -> bool:
        return self.iteration == 0 and len(self.population) < self.population_size

    @property
    def finished(self) -> bool:
        return not self.initialising and self.iteration >= self.iterations

    def ask(
        self,
        *,
        in_flight: int = 0,
        exclude: Collection[str] = (),
        skip_parent: Callable[[Member], bool] | None = None,
    ) -> Ask | None:
        """The next request: a random initial sample, a parent to mutate, or None when done.

        Concurrent search passes the number of asks ``in_flight`` (not yet told, all of the
        current phase) and the arch ids to avoid (``exclude``: samples being evaluated); then
        None may also mean "wait for a result". The number and iteration of such an ask are
        provisional: :meth:`stamp` sets them when it is told. With ``in_flight=0`` this is
        the sequential ask. ``skip_parent``: a drawn parent for which it is true (every child
        already evaluated) is drawn again, at most once per population member; the last draw
        stands when all were skipped, and the ask records how many were.
        """
        if self.initialising:
            if len(self.population) + in_flight >= self.population_size:
                return None
            if self.init_trials + in_flight >= self.max_init_trials:
                if in_flight:
                    return None
                raise ConfigError(
                    f"could not fill a population of {self.population_size}: {self.init_trials} initial "
                    f"samples gave {len(self.population)} valid members (last failure: {self._last_failure})"
                )
            return Ask(self.trials + in_flight, 0, arch=self._sample_unseen(exclude))
        if self.iteration + in_flight >= self.iterations:
            return None
        parent = self.select(self.population, self.rng, self.tournament_size)
        redraws = 0
        if skip_parent is not None:
            while redraws < len(self.population) and skip_parent(parent):
                redraws += 1
                parent = self.select(self.population, self.rng, self.tournament_size)
        return Ask(self.trials + in_flight, self.iteration + in_flight + 1, parent=parent, redraws=redraws)

    def stamp(self, ask: Ask) -> Ask:
        """``ask`` numbered as the next trial to tell (asks of a concurrent search finish in any order)."""
        iteration = 0 if ask.iteration == 0 else self.iteration + 1
        if ask.number == self.trials and ask.iteration == iteration:
            return ask
        return dataclasses.replace(ask, number=self.trials, iteration=iteration)

    def lookup(self, arch: Architecture) -> Trial | None:
        """The trial that already evaluated ``arch``, if any (the evaluation cache)."""
        return self.evaluated.get(arch.id)

    def duplicate_outcome(self, arch: Architecture) -> Outcome | None:
        """A DUPLICATE outcome when ``arch`` was evaluated before (it is not scored again)."""
        previous = self.lookup(arch)
        if previous is None:
            return None
        detail = f", score {previous.score:.6g}" if previous.score is not None else ""
        return Outcome(
            TrialState.DUPLICATE,
            arch,
            reason=f"already evaluated in trial {previous.number} ({previous.state.value}{detail})",
        )

    def tell(self, ask: Ask, outcome: Outcome, **details: Any) -> Trial:
        """Record the outcome of ``ask``; returns the resulting :class:`Trial`."""
        trial = self.make_trial(ask, outcome, **details)
        self.replay(trial)
        return trial

    def make_trial(self, ask: Ask, outcome: Outcome, **details: Any) -> Trial:
        """The :class:`Trial` for ``ask`` and ``outcome`` without applying it (commit first, then replay)."""
        if ask.number != self.trials:
            raise ValueError(f"tell() for trial {ask.number}, expected trial {self.trials}")
        parent = ask.parent
        trial = Trial(
            number=ask.number,
            iteration=ask.iteration,
            state=outcome.state,
            arch=outcome.arch if outcome.arch is not None else ask.arch,
            encoded=details.pop("encoded", None),
            score=outcome.score,
            reason=outcome.reason,
            parent_id=parent.id if parent else None,
            parent_number=parent.number if parent else None,
            parent_score=parent.score if parent else None,
            measurements=dict(outcome.measurements),
            **details,
        )
        return trial

    def replay(self, trial: Trial) -> None:
        """Apply a committed trial to the state (used by tell() and by resume); no RNG use."""
        if trial.number != self.trials:
            raise ValueError(f"replaying trial {trial.number}, expected trial {self.trials}")
        self.trials += 1
        if trial.iteration == 0:
            self.init_trials += 1
        else:
            if trial.iteration != self.iteration + 1:
                raise ValueError(f"trial {trial.number} is iteration {trial.iteration}, expected {self.iteration + 1}")
            self.iteration = trial.iteration
        if trial.state is not TrialState.COMPLETE:
            self._last_failure = f"{trial.state.value}: {trial.reason}"
        if trial.state in EVALUATED and trial.arch is not None:
            self.evaluated.setdefault(trial.arch.id, trial)
        if trial.state is TrialState.COMPLETE:
            assert trial.arch is not None and trial.score is not None
            if any(m.id == trial.arch.id for m in self.population):
                raise ValueError(f"architecture {trial.arch.id} is already in the population")
            self.population.append(Member(trial.arch, trial.score, trial.number))
            if len(self.population) > self.population_size:
                # worst score leaves; among equal scores the oldest member leaves
                worst = min(self.population, key=lambda m: (m.score, m.number))
                self.population.remove(worst)

    # ---- queries ----------------------------------------------------------------------
    def best(self) -> Member | None:
        """The best member (ties: the earliest)."""
        if not self.population:
            return None
        return max(self.population, key=lambda m: (m.score, -m.number))

    def median_score(self) -> float | None:
        return statistics.median(m.score for m in self.population) if self.population else None

    def rng_state(self) -> Any:
        return self.rng.getstate()

    def set_rng_state(self, state: Any) -> None:
        self.rng.setstate(state)

    def _sample_unseen(self, exclude: Collection[str] = ()) -> Architecture:
        for _ in range(1000):
            arch = self.space.sample(self.rng)
            if arch.id not in self.evaluated and arch.id not in exclude:
                return arch
        raise ConfigError(f"space {self.space.name!r} seems exhausted: 1000 samples were all seen before")
