"""Macro search spaces (zen_resnet, mobilenet, maedet): notation, rules, budgets, counts, proxies."""
from __future__ import annotations

import random

import pytest
import torch

from rznas.arch import Architecture
from rznas.data.probe import gaussian_probe
from rznas.errors import BudgetExceeded, ConfigError, InvalidArchitecture
from rznas.proxies import PROXIES, evaluate, get_proxy
from rznas.proxies.size import count_macs, count_parameters
from rznas.spaces import SPACES, get_space
from rznas.spaces.macro_space import MacroSpace
from rznas.spaces.zen_notation import parse

from .conftest import require_shared

MACRO = ("zen_resnet", "mobilenet", "maedet")

#: tiny instances: small budgets and resolutions so building and scoring take milliseconds
TINY = {
    "zen_resnet": dict(budget={"params": 20_000, "layers": 8, "resolution": 8}),
    "mobilenet": dict(budget={"flops": 0.4e6, "layers": 8, "resolution": 16}, head_channels=32),
    "maedet": dict(budget={"flops": 1.5e6, "layers": 16, "resolution": 32}),
}

#: MobileNetV2-1.0 written in IDW blocks: t=1 16-ch stage, then t=6 stages 24/32/64/96/160/320 and a
#: 1280-channel head (each sub-layer is two inverted residuals, so 16 units stand for MBv2's 17)
MOBILENETV2 = (
    "SuperConvK3BNRELU(3,32,2,1)SuperResIDWE1K3(32,16,1,16,1)SuperResIDWE6K3(16,24,2,16,1)"
    "SuperResIDWE6K3(24,32,2,24,1)SuperResIDWE6K3(32,64,2,32,2)SuperResIDWE6K3(64,96,1,64,1)"
    "SuperResIDWE6K3(96,160,2,96,1)SuperResIDWE6K3(160,320,1,160,1)SuperConvK1BNRELU(320,1280,1,1)"
)


def zennet(name: str) -> str:
    return require_shared(f"reference/zennet/{name}").read_text().strip()


def measured(space: MacroSpace, arch: Architecture, resolution: int, num_classes: int = 10) -> tuple[int, int]:
    model = space.build(arch, num_classes=num_classes)
    return count_parameters(model), count_macs(model, resolution)


# ----------------------------------------------------------------------------- published networks
@pytest.mark.parametrize(
    "file, params_m, flops_m, layers, preset",
    [
        ("zennet_cifar_model_size1M_res32.txt", 1.0, 162, 18, "1M"),
        ("zennet_cifar_model_size2M_res32.txt", 2.0, 487, 20, "2M"),
    ],
)
def test_published_cifar_zennets(file, params_m, flops_m, layers, preset):
    space = get_space("zen_resnet", budget=preset)
    text = zennet(file)
    arch = space.decode(text)
    assert space.encode(arch) == text  # round trip, character for character
    built_params, built_macs = measured(space, arch, 32)
    assert space.count_params(arch, num_classes=10) == built_params
    assert space.count_flops(arch, resolution=32, num_classes=10) == built_macs
    # authors report 1.0M / 2.0M params: measured 994,674 and 1,981,810 (CIFAR-10 head)
    assert built_params == pytest.approx(params_m * 1e6, rel=0.01)
    # authors report 162M / 487M; measured 159.2M / 481.4M: Zen-NAS's figures also count BN
    assert built_macs == pytest.approx(flops_m * 1e6, rel=0.025)
    assert built_macs < flops_m * 1e6
    assert space.count_layers(arch) == layers
    space.check_budget(arch)  # the published network meets its own budget


