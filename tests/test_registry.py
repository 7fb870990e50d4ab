"""Registries: registration, lookup and did-you-mean errors."""
from __future__ import annotations

import pytest

from rznas import UnknownName
from rznas.registry import Registry


def test_register_and_get():
    registry: Registry[int] = Registry("thing")
    registry.register("alpha")(1)
    assert registry.get("alpha") == 1 and "alpha" in registry and registry.names() == ["alpha"]


def test_duplicate_names_are_refused():
    registry: Registry[int] = Registry("thing")
    registry.register("alpha")(1)
    with pytest.raises(ValueError):
        registry.register("alpha")(2)


def test_unknown_name_suggests_close_matches():
    registry: Registry[int] = Registry("proxy")
    registry.register("synflow")(1)
    registry.register("snip")(2)
    with pytest.raises(UnknownName, match="did you mean 'synflow'"):
        registry.get("synflo")
    with pytest.raises(UnknownName) as info:
        registry.get("zzz")
    assert "did you mean" not in str(info.value) and "snip, synflow" in str(info.value)
