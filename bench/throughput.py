"""Benchmark: model throughput and kernel overhead per batch size, with and without tune_cpu.

For each zoo model and batch size, measures images/s, user and system CPU time and minor page
faults of (a) the forward pass under ``torch.no_grad`` (what the attacks, ``evaluate`` and
universality run) and (b) forward + backward of the cross-entropy loss in train mode (a
training step without the optimiser). Each (model, setting, repeat) runs in a fresh Python
process, because ``mallopt`` changes the whole process: "tuned" calls
:func:`infoswarm.tune_cpu`, "untuned" runs with ``INFOSWARM_TUNE_CPU=0``. The two settings
alternate, repeat by repeat, so that load changes on a shared machine hit both alike; the table
shows medians over the repeats. Throughput does not depend on the weights, so the models are
freshly initialised (seed 0) and the inputs are uniform random images.

    python bench/throughput.py --out BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    REPO,
    command_line,
    cpu_usage,
    load_average,
    machine_line,
    md_table,
    replace_section,
    start_cpu,
)

SECTION = "throughput"


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="mnist-cnn,cifar10-cnn")
    ap.add_argument("--batches", default="64,128,256,512,1024,4096", help="forward batch sizes")
    ap.add_argument("--train-batches", default="64,128,256,512,1024",
                    help="forward+backward batch sizes (larger ones hold every activation in memory)")
    ap.add_argument("--model-batches", action="append", default=[], metavar="MODEL=B:B:...",
                    help="forward batch sizes for one model instead of --batches (repeatable)")
    ap.add_argument("--model-train-batches", action="append", default=[], metavar="MODEL=B:B:...",
                    help="forward+backward batch sizes for one model instead of --train-batches")
    ap.add_argument("--images", default="mnist-cnn=12288,cifar10-cnn=4096",
                    help="images per forward measurement, per model (rounded up to whole batches)")
    ap.add_argument("--train-images", default="mnist-cnn=3072,cifar10-cnn=1024",
                    help="images per forward+backward measurement, per model")
    ap.add_argument("--min-batches", type=int, default=2, help="timed batches at least, after 1 untimed")
    ap.add_argument("--repeats", type=int, default=3, help="fresh processes per model and setting")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    ap.add_argument("--raw", help="also write every process's measurements to this JSON file")
    ap.add_argument("--from-log", metavar="LOG",
                    help="measure nothing: render the section from the stderr log of an earlier run "
                         "(also of an interrupted one: its finished processes), with --command")
    ap.add_argument("--command", help="with --from-log: the command that produced the log")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def per_model(spec: str, name: str) -> int:
    """'a=1,b=2' -> the value for ``name`` (or the only value given without a name)."""
    values = dict(p.split("=", 1) if "=" in p else ("*", p) for p in spec.split(","))
    return int(values.get(name, values.get("*", "4096")))


def batches_for(default: str, overrides: list[str], name: str) -> str:
    """The comma-separated batch sizes for ``name``: its MODEL=B:B:... override, or ``default``."""
    for o in overrides:
        model, _, sizes = o.partition("=")
        if model == name:
            return sizes.replace(":", ",")
    return default


def measure(step: Any, batch: int, images: int, min_batches: int) -> dict[str, float]:
    """Run ``step()`` once untimed, then enough times to cover ``images``; usage deltas."""
    step()
    n = max(min_batches, math.ceil(images / batch))
    before = cpu_usage()
    for _ in range(n):
        step()
    u = cpu_usage() - before
    done = n * batch
    return {"images": done, "wall": u.wall, "user": u.user, "sys": u.sys, "faults": u.minor_faults,
            "ips": done / u.wall}


def worker(args: argparse.Namespace) -> None:
    """One fresh process: every batch size of one model, in one setting; JSON on stdout."""
    reason = start_cpu() if os.environ.get("INFOSWARM_TUNE_CPU") != "0" else "untuned"
    import torch
    import torch.nn.functional as F

    from infoswarm import data, zoo

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = zoo.build(args.model)
    shape = data.INFO[zoo.ZOO[args.model].dataset].shape
    out: dict[str, Any] = {"reason": reason, "forward": {}, "train": {}}
    model.eval()
    for b in [int(v) for v in args.batches.split(",")]:
        x = torch.rand(b, *shape)

        def fwd(x: torch.Tensor = x) -> None:
            with torch.no_grad():
                model(x)
        out["forward"][b] = measure(fwd, b, per_model(args.images, args.model), args.min_batches)
        print(f"  {args.model} forward {b}: {out['forward'][b]}", file=sys.stderr, flush=True)
        del x, fwd
    model.train()
    for b in [int(v) for v in args.train_batches.split(",")]:
        x, y = torch.rand(b, *shape), torch.randint(0, 10, (b,))

        def train(x: torch.Tensor = x, y: torch.Tensor = y) -> None:
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
        out["train"][b] = measure(train, b, per_model(args.train_images, args.model), args.min_batches)
        print(f"  {args.model} fwd+bwd {b}: {out['train'][b]}", file=sys.stderr, flush=True)
        del x, y, train
    print(json.dumps(out))


def run_worker(args: argparse.Namespace, model: str, tuned: bool) -> dict[str, Any]:
    env = dict(os.environ, INFOSWARM_TUNE_CPU="1" if tuned else "0", OMP_NUM_THREADS=str(args.threads))
    cmd = [sys.executable, __file__, "--worker", "--model", model,
           "--batches", batches_for(args.batches, args.model_batches, model),
           "--train-batches", batches_for(args.train_batches, args.model_train_batches, model),
           "--images", args.images, "--train-images", args.train_images,
           "--min-batches", str(args.min_batches), "--threads", str(args.threads)]
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def parse_log(path: str) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Results from the progress lines an earlier run printed to stderr; a process whose lines
    stop early (the run was interrupted) is dropped."""
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    current: dict[str, Any] | None = None
    runs: list[tuple[str, str, dict[str, Any]]] = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        head = re.match(r"(\S+): repeat \d+/\d+, (tuned|untuned)$", line)
        if head:
            current = {"reason": "see the note below", "forward": {}, "train": {}}
            runs.append((head.group(1), head.group(2), current))
            continue
        row = re.match(r"\s+\S+ (forward|fwd\+bwd) (\d+): (\{.*\})$", line)
        if row and current is not None:
            kind = "forward" if row.group(1) == "forward" else "train"
            current[kind][row.group(2)] = ast.literal_eval(row.group(3))
    for model, setting, run in runs:
        results.setdefault(model, {"untuned": [], "tuned": []})[setting].append(run)
    for by in results.values():            # keep the processes that measured every batch size
        full = {k: max((len(r[k]) for t in by.values() for r in t), default=0) for k in ("forward", "train")}
        for t in by:
            by[t] = [r for r in by[t] if all(len(r[k]) == full[k] for k in full)]
    return {m: by for m, by in results.items() if by["untuned"] and by["tuned"]}


