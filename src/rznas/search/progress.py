"""Live progress on stderr: iteration, best and median score, valid-proposal rate, tokens, cost."""
from __future__ import annotations

import sys
from typing import TextIO

from ..trial import Trial


def _tokens(n: float) -> str:
    return f"{n / 1000:.1f}k" if n >= 1000 else f"{int(n)}"


class Progress:
    """Prints one line per evolution iteration (and one when the population is full)."""

    def __init__(self, stream: TextIO | None = None, *, enabled: bool = True):
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.proposals = 0
        self.valid = 0

    def restore(self, trials: list[Trial]) -> None:
        """Counters of a resumed run."""
        for trial in trials:
            self._count(trial)

    def _count(self, trial: Trial) -> None:
        if trial.iteration > 0:
            self.proposals += 1
            self.valid += int(trial.state.valid_proposal)

    @property
    def valid_rate(self) -> float | None:
        return self.valid / self.proposals if self.proposals else None

    def message(self, text: str) -> None:
        if self.enabled:
            print(f"rznas: {text}", file=self.stream, flush=True)

    def warning(self, text: str) -> None:
        """A line the user must see even with --quiet (a fallback, synthetic data, a lost write)."""
        print(f"rznas: {text}", file=self.stream, flush=True)

    def trial(
        self,
        trial: Trial,
        *,
        iterations: int,
        population: int,
        population_size: int,
        best: float | None,
        median: float | None,
        input_tokens: float,
        output_tokens: float,
        cost_usd: float | None,
    ) -> None:
        """Report one committed trial."""
        self._count(trial)
        if not self.enabled:
            return
        if trial.iteration == 0:
            if population < population_size:
                return
            head = f"init done ({trial.number + 1} samples) population {population}"
        else:
            head = f"iter {trial.iteration}/{iterations}"
        rate = f"{100 * self.valid_rate:.0f}%" if self.valid_rate is not None else "-"
        fmt = lambda v: f"{v:.6g}" if v is not None else "-"  # noqa: E731
        print(
            f"{head}  best {fmt(best)}  median {fmt(median)}  valid {rate}  "
            f"tokens {_tokens(input_tokens)} in / {_tokens(output_tokens)} out  "
            f"{'cost unknown' if cost_usd is None else f'${cost_usd:.4f}'}  "
            f"[{trial.state.value}]",
            file=self.stream,
            flush=True,
        )
