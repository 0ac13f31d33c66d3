"""Where datasets are looked for and downloaded to: ``--data-root``, ``$INFOSWARM_DATA``, the cache."""

from __future__ import annotations

import os
from pathlib import Path


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


def dataset_dirs(name: str, root: str | os.PathLike[str] | None) -> list[Path]:
    """Every folder a dataset called ``name`` is looked for in, in order: each of
    :func:`search_roots` as is, then with ``name`` appended."""
    dirs: list[Path] = []
    for r in search_roots(root):
        dirs += [r, r / name]
    return dirs
