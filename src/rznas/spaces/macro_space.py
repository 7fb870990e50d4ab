"""Shared machinery of the macro search spaces (zen_resnet, mobilenet, maedet).

A macro architecture is a chain of blocks, the genotype a tuple of block tuples
``(type, in, out, stride[, bottleneck], sub_layers)``. This module holds what the
three spaces share: genotype checks, the Zen-NAS string notation, analytic
parameter / multiply-add / layer counts, budgets, budget-fitting sampling and
the Zen-NAS random mutation. Each space subclass only states its skeleton,
block families, presets and prompt text.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Mapping

from torch import nn

from ..arch import Architecture
from ..errors import BudgetExceeded, ConfigError, InvalidArchitecture
from . import zen_notation
from .base import SearchSpace, SpaceDescription, source_of
from .macro_blocks import (
    BLOCK_TYPES,
    CHANNEL_BASE,
    MAX_CHANNELS,
    BlockSpec,
    Cost,
    MacroNetwork,
    head_cost,
    smart_round,
)

#: Zen-NAS channel mutation factors (search_space_XXBL.py / search_space_IDW_fixfc.py)
CHANNEL_FACTORS = (2.5, 2.0, 1.5, 1.25, 1.0, 1 / 1.25, 1 / 1.5, 1 / 2, 1 / 2.5)
#: Zen-NAS sub-layer mutation deltas (results < 1 are dropped)
SUB_LAYER_DELTAS = (-2, -1, 0, 1, 2)
#: Zen-NAS splits a block with this many sub-layers or more into two blocks
SPLIT_SUB_LAYERS = 6
MAX_SUB_LAYERS = 64


@dataclass(frozen=True)
class MacroBudget:
    """Resource limits for a macro architecture; None means unlimited.

    ``flops`` are multiply-adds at ``resolution``; ``params`` count the classifier for
    ``num_classes`` outputs; ``layers`` uses the space's layer count.
    """

    params: float | None = None
    flops: float | None = None
    layers: int | None = None
    resolution: int = 32
    num_classes: int = 10

    def __post_init__(self) -> None:
        for name in ("params", "flops", "layers"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0):
                raise ConfigError(f"budget {name} must be a positive number, got {value!r}")
        for name in ("resolution", "num_classes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"budget {name} must be a positive integer, got {value!r}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "MacroBudget":
        """MacroBudget from a config mapping; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown budget key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        values = dict(data)
        for key in ("layers", "resolution", "num_classes"):
            if isinstance(values.get(key), float) and float(values[key]).is_integer():
                values[key] = int(values[key])
        return cls(**values)

    @classmethod
    def from_spec(cls, text: str) -> "MacroBudget":
        """MacroBudget from ``"params=5e5,layers=14"`` (comma-separated KEY=VALUE; ``to_spec``'s output)."""
        values: dict[str, Any] = {}
        for item in text.split(","):
            key, sep, value = item.strip().partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"budget {text!r}: {item.strip()!r} is not KEY=VALUE")
            try:
                number = float(value)
            except ValueError:
                raise ConfigError(f"budget {text!r}: {key.strip()} must be a number, got {value.strip()!r}") from None
            values[key.strip()] = number
        return cls.from_mapping(values)

    def to_spec(self) -> str:
        """The budget as canonical KEY=VALUE text (plain, hashable, JSON-ready); see from_spec."""
        parts = [f"{name}={getattr(self, name)!r}" for name in ("params", "flops", "layers") if getattr(self, name) is not None]
        return ",".join(parts + [f"resolution={self.resolution}", f"num_classes={self.num_classes}"])

    def describe(self) -> str:
        """One line for prompts and error messages."""
        parts = []
        if self.params is not None:
            parts.append(f"at most {self.params / 1e6:g}M parameters ({self.num_classes} classes)")
        if self.flops is not None:
            parts.append(f"at most {self.flops / 1e6:g}M multiply-adds at {self.resolution}x{self.resolution}")
        if self.layers is not None:
            parts.append(f"at most {self.layers} layers")
        return "; ".join(parts) if parts else "no budget"


