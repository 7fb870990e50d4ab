"""Which probe data a proxy gets by default, the same rule for `search`, `score` and `cache precompute`.

``auto`` (the default) gives real images (CIFAR-10) as soon as one of the proxies is
data-dependent (``Proxy.needs_data``), and Gaussian noise only to data-free proxies, whose
scores do not look at the images. When CIFAR-10 is missing, ``auto`` fails with a message that
says how to get it or how to opt into noise (``--data gaussian``): there is no silent fallback.
A data-dependent proxy that runs on synthetic data (because the user asked) is announced once,
at start, by :func:`synthetic_data_notice`.
"""
from __future__ import annotations

from typing import Iterable, Protocol

from ..errors import DataError
from .paths import PathLike
from .probe import PROBE_SOURCES, parse_data_spec

#: the default real probe data set for data-dependent proxies
REAL_DEFAULT = "cifar10"
#: probe sources that are not images of any data set
SYNTHETIC = frozenset({"gaussian"})


class NeedsData(Protocol):
    """What this module reads from a proxy."""

    name: str
    needs_data: bool


def _data_dependent(proxies: Iterable[NeedsData]) -> list[str]:
    return [proxy.name for proxy in proxies if getattr(proxy, "needs_data", True)]


def choose_probe_data(requested: str, proxies: Iterable[NeedsData], *, data_dir: PathLike | None = None) -> str:
    """The probe data set to use: ``requested`` when explicit, else the ``auto`` rule above."""
    proxies = list(proxies)
    if requested != "auto":
        PROBE_SOURCES.get(parse_data_spec(requested)[0])  # UnknownName with "did you mean" for typos
        return requested
    needing = _data_dependent(proxies)
    if not needing:
        return "gaussian"
    from .cifar import find_cifar_folder

    try:
        find_cifar_folder(REAL_DEFAULT, data_dir)
    except DataError as exc:
        raise DataError(
            f"{', '.join(needing)} scores real images, and the default probe data ({REAL_DEFAULT}) is not here: {exc}. "
            f"Put CIFAR-10 under --data-dir or $RZNAS_DATA_DIR, or pass --data gaussian to probe with "
            f"synthetic noise (the scores then differ from those on real images)"
        ) from None
    return REAL_DEFAULT


def synthetic_data_notice(data: str, proxies: Iterable[NeedsData]) -> str | None:
    """The line to show once at start when a data-dependent proxy probes synthetic data, else None."""
    needing = _data_dependent(proxies)
    if data not in SYNTHETIC or not needing:
        return None
    return (
        f"note: {', '.join(needing)} {'is' if len(needing) == 1 else 'are'} data-dependent but probe{'s' if len(needing) == 1 else ''} "
        f"synthetic {data} noise with random labels (--data {data}); scores differ from those on real images "
        f"(--data {REAL_DEFAULT})"
    )


__all__ = ["REAL_DEFAULT", "SYNTHETIC", "choose_probe_data", "synthetic_data_notice"]
