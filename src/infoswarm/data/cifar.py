"""CIFAR-10: the official ``cifar-10-python.tar.gz``, its extracted ``cifar-10-batches-py``
folder, or ``cifar10_{split}.npz``; then a checked download when asked."""

from __future__ import annotations

import io
import os
import tarfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .download import MIRRORS, SHA256, download_file
from .roots import cache_dir, dataset_dirs
from .safe_pickle import restricted_unpickle
from .user import read_npz

CIFAR_TAR = "cifar-10-python.tar.gz"
CIFAR_DIR = "cifar-10-batches-py"
CIFAR_BATCHES = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
"""The pickled batch files of each split, in the order their images are concatenated."""


def _cifar_batch(obj: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(obj, dict):
        raise InputError(f"{where} is not a CIFAR-10 batch (no dict inside)", "fetch the official file again")
    d = {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}
    if "data" not in d or "labels" not in d:
        raise InputError(f"{where} lacks 'data' or 'labels'", "fetch the official file again")
    data = np.asarray(d["data"])
    labels = np.asarray(d["labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise InputError(f"{where} has data {data.dtype} {data.shape}, expected uint8 [N, 3072]",
                         "fetch the official file again")
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_from_tar(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    try:
        with tarfile.open(path, "r:*") as tar:
            members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            for b in CIFAR_BATCHES[split]:
                if b not in members:
                    raise InputError(f"{path} has no {b}", "use the official cifar-10-python.tar.gz")
                f = tar.extractfile(members[b])
                assert f is not None
                x, y = _cifar_batch(restricted_unpickle(io.BytesIO(f.read())), f"{path}:{b}")
                xs.append(x)
                ys.append(y)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise InputError(f"cannot read {path}: {e}", "delete it and fetch it again") from None
    return np.concatenate(xs), np.concatenate(ys)


def _cifar_from_dir(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for b in CIFAR_BATCHES[split]:
        f = path / b
        if not f.is_file():
            raise InputError(f"{f} is missing", "extract the complete official cifar-10-python.tar.gz")
        with open(f, "rb") as fh:
            x, y = _cifar_batch(restricted_unpickle(fh), str(f))
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def cifar_folders(root: str | os.PathLike[str] | None) -> list[Path]:
    """The folders holding the CIFAR-10 files that :func:`load_cifar10` would read (the first
    search folder with an ``.npz`` split, the extracted batches or the tarball); nothing is read."""
    for d in dataset_dirs("cifar10", root):
        if any((d / f"cifar10_{s}.npz").is_file() for s in CIFAR_BATCHES) or (d / CIFAR_TAR).is_file():
            return [d]
        if (d / CIFAR_DIR).is_dir():
            return [d, d / CIFAR_DIR]
        if d.name == CIFAR_DIR and d.is_dir():
            return [d]
    return []


def load_cifar10(split: str, root: str | os.PathLike[str] | None,
                 download: bool) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 ``split`` as (x uint8 [N, 3, 32, 32], y int64 [N]); ``root`` may also name the
    tarball or an ``.npz`` itself. Raises InputError naming every folder looked in."""
    dirs = dataset_dirs("cifar10", root)
    for d in dirs:
        if (d / f"cifar10_{split}.npz").is_file():
            x, y = read_npz(d / f"cifar10_{split}.npz", split)
            return x, y
        if (d / CIFAR_DIR).is_dir():
            return _cifar_from_dir(d / CIFAR_DIR, split)
        if d.name == CIFAR_DIR and d.is_dir():
            return _cifar_from_dir(d, split)
        if (d / CIFAR_TAR).is_file():
            return _cifar_from_tar(d / CIFAR_TAR, split)
    if root is not None and Path(root).expanduser().is_file():
        r = Path(root).expanduser()
        return read_npz(r, split) if r.suffix == ".npz" else _cifar_from_tar(r, split)
    if download:
        target = (Path(root).expanduser() if root is not None else cache_dir() / "cifar10") / CIFAR_TAR
        download_file(MIRRORS["cifar10"] + CIFAR_TAR, target, SHA256["cifar10"][CIFAR_TAR])
        return _cifar_from_tar(target, split)
    raise InputError(f"cifar10 {split} files not found (looked in {', '.join(str(d) for d in dirs)})",
                     f"put {CIFAR_TAR}, {CIFAR_DIR}/ or cifar10_{split}.npz in one of those "
                     "folders (or name a folder with --data-root or $INFOSWARM_DATA), or pass download=True")
