"""The Python API: run a search, score architectures, read a run directory (docs/api.md).

(The function names never equal a subpackage's: ``rznas.search`` and ``rznas.spaces`` are the
packages, so the functions are :func:`run_search` and :func:`list_spaces`.)

Thin wrappers over the machinery the commands use — :class:`~rznas.search.config.SearchConfig`
and :class:`~rznas.search.runner.SearchRun` for ``rznas search``, the probe and the scorer of
``rznas score``, the run store for reading results — so a number from Python is the number the
command line prints. Heavy modules (torch) are imported on first use, not by ``import rznas``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from .arch import Architecture
from .errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from .search.config import SearchConfig
    from .trial import Trial

PathLike = str | Path


# --- reading runs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """A run directory as read from its store: settings, every trial, the best one, LLM usage.

    The best trial is the best COMPLETE one (ties: the earliest), the rule of ``best_arch.json``.
    """

    run_dir: Path
    config: "SearchConfig"
    status: str  # running | finished | stopped | interrupted (killed) | unknown
    reason: str
    trials: list["Trial"] = field(repr=False)
    llm_calls: list[dict[str, Any]] = field(repr=False)
    usage: dict[str, float]  # live LLM calls, input/output tokens, cost in USD
    best: "Trial | None"

    @property
    def best_arch(self) -> Architecture | None:
        return self.best.arch if self.best is not None else None

    @property
    def best_encoded(self) -> str | None:
        """The best architecture in its space's string encoding."""
        return self.best.encoded if self.best is not None else None

    @property
    def best_score(self) -> float | None:
        """The proxy score of the best architecture (``config.proxy``)."""
        return self.best.score if self.best is not None else None

    def complete_trials(self) -> list["Trial"]:
        """The trials that were scored (state ``complete``), in order."""
        return [t for t in self.trials if t.state.value == "complete"]

    def __str__(self) -> str:
        best = f"best {self.best_encoded} ({self.config.proxy} {self.best_score:.6g})" if self.best else "no scored trial"
        return f"{self.run_dir}: {self.status}, {len(self.trials)} trials, {best}"


def load_run(run_dir: PathLike) -> Run:
    """Read the run in ``run_dir`` (finished, running or killed) through the read-only
    :class:`~rznas.run_reader.RunReader` of ``rznas runs``: it never writes to the store, and
    a SIGKILLed run reads as ``interrupted``."""
    from .report import best_trial
    from .run_reader import RunReader
    from .search.config import SearchConfig

    with RunReader(run_dir) as reader:
        with reader.snapshot():  # one committed state, even while the search commits trials
            stored = reader.config()
            trials = reader.trials()
            rows = reader.trial_rows()
            llm_calls = reader.llm_calls()
            usage = reader.usage()
            status = reader.status()
    config = SearchConfig.from_dict(stored, origin=f"{run_dir} config")
    best_row = best_trial(rows)
    best = next(t for t in trials if t.number == best_row["number"]) if best_row else None
    return Run(
        run_dir=Path(run_dir),
        config=config,
        status=status.state,
        reason=status.reason or "",
        trials=trials,
        llm_calls=llm_calls,
        usage=usage,
        best=best,
    )


# --- searching --------------------------------------------------------------------------------


def run_search(
    space: str = "nb201",
    proxy: str = "synflow",
    *,
    proposer: str = "llm",
    out: PathLike | None = None,
    config: "SearchConfig | None" = None,
    progress: bool = False,
    **settings: Any,
) -> Run:
    """Run a search to the end and return it as a :class:`Run` (what :func:`load_run` reads back).

    ``settings`` are :class:`~rznas.search.config.SearchConfig` fields (``population``,
    ``iterations``, ``seed``, ``llm``, ``data``, ``max_params``, ...); a misspelt one is a
    ConfigError with a "did you mean". ``config`` is a base configuration they override.
    ``out`` is the run directory (default ``runs/search-<time>``, as ``rznas search``); it must
    not hold a run yet. ``progress=True`` prints the command's progress lines to stderr.
    """
    from .search.config import SearchConfig
    from .search.progress import Progress
    from .search.runner import SearchRun

    base = config.to_dict() if config is not None else {}
    base.update({"space": space, "proxy": proxy, "proposer": proposer})
    base.update(settings)
    resolved = SearchConfig.from_dict(base, origin="rznas.search()")
    run_dir = Path(out) if out is not None else Path("runs") / time.strftime("search-%Y%m%d-%H%M%S")
    run = SearchRun.start(resolved, run_dir, progress=Progress(enabled=progress))
    try:
        run.run()
    finally:
        run.close()
    return load_run(run_dir)


