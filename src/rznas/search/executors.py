"""Evaluation executors: run ``arch -> Outcome`` in-process, in a local process pool, or on Ray.

Every executor has the same small interface (:class:`Executor`): ``submit(arch)`` returns a
``concurrent.futures.Future`` of an :class:`Outcome`, ``map_unordered(archs)`` streams
``(arch, outcome)`` pairs as they finish, ``close()`` releases the workers. Workers never
receive live objects: they rebuild the evaluator from an :class:`EvaluatorSpec` (plain,
picklable settings) once per worker process. A worker that dies takes no trial with it:
its tasks are retried elsewhere a bounded number of times, and a task that keeps killing
workers ends as a failed Outcome whose reason starts with :data:`WORKER_LOST`.
"""
from __future__ import annotations

import dataclasses
import os
import queue
import sys
import threading
from abc import ABC, abstractmethod
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures.process import BrokenProcessPool, ProcessPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Iterator, Protocol

from ..arch import Architecture
from ..device import detect_gpus
from ..errors import ConfigError
from ..registry import Registry
from ..trial import Outcome, TrialState

if TYPE_CHECKING:  # pragma: no cover
    from ..data.probe import ProbeBatch
    from ..fitness import ReferenceSpec
    from ..score_cache import ScoreCache
    from .config import SearchConfig

EvaluateFn = Callable[[Architecture], Outcome]

#: reason prefix of an Outcome produced because workers kept dying (transient: never cached)
WORKER_LOST = "evaluation worker lost"


class EvaluatorFactory(Protocol):
    """Plain, picklable, hashable settings that a worker turns into an evaluator."""

    def build(self) -> EvaluateFn:
        """A fresh ``arch -> Outcome`` callable (called once per worker process)."""
        ...


# --- the settings a worker rebuilds the evaluator from --------------------------------


@dataclass(frozen=True)
class ProbeSpec:
    """Which probe batch to build: data set, batch size, chunks, seed, resizing."""

    dataset: str = "gaussian"
    data_dir: str | None = None
    batch_size: int = 64
    chunks: int = 2
    seed: int = 0
    resolution: int | None = None
    num_classes: int | None = None

    def make(self) -> "ProbeBatch":
        """Build the probe batch (reads data from ``data_dir`` when the data set is real)."""
        from ..data.probe import make_probe

        return make_probe(
            self.dataset,
            data_dir=self.data_dir,
            batch_size=self.batch_size,
            chunks=self.chunks,
            seed=self.seed,
            resolution=self.resolution,
            num_classes=self.num_classes,
        )

    def key(self) -> dict[str, Any]:
        """The identity of the probe data for caching (the folder it was read from excluded;
        the user's own data is identified by a digest of its content, not by its path)."""
        from ..data.probe import data_fingerprint

        data = dataclasses.asdict(self)
        data.pop("data_dir")
        content = data_fingerprint(self.dataset)
        if content is not None:
            data["content"] = content
        return data


