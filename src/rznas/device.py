"""Where networks run: ``--device auto|cpu|cuda`` resolved once, the same way for every command.

``auto`` means CUDA when torch sees a GPU, else the CPU; ``cuda`` without a GPU is a
ConfigError (never a silent CPU run). A search records the resolved device in its run
config, so a resume (or another ``--executor``) scores on the same kind of device.
"""
from __future__ import annotations

from typing import Callable

from .errors import ConfigError

#: the accepted ``--device`` values
DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda")


def detect_gpus() -> int:
    """Number of CUDA devices torch can use (0 without CUDA or with a broken driver)."""
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # a broken driver means no GPUs for us
        return 0


def choose_device(name: str, *, gpus: Callable[[], int] | None = None) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; ``cpu`` and ``cuda`` as given
    (``cuda`` without a GPU, or any other name, is a ConfigError). ``gpus`` counts the visible
    GPUs (default :func:`detect_gpus`)."""
    gpus = gpus or detect_gpus
    if name not in DEVICE_CHOICES:
        raise ConfigError(f"unknown device {name!r}; use {', '.join(DEVICE_CHOICES)}")
    if name == "auto":
        return "cuda" if gpus() > 0 else "cpu"
    if name == "cuda" and gpus() == 0:
        raise ConfigError(
            "--device cuda was asked for, but torch sees no CUDA device "
            "(check the driver and that torch is a CUDA build), or use --device cpu"
        )
    return name


__all__ = ["DEVICE_CHOICES", "choose_device", "detect_gpus"]
