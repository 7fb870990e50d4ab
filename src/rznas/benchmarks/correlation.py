"""Proxy-vs-accuracy correlation on a benchmark space (NB201): resumable, one build per arch.

For N architectures drawn once from a seed (the same sample for every proxy), each
network is built once under a per-architecture seed and scored by all requested
proxies together (:func:`rznas.proxies.evaluate` shares the gradient passes). Every
finished architecture is appended to a JSONL log, so a crash loses nothing and a rerun
with the same arguments resumes. Kendall tau and Spearman rho against 200-epoch test
accuracy are reported twice: with failed scores ranked lowest (the search never picks
them) and on the successful scores only.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import random
import shlex
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, TextIO

import numpy as np
import torch
from scipy import stats

from .. import __version__
from ..arch import Architecture
from ..data.paths import PathLike
from ..data.probe import PROBE_SOURCES, ProbeBatch, make_probe, parse_data_spec
from ..errors import ConfigError, DataError, UnknownName
from ..fitness import EnsembleFitness, ReferenceSpec, component_names, make_fitness, names_ensemble, score_reference
from ..proxies import Proxy, ProxyResult, evaluate, get_proxy
from ..scoring import ArchScores, arch_seed, chunks_needed, sample_architectures, score_architecture
from ..spaces import SearchSpace, get_space
from . import top_region
from .ground_truth import GROUND_TRUTH
from .nb201_table import GroundTruth

TARGET = "test_acc_200"
BOOTSTRAP_ROUNDS = 1000
TOP_REGION_NOTE = (
    "tau top 10%: Kendall tau inside the 10% most accurate cells; top-k acc: mean test accuracy of the "
    "proxy's k best-scored cells (ties across the cut at their mean; failures rank lowest); "
    "intervals: bootstrap over resamples of the N cells"
)
FAILURE_POLICY = (
    "failed scores (ProxyError: NaN/inf/out of memory/undefined) are counted; 'all' columns rank "
    "them below every successful score (the search never selects them), 'ok only' columns drop them"
)



# --- seeding, sampling and scoring live in rznas.scoring (re-exported here) --------------

# --- configuration and probe choice -------------------------------------------------------


@dataclass(frozen=True)
class CorrelationConfig:
    """Everything that decides the numbers of one correlation run."""

    dataset: str
    proxies: tuple[str, ...]
    samples: int
    seed: int = 0
    space: str = "nb201"
    probe_data: str = "cifar10"
    batch_size: int = 64
    chunks: int = 2
    # ensembles among ``proxies``: the reference sample their components are ranked against
    reference_size: int = 256
    reference_seed: int = 0
    device: str = "cpu"  # resolved: cpu or cuda (rznas.device.choose_device)

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "cuda"):
            raise ConfigError(f"the correlation device must be resolved to cpu or cuda, got {self.device!r}")
        if not self.proxies:
            raise ConfigError("name at least one proxy")
        if len(set(self.proxies)) != len(self.proxies):
            raise ConfigError(f"proxy list has duplicates: {','.join(self.proxies)}")
        if self.samples < 1 or self.batch_size < 1 or self.chunks < 1:
            raise ConfigError("samples, batch size and chunks must be positive")
        if self.reference_size < 2:
            raise ConfigError(f"the ensemble reference needs at least 2 cells, got {self.reference_size}")

    def has_ensembles(self) -> bool:
        return any(names_ensemble(name) for name in self.proxies)

    def scored_proxies(self) -> tuple[str, ...]:
        """The proxies scored on each architecture: the plain ones and every ensemble's components."""
        ordered: dict[str, None] = {}
        for name in self.proxies:
            ordered.update(dict.fromkeys(component_names(name) if names_ensemble(name) else (name,)))
        return tuple(ordered)

    def reference(self) -> ReferenceSpec:
        return ReferenceSpec(size=self.reference_size, seed=self.reference_seed)

    def identity(self) -> dict[str, Any]:
        """The settings a resumed run must share (proxy order does not matter; the reference
        appears only when an ensemble is requested, so earlier runs keep their identity)."""
        data = asdict(self)
        data["proxies"] = sorted(self.proxies)
        reference = {"size": data.pop("reference_size"), "seed": data.pop("reference_seed")}
        if self.has_ensembles():
            data["reference"] = reference
        if data["device"] == "cpu":  # runs from before --device were all on the CPU: same digest
            del data["device"]
        return data

    def digest(self) -> str:
        """Short stable hash of :meth:`identity`."""
        text = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:8]

    def stem(self) -> str:
        """Base name of the output files."""
        return f"correlation-{self.space}-{self.dataset}-n{self.samples}-seed{self.seed}-{self.digest()}"

    def command(self) -> str:
        """The rznas command line that reproduces this run (data paths come from the environment)."""
        return shlex.join(
            [
                "rznas", "bench", "correlation",
                "--space", self.space,
                "--dataset", self.dataset,
                "--proxies", ",".join(self.proxies),
                "--samples", str(self.samples),
                "--seed", str(self.seed),
                "--probe-data", self.probe_data,
                "--batch-size", str(self.batch_size),
                *(
                    ["--reference-size", str(self.reference_size), "--reference-seed", str(self.reference_seed)]
                    if self.has_ensembles()
                    else []
                ),
                "--device", self.device,
            ]
        )