@pytest.mark.parametrize("file, flops_m", [
    ("zennet_imagenet1k_flops400M_res224.txt", 400),
    ("zennet_imagenet1k_flops600M_res224.txt", 600),
])
def test_published_imagenet_zennets(file, flops_m):
    space = get_space("mobilenet", budget=None)
    arch = space.decode(zennet(file))
    assert space.count_layers(arch) == 14
    # analytic at 224 (400.2M and 597.5M measured by the same method at 64 below)
    assert space.count_flops(arch, resolution=224, num_classes=1000) == pytest.approx(flops_m * 1e6, rel=0.01)
    params, macs = measured(space, arch, 64, num_classes=1000)
    assert params == space.count_params(arch, num_classes=1000)
    assert macs == space.count_flops(arch, resolution=64, num_classes=1000)
    with_se = space.make([(b[0] + "SE",) + b[1:] if b[0].startswith("SuperResIDW") else b for b in arch.genotype])
    params, macs = measured(space, with_se, 32, num_classes=1000)
    assert (params, macs) == (space.count_params(with_se, num_classes=1000), space.count_flops(with_se, resolution=32, num_classes=1000))


def test_mobilenetv2_equivalent_is_about_300m_madds():
    space = get_space("mobilenet", budget="1000M")
    arch = space.decode(MOBILENETV2)
    flops = space.count_flops(arch, resolution=224, num_classes=1000)
    assert flops == pytest.approx(300e6, rel=0.1)  # 286.2M (MobileNetV2-1.0: 300M)
    assert space.count_params(arch, num_classes=1000) == pytest.approx(3.5e6, rel=0.15)  # 3.77M (3.5M)
    assert measured(space, arch, 32, num_classes=1000)[1] == space.count_flops(arch, resolution=32, num_classes=1000)


# ----------------------------------------------------------------------------- analytic == measured
@pytest.mark.parametrize("name", MACRO)
def test_analytic_counts_equal_flop_counter(name):
    """Exact agreement (tolerance 0): both count conv + linear multiply-adds only.

    BN, ReLU, pooling, residual additions and the SE gating product are excluded by
    torch.utils.flop_counter and by the analytic count alike.
    """
    rng = random.Random(7)
    tiny = get_space(name, **TINY[name])
    archs = [tiny.sample(rng) for _ in range(3)]
    archs += [tiny.mutate(archs[0], rng)]
    resolution = tiny.budget.resolution
    default = get_space(name)
    big = default.sample(rng)
    for space, arch, res in [(tiny, a, resolution) for a in archs] + [(default, big, 32)]:
        params, macs = measured(space, arch, res)
        assert space.count_params(arch, num_classes=10) == params, space.encode(arch)
        assert space.count_flops(arch, resolution=res, num_classes=10) == macs, space.encode(arch)


def test_se_blocks_counted_exactly():
    space = get_space("mobilenet", budget=None, use_se=True)
    arch = space.sample(random.Random(3))
    assert all(b[0].endswith("SE") for b in arch.genotype[1:-1])
    params, macs = measured(space, arch, 32)
    assert (params, macs) == (space.count_params(arch), space.count_flops(arch, resolution=32))


# ----------------------------------------------------------------------------- sample / mutate
@pytest.mark.parametrize("name", MACRO)
def test_sample_and_mutate_are_valid_and_within_budget(name):
    space = get_space(name)
    for seed in range(25):
        rng = random.Random(seed)
        arch = space.sample(rng)
        space.validate(arch)
        space.check_budget(arch)
        assert space.decode(space.encode(arch)) == arch
        for _ in range(4):
            child = space.mutate(arch, rng)
            space.validate(child)
            space.check_budget(child)
            assert child != arch
            arch = child


def test_sampling_is_deterministic_per_seed():
    space = get_space("zen_resnet")
    assert space.sample(random.Random(5)) == space.sample(random.Random(5))
    assert space.mutate(space.sample(random.Random(5)), random.Random(1)) == space.mutate(
        space.sample(random.Random(5)), random.Random(1))


