"""Read the architecture to train or export: an encoding string, inline JSON or a JSON file."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..arch import Architecture
from ..errors import ConfigError, InvalidArchitecture
from ..spaces import get_space

# keys under which a search result file may hold the architecture
_NESTED_KEYS = ("best_arch", "best", "arch", "architecture")


def _find_arch_dict(data: Any, depth: int = 0) -> dict[str, Any] | None:
    """The first {"space": ..., "genotype": ...} object, at the top or under a known key."""
    if not isinstance(data, dict) or depth > 3:
        return None
    if "space" in data and "genotype" in data:
        return data
    for key in _NESTED_KEYS:
        found = _find_arch_dict(data.get(key), depth + 1)
        if found is not None:
            return found
    if isinstance(data.get("space"), str):  # {"space": "darts", "encoding": "..."}
        for key in ("encoding", "arch_string", "arch"):
            if isinstance(data.get(key), str):
                return {"space": data["space"], "encoding": data[key]}
    return None


def architecture_from_json(data: Any, origin: str) -> Architecture:
    """An Architecture from parsed JSON: Architecture.to_dict() or a search result holding one."""
    found = _find_arch_dict(data)
    if found is None:
        raise ConfigError(
            f"{origin} holds no architecture: expected an object with 'space' and 'genotype' "
            f"(or with 'space' and 'encoding'), at the top or under one of {', '.join(_NESTED_KEYS)}"
        )
    space = get_space(str(found["space"]))
    arch = space.decode(found["encoding"]) if "encoding" in found else Architecture.from_dict(found)
    space.validate(arch)
    return arch


def load_architecture(
    *,
    space_name: str | None,
    arch_text: str | None = None,
    arch_file: str | None = None,
    arch_json: str | None = None,
) -> Architecture:
    """Resolve exactly one of: an encoding string (needs ``space_name``), a JSON file, inline JSON."""
    given = [x for x in (arch_text, arch_file, arch_json) if x is not None]
    if len(given) != 1:
        raise ConfigError("give exactly one of --arch (encoding string), --arch-file (JSON) or --arch-json")
    if arch_text is not None:
        if space_name is None:
            raise ConfigError("--arch needs --space to know how to read the encoding")
        arch = get_space(space_name).decode(arch_text)
    elif arch_file is not None:
        path = Path(arch_file)
        if not path.is_file():
            raise ConfigError(f"architecture file {path} does not exist")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"architecture file {path} is not JSON: {exc}") from None
        arch = architecture_from_json(data, str(path))
    else:
        try:
            data = json.loads(arch_json or "")
        except json.JSONDecodeError as exc:
            raise InvalidArchitecture(f"--arch-json is not JSON: {exc}") from None
        arch = architecture_from_json(data, "--arch-json")
    if space_name is not None and arch.space != space_name:
        raise ConfigError(f"the architecture belongs to space {arch.space!r}, but --space is {space_name!r}")
    return arch
