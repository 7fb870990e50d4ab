"""Example rznas plug-in: the ``tinychain`` search space and the ``grad_l1`` proxy.

Nothing here registers itself on import: rznas finds both classes through the entry points
declared in pyproject.toml and loads them the first time a registry is looked up.
"""
