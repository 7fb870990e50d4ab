"""What decides a proxy score: the key of a score-cache context, and whether a stored one is stale.

A context key has two parts. The *settings* say what is scored and how (space and options,
proxy, probe data, score seed, budget, device type). The *code identity* says what computed it:
the rznas, torch and numpy versions and a SHA-256 fingerprint of the source of the modules that
compute the score. Those modules are, precisely:

* the fixed core, :data:`CORE_MODULES`: seeding and the build/score sequence (``rznas.scoring``),
  validation, budget checks and failure states (``rznas.search.evaluator``, ``rznas.search.budget``),
  the shared gradient passes (``rznas.proxies.base``), the probe batch (``rznas.data.probe``,
  ``rznas.data.cifar``, ``rznas.data.user``) and the architecture id that seeds the weights (``rznas.arch``);
* the modules that define the space's and the proxy's classes (their whole class hierarchy), and
  every module of ``rznas.spaces`` / ``rznas.proxies`` (and, for a plug-in, of its own top-level
  package) those modules reference, transitively (e.g. ``zen_resnet`` -> ``macro_space``,
  ``macro_blocks``, ``zen_notation``; ``maedet`` proxy -> ``zen``).

Nothing else enters the fingerprint, so editing the LLM backends, the prompt, the runner or another
proxy leaves stored scores valid, while any edit to the code above makes its contexts stale:
``rznas cache info`` marks them and ``rznas cache clear --stale`` deletes them.
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import sys
from types import ModuleType
from typing import Any, Mapping

from .canonical import canonical_json

#: bump when the meaning of a stored score changes in a way no fingerprinted source shows
EVALUATION_VERSION = "3"  # 2: one seeding scheme (rznas.scoring); 3: code identity in the key

#: modules whose source decides every score, whatever the space and proxy
CORE_MODULES: tuple[str, ...] = (
    "rznas.arch",
    "rznas.data.cifar",
    "rznas.data.probe",
    "rznas.data.user",
    "rznas.proxies.base",
    "rznas.scoring",
    "rznas.search.budget",
    "rznas.search.evaluator",
)
#: packages whose modules are followed from the space's and the proxy's own modules
FOLLOWED_PACKAGES: tuple[str, ...] = ("rznas.spaces", "rznas.proxies")


def context_key(settings: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of a context's settings: its identity in the score cache."""
    return hashlib.sha256(canonical_json(settings).encode()).hexdigest()


def _followed(name: str | None, packages: tuple[str, ...] = FOLLOWED_PACKAGES) -> bool:
    return isinstance(name, str) and any(name == p or name.startswith(p + ".") for p in packages)


def _referenced_modules(module: ModuleType, packages: tuple[str, ...]) -> set[str]:
    """Modules of the followed ``packages`` that ``module``'s globals are, or come from."""
    found: set[str] = set()
    for value in list(vars(module).values()):
        if isinstance(value, ModuleType):
            name: Any = value.__name__
        else:
            try:
                name = getattr(value, "__module__", None)
            except Exception:  # an exotic object with a failing attribute: it tells us nothing
                continue
        if _followed(name, packages) and not str(name).endswith(".__init__"):
            found.add(str(name))
    return found


#: modules of a class hierarchy that never decide a score
_NOT_SCORE_CODE = frozenset({"builtins", "abc", "typing"})


def _class_modules(cls: type) -> set[str]:
    """The modules defining ``cls`` and its bases (a plug-in's own module included)."""
    return {klass.__module__ for klass in cls.__mro__ if klass.__module__ not in _NOT_SCORE_CODE}


#: modules that turn an ensemble's component scores into its fitness (added for ensemble names)
FITNESS_MODULES: tuple[str, ...] = (
    "rznas.fitness.aggregation",
    "rznas.fitness.ensemble",
    "rznas.fitness.factory",
    "rznas.fitness.reference",
)


