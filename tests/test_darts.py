"""DARTS space: genotype notation, validation, sampling/mutation, network sizes."""
from __future__ import annotations

import random

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from rznas import Architecture, ConfigError, InvalidArchitecture
from rznas.spaces import SPACES, get_space
from rznas.spaces.darts import DARTS_V1, DARTS_V2, PRIMITIVES, parse_genotype


@pytest.fixture(scope="module")
def space():
    return get_space("darts")


@pytest.fixture(scope="module")
def tiny():
    """A small network (C=8, 5 cells) with the auxiliary head, fast enough for many builds."""
    return get_space("darts", channels=8, layers=5, auxiliary=True)


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def measured_macs(model: torch.nn.Module, resolution: int) -> int:
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, resolution, resolution))
    return counter.get_total_flops() // 2  # torch counts 2 FLOPs per multiply-add


def test_registered():
    assert "darts" in SPACES


def test_darts_v2_parameter_count_matches_the_paper(space):
    arch = space.decode(DARTS_V2)
    model = space.build(arch)
    # DARTS reports 3.3M parameters (auxiliary head excluded).
    assert n_params(model) == space.count_params(arch) == 3_349_342
    with_aux = get_space("darts", auxiliary=True)
    assert n_params(with_aux.build(arch)) == with_aux.count_params(arch) == 3_825_768
    assert space.count_layers(arch) == 20


def test_darts_v2_flops_agree_with_flop_counter(space):
    arch = space.decode("DARTS_V2")
    assert space.count_flops(arch) == measured_macs(space.build(arch), 32) == 528_359_040


def test_round_trip_of_published_genotypes(space):
    for text in (DARTS_V1, DARTS_V2):
        arch = space.decode(text)
        assert space.encode(arch) == text
        assert space.decode(space.encode(arch)) == arch
        assert Architecture.from_json(arch.canonical_json()) == arch


def test_decode_accepts_darts_printing_variants(space):
    text = DARTS_V2.replace("[2, 3, 4, 5]", "range(2, 6)").replace("'", '"')
    text = text.replace("Genotype(", "Genotype(\n  ").replace(", reduce=", ",\n  reduce=")
    assert space.decode(text) == space.decode(DARTS_V2)
    assert space.decode("DARTS_V2") == space.decode(DARTS_V2)


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "expected 'Genotype\\(' or '\\('"),
        ("Genotype(normal=[('sep_conv_3x3', 0)]", "expected ',' or '\\)'"),
        ("Genotype(normal=[('sep_conv_3x3' 0)])", "expected ','"),
        ("Genotype(normal=[], foo=[1])", "unknown genotype field 'foo'"),
        ("Genotype(normal=[], normal=[])", "given twice"),
        ("Genotype(normal=[])", "lacks field"),
        ("Genotype(normal=__import__('os'))", "expected '\\['"),
        ("Genotype(normal=[('a', 0)]) extra", "end of text"),
        ("Genotype(normal=[('sep_conv_3x3, 0)])", "unterminated string"),
        ("Genotype(normal=[{}])", "unexpected character"),
        (DARTS_V2.replace("'dil_conv_3x3'", "'conv_7x7'"), "not a DARTS operation"),
        (DARTS_V2.replace("('dil_conv_3x3', 2)", "('dil_conv_3x3', 5)"), "may only read states 0..4"),
        (DARTS_V2.replace("('sep_conv_3x3', 1), ('sep_conv_3x3', 0)", "('sep_conv_3x3', 0), ('sep_conv_3x3', 0)", 1), "twice"),
        (DARTS_V2.replace("('dil_conv_3x3', 2)", "('none', 2)"), "does not accept it"),
        (DARTS_V2.replace("normal_concat=[2, 3, 4, 5]", "normal_concat=[4, 5]"), "normal_concat must be"),
        (DARTS_V2.replace(", ('dil_conv_3x3', 2)", ""), "exactly 8"),
    ],
)
def test_bad_genotypes_are_clear_errors(space, text, fragment):
    with pytest.raises(InvalidArchitecture, match=fragment):
        space.decode(text)


def test_parser_never_evaluates():
    with pytest.raises(InvalidArchitecture):
        parse_genotype("Genotype(normal=[(__import__('os').system('true'), 0)])")


