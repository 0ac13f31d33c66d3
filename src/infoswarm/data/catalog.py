"""The built-in datasets' shapes and class names, and the shape and class names of user data."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import InputError
from .user import folder_labels

SPLITS = ("train", "test")


@dataclass(frozen=True)
class DatasetInfo:
    """What a named dataset looks like: channels, height, width and class names."""

    name: str
    shape: tuple[int, int, int]
    classes: tuple[str, ...]


INFO: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("mnist", (1, 28, 28), tuple(str(i) for i in range(10))),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist",
        (1, 28, 28),
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ),
    "cifar10": DatasetInfo(
        "cifar10",
        (3, 32, 32),
        ("airplane", "automobile", "bird", "cat", "deer",
         "dog", "frog", "horse", "ship", "truck"),
    ),
}


def is_named(name: str) -> bool:
    """True for the built-in dataset names."""
    return name in INFO


def info(name: str, x: torch.Tensor | None = None, y: torch.Tensor | None = None) -> DatasetInfo:
    """Shape and class names of a named dataset, or (for user data) read off ``x`` and ``y``."""
    if name in INFO:
        return INFO[name]
    if x is None or y is None:
        raise InputError(f"unknown dataset {name!r}",
                         f"use one of {', '.join(INFO)} or a path to an .npz file or image folder")
    k = int(y.max().item()) + 1 if y.numel() else 0
    classes = class_names_of(name) or tuple(str(i) for i in range(k))
    c, h, w = (int(s) for s in x.shape[1:])
    return DatasetInfo(str(name), (c, h, w), tuple(classes))


def class_names_of(name: str, split: str = "test") -> tuple[str, ...] | None:
    """Class names of a named dataset or of an image folder (index = label; labels without a
    folder are named by their number); None for npz."""
    if name in INFO:
        return INFO[name].classes
    p = Path(name).expanduser()
    if p.is_dir():
        folder = p / split if (p / split).is_dir() else p
        labels = folder_labels(folder)
        if not labels:
            return None
        names = [str(i) for i in range(max(labels.values()) + 1)]
        for n, k in labels.items():
            names[k] = n
        return tuple(names)
    return None
