"""Conformance suite driven by the proxy registry: every registered proxy is tested."""
from __future__ import annotations

import math

import pytest
import torch

from rznas import ProxyError
from rznas.data.probe import gaussian_probe
from rznas.errors import UnknownName
from rznas.fitness import ENSEMBLES, ReferenceSpec, architecture_scorer, component_names, make_fitness
from rznas.proxies import PROXIES, evaluate, get_proxy, score_model
from rznas.proxies.base import Proxy, ScoringContext
from rznas.spaces import get_space

CELL = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"


TINY_SPACE = get_space("nb201", channels=4, cells_per_stage=1)


def usable(name: str) -> bool:
    try:
        component_names(name)
    except UnknownName:  # a named ensemble whose components another package registers
        return False
    return True


#: every fitness name the suite covers: each proxy, example `+` ensembles, usable named ensembles
FITNESS_NAMES = (
    PROXIES.names() + ["params+synflow", "naswot+flops+grad_norm"] + [n for n in ENSEMBLES.names() if usable(n)]
)


def tiny_model(arch: str = CELL, seed: int = 0) -> torch.nn.Module:
    """A 4-channel, one-cell-per-stage NB201 network: the proxies' test fixture."""
    torch.manual_seed(seed)
    return TINY_SPACE.build(TINY_SPACE.decode(arch), num_classes=10)


def fitness_score(name: str, model: torch.nn.Module, probe, *, seed: int) -> float:
    """Score ``model`` by a proxy or an ensemble (its reference: 4 tiny cells on the same probe)."""
    scorer = architecture_scorer(TINY_SPACE, probe, seed=seed, num_classes=10)
    fitness = make_fitness(name, space=TINY_SPACE, score_cell=scorer, reference=ReferenceSpec(size=4))
    assert fitness.name == name and fitness.convention, f"{name} must document its sign convention"
    result = fitness.combine(evaluate(model, probe, fitness.proxies, seed=seed))
    if not result.ok:
        raise ProxyError(result.error)
    return result.value


@pytest.fixture(scope="module")
def probe():
    return gaussian_probe(batch_size=8, chunks=2, resolution=16, num_classes=10, seed=3)


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", FITNESS_NAMES)
def test_finite_deterministic_and_model_untouched(name, probe):
    model = tiny_model()
    model.eval()
    before = snapshot(model)
    first = fitness_score(name, model, probe, seed=1)
    second = fitness_score(name, model, probe, seed=1)
    assert math.isfinite(first)
    assert first == second
    after = snapshot(model)
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), f"{name} changed {key}"
    assert not model.training, f"{name} changed the model's train/eval mode"
    assert all(p.grad is None for p in model.parameters()), f"{name} left gradients on the model"


@pytest.mark.parametrize("name", PROXIES.names())
def test_has_documented_convention(name):
    proxy = PROXIES.get(name)
    assert proxy.name == name
    assert proxy.convention, f"{name} must document its sign convention"


def test_scores_differ_between_architectures(probe):
    """A proxy that cannot tell a large cell from an empty one is broken (random excepted)."""
    big = tiny_model()
    small = tiny_model("|skip_connect~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|")
    for name in PROXIES.names():
        try:
            a = get_proxy(name).score(big, probe)
            b = get_proxy(name).score(small, probe)
        except ProxyError:
            continue  # some proxies legitimately refuse degenerate cells
        assert a != b, name


def test_shared_passes_give_the_same_scores_as_separate_runs(probe):
    model = tiny_model()
    names = PROXIES.names()
    together = evaluate(model, probe, [get_proxy(n) for n in names], seed=2)
    for name in names:
        alone = evaluate(model, probe, [get_proxy(name)], seed=2)[name]
        if together[name].ok:
            assert alone.value == pytest.approx(together[name].value, rel=1e-5, abs=1e-8), name
        else:
            assert not alone.ok, name


def test_size_proxies_are_exact(probe):
    model = tiny_model()
    assert get_proxy("params").score(model, probe) == sum(p.numel() for p in model.parameters()) / 1e6
    assert get_proxy("flops").score(model, probe) > 0


def test_count_macs_restores_train_mode_and_takes_parameter_free_models():
    from rznas.proxies.size import count_macs

    model = tiny_model().train()
    model.classifier.eval()  # a mixed state must come back exactly as it was
    modes = [m.training for m in model.modules()]
    macs = count_macs(model, 16)
    assert macs > 0
    assert [m.training for m in model.modules()] == modes
    pool = torch.nn.Sequential(torch.nn.AvgPool2d(2), torch.nn.Flatten())
    assert count_macs(pool, 8) == 0 and pool.training


def test_jacob_cov_on_a_single_sample_is_a_proxy_error_not_a_crash():
    single = gaussian_probe(batch_size=1, chunks=1, resolution=16, num_classes=10, seed=3)
    result = evaluate(tiny_model(), single, [get_proxy("jacob_cov")])["jacob_cov"]
    assert not result.ok and "at least 2 samples" in result.error


def test_flops_match_nb201_convention():
    """Conv/linear multiply-adds; NB201's own table (NASLib: 222.86M) also counts BN and pooling."""
    space = get_space("nb201")
    model = space.build(space.decode(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    ))
    macs = get_proxy("flops").score(model, gaussian_probe(batch_size=1, chunks=1, resolution=32))
    assert 0.98 * 222.86 < macs < 222.86


class Exploding(Proxy):
    name = "exploding"
    convention = "test only"

    def compute(self, ctx: ScoringContext) -> float:
        return float("nan")


def test_non_finite_scores_become_proxy_errors(probe):
    model = tiny_model()
    result = evaluate(model, probe, [Exploding()])["exploding"]
    assert not result.ok and "non-finite" in result.error
    with pytest.raises(ProxyError, match="non-finite"):
        score_model(model, probe, [Exploding()])


def test_out_of_memory_becomes_a_proxy_error(probe):
    class OutOfMemory(Proxy):
        name = "oom"
        convention = "test only"

        def compute(self, ctx):
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    result = evaluate(tiny_model(), probe, [OutOfMemory()])["oom"]
    assert not result.ok and "out of memory" in result.error


def test_zico_needs_two_batches():
    single = gaussian_probe(batch_size=8, chunks=1, resolution=16)
    with pytest.raises(ProxyError, match="2 batches"):
        get_proxy("zico").score(tiny_model(), single)
