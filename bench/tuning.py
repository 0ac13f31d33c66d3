"""Benchmark: whole commands before and after ``infoswarm.tune_cpu`` (wall, user and sys time).

Runs each command below in a fresh process, untuned (``INFOSWARM_TUNE_CPU=0``, glibc malloc as
it comes) and tuned (the command calls ``tune_cpu`` at start, as the ``infoswarm`` command and
the bench scripts do), alternating the two settings repeat by repeat so that load changes on a
shared machine hit both alike; reports medians of wall time, user and system CPU time (the
child's, all its threads) and the ratio untuned / tuned.

    python bench/tuning.py --repeats 2 --out BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, command_line, load_average, machine_line, md_table, replace_section  # noqa: E402

SECTION = "tuning"
PY = sys.executable
CLI = [PY, "-m", "infoswarm"]

# name -> argv; {tmp} is a fresh scratch folder per run, {data} holds mnist3k.npz (the first 3000
# MNIST training images, used as both splits by `harden`). Reduced sizes: see each name.
COMMANDS: dict[str, list[str]] = {
    "attack bench row: Sparse-RS k=10, 100 MNIST images, 1000 queries":
        [PY, "bench/attack.py", "--images", "100", "--ks", "10", "--methods", "sparse-rs", "--loop-images", "0",
         "--out", "{tmp}/attack.md"],
    "attack bench row: mFI-PSO (exact-FI pixels) k=10, 100 MNIST images, 1000 queries":
        [PY, "bench/attack.py", "--images", "100", "--ks", "10", "--methods", "mfipso-fi", "--loop-images", "0",
         "--out", "{tmp}/attack.md"],
    "harden (reduced: fi, 1 epoch over 3000 MNIST training images)":
        [*CLI, "harden", "--dataset", "{data}/mnist3k.npz", "--model", "mnist-cnn", "--method", "fi",
         "--particles", "20", "--iterations", "3", "--restart-iterations", "3", "--eval-images", "16",
         "--epochs", "1", "--milestones", "1", "--lr", "0.01", "--out", "{tmp}/harden"],
    "FI bench (reduced: MNIST only, 64 images, 1 repeat)":
        [PY, "bench/influence.py", "--images", "64", "--repeats", "1", "--svd-images", "1",
         "--cifar-root", "{tmp}/no-cifar", "--out", "{tmp}/influence.md"],
    "demo (reduced: 300 images scanned, 20 particles)":
        [*CLI, "demo", "--limit", "300", "--particles", "20", "--iterations", "3", "--restart-iterations", "3",
         "--out", "{tmp}/demo"],
}


def run_once(argv: list[str], tuned: bool, threads: int, data_dir: str) -> dict[str, Any]:
    """One fresh process in the repository root; its wall time (raises if it fails)."""
    with tempfile.TemporaryDirectory(prefix="tuning-") as tmp:
        cmd = [a.replace("{tmp}", tmp).replace("{data}", data_dir) for a in argv]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), INFOSWARM_TUNE_CPU="1" if tuned else "0")
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        out, err = proc.communicate()
        wall = time.perf_counter() - t0   # the caller reads the reaped child's CPU time
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({proc.returncode}): {err[-2000:]}")
    guard = [line for line in out.splitlines() if line.startswith("sys/user guard")]
    return {"wall": wall, "guard": guard[-1] if guard else ""}


def render(rows: list[list[str]], guards: list[str], args: argparse.Namespace, command: str, machine: str) -> str:
    return "\n".join([
        "## Whole commands before and after `tune_cpu` (`bench/tuning.py`)", "",
        f"Machine: {machine}.", f"Command: `{command}`.", "",
        f"Each figure is the median of {args.repeats} fresh runs per setting, the settings alternating; "
        "a → b reads untuned (`INFOSWARM_TUNE_CPU=0`) → tuned (default). Seconds; user and sys are "
        "the command's own CPU time over all its threads. The last two columns are untuned / tuned "
        "for wall time and for CPU time (user + sys). `/tmp/data/mnist3k.npz`: the first 3000 MNIST "
        "training images, written by the script (`harden` uses the file as both splits).", "",
        md_table(["run", "command", "wall s", "user s", "sys s", "sys/user", "wall ratio", "CPU ratio"], rows),
        "", *(["Regression guard printed by `bench/attack.py` (sys/user ≤ 0.15):", ""]
              + [f"- {g}" for g in guards] + [""] if guards else []),
        f"Load average at the end: {load_average()}."])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=2, help="runs per command and setting (median)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="", help="comma-separated start of command names to run (default all)")
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    args = ap.parse_args(argv)
    command, machine = command_line("bench/tuning.py", argv), machine_line()
    import numpy as np

    from infoswarm import data

    data_dir = tempfile.TemporaryDirectory(prefix="tuning-data-")
    x8, y = data.load("mnist", "train")
    np.savez(Path(data_dir.name) / "mnist3k.npz", x=x8[:3000].numpy(), y=y[:3000].numpy())
    rows: list[list[str]] = []
    guards: list[str] = []
    text = ""
    for name, cmd in COMMANDS.items():
        if args.only and not any(name.startswith(o) for o in args.only.split(",")):
            continue
        runs: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
        for r in range(args.repeats):
            for tuned in ((False, True) if r % 2 == 0 else (True, False)):
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                res = run_once(cmd, tuned, args.threads, data_dir.name)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                res.update(user=after.ru_utime - before.ru_utime, sys=after.ru_stime - before.ru_stime)
                runs[tuned].append(res)
                print(f"{name} [{'tuned' if tuned else 'untuned'}] {res}", file=sys.stderr, flush=True)
        guards += [f"{name}, {'tuned' if t else 'untuned'}: `{r['guard']}`" for t in (False, True)
                   for r in runs[t] if r["guard"]]
        m = {t: {k: statistics.median(r[k] for r in runs[t]) for k in ("wall", "user", "sys")} for t in runs}
        shown = shlex.join(cmd).replace(PY, "python").replace("{tmp}", "/tmp/x").replace("{data}", "/tmp/data")
        rows.append([name, f"`{shown}`",
                     *(f"{m[False][k]:.1f} → {m[True][k]:.1f}" for k in ("wall", "user", "sys")),
                     f"{m[False]['sys'] / m[False]['user']:.2f} → {m[True]['sys'] / m[True]['user']:.2f}",
                     f"{m[False]['wall'] / m[True]['wall']:.2f}×",
                     f"{(m[False]['user'] + m[False]['sys']) / (m[True]['user'] + m[True]['sys']):.2f}×"])
        text = render(rows, guards, args, command, machine)
        replace_section(args.out, SECTION, text)     # after every command: partial results land
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
