"""Structured-edit replies: the LLM names one change of its parent, code applies it.

The paper's reply rewrites the whole architecture. A small model breaks it (the channel
chain of a macro network) or repeats the parent, and a DARTS genotype does not fit the
output cap. An edit reply names one change instead:

- nb201: ``{"edge": 0..5, "op": ...}`` (the paper's rule: one operation into another);
- darts: ``{"cell": "normal"|"reduce", "pair": 0..7, "op": ..., "input": ...}`` (one pair's
  operation or its input state, as DartsSpace.mutate);
- macro spaces: ``{"block": i, "type", "out", "bottleneck", "sub_layers", "stride"}`` (one
  block, Zen-NAS choices); code sets the next block's input to the new output.

For a parent, :meth:`EditFormat.alternatives` lists every edit that changes it as a union
of product sets (each field's values enumerated); :meth:`EditFormat.schema` turns that into
a JSON schema, so a grammar-constrained reply (the local backend) cannot return the
parent, nor (where a parent's edits are few enough to enumerate, EXCLUDE_LIMIT) a cell the
search has already evaluated. :meth:`EditFormat.apply` builds the child by code; nothing a model wrote is run.
"""
from __future__ import annotations

import itertools
import json
import math
import random
import threading
from abc import ABC, abstractmethod
from typing import Any, Callable, Collection, Iterator, Mapping

from ..arch import Architecture
from ..errors import ConfigError, InvalidArchitecture
from ..registry import Registry
from ..spaces.base import SearchSpace

#: one product set of edits: field -> allowed values (a single value is a constant)
Alternative = dict[str, tuple[Any, ...]]

#: most edits of a parent that are enumerated (to leave out already-evaluated children, and
#: to name a child by its edit): NB201 24, DARTS 120, macro parents 200-2,200 measured
#: (0.4 s at most, beside a 70-110 s LLM call there); a parent with more keeps its full list
EXCLUDE_LIMIT = 2048

#: the reply formats of the llm proposer; "auto" picks per backend (see resolve_reply_format)
REPLY_FORMATS = ("auto", "edit", "arch")


