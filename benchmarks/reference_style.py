"""Straightforward reference-style proxies, written independently of rznas.proxies.

This mirrors how the common zero-cost code (zero-cost-nas, NASLib) computes each
proxy: a fresh deep copy of the model per proxy, one proxy at a time, each doing
its own forward/backward passes. It serves two purposes in benchmarks/proxy_speed.py:
a speed baseline, and an independent check that rznas computes the same values.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LAYERS = (nn.Conv2d, nn.Linear)


def _fresh(model: nn.Module) -> nn.Module:
    net = copy.deepcopy(model)
    net.train()
    net.zero_grad()
    return net


def _layers(net: nn.Module) -> list[nn.Module]:
    return [m for m in net.modules() if isinstance(m, LAYERS)]


def grad_norm(model, inputs, targets):
    net = _fresh(model)
    F.cross_entropy(net(inputs), targets).backward()
    return sum(float(m.weight.grad.norm()) for m in _layers(net) if m.weight.grad is not None)


def snip(model, inputs, targets):
    net = _fresh(model)
    F.cross_entropy(net(inputs), targets).backward()
    return sum(float((m.weight.grad * m.weight.detach()).abs().sum()) for m in _layers(net) if m.weight.grad is not None)


def fisher(model, inputs, targets):
    net = _fresh(model)
    saved = {}

    def keep(module, _inputs, output):
        output.retain_grad()
        saved[module] = output

    handles = [m.register_forward_hook(keep) for m in _layers(net)]
    F.cross_entropy(net(inputs), targets).backward()
    for h in handles:
        h.remove()
    total = 0.0
    for out in saved.values():
        if out.grad is None:
            continue
        prod = out.detach() * out.grad
        if prod.dim() > 2:
            prod = prod.sum(dim=(2, 3))
        total += float(prod.pow(2).mean(0).mul(0.5).sum())
    return total


def jacob_cov(model, inputs, targets):
    net = _fresh(model)
    x = inputs.clone().requires_grad_(True)
    y = net(x)
    y.backward(torch.ones_like(y))
    jac = x.grad.reshape(x.shape[0], -1).double().numpy()
    eig = np.linalg.eigvalsh(np.corrcoef(jac))
    return float(-np.sum(np.log(eig + 1e-5) + 1.0 / (eig + 1e-5)))


def naswot(model, inputs, targets):
    net = _fresh(model)
    n = inputs.shape[0]
    kernel = np.zeros((n, n))

    def count(module, inp, out):
        codes = (inp[0].detach().reshape(n, -1) > 0).double()
        kernel[:] += (codes @ codes.t() + (1 - codes) @ (1 - codes).t()).numpy()

    handles = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, nn.ReLU)]
    with torch.no_grad():
        net(inputs)
    for h in handles:
        h.remove()
    return float(np.linalg.slogdet(kernel)[1])


def zico(model, batches):
    net = _fresh(model)
    grads: dict[int, list[np.ndarray]] = {}
    for inputs, targets in batches:
        net.zero_grad()
        F.cross_entropy(net(inputs), targets).backward()
        for i, m in enumerate(_layers(net)):
            if m.weight.grad is not None:
                grads.setdefault(i, []).append(m.weight.grad.reshape(-1).double().numpy().copy())
    total = 0.0
    for values in grads.values():
        g = np.stack(values)
        std = g.std(axis=0)
        nz = std != 0
        s = np.sum(np.abs(g).mean(axis=0)[nz] / std[nz])
        if s != 0:
            total += math.log(s)
    return total


def synflow(model, inputs, targets):
    net = copy.deepcopy(model)
    for name, module in list(net.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.BatchNorm2d):
                setattr(module, child_name, nn.Identity())
    net = net.double().train()
    with torch.no_grad():
        for p in net.state_dict().values():
            p.abs_()
    net.zero_grad()
    out = net(torch.ones((1,) + tuple(inputs.shape[1:]), dtype=torch.float64))
    torch.sum(out).backward()
    total = sum(float((m.weight.detach() * m.weight.grad).abs().sum()) for m in _layers(net) if m.weight.grad is not None)
    return math.log(total)


def grasp(model, inputs, targets):
    net = _fresh(model)
    weights = [m.weight for m in _layers(net)]
    loss = F.cross_entropy(net(inputs), targets)
    grad_w = torch.autograd.grad(loss, weights, allow_unused=True)
    loss = F.cross_entropy(net(inputs), targets)
    grad_f = torch.autograd.grad(loss, weights, create_graph=True, allow_unused=True)
    z = sum((gw * gf).sum() for gw, gf in zip(grad_w, grad_f) if gw is not None and gf is not None)
    z.backward()
    return sum(float((-w.detach() * w.grad).sum()) for w in weights if w.grad is not None)


SINGLE_BATCH = {
    "grad_norm": grad_norm,
    "snip": snip,
    "fisher": fisher,
    "jacob_cov": jacob_cov,
    "naswot": naswot,
    "synflow": synflow,
    "grasp": grasp,
}


def score(name: str, model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Reference-style score of one proxy (zico takes two batches, the rest the first)."""
    if name == "zico":
        return zico(model, batches[:2])
    return SINGLE_BATCH[name](model, *batches[0])
