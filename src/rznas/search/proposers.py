"""Proposers turn a parent into a child: ``random`` (one random mutation, the plain-proxy
baseline) and ``llm`` (RZ-NAS: an LLM mutation from the assembled prompt, parsed, never
executed, with one repair attempt that feeds the error back). The LLM writes the whole
child (reply format ``arch``, the paper) or one edit of the parent that code applies
(``edit``, search/edits.py)."""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Protocol, Sequence

from ..arch import Architecture
from ..errors import ConfigError, InvalidArchitecture, ParseError
from ..llm.parse import extract_json_object
from ..registry import Registry
from ..spaces.base import SearchSpace
from .edits import edit_json
from .gateway import LLMGateway, call_seed
from .memory import Note
from .prompt import REFLECTION_MAX_CHARS, MutationPrompt, PreviousOutcome, edit_reply_schema, mutation_schema
from ..trial import Member, TrialState

#: the paper's temperature set; one value is drawn per LLM call
PAPER_TEMPERATURES: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8, 1.0)


@dataclass(frozen=True)
class Proposal:
    """A proposer's answer: a child architecture, or a failure state with its reason."""

    arch: Architecture | None
    state: TrialState | None = None  # None: a well-formed child to validate and score
    reason: str = ""
    thinking: str = ""
    raw: str = ""  # the last model reply (for reflection on failures)
    reflection: str = ""  # fused reflection: advice on the previous trial, from this reply


class Proposer(Protocol):
    """Anything that proposes one child for one parent."""

    name: str
    uses_llm: bool

    def propose(self, parent: Member, notes: Sequence[Note]) -> Proposal: ...

    def rng_state(self) -> Any: ...

    def set_rng_state(self, state: Any) -> None: ...


@dataclass
class ProposerContext:
    """What a proposer factory may use."""

    space: SearchSpace
    seed: int
    gateway: LLMGateway | None = None
    prompt: MutationPrompt | None = None
    options: dict[str, Any] = field(default_factory=dict)


PROPOSERS: Registry[Callable[[ProposerContext], Proposer]] = Registry("proposer")


class Temperature:
    """Per-call temperature: drawn uniformly from a set (the paper's default), or fixed."""

    def __init__(self, rng: random.Random, choices: Sequence[float] = PAPER_TEMPERATURES, fixed: float | None = None):
        if fixed is None and not choices:
            raise ConfigError("temperature choices must not be empty")
        for value in ([fixed] if fixed is not None else list(choices)):
            if not 0.0 <= float(value) <= 2.0:
                raise ConfigError(f"temperature must be in [0, 2], got {value}")
        self.rng = rng
        self.choices = tuple(float(c) for c in choices)
        self.fixed = fixed

    def draw(self) -> float:
        return float(self.fixed) if self.fixed is not None else self.rng.choice(self.choices)


@PROPOSERS.register("random")
class RandomProposer:
    """One random elementary mutation from the space (space.mutate)."""

    name = "random"
    uses_llm = False

    def __init__(self, ctx: ProposerContext):
        self.space = ctx.space
        self.rng = random.Random(f"random-proposer:{ctx.seed}")

    def propose(self, parent: Member, notes: Sequence[Note] = ()) -> Proposal:
        return Proposal(self.space.mutate(parent.arch, self.rng))

    def rng_state(self) -> Any:
        return self.rng.getstate()

    def set_rng_state(self, state: Any) -> None:
        self.rng.setstate(state)


class ReplyRejected(Exception):
    """Internal: a reply that did not yield an architecture (state + reason)."""

    def __init__(self, state: TrialState, reason: str, reflection: str = ""):
        super().__init__(reason)
        self.state = state
        self.reason = reason
        self.reflection = reflection