class EditFormat(ABC):
    """How one space's edits are listed (per parent), described, checked and applied."""

    #: the edit's fields in reply order
    fields: tuple[str, ...] = ()

    def __init__(self, space: SearchSpace):
        self.space = space

    @abstractmethod
    def alternatives(self, parent: Architecture) -> list[Alternative]:
        """Every edit that changes ``parent``, as a union of product sets."""

    @abstractmethod
    def apply(self, parent: Architecture, edit: Mapping[str, Any]) -> Architecture:
        """The child ``edit`` makes of ``parent``; raises InvalidArchitecture for a bad edit."""

    @abstractmethod
    def template(self) -> str:
        """The edit object as the reply format shows it, e.g. ``{"edge": <0..5>, "op": "<op>"}``."""

    @abstractmethod
    def field_text(self) -> str:
        """What each field means and which values it takes (prompt text)."""

    def unseen_alternatives(self, parent: Architecture, exclude: Collection[str]) -> list[Alternative]:
        """:meth:`alternatives` without the edits whose child's id is in ``exclude`` (cells the
        search already evaluated), regrouped by every field but the last. Unchanged when no
        edit would be left (the child is then a recorded duplicate) or when the edits are too
        many to enumerate (over EXCLUDE_LIMIT)."""
        alternatives = self.alternatives(parent)
        if not exclude or not _enumerable(alternatives):
            return alternatives
        kept: list[Alternative] = []
        for alternative in alternatives:
            left = []
            for edit in edits_of(alternative):
                try:
                    if self.apply(parent, edit).id in exclude:
                        continue
                except InvalidArchitecture:
                    pass  # left in: the grammar lists it as before, and applying it is rejected as before
                left.append(edit)
            if len(left) == _size(alternative):
                kept.append(alternative)  # nothing left out: the product set as it was
                continue
            names = list(alternative)
            grouped: dict[tuple[Any, ...], list[Any]] = {}  # all fields but the last -> last field's values
            for edit in left:
                grouped.setdefault(tuple(edit[n] for n in names[:-1]), []).append(edit[names[-1]])
            kept += [{**{n: (v,) for n, v in zip(names, key)}, names[-1]: tuple(values)} for key, values in grouped.items()]
        return kept if kept else alternatives

    def exhausted(self, parent: Architecture, exclude: Collection[str]) -> bool:
        """True when every edit of ``parent`` leads to a cell in ``exclude`` or to no valid cell,
        so that any child of it is a duplicate or invalid; False when the edits are too many to
        enumerate (over EXCLUDE_LIMIT). Stops at the first edit to an unseen valid cell."""
        if not exclude:
            return False
        children = self._valid_children(parent)
        return children is not None and all(child.id in exclude for _, child in children)

    def edit_between(self, parent: Architecture, child: Architecture) -> dict[str, Any] | None:
        """The enumerated edit that makes ``child`` of ``parent``; None when there is none or
        the edits are too many to enumerate (over EXCLUDE_LIMIT)."""
        children = self._valid_children(parent)
        if children is None:
            return None
        return next((edit for edit, made in children if made.id == child.id), None)

    def _valid_children(self, parent: Architecture) -> Iterator[tuple[dict[str, Any], Architecture]] | None:
        """Every enumerated edit of ``parent`` with the child it makes, lazily, leaving out edits
        that make no valid cell; None when the edits are too many to enumerate (EXCLUDE_LIMIT)."""
        alternatives = self.alternatives(parent)
        if not _enumerable(alternatives):
            return None

        def children() -> Iterator[tuple[dict[str, Any], Architecture]]:
            for alternative in alternatives:
                for edit in edits_of(alternative):
                    try:
                        yield edit, self.apply(parent, edit)
                    except InvalidArchitecture:
                        continue

        return children()

    def schema(self, parent: Architecture, exclude: Collection[str] = ()) -> dict[str, Any]:
        """JSON schema of exactly the edits that change ``parent`` (every field enumerated),
        less those that lead to a cell in ``exclude`` (see :meth:`unseen_alternatives`)."""
        options = []
        for alternative in self.unseen_alternatives(parent, exclude):
            properties = {
                name: ({"const": values[0]} if len(values) == 1 else {"enum": list(values)})
                for name, values in alternative.items()
            }
            options.append({"type": "object", "properties": properties, "required": list(alternative)})
        if not options:
            raise ConfigError(f"{self.space.name}: the parent admits no edit ({self.space.encode(parent)})")
        return options[0] if len(options) == 1 else {"anyOf": options}

    def loose_schema(self) -> dict[str, Any]:
        """The edit's shape without per-parent values (backends that do not constrain decoding)."""
        return {"type": "object"}

    def random_edit(self, parent: Architecture, rng: random.Random) -> dict[str, Any]:
        """An edit drawn from :meth:`alternatives` (one product set, then one value per field)."""
        alternative = rng.choice(self.alternatives(parent))
        return {name: rng.choice(values) for name, values in alternative.items()}

    def admits(self, parent: Architecture, edit: Mapping[str, Any]) -> bool:
        """True when ``edit`` is one of the enumerated edits of ``parent`` (what the grammar allows)."""
        for alternative in self.alternatives(parent):
            if set(edit) == set(alternative) and all(edit[k] in v for k, v in alternative.items()):
                return True
        return False

    def example_edit(self, parent: Architecture, accept: Callable[[Architecture], bool]) -> dict[str, Any]:
        """A deterministic edit whose child ``accept`` takes (the prompt's in-context answer)."""
        rng = random.Random(0)
        for _ in range(200):
            edit = self.random_edit(parent, rng)
            try:
                child = self.apply(parent, edit)
            except InvalidArchitecture:
                continue
            if accept(child):
                return edit
        raise ConfigError(f"{self.space.name}: found no valid example edit of {self.space.encode(parent)}")


def _size(alternative: Alternative) -> int:
    """How many edits one product set holds."""
    return math.prod(len(values) for values in alternative.values())


def _enumerable(alternatives: list[Alternative]) -> bool:
    """Whether a parent's edits are few enough to apply one by one (EXCLUDE_LIMIT)."""
    return sum(_size(a) for a in alternatives) <= EXCLUDE_LIMIT


def edits_of(alternative: Alternative) -> Iterator[dict[str, Any]]:
    """Every edit of one product set (of :meth:`EditFormat.alternatives`), fields in its order."""
    names = list(alternative)
    for values in itertools.product(*alternative.values()):
        yield dict(zip(names, values))


def _integer(edit: Mapping[str, Any], name: str, low: int, high: int) -> int:
    value = edit.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArchitecture(f"edit field {name!r} must be an integer in {low}..{high}, got {value!r}")
    if not low <= value <= high:
        raise InvalidArchitecture(f"edit field {name!r} must be in {low}..{high}, got {value}")
    return value


