"""A search run: wires space, proxy, probe, strategy, proposer, reflection and the run store.

``SearchRun.start`` begins a new run in a directory, ``SearchRun.resume`` continues one
after a crash (it replays the committed trials, restores the RNG states of the last one
and answers already-paid LLM requests from the reply cache), and ``SearchRun.replay``
re-runs a finished run offline from its reply cache into a new directory.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..arch import Architecture
from ..data.probe import make_probe
from ..errors import BudgetExhausted, ConfigError
from ..llm.base import LLMClient
from ..llm.budget import Budget as UsageBudget
from ..proxies import get_proxy
from ..spaces import get_space
from ..store import RunStore
from .benchmark import benchmark_accuracies
from .budget import Budget
from .config import SearchConfig
from .evaluator import Evaluator
from .gateway import LLMGateway
from .memory import Note, ReflectionMemory, clean_note
from .progress import Progress
from .prompt import MutationPrompt, PromptOptions, ReflectionPrompt, arch_pattern
from .proposers import PROPOSERS, Proposal, ProposerContext, create_proposer
from .reflection import Reflector
from .strategy import Evolution
from .trial import Ask, Member, Outcome, Trial, TrialState

ClientFactory = Callable[[SearchConfig], LLMClient]


@dataclass(frozen=True)
class RunResult:
    """How a run ended and what it found."""

    run_dir: Path
    status: str  # finished | stopped
    reason: str
    best: Member | None
    best_encoded: str | None
    trials: int
    benchmark: dict[str, Any]


def _state_to_json(state: Any) -> Any:
    if isinstance(state, tuple):
        return [_state_to_json(v) for v in state]
    return state


def _state_from_json(state: Any) -> Any:
    if isinstance(state, list):
        return tuple(_state_from_json(v) for v in state)
    return state


def default_client_factory(config: SearchConfig) -> LLMClient:
    """The client named by ``config.llm`` through rznas.llm.create_client."""
    from ..llm import create_client

    client = create_client(
        config.llm,
        base_url=config.llm_base_url,
        timeout=config.llm_timeout,
        max_retries=config.llm_max_retries,
        price_table=config.price_table,
    )
    if config.max_cost_usd is not None and getattr(client, "price", True) is None:
        raise ConfigError(
            f"no price is known for {config.llm!r}, so --max-cost-usd cannot be enforced: "
            "add the model to price_table in the config file or use --max-tokens"
        )
    return client


class SearchRun:
    """One search run bound to its run store."""

    def __init__(
        self,
        config: SearchConfig,
        store: RunStore,
        *,
        client: LLMClient | None,
        offline: bool = False,
        progress: Progress | None = None,
    ):
        self.config = config
        self.store = store
        self.run_dir = store.path.parent
        self.progress = progress or Progress()
        c = config
        if c.torch_threads is not None:
            if c.torch_threads < 1:
                raise ConfigError(f"torch_threads must be >= 1, got {c.torch_threads}")
            torch.set_num_threads(c.torch_threads)
        self.space = get_space(c.space)
        self.proxy = get_proxy(c.proxy)
        self.probe = make_probe(c.data, data_dir=c.data_dir, batch_size=c.batch_size, chunks=c.probe_chunks, seed=c.seed)
        budget = Budget(max_params=c.max_params, max_flops=c.max_flops, max_layers=c.max_layers, resolution=self.probe.resolution)
        self.evaluator = Evaluator(self.space, self.proxy, self.probe, seed=c.seed, budget=budget)
        self.strategy = Evolution(
            self.space,
            population_size=c.population,
            iterations=c.iterations,
            selection=c.selection,
            tournament_size=c.tournament_size,
            seed=c.seed,
        )
        PROPOSERS.get(c.proposer)  # fail early on an unknown name
        uses_llm = getattr(PROPOSERS.get(c.proposer), "uses_llm", False)
        self.gateway: LLMGateway | None = None
        self.reflector: Reflector | None = None
        self.memory: ReflectionMemory | None = None
        prompt = None
        if uses_llm:
            if client is None and not offline:
                raise ConfigError(f"proposer {c.proposer!r} needs an LLM client")
            usage = UsageBudget(max_cost_usd=c.max_cost_usd, max_tokens=c.max_tokens)
            self.gateway = LLMGateway(None if offline else client, model=c.llm, cache=store, usage=usage)
            options = PromptOptions(
                text_description=c.text_description,
                code_description=c.code_description,
                example=c.example,
                reflection=c.reflection,
            )
            prompt = MutationPrompt(self.space, self.proxy, options)
        self.proposer = create_proposer(
            c.proposer,
            ProposerContext(
                self.space,
                c.seed,
                self.gateway,
                prompt,
                {
                    "temperatures": c.temperatures,
                    "temperature": c.temperature,
                    "repair_attempts": c.repair_attempts,
                    "max_tokens": c.mutate_max_tokens,
                    "max_reply_chars": c.max_reply_chars,
                    # "auto" constrains only where the space has an encoding pattern; "on" insists
                    "constrain_arch": c.constrain and (c.constrain_arch == "on" or arch_pattern(self.space) is not None),
                }
                if uses_llm
                else {},
            ),
        )
        if uses_llm and c.reflection:
            assert self.gateway is not None
            self.reflector = Reflector(
                self.gateway,
                ReflectionPrompt(prompt),
                self.proposer.temperature,  # type: ignore[attr-defined]
                max_tokens=c.reflect_max_tokens,
            )
            self.memory = ReflectionMemory(c.memory_recent, c.memory_useful, c.note_max_chars)

    # ---- construction -----------------------------------------------------------------
    @classmethod
    def start(
        cls,
        config: SearchConfig,
        run_dir: str | Path,
        *,
        client: LLMClient | None = None,
        client_factory: ClientFactory = default_client_factory,
        progress: Progress | None = None,
    ) -> "SearchRun":
        """A new run in ``run_dir`` (refuses a directory that already holds one)."""
        _check_nb201(config)
        get_space(config.space), get_proxy(config.proxy), PROPOSERS.get(config.proposer)  # validate names first
        if client is None and getattr(PROPOSERS.get(config.proposer), "uses_llm", False):
            client = client_factory(config)
        store = RunStore.create(run_dir, config.to_dict())
        try:
            return cls(config, store, client=client, progress=progress)
        except BaseException:
            store.close()
            raise

    @classmethod
    def resume(
        cls,
        run_dir: str | Path,
        *,
        overrides: dict[str, Any] | None = None,
        client: LLMClient | None = None,
        client_factory: ClientFactory = default_client_factory,
        progress: Progress | None = None,
    ) -> "SearchRun":
        """Continue the run in ``run_dir`` exactly where its last committed trial left it."""
        store = RunStore.open(run_dir)
        try:
            config = SearchConfig.from_dict(store.config(), origin=f"{run_dir} config")
            if overrides:
                allowed = {"iterations", "max_cost_usd", "max_tokens", "llm_base_url", "llm_timeout", "llm_max_retries", "nb201"}
                bad = sorted(set(overrides) - allowed)
                if bad:
                    raise ConfigError(
                        f"--resume takes the settings of the run; only {', '.join(sorted(allowed))} may change "
                        f"(not {', '.join(bad)})"
                    )
                config = config.replace(**overrides)
                store.set_meta("config", config.to_dict())
            if client is None and getattr(PROPOSERS.get(config.proposer), "uses_llm", False):
                client = client_factory(config)
            run = cls(config, store, client=client, progress=progress)
            run._restore()
            return run
        except BaseException:
            store.close()
            raise

    @classmethod
    def replay(cls, source_dir: str | Path, run_dir: str | Path, *, progress: Progress | None = None) -> "SearchRun":
        """Re-run ``source_dir`` offline into ``run_dir`` from its reply cache (no LLM is called)."""
        source = RunStore.open(source_dir)
        try:
            config = SearchConfig.from_dict(source.config(), origin=f"{source_dir} config")
            store = RunStore.create(run_dir, config.to_dict())
            store.set_meta("replay_of", str(Path(source_dir).resolve()))
            for key, request, reply in source.cache_entries():
                store.put_reply(key, request, reply)
        finally:
            source.close()
        try:
            return cls(config, store, client=None, offline=True, progress=progress)
        except BaseException:
            store.close()
            raise

    def _restore(self) -> None:
        """Rebuild the in-memory state from the committed trials (see RunStore)."""
        trials = self.store.trials()
        reflections = self.store.reflections()
        for trial in trials:
            self._apply(trial, reflections.get(trial.number))
        self.progress.restore(trials)
        state = self.store.rng_state()
        if state is not None:
            self.strategy.set_rng_state(_state_from_json(state["strategy"]))
            self.proposer.set_rng_state(_state_from_json(state["proposer"]))
        if self.gateway is not None:
            self.gateway.restore(self.store.committed_request_hashes())
            spent = self.store.usage()
            self.gateway.usage.add(spent["input_tokens"], spent["output_tokens"], spent["cost_usd"], calls=int(spent["calls"]))
        if trials:
            self.progress.message(f"resuming {self.run_dir} after trial {trials[-1].number} (iteration {trials[-1].iteration})")

    # ---- the loop ---------------------------------------------------------------------
    def run(self) -> RunResult:
        """Run to the end (or a clean stop on an LLM budget); writes the result files."""
        self.store.set_status("running")
        status, reason = "finished", ""
        try:
            while True:
                if self.gateway is not None and not self.strategy.initialising:
                    exhausted = self.gateway.usage.exhausted_reason()
                    if exhausted:
                        status, reason = "stopped", exhausted
                        break
                ask = self.strategy.ask()
                if ask is None:
                    break
                try:
                    trial, reflection = self._run_one(ask)
                except BudgetExhausted as exc:
                    status, reason = "stopped", str(exc)
                    break
                calls = self.gateway.drain() if self.gateway is not None else []
                self.store.commit_trial(trial, calls, self._rng_state(), reflection)
                self._apply(trial, reflection[0] if reflection else None)
                self._report(trial)
        except KeyboardInterrupt:
            self.store.set_status("interrupted", f"interrupted; continue with: rznas search --resume {self.run_dir}")
            raise
        except BaseException as exc:
            self.store.set_status("stopped", f"{type(exc).__name__}: {exc}")
            raise
        if status == "stopped":
            self.progress.message(f"stopped: {reason}; continue with: rznas search --resume {self.run_dir}")
        return self.finish(status, reason)

    def _run_one(self, ask: Ask) -> tuple[Trial, tuple[str, str] | None]:
        start = time.perf_counter()
        notes: list[Note] = []
        parent = ask.parent
        if parent is None:
            assert ask.arch is not None
            proposal = Proposal(ask.arch)
        else:
            notes = self.memory.shown() if self.memory is not None else []
            proposal = self.proposer.propose(parent, notes)
        proposed = time.perf_counter()
        if proposal.state is not None:
            outcome = Outcome(proposal.state, proposal.arch, reason=proposal.reason)
        else:
            assert proposal.arch is not None
            if parent is not None and proposal.arch.id == parent.id:
                outcome = Outcome(TrialState.DUPLICATE, proposal.arch, reason="the child equals its parent (nothing was mutated)")
            else:
                outcome = self.strategy.duplicate_outcome(proposal.arch) or self.evaluator(proposal.arch)
        evaluated = time.perf_counter()
        encoded = None
        if outcome.arch is not None and outcome.state is not TrialState.INVALID:
            encoded = self.space.encode(outcome.arch)
        reflection = None
        if self.reflector is not None and parent is not None:
            call = self.reflector.reflect(parent, self.space.encode(parent.arch), proposal, outcome, encoded)
            reflection = (clean_note(call.text, self.config.note_max_chars), call.text)
        done = time.perf_counter()
        trial = self.strategy.make_trial(
            ask,
            outcome,
            encoded=encoded,
            thinking=proposal.thinking,
            timings={
                "propose_s": proposed - start,
                "evaluate_s": evaluated - proposed,
                "reflect_s": done - evaluated,
                "total_s": done - start,
            },
            notes_shown=tuple(n.id for n in notes),
        )
        return trial, reflection

    def _apply(self, trial: Trial, note: str | None) -> None:
        """Advance strategy and memory by one committed trial (live and on resume alike)."""
        self.strategy.replay(trial)
        if self.memory is not None and trial.iteration > 0:
            improved = (
                trial.state is TrialState.COMPLETE
                and trial.parent_score is not None
                and trial.score is not None
                and trial.score > trial.parent_score
            )
            self.memory.credit(trial.notes_shown, improved)
            if note:
                self.memory.add(trial.number, note)

    def _rng_state(self) -> dict[str, Any]:
        return {
            "strategy": _state_to_json(self.strategy.rng_state()),
            "proposer": _state_to_json(self.proposer.rng_state()),
        }

    def _report(self, trial: Trial) -> None:
        usage = self.gateway.usage.snapshot() if self.gateway is not None else None
        self.progress.trial(
            trial,
            iterations=self.strategy.iterations,
            population=len(self.strategy.population),
            population_size=self.strategy.population_size,
            best=(best.score if (best := self.strategy.best()) else None),
            median=self.strategy.median_score(),
            input_tokens=usage.input_tokens if usage else 0,
            output_tokens=usage.output_tokens if usage else 0,
            cost_usd=usage.cost_usd if usage else 0.0,
        )

    # ---- the end ----------------------------------------------------------------------
    def finish(self, status: str, reason: str = "") -> RunResult:
        """Write best_arch.json, the trial exports and the plots; mark the run's status."""
        from ..report import write_report

        def lookup(row: dict[str, Any]) -> dict[str, Any]:
            arch = Architecture.from_json(row["arch_json"])
            return benchmark_accuracies(self.config.space, arch, nb201=self.config.nb201, data_dir=self.config.data_dir)

        summary = write_report(self.store, self.run_dir, benchmark=lookup)
        self.store.set_status(status, reason)
        best = self.strategy.best()
        return RunResult(self.run_dir, status, reason, best, summary["arch"], self.strategy.trials, summary["benchmark"])

    def close(self) -> None:
        self.store.close()


def _check_nb201(config: SearchConfig) -> None:
    """An explicitly configured benchmark table must open before any work is spent."""
    if config.nb201 is None:
        return
    from ..benchmarks.nb201_table import open_nb201

    open_nb201(config.nb201, data_dir=config.data_dir)


__all__ = ["RunResult", "SearchRun", "default_client_factory"]
