"""Score NB201 cells on your own images: a folder of class sub-folders of PNG/JPEG files, or an .npz.

    python examples/score_own_images.py folder:/data/my-images     # <class>/<image>.png
    python examples/score_own_images.py npz:/data/my-images.npz    # arrays x (N,H,W,3) and y (N,)

The network's class count is the data's; data-dependent proxies (naswot, snip) see your images.
"""
from __future__ import annotations

import random
import sys

import rznas


def main(data: str) -> None:
    space = rznas.get_space("nb201")
    rng = random.Random(0)
    cells = [space.encode(space.sample(rng)) for _ in range(3)]
    rows = rznas.score(cells, ["naswot", "snip", "params"], data=data, batch_size=8)
    for row in rows:
        value = f"{row.value:.6g}" if row.ok else f"FAILED ({row.error})"
        print(f"{row.proxy:8s} {value:>14s} {row.unit:2s} {row.arch}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
