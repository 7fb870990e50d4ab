"""Training found architectures: recipes as data, a resumable loop, data adapters."""
from .arch_input import architecture_from_json, load_architecture
from .checkpoint import load_checkpoint, save_checkpoint
from .data import (
    CifarTrainData,
    TensorTrainData,
    TrainData,
    cifar_holdout_data,
    cifar_train_data,
    load_train_data,
    user_train_data,
)
from .loop import EpochStats, TrainResult, evaluate, resolve_device, train_architecture, training_space_options
from .recipes import RECIPES, Recipe, default_recipe

__all__ = [
    "RECIPES",
    "CifarTrainData",
    "EpochStats",
    "Recipe",
    "TensorTrainData",
    "TrainData",
    "TrainResult",
    "architecture_from_json",
    "cifar_holdout_data",
    "cifar_train_data",
    "default_recipe",
    "evaluate",
    "load_architecture",
    "load_checkpoint",
    "load_train_data",
    "resolve_device",
    "save_checkpoint",
    "train_architecture",
    "training_space_options",
    "user_train_data",
]
