"""Export an architecture as a standalone PyTorch file (+ state_dict) and as ONNX.

The standalone file is generated from source text: the network entry point of the
space and, transitively, every class, function and literal constant of rznas it
refers to (found by reading their source with :mod:`ast`), plus the imports of the
third-party modules they use. The architecture is baked in as a literal. Nothing is
pickled, and the file imports without rznas installed.
"""
from __future__ import annotations

import ast
import dataclasses
import importlib.util
import inspect
import sys
import textwrap
import types
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from . import __version__
from .arch import Architecture
from .errors import ConfigError
from .registry import Registry
from .spaces.base import SearchSpace
from .spaces.macro_blocks import BLOCK_TYPES, MacroNetwork, build_plan


@dataclass(frozen=True)
class ExportEntry:
    """How the standalone file rebuilds the network: ``factory(*args, **kwargs)`` with literal arguments."""

    factory: Callable[..., nn.Module]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)


EntryMaker = Callable[[SearchSpace, Architecture, int], ExportEntry]
#: space name -> function giving the export entry (spaces may instead define ``export_entry``)
EXPORT_ENTRIES: Registry[EntryMaker] = Registry("export entry")


@EXPORT_ENTRIES.register("darts")
def _darts_entry(space: SearchSpace, arch: Architecture, num_classes: int) -> ExportEntry:
    from .spaces.darts import NetworkCIFAR

    return ExportEntry(NetworkCIFAR, (arch.genotype,), space.network_kwargs(num_classes=num_classes))  # type: ignore[attr-defined]


@EXPORT_ENTRIES.register("nb201")
def _nb201_entry(space: SearchSpace, arch: Architecture, num_classes: int) -> ExportEntry:
    from .spaces.nb201 import NB201Network

    return ExportEntry(NB201Network, (arch.genotype, num_classes, space.channels, space.cells_per_stage))  # type: ignore[attr-defined]


def build_macro_network(
    plans: tuple, strides: tuple[int, ...], last_channels: int, num_classes: int, feature_strides: tuple[int, ...]
) -> nn.Module:
    """A macro-space network from its block plans (the form a standalone file rebuilds it from)."""
    return MacroNetwork([build_plan(plan) for plan in plans], list(strides), last_channels, num_classes, feature_strides)


def _macro_entry(space: SearchSpace, arch: Architecture, num_classes: int) -> ExportEntry:
    blocks = space.blocks(arch)  # type: ignore[attr-defined]
    plans = tuple(BLOCK_TYPES[b.type].plan(b) for b in blocks)
    strides = tuple(b.stride for b in blocks)
    feature_strides = tuple(space.feature_strides)  # type: ignore[attr-defined]
    return ExportEntry(build_macro_network, (plans, strides, blocks[-1].c_out, num_classes, feature_strides))


def export_entry(space: SearchSpace, arch: Architecture, num_classes: int) -> ExportEntry:
    """The space's export entry: its own ``export_entry`` method, else the EXPORT_ENTRIES registry."""
    space.validate(arch)
    method = getattr(space, "export_entry", None)
    if method is not None:
        return method(arch, num_classes=num_classes)
    if space.name not in EXPORT_ENTRIES:
        from .spaces.macro_space import MacroSpace

        if isinstance(space, MacroSpace):
            return _macro_entry(space, arch, num_classes)
        raise ConfigError(
            f"space {space.name!r} has no standalone PyTorch export yet (no export_entry); ONNX export still works"
        )
    return EXPORT_ENTRIES.get(space.name)(space, arch, num_classes)


# --------------------------------------------------------------------------- source closure


def _is_own(obj: Any) -> bool:
    module = getattr(obj, "__module__", None) or ""
    return module == "rznas" or module.startswith("rznas.")


def _global_names(tree: ast.AST) -> list[str]:
    """Names loaded in ``tree``, skipping annotations (never evaluated under postponed annotations)."""
    names: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            names.append(node.id)
        for name, value in ast.iter_fields(node):
            if name in ("annotation", "returns"):
                continue
            if isinstance(value, ast.AST):
                visit(value)
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, ast.AST):
                        visit(item)

    visit(tree)
    return list(dict.fromkeys(names))


