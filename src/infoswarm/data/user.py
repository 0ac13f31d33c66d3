"""A user's own data: an ``.npz`` with ``x`` and ``y`` (or ``x_<split>``/``y_<split>``), or a
folder of PNG/JPEG images with one sub-folder per class."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
"""File endings read from an image folder (compared lower-case); other files are passed over."""

MAX_IMAGE_PIXELS = 4096 * 4096
"""Larger images in an image folder are refused (and PIL's decompression-bomb check is strict)."""


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


def read_npz(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """An ``.npz`` as (x uint8 [N, C, H, W], y int64 [N]): ``x_<split>``/``y_<split>`` when
    present, else ``x``/``y``; ``x`` may be NHWC, NCHW or NHW. Anything else is an InputError."""
    if path.is_file() and not zipfile.is_zipfile(path):  # np.load would try it as .npy or pickle
        raise InputError(f"cannot read {path} as .npz (not a zip archive)",
                         "check the file; it may be corrupt or truncated")
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


def load_user(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """A user's ``.npz`` or image folder (``<folder>/<split>/`` when it exists) as
    (x uint8 [N, C, H, W] with C 1 when every image is grey, else 3; y int64 [N])."""
    if path.is_file():
        if path.suffix != ".npz":
            raise InputError(f"{path} is not an .npz file or an image folder",
                             "pass an .npz with x and y, or a folder with one sub-folder per class")
        return read_npz(path, split)
    folder = path / split if (path / split).is_dir() else path
    labels_of = folder_labels(folder)
    if not labels_of:
        raise InputError(f"{folder} has no class sub-folders", "put each class's images in <folder>/<class>/")
    import warnings

    from PIL import Image, UnidentifiedImageError

    images, labels = [], []
    for c, k in labels_of.items():
        for f in sorted((folder / c).iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error", Image.DecompressionBombWarning)
                    with Image.open(f) as im:
                        if im.width * im.height > MAX_IMAGE_PIXELS:
                            raise InputError(f"image {f} is too large ({im.width}x{im.height} pixels, more than "
                                             f"{MAX_IMAGE_PIXELS})", "resize it, or remove it")
                        images.append(np.asarray(im.convert("RGB")))
            except (Image.DecompressionBombWarning, Image.DecompressionBombError):
                raise InputError(f"image {f} is too large (a decompression bomb?)", "resize it, or remove it") from None
            except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
                raise InputError(f"cannot read image {f} ({(str(e).splitlines() or [''])[0][:100]})",
                                 "remove or replace the file") from None
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


def folder_labels(folder: Path) -> dict[str, int]:
    """Label of each class sub-folder of an image folder, in the order read: when every name is
    a non-negative integer ("0", "3", "07") that integer is the label, so a missing class folder
    does not shift the others; otherwise the sorted position of the name."""
    names = sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if names and all(n.isdigit() for n in names):
        labels = {n: int(n) for n in sorted(names, key=int)}
        if len(set(labels.values())) != len(labels):
            raise InputError(f"class folders of {folder} name the same label twice ({', '.join(names[:6])})",
                             "give each class one folder")
        return labels
    return {n: k for k, n in enumerate(names)}