def test_mutation_follows_zen_nas_rules():
    space = get_space("zen_resnet", budget=None)
    parent = space.decode(zennet("zennet_cifar_model_size1M_res32.txt"))
    parent_blocks = space.blocks(parent)
    rng = random.Random(0)
    for _ in range(200):
        child = space.blocks(space.mutate(parent, rng))
        changed = [i for i, (a, b) in enumerate(zip(parent_blocks, child)) if a != b]
        if len(child) != len(parent_blocks):  # a split: depth is kept
            assert sum(b.sub_layers for b in child) >= sum(b.sub_layers for b in parent_blocks) - 2
            continue
        i = changed[0]
        old, new = parent_blocks[i], child[i]
        assert new.stride == old.stride
        assert new.c_out in space.channel_choices(old.c_out)
        if old.bottleneck is not None:
            assert new.bottleneck in space.channel_choices(old.bottleneck)
            assert abs(new.sub_layers - old.sub_layers) <= 2 and new.sub_layers >= 1
        # only the mutated block and the next block's input change
        assert all(j in (i, i + 1) for j in changed)
    assert space.channel_choices(120) == [48, 64, 80, 96, 120, 152, 176, 240, 304]  # Zen-NAS (banker's rounding)
    assert space.channel_choices(2000)[-1] == 2048 and space.channel_choices(8)[0] == 8


def test_mobilenet_mutation_keeps_head_and_se_choice():
    space = get_space("mobilenet", use_se=True)
    rng = random.Random(2)
    arch = space.sample(rng)
    for _ in range(30):
        arch = space.mutate(arch, rng)
        assert arch.genotype[-1][2] == 2048
        assert all(b[0].endswith("SE") for b in arch.genotype[1:-1])


# ----------------------------------------------------------------------------- notation errors
@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "empty architecture string"),
        ("SuperConvK3BNRELU(3,16,1,1", "ended early"),
        ("SuperConvK3BNRELU(3,16,1,1)SuperResK1K3K1(16,-32,1,8,1)", "negative numbers"),
        ("SuperConvK3BNRELU(3,16,1,1)SuperResK1K3K1(16,32,1,8)", "takes 5 arguments, got 4"),
        ("SuperConvK3BNRELU(3,16,1,1)SuperResK1K9K1(16,32,1,8,1)", "did you mean"),
        ("SuperConvK3BNRELU(3,16,1,1)SuperResK1K3K1(16,32,1,8,1)+", "unexpected character '+'"),
        ("SuperConvK3BNRELU(3,16,1,1)SuperResK1K3K1(16;32,1,8,1)", "unexpected character ';'"),
        ("SuperConvK3BNRELU(3,16,1,1)SuperResK1K3K1(16,32,,8,1)", "expected an integer"),
        ("SuperConvK3BNRELU(3,16,1,1)SuperResK1K3K1(ab|16,32,1,8,1)", "not supported"),
        ("__import__('os')", "unexpected character '_'"),
        ("SuperConvK3BNRELU(3,16,1,1)SuperResK1K3K1(16,24,1,8,1)SuperConvK1BNRELU(32,64,1,1)",
         "must equal the previous block's output channels 24"),
        ("SuperConvK3BNRELU(3,16,1,1)SuperResK1K3K1(16,20,1,8,1)SuperConvK1BNRELU(20,64,1,1)", "multiple of 8"),
        ("SuperConvK3BNRELU(3,16,1,1)SuperResK1K3K1(16,4096,1,8,1)SuperConvK1BNRELU(4096,64,1,1)", "2048"),
        ("SuperConvK3BNRELU(3,16,1,1)SuperResK1K3K1(16,32,3,8,1)SuperConvK1BNRELU(32,64,1,1)", "stride must be 1 or 2"),
        ("SuperConvK3BNRELU(3,16,1,1)SuperResK1K3K1(16,32,1,8,0)SuperConvK1BNRELU(32,64,1,1)", "sub_layers"),
        ("SuperResK1K3K1(3,32,1,8,1)SuperConvK1BNRELU(32,64,1,1)", "first (stem)"),
        ("SuperConvK3BNRELU(3,16,1,1)SuperResK1K3K1(16,32,1,8,1)", "last (head)"),
        ("SuperConvK3BNRELU(3,16,1,1)SuperResIDWE6K3(16,32,1,8,1)SuperConvK1BNRELU(32,64,1,1)", "not a block type"),
    ],
)
def test_bad_strings_give_clear_errors(text, fragment):
    with pytest.raises(InvalidArchitecture) as info:
        get_space("zen_resnet", budget=None).decode(text)
    assert fragment in str(info.value)