def med(runs: list[dict[str, Any]], kind: str, b: str, key: str) -> float:
    return statistics.median(r[kind][b][key] for r in runs)


def derived(r: dict[str, float]) -> dict[str, float]:
    """CPU milliseconds (user + sys) per image, sys/user and minor faults per 1000 images."""
    return {"cpu_ms": (r["user"] + r["sys"]) / r["images"] * 1000,
            "sys_user": r["sys"] / r["user"] if r["user"] else float("nan"),
            "faults_k": r["faults"] / r["images"] * 1000}


def render(results: dict[str, dict[str, list[dict[str, Any]]]], args: argparse.Namespace, command: str,
           machine: str) -> str:
    lines = ["## Throughput and kernel overhead per batch size (`bench/throughput.py`)", "",
             f"Machine: {machine}.", f"Command: `{command}`.", "",
             "Each cell is the median over fresh processes ("
             + ", ".join(f"{m}: {len(by['untuned'])} untuned, {len(by['tuned'])} tuned" for m, by in results.items())
             + "; the settings alternate). *untuned*: glibc malloc as it comes (`INFOSWARM_TUNE_CPU=0`); "
             "*tuned*: `infoswarm.tune_cpu()` (`mallopt` M_MMAP_THRESHOLD and M_TRIM_THRESHOLD = 1 GiB). "
             "images/s is wall-clock throughput; CPU ms/image is the process's user + system CPU time "
             "(all threads) per image, less sensitive than wall time to other work on a shared "
             "machine; sys/user is system over user CPU time; faults are minor page faults per 1000 "
             "images. Models freshly initialised (seed 0), uniform random inputs: throughput does "
             "not depend on the weights.", ""]
    for model, by in results.items():
        for kind, title in (("forward", "forward under no_grad (eval mode)"),
                            ("train", "forward + backward of the loss (train mode)")):
            rows = []
            for b in by["tuned"][0][kind]:
                row: list[object] = [b]
                ips = {t: med(by[t], kind, b, "ips") for t in ("untuned", "tuned")}
                row += [f"{ips['untuned']:.0f}", f"{ips['tuned']:.0f}", f"{ips['tuned'] / ips['untuned']:.2f}×"]
                for key in ("cpu_ms", "sys_user", "faults_k"):
                    for t in ("untuned", "tuned"):
                        v = statistics.median(derived(r[kind][b])[key] for r in by[t])
                        row.append(f"{v:.2f}" if key != "faults_k" else f"{v:.0f}")
                rows.append(row)
            lines += [f"### {model}: {title}", "",
                      md_table(["batch", "images/s untuned", "images/s tuned", "tuned / untuned",
                                "CPU ms/image untuned", "CPU ms/image tuned", "sys/user untuned",
                                "sys/user tuned", "faults/1k images untuned", "faults/1k images tuned"], rows),
                      ""]
    lines.append(f"Load average at the end: {load_average()}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.worker:
        worker(args)
        return 0
    import torch

    torch.set_num_threads(args.threads)
    command = command_line("bench/throughput.py", argv)
    machine = machine_line()
    if args.from_log:
        results = parse_log(args.from_log)
        command = f"{args.command or 'unknown'}`, interrupted, rendered from its log by `{command}"
        machine = "as in the log's run; this rendering: " + machine
        text = render(results, args, command, machine)
        replace_section(args.out, SECTION, text)
        print(text)
        return 0
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for model in args.models.split(","):
        results[model] = {"untuned": [], "tuned": []}
        for r in range(args.repeats):
            order = (False, True) if r % 2 == 0 else (True, False)
            for tuned in order:
                print(f"{model}: repeat {r + 1}/{args.repeats}, {'tuned' if tuned else 'untuned'}",
                      file=sys.stderr, flush=True)
                results[model]["tuned" if tuned else "untuned"].append(run_worker(args, model, tuned))
    if args.raw:
        Path(args.raw).write_text(json.dumps({"command": command, "machine": machine, "results": results}))
    text = render(results, args, command, machine)
    replace_section(args.out, SECTION, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
