"""Run folders written atomically: a command builds its outputs in a hidden temporary folder
beside ``--out`` and moves it into place only when everything is written, so a failed or
interrupted command never leaves a half-written run that looks finished."""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from .errors import InputError

MARKER = "run.json"
"""The file every command writes into its run folder: ``{"kind": <command>, ...}``. Only a folder
holding it is ever replaced by ``--overwrite``."""

KINDS = ("influence", "attack", "universality", "train", "harden", "evaluate", "demo", "outliers", "sensitivity",
         "robustness")


def is_run_folder(folder: Path) -> bool:
    """True when ``folder`` holds an infoswarm marker (``run.json`` with a known ``kind``)."""
    try:
        info = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and info.get("kind") in KINDS


def check_out(path: str | os.PathLike[str], overwrite: bool = False,
              inputs: Iterable[str | os.PathLike[str] | None] = ()) -> Path:
    """Validate an output folder before any work starts; returns it as a Path.

    Refused: a file, a dangling symbolic link, the current folder or one above it, a folder that
    holds or lies inside one of ``inputs`` (files and folders the command reads), and a non-empty
    folder unless ``overwrite`` is set and the folder is an infoswarm run (it holds
    :data:`MARKER`): ``--overwrite`` never deletes files that infoswarm did not write."""
    out = check_place(path, inputs)
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise InputError(f"--out {out} already holds files", "choose a new folder or pass --overwrite")
        if not is_run_folder(out):
            raise InputError(f"--out {out} holds files infoswarm did not write (no {MARKER}); --overwrite "
                             "replaces only infoswarm run folders", "choose a new folder, or empty it yourself")
    check_writable_parent(out, "choose an --out folder you can write to")
    return out


def check_place(path: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str] | None] = ()) -> Path:
    """The checks of :func:`check_out` that do not depend on the folder's contents."""
    out = Path(path).expanduser()
    if out.is_symlink() and not out.exists():
        raise InputError(f"--out {out} is a symbolic link to a missing {os.readlink(out)}",
                         "remove the link or choose another --out folder")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a folder", "choose a folder path")
    here = Path.cwd().resolve()
    target = out.resolve()
    if target == here or target in here.parents:
        raise InputError(f"--out {path} is the current folder or one above it",
                         "choose a new sub-folder, e.g. --out runs/new")
    check_not_inputs(target, inputs)
    return out


