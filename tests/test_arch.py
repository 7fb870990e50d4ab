"""Architecture genotypes: immutability, hashing, JSON round trips, stable ids."""
from __future__ import annotations

import dataclasses
import json

import pytest

from rznas import Architecture, InvalidArchitecture


def test_lists_are_frozen_and_hashable():
    arch = Architecture("demo", [["a", 1], ["b", 2]])
    assert arch.genotype == (("a", 1), ("b", 2))
    assert len({arch, Architecture("demo", (("a", 1), ("b", 2)))}) == 1


def test_is_immutable():
    arch = Architecture("demo", ("a",))
    with pytest.raises(dataclasses.FrozenInstanceError):
        arch.space = "other"  # type: ignore[misc]


def test_json_round_trip_and_stable_id():
    arch = Architecture("nb201", ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3", "none"))
    again = Architecture.from_json(arch.canonical_json())
    assert again == arch and again.id == arch.id
    # pinned: the id must never change between versions (it keys caches and resumes)
    assert arch.id == "8f126c570f332710"
    assert json.loads(arch.canonical_json()) == {"space": "nb201", "genotype": list(arch.genotype)}


def test_ids_differ_between_spaces_and_genotypes():
    assert Architecture("a", ("x",)).id != Architecture("b", ("x",)).id
    assert Architecture("a", ("x",)).id != Architecture("a", ("y",)).id


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"space": "x"}'])
def test_bad_json_is_a_clear_error(text):
    with pytest.raises(InvalidArchitecture):
        Architecture.from_json(text)


def test_non_primitive_values_are_rejected():
    with pytest.raises(InvalidArchitecture):
        Architecture("demo", (object(),))
