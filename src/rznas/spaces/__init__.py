"""Search spaces; importing this package registers every built-in space."""
from .base import SPACES, SearchSpace, SpaceDescription, get_space
from . import nb201  # noqa: F401  (registers "nb201")
from . import maedet, mobilenet, zen_resnet  # noqa: F401  (register the macro spaces)
from . import darts  # noqa: F401  (registers "darts")

__all__ = ["SPACES", "SearchSpace", "SpaceDescription", "get_space"]