def _choice(edit: Mapping[str, Any], name: str, allowed: tuple[str, ...]) -> str:
    value = edit.get(name)
    if value not in allowed:
        raise InvalidArchitecture(f"edit field {name!r} must be one of {', '.join(allowed)}, got {value!r}")
    return str(value)


def _no_unknown(edit: Mapping[str, Any], fields: tuple[str, ...]) -> None:
    unknown = sorted(set(edit) - set(fields))
    if unknown:
        raise InvalidArchitecture(f"unknown edit field(s) {', '.join(unknown)} (fields: {', '.join(fields)})")


EDIT_FORMATS: Registry[Callable[[SearchSpace], EditFormat]] = Registry("edit format")


@EDIT_FORMATS.register("nb201")
class NB201Edits(EditFormat):
    """One edge's operation into another (the paper's NB201 mutation rule)."""

    fields = ("edge", "op")

    def alternatives(self, parent: Architecture) -> list[Alternative]:
        self.space.validate(parent)
        ops = self.space.ops  # type: ignore[attr-defined]
        return [
            {"edge": (edge,), "op": tuple(op for op in ops if op != current)}
            for edge, current in enumerate(parent.genotype)
        ]

    def apply(self, parent: Architecture, edit: Mapping[str, Any]) -> Architecture:
        _no_unknown(edit, self.fields)
        ops = list(parent.genotype)
        edge = _integer(edit, "edge", 0, len(ops) - 1)
        ops[edge] = _choice(edit, "op", tuple(self.space.ops))  # type: ignore[attr-defined]
        return self.space.make(ops)  # type: ignore[attr-defined]

    def template(self) -> str:
        return '{"edge": <0..5>, "op": "<new operation>"}'

    def field_text(self) -> str:
        return (
            "edge: the position of the operation in the arch string (0: node 1 <- 0; 1: node 2 <- 0; "
            "2: node 2 <- 1; 3: node 3 <- 0; 4: node 3 <- 1; 5: node 3 <- 2).\n"
            f"op: its new operation, one of {', '.join(self.space.ops)}; it must differ from the operation "  # type: ignore[attr-defined]
            "on that edge now."
        )


@EDIT_FORMATS.register("darts")
class DartsEdits(EditFormat):
    """One (operation, input) pair of one cell: a new operation, or a new input state."""

    fields = ("cell", "pair", "op", "input")

    def alternatives(self, parent: Architecture) -> list[Alternative]:
        from ..spaces.darts import CELL_KINDS

        self.space.validate(parent)
        ops = self.space.ops  # type: ignore[attr-defined]
        result: list[Alternative] = []
        for kind, cell in zip(CELL_KINDS, parent.genotype):
            for pair, (op, index) in enumerate(cell):
                node = 2 + pair // 2
                partner = cell[pair ^ 1][1]
                base = {"cell": (kind,), "pair": (pair,)}
                result.append({**base, "op": tuple(o for o in ops if o != op), "input": (index,)})
                free = tuple(i for i in range(node) if i not in (index, partner))
                if free:
                    result.append({**base, "op": (op,), "input": free})
        return result

    def apply(self, parent: Architecture, edit: Mapping[str, Any]) -> Architecture:
        from ..spaces.darts import CELL_KINDS, EDGES_PER_CELL

        _no_unknown(edit, self.fields)
        which = CELL_KINDS.index(_choice(edit, "cell", CELL_KINDS))
        pair = _integer(edit, "pair", 0, EDGES_PER_CELL - 1)
        node = 2 + pair // 2
        op = _choice(edit, "op", tuple(self.space.ops))  # type: ignore[attr-defined]
        index = _integer(edit, "input", 0, node - 1)
        cells = [list(cell) for cell in parent.genotype]
        cells[which][pair] = (op, index)
        return self.space.make(*(tuple(cell) for cell in cells))  # type: ignore[attr-defined]

    def template(self) -> str:
        return '{"cell": "normal" or "reduce", "pair": <0..7>, "op": "<operation>", "input": <state>}'

    def field_text(self) -> str:
        return (
            "cell: the cell to change. pair: the position of the (operation, input) pair in that cell's list "
            "(pairs 2k and 2k+1 feed node k+2).\n"
            f"Change either the operation (op: another one of {', '.join(self.space.ops)}, input: the pair's "  # type: ignore[attr-defined]
            "current input) or the input (op: the pair's current operation, input: another earlier state "
            "0..k+1, different from the other input of the same node)."
        )


