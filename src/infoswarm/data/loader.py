"""``load``: any dataset by name or path as uint8 tensors, and ``to_float``, the one conversion
to the [0, 1] floats models take."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from .catalog import INFO, SPLITS
from .cifar import cifar_folders, load_cifar10
from .idx import idx_folders, load_idx
from .user import load_user


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images (0..255) -> float32 images in [0, 1], same shape (``x / 255``)."""
    if x.dtype != torch.uint8:
        raise InputError(f"to_float expects uint8 images, got {x.dtype}",
                         "pass the x returned by infoswarm.data.load")
    return x.to(torch.float32) / 255.0


def data_folders(name: str | os.PathLike[str], root: str | os.PathLike[str] | None = None) -> list[Path]:
    """The files or folders :func:`load` reads for dataset ``name`` (a named dataset's folders as
    found under ``root``, ``$INFOSWARM_DATA`` and the cache; a user path as is): the inputs no
    command may write into. Nothing is read; an empty list when nothing is found."""
    name = os.fspath(name)
    if name in ("mnist", "fashion-mnist"):
        return idx_folders(name, root)
    if name == "cifar10":
        return cifar_folders(root)
    path = Path(name).expanduser()
    return [path] if path.exists() else []


def load(name: str, split: str = "test", root: str | os.PathLike[str] | None = None,
         download: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a dataset split as ``(x uint8 [N,C,H,W], y int64 [N])``.

    ``name`` is ``"mnist"``, ``"fashion-mnist"``, ``"cifar10"`` or a path to user data (see the
    package docstring). ``root`` is an extra folder to look in first; ``download=True`` allows a
    checked download into ``root`` (or the cache) when no local copy is found.
    """
    if not isinstance(name, (str, os.PathLike)) or not str(name):
        raise InputError(f"dataset name must be a non-empty string or path, got {name!r}",
                         'use "mnist", "fashion-mnist", "cifar10" or a path to an .npz file or image folder')
    if not isinstance(split, str) or split not in SPLITS:
        raise InputError(f"unknown split {split!r}", "use split=train or split=test")
    name = os.fspath(name)
    if name in ("mnist", "fashion-mnist"):
        x, y = load_idx(name, split, root, download)
    elif name == "cifar10":
        x, y = load_cifar10(split, root, download)
    elif Path(name).expanduser().exists():
        x, y = load_user(Path(name).expanduser(), split)
    else:
        raise InputError(f"unknown dataset {name!r} (and no such file or folder)",
                         f"use one of {', '.join(INFO)} or a path to an .npz file or image folder")
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.asarray(y, dtype=np.int64))