@PROPOSERS.register("llm")
class LLMProposer:
    """RZ-NAS mutation: prompt -> LLM -> JSON reply -> space.decode; never executes the reply."""

    name = "llm"
    uses_llm = True

    def __init__(self, ctx: ProposerContext):
        if ctx.gateway is None or ctx.prompt is None:
            raise ConfigError("the llm proposer needs an LLM client and a prompt")
        opts = dict(ctx.options)
        self.space = ctx.space
        self.gateway = ctx.gateway
        self.prompt = ctx.prompt
        self.rng = random.Random(f"llm-proposer:{ctx.seed}")
        self.temperature = Temperature(
            self.rng, opts.pop("temperatures", PAPER_TEMPERATURES), opts.pop("temperature", None)
        )
        self.repair_attempts = int(opts.pop("repair_attempts", 1))
        self.max_tokens = int(opts.pop("max_tokens", 256))
        self.max_reply_chars = int(opts.pop("max_reply_chars", 20_000))
        self.fused_reflection = bool(opts.pop("fused_reflection", False))
        # reflecting on every N-th step only: the other calls' replies have no "reflection" field
        self.sparse_reflection = int(opts.pop("reflect_every", 1)) > 1
        # a constrained reflection is cut where the note would be (fewer output and prompt tokens)
        self.reflection_max_chars = int(opts.pop("reflection_max_chars", REFLECTION_MAX_CHARS))
        # constrained replies without the free "thinking" field (fewer output tokens)
        self.thinking = bool(opts.pop("thinking", True))
        self.constrain = bool(opts.pop("constrain_arch", False))
        self.reply_format = str(opts.pop("reply_format", "arch"))
        if self.reply_format not in ("arch", "edit"):
            raise ConfigError(f"the llm proposer's reply format must be 'arch' or 'edit', got {self.reply_format!r}")
        if (self.reply_format == "edit") != (self.prompt.edits is not None):
            raise ConfigError(
                f"the llm proposer replies in the {self.reply_format!r} format but its prompt asks for "
                f"{'edits' if self.prompt.edits is not None else 'whole architectures'}"
            )
        arch_reply = self.reply_format == "arch"
        self.schema = (
            mutation_schema(
                self.space, constrain=self.constrain, fused_reflection=self.fused_reflection,
                reflection_max_chars=self.reflection_max_chars, thinking=self.thinking,
            )
            if arch_reply else None
        )
        # without a "reflection" field: a sparse-reflection call that reports no outcome
        self.plain_schema = (
            mutation_schema(self.space, constrain=self.constrain, thinking=self.thinking)
            if arch_reply and self.fused_reflection else self.schema
        )
        # a constrained call that reports a previous outcome must carry the reflection
        self.reflecting_schema = (
            mutation_schema(
                self.space, constrain=True, fused_reflection=True, require_reflection=True,
                reflection_max_chars=self.reflection_max_chars, thinking=self.thinking,
            )
            if arch_reply and self.constrain and self.fused_reflection else None
        )
        if opts:
            raise ConfigError(f"unknown llm proposer options: {', '.join(sorted(opts))}")
        if self.repair_attempts < 0:
            raise ConfigError("repair attempts must be >= 0")

    def propose(
        self,
        parent: Member,
        notes: Sequence[Note] = (),
        *,
        temperature: Temperature | None = None,
        previous: PreviousOutcome | None = None,
        seed_key: tuple[object, ...] | None = None,
        evaluated: Collection[str] = (),
    ) -> Proposal:
        """Ask for one child of ``parent``. ``temperature``: a per-proposal source instead of the
        shared one (concurrent search); ``previous``: the outcome to reflect on in this call
        (fused reflection); ``seed_key``: the persisted identity of this proposal (run seed,
        trial or dispatch number) from which each attempt's model seed is derived;
        ``evaluated``: ids of cells the search has evaluated, which a constrained edit reply
        may not lead to (a duplicate is a wasted iteration)."""
        temperature = temperature or self.temperature
        messages = self.prompt.messages(
            self.space.encode(parent.arch), parent.score, notes, previous if self.fused_reflection else None
        )
        purpose = "mutate"
        reflection = ""
        # a constrained call that reports the previous outcome must reflect on it
        reflect = self.constrain and self.fused_reflection and previous is not None and self.prompt.options.reflection
        offer = self.fused_reflection and not (self.sparse_reflection and previous is None)
        schema = self.reply_schema(parent.arch, reflect=reflect, evaluated=evaluated, offer_reflection=offer)
        for attempt in range(self.repair_attempts + 1):
            call = self.gateway.complete(
                purpose,
                messages,
                temperature=temperature.draw(),
                max_tokens=self.max_tokens,
                json_schema=schema,
                seed=call_seed(*seed_key, purpose, attempt) if seed_key is not None else None,
            )
            try:
                arch, thinking, said = self.parse_reply(call.text, parent.arch)
                reflection = said or reflection
            except ReplyRejected as rejected:
                reflection = rejected.reflection or reflection
                repairable = rejected.state in (TrialState.PARSE_ERROR, TrialState.INVALID)
                if attempt < self.repair_attempts and repairable:
                    messages = self.prompt.repair_messages(messages, call.text, rejected.reason)
                    purpose = "repair"
                    continue
                tries = f" (after {attempt} repair attempt{'s' if attempt != 1 else ''})" if attempt else ""
                return Proposal(None, rejected.state, rejected.reason + tries, raw=call.text, reflection=reflection)
            return Proposal(arch, thinking=thinking, raw=call.text, reflection=reflection)
        raise AssertionError("unreachable")

    def parent_exhausted(self, parent: Architecture, evaluated: Collection[str]) -> bool:
        """True when a constrained edit reply could only give a duplicate (or invalid) child of
        ``parent``: every one of its edits leads to a cell in ``evaluated``. Always False for
        whole-architecture replies and unconstrained backends, whose replies are not limited
        to the enumerated edits."""
        if self.reply_format != "edit" or not self.constrain:
            return False
        assert self.prompt.edits is not None
        return self.prompt.edits.exhausted(parent, evaluated)

    def reply_schema(
        self, parent: Architecture, *, reflect: bool = False, evaluated: Collection[str] = (),
        offer_reflection: bool | None = None,
    ) -> dict[str, Any] | None:
        """The schema handed to the backend: per parent for constrained edits (only edits that
        change ``parent``, and lead to no cell in ``evaluated``, are admitted), else the same
        for every call; with ``reflect`` and a constrained backend, the fused "reflection"
        field is required; ``offer_reflection`` False: no "reflection" field at all (a call
        that reports no previous outcome, with sparse reflection; default: fused reflection)."""
        offer = self.fused_reflection if offer_reflection is None else offer_reflection
        if self.reply_format != "edit":
            if reflect and self.reflecting_schema is not None:
                return self.reflecting_schema
            return self.schema if offer else self.plain_schema
        assert self.prompt.edits is not None
        return edit_reply_schema(
            self.prompt.edits, parent if self.constrain else None, fused_reflection=offer,
            require_reflection=reflect, exclude=evaluated, reflection_max_chars=self.reflection_max_chars,
            thinking=self.thinking,
        )

    def parse(self, text: str, parent: Architecture | None = None) -> tuple[Architecture, str]:
        """Reply text -> (child, thinking); raises ReplyRejected with the state and reason.
        Edit replies need the ``parent`` they edit."""
        arch, thinking, _ = self.parse_reply(text, parent)
        return arch, thinking

    def parse_reply(self, text: str, parent: Architecture | None = None) -> tuple[Architecture, str, str]:
        """Reply text -> (child, thinking, reflection); raises ReplyRejected (state, reason, and any
        reflection the reply held)."""
        try:
            data = extract_json_object(text, max_chars=self.max_reply_chars)
        except ParseError as exc:
            salvage = salvage_edit if self.reply_format == "edit" else salvage_arch
            salvaged = salvage(text) if len(text) <= self.max_reply_chars else None
            if salvaged is None:
                raise ReplyRejected(TrialState.PARSE_ERROR, str(exc)) from None
            # a reply cut off by max_tokens after a complete "arch" / "edit" field
            data = {self.reply_format: salvaged}
        said = data.get("reflection") if self.fused_reflection else None
        reflection = said[:2000] if isinstance(said, str) else ""
        if self.reply_format == "edit":
            arch = self._apply_edit(data, parent, reflection)
        else:
            arch = self._decode_arch(data, reflection)
        if self.prompt.is_example_copy(arch):
            raise ReplyRejected(
                TrialState.COPIED_EXAMPLE,
                "the reply copies the in-context example's answer instead of mutating the parent",
                reflection,
            )
        thinking = data.get("thinking")
        return arch, thinking[:1000] if isinstance(thinking, str) else "", reflection

    def _apply_edit(self, data: dict[str, Any], parent: Architecture | None, reflection: str) -> Architecture:
        """The child an edit reply makes of ``parent`` (applied by code)."""
        if parent is None:
            raise ConfigError("an edit reply needs the parent architecture it edits")
        assert self.prompt.edits is not None
        edit = data.get("edit")
        if not isinstance(edit, dict):
            found = "no 'edit' field" if edit is None else f"'edit' is a {type(edit).__name__}, not an object"
            raise ReplyRejected(TrialState.PARSE_ERROR, f"reply JSON has {found}", reflection)
        try:
            return self.prompt.edits.apply(parent, edit)
        except InvalidArchitecture as exc:
            raise ReplyRejected(TrialState.INVALID, f"edit {edit_json(edit)[:300]}: {exc}", reflection) from None

    def _decode_arch(self, data: dict[str, Any], reflection: str) -> Architecture:
        """The architecture a whole-architecture reply writes (decoded by the space, never evaluated)."""
        encoded = data.get("arch")
        if not isinstance(encoded, str):
            found = "no 'arch' field" if encoded is None else f"'arch' is a {type(encoded).__name__}, not a string"
            raise ReplyRejected(TrialState.PARSE_ERROR, f"reply JSON has {found}", reflection)
        try:
            return self.space.decode(encoded)
        except InvalidArchitecture as exc:
            raise ReplyRejected(TrialState.INVALID, str(exc), reflection) from None

    def rng_state(self) -> Any:
        return self.rng.getstate()

    def set_rng_state(self, state: Any) -> None:
        self.rng.setstate(state)


