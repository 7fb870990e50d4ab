"""Search configuration: defaults, a JSON/TOML config file, and flags that override it.

The defaults are sized so that ``rznas search`` with no arguments finishes on the
embedded model on 2 CPU cores within minutes (docs/search.md has the measurement);
the paper's NAS-Bench-201 setting is ``population=100, iterations=1500``.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..errors import ConfigError
from .edits import REPLY_FORMATS
from .proposers import PAPER_TEMPERATURES

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser from PyPI (a dependency there, see pyproject.toml)
    import tomli as tomllib

#: values of ``llm_structured`` (the openai backend's structured-output modes, plus auto)
LLM_STRUCTURED_CHOICES = ("auto", "json_schema", "json_object_schema", "json_object", "none")

#: the paper's setting for NAS-Bench-201 (RZ-NAS section 1)
PAPER_SETTING = {"population": 100, "iterations": 1500}


@dataclass(frozen=True)
class SearchConfig:
    """Everything that determines a search run (stored resolved in the run store)."""

    space: str = "nb201"
    proxy: str = "synflow"  # data-free (gaussian probe is faithful) and cheap on CPU
    # an ensemble proxy (a+b+c, az_nas) ranks each component against this seeded reference sample
    reference_size: int = 256
    reference_seed: int = 0
    proposer: str = "llm"
    llm: str = "local:q8_0"  # the embedded SmolLM2, re-encoded from its shipped Q4_1 (faster prompt evaluation)
    llm_base_url: str | None = None
    llm_timeout: float = 120.0
    llm_max_retries: int = 5
    # structured output with the openai backend: auto negotiates json_schema -> json_object
    # with schema -> json_object -> none; a fixed mode is an error where the server refuses it
    llm_structured: str = "auto"
    # llama.cpp threads of the local backend (None = half the CPUs: its threads spin while they
    # wait, so on a busy machine more threads are slower; on an idle one all cores are faster)
    llm_threads: int | None = None
    price_table: dict[str, Any] | None = None
    population: int = 20
    iterations: int = 30
    seed: int = 0  # the search's randomness: initial population, parents, mutations, temperatures
    # the scores' randomness: probe sample and network weights, exactly as `rznas score --seed`
    # (rznas.scoring); independent of `seed`, so every run seed and proposer shares one score cache
    score_seed: int = 0
    selection: str = "uniform"
    tournament_size: int = 5
    # torch intra-op threads for scoring (None = torch's default); 1 is fastest on a shared CPU
    torch_threads: int | None = 1
    # probe data for the proxy: "auto" = CIFAR-10 for a data-dependent proxy, Gaussian noise for a
    # data-free one (rznas.data.probe_choice); a run stores the resolved name
    data: str = "auto"
    data_dir: str | None = None
    batch_size: int = 64
    probe_chunks: int = 2
    # architecture budgets (None = unlimited); FLOPs are multiply-adds per image
    max_params: float | None = None
    max_flops: float | None = None
    max_layers: int | None = None
    # the space: constructor options (as `rznas train --space-option`) and its budget preset
    # (macro spaces: "1M", "600M", ...; "none" disables it); max_* above tighten that preset
    space_options: dict[str, Any] | None = None
    budget: str | None = None
    # probe image size for proxy scoring (None: the data's own, 32); FLOPs budgets are always
    # counted at the space's native resolution (224 mobilenet, 480 maedet, 32 CIFAR spaces)
    probe_resolution: int | None = None
    # LLM usage budgets: the run stops cleanly when one is reached
    max_cost_usd: float | None = None
    max_tokens: int | None = None
    # prompt parts and reflection (the paper's ablation switches)
    reflection: bool = True
    example: bool = True
    code_description: bool = True
    text_description: bool = True
    temperature: float | None = None  # fixed temperature; None = draw from `temperatures`
    temperatures: tuple[float, ...] = PAPER_TEMPERATURES
    repair_attempts: int = 1
    # constrain replies to the space's encoding regex: "auto" = only for the local backend
    constrain_arch: str = "auto"
    # reply format of the llm proposer: "arch" (the paper: the whole mutated architecture),
    # "edit" (one structured edit applied by code), "auto" (edit when constrained, else arch)
    reply_format: str = "auto"
    # constrained edit replies may not lead to a cell the search already evaluated (a
    # duplicate is a wasted iteration); for parents with at most EXCLUDE_LIMIT edits
    exclude_evaluated: bool = True
    # with exclude_evaluated, a drawn parent all of whose children were evaluated is drawn
    # again (its child could only be a duplicate); the run counts the redraws
    redraw_exhausted: bool = True
    mutate_max_tokens: int = 160
    reflect_max_tokens: int = 80
    max_reply_chars: int = 20_000
    memory_recent: int = 2
    memory_useful: int = 1
    note_max_chars: int = 300
    # NB201 ground truth for the final report (a folder of compact tables or NATS-Bench)
    nb201: str | None = None
    # scale (docs/scale.md): where proxies run, the persistent score cache, concurrent proposals
    executor: str = "inline"
    # where networks are scored, by every executor: auto (CUDA when visible), cpu or cuda; a run
    # stores the resolved device, so a resume or another executor scores on the same kind
    device: str = "auto"
    workers: int | None = None
    ray_address: str | None = None
    score_cache: str | None = "default"  # "default" ($RZNAS_CACHE_DIR or ~/.cache/rznas), a path, or "none"
    concurrency: int = 1  # proposals in flight at once (1 = the paper's sequential loop)
    fused_reflection: bool = False  # reflect on the previous trial inside the next mutation call
    # reflect on every N-th mutation step only (1 = the paper: every step); the reflecting steps
    # are a pure function of the trial number, so a resume or replay reflects on the same ones
    reflect_every: int = 1
    # constrained replies carry a short free "thinking" field (False: left out of the grammar)
    reply_thinking: bool = True
    lean_prompt: bool = False  # prompt code blocks without docstrings/comments (fewer tokens)
    # final selection (docs/search.md): after the evolution, train the K best-scoring distinct
    # architectures briefly and return the one with the best held-out validation accuracy (0 = off)
    final_train_top: int = 0
    final_epochs: int = 1
    final_data: str | None = None  # CIFAR dataset trained on (None: the probe data, `data`)
    final_train_images: int = 5000  # taken from the dataset's training split
    final_val_images: int = 2000  # held out of the training split (the test split is never used)
    final_batch_size: int = 128
    final_recipe: str = "quick"  # a registered training recipe (`rznas train --recipe`); epochs/batch overridden
    final_seed: int = 0  # data split, data order and weight init; independent of `seed`, like the score cache
    final_space_options: dict[str, Any] | None = None  # trained network's space options (e.g. cells_per_stage=1)
    final_device: str = "auto"  # auto | cpu | cuda

    def __post_init__(self) -> None:
        object.__setattr__(self, "temperatures", tuple(float(t) for t in self.temperatures))
        positive = (
            "population", "batch_size", "probe_chunks", "mutate_max_tokens", "reflect_max_tokens", "max_reply_chars",
            "reflect_every", "note_max_chars",
        )
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.iterations < 0:
            raise ConfigError(f"iterations must be >= 0, got {self.iterations}")
        if self.reference_size < 2:
            raise ConfigError(f"reference_size must be >= 2 (cells an ensemble ranks against), got {self.reference_size}")
        if self.llm_threads is not None and int(self.llm_threads) < 1:
            raise ConfigError(f"llm_threads must be >= 1, got {self.llm_threads}")
        if self.llm_structured not in LLM_STRUCTURED_CHOICES:
            raise ConfigError(
                f"llm_structured must be one of {', '.join(LLM_STRUCTURED_CHOICES)}, got {self.llm_structured!r}"
            )
        if self.constrain_arch not in ("auto", "on", "off"):
            raise ConfigError(f"constrain_arch must be auto, on or off, got {self.constrain_arch!r}")
        if self.reply_format not in REPLY_FORMATS:
            raise ConfigError(f"reply_format must be one of {', '.join(REPLY_FORMATS)}, got {self.reply_format!r}")
        if self.repair_attempts < 0:
            raise ConfigError(f"repair_attempts must be >= 0, got {self.repair_attempts}")
        if self.space_options is not None:
            if not isinstance(self.space_options, dict) or not all(isinstance(k, str) for k in self.space_options):
                raise ConfigError(f"space_options must be a table of named options, got {self.space_options!r}")
            object.__setattr__(self, "space_options", dict(self.space_options))
        if self.probe_resolution is not None and self.probe_resolution < 1:
            raise ConfigError(f"probe_resolution must be >= 1, got {self.probe_resolution}")
        if self.concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")
        from ..device import DEVICE_CHOICES

        if self.device not in DEVICE_CHOICES:
            raise ConfigError(f"device must be one of {', '.join(DEVICE_CHOICES)}, got {self.device!r}")
        if self.final_train_top < 0:
            raise ConfigError(f"final_train_top must be >= 0 (0 = no final selection), got {self.final_train_top}")
        for name in ("final_epochs", "final_train_images", "final_val_images", "final_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.final_space_options is not None:
            if not isinstance(self.final_space_options, dict) or not all(isinstance(k, str) for k in self.final_space_options):
                raise ConfigError(f"final_space_options must be a table of named options, got {self.final_space_options!r}")
            object.__setattr__(self, "final_space_options", dict(self.final_space_options))

    @property
    def constrain(self) -> bool:
        """Whether replies are grammar-constrained to the space's encoding."""
        if self.constrain_arch == "auto":
            return self.llm.split(":", 1)[0].strip().lower() == "local"
        return self.constrain_arch == "on"

    def space_kwargs(self) -> dict[str, Any]:
        """Constructor options of the search's space: space_options, the budget preset and,
        in spaces with budgets, max_* folded in (:func:`rznas.search.budget.space_kwargs`)."""
        from .budget import space_kwargs

        return space_kwargs(
            self.space,
            self.space_options,
            budget=self.budget,
            max_params=self.max_params,
            max_flops=self.max_flops,
            max_layers=self.max_layers,
        )

    def resolved(self) -> "SearchConfig":
        """This config with ``device`` and ``data`` resolved from ``auto`` (what a run stores):
        a ConfigError for ``cuda`` without a GPU, a DataError when the default data is missing."""
        from ..data.probe_choice import choose_probe_data
        from ..device import choose_device
        from ..fitness import component_names
        from ..proxies import PROXIES

        proxies = [PROXIES.get(name) for name in component_names(self.proxy)]  # an ensemble: its components
        return self.replace(
            device=choose_device(self.device),
            data=choose_probe_data(self.data, proxies, data_dir=self.data_dir),
        )

    def make_space(self) -> Any:
        """The search space built from :meth:`space_kwargs`; a bad option or budget is a ConfigError."""
        from ..spaces import get_space

        return get_space(self.space, **self.space_kwargs())

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["temperatures"] = list(self.temperatures)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, origin: str = "config") -> "SearchConfig":
        """Build from a mapping; unknown keys are an error with a "did you mean"."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for raw_key, value in data.items():
            key = str(raw_key).replace("-", "_")
            if key not in known:
                close = difflib.get_close_matches(key, known, n=2, cutoff=0.6)
                hint = f"; did you mean {' or '.join(close)}?" if close else ""
                raise ConfigError(f"{origin}: unknown setting {raw_key!r}{hint}")
            values[key] = _coerce(key, value, known[key].default, origin)
        return cls(**values)

    def replace(self, **changes: Any) -> "SearchConfig":
        return dataclasses.replace(self, **changes)


def _coerce(key: str, value: Any, default: Any, origin: str) -> Any:
    """Light type checking of config-file values against the field's default."""
    if value is None:
        return None
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{origin}: {key} must be true or false, got {value!r}")
        return value
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{origin}: {key} must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{origin}: {key} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{origin}: {key} must be a string, got {value!r}")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(f"{origin}: {key} must be a non-empty list, got {value!r}")
        return tuple(value)
    return value


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON or TOML config file (by extension) into a flat mapping."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(raw.decode("utf-8"))
        elif path.suffix.lower() == ".json":
            data = json.loads(raw)
        else:
            raise ConfigError(f"config file {path} must end in .json or .toml")
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is malformed: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a table/object of settings")
    section = data.get("search")
    if isinstance(section, dict) and len(data) == 1:
        data = section  # allow a [search] table
    return data


def resolve_config(file: str | Path | None, overrides: Mapping[str, Any]) -> SearchConfig:
    """Defaults <- config file <- flags (``overrides`` holds only flags the user gave)."""
    data: dict[str, Any] = load_config_file(file) if file is not None else {}
    origin = str(file) if file is not None else "flags"
    base = SearchConfig.from_dict(data, origin=origin)
    return base.replace(**dict(overrides))


__all__ = ["PAPER_SETTING", "SearchConfig", "load_config_file", "resolve_config"]
