"""A search run: wires space, proxy, probe, strategy, proposer, reflection and the run store.

``SearchRun.start`` begins a new run in a directory, ``SearchRun.resume`` continues one
after a crash (it replays the committed trials, restores the RNG states of the last one
and answers already-paid LLM requests from the reply cache), and ``SearchRun.replay``
re-runs a finished run offline from its reply cache into a new directory.
"""
from __future__ import annotations

import random
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..arch import Architecture
from ..data.probe_choice import synthetic_data_notice
from ..errors import BudgetExhausted, ConfigError
from ..llm.base import LLMClient
from ..llm.budget import UsageBudget
from ..llm.local_backend import embedded_model_note
from ..fitness import component_names
from ..proxies import get_proxy
from ..spaces import get_space
from ..spaces.base import SearchSpace
from ..store import DB_NAME, RunStore
from .benchmark import trial_accuracies
from .config import SearchConfig
from .executors import EvaluatorSpec, Executor, create_executor
from .final_selection import CandidateResult, FinalSelectionSettings, run_final_selection
from .gateway import REPLY_KEYS_REPETITION, REPLY_KEYS_SEEDED, CallRecord, LLMGateway
from .memory import Note, ReflectionMemory, clean_note
from .edits import resolve_reply_format
from .progress import Progress
from .prompt import (
    REFLECTION_MAX_CHARS, MutationPrompt, PreviousOutcome, PromptOptions, ReflectionPrompt, arch_pattern, min_reply_tokens,
)
from .proposers import PROPOSERS, Proposal, ProposerContext, Temperature, create_proposer
from .reflection import Reflector, previous_outcome
from .strategy import Evolution
from ..trial import Ask, Member, Outcome, Trial, TrialState

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
    usage: dict[str, Any] = field(default_factory=dict)  # tokens and cost, in total and per iteration
    selection: dict[str, Any] = field(default_factory=dict)  # how the returned architecture was chosen


def prompt_options(c: SearchConfig, space: SearchSpace) -> PromptOptions:
    """The mutation prompt's parts and reply format for the settings ``c``."""
    return PromptOptions(
        text_description=c.text_description,
        code_description=c.code_description,
        example=c.example,
        reflection=c.reflection,
        fused_reflection=c.fused_reflection and c.reflection,
        lean=c.lean_prompt,
        reply_format=resolve_reply_format(c.reply_format, constrained=c.constrain, space=space),
    )


def llm_proposer_options(c: SearchConfig, space: SearchSpace, options: PromptOptions) -> dict[str, Any]:
    """The llm proposer's options for the settings ``c`` and the prompt ``options``."""
    edits = options.reply_format == "edit"
    return {
        "temperatures": c.temperatures,
        "temperature": c.temperature,
        "repair_attempts": c.repair_attempts,
        # at least what the reply format needs (a whole DARTS genotype is long);
        # a fused reply also carries the reflection
        "max_tokens": max(c.mutate_max_tokens, min_reply_tokens(space, options.reply_format))
        + (c.reflect_max_tokens if options.fused_reflection else 0),
        "reply_format": options.reply_format,
        "max_reply_chars": c.max_reply_chars,
        # edits: the per-parent grammar; arch: "auto" constrains only where the space has an
        # encoding pattern, "on" insists
        "constrain_arch": c.constrain and (edits or c.constrain_arch == "on" or arch_pattern(space) is not None),
        "fused_reflection": options.fused_reflection,
        # fused and sparse: a call without a previous outcome offers no "reflection" field
        "reflect_every": c.reflect_every,
        # a fused reflection longer than a note would be cut when it is kept
        "reflection_max_chars": min(REFLECTION_MAX_CHARS, c.note_max_chars),
        "thinking": c.reply_thinking,
    }


