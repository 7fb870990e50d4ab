"""Mutation and reflection prompts, assembled from template files shipped as package data.

The mutation prompt follows RZ-NAS section 1: a system message (role and task, text-level
and code-level description of the space, internal reflection, network construction
rules, mutation rules, the proxy's name and its real scoring code, the reply format),
an optional in-context example exchange, and a user message with the current reflection
notes and "Mutate the below architecture." plus the parent's {"arch", "type", "score"}.
Everything but the last user message is byte-identical across calls (provider-side
prompt caching, llama.cpp prefix reuse).
"""
from __future__ import annotations

import ast
import inspect
import json
import random
import re
import textwrap
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Callable, Collection, Iterable

from ..arch import Architecture
from ..errors import ConfigError, InvalidArchitecture
from ..llm.base import Message
from ..fitness import ComponentReference
from ..proxies import base as proxy_base
from ..proxies.base import PROXIES, Proxy, ScoringContext
from ..registry import Registry
from ..spaces.base import SearchSpace
from .edits import EditFormat, edit_format, edit_json
from .memory import Note

#: the reply schema handed to backends for constrained decoding
MUTATION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"arch": {"type": "string"}, "thinking": {"type": "string"}},
    "required": ["arch"],
}

#: longest "thinking" under a constrained schema (small models otherwise ramble to max_tokens)
THINKING_MAX_CHARS = 160

#: space name -> regex of its string encoding, for spaces without an ``encoding_pattern``
ARCH_PATTERNS: Registry[Callable[[SearchSpace], str]] = Registry("architecture pattern")


@ARCH_PATTERNS.register("nb201")
def _nb201_pattern(space: SearchSpace) -> str:
    from ..spaces.nb201 import EDGES, OPS

    op = "(" + "|".join(re.escape(o) for o in OPS) + ")"
    nodes: dict[int, list[str]] = {}
    for dst, src in EDGES:
        nodes.setdefault(dst, []).append(f"{op}~{src}")
    return "^" + r"\+".join(r"\|" + r"\|".join(parts) + r"\|" for parts in nodes.values()) + "$"


def arch_pattern(space: SearchSpace) -> str | None:
    """A regex every valid encoding matches (``space.encoding_pattern`` or the registry), if known."""
    pattern = getattr(space, "encoding_pattern", None)
    if pattern:
        return str(pattern)
    return ARCH_PATTERNS.get(space.name)(space) if space.name in ARCH_PATTERNS else None


#: longest fused "reflection" under a constrained schema
REFLECTION_MAX_CHARS = 300


def mutation_schema(
    space: SearchSpace, *, constrain: bool, fused_reflection: bool = False, require_reflection: bool = False,
    reflection_max_chars: int = REFLECTION_MAX_CHARS, thinking: bool = True,
) -> dict[str, Any]:
    """The reply schema; ``constrain`` adds the space's encoding regex and a short thinking
    (left out with ``thinking`` False: fewer output tokens),
    ``fused_reflection`` a "reflection" field (advice on the previous trial) of at most
    ``reflection_max_chars``, required with ``require_reflection`` (a call that reports a
    previous outcome).

    With a grammar-constrained backend (the local one) this makes every reply a
    well-formed architecture string, which a 135M-parameter model cannot manage alone.
    """
    if not constrain:
        if not fused_reflection:
            return MUTATION_SCHEMA
        schema = json.loads(json.dumps(MUTATION_SCHEMA))
        schema["properties"]["reflection"] = {"type": "string"}
        return schema
    pattern = arch_pattern(space)
    if pattern is None:
        raise ConfigError(f"space {space.name!r} has no encoding pattern, so replies cannot be constrained to it")
    properties: dict[str, Any] = {"arch": {"type": "string", "pattern": pattern}}
    if thinking:
        properties["thinking"] = {"type": "string", "maxLength": THINKING_MAX_CHARS}
    if fused_reflection:
        properties["reflection"] = {"type": "string", "minLength": 1, "maxLength": reflection_max_chars}
    required = _required("arch", fused_reflection and require_reflection)
    return {"type": "object", "properties": properties, "required": required}


def _required(answer: str, reflection: bool) -> list[str]:
    """The reply's required fields: the answer, and the reflection where one is asked for (a
    small model skips an optional field, which left fused reflection without notes)."""
    return [answer, "reflection"] if reflection else [answer]