class _Closure:
    """Collects definitions (in dependency order) and imports needed by some objects."""

    def __init__(self) -> None:
        self.imports: dict[str, None] = {"import torch": None}
        self.blocks: list[str] = []
        self.defined: dict[str, Any] = {}
        self._visiting: set[int] = set()

    def _import_line(self, name: str, value: Any) -> str:
        if isinstance(value, types.ModuleType):
            full = value.__name__
            if full == name:
                return f"import {full}"
            parent, _, last = full.rpartition(".")
            if last == name and parent:
                return f"from {parent} import {name}"
            return f"import {full} as {name}"
        module, qualname = value.__module__, value.__qualname__
        return f"from {module} import {qualname}" + ("" if qualname == name else f" as {name}")

    def _bind(self, name: str, value: Any, where: str) -> None:
        if name in self.defined:
            if self.defined[name] is not value and self.defined[name] != value:
                raise ConfigError(f"cannot export: the name {name!r} means different things in {where}")
            return
        if isinstance(value, types.ModuleType):
            if _is_own(value):
                raise ConfigError(f"cannot export: {where} uses the rznas module {value.__name__} as a whole")
            self.imports[self._import_line(name, value)] = None
            self.defined[name] = value
        elif isinstance(value, (type, types.FunctionType)):
            if _is_own(value):
                self.add(value)
                if value.__name__ != name:
                    self.blocks.append(f"{name} = {value.__name__}")
            else:
                self.imports[self._import_line(name, value)] = None
            self.defined[name] = value
        else:
            self.blocks.append(f"{name} = {self.render(value, where)}")
            self.defined[name] = value

    def add(self, obj: type | types.FunctionType) -> None:
        """Add ``obj``'s source after everything it refers to."""
        if obj.__name__ in self.defined or id(obj) in self._visiting:
            return
        self._visiting.add(id(obj))
        try:
            source = textwrap.dedent(inspect.getsource(obj))
        except (OSError, TypeError) as exc:
            raise ConfigError(f"cannot export: no source for {obj.__qualname__}: {exc}") from None
        module_globals = vars(sys.modules[obj.__module__])
        for name in _global_names(ast.parse(source)):
            if name == obj.__name__ or name not in module_globals:
                continue  # self-reference, local variable or builtin
            self._bind(name, module_globals[name], f"{obj.__module__}.{obj.__qualname__}")
        self.blocks.append(source.rstrip())
        self.defined[obj.__name__] = obj

    def render(self, value: Any, where: str) -> str:
        """Python literal text of ``value`` (dataclass instances become constructor calls)."""
        if value is None or isinstance(value, (bool, int, str)):
            return repr(value)
        if isinstance(value, float):
            if value != value or value in (float("inf"), float("-inf")):
                return f"float({str(value)!r})"
            return repr(value)
        if isinstance(value, tuple):
            items = [self.render(v, where) for v in value]
            return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
        if isinstance(value, list):
            return "[" + ", ".join(self.render(v, where) for v in value) + "]"
        if isinstance(value, dict):
            return "{" + ", ".join(f"{self.render(k, where)}: {self.render(v, where)}" for k, v in value.items()) + "}"
        if isinstance(value, (frozenset, set)):
            return f"{type(value).__name__}([" + ", ".join(self.render(v, where) for v in sorted(value, key=repr)) + "])"
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            cls = type(value)
            self._bind(cls.__name__, cls, where)
            fields = [f for f in dataclasses.fields(value) if f.init]
            return f"{cls.__name__}(" + ", ".join(f"{f.name}={self.render(getattr(value, f.name), where)}" for f in fields) + ")"
        raise ConfigError(
            f"cannot export: {where} refers to a {type(value).__name__} value, which has no literal form"
        )


def standalone_source(space: SearchSpace, arch: Architecture, *, num_classes: int = 10) -> str:
    """Text of a Python module that rebuilds ``arch``'s network with torch alone."""
    entry = export_entry(space, arch, num_classes)
    closure = _Closure()
    closure._bind(entry.factory.__name__, entry.factory, "the export entry")
    call_args = [closure.render(a, "the architecture") for a in entry.args]
    call_args += [f"{k}={closure.render(v, 'the architecture')}" for k, v in entry.kwargs.items()]
    encoding = space.encode(arch)
    header = textwrap.dedent(
        f'''\
        """Standalone {space.name} network exported by rznas {__version__} (architecture id {arch.id}).

        Needs only PyTorch. ``build_model()`` returns a freshly initialised network;
        ``load_model(path)`` also loads a state_dict saved beside this file.
        Architecture: {encoding}
        """
        '''
    )
    body = "\n\n\n".join(closure.blocks)
    footer = textwrap.dedent(
        f'''\
        ARCHITECTURE = {closure.render(arch.to_dict(), "the architecture")}
        NUM_CLASSES = {num_classes}


        def build_model():
            """The network with the architecture baked in (fresh weights)."""
            return {entry.factory.__name__}({", ".join(call_args)})


        def load_model(weights=None, map_location="cpu"):
            """The network in eval mode, with the state_dict at ``weights`` when given."""
            model = build_model()
            if weights is not None:
                model.load_state_dict(torch.load(weights, map_location=map_location, weights_only=True))
            return model.eval()
        '''
    )
    text = (
        header
        + "from __future__ import annotations\n\n"
        + "\n".join(sorted(closure.imports))
        + "\n\n\n"
        + body
        + "\n\n\n"
        + footer
    )
    ast.parse(text)  # the generated file must at least be valid Python
    return text


