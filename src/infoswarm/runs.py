"""Run folders written atomically: a command builds its outputs in a hidden temporary folder
beside ``--out`` and moves it into place only when everything is written, so a failed or
interrupted command never leaves a half-written run that looks finished."""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import InputError


def check_out(path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Validate an output folder before any work starts; returns it as a Path."""
    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a folder", "choose a folder path")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(f"--out {out} already holds files", "choose a new folder or pass --overwrite")
    check_writable_parent(out, "choose an --out folder you can write to")
    return out


def check_writable_parent(out: Path, fix: str) -> None:
    """Raise InputError unless ``out`` can be created: its nearest existing ancestor must be a
    folder we can really create entries in."""
    probe = out.parent if out.parent != Path("") else Path(".")
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK) or not can_create_in(probe):
        raise InputError(f"cannot write under {probe}", fix)


def can_create_in(folder: Path) -> bool:
    """True when a folder can really be made in ``folder`` (and is removed again): permission
    bits do not stop root, but read-only or special file systems (/proc, /sys) still refuse."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".infoswarm-probe-", dir=folder))
    except OSError:
        return False
    return True


@contextmanager
def atomic_dir(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces ``path``, on error it is removed."""
    out = check_out(path, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_json(path: Path, obj: Any) -> None:
    """JSON with sorted keys and a trailing newline."""
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def _jsonable(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_csv(path: Path, rows: Iterable[Mapping[str, Any]], columns: list[str]) -> None:
    """CSV with a header; floats written with 6 significant digits."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for r in rows:
            w.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in (r[c] for c in columns)])


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place, so a
    reader sees either the old file or the complete new one (also after kill -9)."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class ResumableRun:
    """A run folder that a killed command continues when restarted with the same settings.

    ``run.json`` (kind and settings) is written first; checkpoints go to ``checkpoints/``; the
    artefacts are written atomically and ``summary.json`` last, so a folder with a
    ``summary.json`` is a finished run and one without it is an unfinished one, never mistaken
    for finished. Opening a folder that holds another run's files, or this kind of run with
    other settings, raises :class:`InputError` and leaves the folder untouched.
    """

    MARKER = "run.json"
    DONE = "summary.json"

    def __init__(self, path: str | os.PathLike[str], kind: str, settings: Mapping[str, Any],
                 overwrite: bool = False, create: bool = True) -> None:
        self.path = Path(path).expanduser()
        self.kind = kind
        self.settings = json.loads(json.dumps(dict(settings), sort_keys=True, default=_jsonable))
        self.resumed = False
        out = self.path
        if out.exists() and not out.is_dir():
            raise InputError(f"--out {out} is a file, not a folder", "choose a folder path")
        marker = out / self.MARKER
        # A kill while the folder was being created can leave only a temporary marker behind.
        leftovers = out.is_dir() and all(p.name.startswith(f".{self.MARKER}.tmp-") for p in out.iterdir())
        if out.is_dir() and any(out.iterdir()) and not overwrite and not leftovers:
            if not marker.is_file():
                raise InputError(f"--out {out} holds another run's files",
                                 "choose a new folder or pass --overwrite")
            try:
                old = json.loads(marker.read_text())
            except (OSError, ValueError):
                raise InputError(f"{marker} is unreadable", "choose a new folder or pass --overwrite") from None
            if old.get("kind") != kind:
                raise InputError(f"--out {out} holds a {old.get('kind', 'different')} run, not a {kind} run",
                                 "choose a new folder or pass --overwrite")
            diff = sorted(k for k in set(old.get("settings", {})) | set(self.settings)
                          if old.get("settings", {}).get(k) != self.settings.get(k))
            if diff:
                k = diff[0]
                raise InputError(f"resume settings differ from the checkpoint in {out}: {k} was "
                                 f"{old.get('settings', {}).get(k)!r}, now {self.settings.get(k)!r}"
                                 + (f" (and {len(diff) - 1} more)" if len(diff) > 1 else ""),
                                 "rerun with the original settings, or choose a new --out / pass --overwrite")
            self.resumed = True
        else:
            check_out(out, True)
        if create and not self.resumed:
            if out.is_dir() and (overwrite or leftovers):
                for child in out.iterdir():
                    shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
            out.mkdir(parents=True, exist_ok=True)
            self.write_json(self.MARKER, {"kind": kind, "settings": self.settings})
        if create:
            (out / "checkpoints").mkdir(exist_ok=True)

    @property
    def finished(self) -> bool:
        return (self.path / self.DONE).is_file()

    def checkpoint_path(self, name: str) -> Path:
        return self.path / "checkpoints" / name

    def save(self, name: str, obj: Any) -> None:
        """torch.save a checkpoint atomically (tensors, dicts, lists, numbers, strings)."""
        import torch

        atomic_write(self.checkpoint_path(name), lambda p: torch.save(obj, p))

    def load(self, name: str) -> Any | None:
        """A saved checkpoint (``torch.load(weights_only=True)``), or None when absent."""
        import torch

        p = self.checkpoint_path(name)
        if not p.is_file():
            return None
        return torch.load(p, weights_only=True)

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write(self.path / name, lambda p: write_json(p, obj))

    def write_csv(self, name: str, rows: list[Mapping[str, Any]], columns: list[str]) -> None:
        atomic_write(self.path / name, lambda p: write_csv(p, rows, columns))
