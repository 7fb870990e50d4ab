"""`python -m rznas`: the same entry point as the `rznas` console script."""
import sys

from .cli import main

sys.exit(main())
