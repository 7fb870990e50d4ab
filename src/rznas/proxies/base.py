"""Proxy interface, the proxy registry, and the shared scoring context.

Several gradient proxies need the same forward/backward pass over the same batch
(grad_norm, snip, fisher, jacob_cov, naswot, the first batch of zico). The reference
code deep-copies the model and repeats that pass once per proxy; here one
:class:`ScoringContext` per architecture makes one working copy and runs each pass
once, computing only the statistics the requested proxies declared they need.
Scoring never touches the caller's model: every pass runs on a copy.
"""
from __future__ import annotations

import copy
import math
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data.probe import ProbeBatch
from ..errors import ProxyError
from ..registry import Registry

# Statistics a gradient pass can collect; proxies list the ones they need.
GRADS = "grads"  # weight gradients of conv/linear layers under the CE loss
FISHER = "fisher"  # per-layer Fisher information of conv/linear outputs
RELU_CODES = "relu_codes"  # NASWOT binary-code kernel of ReLU inputs
INPUT_JACOBIAN = "input_jacobian"  # d sum(logits) / d input, per sample
GRAPH = "graph"  # keep the weight gradients' graph (create_graph) for second-order proxies

PRUNABLE = (nn.Conv2d, nn.Linear)


def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Conv and linear layers: the layers the zero-cost literature scores."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, PRUNABLE)]


@dataclass
class GradientPass:
    """What one forward + backward over one mini-batch produced."""

    loss: float
    weights: dict[str, torch.Tensor] = field(default_factory=dict)
    grads: dict[str, torch.Tensor] = field(default_factory=dict)
    fisher: dict[str, torch.Tensor] = field(default_factory=dict)
    relu_kernel: torch.Tensor | None = None
    input_jacobian: torch.Tensor | None = None
    #: weight gradients still attached to their graph (only when GRAPH was needed)
    graph_grads: dict[str, torch.Tensor | None] = field(default_factory=dict)


class Proxy(ABC):
    """A training-free score of an untrained network; exposed so that higher is better."""

    name: ClassVar[str]
    needs_data: ClassVar[bool] = True  # real labelled images make a difference
    #: gradient-pass statistics per mini-batch index, e.g. {0: {GRADS}}; empty = no shared pass
    requirements: ClassVar[dict[int, frozenset[str]]] = {}
    #: one-line statement of the sign convention (documented in `rznas list proxies`)
    convention: ClassVar[str] = ""
    #: unit of the score as printed ("" = a unitless score); e.g. "M" (millions of parameters)
    unit: ClassVar[str] = ""
    #: whether the score depends on the probe's image size (printed as "@32px")
    at_probe_resolution: ClassVar[bool] = False

    @abstractmethod
    def compute(self, ctx: "ScoringContext") -> float:
        """Raw score from the context; must not modify ``ctx.original``."""

    def score(self, model: nn.Module, batch: ProbeBatch, *, seed: int = 0) -> float:
        """Score one model on one probe batch (convenience for a single proxy)."""
        return score_model(model, batch, [self], seed=seed)[self.name].value


def check_proxy_plugin(name: str, obj: object) -> None:
    """A plug-in proxy is a Proxy subclass whose ``name`` is its entry point's name."""
    if not (isinstance(obj, type) and issubclass(obj, Proxy)):
        raise TypeError(f"{obj!r} does not subclass rznas.proxies.Proxy")
    if getattr(obj, "name", None) != name:
        raise ValueError(f"its name attribute is {getattr(obj, 'name', None)!r}; it must equal the entry point name {name!r}")


#: built-in proxies register by decorator; installed packages add theirs through the entry-point
#: group ``rznas.proxies`` (``name = "package.module:ProxyClass"``), loaded on first lookup
PROXIES: Registry[type[Proxy]] = Registry("proxy", entry_points="rznas.proxies", check=check_proxy_plugin)


def get_proxy(name: str) -> Proxy:
    """Instantiate a registered proxy by name."""
    return PROXIES.get(name)()