def test_maedet_needs_total_stride_32_and_emits_c3_to_c5():
    space = get_space("maedet", budget=None)
    with pytest.raises(InvalidArchitecture, match="exactly 32"):
        space.decode("SuperConvK3BNRELU(3,16,2,1)SuperResConvK1K3K1(16,32,2,8,1)")
    arch = space.decode(
        "SuperConvK3BNRELU(3,16,2,1)SuperResConvK1K3K1(16,32,2,8,1)SuperResConvK1K5K1(32,48,2,16,1)"
        "SuperResConvK1K3K1(48,48,1,16,2)SuperResConvK1K3K1(48,64,2,16,1)SuperResConvK1K7K1(64,96,2,24,1)"
    )
    assert space.count_layers(arch) == 1 + 3 * 6
    model = space.build(arch, num_classes=5)
    features = model.forward_features(torch.randn(2, 3, 64, 64))
    assert [tuple(f.shape[1:]) for f in features] == [(48, 8, 8), (64, 4, 4), (96, 2, 2)]
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 5)
    assert model.forward_pre_gap(torch.randn(1, 3, 64, 64)).shape == (1, 96, 2, 2)


def test_genotype_is_plain_data_and_checked():
    space = get_space("zen_resnet", budget=None)
    arch = space.decode("SuperConvK3BNRELU(3,16,1,1)SuperResK3K3(16,32,2,16,1)SuperConvK1BNRELU(32,64,1,1)")
    assert arch.genotype == (("SuperConvK3BNRELU", 3, 16, 1, 1), ("SuperResK3K3", 16, 32, 2, 16, 1),
                             ("SuperConvK1BNRELU", 32, 64, 1, 1))
    assert Architecture.from_json(arch.canonical_json()) == arch
    for bad, fragment in [
        ((("SuperConvK3BNRELU", 3, 16, 1, True), ("SuperConvK1BNRELU", 16, 64, 1, 1)), "non-integer"),
        ((("SuperConvK3BNRELU", 3, 16, 1), ("SuperConvK1BNRELU", 16, 64, 1, 1)), "needs 4 integers"),
        (("SuperConvK3BNRELU",), "must be a list"),
        ((), "non-empty"),
    ]:
        with pytest.raises(InvalidArchitecture, match=fragment):
            space.validate(Architecture("zen_resnet", bad))
    with pytest.raises(InvalidArchitecture, match="belongs to space"):
        space.validate(Architecture("nb201", arch.genotype))


def test_parse_is_syntax_only():
    blocks = parse(" SuperConvK3BNRELU(3,8,1,1)\nFoo(1,2) ")
    assert [(b.name, b.args) for b in blocks] == [("SuperConvK3BNRELU", (3, 8, 1, 1)), ("Foo", (1, 2))]


# ----------------------------------------------------------------------------- budgets
def test_budget_violation_message():
    space = get_space("zen_resnet", budget="1M")
    arch = space.decode(zennet("zennet_cifar_model_size2M_res32.txt"))
    with pytest.raises(BudgetExceeded) as info:
        space.check_budget(arch)
    message = str(info.value)
    assert "1.9818M parameters > 1M" in message and "20 layers > 18" in message
    space.check_budget(arch, "2M")
    with pytest.raises(BudgetExceeded, match="multiply-adds"):
        space.check_budget(arch, {"flops": 100e6, "resolution": 32})