def test_validate_rejects_foreign_and_malformed(space):
    with pytest.raises(InvalidArchitecture, match="space"):
        space.validate(Architecture("nb201", ()))
    with pytest.raises(InvalidArchitecture, match="pair"):
        space.validate(Architecture("darts", ((), ())))
    with pytest.raises(InvalidArchitecture, match="input True"):
        good = space.decode(DARTS_V2).genotype
        space.validate(Architecture("darts", ((("sep_conv_3x3", True),) + good[0][1:], good[1])))


def test_none_policy():
    strict, loose = get_space("darts"), get_space("darts", allow_none=True)
    assert "none" not in strict.ops and loose.ops == PRIMITIVES
    rng = random.Random(3)
    seen = {op for _ in range(200) for cell in loose.sample(rng).genotype for op, _ in cell}
    assert "none" in seen
    arch = loose.decode(DARTS_V2.replace("('dil_conv_3x3', 2)", "('none', 2)"))
    out = loose.build(arch, num_classes=3).eval()
    assert out.__class__.__name__ == "NetworkCIFAR"


@pytest.mark.parametrize("seed", range(30))
def test_sample_and_mutate_stay_valid(space, seed):
    rng = random.Random(seed)
    arch = space.sample(rng)
    space.validate(arch)
    assert all(op != "none" for cell in arch.genotype for op, _ in cell)
    child = space.mutate(arch, rng)
    space.validate(child)
    changed = [
        (c, i)
        for c in range(2)
        for i in range(8)
        if arch.genotype[c][i] != child.genotype[c][i]
    ]
    assert len(changed) == 1  # exactly one pair changed
    (c, i), = changed
    before, after = arch.genotype[c][i], child.genotype[c][i]
    assert (before[0] == after[0]) != (before[1] == after[1])  # either the op or the input


def test_sampling_is_seeded_and_covers_all_ops(space):
    assert space.sample(random.Random(7)) == space.sample(random.Random(7))
    rng = random.Random(0)
    ops = {op for _ in range(100) for cell in space.sample(rng).genotype for op, _ in cell}
    assert ops == set(PRIMITIVES) - {"none"}


@pytest.mark.parametrize("seed", range(4))
def test_analytic_sizes_match_built_models(tiny, seed):
    arch = tiny.sample(random.Random(100 + seed))
    model = tiny.build(arch, num_classes=7)
    assert n_params(model) == tiny.count_params(arch, num_classes=7)
    assert tiny.count_flops(arch, num_classes=7) == measured_macs(model, 32)
    assert tiny.count_flops(arch, 16, num_classes=7) == measured_macs(model, 16)


def test_bad_resolution_is_a_config_error(tiny):
    with pytest.raises(ConfigError, match="divisible by 4"):
        tiny.count_flops(tiny.decode(DARTS_V2), 30)


def test_forward_api_and_auxiliary_head(tiny):
    torch.manual_seed(0)
    model = tiny.build(tiny.decode(DARTS_V2), num_classes=5)
    x = torch.randn(4, 3, 32, 32)
    model.train()
    logits, aux = model.forward_with_aux(x)
    assert logits.shape == aux.shape == (4, 5)
    assert model(x).shape == (4, 5)  # forward returns logits only
    model.eval()
    assert model.forward_with_aux(x)[1] is None
    assert model.forward_pre_gap(x).shape == (4, 4 * 8 * 4, 8, 8)


def test_drop_path_only_in_training(tiny):
    model = get_space("darts", channels=8, layers=5, drop_path_prob=0.5).build(get_space("darts").decode(DARTS_V2))
    x = torch.randn(8, 3, 32, 32)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    torch.manual_seed(0)
    a = model(x)
    torch.manual_seed(1)
    b = model(x)
    assert not torch.allclose(a, b)


def test_describe_has_real_code(space):
    description = space.describe()
    assert "class SepConv" in description.code and "class NetworkCIFAR" in description.code
    assert space.decode(description.example) == space.decode(DARTS_V2)
    assert "must differ" in description.encoding


def test_space_options_are_checked():
    with pytest.raises(ConfigError):
        get_space("darts", channels=7)
    with pytest.raises(ConfigError):
        get_space("darts", drop_path_prob=1.0)