def salvage_arch(text: str) -> str | None:
    """The value of a complete ``"arch": "..."`` field in a reply whose JSON is cut off.

    Small models often run out of tokens inside the trailing "thinking" field; the
    architecture before it is intact. Plain string scanning, nothing is evaluated.
    """
    key = text.find('"arch"')
    if key < 0:
        return None
    i = key + len('"arch"')
    while i < len(text) and text[i].isspace():
        i += 1
    if i >= len(text) or text[i] != ":":
        return None
    i += 1
    while i < len(text) and text[i].isspace():
        i += 1
    if i >= len(text) or text[i] != '"':
        return None
    start = i + 1
    end = start
    while end < len(text):
        if text[end] == "\\":
            return None  # escapes never occur in a space encoding; do not guess
        if text[end] == '"':
            return text[start:end]
        end += 1
    return None


def salvage_edit(text: str) -> dict[str, Any] | None:
    """The complete ``"edit": {...}`` object of a reply whose JSON is cut off after it."""
    key = text.find('"edit"')
    if key < 0:
        return None
    rest = text[key + len('"edit"') :].lstrip()
    if not rest.startswith(":"):
        return None
    rest = rest[1:].lstrip()
    if not rest.startswith("{"):
        return None
    try:
        return extract_json_object(rest)
    except ParseError:
        return None


def create_proposer(name: str, ctx: ProposerContext) -> Proposer:
    """Instantiate a registered proposer."""
    return PROPOSERS.get(name)(ctx)
