"""Process-wide CPU tuning: keep glibc from handing big tensor buffers back to the kernel.

glibc's ``malloc`` serves any request above its *mmap threshold* (at most 32 MiB once its
dynamic threshold has grown) with a fresh ``mmap`` and gives it back with ``munmap`` on
``free``; it also trims the top of its heap whenever more than the *trim threshold* is free.
A forward pass over a few thousand images allocates activation buffers of tens to hundreds of
MiB, so every batch maps fresh memory and touches it page by page (one minor page fault per
4 KiB), then unmaps it again: on this project's attacks the kernel time was as large as the
computation itself. :func:`tune_cpu` raises both thresholds to 1 GiB with ``mallopt`` so those
buffers are reused from the heap instead.

It is a call, not a side effect of ``import infoswarm``: the ``infoswarm`` command (and so every
``torchrun`` worker) and the scripts in ``bench/`` call it at start; library users may call
``infoswarm.tune_cpu()`` once at the top of their program. The cost is memory: up to 1 GiB of
freed heap may stay mapped to the process instead of going back to the system.

It does nothing (and says why, in its result and in a DEBUG log line) when

* the C library is not glibc (macOS, Windows, musl): there is nothing to tune this way;
* the user already chose malloc settings: any of ``MALLOC_MMAP_THRESHOLD_``,
  ``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_TOP_PAD_``, ``MALLOC_MMAP_MAX_``, ``MALLOC_ARENA_MAX``,
  ``MALLOC_ARENA_TEST``, a ``glibc.malloc.*`` entry in ``GLIBC_TUNABLES``, or another allocator
  (jemalloc, tcmalloc, mimalloc) named in ``LD_PRELOAD`` or already loaded into the process;
* ``INFOSWARM_TUNE_CPU=0`` is set (an explicit opt-out).

Results of any computation are unchanged: only where freed memory goes differs.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["CpuTuning", "tune_cpu", "last_tuning", "MMAP_THRESHOLD", "TRIM_THRESHOLD"]

log = logging.getLogger(__name__)

MMAP_THRESHOLD = 1 << 30
"""Bytes: requests below this are served from the heap instead of their own ``mmap`` (1 GiB)."""
TRIM_THRESHOLD = 1 << 30
"""Bytes: free memory at the top of the heap kept before glibc returns it to the kernel (1 GiB)."""

# glibc's mallopt parameter numbers (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

# Environment variables through which a user sets glibc malloc's behaviour themselves.
_MALLOC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_",
               "MALLOC_ARENA_MAX", "MALLOC_ARENA_TEST")
_OTHER_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc")
_OPT_OUT = "INFOSWARM_TUNE_CPU"


@dataclass(frozen=True)
class CpuTuning:
    """What :func:`tune_cpu` did.

    applied: whether the malloc thresholds were changed in this process; reason: one line saying
    what was done or why nothing was; settings: the ``mallopt`` parameters set, name -> bytes
    (empty when nothing was applied)."""

    applied: bool
    reason: str
    settings: dict[str, int] = field(default_factory=dict)


_lock = threading.Lock()
_result: CpuTuning | None = None


def _proc_maps() -> str:
    """The process's memory map (Linux), to see whether another allocator is already loaded."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def skip_reason(environ: Mapping[str, str], libc: tuple[str, str], maps: str = "") -> str | None:
    """Why tuning must not be applied, or None when it should be.

    environ: the environment to inspect; libc: ``platform.libc_ver()``-style (name, version);
    maps: the text of ``/proc/self/maps`` (may be empty)."""
    if environ.get(_OPT_OUT, "").strip().lower() in ("0", "no", "false", "off"):
        return f"{_OPT_OUT}={environ[_OPT_OUT]} is set: left glibc malloc as it is"
    if libc[0] != "glibc":
        return f"C library is {libc[0] or 'not glibc'}, not glibc: nothing to tune"
    for name in _MALLOC_ENV:
        if name in environ:
            return f"{name} is set in the environment: left malloc to it"
    tunables = environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc." in tunables:
        return "GLIBC_TUNABLES sets glibc.malloc options: left malloc to them"
    preload = environ.get("LD_PRELOAD", "").lower()
    for name in _OTHER_ALLOCATORS:
        if name in preload:
            return f"LD_PRELOAD names {name}: left malloc to it"
    for name in _OTHER_ALLOCATORS:
        if f"lib{name}" in maps:
            return f"{name} is loaded in this process: left malloc to it"
    return None


def tune_cpu() -> CpuTuning:
    """Keep large freed buffers in the process: ``mallopt(M_MMAP_THRESHOLD, 1 GiB)`` and
    ``mallopt(M_TRIM_THRESHOLD, 1 GiB)`` on glibc, once per process.

    Call it at the start of a program that runs models on the CPU with large batches (the
    ``infoswarm`` command does). Idempotent and thread-safe: the first call decides, later calls
    return the same :class:`CpuTuning` without touching malloc again. A no-op (with a DEBUG log
    line and the reason in the result) without glibc, when the user set malloc options in the
    environment, when another allocator is preloaded, or with ``INFOSWARM_TUNE_CPU=0``.
    Never raises. Costs up to about 1 GiB of freed memory held by the process."""
    global _result
    with _lock:
        if _result is not None:
            return _result
        why = skip_reason(os.environ, platform.libc_ver(), _proc_maps())
        if why is not None:
            _result = CpuTuning(False, why)
        else:
            try:
                libc = ctypes.CDLL("libc.so.6", use_errno=True)
                mallopt = libc.mallopt
                mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
                mallopt.restype = ctypes.c_int
            except (OSError, AttributeError) as e:
                _result = CpuTuning(False, f"could not reach glibc's mallopt ({e}): nothing tuned")
            else:
                wanted = {"M_MMAP_THRESHOLD": (_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
                          "M_TRIM_THRESHOLD": (_M_TRIM_THRESHOLD, TRIM_THRESHOLD)}
                done = {name: value for name, (param, value) in wanted.items() if mallopt(param, value) == 1}
                refused = sorted(set(wanted) - set(done))
                if done:
                    reason = "glibc malloc: " + ", ".join(f"{k}={v >> 20} MiB" for k, v in done.items())
                    if refused:
                        reason += f"; glibc refused {', '.join(refused)}"
                    _result = CpuTuning(True, reason, done)
                else:
                    _result = CpuTuning(False, "glibc's mallopt refused both thresholds: nothing tuned")
        log.debug("tune_cpu: %s", _result.reason)
        return _result


def last_tuning() -> CpuTuning | None:
    """What :func:`tune_cpu` did in this process, or None if it has not been called."""
    return _result