class ScoringContext:
    """One architecture's scoring session: a pristine copy, a working copy, cached passes."""

    def __init__(self, model: nn.Module, batch: ProbeBatch, proxies: Sequence[Proxy], *, seed: int = 0):
        self.original = model
        self.batch = batch
        self.seed = seed
        self.device = batch.inputs.device
        self.needs: dict[int, set[str]] = {}
        for proxy in proxies:
            for index, stats in proxy.requirements.items():
                self.needs.setdefault(index, set()).update(stats)
        self._working: nn.Module | None = None
        self._passes: dict[int, GradientPass] = {}
        self._shared: dict[str, object] = {}

    def copy_model(self) -> nn.Module:
        """A private deep copy of the model, in train mode, on the batch's device."""
        model = copy.deepcopy(self.original).to(self.device)
        model.train()
        return model

    @property
    def working(self) -> nn.Module:
        """The copy shared by all gradient passes (weights are never changed on it)."""
        if self._working is None:
            self._working = self.copy_model()
        return self._working

    def generator(self, salt: int = 0) -> torch.Generator:
        """A CPU generator seeded from the context seed, for proxies that draw noise."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + salt)

    def shared(self, key: str, compute: Callable[[], object]) -> object:
        """``compute()`` run once per architecture and cached under ``key``, for proxies that
        read several numbers off one pass of their own (e.g. the four AZ-NAS components)."""
        if key not in self._shared:
            self._shared[key] = compute()
        return self._shared[key]

    def gradient_pass(self, index: int = 0) -> GradientPass:
        """Run (once) the forward/backward pass over mini-batch ``index``."""
        if index not in self._passes:
            self._passes[index] = self._run_pass(index, self.needs.get(index, {GRADS}))
        return self._passes[index]

    def _run_pass(self, index: int, needs: set[str]) -> GradientPass:
        model = self.working
        inputs, targets = self.batch.chunk(index)
        inputs = inputs.clone()
        want_backward = bool(needs & {GRADS, FISHER, INPUT_JACOBIAN})
        if INPUT_JACOBIAN in needs:
            inputs.requires_grad_(True)
        layers = prunable_layers(model)
        hooks: list[torch.utils.hooks.RemovableHandle] = []
        fisher_acc: dict[str, torch.Tensor] = {}
        fisher_active = [True]  # tensor hooks outlive module hooks: only the loss backward counts
        relu_kernel: list[torch.Tensor] = []

        if FISHER in needs:
            for name, layer in layers:
                hooks.append(layer.register_forward_hook(_fisher_hook(name, fisher_acc, fisher_active)))
        if RELU_CODES in needs:
            n = inputs.shape[0]
            relu_kernel.append(torch.zeros(n, n, dtype=torch.float64, device=self.device))
            for module in model.modules():
                if isinstance(module, nn.ReLU):
                    hooks.append(module.register_forward_hook(_relu_code_hook(relu_kernel)))
        try:
            model.zero_grad(set_to_none=True)
            with torch.set_grad_enabled(want_backward):
                logits = model(inputs)
                loss = F.cross_entropy(logits, targets)
                graph_grads: tuple[torch.Tensor | None, ...] = ()
                if GRAPH in needs:
                    # one differentiable backward serves the first-order statistics and, later,
                    # a Hessian-vector product (grasp) without a second forward pass
                    weights = [layer.weight for _, layer in layers]
                    graph_grads = torch.autograd.grad(loss, weights, create_graph=True, allow_unused=True)
                elif GRADS in needs or FISHER in needs:
                    loss.backward(retain_graph=INPUT_JACOBIAN in needs)
            fisher_active[0] = False
            for handle in hooks:
                handle.remove()
            hooks.clear()
            result = GradientPass(loss=float(loss.detach()))
            if GRAPH in needs:
                result.graph_grads = {name: grad for (name, _), grad in zip(layers, graph_grads)}
            if GRADS in needs:
                for name, layer in layers:
                    result.weights[name] = layer.weight.detach()
                    grad = result.graph_grads[name] if GRAPH in needs else layer.weight.grad
                    result.grads[name] = (
                        grad.detach().clone() if grad is not None else torch.zeros_like(layer.weight)
                    )
            result.fisher = fisher_acc
            if RELU_CODES in needs:
                result.relu_kernel = relu_kernel[0]
            if INPUT_JACOBIAN in needs:
                (jacobian,) = torch.autograd.grad(
                    logits, inputs, torch.ones_like(logits), retain_graph=GRAPH in needs
                )
                result.input_jacobian = jacobian.detach().reshape(jacobian.shape[0], -1)
            return result
        finally:
            for handle in hooks:
                handle.remove()
            model.zero_grad(set_to_none=True)


def _fisher_hook(name: str, acc: dict[str, torch.Tensor], active: list[bool]) -> Callable:
    """Forward hook: on backward, accumulate 0.5 * mean_n (sum_hw act * grad)^2 per channel."""

    def forward_hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if not output.requires_grad:
            return
        activation = output.detach()

        def grad_hook(grad: torch.Tensor) -> None:
            if not active[0]:
                return
            product = activation * grad.detach()
            if product.ndim > 2:
                product = product.sum(dim=tuple(range(2, product.ndim)))
            value = product.pow(2).mean(0).mul(0.5)
            acc[name] = acc[name] + value if name in acc else value

        output.register_hook(grad_hook)

    return forward_hook


def _relu_code_hook(kernel: list[torch.Tensor]) -> Callable:
    """Forward hook: add the agreement count of binary ReLU codes to the NASWOT kernel."""

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        # agreements = c c^T + (1-c)(1-c)^T = 2 c c^T - s_i - s_j + n, with s = row sums:
        # one matmul instead of two; float32 is exact for these integer counts (< 2^24)
        codes = (inputs[0].detach().reshape(inputs[0].shape[0], -1) > 0).to(torch.float32)
        ones_per_sample = codes.sum(dim=1, dtype=torch.float64)
        agree = 2.0 * (codes @ codes.t()).to(torch.float64)
        agree += codes.shape[1] - ones_per_sample[:, None] - ones_per_sample[None, :]
        kernel[0] += agree

    return hook


@dataclass(frozen=True)
class ProxyResult:
    """One proxy's outcome on one architecture: a finite value, or an error message."""

    proxy: str
    value: float | None
    seconds: float
    error: str | None = None
    #: the error came from the machine (out of memory, a CUDA fault), not the architecture
    transient: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