@pytest.mark.parametrize("name, budget, fragment", [
    ("zen_resnet", {"params": 500}, "smallest network"),
    ("zen_resnet", {"layers": 2}, "layers cannot be met"),
    ("mobilenet", {"flops": 1e5, "resolution": 224}, "smallest network"),
    ("maedet", {"layers": 3}, "layers cannot be met"),
    ("zen_resnet", "3M", "unknown zen_resnet budget preset"),
    ("zen_resnet", {"params": -1}, "positive"),
    ("zen_resnet", {"parms": 1e6}, "unknown budget key"),
])
def test_unmeetable_or_bad_budgets_are_config_errors(name, budget, fragment):
    with pytest.raises(ConfigError, match=fragment):
        get_space(name, budget=budget)
    if not isinstance(budget, str) and "positive" not in fragment and "unknown" not in fragment:
        space = get_space(name, budget=None)
        with pytest.raises(ConfigError):
            space.check_budget(space.sample(random.Random(0)), budget)


def test_presets():
    assert get_space("zen_resnet", budget="2M").budget.layers == 20
    mb = get_space("mobilenet", budget="1000M").budget
    assert (mb.flops, mb.layers, mb.resolution) == (1e9, 16, 224)
    assert get_space("mobilenet", budget="600M").budget.layers == 14
    md = get_space("maedet").budget
    assert (md.flops, md.layers, md.resolution) == (18.8e9, 91, 480)


# ----------------------------------------------------------------------------- description
@pytest.mark.parametrize("name", MACRO)
def test_describe(name):
    space = get_space(name)
    description = space.describe()
    assert "class ResidualUnit" in description.code and "def plan_" in description.code
    assert "multiple of 8" in description.encoding
    assert "2.5" in description.mutation_rules
    assert "Budget:" in description.text
    example = space.decode(description.example)  # the example is a valid architecture
    space.validate(example)


# ----------------------------------------------------------------------------- proxies
@pytest.mark.parametrize("name", MACRO)
def test_every_registered_proxy_runs_on_a_tiny_network(name):
    space = get_space(name, **TINY[name])
    arch = space.sample(random.Random(0))
    torch.manual_seed(0)
    model = space.build(arch, num_classes=10)
    # 4 chunks of 4: swap reads 16 images; the other proxies still see batches of 4
    probe = gaussian_probe(batch_size=4, chunks=4, resolution=space.budget.resolution, num_classes=10, seed=0)
    results = evaluate(model, probe, [get_proxy(p) for p in PROXIES.names()])
    failed = {k: r.error for k, r in results.items() if not r.ok}
    # meco trains BN on one image (as MeCo does): a tiny network's 1x1 maps refuse it, with that reason
    if "meco" in failed and "more than 1 value per channel" in failed["meco"]:
        del failed["meco"]
    assert not failed


def test_evaluate_common_proxies_on_small_zen_resnet():
    space = get_space("zen_resnet", **TINY["zen_resnet"])
    arch = space.sample(random.Random(4))
    torch.manual_seed(0)
    model = space.build(arch, num_classes=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    probe = gaussian_probe(batch_size=8, chunks=2, resolution=8, num_classes=10, seed=1)
    wanted = ["zen", "zico", "synflow", "grad_norm", "naswot", "params", "flops"]
    missing = [p for p in wanted if p not in PROXIES]
    assert not missing, f"proxies not registered: {missing}"
    results = evaluate(model, probe, [get_proxy(p) for p in wanted])
    assert all(r.ok for r in results.values()), {k: r.error for k, r in results.items()}
    assert results["params"].value == pytest.approx(space.count_params(arch) / 1e6)
    assert results["flops"].value == pytest.approx(space.count_flops(arch, resolution=8) / 1e6)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_spaces_registered():
    for name in MACRO:
        assert name in SPACES
        assert isinstance(get_space(name), MacroSpace)