def choose_probe_data(dataset: str, requested: str | None, *, data_dir: PathLike | None = None) -> str:
    """The probe data source: the explicit choice, else the benchmark dataset's own images.

    Fails with a clear message (suggesting ``--probe-data cifar10``) when the dataset's
    images cannot be loaded locally (ImageNet16-120 always, CIFAR-100 when absent).
    """
    if requested is not None:
        parse_data_spec(requested)  # UnknownName with "did you mean" for typos; folder:/npz: need a path
        return requested
    if dataset not in PROBE_SOURCES:
        raise ConfigError(
            f"rznas cannot load {dataset} images, so choose the probe data explicitly: "
            f"--probe-data cifar10 (CIFAR-10 training images, resized to the network's resolution) "
            f"or --probe-data gaussian (synthetic); known: {', '.join(PROBE_SOURCES.names())}"
        )
    from ..data.cifar import find_cifar_folder

    try:
        find_cifar_folder(dataset, data_dir)
    except DataError as exc:
        if dataset == "cifar10":
            raise
        raise DataError(f"{exc}. To probe {dataset} networks with CIFAR-10 images, pass --probe-data cifar10") from None
    return dataset


# --- the JSONL log ------------------------------------------------------------------------


class ResultLog:
    """Append-only JSONL: a header line with the run identity, then one line per architecture."""

    def __init__(self, path: Path, identity: dict[str, Any], info: dict[str, Any] | None = None):
        self.path = path
        self.identity = identity
        self.info = info or {}

    def open(self) -> dict[str, dict[str, Any]]:
        """Create the log, or read an existing one: finished records by arch id."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists() or self.path.stat().st_size == 0:
            self._write_line({"type": "header", "identity": self.identity, **self.info})
            return {}
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        records: dict[str, dict[str, Any]] = {}
        good_bytes = 0
        for number, line in enumerate(lines):
            is_tail = number == len(lines) - 1
            if not line.strip():
                good_bytes += len(line) + (0 if is_tail else 1)
                continue
            try:
                entry = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                if is_tail:  # a write cut short by a crash: drop it, redo that architecture
                    break
                raise DataError(f"{self.path}: line {number + 1} is not JSON; remove or repair the file") from None
            if number == 0:
                if entry.get("type") != "header" or entry.get("identity") != self.identity:
                    raise ConfigError(
                        f"{self.path} was written by a run with other settings ({entry.get('identity')}); "
                        "use another --out folder or delete the file"
                    )
            elif entry.get("type") == "arch" and isinstance(entry.get("arch_id"), str):
                records[entry["arch_id"]] = entry
            good_bytes += len(line) + (0 if is_tail else 1)
        if good_bytes < len(raw):
            with open(self.path, "r+b") as handle:
                handle.truncate(good_bytes)
        if good_bytes == 0:  # even the header was cut short
            self._write_line({"type": "header", "identity": self.identity, **self.info})
        return records

    def append(self, record: dict[str, Any]) -> None:
        """Write one record and flush it to disk."""
        self._write_line(record)

    def _write_line(self, entry: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


# --- progress -----------------------------------------------------------------------------


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


@dataclass
class Progress:
    """Count, rate and ETA lines on a stream, at most one per ``interval`` seconds."""

    total: int
    done: int = 0
    stream: TextIO | None = None
    interval: float = 5.0
    _start: float = field(default_factory=time.perf_counter)
    _new: int = 0
    _last: float = -math.inf

    def step(self) -> None:
        """One more architecture finished."""
        self.done += 1
        self._new += 1
        now = time.perf_counter()
        if self.stream is None or (now - self._last < self.interval and self.done < self.total):
            return
        self._last = now
        elapsed = now - self._start
        rate = self._new / elapsed if elapsed > 0 else float("inf")
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        print(
            f"[{self.done}/{self.total}] {rate:.2f} arch/s, elapsed {_clock(elapsed)}, "
            f"ETA {_clock(eta) if math.isfinite(eta) else '?'}",
            file=self.stream,
            flush=True,
        )


# --- correlation --------------------------------------------------------------------------


def _nan_to_none(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _tau_rho(x: np.ndarray, y: np.ndarray) -> tuple[float | None, float | None]:
    if len(x) < 2:
        return None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input -> NaN -> None
        tau = stats.kendalltau(x, y).statistic
        rho = stats.spearmanr(x, y).statistic
    return _nan_to_none(tau), _nan_to_none(rho)


def rank_correlations(scores: Sequence[float | None], targets: Sequence[float]) -> dict[str, Any]:
    """Kendall tau / Spearman rho of scores vs targets under both failure policies."""
    if len(scores) != len(targets):
        raise ValueError("scores and targets differ in length")
    y = np.asarray(targets, dtype=np.float64)
    ok = np.array([s is not None for s in scores], dtype=bool)
    values = np.array([s if s is not None else -np.inf for s in scores], dtype=np.float64)
    ranks = stats.rankdata(values)  # failures tie below every success
    tau_all, rho_all = _tau_rho(ranks, y) if ok.sum() >= 1 else (None, None)
    tau_ok, rho_ok = _tau_rho(values[ok], y[ok])
    return {
        "n": len(scores),
        "failed": int((~ok).sum()),
        "kendall_tau": {"failures_lowest": tau_all, "successes_only": tau_ok},
        "spearman_rho": {"failures_lowest": rho_all, "successes_only": rho_ok},
    }


# --- the harness --------------------------------------------------------------------------


def prepare_probe(
    config: CorrelationConfig, ground_truth: GroundTruth, *, data_dir: PathLike | None = None
) -> ProbeBatch:
    """The probe batch of a run: its data source at the benchmark dataset's resolution and class count."""
    info = ground_truth.dataset(config.dataset)
    probe = make_probe(
        config.probe_data,
        data_dir=data_dir,
        batch_size=config.batch_size,
        chunks=config.chunks,
        seed=config.seed,
        resolution=info.resolution,
        num_classes=info.num_classes,
    )
    return probe if config.device == "cpu" else probe.to(config.device)  # networks are scored where the probe is