@dataclass(frozen=True)
class StageSpec:
    """One stage of the sampling skeleton: stride of its first block and its channel range."""

    stride: int
    min_channels: int
    max_channels: int
    max_blocks: int = 1


class MacroSpace(SearchSpace):
    """A chain-of-blocks macro space with Zen-NAS notation, budgets and mutation."""

    #: block types allowed as the stem (first block), in the middle, and as the head (last block)
    stem_types: ClassVar[tuple[str, ...]] = ()
    body_types: ClassVar[tuple[str, ...]] = ()
    head_types: ClassVar[tuple[str, ...]] = ()  # empty: the last block is a body block
    presets: ClassVar[dict[str, MacroBudget]] = {}
    default_budget: ClassVar[str | None] = None
    #: product of all strides: exact value required, or the maximum allowed
    total_stride: ClassVar[int] = 32
    exact_total_stride: ClassVar[bool] = False
    feature_strides: ClassVar[tuple[int, ...]] = ()
    #: sampling skeleton
    stem_type: ClassVar[str] = "SuperConvK3BNRELU"
    stem_stride: ClassVar[int] = 1
    stem_channels: ClassVar[tuple[int, int]] = (16, 64)
    stages: ClassVar[tuple[StageSpec, ...]] = ()
    head_type: ClassVar[str | None] = "SuperConvK1BNRELU"
    head_channels_range: ClassVar[tuple[int, int]] = (128, 1024)
    max_sample_sub_layers: ClassVar[int] = 3
    #: mutation never changes the head block (Zen-NAS "fixfc" ImageNet space)
    fixed_head: ClassVar[bool] = False
    example_text: ClassVar[str] = ""

    def __init__(self, budget: str | MacroBudget | Mapping[str, Any] | None = "default"):
        self.budget = self._resolve_budget(self.default_budget if budget == "default" else budget)
        if self.budget is not None:
            self._check_feasible(self.budget)

    # ------------------------------------------------------------------ budgets
    def _resolve_budget(self, budget: str | MacroBudget | Mapping[str, Any] | None) -> MacroBudget | None:
        if budget is None or isinstance(budget, MacroBudget):
            return budget
        if isinstance(budget, str):
            if budget.lower() == "none":
                return None
            if "=" in budget:
                return MacroBudget.from_spec(budget)
            if budget not in self.presets:
                raise ConfigError(
                    f"unknown {self.name} budget preset {budget!r}; presets: {', '.join(self.presets)} "
                    "(or give KEY=VALUE pairs / a mapping with params / flops / layers / resolution / num_classes)"
                )
            return self.presets[budget]
        if isinstance(budget, Mapping):
            return MacroBudget.from_mapping(budget)
        raise ConfigError(f"a budget is a preset name, a mapping or None, got {type(budget).__name__}")

    def _check_feasible(self, budget: MacroBudget) -> None:
        """ConfigError when even the smallest network of the space breaks the budget."""
        smallest = self.smallest(budget)
        layers = self.count_layers(smallest)
        if budget.layers is not None and layers > budget.layers:
            raise ConfigError(
                f"{self.name} budget of {budget.layers} layers cannot be met: the smallest network in the "
                f"space has {layers} layers"
            )
        params = self.count_params(smallest, num_classes=budget.num_classes)
        if budget.params is not None and params > budget.params:
            raise ConfigError(
                f"{self.name} budget of {budget.params / 1e6:g}M parameters cannot be met: the smallest "
                f"network in the space has {params / 1e6:.4f}M ({self.encode(smallest)})"
            )
        flops = self.count_flops(smallest, resolution=budget.resolution, num_classes=budget.num_classes)
        if budget.flops is not None and flops > budget.flops:
            raise ConfigError(
                f"{self.name} budget of {budget.flops / 1e6:g}M multiply-adds at {budget.resolution}px cannot be "
                f"met: the smallest network in the space needs {flops / 1e6:.3f}M ({self.encode(smallest)})"
            )

    def budget_violations(self, arch: Architecture, budget: MacroBudget | None = None) -> list[str]:
        """Human-readable reasons why ``arch`` breaks the budget (empty when within it)."""
        budget = self.budget if budget is None else budget
        if budget is None:
            return []
        problems = []
        if budget.layers is not None:
            layers = self.count_layers(arch)
            if layers > budget.layers:
                problems.append(f"{layers} layers > {budget.layers}")
        if budget.params is not None:
            params = self.count_params(arch, num_classes=budget.num_classes)
            if params > budget.params:
                problems.append(f"{params / 1e6:.4f}M parameters > {budget.params / 1e6:g}M")
        if budget.flops is not None:
            flops = self.count_flops(arch, resolution=budget.resolution, num_classes=budget.num_classes)
            if flops > budget.flops:
                problems.append(
                    f"{flops / 1e6:.2f}M multiply-adds at {budget.resolution}px > {budget.flops / 1e6:g}M"
                )
        return problems

    def within_budget(self, arch: Architecture, budget: MacroBudget | None = None) -> bool:
        """True when ``arch`` meets the budget (the space's own when None)."""
        return not self.budget_violations(arch, budget)

    def check_budget(self, arch: Architecture, budget: MacroBudget | str | Mapping[str, Any] | None = None) -> None:
        """Raise BudgetExceeded (a clear message) when ``arch`` breaks the budget.

        ``budget`` may be a MacroBudget, a preset name or a mapping; None uses the space's budget.
        Budgets below the smallest network of the space raise ConfigError.
        """
        self.validate(arch)
        resolved = self.budget if budget is None else self._resolve_budget(budget)
        if resolved is None:
            return
        if budget is not None:
            self._check_feasible(resolved)
        problems = self.budget_violations(arch, resolved)
        if problems:
            raise BudgetExceeded(f"{self.name} architecture over budget ({resolved.describe()}): " + "; ".join(problems))

    # ------------------------------------------------------------------ genotype
    def blocks(self, arch: Architecture) -> list[BlockSpec]:
        """The genotype as BlockSpecs (shape-checked; use validate() for the full rules)."""
        genotype = arch.genotype
        if not isinstance(genotype, tuple) or not genotype:
            raise InvalidArchitecture(f"a {self.name} genotype is a non-empty list of blocks")
        specs = []
        for index, block in enumerate(genotype):
            if not isinstance(block, tuple) or not block or not isinstance(block[0], str):
                raise InvalidArchitecture(f"block {index} must be a list [type, in, out, stride, ...], got {block!r}")
            block_type = BLOCK_TYPES.get(block[0])
            if block_type is None or block[0] not in self.allowed_types:
                raise InvalidArchitecture(
                    f"block {index} has type {block[0]!r}, which is not in the {self.name} space "
                    f"(allowed: {', '.join(self.allowed_types)})"
                )
            if len(block) != block_type.arity + 1:
                fields_ = "in, out, stride, bottleneck, sub_layers" if block_type.has_bottleneck else "in, out, stride, sub_layers"
                raise InvalidArchitecture(
                    f"block {index} ({block[0]}) needs {block_type.arity} integers ({fields_}), got {len(block) - 1}"
                )
            for value in block[1:]:
                if not isinstance(value, int) or isinstance(value, bool):
                    raise InvalidArchitecture(f"block {index} ({block[0]}) has a non-integer argument {value!r}")
            if block_type.has_bottleneck:
                specs.append(BlockSpec(block[0], block[1], block[2], block[3], block[4], block[5]))
            else:
                specs.append(BlockSpec(block[0], block[1], block[2], block[3], None, block[4]))
        return specs

    @property
    def allowed_types(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.stem_types + self.body_types + self.head_types))

    def make(self, blocks: list[BlockSpec] | list[tuple] | tuple) -> Architecture:
        """A validated Architecture from BlockSpecs or genotype tuples."""
        genotype = tuple(b.as_tuple() if isinstance(b, BlockSpec) else tuple(b) for b in blocks)
        arch = Architecture(self.name, genotype)
        self.validate(arch)
        return arch

    def _arch(self, blocks: list[BlockSpec]) -> Architecture:
        return Architecture(self.name, tuple(b.as_tuple() for b in blocks))

    def validate(self, arch: Architecture) -> None:
        self.check_space(arch)
        blocks = self.blocks(arch)
        if len(blocks) < 2:
            raise InvalidArchitecture(f"a {self.name} network needs at least a stem and one more block")
        total = 1
        for index, block in enumerate(blocks):
            where = f"block {index} ({block.type})"
            role_types = self._role_types(index, len(blocks))
            if block.type not in role_types:
                role = "first (stem)" if index == 0 else ("last (head)" if index == len(blocks) - 1 and self.head_types else "middle")
                raise InvalidArchitecture(f"{where}: the {role} block must be one of {', '.join(role_types)}")
            if index == 0:
                if block.c_in != 3:
                    raise InvalidArchitecture(f"{where}: the stem takes the 3 image channels, got in={block.c_in}")
            elif block.c_in != blocks[index - 1].c_out:
                raise InvalidArchitecture(
                    f"{where}: input channels {block.c_in} must equal the previous block's output channels "
                    f"{blocks[index - 1].c_out}"
                )
            checks = [("out", block.c_out)] + ([("in", block.c_in)] if index else [])
            if block.bottleneck is not None:
                checks.append(("bottleneck", block.bottleneck))
            for label, value in checks:
                if value < CHANNEL_BASE or value % CHANNEL_BASE or value > MAX_CHANNELS:
                    raise InvalidArchitecture(
                        f"{where}: {label} channels must be a multiple of {CHANNEL_BASE} in "
                        f"[{CHANNEL_BASE}, {MAX_CHANNELS}], got {value}"
                    )
            if block.stride not in (1, 2):
                raise InvalidArchitecture(f"{where}: stride must be 1 or 2, got {block.stride}")
            if not 1 <= block.sub_layers <= MAX_SUB_LAYERS:
                raise InvalidArchitecture(f"{where}: sub_layers must be in [1, {MAX_SUB_LAYERS}], got {block.sub_layers}")
            total *= block.stride
        if self.exact_total_stride and total != self.total_stride:
            raise InvalidArchitecture(
                f"the strides multiply to {total}; a {self.name} backbone must downsample by exactly "
                f"{self.total_stride} (five stride-2 blocks) to emit C3-C5"
            )
        if total > self.total_stride:
            raise InvalidArchitecture(f"the strides multiply to {total}, more than the maximum {self.total_stride}")

    def _role_types(self, index: int, count: int) -> tuple[str, ...]:
        if index == 0:
            return self.stem_types
        if index == count - 1 and self.head_types:
            return self.head_types
        return self.body_types

    # ------------------------------------------------------------------ counts
    def count_params(self, arch: Architecture, num_classes: int = 10) -> int:
        """Trainable parameters of the built network (analytic, per block, nothing is built)."""
        blocks = self.blocks(arch)
        total = Cost()
        for block in blocks:
            total += BLOCK_TYPES[block.type].cost(block, 32)[0]
        return total.params + head_cost(blocks[-1].c_out, num_classes).params

    def count_flops(self, arch: Architecture, resolution: int | None = None, num_classes: int | None = None) -> int:
        """Multiply-adds of conv and linear layers for one image (Zen-NAS / NB201 convention).

        BN, ReLU, pooling, residual additions and the SE gating product are not counted
        (as in torch.utils.flop_counter). Defaults: the budget's resolution and classes.
        """
        if resolution is None:
            resolution = self.budget.resolution if self.budget is not None else self.default_resolution
        if num_classes is None:
            num_classes = self.budget.num_classes if self.budget is not None else 10
        blocks = self.blocks(arch)
        total = Cost()
        r = resolution
        for block in blocks:
            cost, r = BLOCK_TYPES[block.type].cost(block, r)
            total += cost
        return total.macs + head_cost(blocks[-1].c_out, num_classes).macs

    def count_layers(self, arch: Architecture) -> int:
        """The space's layer count (Zen-NAS: sum of sub_layers; MAE-DET: conv layers of the main path)."""
        return sum(BLOCK_TYPES[b.type].layers(b) for b in self.blocks(arch))

    @property
    def default_resolution(self) -> int:
        preset = self.presets.get(self.default_budget or "")
        return preset.resolution if preset is not None else 32

    @property
    def native_resolution(self) -> int:  # type: ignore[override]
        """The resolution budgets are stated at: the budget's, else the default preset's."""
        return self.budget.resolution if self.budget is not None else self.default_resolution

    # ------------------------------------------------------------------ build / encode
    def build(self, arch: Architecture, *, num_classes: int = 10) -> nn.Module:
        self.validate(arch)
        blocks = self.blocks(arch)
        modules = [BLOCK_TYPES[b.type].build(b) for b in blocks]
        return MacroNetwork(modules, [b.stride for b in blocks], blocks[-1].c_out, num_classes, self.feature_strides)

    def encode(self, arch: Architecture) -> str:
        self.validate(arch)
        return zen_notation.format_blocks(arch.genotype)

    def decode(self, text: str) -> Architecture:
        raw = zen_notation.parse(text)
        arity = {name: BLOCK_TYPES[name].arity for name in self.allowed_types}
        return self.make(zen_notation.check_blocks(raw, arity))

    # ------------------------------------------------------------------ sampling
    def smallest(self, budget: MacroBudget | None = None) -> Architecture:
        """The cheapest network of the sampling skeleton (all channels 8, one sub-layer, cheapest types)."""
        resolution = budget.resolution if budget else self.default_resolution
        blocks = self._skeleton(lambda stage: 1, lambda lo, hi: CHANNEL_BASE, lambda out: CHANNEL_BASE,
                                lambda: 1, lambda types: self._cheapest(types, resolution))
        return self._arch(blocks)

    def _cheapest(self, types: tuple[str, ...], resolution: int) -> str:
        probe = lambda name: BLOCK_TYPES[name].cost(BlockSpec(name, 8, 8, 1, 8, 1), resolution)[0]  # noqa: E731
        return min(types, key=lambda name: (probe(name).macs, probe(name).params))

    def _skeleton(self, n_blocks, channels, bottleneck, sub_layers, pick_type) -> list[BlockSpec]:
        """The sampling skeleton filled by the given choice functions."""
        stem_out = channels(*self.stem_channels)
        blocks = [BlockSpec(self.stem_type, 3, stem_out, self.stem_stride, None, 1)]
        last = stem_out
        for stage in self.stages:
            out = channels(stage.min_channels, stage.max_channels)
            for i in range(n_blocks(stage)):
                blocks.append(BlockSpec(pick_type(self.sample_types), last, out, stage.stride if i == 0 else 1,
                                        bottleneck(out), sub_layers()))
                last = out
        if self.head_type is not None:
            blocks.append(BlockSpec(self.head_type, last, self._head_out(channels), 1, None, 1))
        return blocks

    def _head_out(self, channels) -> int:
        return channels(*self.head_channels_range)

    @property
    def sample_types(self) -> tuple[str, ...]:
        """Body block types that sampling draws from."""
        return self.body_types

    def sample(self, rng: random.Random) -> Architecture:
        """A random network of the skeleton, shrunk until it meets the budget.

        Each stage gets 1..max_blocks blocks of a random body type, random channels
        (multiple of 8 in the stage range), bottleneck and 1..3 sub-layers. While the
        budget is broken, the most expensive block loses a sub-layer or shrinks its
        channels by 1.25x (then switches to the cheapest type); if the result still
        breaks the budget, sampling starts over.
        """
        for _ in range(50):
            blocks = self._skeleton(
                lambda stage: rng.randint(1, stage.max_blocks),
                lambda lo, hi: rng.randrange(lo, hi + 1, CHANNEL_BASE),
                lambda out: rng.randrange(CHANNEL_BASE, out + 1, CHANNEL_BASE),
                lambda: rng.randint(1, self.max_sample_sub_layers),
                lambda types: rng.choice(types),
            )
            fitted = self.fit_to_budget(blocks, rng)
            if fitted is not None:
                return fitted
        raise ConfigError(f"could not sample a {self.name} network within {self.budget.describe()}")  # type: ignore[union-attr]

    def fit_to_budget(self, blocks: list[BlockSpec], rng: random.Random) -> Architecture | None:
        """Shrink blocks step by step until the budget is met; None when they cannot shrink further."""
        blocks = list(blocks)
        for _ in range(2000):
            arch = self._arch(blocks)
            if self.budget is None or self.within_budget(arch):
                self.validate(arch)
                return arch
            if not self._shrink_step(blocks, rng):
                return None
        return None

    def _block_weight(self, blocks: list[BlockSpec], index: int) -> tuple[float, float, int]:
        budget = self.budget
        assert budget is not None
        r = budget.resolution
        for b in blocks[:index]:
            r = BLOCK_TYPES[b.type].cost(b, r)[1]
        cost = BLOCK_TYPES[blocks[index].type].cost(blocks[index], r)[0]
        return cost.params, cost.macs, blocks[index].sub_layers

    def _shrink_step(self, blocks: list[BlockSpec], rng: random.Random) -> bool:
        """Make the network a little cheaper in the violated resource; False when impossible."""
        arch = self._arch(blocks)
        budget = self.budget
        assert budget is not None
        over_layers = budget.layers is not None and self.count_layers(arch) > budget.layers
        over_params = budget.params is not None and self.count_params(arch, num_classes=budget.num_classes) > budget.params
        weights = [self._block_weight(blocks, i) for i in range(len(blocks))]
        if over_layers:
            key = lambda i: (blocks[i].sub_layers, rng.random())  # noqa: E731
        elif over_params:
            key = lambda i: (weights[i][0], rng.random())  # noqa: E731
        else:
            key = lambda i: (weights[i][1], rng.random())  # noqa: E731
        for index in sorted(range(len(blocks)), key=key, reverse=True):
            if self._shrink_block(blocks, index, only_depth=over_layers, rng=rng):
                return True
        return False

    def _shrink_block(self, blocks: list[BlockSpec], index: int, *, only_depth: bool, rng: random.Random) -> bool:
        block = blocks[index]
        if block.sub_layers > 1 and (only_depth or rng.random() < 0.5):
            blocks[index] = block.replace(sub_layers=block.sub_layers - 1)
            return True
        if only_depth:
            return False
        is_head = index == len(blocks) - 1 and self.head_type is not None
        can_shrink_out = not (is_head and self.fixed_head) and block.c_out > CHANNEL_BASE
        new_out = smart_round(block.c_out / 1.25) if can_shrink_out else block.c_out
        new_out = min(new_out, block.c_out - CHANNEL_BASE) if can_shrink_out else new_out
        new_btl = block.bottleneck
        if block.bottleneck is not None and block.bottleneck > CHANNEL_BASE:
            new_btl = max(CHANNEL_BASE, min(smart_round(block.bottleneck / 1.25), block.bottleneck - CHANNEL_BASE))
        if new_out != block.c_out or new_btl != block.bottleneck:
            self._set_block(blocks, index, block.replace(c_out=new_out, bottleneck=new_btl))
            return True
        if block.sub_layers > 1:
            blocks[index] = block.replace(sub_layers=block.sub_layers - 1)
            return True
        if block.bottleneck is not None:
            cheapest = self._cheapest(self.family_of(block.type), self.budget.resolution if self.budget else 32)
            if cheapest != block.type:
                blocks[index] = block.replace(type=cheapest)
                return True
        return False

    @staticmethod
    def _set_block(blocks: list[BlockSpec], index: int, block: BlockSpec) -> None:
        """Replace a block and keep the chain consistent (next block's input = its output)."""
        blocks[index] = block
        if index + 1 < len(blocks):
            blocks[index + 1] = blocks[index + 1].replace(c_in=block.c_out)

    # ------------------------------------------------------------------ mutation
    def family_of(self, block_type: str) -> tuple[str, ...]:
        """Block types a block of this type may become under mutation."""
        return self.body_types if block_type in self.body_types else (block_type,)

    @staticmethod
    def channel_choices(channels: int) -> list[int]:
        """Zen-NAS channel candidates: channels x factor, clamped to [8, 2048], rounded to 8."""
        values = {min(MAX_CHANNELS, smart_round(min(MAX_CHANNELS, max(CHANNEL_BASE, channels * f)))) for f in CHANNEL_FACTORS}
        return sorted(values)

    @staticmethod
    def sub_layer_choices(sub_layers: int) -> list[int]:
        """Zen-NAS sub-layer candidates: n-2 .. n+2, at least 1."""
        return sorted({sub_layers + d for d in SUB_LAYER_DELTAS if sub_layers + d >= 1})

    def mutate(self, arch: Architecture, rng: random.Random) -> Architecture:
        """The Zen-NAS random mutation, repeated until the child differs and meets the budget.

        One block is drawn uniformly; a conv block (stem/head) gets new output channels;
        a residual block gets a new type from its family, new output and bottleneck
        channels (x {2.5,...,1/2.5}, rounded to 8, clamped to [8, 2048]) and sub_layers
        +-2 (>= 1); the stride is kept and the next block's input follows the new output.
        Blocks with >= 6 sub-layers are split in two. If 100 tries miss the budget, the
        last child is shrunk to fit.
        """
        self.validate(arch)
        parent = self.blocks(arch)
        child = parent
        for _ in range(100):
            child = self._mutate_once(parent, rng)
            if child == parent:
                continue
            candidate = self._arch(child)
            if self.budget is None or self.within_budget(candidate):
                self.validate(candidate)
                return candidate
        fitted = self.fit_to_budget(child, rng)
        if fitted is None or fitted.genotype == arch.genotype:
            return self.sample(rng)
        return fitted

    def replace_block(self, arch: Architecture, index: int, block: BlockSpec) -> Architecture:
        """``arch`` with block ``index`` replaced, the chain kept as the Zen-NAS mutation keeps it
        (the next block's input = the new output; a block with >= 6 sub-layers split in two);
        validated, budget not checked. Used to apply an LLM's structured edit."""
        blocks = self.blocks(arch)
        if not 0 <= index < len(blocks):
            raise InvalidArchitecture(f"block index {index} is out of range (the network has {len(blocks)} blocks)")
        self._set_block(blocks, index, block)
        child = self._arch(self._split(blocks))
        self.validate(child)
        return child

    def _mutate_once(self, parent: list[BlockSpec], rng: random.Random) -> list[BlockSpec]:
        blocks = list(parent)
        index = rng.randrange(len(blocks))
        block = blocks[index]
        if block.bottleneck is None:
            is_head = index == len(blocks) - 1 and bool(self.head_types)
            if is_head and self.fixed_head:
                return blocks
            new = block.replace(c_out=rng.choice(self.channel_choices(block.c_out)))
        else:
            new = block.replace(
                type=rng.choice(self.family_of(block.type)),
                c_out=rng.choice(self.channel_choices(block.c_out)),
                bottleneck=rng.choice(self.channel_choices(block.bottleneck)),
                sub_layers=rng.choice(self.sub_layer_choices(block.sub_layers)),
            )
        self._set_block(blocks, index, new)
        return self._split(blocks)

    @staticmethod
    def _split(blocks: list[BlockSpec]) -> list[BlockSpec]:
        """Split residual blocks with >= 6 sub-layers into two (depth kept; Zen-NAS split)."""
        result: list[BlockSpec] = []
        for block in blocks:
            if block.bottleneck is not None and block.sub_layers >= SPLIT_SUB_LAYERS:
                first = block.sub_layers // 2
                result.append(block.replace(sub_layers=first))
                result.append(block.replace(c_in=block.c_out, stride=1, sub_layers=block.sub_layers - first))
            else:
                result.append(block)
        return result

    # ------------------------------------------------------------------ description
    text: ClassVar[str] = ""
    encoding_text: ClassVar[str] = ""

    example_thinking: ClassVar[str] = (
        "Scaled one block's output and bottleneck channels and its sub_layers by the Zen-NAS factors "
        "and set the next block's input to the new output: the chain stays valid and within the budget."
    )

    def describe(self) -> SpaceDescription:
        budget = self.budget.describe() if self.budget is not None else "no budget"
        return SpaceDescription(
            name=self.name,
            text=f"{self.text}\nBudget: {budget}. Layers are counted as: {self.layer_rule}. "
            "An architecture over the budget is rejected without a score.",
            code=self.code_level(),
            encoding=self.encoding_text + "\n" + COMMON_RULES.format(total_stride=self.total_stride),
            mutation_rules=self.mutation_text,
            example=self.example_text,
            example_thinking=self.example_thinking,
        )

    def example_architecture(self) -> Architecture:
        """The published example network, shrunk (deterministically) when it breaks this space's budget."""
        arch = self.decode(self.example_text)
        if self.budget is None or self.within_budget(arch):
            return arch
        fitted = self.fit_to_budget(self.blocks(arch), random.Random(0))
        return fitted if fitted is not None else self.sample(random.Random(0))

    #: most middle blocks the encoding pattern admits (grammar-constrained replies)
    max_pattern_blocks: ClassVar[int] = 40

    @property
    def encoding_pattern(self) -> str:
        """A regex of the canonical Zen-NAS strings of this space, for grammar-constrained replies.

        It encodes the block types of each role (stem with in=3, middle, head), the
        arities, channels as multiples of 8 in [8, 2048], strides 1/2 and sub_layers
        1..64. The chain rule (in = previous out) and the total stride cannot be written
        as a regular expression; decode() still checks them. Only plain groups are used:
        llama.cpp's schema-to-grammar converter rejects ``(?:...)``.
        """
        channels = "(" + "|".join(str(c) for c in range(MAX_CHANNELS, CHANNEL_BASE - 1, -CHANNEL_BASE)) + ")"
        sub_layers = "([1-9]|[1-5][0-9]|6[0-4])"

        def block(types: tuple[str, ...], *, stem: bool = False) -> str:
            alternatives = []
            for arity in sorted({BLOCK_TYPES[t].arity for t in types}):
                names = "|".join(t for t in types if BLOCK_TYPES[t].arity == arity)
                args = ["3" if stem else channels, channels, "[12]"] + ([channels] if arity == 5 else []) + [sub_layers]
                alternatives.append(f"({names})" + r"\(" + ",".join(args) + r"\)")
            return "(" + "|".join(alternatives) + ")"

        if self.head_types:
            middle = f"{block(self.body_types)}{{0,{self.max_pattern_blocks}}}{block(self.head_types)}"
        else:
            middle = f"{block(self.body_types)}{{1,{self.max_pattern_blocks}}}"
        return "^" + block(self.stem_types, stem=True) + middle + "$"

    layer_rule: ClassVar[str] = "the sum of sub_layers over all blocks (Zen-NAS definition)"
    mutation_text: ClassVar[str] = ""

    def code_level(self) -> str:
        """Real source of the blocks this space uses (taken from the modules)."""
        from . import macro_blocks as mb

        return source_of(mb.Conv, mb.Residual, *self.code_objects(mb))

    def code_objects(self, mb: Any) -> tuple:
        return (mb.plan_conv_bn_relu, mb.ConvBNAct, mb.ResidualUnit, mb.MacroNetwork)


COMMON_RULES = """\
Rules: every channel count (in, out, bottleneck) is a multiple of 8 between 8 and 2048
(only the stem's input is 3); stride is 1 or 2 and the strides multiply to at most
{total_stride}; sub_layers >= 1; each block's input channels equal the previous block's
output channels. Write the blocks one after another with no separators."""
