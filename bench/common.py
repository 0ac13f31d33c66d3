"""Helpers shared by the benchmark scripts in bench/: machine description, median timing and
writing one script's section of the results Markdown file.

Each script owns the part of the file between ``<!-- bench:NAME:start -->`` and
``<!-- bench:NAME:end -->`` and replaces only that part, so several scripts can share one file.
"""

from __future__ import annotations

import datetime
import os
import platform
import resource
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import torch

REPO = Path(__file__).resolve().parents[1]
_T0 = time.perf_counter()          # when this module was imported: about when the script started
SYS_USER_LIMIT = 0.15              # the guard's ceiling on system CPU time / user CPU time
HEADER = "# Benchmarks\n\nEach section is written by the script it names; run `make bench`.\n"


def fail(message: str) -> NoReturn:
    """Refuse bad input as the CLI does: one line on stderr (no traceback) and exit code 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def markers(name: str, kind: str = "bench") -> tuple[str, str]:
    """The start and end comment lines that delimit a script's section (``kind`` "bench" in
    BENCHMARKS.md, "results" in RESULTS.md)."""
    return f"<!-- {kind}:{name}:start -->", f"<!-- {kind}:{name}:end -->"


def replace_section(path: str | os.PathLike[str], name: str, body: str, kind: str = "bench",
                    header: str = HEADER) -> None:
    """Write ``body`` between the markers of section ``name`` in ``path``.

    Creates the file (with ``header``) or appends the section when absent; everything
    outside the markers is kept byte for byte."""
    start, end = markers(name, kind)
    block = f"{start}\n{body.strip()}\n{end}"
    path = Path(path)
    old = path.read_text(encoding="utf-8") if path.exists() else header
    i, j = old.find(start), old.find(end)
    if i >= 0 and j > i:
        new = old[:i] + block + old[j + len(end):]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(new, encoding="utf-8")
    tmp.replace(path)


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or what the platform module knows)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages (how busy a shared machine was)."""
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def machine_line() -> str:
    """One line describing where the numbers were taken."""
    load = load_average()
    return (f"{cpu_model()}, {os.cpu_count()} logical cores; torch {torch.__version__} with "
            f"{torch.get_num_threads()} intra-op threads; Python {platform.python_version()}; "
            f"load average at start {load}; {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}")


def command_line(script: str, argv: Sequence[str] | None = None) -> str:
    """The command that reproduces this run, relative to the repository root."""
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["python", script, *map(shlex.quote, args)])


@dataclass
class Timing:
    """Median and all run times of a timed call, in seconds."""

    median: float
    runs: list[float]


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> Timing:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed; median wall time."""
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return Timing(statistics.median(runs), runs)


def md_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def interleaved_times(fns: dict[str, Callable[[], object]], repeats: int,
                      warmup: int = 1) -> dict[str, Timing]:
    """Time several calls in alternation (a, b, a, b, ...) after ``warmup`` untimed rounds, so
    that a change of load on a shared machine hits all of them alike; median per call."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    runs: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(max(1, repeats)):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            runs[k].append(time.perf_counter() - t0)
    return {k: Timing(statistics.median(v), v) for k, v in runs.items()}


def start_cpu() -> str:
    """Apply :func:`infoswarm.tune_cpu` (keep big freed buffers in the process) and return its
    one-line reason. Every bench script calls this first; ``INFOSWARM_TUNE_CPU=0`` in the
    environment measures the untuned behaviour instead."""
    from infoswarm import tune_cpu

    return tune_cpu().reason


@dataclass
class CpuUsage:
    """Wall time and the process's CPU time (all threads, plus waited-for children), seconds."""

    wall: float
    user: float
    sys: float
    minor_faults: int

    @property
    def sys_per_user(self) -> float:
        """System over user CPU time (nan when no user time was used)."""
        return self.sys / self.user if self.user > 0 else float("nan")

    def __sub__(self, other: "CpuUsage") -> "CpuUsage":
        return CpuUsage(self.wall - other.wall, self.user - other.user, self.sys - other.sys,
                        self.minor_faults - other.minor_faults)


def cpu_usage() -> CpuUsage:
    """Usage so far: wall time since this module was imported; user/sys CPU time and minor page
    faults of this process (all its threads) and of its finished children. Subtract two
    readings to measure a stretch of work."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return CpuUsage(time.perf_counter() - _T0, me.ru_utime + kids.ru_utime, me.ru_stime + kids.ru_stime,
                    me.ru_minflt + kids.ru_minflt)


def sys_user_guard(label: str, since: CpuUsage | None = None, limit: float = SYS_USER_LIMIT) -> bool:
    """Regression guard on kernel overhead: print the run's wall, user and sys time with
    sys/user and PASS (sys/user <= ``limit``) or FAIL; return whether it passed.

    ``since``: a :func:`cpu_usage` reading taken before the work (default: the whole process).
    A FAIL usually means big buffers go back to the kernel after every batch again (glibc's
    munmap; see :mod:`infoswarm.cpu`). A benchmark prints this, it does not fail a unit test:
    timings on a shared machine are not test material."""
    from infoswarm.cpu import last_tuning

    u = cpu_usage() - since if since is not None else cpu_usage()
    tuned = last_tuning()
    ok = u.sys_per_user <= limit
    print(f"sys/user guard ({label}): wall {u.wall:.1f} s, user {u.user:.1f} s, sys {u.sys:.1f} s, "
          f"minor faults {u.minor_faults / 1e6:.2f} M; sys/user = {u.sys_per_user:.3f} "
          f"(limit {limit}): {'PASS' if ok else 'FAIL'}; "
          f"{tuned.reason if tuned else 'tune_cpu() was not called'}", flush=True)
    return ok