def stored_settings(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored run's settings, completed for settings added since: runs stored before the
    reply format existed replied with whole architectures, so they resume and replay as "arch";
    runs stored before ``exclude_evaluated`` or ``redraw_exhausted`` resume and replay without it."""
    settings = dict(stored)
    settings.setdefault("reply_format", "arch")
    # runs stored before it existed sent every edit of the parent: they resume and replay so
    settings.setdefault("exclude_evaluated", False)
    # runs stored before it kept a parent whose children were all evaluated: so they resume
    settings.setdefault("redraw_exhausted", False)
    return settings


#: settings a resume may change: budgets, endpoints and where/how fast work runs (not what is searched)
RESUME_OVERRIDES = frozenset(
    {
        "iterations", "max_cost_usd", "max_tokens", "llm_base_url", "llm_timeout", "llm_max_retries", "nb201",
        "executor", "workers", "ray_address", "score_cache", "concurrency", "llm_structured", "llm_threads",
        # the final-selection stage runs after the evolution: a finished run may add or redo it
        # (results are keyed by their settings, so changed settings never reuse stale ones)
        "final_train_top", "final_epochs", "final_data", "final_train_images", "final_val_images",
        "final_batch_size", "final_recipe", "final_seed", "final_space_options", "final_device",
    }
)


@dataclass
class Slot:
    """One ask on its way through propose -> evaluate -> reflect -> commit."""

    seq: int  # dispatch number (key of the store's pending row; -1 in the sequential loop)
    ask: Ask
    notes: list[Note] = field(default_factory=list)
    previous: PreviousOutcome | None = None  # fused reflection: the step this mutation call reflects on
    own_stream: bool = False  # temperatures from a stream of its own (seed, seq): concurrent search
    temperature: Temperature | None = None
    proposal: Proposal | None = None
    outcome: Outcome | None = None
    encoded: str | None = None
    reflection: tuple[str, str] | None = None
    calls: list[CallRecord] = field(default_factory=list)
    claimed: str | None = None  # arch id this slot is evaluating
    times: dict[str, float] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        """What a resumed run needs to ask exactly this proposal again (JSON-ready)."""
        parent = self.ask.parent
        return {
            "iteration": self.ask.iteration,
            "arch": self.ask.arch.canonical_json() if self.ask.arch is not None else None,
            "parent": [parent.arch.canonical_json(), parent.score, parent.number] if parent else None,
            "notes": [[n.id, n.text, n.credit] for n in self.notes],
            "previous": self.previous.to_json() if self.previous else None,
            "own_stream": self.own_stream,
            "redraws": self.ask.redraws,
        }

    @classmethod
    def from_payload(cls, seq: int, data: dict[str, Any], number: int) -> "Slot":
        parent = None
        if data["parent"] is not None:
            arch_json, score, parent_number = data["parent"]
            parent = Member(Architecture.from_json(arch_json), float(score), int(parent_number))
        arch = Architecture.from_json(data["arch"]) if data["arch"] else None
        return cls(
            seq,
            Ask(number, int(data["iteration"]), arch=arch, parent=parent, redraws=int(data.get("redraws", 0))),
            notes=[Note(int(i), str(t), int(c)) for i, t, c in data["notes"]],
            previous=PreviousOutcome.from_json(data["previous"]) if data.get("previous") else None,
            own_stream=bool(data.get("own_stream", False)),
        )


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
    from ..llm import create_client, parse_spec

    options: dict[str, Any] = {}
    backend = parse_spec(config.llm)[0]
    if config.llm_threads is not None:
        if backend != "local":
            raise ConfigError(f"--llm-threads applies to the local backend (llama.cpp in this process), not {config.llm}")
        options["n_threads"] = int(config.llm_threads)
    if backend == "openai":
        options["structured"] = config.llm_structured
    elif config.llm_structured != "auto":
        raise ConfigError(
            f"--llm-structured {config.llm_structured} applies to the openai backend (OpenAI-compatible servers); "
            f"{config.llm} chooses its own structured output"
        )
    client = create_client(
        config.llm,
        base_url=config.llm_base_url,
        timeout=config.llm_timeout,
        max_retries=config.llm_max_retries,
        price_table=config.price_table,
        **options,
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
        # the evaluator is built from the same spec that workers and the score cache key use
        self.final_settings = FinalSelectionSettings.from_config(c)
        if self.final_settings is not None:  # its data must load now, not after a long evolution
            self.final_settings.load_data(c.data_dir)
        self.selected: CandidateResult | None = None
        self.score_cache = open_score_cache(c.score_cache)
        try:
            # an ensemble's reference is scored once here (or read from the score cache), never per worker
            self.eval_spec = EvaluatorSpec.from_config(c).with_references(
                self.score_cache, self.progress.stream if self.progress.enabled else None
            )
            self.space = get_space(self.eval_spec.space, **dict(self.eval_spec.space_options))
            self.evaluator = self.eval_spec.build()  # exactly what process/Ray workers build
        except BaseException:
            if self.score_cache is not None:
                self.score_cache.close()
            raise
        fitness = self.evaluator.fitness  # type: ignore[attr-defined]
        self.proxy = getattr(fitness, "proxy", fitness)  # what the prompt shows: the proxy, or the ensemble
        self.probe = self.evaluator.probe  # type: ignore[attr-defined]
        notice = synthetic_data_notice(self.eval_spec.probe.dataset, [get_proxy(n) for n in component_names(c.proxy)])
        if notice:
            self.progress.warning(notice)
        try:
            self.executor: Executor = create_executor(
                c.executor,
                self.eval_spec,
                workers=c.workers,
                ray_address=c.ray_address,
                cache=self.score_cache,
                evaluator=self.evaluator,
                notify=self.progress.warning,
            )
        except BaseException:
            if self.score_cache is not None:
                self.score_cache.close()
            raise
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
            self.gateway = LLMGateway(
                None if offline else client, model=c.llm, cache=store, usage=usage,
                seeded_keys=store.meta("reply_keys", REPLY_KEYS_REPETITION) == REPLY_KEYS_SEEDED,
            )
            prompt = MutationPrompt(self.space, self.proxy, prompt_options(c, self.space))
            note = None if offline else embedded_model_note(c.llm)
            if note:
                self.progress.message(note)
        self.proposer = create_proposer(
            c.proposer,
            ProposerContext(
                self.space,
                c.seed,
                self.gateway,
                prompt,
                llm_proposer_options(c, self.space, prompt.options) if prompt is not None else {},
            ),
        )
        self.fused = bool(uses_llm and c.reflection and c.fused_reflection)
        if uses_llm and c.reflection:
            assert self.gateway is not None
            if not self.fused:
                self.reflector = Reflector(
                    self.gateway,
                    ReflectionPrompt(prompt),
                    self.proposer.temperature,  # type: ignore[attr-defined]
                    max_tokens=c.reflect_max_tokens,
                )
            self.memory = ReflectionMemory(c.memory_recent, c.memory_useful, c.note_max_chars)
        self.uses_llm = bool(uses_llm)
        #: parents drawn again because every child of theirs was evaluated (committed in meta)
        self.parent_redraws = 0
        self._previous: PreviousOutcome | None = None  # the last finished mutation step (fused reflection)
        self._claims: dict[str, int] = {}  # arch id -> seq of the slot evaluating it
        self._next_seq = 0
        #: force the concurrent engine even for concurrency 1 (tests compare it with the sequential loop)
        self.force_async = False

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
        """A new run in ``run_dir`` (refuses a directory that already holds one).

        The configuration is validated before anything is written, so a bad setting leaves no
        run directory behind."""
        validate_config(config)
        config = config.resolved()  # device and probe data as they will be stored and kept on resume
        if client is None and getattr(PROPOSERS.get(config.proposer), "uses_llm", False):
            client = client_factory(config)
        run_path = Path(run_dir)
        created = not run_path.exists()
        store = RunStore.create(run_path, config.to_dict())
        try:
            store.set_meta("reply_keys", REPLY_KEYS_SEEDED)
            return cls(config, store, client=client, progress=progress)
        except BaseException:
            store.close()  # construction failed after validation: leave no half-made run behind
            _remove_new_run(run_path, remove_dir=created)
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
            store.claim_writer()  # before anything is written: refuse a run another process is still writing
            stored = store.config()
            if "score_seed" not in stored:
                raise ConfigError(
                    f"{run_dir} was started by an older rznas that seeded scores with the search seed; "
                    "its scores cannot be continued under today's scheme (rznas.scoring): start a new run"
                )
            config = SearchConfig.from_dict(stored_settings(stored), origin=f"{run_dir} config")
            recorded_concurrency = config.concurrency
            if overrides:
                allowed = RESUME_OVERRIDES
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
            if config.concurrency != recorded_concurrency and run.uses_llm:
                run.progress.message(
                    f"concurrency {recorded_concurrency} -> {config.concurrency}: the trials from here on draw "
                    "other temperatures and model seeds than the original setting would (docs/llm.md)"
                )
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
            config = SearchConfig.from_dict(stored_settings(source.config()), origin=f"{source_dir} config")
            store = RunStore.create(run_dir, config.to_dict())
            store.set_meta("replay_of", str(Path(source_dir).resolve()))
            store.set_meta("reply_keys", source.meta("reply_keys", REPLY_KEYS_REPETITION))  # the source's keys
            store.copy_replies_from(source)  # answered from these, not paid again: not counted as spent
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
            self.gateway.usage.add(
                spent["input_tokens"], spent["output_tokens"], spent["cost_usd"], calls=int(spent["calls"]),
                unpriced_calls=int(spent["unpriced_calls"]),
            )
        self.parent_redraws = int(self.store.meta("parent_redraws", 0))
        last = self.store.meta("last_outcome")
        self._previous = PreviousOutcome.from_json(last) if last else None
        pending = self.store.pending()
        self._next_seq = int((state or {}).get("next_seq", 0))
        if trials:
            self.progress.message(f"resuming {self.run_dir} after trial {trials[-1].number} (iteration {trials[-1].iteration})")
        if pending:
            self.progress.message(f"re-asking {len(pending)} proposal(s) that were in flight (replies come from the cache)")

    # ---- the loop ---------------------------------------------------------------------
    def run(self) -> RunResult:
        """Run to the end (or a clean stop on an LLM budget); writes the result files.

        ``concurrency`` 1 is the paper's sequential loop; K > 1 keeps up to K proposals in
        flight (:meth:`_run_concurrent`). A resumed run with proposals that were in flight at
        the crash always continues concurrently, asking those first.
        """
        self.store.claim_writer()  # held until close(): `rznas runs` tells this live run from a killed one
        self.store.set_status("running")
        status, reason = "finished", ""
        try:
            concurrent = self.config.concurrency > 1 or self.force_async or bool(self.store.pending())
            stopped = self._run_concurrent(self.config.concurrency) if concurrent else self._run_sequential()
            if stopped:
                status, reason = "stopped", stopped
            elif self.final_settings is not None:
                self.selected = run_final_selection(
                    self.store, self.store.trials(), self.final_settings, encode=self.space.encode,
                    data_dir=self.config.data_dir, message=self.progress.message,
                )
        except KeyboardInterrupt:
            self.store.set_status("interrupted", f"interrupted; continue with: rznas search --resume {self.run_dir}")
            raise
        except BaseException as exc:
            self.store.set_status("stopped", f"{type(exc).__name__}: {exc}")
            raise
        if status == "stopped":
            self.progress.message(f"stopped: {reason}; continue with: rznas search --resume {self.run_dir}")
        return self.finish(status, reason)

    def _budget_stop(self) -> str | None:
        if self.gateway is not None and not self.strategy.initialising:
            return self.gateway.usage.exhausted_reason()
        return None

    def _run_sequential(self) -> str | None:
        """One trial after another: ask, propose, evaluate, reflect, commit (the paper's loop)."""
        while True:
            exhausted = self._budget_stop()
            if exhausted:
                return exhausted
            ask = self.strategy.ask(skip_parent=self._skip_parent)
            if ask is None:
                return None
            slot = self._new_slot(ask, seq=-1)
            try:
                self._propose(slot)
                outcome = self._precheck(slot)
                if outcome is None:
                    assert slot.proposal is not None and slot.proposal.arch is not None
                    outcome = self.executor.submit(slot.proposal.arch).result()
                self._evaluated(slot, outcome)
                self._reflect(slot)
            except BudgetExhausted as exc:
                return str(exc)
            slot.calls = self.gateway.drain() if self.gateway is not None else []
            self._commit(slot)

    def _run_concurrent(self, k: int) -> str | None:
        """Steady-state evolution with up to ``k`` proposals in flight.

        LLM calls (mutation, repair, reflection) run in a thread pool of ``k`` threads;
        evaluations go to the executor; this thread owns the strategy, the memory and the
        store, and commits each trial the moment its last step finishes (completion order).
        Every dispatch is written to the store first (parent, notes, RNG states), so after a
        crash the proposals that were in flight are asked again with the same requests and
        answered from the reply cache.
        """
        pool = ThreadPoolExecutor(max_workers=k, thread_name_prefix="rznas-propose")
        active: dict[Future[Any], tuple[str, Slot]] = {}
        flying: list[Slot] = []
        stop: str | None = None
        fatal: BaseException | None = None

        def launch(slot: Slot) -> None:
            flying.append(slot)
            if slot.ask.parent is None:  # an initial sample: nothing to propose
                slot.times["start"] = slot.times["proposed"] = time.perf_counter()
                slot.proposal = Proposal(slot.ask.arch)
                self._claims[slot.ask.arch.id] = slot.seq  # type: ignore[union-attr]
                slot.claimed = slot.ask.arch.id  # type: ignore[union-attr]
                active[self.executor.submit(slot.ask.arch)] = ("evaluate", slot)  # type: ignore[arg-type]
            elif not self.uses_llm:  # cheap and RNG-driven: propose here, in dispatch order
                self._propose(slot)
                after_proposal(slot)
            else:
                active[pool.submit(self._in_thread, self._propose, slot)] = ("propose", slot)

        def after_proposal(slot: Slot) -> None:
            outcome = self._precheck(slot)
            if outcome is not None:
                after_evaluation(slot, outcome)
                return
            assert slot.proposal is not None and slot.proposal.arch is not None
            slot.claimed = slot.proposal.arch.id
            self._claims[slot.claimed] = slot.seq
            active[self.executor.submit(slot.proposal.arch)] = ("evaluate", slot)

        def after_evaluation(slot: Slot, outcome: Outcome) -> None:
            self._evaluated(slot, outcome)
            if self.reflector is not None and slot.ask.parent is not None:
                active[pool.submit(self._in_thread, self._reflect, slot)] = ("reflect", slot)
            else:
                self._reflect(slot)  # fused or no reflection: no call
                commit(slot)

        def commit(slot: Slot) -> None:
            flying.remove(slot)
            self._commit(slot)

        def drop(slot: Slot) -> None:
            flying.remove(slot)
            if slot.claimed is not None and self._claims.get(slot.claimed) == slot.seq:
                del self._claims[slot.claimed]

        try:
            backlog = deque(self.store.pending())
            while True:
                while fatal is None and stop is None and len(flying) < k:
                    if backlog:
                        seq, payload = backlog.popleft()
                        launch(Slot.from_payload(seq, payload, self.strategy.trials + len(flying)))
                        continue
                    stop = self._budget_stop()
                    if stop:
                        break
                    ask = self._ask_concurrent(flying)
                    if ask is None:
                        break
                    slot = self._new_slot(ask, seq=self._next_seq)
                    self._next_seq += 1
                    self.store.add_pending(slot.seq, slot.payload(), self._rng_state())
                    launch(slot)
                if not flying:
                    break
                if not active:  # every flying slot committed synchronously: dispatch again
                    continue
                done, _ = wait(list(active), return_when=FIRST_COMPLETED)
                for future in done:
                    stage, slot = active.pop(future)
                    try:
                        result = future.result()
                    except BudgetExhausted as exc:
                        stop = stop or str(exc)
                        drop(slot)  # stays pending: asked again (from the cache) on resume
                        continue
                    except Exception as exc:  # an LLM error the retries did not fix, an evaluator bug
                        fatal = fatal or exc
                        drop(slot)
                        continue
                    if stage == "propose":
                        slot.calls.extend(result)
                        after_proposal(slot)
                    elif stage == "evaluate":
                        after_evaluation(slot, result)
                    else:
                        slot.calls.extend(result)
                        commit(slot)
        finally:
            pool.shutdown(wait=fatal is not None or stop is not None, cancel_futures=True)
        if fatal is not None:
            raise fatal
        return stop

    def _in_thread(self, step: Callable[[Slot], None], slot: Slot) -> list[CallRecord]:
        """Run one LLM step of ``slot`` in a pool thread; returns that thread's call records."""
        assert self.gateway is not None
        self.gateway.drain()  # calls of an aborted earlier step in this thread are not ours
        step(slot)
        return self.gateway.drain()

    def _ask_concurrent(self, flying: list[Slot]) -> Ask | None:
        """The next ask given the slots in flight (the initial population is filled first)."""
        initial = [s for s in flying if s.ask.iteration == 0]
        if self.strategy.initialising:
            if len(initial) != len(flying):
                return None
            exclude = set(self._claims)
            return self.strategy.ask(in_flight=len(initial), exclude=exclude)
        if initial:
            return None  # evolution starts once the initial population is settled
        return self.strategy.ask(in_flight=len(flying), skip_parent=self._skip_parent)

    def _new_slot(self, ask: Ask, *, seq: int) -> Slot:
        """A slot for ``ask`` with the notes and (fused) previous outcome it is asked with now."""
        slot = Slot(seq, ask, own_stream=self.uses_llm and seq >= 0 and self.config.concurrency > 1)
        if ask.parent is not None:
            slot.notes = self.memory.shown() if self.memory is not None else []
            slot.previous = self._previous if self.fused and self._reflects(slot) else None
        return slot

    def _reflects(self, slot: Slot) -> bool:
        """Whether ``slot``'s step is reflected on (``reflect_every``): a pure function of its
        persisted identity (trial or dispatch number, as in ``_seed_key``), so a resume or
        replay reflects on the same steps."""
        return self._step_number(slot) % self.config.reflect_every == 0

    def _temperature(self, slot: Slot) -> Temperature | None:
        """Concurrent slots draw from their own stream (seeded by seed and dispatch number), so a
        re-asked proposal repeats its requests; concurrency 1 shares the proposer's stream."""
        if not slot.own_stream:
            return None
        if slot.temperature is None:
            shared: Temperature = self.proposer.temperature  # type: ignore[attr-defined]
            slot.temperature = Temperature(
                random.Random(f"slot:{self.config.seed}:{slot.seq}"), shared.choices, shared.fixed
            )
        return slot.temperature

    def _seed_key(self, slot: Slot) -> tuple[object, ...]:
        """The persisted identity the model seeds of ``slot``'s calls derive from: the run seed
        and the trial number (sequential loop, concurrency 1) or the dispatch number (own
        stream, concurrency > 1); both are rebuilt identically on resume."""
        return (self.config.seed, "dispatch" if slot.own_stream else "trial", self._step_number(slot))

    @staticmethod
    def _step_number(slot: Slot) -> int:
        """``slot``'s persisted number: its dispatch number (own stream) or its trial number."""
        return slot.seq if slot.own_stream else slot.ask.number

    def _skip_parent(self, parent: Member) -> bool:
        """Whether the strategy draws another parent than ``parent``: with ``redraw_exhausted``,
        when the constrained edit reply could only repeat an evaluated cell (see Evolution.ask)."""
        c = self.config
        if not (self.uses_llm and c.exclude_evaluated and c.redraw_exhausted):
            return False
        return bool(self.proposer.parent_exhausted(parent.arch, self.strategy.evaluated.keys()))  # type: ignore[attr-defined]

    # ---- the steps of one trial (shared by both loops) ---------------------------------
    def _propose(self, slot: Slot) -> None:
        slot.times["start"] = time.perf_counter()
        parent = slot.ask.parent
        if parent is None:
            assert slot.ask.arch is not None
            slot.proposal = Proposal(slot.ask.arch)
        elif self.uses_llm:
            slot.proposal = self.proposer.propose(  # type: ignore[call-arg]
                parent, slot.notes, temperature=self._temperature(slot), previous=slot.previous,
                seed_key=self._seed_key(slot),
                evaluated=self.strategy.evaluated.keys() if self.config.exclude_evaluated else (),
            )
        else:
            slot.proposal = self.proposer.propose(parent, slot.notes)
        slot.times["proposed"] = time.perf_counter()

    def _precheck(self, slot: Slot) -> Outcome | None:
        """The outcome without evaluating (failed proposal, copy of the parent, already
        evaluated or being evaluated), or None when the child must be evaluated."""
        proposal, parent = slot.proposal, slot.ask.parent
        assert proposal is not None
        if proposal.state is not None:
            return Outcome(proposal.state, proposal.arch, reason=proposal.reason)
        assert proposal.arch is not None
        if parent is not None and proposal.arch.id == parent.id:
            return Outcome(TrialState.DUPLICATE, proposal.arch, reason="the child equals its parent (nothing was mutated)")
        seen = self.strategy.duplicate_outcome(proposal.arch)
        if seen is None and proposal.arch.id in self._claims:
            seen = Outcome(
                TrialState.DUPLICATE,
                proposal.arch,
                reason="already being evaluated for a concurrent proposal (not scored twice)",
            )
        return seen

    def _evaluated(self, slot: Slot, outcome: Outcome) -> None:
        slot.outcome = outcome
        slot.times["evaluated"] = time.perf_counter()
        if outcome.arch is not None and outcome.state is not TrialState.INVALID:
            slot.encoded = self.space.encode(outcome.arch)

    def _reflect(self, slot: Slot) -> None:
        """The separate reflection call, or the fused reflection carried by the mutation reply."""
        parent, proposal, outcome = slot.ask.parent, slot.proposal, slot.outcome
        assert proposal is not None and outcome is not None
        if parent is not None and self.reflector is not None and self._reflects(slot):
            call = self.reflector.reflect(
                parent, self.space.encode(parent.arch), proposal, outcome, slot.encoded,
                temperature=self._temperature(slot), seed_key=self._seed_key(slot),
            )
            slot.reflection = (clean_note(call.text, self.config.note_max_chars), call.text)
        elif parent is not None and self.fused and slot.previous is not None:
            slot.reflection = (clean_note(proposal.reflection, self.config.note_max_chars), proposal.reflection)
        slot.times["done"] = time.perf_counter()

    def _commit(self, slot: Slot) -> None:
        """Number the trial, write it with its calls atomically, and apply it."""
        ask = self.strategy.stamp(slot.ask)
        outcome = slot.outcome
        proposal = slot.proposal
        assert outcome is not None and proposal is not None
        if slot.claimed is not None and self._claims.get(slot.claimed) == slot.seq:
            del self._claims[slot.claimed]
        if outcome.state is TrialState.COMPLETE and outcome.arch is not None:
            outcome = self.strategy.duplicate_outcome(outcome.arch) or outcome  # defensive: never twice
        t = slot.times
        start, proposed = t.get("start", 0.0), t.get("proposed", t.get("start", 0.0))
        evaluated = t.get("evaluated", proposed)
        done = t.get("done", time.perf_counter())
        trial = self.strategy.make_trial(
            ask,
            outcome,
            encoded=slot.encoded,
            thinking=proposal.thinking,
            timings={
                "propose_s": proposed - start,
                "evaluate_s": evaluated - proposed,
                "reflect_s": done - evaluated,
                "total_s": time.perf_counter() - start,
            },
            notes_shown=tuple(n.id for n in slot.notes),
        )
        meta: dict[str, Any] = {}
        if ask.redraws:
            meta["parent_redraws"] = self.parent_redraws + ask.redraws
        if ask.parent is not None and self.fused:
            self._previous = previous_outcome(
                ask.parent, self.space.encode(ask.parent.arch), proposal, outcome, slot.encoded
            )
            meta["last_outcome"] = self._previous.to_json()
        self.store.commit_trial(
            trial,
            slot.calls,
            self._rng_state(),
            slot.reflection,
            pending_seq=slot.seq if slot.seq >= 0 else None,
            meta=meta,
        )
        self.parent_redraws += ask.redraws
        self._apply(trial, slot.reflection[0] if slot.reflection else None)
        self._report(trial)

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
            "next_seq": self._next_seq,  # dispatch numbers of a concurrent search
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

        config = self.config.to_dict()
        summary = write_report(self.store, self.run_dir, benchmark=lambda row: trial_accuracies(config, row))
        self.store.set_status(status, reason)
        best = self.strategy.best()
        if self.selected is not None:
            best = Member(self.selected.arch, self.selected.score, self.selected.trial)
        return RunResult(
            self.run_dir, status, reason, best, summary["arch"], self.strategy.trials, summary["benchmark"],
            summary.get("tokens", {}), summary.get("selection", {}),
        )

    def close(self) -> None:
        """Release the evaluation workers, the score cache and the run store."""
        try:
            self.executor.close()
        finally:
            if self.score_cache is not None:
                self.score_cache.close()
            self.store.close()


def open_score_cache(setting: str | None) -> Any:
    """The persistent score cache named by the ``score_cache`` setting (None for "none")."""
    if setting is not None and setting.strip().lower() in ("none", "off", "false", ""):
        return None
    from ..score_cache import ScoreCache

    return ScoreCache.open(None if setting in (None, "default") else setting)


def validate_config(config: SearchConfig) -> None:
    """Fail with a ConfigError on a setting that would stop the run, before anything is written:
    benchmark table, space name and options (budget preset, --space-option), proxy, final selection, proposer,
    LLM spec."""
    _check_nb201(config)
    config.make_space()  # the space exactly as the run builds it (options + budget preset + limits)
    component_names(config.proxy)  # a proxy, a+b+c or a named ensemble (UnknownName otherwise)
    FinalSelectionSettings.from_config(config)
    proposer = PROPOSERS.get(config.proposer)
    if getattr(proposer, "uses_llm", False):
        from ..llm import BACKENDS, parse_spec

        BACKENDS.get(parse_spec(config.llm)[0])


def _remove_new_run(run_dir: Path, *, remove_dir: bool) -> None:
    """Delete the store files of a run that never started (and, with ``remove_dir``, the
    directory made for it when nothing else was written there)."""
    for suffix in ("", "-wal", "-shm", "-journal", "-lock"):
        (run_dir / f"{DB_NAME}{suffix}").unlink(missing_ok=True)
    if remove_dir:
        try:
            run_dir.rmdir()
        except OSError:
            pass  # something else was written there: keep it


def _check_nb201(config: SearchConfig) -> None:
    """An explicitly configured benchmark table must open before any work is spent."""
    if config.nb201 is None:
        return
    from ..benchmarks.nb201_table import open_nb201

    open_nb201(config.nb201, data_dir=config.data_dir)


__all__ = [
    "RESUME_OVERRIDES", "RunResult", "SearchRun", "Slot", "default_client_factory", "open_score_cache", "validate_config",
]