def edit_reply_schema(
    edits: EditFormat, parent: Architecture | None, *, fused_reflection: bool = False, require_reflection: bool = False,
    exclude: Collection[str] = (), reflection_max_chars: int = REFLECTION_MAX_CHARS, thinking: bool = True,
) -> dict[str, Any]:
    """The schema of an edit reply. With ``parent`` (grammar-constrained backends) the "edit"
    field admits exactly the edits that change it, and thinking is kept short; without, any
    object (the edit is checked when applied). ``require_reflection``: the fused "reflection"
    field must be written (constrained backends, a call that reports a previous outcome).
    ``exclude``: ids of evaluated cells the constrained edit may not lead to (EditFormat.schema);
    ``reflection_max_chars``: the constrained reflection's length cap; ``thinking`` False: the
    constrained reply has no "thinking" field (fewer output tokens)."""
    constrained = parent is not None
    text = {"type": "string", "maxLength": THINKING_MAX_CHARS} if constrained else {"type": "string"}
    properties: dict[str, Any] = {
        "edit": edits.schema(parent, exclude) if parent is not None else edits.loose_schema(),
    }
    if thinking or not constrained:
        properties["thinking"] = text
    if fused_reflection:
        properties["reflection"] = (
            {"type": "string", "minLength": 1, "maxLength": reflection_max_chars} if constrained else {"type": "string"}
        )
    required = _required("edit", fused_reflection and require_reflection and constrained)
    return {"type": "object", "properties": properties, "required": required}


#: fewest characters per token of architecture text (SmolLM2's tokenizer: 1.35 on macro
#: strings, 2.0 on DARTS genotypes; tests/test_edits.py checks the bound with the real tokenizer)
ARCH_CHARS_PER_TOKEN = 1.25


def min_reply_tokens(space: SearchSpace, reply_format: str) -> int:
    """Output tokens a reply in ``reply_format`` needs: its architecture text (for "arch", the
    space's example written out) or the longest edit, plus a short thinking. The mutation
    call's cap is raised to this, so a whole DARTS genotype is not cut off."""
    if reply_format == "edit":
        body = 160  # the longest edit object (a macro block: six fields) is ~120 characters
    else:
        body = len(space.encode(space.example_architecture()))
    return int(body / ARCH_CHARS_PER_TOKEN) + 24 + THINKING_MAX_CHARS // 3


#: the score shown for the in-context example (as in the paper)
EXAMPLE_SCORE = 0.9

_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


@lru_cache(maxsize=None)
def load_template(name: str) -> str:
    """The text of ``search/prompts/<name>.txt`` (package data), without trailing newlines."""
    try:
        text = resources.files("rznas.search").joinpath("prompts", f"{name}.txt").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"prompt template {name!r} is missing from the rznas package") from None
    return text.rstrip("\n")


def render(name: str, **values: Any) -> str:
    """Fill the ``{{key}}`` placeholders of a template; inserted text is never re-scanned."""
    template = load_template(name)
    missing = sorted({key for key in _PLACEHOLDER.findall(template) if key not in values})
    if missing:
        raise ConfigError(f"prompt template {name!r} needs values for {', '.join(missing)}")
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)


# ---- the proxy's real code --------------------------------------------------------------
_INFRASTRUCTURE = {Proxy, ScoringContext}
#: hooks of the shared gradient pass that only matter when a proxy asks for their statistic
_STAT_HELPERS = {proxy_base.FISHER: proxy_base._fisher_hook, proxy_base.RELU_CODES: proxy_base._relu_code_hook}


def _code_packages(proxy: Proxy) -> tuple[str, ...]:
    """Module prefixes whose helpers belong to a proxy's code: rznas.proxies, and a plug-in's own package."""
    module = type(proxy).__module__
    if module == "rznas" or module.startswith("rznas."):
        return ("rznas.proxies",)
    return ("rznas.proxies", module.split(".")[0])


def _in_packages(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _referenced(obj: Any, packages: tuple[str, ...] = ("rznas.proxies",)) -> list[Any]:
    """Functions/classes of ``packages`` (rznas.proxies, a plug-in's package) that the source of
    ``obj`` names, in order."""
    source = textwrap.dedent(inspect.getsource(obj))
    module = inspect.getmodule(obj)
    namespace = vars(module) if module else {}
    found: list[Any] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name) and node.id in namespace:
            target = namespace[node.id]
            if (
                (inspect.isfunction(target) or inspect.isclass(target))
                and _in_packages(getattr(target, "__module__", ""), packages)
                and target not in _INFRASTRUCTURE
                and target is not obj
                and target not in found
            ):
                found.append(target)
    return found


