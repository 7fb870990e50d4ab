"""NAS-Bench-201 space: encoding, validation, mutation, sampling and network sizes."""
from __future__ import annotations

import ast
import json
import random

import pytest
import torch

from rznas import Architecture, InvalidArchitecture, UnknownName
from rznas.spaces import SPACES, get_space
from rznas.spaces.nb201 import OPS

from .conftest import require_shared

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


@pytest.fixture(scope="module")
def space():
    return get_space("nb201")


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registered_with_did_you_mean():
    assert "nb201" in SPACES
    with pytest.raises(UnknownName, match="did you mean 'nb201'"):
        get_space("nb20")


def test_encode_decode_round_trip(space):
    arch = space.decode(BEST)
    assert space.encode(arch) == BEST
    assert arch.genotype == ("nor_conv_3x3",) * 3 + ("skip_connect", "nor_conv_3x3", "nor_conv_3x3")


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "malformed"),
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|", "malformed"),
        ("|conv_7x7~0|+|none~0|none~1|+|none~0|none~1|none~2|", "not in the NB201 space"),
        ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "op~0"),
        ("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|none~3|", "malformed"),
    ],
)
def test_malformed_strings_are_clear_errors(space, text, fragment):
    with pytest.raises(InvalidArchitecture, match=fragment):
        space.decode(text)


def test_validate_rejects_wrong_length_foreign_space_and_ops(space):
    with pytest.raises(InvalidArchitecture, match="exactly 6 edges"):
        space.validate(Architecture("nb201", ("none",) * 5))
    with pytest.raises(InvalidArchitecture, match="space"):
        space.validate(Architecture("darts", ("none",) * 6))
    with pytest.raises(InvalidArchitecture):
        space.validate(Architecture("nb201", ("none",) * 5 + ("sep_conv_3x3",)))


def test_sample_and_mutate_stay_in_space(space):
    rng = random.Random(0)
    for _ in range(200):
        arch = space.sample(rng)
        space.validate(arch)
        child = space.mutate(arch, rng)
        space.validate(child)
        assert sum(a != b for a, b in zip(arch.genotype, child.genotype)) == 1


def test_sampling_is_seeded(space):
    a = [space.sample(random.Random(7)) for _ in range(3)]
    b = [space.sample(random.Random(7)) for _ in range(3)]
    assert a == b


def test_enumerates_all_cells(space):
    cells = list(space.all_architectures())
    assert len(cells) == len(OPS) ** 6 == 15625 and len(set(cells)) == 15625


# Parameter counts (CIFAR-10 head): the benchmark's smallest (0.073M) and largest (1.53M, as in
# the NAS-Bench-201 paper and NASLib's dump) cells, and the best CIFAR-10 cell (5 of 6 edges 3x3).
KNOWN_PARAMS = {
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|": 73_306,
    "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|": 73_306,
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|": 1_531_546,
    BEST: 1_288_506,
}


@pytest.mark.parametrize("arch_string, expected", sorted(KNOWN_PARAMS.items()))
def test_parameter_counts_match_the_benchmark(space, arch_string, expected):
    assert n_params(space.build(space.decode(arch_string), num_classes=10)) == expected


def test_parameter_counts_match_naslib_cell_by_cell(space):
    """Every cell NASLib scored: our network has exactly its parameter count (3 datasets)."""
    path = require_shared("reference/naslib_zc_nasbench201.json")
    table = json.loads(path.read_text())
    naslib_ops = ["skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3"]
    for dataset, classes in [("cifar10", 10), ("cifar100", 100), ("ImageNet16-120", 120)]:
        for key, record in list(table[dataset].items())[:25]:
            a, b, c, d, e, f = (naslib_ops[i] for i in ast.literal_eval(key))
            arch = space.decode(f"|{a}~0|+|{b}~0|{d}~1|+|{c}~0|{e}~1|{f}~2|")
            assert n_params(space.build(arch, num_classes=classes)) / 1e6 == pytest.approx(
                record["params"]["score"], abs=1e-6
            )


def test_network_runs_at_both_resolutions(space):
    model = space.build(space.decode(BEST), num_classes=120)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 120)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 120)


def test_description_has_text_and_real_code(space):
    description = space.describe()
    assert "nor_conv_3x3" in description.text and "avg_pool_3x3" in description.text
    assert "class Cell(nn.Module)" in description.code and "def forward" in description.code
    space.decode(description.example)


def test_analytic_sizes_match_built_networks(space):
    """count_params / count_flops agree exactly with the built model and torch's FLOP counter."""
    from torch.utils.flop_counter import FlopCounterMode

    rng = random.Random(11)
    for index in range(12):
        arch = space.sample(rng)
        classes, resolution = [(10, 32), (100, 32), (120, 16)][index % 3]
        model = space.build(arch, num_classes=classes).eval()
        assert space.count_params(arch, num_classes=classes) == n_params(model)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, resolution, resolution))
        assert space.count_flops(arch, resolution, num_classes=classes) == counter.get_total_flops() // 2