@dataclass(frozen=True)
class EvaluatorSpec:
    """Everything a worker needs to rebuild the search's evaluator; hashable and picklable."""

    space: str
    proxy: str
    probe: ProbeSpec = ProbeSpec()
    score_seed: int = 0  # weights and proxy seed (rznas.scoring); the search's own seed never enters a score
    space_options: tuple[tuple[str, Any], ...] = ()
    max_params: float | None = None
    max_flops: float | None = None
    max_layers: int | None = None
    #: "cpu" or "cuda", resolved (rznas.device.choose_device): every executor scores there; a
    #: pinned process worker sees its GPU as cuda:0
    device: str = "cpu"
    # an ensemble fitness: its reference sample, and (once resolved) each component's sorted
    # reference scores as (proxy, values, failed), so that workers never rescore the reference
    reference_size: int = 256
    reference_seed: int = 0
    references: tuple[tuple[str, tuple[float, ...], int], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "space_options", tuple(sorted(dict(self.space_options).items())))
        if self.device.split(":")[0] not in ("cpu", "cuda"):
            raise ConfigError(f"evaluation device must be cpu or cuda, got {self.device!r}")

    @classmethod
    def from_config(cls, config: "SearchConfig") -> "EvaluatorSpec":
        """The spec of the evaluator that :class:`~rznas.search.runner.SearchRun` builds (on the
        config's device and probe data; ``auto`` is resolved here, a search stores both resolved)."""
        config = config.resolved()

        return cls(
            space=config.space,
            proxy=config.proxy,
            probe=ProbeSpec(
                dataset=config.data,
                data_dir=config.data_dir,
                batch_size=config.batch_size,
                chunks=config.probe_chunks,
                seed=config.score_seed,
                resolution=config.probe_resolution,
            ),
            score_seed=config.score_seed,
            # options + budget preset, search limits folded in (plain values: see search.budget.space_kwargs)
            space_options=tuple(sorted(config.space_kwargs().items())),
            max_params=config.max_params,
            max_flops=config.max_flops,
            max_layers=config.max_layers,
            device=config.device,
            reference_size=config.reference_size,
            reference_seed=config.reference_seed,
        )

    def with_device(self, device: str) -> "EvaluatorSpec":
        return dataclasses.replace(self, device=device)

    def build(self) -> EvaluateFn:
        """A live :class:`~rznas.search.evaluator.Evaluator` (probe moved to ``device``)."""
        from ..spaces import get_space
        from .budget import ArchBudget
        from .evaluator import Evaluator

        space = get_space(self.space, **dict(self.space_options))
        probe = self._probe()
        budget = ArchBudget(
            max_params=self.max_params,
            max_flops=self.max_flops,
            max_layers=self.max_layers,
            resolution=probe.resolution,
        )
        return Evaluator(space, self.fitness(space, probe), probe, score_seed=self.score_seed, budget=budget)

    def _probe(self) -> "ProbeBatch":
        probe = self.probe.make()
        return probe.to(self.device) if self.device != "cpu" else probe

    def reference_spec(self) -> "ReferenceSpec":
        from ..fitness import ReferenceSpec

        return ReferenceSpec(size=self.reference_size, seed=self.reference_seed)

    def fitness(self, space: Any, probe: "ProbeBatch", *, store: Any = None, progress: Any = None) -> Any:
        """The fitness object; an ensemble uses the resolved references, else scores its reference
        cells here (exactly as trials are scored, without budget checks)."""
        from ..fitness import ComponentReference, architecture_scorer, make_fitness

        references = {name: ComponentReference(name, values, failed) for name, values, failed in self.references}
        return make_fitness(
            self.proxy,
            space=space,
            score_cell=architecture_scorer(space, probe, seed=self.score_seed, num_classes=probe.num_classes),
            reference=self.reference_spec(),
            references=references or None,
            store=store,
            progress=progress,
        )

    def with_references(self, cache: "ScoreCache | None" = None, progress: Any = None) -> "EvaluatorSpec":
        """This spec with an ensemble's reference scores resolved (read from / stored in ``cache``),
        so that every worker builds the same fitness without rescoring; a proxy's spec is returned as is."""
        from ..fitness import ensemble_spec
        from ..score_cache import ReferenceCache
        from ..spaces import get_space

        if ensemble_spec(self.proxy) is None or self.references:
            return self
        store = ReferenceCache(cache, self.reference_settings) if cache is not None else None
        fitness = self.fitness(get_space(self.space, **dict(self.space_options)), self._probe(), store=store, progress=progress)
        resolved = tuple((name, ref.values, ref.failed) for name, ref in fitness.references.items())
        return dataclasses.replace(self, references=resolved)

    def reference_settings(self, proxy: str) -> dict[str, Any]:
        """The score-cache key of one component's scores on reference cells (no budget applies)."""
        from ..score_key import cache_settings

        settings = cache_settings(
            space=self.space,
            space_options=dict(self.space_options),
            proxy=proxy,
            probe=self.probe.key(),
            score_seed=self.score_seed,
            budget={},
            device=self.device,
        )
        return {**settings, "role": "ensemble reference"}

    def cache_settings(self) -> dict[str, Any]:
        """What determines a score, code identity included: the key of the persistent score
        cache (JSON-ready; :func:`rznas.score_key.cache_settings`); an ensemble adds its fitness."""
        from ..fitness import ensemble_spec
        from ..score_key import cache_settings

        spec = ensemble_spec(self.proxy)
        return cache_settings(
            space=self.space,
            space_options=dict(self.space_options),
            proxy=self.proxy,
            probe=self.probe.key(),
            score_seed=self.score_seed,
            budget={"max_params": self.max_params, "max_flops": self.max_flops, "max_layers": self.max_layers},
            device=self.device,
            fitness=None if spec is None else {**spec.key(), "reference": self.reference_spec().key()},
        )


# --- the worker side ------------------------------------------------------------------

_WORKER_EVALUATORS: dict[Any, EvaluateFn] = {}