class MacroEdits(EditFormat):
    """One block of a macro network (Zen-NAS choices); the next block's input follows its output.

    A residual block may take a new type from its family, new out / bottleneck channels
    (x 2.5 ... 1/2.5, multiples of 8), sub_layers +-2 and a new stride (where the total
    stride allows it); a conv block (stem, head) only new out channels; a fixed head
    (mobilenet) none. The edit lists are split by the first field that differs, so every
    enumerated edit changes the parent.
    """

    fields = ("block", "type", "out", "bottleneck", "sub_layers", "stride")
    residual_fields = ("type", "out", "bottleneck", "sub_layers", "stride")

    def _stride_choices(self, blocks: list, index: int) -> tuple[int, ...]:
        space = self.space
        total = 1
        for block in blocks:
            total *= block.stride
        current = blocks[index].stride
        allowed = [current]
        for stride in (1, 2):
            new_total = total // current * stride
            if stride != current and new_total <= space.total_stride and not space.exact_total_stride:  # type: ignore[attr-defined]
                allowed.append(stride)
        return tuple(allowed)

    def __init__(self, space: SearchSpace):
        super().__init__(space)
        self._cache: dict[str, list[Alternative]] = {}  # parent id -> alternatives (the last few parents)
        self._lock = threading.Lock()  # concurrent proposals share the cache

    def alternatives(self, parent: Architecture) -> list[Alternative]:
        with self._lock:
            cached = self._cache.get(parent.id)
        if cached is None:
            cached = self._alternatives(parent)  # ~0.1-0.5 s: cached, as the schema and the check both need it
            with self._lock:
                if len(self._cache) >= 64:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[parent.id] = cached
        return cached

    def _alternatives(self, parent: Architecture) -> list[Alternative]:
        space = self.space
        space.validate(parent)
        blocks = space.blocks(parent)  # type: ignore[attr-defined]
        result: list[Alternative] = []
        for index, block in enumerate(blocks):
            if block.bottleneck is None:
                is_head = index == len(blocks) - 1 and bool(space.head_types)  # type: ignore[attr-defined]
                if is_head and space.fixed_head:  # type: ignore[attr-defined]
                    continue
                choices = self._within_budget(parent, index, {"out": tuple(space.channel_choices(block.c_out))})  # type: ignore[attr-defined]
                outs = tuple(c for c in choices["out"] if c != block.c_out)
                if outs:
                    result.append({"block": (index,), "out": outs})
                continue
            choices = self._within_budget(parent, index, {
                "type": tuple(space.family_of(block.type)),  # type: ignore[attr-defined]
                "out": tuple(space.channel_choices(block.c_out)),  # type: ignore[attr-defined]
                "bottleneck": tuple(space.channel_choices(block.bottleneck)),  # type: ignore[attr-defined]
                "sub_layers": tuple(space.sub_layer_choices(block.sub_layers)),  # type: ignore[attr-defined]
                "stride": self._stride_choices(blocks, index),
            })
            current = _block_values(block)
            for k, name in enumerate(self.residual_fields):
                changed = tuple(v for v in choices[name] if v != current[name])
                if not changed:
                    continue
                alternative: Alternative = {"block": (index,)}
                for j, other in enumerate(self.residual_fields):
                    alternative[other] = (current[other],) if j < k else (changed if j == k else choices[other])
                result.append(alternative)
        return result

    def _within_budget(self, parent: Architecture, index: int, choices: dict[str, tuple]) -> dict[str, tuple]:
        """``choices`` for block ``index`` narrowed until every combination meets the space's budget.

        Parameters, multiply-adds and layers grow with out, bottleneck and sub_layers and
        shrink with the stride, so the combination of the largest values (and stride 1), tried
        with each remaining type, bounds them all. While it breaks the budget, the largest
        value of one field after the other (round robin) is dropped, never the block's
        current value; the parent itself meets the budget, so this ends.
        """
        space = self.space
        if getattr(space, "budget", None) is None:
            return choices
        block = space.blocks(parent)[index]  # type: ignore[attr-defined]
        current = _block_values(block)
        choices = {name: tuple(sorted(values)) if name != "type" else values for name, values in choices.items()}

        def over_types() -> list[str]:
            types = choices.get("type", (block.type,))
            over = []
            for block_type in types:
                corner = {"type": block_type}
                for name, attribute in (("out", "c_out"), ("bottleneck", "bottleneck"), ("sub_layers", "sub_layers")):
                    if name in choices:
                        corner[attribute] = max(choices[name])
                if "stride" in choices:
                    corner["stride"] = min(choices["stride"])
                try:
                    child = space.replace_block(parent, index, block.replace(**corner))  # type: ignore[attr-defined]
                    fits = space.within_budget(child)  # type: ignore[attr-defined]
                except InvalidArchitecture:
                    fits = False
                if not fits:
                    over.append(block_type)
            return over

        order = [name for name in ("sub_layers", "out", "bottleneck", "type", "stride") if name in choices]
        turn = 0
        over = over_types()
        while over:
            dropped = False
            for _ in range(len(order)):
                name = order[turn % len(order)]
                turn += 1
                values = choices[name]
                if name == "type":
                    drop = next((t for t in over if t != current["type"]), None)
                elif name == "stride":
                    drop = 1 if current["stride"] == 2 and 1 in values else None
                else:
                    drop = values[-1] if values[-1] != current[name] else None
                if drop is not None:
                    choices[name] = tuple(v for v in values if v != drop)
                    dropped = True
                    break
            if not dropped:
                break  # only the current values are left (a parent over budget)
            over = over_types()
        return choices

    def apply(self, parent: Architecture, edit: Mapping[str, Any]) -> Architecture:
        space = self.space
        _no_unknown(edit, self.fields)
        blocks = space.blocks(parent)  # type: ignore[attr-defined]
        index = _integer(edit, "block", 0, len(blocks) - 1)
        block = blocks[index]
        changes: dict[str, Any] = {}
        if "type" in edit:
            changes["type"] = _choice(edit, "type", tuple(space.family_of(block.type)))  # type: ignore[attr-defined]
        for name, attribute in (("out", "c_out"), ("bottleneck", "bottleneck"), ("sub_layers", "sub_layers"),
                                ("stride", "stride")):
            if name not in edit:
                continue
            if name in ("bottleneck", "sub_layers", "stride") and block.bottleneck is None:
                raise InvalidArchitecture(
                    f"block {index} ({block.type}) is a conv block: an edit may only change its out channels"
                )
            changes[attribute] = _integer(edit, name, 1, 4096)
        return space.replace_block(parent, index, block.replace(**changes))  # type: ignore[attr-defined]

    def template(self) -> str:
        return ('{"block": <index>, "type": "<block type>", "out": <channels>, "bottleneck": <channels>, '
                '"sub_layers": <count>, "stride": <1 or 2>}')

    def field_text(self) -> str:
        return (
            "block: the 0-based position of the block in the architecture string. For a residual block give "
            "its new type (same family), out and bottleneck channels, sub_layers and stride; for a conv block "
            "(stem or head) give only its new out channels. At least one value must change. Code then sets the "
            "next block's input channels to the new out channels (and splits a block with 6 or more sub_layers "
            "in two), so the channel chain stays valid."
        )