def check_not_inputs(target: Path, inputs: Iterable[str | os.PathLike[str] | None]) -> None:
    """Refuse an output path that is, holds, or lies inside one of the command's inputs."""
    for i in inputs:
        if i is None or str(i) == "":
            continue
        src = Path(i).expanduser()
        if not src.exists():
            continue
        src = src.resolve()
        if target == src or src in target.parents:
            raise InputError(f"--out {target} lies inside the input {src}",
                             "write the output somewhere else; a command never writes into its inputs")
        if target in src.parents:
            raise InputError(f"--out {target} holds the input {src} (it would be replaced)",
                             "write the output somewhere else; a command never writes over its inputs")


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
def atomic_dir(path: str | os.PathLike[str], overwrite: bool = False, kind: str | None = None,
               inputs: Iterable[str | os.PathLike[str] | None] = ()) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces ``path``, on error it is removed.

    ``kind`` (the command) is written to the folder's :data:`MARKER` first, so the folder is
    recognisably an infoswarm run."""
    out = check_out(path, overwrite, inputs)
    with ExitStack() as stack:
        if not holds_lock(out):  # API callers: lock here; the CLI holds it for the whole command
            stack.enter_context(lock(out))
        out.parent.mkdir(parents=True, exist_ok=True)
        clean_leftovers(out)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        try:
            if kind is not None:
                write_json(tmp / MARKER, {"kind": kind})
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


def clean_leftovers(out: Path) -> list[Path]:
    """Remove what a killed writer of ``out`` left: ``.<name>.tmp-*`` / ``.<name>.old-*``
    folders beside it and ``.*.tmp-*`` files inside it and its ``checkpoints/``. Safe only while
    holding :func:`lock` on ``out`` (no live writer can own them); returns what was removed."""
    out = Path(out)
    gone: list[Path] = []
    places = [(out.parent, f".{out.name}.tmp-"), (out.parent, f".{out.name}.old-")]
    for folder in (out, out / "checkpoints"):
        places.append((folder, "."))
    for folder, prefix in places:
        if not folder.is_dir() or folder.is_symlink():
            continue
        for p in folder.iterdir():
            if not p.name.startswith(prefix) or (prefix == "." and ".tmp-" not in p.name):
                continue
            if p.name.endswith(".lock"):
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            gone.append(p)
    return gone


_HELD: set[str] = set()


def lock_key(out: str | os.PathLike[str]) -> str:
    """The path a run folder's lock is keyed on: absolute with every symbolic link resolved, so
    ``--out real`` and ``--out alias`` (a link to it, or to a folder above it) share one lock."""
    return str(Path(out).expanduser().resolve())


def holds_lock(out: str | os.PathLike[str]) -> bool:
    """Whether this process holds :func:`lock` on ``out``."""
    return lock_key(out) in _HELD


def lock_path(out: str | os.PathLike[str]) -> Path:
    """The lock file of a run folder: ``.<name>.lock`` beside it (in the nearest existing folder
    above it, with the missing path folded into the name, when its parent does not exist yet),
    symbolic links resolved (:func:`lock_key`)."""
    target = Path(lock_key(out))
    base = target.parent
    while not base.is_dir() and base != base.parent:
        base = base.parent
    rel = target.relative_to(base)
    return base / ("." + "~".join(rel.parts) + ".lock")


@contextmanager
def lock(out: str | os.PathLike[str]) -> Iterator[Path | None]:
    """Hold an advisory lock (``fcntl.flock``) on run folder ``out`` for the ``with`` block.

    A second process asking for the same folder gets :class:`InputError` naming the holder's PID.
    The lock dies with its process (kill -9 included), so a stale lock file never blocks; it
    is removed on release. Where no lock file can be made (a read-only place) nothing is locked
    and the command's own checks report the problem."""
    import fcntl

    path = lock_path(out)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            yield None
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            finally:
                os.close(fd)
            raise InputError(f"--out {out} is in use by another infoswarm process (PID {holder})",
                             "wait for it to finish, or choose another --out folder") from None
        try:  # the file may have been removed by its last holder between our open and flock
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except OSError:
            same = False
        if same:
            break
        os.close(fd)
    key = lock_key(out)
    _HELD.add(key)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        _HELD.discard(key)
        try:
            os.unlink(path)
        except OSError:
            pass
        os.close(fd)


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
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", suffix=path.suffix, dir=path.parent)
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
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    except RuntimeError as e:           # torch.save's C++ writer reports a full disk as a RuntimeError
        tmp.unlink(missing_ok=True)
        if disk_nearly_full(path.parent):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from e
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


FULL_DISK_BYTES = 1 << 20
"""Free space below which a failed write is taken as a full disk (1 MiB)."""


def disk_nearly_full(folder: Path) -> bool:
    """True when the file system holding ``folder`` has less than :data:`FULL_DISK_BYTES` free
    (a write that failed there failed for lack of space)."""
    try:
        return shutil.disk_usage(folder).free < FULL_DISK_BYTES
    except OSError:
        return False


_LOADED: list[Path] = []


def loaded_checkpoints() -> list[Path]:
    """The checkpoints :meth:`ResumableRun.load` read in this process, oldest first (a failure
    after one was read may come from a checkpoint whose content does not fit the run)."""
    return list(_LOADED)


def forget_checkpoints() -> None:
    """Empty :func:`loaded_checkpoints` (the CLI does it at the start of every command)."""
    _LOADED.clear()


