"""Final selection: after the evolution, train the K best-scoring distinct architectures briefly
and return the one with the best held-out validation accuracy.

A zero-cost proxy ranks the large, mediocre cells of a space first (issue 9); a few epochs of
real training separate the candidates it cannot. Every candidate's result is committed to the
run store the moment it is trained, keyed by the settings that produced it, so a run killed
during this stage resumes without retraining finished candidates (and a partly trained one
continues from its per-epoch checkpoint), and changed settings never reuse stale results.
Training reuses :mod:`rznas.training` (recipe, loop, data); the data are two disjoint parts of
the dataset's *training* split, never its test split.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

from ..arch import Architecture
from ..errors import ConfigError
from ..records import CandidateResult  # noqa: F401  (re-exported)
from ..trial import Trial, TrialState

if TYPE_CHECKING:  # pragma: no cover
    from ..store import RunStore
    from ..training.data import TrainData
    from .config import SearchConfig

#: version of what a candidate's result means; bump when training or selection changes
SELECTION_VERSION = 1
CHECKPOINT_FOLDER = "final_selection"


@dataclass(frozen=True)
class FinalSelectionSettings:
    """What determines a candidate's short-training result (and K, which only says how many)."""

    top: int
    epochs: int
    dataset: str
    train_images: int
    val_images: int
    batch_size: int
    recipe: str
    seed: int
    space_options: dict[str, Any] = field(default_factory=dict)  # the search's, final_space_options folded in
    device: str = "cpu"  # resolved: cpu or cuda

    @classmethod
    def from_config(cls, config: "SearchConfig") -> "FinalSelectionSettings | None":
        """The stage's settings, or None when ``final_train_top`` is 0; a bad setting is a ConfigError."""
        if config.final_train_top <= 0:
            return None
        from ..data.cifar import CIFAR_SPECS
        from ..training.loop import resolve_device
        from ..training.recipes import RECIPES

        dataset = config.final_data if config.final_data is not None else config.data
        if dataset not in CIFAR_SPECS:
            origin = "final_data" if config.final_data is not None else "the probe data (--data)"
            raise ConfigError(
                f"final selection trains on real images: {origin} is {dataset!r}; use --data cifar10 "
                f"(the probe dataset) or --final-data one of {', '.join(CIFAR_SPECS)}"
            )
        RECIPES.get(config.final_recipe)  # unknown recipe: "did you mean"
        options = {**config.space_kwargs(), **(config.final_space_options or {})}
        settings = cls(
            top=config.final_train_top,
            epochs=config.final_epochs,
            dataset=dataset,
            train_images=config.final_train_images,
            val_images=config.final_val_images,
            batch_size=config.final_batch_size,
            recipe=config.final_recipe,
            seed=config.final_seed,
            space_options=dict(sorted(options.items())),
            device=resolve_device(config.final_device).type,
        )
        settings.training_space(config.space)  # the trained network's options must build the space
        return settings

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def key(self) -> str:
        """Hash of everything a candidate's result depends on (not K): the store's result key."""
        identity = {k: v for k, v in self.to_dict().items() if k != "top"}
        identity["version"] = SELECTION_VERSION
        return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def training_recipe(self) -> Any:
        from ..training.recipes import RECIPES

        return RECIPES.get(self.recipe).with_overrides(epochs=self.epochs, batch_size=self.batch_size)

    def training_space(self, space_name: str | None = None) -> Any:
        """Check that ``space_options`` build the space (a ConfigError names the bad option)."""
        if space_name is None:
            return None
        from ..spaces import get_space

        return get_space(space_name, **self.space_options)

    def load_data(self, data_dir: str | None) -> "TrainData":
        from ..training.data import cifar_holdout_data

        return cifar_holdout_data(
            self.dataset, data_dir=data_dir, train_images=self.train_images, val_images=self.val_images, seed=self.seed
        )


def top_candidates(trials: list[Trial], k: int) -> list[Trial]:
    """The ``k`` best-scoring COMPLETE trials with distinct architectures (ties: the earlier trial)."""
    complete = sorted(
        (t for t in trials if t.state is TrialState.COMPLETE and t.score is not None and t.arch is not None),
        key=lambda t: (-float(t.score), t.number),  # type: ignore[arg-type]
    )
    chosen: list[Trial] = []
    seen: set[str] = set()
    for trial in complete:
        if trial.arch_id in seen:
            continue
        seen.add(trial.arch_id)  # type: ignore[arg-type]
        chosen.append(trial)
        if len(chosen) == k:
            break
    return chosen


def choose(results: list[CandidateResult]) -> CandidateResult:
    """The best validation accuracy; ties go to the better proxy rank."""
    if not results:
        raise ValueError("no candidates to choose from")
    return max(results, key=lambda r: (r.val_acc, -r.rank))