# --- scoring ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    """One proxy's score of one architecture; ``value`` is None and ``error`` says why when it failed."""

    arch: str  # the space's string encoding
    proxy: str
    value: float | None
    seconds: float
    unit: str = ""  # e.g. "M" for params, "MFLOPs" for flops ("" = unitless, as every ensemble)
    error: str | None = None
    #: an ensemble's component scores (None where a component failed); empty for a single proxy
    components: dict[str, float | None] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


def score(
    archs: str | Architecture | Iterable[str | Architecture],
    proxies: str | Sequence[str] = "synflow",
    *,
    space: str = "nb201",
    data: str = "gaussian",
    data_dir: PathLike | None = None,
    batch_size: int = 64,
    seed: int = 0,
    reference_size: int = 256,
    reference_seed: int = 0,
    cache: PathLike | None = "default",
) -> list[Score]:
    """Score architectures with zero-cost proxies or ensembles, exactly as ``rznas score`` does.

    ``archs`` are encodings (e.g. NB201 ``|nor_conv_3x3~0|+|...``) or Architecture objects;
    ``proxies`` a name, a comma-separated list or a list; a name may be an ensemble
    (``zico+naswot+synflow``, ``zc_trio``, ``az_nas``). ``data`` the probe data (``gaussian``,
    ``cifar10``, ``cifar100``, ``folder:PATH``, ``npz:PATH``). ``seed`` seeds the probe sample and
    the weights (a search's ``score_seed``: the same seed gives the score the search records for
    the same probe). An ensemble ranks its components against ``reference_size`` seeded cells
    (``reference_seed``), read from or stored in the score cache ``cache`` (a path, "default" for
    $RZNAS_CACHE_DIR or ~/.cache/rznas, None for none), as a search does. A failed score is a
    Score with an ``error``, never an exception, so one bad architecture does not lose the others.
    """
    from .commands.score import parse_names
    from .fitness import ProxyFitness
    from .proxies import get_proxy
    from .scoring import chunks_needed, score_architecture
    from .search.executors import ProbeSpec
    from .search.named_fitness import fitness_components, named_fitnesses
    from .spaces import get_space

    names = parse_names(proxies if isinstance(proxies, str) else ",".join(proxies))
    the_space = get_space(space)
    items = [archs] if isinstance(archs, (str, Architecture)) else list(archs)
    if not items:
        raise ConfigError("give at least one architecture to score")
    decoded = [the_space.decode(a) if isinstance(a, str) else a for a in items]
    for arch in decoded:
        the_space.validate(arch)
    proxy_objects = [get_proxy(name) for name in fitness_components(names)]
    chunks = chunks_needed(proxy_objects)
    probe_spec = ProbeSpec(dataset=data, data_dir=None if data_dir is None else str(data_dir),
                           batch_size=batch_size, chunks=chunks, seed=seed)
    probe = probe_spec.make()
    fitnesses = named_fitnesses(
        names, space_name=space, space=the_space, probe_spec=probe_spec, probe=probe, device="cpu",
        score_seed=seed, reference_size=reference_size, reference_seed=reference_seed,
        cache="none" if cache is None else str(cache),
    )
    rows: list[Score] = []
    for arch in decoded:
        scored = score_architecture(the_space, arch, probe, proxy_objects, seed=seed, num_classes=probe.num_classes)
        text = the_space.encode(arch)
        for name, fitness in fitnesses.items():
            result = fitness.combine(scored.results)
            unit = fitness.proxy.unit if isinstance(fitness, ProxyFitness) else ""
            components = dict(result.components) if fitness.components else {}
            rows.append(Score(text, name, result.value, result.seconds, unit or "", result.error, components))
    return rows


# --- what is registered -------------------------------------------------------------------------


def list_spaces() -> list[str]:
    """Names of the registered search spaces (built-ins and installed plug-ins)."""
    from .spaces import SPACES

    return SPACES.names()


def list_proxies() -> list[str]:
    """Names of the registered zero-cost proxies (built-ins and installed plug-ins)."""
    from .proxies import PROXIES

    return PROXIES.names()


__all__ = ["Run", "Score", "list_proxies", "list_spaces", "load_run", "run_search", "score"]
