"""The training loop: recipe-driven SGD with checkpoints every epoch and exact resume.

Every epoch's randomness (data order, augmentation, drop-path masks) is seeded from
(seed, epoch) alone, so a run resumed from a checkpoint repeats the uninterrupted run.
"""
from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..arch import Architecture
from ..device import choose_device
from ..errors import ConfigError
from ..spaces import SPACES, SearchSpace, get_space
from .checkpoint import load_checkpoint, save_checkpoint
from .data import TrainData
from .recipes import Recipe


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when present, else CPU; 'cuda' without a GPU is an error (:func:`rznas.device.choose_device`)."""
    return torch.device(choose_device(name))


def training_space_options(space_name: str, recipe: Recipe, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Space options for training: adds ``auxiliary=True`` where the recipe and the space want it."""
    merged = dict(options or {})
    factory = SPACES.get(space_name)
    accepts = inspect.signature(factory).parameters
    if recipe.auxiliary_weight > 0 and "auxiliary" in accepts:
        merged.setdefault("auxiliary", True)
    return merged


@dataclass(frozen=True)
class EpochStats:
    """What one epoch did; also the unit of the history in the summary."""

    epoch: int  # 1-based
    epochs: int
    lr: float
    drop_path_prob: float
    train_loss: float
    train_acc: float  # percent
    test_loss: float
    test_acc: float  # percent
    seconds: float
    eta_seconds: float

    def to_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


@dataclass
class TrainResult:
    """The trained model and the run summary (JSON-ready)."""

    model: nn.Module
    summary: dict[str, Any] = field(default_factory=dict)


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch) % (2**63 - 1)


def _run_config(space_name: str, space_options: dict, arch: Architecture, recipe: Recipe, seed: int,
                num_classes: int, data: TrainData) -> dict[str, Any]:
    return {
        "space": space_name,
        "space_options": space_options,
        "arch": arch.to_dict(),
        "arch_id": arch.id,
        "recipe": recipe.to_dict(),
        "seed": seed,
        "num_classes": num_classes,
        "data": data.description,
    }


def _forward_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, recipe: Recipe, use_aux: bool):
    if use_aux:
        logits, aux_logits = model.forward_with_aux(x)
    else:
        logits, aux_logits = model(x), None
    loss = F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing)
    if aux_logits is not None:
        loss = loss + recipe.auxiliary_weight * F.cross_entropy(aux_logits, y, label_smoothing=recipe.label_smoothing)
    return logits, loss


def evaluate(model: nn.Module, data: TrainData, device: torch.device, batch_size: int = 256) -> tuple[float, float]:
    """(mean cross-entropy, accuracy in percent) on the test set, in eval mode."""
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for x, y in data.test_batches(batch_size=batch_size):
            x, y = x.to(device), y.to(device)
            logits = model(x)
            total_loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += int((logits.argmax(1) == y).sum())
            count += int(y.shape[0])
    if count == 0:
        raise ConfigError("the test set is empty")
    return total_loss / count, 100.0 * correct / count


def train_architecture(
    arch: Architecture,
    data: TrainData,
    recipe: Recipe,
    *,
    space_options: dict[str, Any] | None = None,
    seed: int = 0,
    device: str = "auto",
    checkpoint: str | Path | None = None,
    resume: bool = False,
    on_epoch: Callable[[EpochStats], None] | None = None,
) -> TrainResult:
    """Train ``arch`` from scratch (or from ``checkpoint`` with ``resume``) and summarise the run."""
    dev = resolve_device(device)
    options = training_space_options(arch.space, recipe, space_options)
    space: SearchSpace = get_space(arch.space, **options)
    space.validate(arch)
    config = _run_config(arch.space, options, arch, recipe, seed, data.num_classes, data)

    torch.manual_seed(seed)
    model = space.build(arch, num_classes=data.num_classes).to(dev)
    use_aux = recipe.auxiliary_weight > 0 and bool(getattr(model, "has_auxiliary", False))
    optimizer = torch.optim.SGD(
        model.parameters(), lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov,
        weight_decay=recipe.weight_decay,
    )
    history: list[dict[str, float]] = []
    start_epoch = 0
    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    if ckpt_path is not None and ckpt_path.exists() and not resume:
        raise ConfigError(f"checkpoint {ckpt_path} exists; pass --resume to continue it or choose another output folder")
    if resume:
        if ckpt_path is None or not ckpt_path.exists():
            raise ConfigError(f"--resume: no checkpoint at {ckpt_path}")
        state = load_checkpoint(ckpt_path, map_location=dev)
        if state.get("config") != config:
            differing = sorted(k for k in config if state.get("config", {}).get(k) != config[k])
            raise ConfigError(f"checkpoint {ckpt_path} is from a different run (differs in: {', '.join(differing)})")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        history = list(state["history"])
        start_epoch = int(state["epoch"])

    params = sum(p.numel() for p in model.parameters())
    aux_params = sum(p.numel() for n, p in model.named_parameters() if n.startswith("auxiliary_head"))
    started = time.perf_counter()
    for epoch in range(start_epoch, recipe.epochs):
        tick = time.perf_counter()
        epoch_seed = _epoch_seed(seed, epoch)
        torch.manual_seed(epoch_seed)
        lr = recipe.lr_at(epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        drop_prob = recipe.drop_path_at(epoch)
        if hasattr(model, "drop_path_prob"):
            model.drop_path_prob = drop_prob
        model.train()
        total_loss, correct, count = 0.0, 0, 0
        for x, y in data.train_batches(batch_size=recipe.batch_size, seed=epoch_seed, augment=recipe.augment,
                                       cutout=recipe.cutout):
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            logits, loss = _forward_loss(model, x, y, recipe, use_aux)
            loss.backward()
            if recipe.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            optimizer.step()
            total_loss += loss.item() * y.shape[0]
            correct += int((logits.argmax(1) == y).sum())
            count += int(y.shape[0])
        if count == 0:
            raise ConfigError("the training set is empty")
        test_loss, test_acc = evaluate(model, data, dev)
        seconds = time.perf_counter() - tick
        done = epoch + 1 - start_epoch
        eta = (time.perf_counter() - started) / done * (recipe.epochs - epoch - 1)
        stats = EpochStats(epoch + 1, recipe.epochs, lr, drop_prob, total_loss / count, 100.0 * correct / count,
                           test_loss, test_acc, seconds, eta)
        history.append(stats.to_dict())
        if ckpt_path is not None:
            save_checkpoint(
                {"config": config, "epoch": epoch + 1, "model": model.state_dict(),
                 "optimizer": optimizer.state_dict(), "history": history},
                ckpt_path,
            )
        if on_epoch is not None:
            on_epoch(stats)

    summary = {
        **config,
        "encoding": space.encode(arch),
        "epochs": recipe.epochs,
        "device": str(dev),
        "params": params,
        "params_without_auxiliary": params - aux_params,
        "history": history,
        "best_test_acc": max((h["test_acc"] for h in history), default=None),
        "final_test_acc": history[-1]["test_acc"] if history else None,
        "train_seconds": sum(h["seconds"] for h in history),
        "checkpoint": str(ckpt_path) if ckpt_path is not None else None,
    }
    return TrainResult(model=model, summary=summary)
