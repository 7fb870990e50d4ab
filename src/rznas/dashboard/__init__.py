"""The live run dashboard (``rznas dashboard``): a Starlette app over the read-only run reader.

Needs the optional extra ``pip install 'rznas[dashboard]'`` (Starlette, uvicorn, and plotly,
whose bundled plotly.js is served from the installed package: the page works offline).
"""
from __future__ import annotations

from ..errors import ConfigError

#: import name -> distribution, of what the dashboard needs beyond rznas itself
REQUIRED = {"starlette": "starlette", "uvicorn": "uvicorn", "plotly": "plotly"}


def require_extra() -> None:
    """Raise a ConfigError that names the extra when one of its packages is missing."""
    import importlib

    missing = []
    for module, dist in REQUIRED.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(dist)
    if missing:
        raise ConfigError(
            f"rznas dashboard needs the optional 'dashboard' extra (missing: {', '.join(missing)}); "
            "install it with: pip install 'rznas[dashboard]'"
        )