#: words in a RuntimeError that mark a failure of the machine rather than of the network
_ENVIRONMENT_MARKERS = ("out of memory", "can't allocate memory", "cuda error", "cudnn_status", "cublas_status")


def is_environment_failure(exc: BaseException) -> bool:
    """True for an error another machine or a later try may not repeat (out of memory, CUDA
    faults): a score that failed this way must not be remembered as the architecture's."""
    if isinstance(exc, (MemoryError, torch.cuda.OutOfMemoryError)):
        return True
    return isinstance(exc, RuntimeError) and any(marker in str(exc).lower() for marker in _ENVIRONMENT_MARKERS)


def evaluate(
    model: nn.Module, batch: ProbeBatch, proxies: Iterable[Proxy], *, seed: int = 0
) -> dict[str, ProxyResult]:
    """Score ``model`` with every proxy, sharing passes; failures become error results."""
    proxies = list(proxies)
    ctx = ScoringContext(model, batch, proxies, seed=seed)
    results: dict[str, ProxyResult] = {}
    for proxy in proxies:
        start = time.perf_counter()
        try:
            value = _checked(proxy, proxy.compute(ctx))
        except ProxyError as exc:
            results[proxy.name] = ProxyResult(proxy.name, None, time.perf_counter() - start, str(exc))
            continue
        except (RuntimeError, MemoryError) as exc:
            if not is_environment_failure(exc):
                raise
            message = f"{proxy.name}: {type(exc).__name__} ({exc})"
            results[proxy.name] = ProxyResult(proxy.name, None, time.perf_counter() - start, message, transient=True)
            continue
        results[proxy.name] = ProxyResult(proxy.name, value, time.perf_counter() - start)
    return results


def score_model(
    model: nn.Module, batch: ProbeBatch, proxies: Iterable[Proxy], *, seed: int = 0
) -> dict[str, ProxyResult]:
    """Like :func:`evaluate`, but raises ProxyError on the first failed proxy."""
    results = evaluate(model, batch, proxies, seed=seed)
    for result in results.values():
        if not result.ok:
            raise ProxyError(result.error)
    return results


def _checked(proxy: Proxy, value: float | torch.Tensor) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ProxyError(f"{proxy.name} produced a non-finite score ({value})")
    return value


def finite_log(value: float, what: str) -> float:
    """log(value) for a positive value, else a ProxyError that says why."""
    if not value > 0 or not math.isfinite(value):
        raise ProxyError(f"{what} must be positive and finite to take its log, got {value}")
    return math.log(value)