def evaluate_in_worker(factory: EvaluatorFactory, arch: Architecture) -> Outcome:
    """Score ``arch`` with the evaluator built (once per process) from ``factory``."""
    evaluator = _WORKER_EVALUATORS.get(factory)
    if evaluator is None:
        evaluator = factory.build()
        _WORKER_EVALUATORS[factory] = evaluator
    return evaluator(arch)


def _device_of(factory: EvaluatorFactory) -> str:
    """The device type a factory's evaluators score on (cpu for factories that do not say)."""
    return str(getattr(factory, "device", "cpu")).split(":")[0]


def _init_process_worker(devices: Any, threads: int) -> None:
    """Process-pool initializer: pin one GPU (CUDA_VISIBLE_DEVICES) and the torch thread count."""
    if devices is not None:
        try:
            device = devices.get_nowait()
        except queue.Empty:
            device = None
        if device is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = str(device)
    import torch

    torch.set_num_threads(max(1, threads))


def lost_outcome(arch: Architecture, attempts: int, detail: str) -> Outcome:
    """The failed Outcome of a task that killed its worker ``attempts`` times."""
    return Outcome(
        TrialState.PROXY_ERROR,
        arch,
        reason=f"{WORKER_LOST}: the worker died {attempts} time(s) while evaluating this architecture ({detail})",
        transient=True,
    )


def is_worker_lost(outcome: Outcome) -> bool:
    """True for an Outcome made because workers kept dying (a possibly transient failure)."""
    return outcome.state is TrialState.PROXY_ERROR and outcome.reason.startswith(WORKER_LOST)


# --- the interface --------------------------------------------------------------------