for _name in ("zen_resnet", "mobilenet", "maedet"):
    EDIT_FORMATS.register(_name)(MacroEdits)


def _block_values(block: Any) -> dict[str, Any]:
    """A macro block's editable values by edit field name."""
    return {"type": block.type, "out": block.c_out, "bottleneck": block.bottleneck,
            "sub_layers": block.sub_layers, "stride": block.stride}


def edit_format(space: SearchSpace) -> EditFormat:
    """The edit format of ``space``; ConfigError when the space has none."""
    if space.name not in EDIT_FORMATS:
        raise ConfigError(
            f"space {space.name!r} has no edit reply format (spaces with one: {', '.join(EDIT_FORMATS.names())}); "
            "use the reply format 'arch'"
        )
    return EDIT_FORMATS.get(space.name)(space)


def resolve_reply_format(requested: str, *, constrained: bool, space: SearchSpace) -> str:
    """``edit`` or ``arch``. ``auto``: edits where decoding is grammar-constrained (the local
    backend) and the space has an edit format, else the paper's whole-architecture reply."""
    if requested not in REPLY_FORMATS:
        raise ConfigError(f"reply format must be one of {', '.join(REPLY_FORMATS)}, got {requested!r}")
    if requested == "auto":
        return "edit" if constrained and space.name in EDIT_FORMATS else "arch"
    if requested == "edit":
        edit_format(space)  # a clear error for spaces without one
    return requested


def edit_json(edit: Mapping[str, Any]) -> str:
    """The edit as compact JSON (prompt example, logs)."""
    return json.dumps(dict(edit))