def proxy_source(proxy: Any) -> str:
    """The scoring code of ``proxy``: its class, the shared gradient pass when it uses one,
    and every rznas.proxies helper they call (a plug-in's: its own package's too), read from the
    installed source. For an ensemble fitness (not a Proxy), every component's code, then the
    reference CDF and the aggregation."""
    members = [proxy] if isinstance(proxy, Proxy) else list(proxy.proxies)
    packages = tuple(dict.fromkeys(p for member in members for p in _code_packages(member)))
    roots: list[Any] = [type(member) for member in members]
    needed = set().union(*(stats for member in members for stats in member.requirements.values()))
    if needed:
        roots.append(ScoringContext._run_pass)
    if not isinstance(proxy, Proxy):
        roots += [ComponentReference.cdf, proxy.aggregate]
    skip = [helper for stat, helper in _STAT_HELPERS.items() if stat not in needed]
    ordered: list[Any] = []
    queue = list(roots)
    while queue:
        obj = queue.pop(0)
        if obj in ordered:
            continue
        ordered.append(obj)
        queue.extend(o for o in _referenced(obj, packages) if o not in ordered and o not in queue and o not in skip)
    parts = []
    for obj in ordered:
        source = textwrap.dedent(inspect.getsource(obj)).rstrip()
        if obj is ScoringContext._run_pass:
            source = f"# method of ScoringContext (the gradient pass shared by proxies)\n{source}"
        parts.append(source)
    return "\n\n".join(parts)


def lean_code(source: str) -> str:
    """``source`` without docstrings and comments (``ast.unparse``: the same code, fewer tokens);
    unchanged when it does not parse as Python."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


def _within_budget(space: SearchSpace) -> Callable[[Architecture], bool]:
    """Whether an architecture meets the space's own budget (spaces without budgets: always)."""
    check = getattr(space, "within_budget", None)
    return (lambda arch: bool(check(arch))) if check is not None else (lambda arch: True)


# ---- mutation prompt --------------------------------------------------------------------
@dataclass(frozen=True)
class PromptOptions:
    """Which optional parts the mutation prompt holds (the paper's ablation switches)."""

    text_description: bool = True
    code_description: bool = True
    example: bool = True
    reflection: bool = True  # reflection notes section (and the reflection calls)
    fused_reflection: bool = False  # the reflection is asked for inside the next mutation call
    lean: bool = False  # code blocks without docstrings and comments (same code, ~20% fewer tokens)
    reply_format: str = "arch"  # "arch": the whole mutated architecture (paper); "edit": one structured edit


@dataclass(frozen=True)
class PreviousOutcome:
    """One finished mutation step as a reflection sees it: parent, child, outcome, score change."""

    parent: str  # encoded parent
    parent_score: float
    child: str  # encoded child, or a description of an unusable reply
    outcome: str  # trial state
    child_score: float | None
    exception: str

    def values(self, proxy: str, edit: str | None = None) -> dict[str, str]:
        """Template values shared by the reflection call and the fused mutation call; with
        ``edit`` (the edit's JSON) the child is named by the edit instead of written out."""
        if self.child_score is None:
            change = "none (the child was not scored)"
        else:
            change = (
                f"{self.child_score - self.parent_score:+.6g} "
                f"(parent {self.parent_score:.6g} -> child {self.child_score:.6g})"
            )
        return {
            "parent": parent_json(self.parent, proxy, self.parent_score),
            "child": f"the parent after your edit {edit}" if edit is not None else self.child,
            "outcome": self.outcome,
            "change": change,
            "exception": self.exception or "none",
        }

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "PreviousOutcome":
        return cls(**data)


def parent_json(encoded: str, proxy: str, score: float) -> str:
    """The paper's {"arch", "type", "score"} object for a user message."""
    return json.dumps({"arch": encoded, "type": proxy, "score": float(f"{score:.6g}")})


