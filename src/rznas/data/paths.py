"""Where data lives: an explicit path, else an environment variable, else a clear DataError.

There is never a silent fallback to a guessed folder: every resolver either returns a
path the user named (directly or through the environment) or says where it looked.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ..errors import DataError

DATA_ENV = "RZNAS_DATA_DIR"
NB201_ENV = "RZNAS_NB201_DIR"

PathLike = str | os.PathLike[str]


def resolve_data_dir(explicit: PathLike | None = None) -> Path:
    """The data root: ``explicit`` (a --data-dir flag), else $RZNAS_DATA_DIR, else DataError."""
    if explicit is not None and str(explicit) != "":
        path = Path(explicit).expanduser()
        origin = "--data-dir"
    elif os.environ.get(DATA_ENV):
        path = Path(os.environ[DATA_ENV]).expanduser()
        origin = f"${DATA_ENV}"
    else:
        raise DataError(
            f"no data folder given: pass --data-dir DIR or set {DATA_ENV}=DIR "
            "(DIR holds e.g. cifar10/cifar-10-batches-py or cifar-10-batches-py)"
        )
    if not path.is_dir():
        raise DataError(f"data folder {path} (from {origin}) does not exist or is not a folder")
    return path


def resolve_nb201_dir(explicit: PathLike | None = None, *, data_dir: PathLike | None = None) -> Path:
    """NB201 ground-truth location: flag, else $RZNAS_NB201_DIR, else <data dir>/nb201.

    ``data_dir`` is an explicit --data-dir (else $RZNAS_DATA_DIR is used). The result may
    be a folder of compact JSON tables or an official NATS-Bench file/folder.
    """
    looked: list[str] = []
    if explicit is not None and str(explicit) != "":
        path = Path(explicit).expanduser()
        if not path.exists():
            raise DataError(f"NB201 benchmark path {path} (from --nb201) does not exist")
        return path
    if os.environ.get(NB201_ENV):
        path = Path(os.environ[NB201_ENV]).expanduser()
        if not path.exists():
            raise DataError(f"NB201 benchmark path {path} (from ${NB201_ENV}) does not exist")
        return path
    looked.append(f"--nb201 (not given), ${NB201_ENV} (not set)")
    root = data_dir if data_dir is not None and str(data_dir) != "" else os.environ.get(DATA_ENV)
    if root:
        path = Path(root).expanduser() / "nb201"
        if path.exists():
            return path
        looked.append(f"{path} (missing)")
    else:
        looked.append(f"--data-dir / ${DATA_ENV} (not set)")
    raise DataError(
        "no NAS-Bench-201 ground truth found; looked at: "
        + "; ".join(looked)
        + f". Pass --nb201 PATH or set {NB201_ENV} to a folder of nasbench201_*.json tables "
        "or an official NATS-Bench topology file"
    )


def find_folder(root: Path, candidates: Sequence[str], required: Sequence[str], what: str) -> Path:
    """The first of ``root/<candidate>`` that holds at least one of ``required`` files.

    Lets users point at the data root, at the dataset's parent or at the folder itself.
    """
    tried: list[str] = []
    for candidate in candidates:
        folder = root / candidate if candidate else root
        if folder.is_dir() and any((folder / name).is_file() for name in required):
            return folder
        tried.append(str(folder))
    raise DataError(
        f"no {what} found under {root}; looked in: {', '.join(tried)} "
        f"(expected files such as {', '.join(required[:3])})"
    )