class Executor(ABC):
    """Runs evaluations somewhere; results come back as futures, in completion order."""

    name: ClassVar[str] = ""
    workers: int = 1

    @abstractmethod
    def submit(self, arch: Architecture) -> "Future[Outcome]":
        """Schedule the evaluation of ``arch``; the future holds its Outcome."""

    def map_unordered(self, archs: Iterable[Architecture], *, window: int | None = None) -> Iterator[tuple[Architecture, Outcome]]:
        """Evaluate ``archs``, yielding ``(arch, outcome)`` as each finishes (at most ``window`` in flight)."""
        limit = window or max(4, 4 * self.workers)
        pending: dict[Future[Outcome], Architecture] = {}
        source = iter(archs)
        exhausted = False
        while True:
            while not exhausted and len(pending) < limit:
                try:
                    arch = next(source)
                except StopIteration:
                    exhausted = True
                    break
                pending[self.submit(arch)] = arch
            if not pending:
                return
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for future in done:
                yield pending.pop(future), future.result()

    def close(self) -> None:
        """Release the workers; unfinished futures are cancelled."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


ExecutorFactory = Callable[..., Executor]
EXECUTORS: Registry[ExecutorFactory] = Registry("executor")


def _completed(outcome: Outcome | None = None, error: BaseException | None = None) -> "Future[Outcome]":
    future: Future[Outcome] = Future()
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(outcome)  # type: ignore[arg-type]
    return future


@EXECUTORS.register("inline")
class InlineExecutor(Executor):
    """Evaluates in the calling thread at submit time (the default; no workers, no copies)."""

    name = "inline"

    def __init__(self, factory: EvaluatorFactory | None = None, *, evaluator: EvaluateFn | None = None, **_: Any):
        if evaluator is None:
            if factory is None:
                raise ConfigError("the inline executor needs an evaluator or an evaluator spec")
            evaluator = factory.build()
        self.factory = factory
        self.evaluator = evaluator
        self.workers = 1

    def submit(self, arch: Architecture) -> "Future[Outcome]":
        try:
            return _completed(self.evaluator(arch))
        except Exception as exc:  # the same contract as a worker: the future carries it
            return _completed(error=exc)


# --- local process pool ---------------------------------------------------------------


@dataclass
class _Task:
    arch: Architecture
    future: "Future[Outcome]"
    crashes: int = 0  # deaths while this task ran alone (so it surely caused them)


@EXECUTORS.register("process")
class ProcessExecutor(Executor):
    """A local pool of worker processes ('spawn' context): CPU workers, or one per GPU.

    Tasks go out at most ``2 * workers`` at a time. When a worker dies the pool is
    recreated and the tasks that were in flight become suspects, each rerun *alone*, so
    a crash is pinned on the task that caused it; a task that kills ``max_retries + 1``
    workers while running alone ends as a failed Outcome (:data:`WORKER_LOST`).
    """

    name = "process"

    def __init__(
        self,
        factory: EvaluatorFactory,
        *,
        workers: int | None = None,
        max_retries: int = 2,
        gpus: int | None = None,
        context: str = "spawn",
        threads: int = 1,
        **_: Any,
    ):
        import multiprocessing

        if max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {max_retries}")
        if context not in ("spawn", "forkserver"):
            raise ConfigError(f"process executor context must be spawn or forkserver (not fork, with torch), got {context!r}")
        # the spec's device decides, as for every executor: GPUs are pinned only for cuda
        on_gpu = _device_of(factory) == "cuda"
        self.gpus = (detect_gpus() if gpus is None else gpus) if on_gpu else 0
        if on_gpu and not self.gpus:
            raise ConfigError("the evaluator is set to --device cuda, but no CUDA device is visible to torch")
        if workers is None:
            workers = self.gpus or (os.cpu_count() or 1)
        if workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {workers}")
        self.factory = factory
        self.workers = workers
        self.max_retries = max_retries
        self._ctx = multiprocessing.get_context(context)
        # scale with workers, not threads: several torch threads per tiny network only
        # oversubscribe the cores (measured: 10x slower on a loaded 2-core machine)
        if threads < 1:
            raise ConfigError(f"threads per worker must be >= 1, got {threads}")
        self._threads = threads
        self._lock = threading.Lock()
        self._events: queue.Queue[tuple[Future[Outcome], _Task, int] | None] = queue.Queue()
        self._queue: deque[_Task] = deque()
        self._suspects: deque[_Task] = deque()
        self._running: dict[Future[Outcome], tuple[_Task, bool]] = {}  # inner -> (task, alone)
        self._generation = 0
        self._closed = False
        self.restarts = 0
        self._pool = self._new_pool()
        self._check_workers_start()
        self._thread = threading.Thread(target=self._dispatch, name="rznas-process-executor", daemon=True)
        self._thread.start()

    def _new_pool(self) -> ProcessPoolExecutor:
        devices = None
        if self.gpus:
            devices = self._ctx.Queue()
            for index in range(self.workers):
                devices.put(index % self.gpus)
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=self._ctx,
            initializer=_init_process_worker,
            initargs=(devices, self._threads),
        )

    def _check_workers_start(self) -> None:
        """Fail fast (not as a crash loop) when a worker process cannot even start."""
        try:
            self._pool.submit(os.getpid).result(timeout=600)
        except BrokenProcessPool:
            self._pool.shutdown(wait=False, cancel_futures=True)
            raise ConfigError(
                "evaluation worker processes die on start-up (see the traceback above); a script run "
                "from stdin or an unguarded __main__ cannot start 'spawn' workers"
            ) from None

    def submit(self, arch: Architecture) -> "Future[Outcome]":
        future: Future[Outcome] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the executor is closed")
            self._queue.append(_Task(arch, future))
        self._events.put(None)  # wake the dispatcher
        return future

    # the dispatcher thread owns the pool: it submits, recreates and resubmits
    def _dispatch(self) -> None:
        while True:
            event = self._events.get()
            with self._lock:
                if self._closed:
                    return
            if event is not None:
                self._handle(*event)
            self._pump()

    def _pump(self) -> None:
        with self._lock:
            if any(alone for _, alone in self._running.values()):
                return  # a suspect runs alone
            if self._suspects:
                if not self._running:
                    self._start(self._suspects.popleft(), alone=True)
                return  # let the pool drain, then run the suspect alone
            while self._queue and len(self._running) < 2 * self.workers:
                task = self._queue.popleft()
                if task.future.set_running_or_notify_cancel():
                    self._start(task, alone=False)

    def _start(self, task: _Task, *, alone: bool) -> None:
        generation = self._generation
        try:
            inner = self._pool.submit(evaluate_in_worker, self.factory, task.arch)
        except BrokenProcessPool:
            inner = _completed(error=BrokenProcessPool("the pool broke before the task was sent"))
        self._running[inner] = (task, alone)
        inner.add_done_callback(lambda f: self._events.put((f, task, generation)))

    def _handle(self, inner: "Future[Outcome]", task: _Task, generation: int) -> None:
        with self._lock:
            entry = self._running.pop(inner, None)
            if entry is None:
                return
            alone = entry[1]
            error = inner.exception() if not inner.cancelled() else BrokenProcessPool("cancelled")
            if error is None:
                task.future.set_result(inner.result())
                return
            if not isinstance(error, BrokenProcessPool):
                task.future.set_exception(error)
                return
            if generation == self._generation:  # first report of this break: a fresh pool
                old, self._pool = self._pool, self._new_pool()
                self._generation += 1
                self.restarts += 1
                old.shutdown(wait=False, cancel_futures=True)
            if alone:
                task.crashes += 1
                if task.crashes > self.max_retries:
                    task.future.set_result(lost_outcome(task.arch, task.crashes, "process pool worker exited"))
                    return
            self._suspects.append(task)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            tasks = list(self._queue) + list(self._suspects) + [task for task, _ in self._running.values()]
            self._queue.clear()
            self._suspects.clear()
            self._running.clear()
        self._events.put(None)
        self._thread.join()
        self._pool.shutdown(wait=True, cancel_futures=True)
        for task in tasks:
            if not task.future.done():
                task.future.cancel() or task.future.set_exception(RuntimeError("the executor was closed"))


# --- Ray --------------------------------------------------------------------------------


def import_ray() -> Any:
    """Import ray lazily, with a clear ConfigError when it is not installed."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "the ray executor needs Ray: pip install 'rznas[ray]' (or pip install ray)"
        ) from None
    return ray


