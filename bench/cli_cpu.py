"""Benchmark: CPU time of a 60-image CLI attack at one thread and at one per core, quiet and with the
other cores busy (issue 21, part 3: small tail batches must not pay for thread wake-ups).

Runs ``infoswarm attack --dataset mnist --model mnist-cnn --select all --limit N --out DIR`` (the
default attack: SparseSwarm, k = 10, 1,000 queries) as a child process, ``--repeats`` times per
setting, for each thread setting (the command's default, one thread since the change this
measured; and ``--threads N`` with N = the cores, torch's own choice before) and each load (quiet; ``busy``: one pure-Python busy loop per core but
one, started before and stopped after each run). Reports the child's wall, user and system CPU
seconds (medians) and sys / user.

    python bench/cli_cpu.py --repeats 3 --out BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, command_line, machine_line, md_table, replace_section  # noqa: E402


def _child_cpu() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime, r.ru_stime


def run_once(exe: str, images: int, threads: str) -> tuple[float, float, float]:
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    flag = [] if threads == "default" else ["--threads", threads]
    with tempfile.TemporaryDirectory() as tmp:
        u0, s0 = _child_cpu()
        t0 = time.perf_counter()
        subprocess.run([exe, "attack", "--dataset", "mnist", "--model", "mnist-cnn", "--select", "all",
                        "--limit", str(images), "--out", str(Path(tmp) / "run"), *flag], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        u1, s1 = _child_cpu()
    return wall, u1 - u0, s1 - s0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--exe", default=str(Path(sys.executable).with_name("infoswarm")))
    ap.add_argument("--section", default="cli-cpu")
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    args = ap.parse_args(argv)
    machine = machine_line()
    busy_n = max((os.cpu_count() or 2) - 1, 1)
    rows: list[list[Any]] = []
    for load in ("quiet", "busy"):
        for threads in ("default", str(os.cpu_count() or 2)):
            got = []
            for _ in range(args.repeats):
                hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy_n)] \
                    if load == "busy" else []
                try:
                    got.append(run_once(args.exe, args.images, threads))
                finally:
                    for h in hogs:
                        h.kill()
                        h.wait()
            wall, user, sys_ = (statistics.median(v[i] for v in got) for i in range(3))
            rows.append([load, threads, f"{wall:.1f}", f"{user:.1f}", f"{sys_:.2f}", f"{sys_ / max(user, 1e-9):.3f}",
                         ", ".join(f"{v[2] / max(v[1], 1e-9):.3f}" for v in got)])
            print(rows[-1], flush=True)
    body = "\n".join([
        f"## CPU time of a CLI attack, quiet and busy (`bench/cli_cpu.py`, section {args.section})", "",
        f"{machine}.", f"Command: `{command_line('bench/cli_cpu.py', argv)}`.", "",
        f"`infoswarm attack --dataset mnist --model mnist-cnn --select all --limit {args.images}` (SparseSwarm, "
        "k = 10, 1,000 queries), a fresh process each time (import and data loading included). `busy`: "
        f"{busy_n} pure-Python busy loop(s) on the other core(s) during the run. Threads `default`: the command's "
        "default (one thread); a number: `--threads N` (N = the cores: torch's own choice, the default before). "
        f"Medians over {args.repeats} runs; the last column lists every run's ratio.", "",
        md_table(["load", "threads", "wall s", "user s", "sys s", "sys / user", "sys / user per run"], rows)])
    replace_section(args.out, args.section, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