def _record(index: int, space: SearchSpace, arch: Architecture, seed: int, scored: ArchScores, truth: Any) -> dict[str, Any]:
    return {
        "type": "arch",
        "index": index,
        "arch": space.encode(arch),
        "arch_id": arch.id,
        "seed": arch_seed(seed, arch),
        "scores": {name: r.value for name, r in scored.results.items()},
        "errors": {name: r.error for name, r in scored.results.items() if not r.ok},
        "proxy_seconds": {name: r.seconds for name, r in scored.results.items()},
        "build_seconds": scored.build_seconds,
        "seconds": scored.seconds,
        "val_acc": truth.val_acc,
        "test_acc": truth.test_acc,
    }


def _header_identity(path: Path) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as handle:
            header = json.loads(handle.readline())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return header.get("identity") if isinstance(header, dict) and header.get("type") == "header" else None


def _log_proxies(identity: dict[str, Any]) -> set[str]:
    """The proxies a log scored (its ensembles expanded; names this installation lacks are skipped)."""
    found: set[str] = set()
    for name in identity.get("proxies", ()):
        try:
            found.update(component_names(name))
        except (UnknownName, ConfigError):
            continue
    return found


def borrow_records(
    out: Path, config: CorrelationConfig, wanted: dict[str, Architecture], progress: TextIO | None = None
) -> dict[str, dict[str, Any]]:
    """Scores of ``wanted`` architectures already in sibling logs of compatible runs.

    A log is compatible when its identity equals this run's except for the sample size,
    the proxies and the ensemble reference: every score depends only on the architecture
    (its build seed is derived from it), the probe and the proxy, so growing N, scoring
    fewer proxies or combining proxies scored in different runs reuses finished work
    instead of repeating it. An architecture is borrowed when the compatible logs together
    hold every proxy this run scores; borrowed records keep only those proxies and note the
    files they came from.
    """
    ours = config.identity()
    needed = set(config.scored_proxies())
    partial: dict[str, dict[str, Any]] = {}
    if not wanted or not out.is_dir():
        return {}
    for path in sorted(out.glob("correlation-*.jsonl")):
        theirs = _header_identity(path)
        if theirs is None or theirs == ours:
            continue
        same_rest = all(
            theirs.get(k) == v for k, v in ours.items() if k not in ("samples", "proxies", "reference")
        )
        offered = _log_proxies(theirs) & needed
        if not same_rest or not offered:
            continue
        count = 0
        for line in path.read_text(encoding="utf-8").splitlines()[1:]:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line: that architecture is scored again
            arch = wanted.get(entry.get("arch_id")) if entry.get("type") == "arch" else None
            if arch is None or entry.get("seed") != arch_seed(config.seed, arch):
                continue
            record = partial.setdefault(
                entry["arch_id"],
                {**entry, "scores": {}, "errors": {}, "proxy_seconds": {}, "borrowed_from": []},
            )
            new = [name for name in offered if name not in record["scores"] and name in entry["scores"]]
            if not new:
                continue
            for name in new:
                record["scores"][name] = entry["scores"][name]
                record["proxy_seconds"][name] = entry["proxy_seconds"][name]
                if name in entry.get("errors", {}):
                    record["errors"][name] = entry["errors"][name]
            record["borrowed_from"].append(path.name)
            count += 1
        if count and progress is not None:
            print(f"reusing {count} scored architectures from {path}", file=progress)
    borrowed: dict[str, dict[str, Any]] = {}
    for arch_id, record in partial.items():
        if set(record["scores"]) != needed:
            continue  # some proxy is missing: this architecture is scored afresh
        order = config.scored_proxies()
        borrowed[arch_id] = {
            **record,
            "scores": {name: record["scores"][name] for name in order},
            "proxy_seconds": {name: record["proxy_seconds"][name] for name in order},
            "seconds": record["build_seconds"] + sum(record["proxy_seconds"].values()),
            "borrowed_from": ",".join(record["borrowed_from"]),
        }
    return borrowed


