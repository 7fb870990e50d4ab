"""Training recipes as data: the published hyper-parameters, registered by name."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from ..errors import ConfigError
from ..registry import Registry


@dataclass(frozen=True)
class Recipe:
    """Hyper-parameters of one training recipe (SGD with a per-epoch cosine schedule)."""

    name: str
    epochs: int
    batch_size: int
    lr: float  # learning rate at ``batch_size`` (scaled linearly when lr_scaling == "linear")
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    lr_min: float = 0.0
    warmup_epochs: int = 0
    lr_scaling: str = "none"  # "none" | "linear": lr * batch_size / recipe batch size
    label_smoothing: float = 0.0
    augment: bool = True  # random crop (padding 4) + horizontal flip
    cutout: int = 0  # cutout square length in pixels, 0 = off
    drop_path_prob: float = 0.0  # final value; ramped linearly from 0 over the epochs
    auxiliary_weight: float = 0.0  # weight of the auxiliary-head loss, 0 = no auxiliary head
    grad_clip: float | None = None  # max gradient norm
    source: str = ""  # where the numbers come from

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(f"recipe {self.name!r}: epochs and batch size must be positive")
        if self.lr <= 0 or self.lr_min < 0 or self.lr_min > self.lr:
            raise ConfigError(f"recipe {self.name!r}: need 0 <= lr_min <= lr and lr > 0")
        if self.lr_scaling not in ("none", "linear"):
            raise ConfigError(f"recipe {self.name!r}: lr_scaling must be 'none' or 'linear'")
        if not 0.0 <= self.drop_path_prob < 1.0:
            raise ConfigError(f"recipe {self.name!r}: drop_path_prob must be in [0, 1)")
        if not 0 <= self.warmup_epochs:
            raise ConfigError(f"recipe {self.name!r}: warmup_epochs must be >= 0")

    def with_overrides(self, *, epochs: int | None = None, batch_size: int | None = None) -> "Recipe":
        """The recipe with --epochs / --batch-size applied (lr rescaled when the recipe says so)."""
        changes: dict[str, Any] = {}
        if epochs is not None:
            changes["epochs"] = epochs
            changes["warmup_epochs"] = min(self.warmup_epochs, max(epochs - 1, 0))
        if batch_size is not None and batch_size != self.batch_size:
            changes["batch_size"] = batch_size
            if self.lr_scaling == "linear":
                changes["lr"] = self.lr * batch_size / self.batch_size
                changes["lr_min"] = self.lr_min * batch_size / self.batch_size
        return replace(self, **changes) if changes else self

    def lr_at(self, epoch: int) -> float:
        """Learning rate of ``epoch`` (0-based): linear warmup, then cosine from lr to lr_min."""
        if epoch < self.warmup_epochs:
            return self.lr * (epoch + 1) / self.warmup_epochs
        span = max(self.epochs - self.warmup_epochs, 1)
        progress = (epoch - self.warmup_epochs) / span
        return self.lr_min + 0.5 * (self.lr - self.lr_min) * (1.0 + math.cos(math.pi * progress))

    def drop_path_at(self, epoch: int) -> float:
        """Drop-path probability of ``epoch``: DARTS's linear ramp drop_path_prob * epoch / epochs."""
        return self.drop_path_prob * epoch / self.epochs

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


RECIPES: Registry[Recipe] = Registry("training recipe")


def _add(recipe: Recipe) -> Recipe:
    RECIPES.register(recipe.name)(recipe)
    return recipe


DARTS = _add(
    Recipe(
        name="darts",
        epochs=600,
        batch_size=96,
        lr=0.025,
        momentum=0.9,
        weight_decay=3e-4,
        lr_min=0.0,
        cutout=16,
        drop_path_prob=0.2,
        auxiliary_weight=0.4,
        grad_clip=5.0,
        source="DARTS (Liu et al. 2019) train.py: CIFAR-10 evaluation of a found cell",
    )
)

ZEN = _add(
    Recipe(
        name="zen",
        epochs=1440,
        batch_size=64,
        lr=0.025,  # Zen-NAS: lr_per_256 0.1 -> 0.025 at batch 64, cosine to 0
        momentum=0.9,
        nesterov=True,
        weight_decay=5e-4,
        lr_min=0.0,
        warmup_epochs=5,
        lr_scaling="linear",
        label_smoothing=0.1,
        source=(
            "Zen-NAS scripts/Zen_NAS_cifar_params1M.sh (train_image_classification.py: sgd, nesterov, "
            "wd 5e-4, label smoothing, lr_per_256 0.1 cosine to 0, warmup 5, 1440 epochs, batch 64); "
            "its mixup, AutoAugment and random erasing are not reproduced"
        ),
    )
)

QUICK = _add(
    Recipe(
        name="quick",
        epochs=3,
        batch_size=64,
        lr=0.05,
        momentum=0.9,
        nesterov=True,
        weight_decay=5e-4,
        grad_clip=5.0,
        source="rznas smoke check: a few epochs to see the loss fall",
    )
)

#: the recipe a space trains with when none is named
DEFAULT_RECIPE_FOR_SPACE: dict[str, str] = {"darts": "darts", "nb201": "quick"}


def default_recipe(space_name: str) -> Recipe:
    """The conventional recipe of a space: DARTS for cells, Zen-NAS's for macro spaces."""
    return RECIPES.get(DEFAULT_RECIPE_FOR_SPACE.get(space_name, "zen"))
