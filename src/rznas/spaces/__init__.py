"""Search spaces; importing this package registers every built-in space."""
from .base import SPACES, SearchSpace, SpaceDescription, get_space
from . import nb201  # noqa: F401  (registers "nb201")

__all__ = ["SPACES", "SearchSpace", "SpaceDescription", "get_space"]