class ResumableRun:
    """A run folder that a killed command continues when restarted with the same settings.

    ``run.json`` (kind and settings) is written first; checkpoints go to ``checkpoints/``; the
    artefacts are written atomically and ``summary.json`` last, so a folder with a
    ``summary.json`` is a finished run and one without it is an unfinished one, never mistaken
    for finished. Opening a folder that holds another run's files, or this kind of run with
    other settings, raises :class:`InputError` and leaves the folder untouched. ``legacy`` maps
    a setting added after runs were recorded to the value those runs had: a run recorded without
    the key resumes when the key has that value now.
    """

    MARKER = "run.json"
    DONE = "summary.json"

    def __init__(self, path: str | os.PathLike[str], kind: str, settings: Mapping[str, Any],
                 overwrite: bool = False, create: bool = True,
                 inputs: Iterable[str | os.PathLike[str] | None] = (),
                 legacy: Mapping[str, Any] | None = None) -> None:
        self.path = Path(path).expanduser()
        self.kind = kind
        self.settings = json.loads(json.dumps(dict(settings), sort_keys=True, default=_jsonable))
        self.resumed = False
        out = self.path
        check_place(out, inputs)
        marker = out / self.MARKER
        # A kill while the folder was being created can leave only a temporary marker behind.
        leftovers = out.is_dir() and all(p.name.startswith(f".{self.MARKER}.tmp-") for p in out.iterdir())
        if out.is_dir() and any(out.iterdir()) and not overwrite and not leftovers:
            if not marker.is_file():
                raise InputError(f"--out {out} holds another run's files",
                                 "choose a new folder (--overwrite replaces only infoswarm run folders)")
            try:
                old = json.loads(marker.read_text())
            except (OSError, ValueError):
                old = None
            if not isinstance(old, dict) or not isinstance(old.get("settings", {}), dict):
                raise InputError(f"{marker} is damaged or unreadable",
                                 "pass --overwrite to start this run over, or choose a new folder") from None
            if old.get("kind") != kind:
                raise InputError(f"--out {out} holds a {old.get('kind', 'different')} run, not a {kind} run",
                                 "choose a new folder or pass --overwrite")
            since = {k: v for k, v in (legacy or {}).items() if k in self.settings}
            recorded = json.loads(json.dumps({**since, **old.get("settings", {})}, sort_keys=True,
                                             default=_jsonable))
            diff = sorted(k for k in set(recorded) | set(self.settings) if recorded.get(k) != self.settings.get(k))
            if diff:
                def shown(settings: Mapping[str, Any], key: str) -> str:
                    return repr(settings[key]) if key in settings else "not set"

                k = diff[0]
                raise InputError(f"resume settings differ from those of the unfinished run in {out}: {k} was "
                                 f"{shown(recorded, k)}, now {shown(self.settings, k)}"
                                 + (f" (and {len(diff) - 1} more: {', '.join(diff[1:4])}"
                                    + (", ..." if len(diff) > 4 else "") + ")" if len(diff) > 1 else ""),
                                 "rerun with the original settings, or choose a new --out / pass --overwrite")
            self.resumed = True
        elif not leftovers:
            check_out(out, overwrite, inputs)
        if create and holds_lock(out):  # no live writer can own a leftover then
            clean_leftovers(out)
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
        try:
            obj = torch.load(p, weights_only=True)
        except Exception as e:  # truncated, empty, foreign or tampered: never torch's own advice
            raise InputError(f"checkpoint {p} is damaged or not an infoswarm checkpoint "
                             f"({type(e).__name__})",
                             "pass --overwrite to start this run over (or delete that file)") from None
        _LOADED.append(p)
        return obj

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write(self.path / name, lambda p: write_json(p, obj))

    def write_csv(self, name: str, rows: Iterable[Mapping[str, Any]], columns: list[str]) -> None:
        atomic_write(self.path / name, lambda p: write_csv(p, rows, columns))