def score_modules(space: str, proxy: str) -> tuple[str, ...]:
    """The sorted names of the modules whose source decides a ``proxy`` score in ``space``
    (``proxy`` may be an ensemble: its components' modules and :data:`FITNESS_MODULES`)."""
    from .fitness import component_names, is_ensemble
    from .proxies import PROXIES
    from .spaces import SPACES

    todo = _class_modules(SPACES.get(space))
    for name in component_names(proxy):
        todo |= _class_modules(PROXIES.get(name))
    # a plug-in space or proxy (entry point) is followed inside its own top-level package too
    plugin_packages = {name.split(".")[0] for name in todo if not name.startswith("rznas.")}
    packages = FOLLOWED_PACKAGES + tuple(sorted(plugin_packages))
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        module = sys.modules.get(name) or importlib.import_module(name)
        todo |= _referenced_modules(module, packages) - seen
    package_inits = {p for p in FOLLOWED_PACKAGES}  # the registries' import lists, not score code
    fitness = set(FITNESS_MODULES) if is_ensemble(proxy) else set()
    return tuple(sorted((seen - package_inits) | set(CORE_MODULES) | fitness))


def module_source(name: str) -> bytes:
    """The source bytes of module ``name`` (what the fingerprint hashes)."""
    module = sys.modules.get(name) or importlib.import_module(name)
    path = getattr(module, "__file__", None)
    if not path:
        raise RuntimeError(f"module {name} has no source file to fingerprint")
    with open(path, "rb") as handle:
        return handle.read()


@functools.lru_cache(maxsize=None)
def code_fingerprint(space: str, proxy: str) -> str:
    """SHA-256 over the name and source of every module in :func:`score_modules` (cached per process)."""
    digest = hashlib.sha256()
    for name in score_modules(space, proxy):
        source = module_source(name)
        digest.update(f"{name}\0{len(source)}\0".encode())
        digest.update(source)
    return digest.hexdigest()


def code_identity(space: str, proxy: str) -> dict[str, str]:
    """Versions and source fingerprint of what computes a ``proxy`` score in ``space``."""
    import numpy
    import torch

    from . import __version__

    return {
        "rznas": __version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "fingerprint": code_fingerprint(space, proxy),
    }


def cache_settings(
    *,
    space: str,
    space_options: Mapping[str, Any],
    proxy: str,
    probe: Mapping[str, Any],
    score_seed: int,
    budget: Mapping[str, Any],
    device: str,
    fitness: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The full key of a score-cache context (JSON-ready): settings plus code identity
    (``fitness``: an ensemble's components, aggregation and reference sample)."""
    settings = {
        "evaluation": EVALUATION_VERSION,
        "space": space,
        "space_options": dict(space_options),
        "proxy": proxy,
        "probe": dict(probe),
        "score_seed": score_seed,
        "budget": dict(budget),
        "device": device.split(":")[0],
        "code": code_identity(space, proxy),
    }
    if fitness is not None:
        settings["fitness"] = dict(fitness)
    return settings


def stale_reason(settings: Mapping[str, Any]) -> str | None:
    """Why a stored context no longer matches today's code (None while it is current)."""
    if settings.get("evaluation") != EVALUATION_VERSION:
        return f"evaluation version {settings.get('evaluation')} (now {EVALUATION_VERSION})"
    stored = settings.get("code")
    if not isinstance(stored, Mapping):
        return "written without a code identity"
    try:
        current = code_identity(str(settings.get("space")), str(settings.get("proxy")))
    except Exception as exc:  # the space or proxy is gone (UnknownName) or its source unreadable
        return f"cannot fingerprint today's code: {exc}"
    changed = [
        f"{part} {stored.get(part)} -> {current[part]}" if part != "fingerprint" else "score code changed"
        for part in ("rznas", "torch", "numpy", "fingerprint")
        if stored.get(part) != current[part]
    ]
    return ", ".join(changed) or None


__all__ = [
    "CORE_MODULES",
    "EVALUATION_VERSION",
    "FITNESS_MODULES",
    "FOLLOWED_PACKAGES",
    "cache_settings",
    "code_fingerprint",
    "code_identity",
    "context_key",
    "module_source",
    "score_modules",
    "stale_reason",
]