class MutationPrompt:
    """Builds the chat messages that ask an LLM for one mutation of a parent."""

    def __init__(self, space: SearchSpace, proxy: Proxy, options: PromptOptions = PromptOptions()):
        self.space = space
        self.proxy = proxy
        self.options = options
        self.description = space.describe()
        self.example_input = space.example_architecture()
        self.edits: EditFormat | None = None
        self.example_edit: dict[str, Any] | None = None
        if options.reply_format == "edit":
            self.edits = edit_format(space)
            # the example answer: one fixed edit of the example, valid and within any budget
            self.example_edit = self.edits.example_edit(self.example_input, _within_budget(space))
            self.example_answer: Architecture = self.edits.apply(self.example_input, self.example_edit)
        elif options.reply_format == "arch":
            # the example answer: one fixed mutation of the example (deterministic, seed 0)
            self.example_answer = space.mutate(self.example_input, random.Random(0))
        else:
            raise ConfigError(f"prompt reply format must be 'arch' or 'edit', got {options.reply_format!r}")
        self.system = self._system()
        self.prefix = self._prefix()

    def _system(self) -> str:
        d = self.description
        parts = [render("role")]
        if self.options.text_description:
            parts.append(render("space_text", space=d.name, text=d.text))
        lean = lean_code if self.options.lean else (lambda code: code)
        if self.options.code_description:
            parts.append(render("space_code", code=lean(d.code)))
        parts.append(render("internal_reflection"))
        parts.append(render("construction", encoding=d.encoding))
        parts.append(render("mutation_rules", mutation_rules=d.mutation_rules))
        parts.append(
            render("proxy", proxy=self.proxy.name, convention=self.proxy.convention, code=lean(proxy_source(self.proxy)))
        )
        if self.edits is not None:
            parts.append(render("output_format_edit", edit=self.edits.template(), fields=self.edits.field_text()))
        else:
            parts.append(render("output_format"))
        if self.options.fused_reflection:
            parts.append(render("fused_reflection"))
        if self.options.example:
            parts.append(render("example_note"))
        return "\n\n".join(parts)

    def _prefix(self) -> tuple[Message, ...]:
        messages = [Message("system", self.system)]
        if self.options.example:
            user = json.dumps(
                {"arch": self.space.encode(self.example_input), "type": self.proxy.name, "score": EXAMPLE_SCORE}
            )
            thinking = self.description.example_thinking or render("example_thinking")
            if self.example_edit is not None:
                answer = json.dumps({"edit": self.example_edit, "thinking": thinking})
            else:
                answer = json.dumps({"arch": self.space.encode(self.example_answer), "thinking": thinking})
            messages += [Message("user", user), Message("assistant", answer)]
        return tuple(messages)

    def user_message(
        self,
        parent_encoded: str,
        parent_score: float,
        notes: Iterable[Note] = (),
        previous: PreviousOutcome | None = None,
    ) -> str:
        """The dynamic last message: reflection notes, the previous outcome (fused reflection
        only), then the parent to mutate."""
        parts = []
        notes = list(notes) if self.options.reflection else []
        if notes:
            parts.append(render("notes", notes="\n".join(f"- {n.text}" for n in notes)))
        if previous is not None and self.options.fused_reflection and self.options.reflection:
            parts.append(render("previous_outcome", **previous.values(self.proxy.name, self.previous_edit(previous))))
        parts.append(render("user", parent=parent_json(parent_encoded, self.proxy.name, parent_score)))
        return "\n\n".join(parts)

    def previous_edit(self, previous: PreviousOutcome) -> str | None:
        """With edit replies, the edit that made the previous child (its JSON: ~15 tokens where
        an NB201 string is 61); None for whole-architecture replies, an unusable reply or a
        parent with too many edits to enumerate (the child is then written out)."""
        if self.edits is None:
            return None
        try:
            parent, child = self.space.decode(previous.parent), self.space.decode(previous.child)
        except (InvalidArchitecture, ValueError, TypeError):
            return None
        edit = self.edits.edit_between(parent, child)
        return edit_json(edit) if edit is not None else None

    def messages(
        self,
        parent_encoded: str,
        parent_score: float,
        notes: Iterable[Note] = (),
        previous: PreviousOutcome | None = None,
    ) -> list[Message]:
        """Static prefix (system + example) followed by the user message for ``parent``."""
        return [*self.prefix, Message("user", self.user_message(parent_encoded, parent_score, notes, previous))]

    def repair_messages(self, messages: list[Message], reply: str, error: str) -> list[Message]:
        """The conversation extended by the rejected reply and the error, for one repair try."""
        template = "repair_edit" if self.edits is not None else "repair"
        return [*messages, Message("assistant", reply), Message("user", render(template, error=error))]

    def is_example_copy(self, arch: Architecture) -> bool:
        """True when ``arch`` is the in-context example's answer (the model copied it)."""
        return self.options.example and arch.id == self.example_answer.id


# ---- reflection prompt ------------------------------------------------------------------
class ReflectionPrompt:
    """Builds the reflection call: parent, child, score change and exception -> advice.

    It reuses the mutation prompt's system message, so the long static prefix (space and
    proxy code) is shared by both calls: one prefix for provider prompt caching and for
    llama.cpp's KV-cache reuse, and the reflecting model sees the same context.
    """

    def __init__(self, mutation: MutationPrompt):
        self.proxy = mutation.proxy
        self.system = mutation.system

    def messages(
        self,
        *,
        parent: str,
        parent_score: float,
        child: str,
        outcome: str,
        child_score: float | None,
        exception: str,
    ) -> list[Message]:
        """Messages for one reflection; ``child`` may be raw model text when it did not parse."""
        step = PreviousOutcome(parent, parent_score, child, outcome, child_score, exception)
        user = render("reflect_user", proxy=self.proxy.name, **step.values(self.proxy.name))
        return [Message("system", self.system), Message("user", user)]


def known_proxies() -> list[str]:
    """Names usable in prompts (every registered proxy)."""
    return PROXIES.names()