@EXECUTORS.register("ray")
class RayExecutor(Executor):
    """Ray tasks on a cluster (``address``) or a local one started here (``workers`` CPUs).

    Ray retries a task whose worker died up to ``max_retries`` times (system failures
    only; an exception raised by the evaluator is not retried); when the retries are
    spent the task ends as a failed Outcome (:data:`WORKER_LOST`).
    """

    name = "ray"

    def __init__(
        self,
        factory: EvaluatorFactory,
        *,
        workers: int | None = None,
        address: str | None = None,
        max_retries: int = 2,
        gpus_per_task: float | None = None,
        init_options: dict[str, Any] | None = None,
        **_: Any,
    ):
        ray = import_ray()
        if max_retries < 0:
            raise ConfigError(f"max_retries must be >= 0, got {max_retries}")
        if workers is not None and workers < 1:
            raise ConfigError(f"--workers must be >= 1, got {workers}")
        self._ray = ray
        self._owns_cluster = False
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address is None:
                # a private local cluster on the loopback interface: usage stats and token
                # auth off (nothing outside 127.0.0.1 can reach it); the environment may override
                os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
                os.environ.setdefault("RAY_AUTH_MODE", "disabled")
                options.update(num_cpus=workers or os.cpu_count() or 1, _node_ip_address="127.0.0.1")
            else:
                options["address"] = address
                options.pop("include_dashboard")
            options.update(init_options or {})
            try:
                ray.init(**options)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                where = address or "a local cluster"
                raise ConfigError(f"cannot start or reach Ray at {where}: {exc}") from None
            self._owns_cluster = True
        resources = ray.cluster_resources()
        on_gpu = _device_of(factory) == "cuda"
        if gpus_per_task is None:
            gpus_per_task = 1.0 if on_gpu else 0.0
        if on_gpu and not (gpus_per_task and resources.get("GPU", 0) > 0):
            self.close_cluster()
            raise ConfigError(
                f"the evaluator is set to --device cuda, but the Ray cluster offers no GPU to its tasks "
                f"(resources: {resources.get('GPU', 0)} GPU)"
            )
        if gpus_per_task and not on_gpu:
            self.close_cluster()
            raise ConfigError("gpus_per_task needs an evaluator on --device cuda")
        self.factory = factory
        self.workers = workers or max(1, int(resources.get("GPU" if gpus_per_task else "CPU", 1)))
        self.max_retries = max_retries
        self._remote = ray.remote(evaluate_in_worker).options(
            num_cpus=1, num_gpus=gpus_per_task, max_retries=max_retries, retry_exceptions=False
        )
        self._factory_ref = ray.put(factory)
        self._lost_errors = tuple(
            getattr(ray.exceptions, name)
            for name in ("WorkerCrashedError", "OutOfMemoryError", "NodeDiedError", "LocalRayletDiedError")
            if hasattr(ray.exceptions, name)
        )

    def submit(self, arch: Architecture) -> "Future[Outcome]":
        ref = self._remote.remote(self._factory_ref, arch)
        inner = ref.future()
        future: Future[Outcome] = Future()
        future.set_running_or_notify_cancel()

        def relay(done: "Future[Any]") -> None:
            error = done.exception()
            if error is None:
                future.set_result(done.result())
            elif isinstance(error, self._lost_errors):
                future.set_result(lost_outcome(arch, self.max_retries + 1, f"{type(error).__name__}"))
            else:
                cause = getattr(error, "cause", None)  # RayTaskError wraps the evaluator's exception
                future.set_exception(cause if isinstance(cause, BaseException) else error)

        inner.add_done_callback(relay)
        return future

    def close(self) -> None:
        self.close_cluster()

    def close_cluster(self) -> None:
        """Shut down the local cluster this executor started (a joined cluster is left alone)."""
        if self._owns_cluster and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns_cluster = False