def environment_info() -> dict[str, Any]:
    """Software and hardware facts that belong next to a timing."""
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "rznas": __version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": "cpu",
    }


def run_correlation(
    config: CorrelationConfig,
    *,
    ground_truth: GroundTruth,
    probe: ProbeBatch,
    out_dir: PathLike,
    argv: Sequence[str] | None = None,
    progress: TextIO | None = sys.stderr,
    progress_interval: float = 5.0,
    bootstrap_rounds: int = BOOTSTRAP_ROUNDS,
) -> dict[str, Any]:
    """Score the sample (resuming from the JSONL log), correlate, write JSON + Markdown; return the summary."""
    space = get_space(config.space)
    proxies = [get_proxy(name) for name in config.scored_proxies()]
    dataset = ground_truth.dataset(config.dataset)
    if probe.num_chunks < chunks_needed(proxies, minimum=1):
        raise ConfigError(f"the probe has {probe.num_chunks} batches; the proxies need {chunks_needed(proxies, 1)}")
    sample = sample_architectures(space, config.samples, config.seed)
    truths = {arch.id: ground_truth.lookup(space.encode(arch), config.dataset) for arch in sample}

    out = Path(out_dir)
    paths = {ext: out / f"{config.stem()}.{ext}" for ext in ("jsonl", "json", "md")}
    log = ResultLog(paths["jsonl"], config.identity(), {"command": config.command(), **environment_info()})
    done = log.open()
    resumed = len(done)
    for arch_id, record in borrow_records(out, config, {a.id: a for a in sample if a.id not in done}, progress).items():
        log.append(record)
        done[arch_id] = record
    meter = Progress(total=len(sample), done=sum(a.id in done for a in sample), stream=progress, interval=progress_interval)
    if progress is not None and resumed:
        print(f"resuming {paths['jsonl']}: {resumed}/{len(sample)} architectures already scored", file=progress)
    for index, arch in enumerate(sample):
        if arch.id in done:
            continue
        scored = score_architecture(space, arch, probe, proxies, seed=config.seed, num_classes=dataset.num_classes)
        record = _record(index, space, arch, config.seed, scored, truths[arch.id])
        log.append(record)
        done[arch.id] = record
        meter.step()

    records = [done[arch.id] for arch in sample]
    fitnesses = ensemble_fitnesses(config, space, done, probe=probe, num_classes=dataset.num_classes, progress=progress)
    summary = summarize(
        config, records, probe=probe, ground_truth=ground_truth, argv=argv,
        fitnesses=fitnesses, bootstrap_rounds=bootstrap_rounds,
    )
    summary["files"] = {ext: str(path) for ext, path in paths.items()}
    paths["json"].write_text(json.dumps(summary, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    paths["md"].write_text(render_markdown(summary), encoding="utf-8")
    return summary


def ensemble_fitnesses(
    config: CorrelationConfig,
    space: SearchSpace,
    done: dict[str, dict[str, Any]],
    *,
    probe: ProbeBatch,
    num_classes: int,
    progress: TextIO | None = None,
) -> dict[str, EnsembleFitness]:
    """The requested ensembles, each ranked against the reference sample of the config.

    Reference cells already in this run's records (with reference seed = sample seed they
    are the first cells of the sample) reuse their recorded scores; others are scored here,
    as the sample was, and not logged.
    """
    names = [name for name in config.proxies if names_ensemble(name)]
    if not names:
        return {}
    components = [name for name in config.scored_proxies() if any(name in component_names(e) for e in names)]

    def score_cell(arch: Architecture, wanted: Sequence[str]) -> dict[str, ProxyResult]:
        record = done.get(arch.id)
        if record is not None and record.get("seed") == arch_seed(config.seed, arch):
            return {
                name: ProxyResult(name, record["scores"][name], record["proxy_seconds"][name], record.get("errors", {}).get(name))
                for name in wanted
            }
        proxies = [get_proxy(name) for name in wanted]
        return score_architecture(space, arch, probe, proxies, seed=config.seed, num_classes=num_classes).results

    references = score_reference(config.reference().cells(space), components, score_cell, progress=progress)
    return {name: make_fitness(name, references=references, reference=config.reference()) for name in names}  # type: ignore[misc]


def summarize(
    config: CorrelationConfig,
    records: Sequence[dict[str, Any]],
    *,
    probe: ProbeBatch,
    ground_truth: GroundTruth,
    argv: Sequence[str] | None = None,
    fitnesses: Mapping[str, EnsembleFitness] | None = None,
    bootstrap_rounds: int = BOOTSTRAP_ROUNDS,
) -> dict[str, Any]:
    """The JSON summary of finished records (one per sampled architecture): rank correlations,
    top-region metrics with bootstrap intervals, failures and cost per requested proxy or ensemble."""
    fitnesses = fitnesses or {}
    targets = [r["test_acc"] for r in records]
    seconds = [r["seconds"] for r in records]
    accuracy = np.asarray(targets, dtype=np.float64)
    results: dict[str, Any] = {}
    rankings: dict[str, np.ndarray] = {}
    for name in config.proxies:
        parts = fitnesses[name].components if name in fitnesses else (name,)
        if name in fitnesses:
            values = [fitnesses[name].value_of(r["scores"]) for r in records]
        else:
            values = [r["scores"].get(name) for r in records]
        entry = rank_correlations(values, targets)
        errors = [r["errors"][part] for r in records for part in parts if part in r.get("errors", {})]
        entry["failure_example"] = errors[0] if errors else None
        entry["seconds_per_arch"] = statistics.fmean(sum(r["proxy_seconds"][part] for part in parts) for r in records)
        if name in fitnesses:
            entry["ensemble"] = {
                "components": list(parts),
                "aggregation": fitnesses[name].spec.aggregation,
                "reference": {
                    **config.reference().key(),
                    "succeeded": {part: len(ref.values) for part, ref in fitnesses[name].references.items()},
                },
            }
        rankings[name] = top_region.failure_ranks(values)
        entry["top_region"] = {"values": top_region.metrics(rankings[name], accuracy)}
        results[name] = entry
    if bootstrap_rounds > 0:
        intervals = top_region.bootstrap(rankings, accuracy, rounds=bootstrap_rounds, seed=0)
        for name, entry in results.items():
            entry["top_region"]["intervals"] = intervals[name]
    return {
        "benchmark": "correlation",
        "space": config.space,
        "dataset": config.dataset,
        "target": TARGET,
        "samples": len(records),
        "seed": config.seed,
        "proxies": list(config.proxies),
        "probe": {
            "data": config.probe_data,
            "source": probe.source,
            "batch_size": probe.batch_size,
            "batches": probe.num_chunks,
            "resolution": probe.resolution,
            "num_classes": probe.num_classes,
        },
        "ground_truth": ground_truth.source,
        "command": config.command(),
        "argv": list(argv) if argv is not None else None,
        "environment": environment_info(),
        "failure_policy": FAILURE_POLICY,
        "top_region": {
            "definition": TOP_REGION_NOTE,
            "bootstrap": {"rounds": bootstrap_rounds, "seed": 0, "interval": "2.5-97.5 percentile"},
            "oracle": top_region.oracle(accuracy),
        },
        "seconds_per_arch": {
            "mean": statistics.fmean(seconds),
            "median": statistics.median(seconds),
            "total": math.fsum(seconds),
            "note": "build + all proxies together; a shared gradient pass is timed under the first proxy that needs it",
        },
        "results": results,
    }


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def render_markdown(summary: dict[str, Any]) -> str:
    """A Markdown report of a summary: settings, then one table row per proxy."""
    probe = summary["probe"]
    env = summary["environment"]
    secs = summary["seconds_per_arch"]
    lines = [
        f"# Proxy correlation: {summary['space']} / {summary['dataset']}",
        "",
        f"Command: `{summary['command']}`",
        "",
        f"- Architectures: {summary['samples']} (seed {summary['seed']}; the same sample for every proxy)",
        f"- Target: 200-epoch test accuracy ({summary['ground_truth']})",
        f"- Probe data: {probe['source']}, batch size {probe['batch_size']} x {probe['batches']} batches, "
        f"{probe['resolution']}x{probe['resolution']} px, {probe['num_classes']}-class network",
        f"- Software: torch {env['torch']}, Python {env['python']}, rznas {env['rznas']}; "
        f"{env['device']}, {env['cpu_count']} cores, {env['torch_threads']} torch threads",
        f"- Seconds per architecture (build + all proxies): mean {secs['mean']:.3f}, median {secs['median']:.3f}",
        f"- Failures: {summary['failure_policy']}",
        "- s/arch per proxy: its own compute; a gradient pass shared by several proxies is counted "
        "under the first proxy that needs it (time proxies alone for standalone cost)",
        "",
        "| proxy | Spearman rho | Kendall tau | failed | rho (ok only) | tau (ok only) | s/arch |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, entry in summary["results"].items():
        rho, tau = entry["spearman_rho"], entry["kendall_tau"]
        lines.append(
            f"| {name} | {_fmt(rho['failures_lowest'])} | {_fmt(tau['failures_lowest'])} | "
            f"{entry['failed']}/{entry['n']} | {_fmt(rho['successes_only'])} | {_fmt(tau['successes_only'])} | "
            f"{entry['seconds_per_arch']:.4f} |"
        )
    top = summary.get("top_region")
    if top is not None:
        best = top["oracle"]
        lines += [
            "",
            f"Top region ({top['definition']}; {top['bootstrap']['rounds']} bootstrap rounds, 95% intervals). "
            f"Oracle picks: top-1 {best['top1_acc']:.2f}%, top-10 {best['top10_acc']:.2f}%, "
            f"top-1% {best['top1pct_acc']:.2f}%; sample mean {best['mean_acc']:.2f}%.",
            "",
            "| proxy | tau top 10% | top-1 acc (%) | top-10 acc (%) | top-1% acc (%) |",
            "|---|---|---|---|---|",
        ]
        for name, entry in summary["results"].items():
            region = entry["top_region"]
            cells = [_with_interval(region, metric) for metric in ("tau_top10pct", "top1_acc", "top10_acc", "top1pct_acc")]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        ensembles = [(n, e["ensemble"]) for n, e in summary["results"].items() if "ensemble" in e]
        if ensembles:
            lines += ["", "Ensembles: each component mapped through its mid-rank CDF on the reference sample, then aggregated:"]
            for name, info in ensembles:
                ref = info["reference"]
                ok = ", ".join(f"{part} {count}" for part, count in ref["succeeded"].items())
                lines.append(
                    f"- {name}: {info['aggregation']} over {', '.join(info['components'])}; reference "
                    f"{ref['size']} cells (seed {ref['seed']}; successes per component: {ok})"
                )
    return "\n".join(lines) + "\n"


def _with_interval(region: dict[str, Any], metric: str) -> str:
    value = region["values"].get(metric)
    digits = 3 if metric.startswith("tau") else 2
    text = _fmt(value, digits)
    interval = (region.get("intervals") or {}).get(metric)
    if value is not None and interval is not None:
        text += f" [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"
    return text