def train_candidate(
    trial: Trial,
    rank: int,
    settings: FinalSelectionSettings,
    data: "TrainData",
    *,
    encoded: str,
    checkpoint: Path | None = None,
    on_epoch: Callable[[Any], None] | None = None,
) -> CandidateResult:
    """Train one candidate with the settings' recipe (resuming ``checkpoint`` when it exists).

    The global torch RNG is forked, so the stage leaves the caller's random state untouched."""
    from ..training.loop import train_architecture

    assert trial.arch is not None and trial.score is not None
    resume = checkpoint is not None and checkpoint.exists()
    with torch.random.fork_rng(devices=[]):
        result = train_architecture(
            trial.arch,
            data,
            settings.training_recipe(),
            space_options=settings.space_options,
            seed=settings.seed,
            device=settings.device,
            checkpoint=checkpoint,
            resume=resume,
            on_epoch=on_epoch,
        )
    summary = result.summary
    last = summary["history"][-1]
    return CandidateResult(
        rank=rank,
        trial=trial.number,
        arch=trial.arch,
        encoded=encoded,
        score=float(trial.score),
        train_acc=float(last["train_acc"]),
        train_loss=float(last["train_loss"]),
        val_acc=float(last["test_acc"]),  # the loop's evaluation set is the held-out validation part
        val_loss=float(last["test_loss"]),
        epochs=int(summary["epochs"]),
        seconds=float(summary["train_seconds"]),
        params=int(summary["params"]),
        history=tuple(summary["history"]),
    )


def run_final_selection(
    store: "RunStore",
    trials: list[Trial],
    settings: FinalSelectionSettings,
    *,
    encode: Callable[[Architecture], str],
    data_dir: str | None,
    message: Callable[[str], None] = lambda text: None,
) -> CandidateResult | None:
    """Train the top-K candidates not yet in ``store`` under ``settings``, commit each result,
    record the choice in the store's meta ``final_selection`` and return it (None: nothing scored)."""
    candidates = top_candidates(trials, settings.top)
    if not candidates:
        message("final selection: no scored architecture to train")
        return None
    key = settings.key
    done = {r.arch.id: r for r in store.final_candidates(key)}
    todo = [(rank, t) for rank, t in enumerate(candidates, 1) if t.arch_id not in done]
    store.set_meta("final_selection", {"key": key, "settings": settings.to_dict(), "status": "running",
                                        "candidates": [t.arch_id for t in candidates]})
    results: dict[str, CandidateResult] = dict(done)
    if todo:
        data = settings.load_data(data_dir)
        message(
            f"final selection: training {len(todo)} of {len(candidates)} candidate(s) for {settings.epochs} epoch(s) "
            f"on {data.description}" + (f" ({len(done)} already trained)" if done else "")
        )
        folder = store.path.parent / CHECKPOINT_FOLDER
        started = time.perf_counter()
        for step, (rank, trial) in enumerate(todo, 1):
            assert trial.arch is not None
            encoded = encode(trial.arch)
            checkpoint = folder / f"{key}-{trial.arch_id}.pt"

            def report(stats: Any, rank: int = rank) -> None:
                message(
                    f"final {step}/{len(todo)} (proxy rank {rank}) epoch {stats.epoch}/{stats.epochs}: "
                    f"train {stats.train_acc:.2f}%  val {stats.test_acc:.2f}%  {stats.seconds:.1f} s"
                )

            result = train_candidate(trial, rank, settings, data, encoded=encoded, checkpoint=checkpoint, on_epoch=report)
            store.add_final_candidate(key, result)
            checkpoint.unlink(missing_ok=True)  # the result is committed: the weights are not needed
            results[result.arch.id] = result
        message(f"final selection: {len(todo)} candidate(s) trained in {time.perf_counter() - started:.0f} s")
    chosen = choose([results[t.arch_id] for t in candidates])  # type: ignore[index]
    top = results[candidates[0].arch_id]  # type: ignore[index]
    store.set_meta("final_selection", {"key": key, "settings": settings.to_dict(), "status": "done",
                                        "candidates": [t.arch_id for t in candidates], "selected": chosen.arch.id})
    message(
        f"final selection: {chosen.encoded} (proxy rank {chosen.rank}, val {chosen.val_acc:.2f}%); "
        f"the proxy's top-1 had val {top.val_acc:.2f}%"
    )
    return chosen


__all__ = [
    "CandidateResult", "FinalSelectionSettings", "SELECTION_VERSION", "choose", "run_final_selection", "top_candidates",
    "train_candidate",
]