# --- a cache in front of any executor -----------------------------------------------------


class CachingExecutor(Executor):
    """Answers from a :class:`~rznas.score_cache.ScoreCache` and stores what ``inner`` computes.

    A failure to store (disk full, a locked or read-only file) never loses the result: the
    outcome is returned all the same, the first failure is reported through ``notify`` (the
    search's progress messages; stderr by default) and ``store_failures`` counts them all.
    """

    name = "cached"

    def __init__(
        self,
        inner: Executor,
        cache: "ScoreCache",
        settings: dict[str, Any],
        *,
        notify: Callable[[str], None] | None = None,
    ):
        self.inner = inner
        self.cache = cache
        self.context = cache.context(settings)
        self.workers = inner.workers
        self.notify = notify or _to_stderr
        self.hits = 0
        self.misses = 0
        self.store_failures = 0

    def submit(self, arch: Architecture) -> "Future[Outcome]":
        hit = self.cache.get(self.context, arch)
        if hit is not None:
            self.hits += 1
            return _completed(hit)
        self.misses += 1
        inner = self.inner.submit(arch)
        future: Future[Outcome] = Future()
        future.set_running_or_notify_cancel()

        def store(done: "Future[Outcome]") -> None:
            if done.cancelled():
                future.cancel() or future.set_exception(RuntimeError("the evaluation was cancelled"))
                return
            error = done.exception()
            if error is not None:
                future.set_exception(error)
                return
            outcome = done.result()
            try:
                self.cache.put(self.context, outcome)  # transient failures are skipped by the cache
            except Exception as exc:  # a cache failure must not lose the result: say so, return it
                self.store_failures += 1
                if self.store_failures == 1:
                    self.notify(
                        f"warning: the score cache at {self.cache.path} could not store a result "
                        f"({type(exc).__name__}: {exc}); scores are still used but not kept for later runs"
                    )
            future.set_result(outcome)

        inner.add_done_callback(store)
        return future

    def close(self) -> None:
        if self.store_failures > 1:
            self.notify(f"warning: {self.store_failures} results could not be stored in the score cache")
        self.inner.close()


def _to_stderr(message: str) -> None:
    print(f"rznas: {message}", file=sys.stderr, flush=True)


def create_executor(
    name: str,
    factory: EvaluatorFactory,
    *,
    workers: int | None = None,
    ray_address: str | None = None,
    max_retries: int = 2,
    cache: "ScoreCache | None" = None,
    evaluator: EvaluateFn | None = None,
    notify: Callable[[str], None] | None = None,
) -> Executor:
    """The executor registered as ``name``, optionally behind the persistent score cache
    (``notify`` receives its warnings, e.g. a result it could not store)."""
    cls = EXECUTORS.get(name)
    if ray_address is not None and name != "ray":
        raise ConfigError(f"--ray-address needs --executor ray (got --executor {name})")
    options: dict[str, Any] = {"workers": workers, "max_retries": max_retries}
    if name == "ray":
        options["address"] = ray_address
    if name == "inline":
        options = {"evaluator": evaluator}
    executor = cls(factory, **options)
    if cache is None:
        return executor
    spec = getattr(executor, "factory", None)
    if not isinstance(spec, EvaluatorSpec):
        executor.close()
        raise ConfigError("the score cache needs an EvaluatorSpec to derive its key")
    return CachingExecutor(executor, cache, spec.cache_settings(), notify=notify)


__all__ = [
    "CachingExecutor",
    "EXECUTORS",
    "EvaluatorFactory",
    "EvaluatorSpec",
    "Executor",
    "InlineExecutor",
    "ProbeSpec",
    "ProcessExecutor",
    "RayExecutor",
    "WORKER_LOST",
    "create_executor",
    "detect_gpus",
    "evaluate_in_worker",
    "import_ray",
    "is_worker_lost",
    "lost_outcome",
]