def load_standalone(path: str | Path) -> types.ModuleType:
    """Import a generated standalone file (our own generated code) as a fresh module."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(f"rznas_export_{abs(hash(str(path)))}", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses in the file look their module up while executing
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[spec.name]
        raise
    return module


def export_pytorch(
    space: SearchSpace,
    arch: Architecture,
    out_dir: str | Path,
    *,
    num_classes: int = 10,
    model: nn.Module | None = None,
    stem: str = "model",
    check_resolution: int | None = 32,
) -> tuple[Path, Path]:
    """Write ``<stem>.py`` (standalone module) and ``<stem>.pt`` (state_dict); check they agree."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if model is None:
        model = space.build(arch, num_classes=num_classes)
    py_path, pt_path = out / f"{stem}.py", out / f"{stem}.pt"
    py_path.write_text(standalone_source(space, arch, num_classes=num_classes))
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save(state, pt_path)
    if check_resolution is not None:
        rebuilt = load_standalone(py_path).load_model(str(pt_path))
        x = torch.randn(2, 3, check_resolution, check_resolution, generator=torch.Generator().manual_seed(0))
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                expected = model.cpu()(x) if next(model.parameters()).device.type != "cpu" else model(x)
                got = rebuilt(x)
        finally:
            model.train(was_training)
        if not torch.allclose(expected, got, atol=1e-5, rtol=1e-4):
            raise ConfigError(f"the exported {py_path} does not reproduce the model's outputs")
    return py_path, pt_path


def _require_onnx() -> None:
    missing = [name for name in ("onnx",) if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(
            "ONNX export needs the 'onnx' package: pip install 'rznas[onnx]' (or pip install onnx onnxruntime)"
        )


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    resolution: int = 32,
    opset: int = 18,
    dynamic_batch: bool = True,
    exporter: str = "auto",
) -> Path:
    """Write ``model`` (eval mode, logits only) as ONNX with input 'input' and output 'logits'.

    ``exporter``: "dynamo" (torch.export based; needs onnxscript), "torchscript" (the
    legacy exporter; needs only onnx) or "auto" (dynamo when onnxscript is installed).
    """
    _require_onnx()
    if exporter == "auto":
        exporter = "dynamo" if importlib.util.find_spec("onnxscript") is not None else "torchscript"
    if exporter not in ("dynamo", "torchscript"):
        raise ConfigError(f"unknown ONNX exporter {exporter!r}; use auto, dynamo or torchscript")
    if exporter == "dynamo" and importlib.util.find_spec("onnxscript") is None:
        raise ConfigError("the dynamo ONNX exporter needs onnxscript: pip install 'rznas[onnx]'")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.cpu().eval()
    dummy = torch.zeros(1, 3, resolution, resolution)
    common = {"input_names": ["input"], "output_names": ["logits"], "opset_version": opset}
    try:
        if exporter == "dynamo":
            shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic_batch else None
            torch.onnx.export(model, (dummy,), str(path), dynamic_shapes=shapes, dynamo=True, verbose=False, **common)
        else:
            axes = {"input": {0: "batch"}, "logits": {0: "batch"}} if dynamic_batch else None
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                torch.onnx.export(model, (dummy,), str(path), dynamic_axes=axes, dynamo=False, **common)
    except Exception as exc:  # the exporters raise many types; give one clear error
        raise ConfigError(f"ONNX export ({exporter}) failed: {exc}") from exc
    import onnx

    onnx.checker.check_model(onnx.load(str(path)))
    return path


def run_onnx(path: str | Path, inputs: torch.Tensor) -> torch.Tensor:
    """Run an exported ONNX file with onnxruntime on CPU (for checks)."""
    if importlib.util.find_spec("onnxruntime") is None:
        raise ConfigError("running ONNX needs onnxruntime: pip install 'rznas[onnx]'")
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (output,) = session.run(["logits"], {"input": inputs.detach().cpu().numpy()})
    return torch.from_numpy(output)
