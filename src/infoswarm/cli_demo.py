"""The ``demo`` command: the main job on the built-in default (MNIST test split, shipped
``mnist-cnn``) — influence → select → attack → report — by running the ordinary commands, which
it prints so they can be re-run or changed one at a time."""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from .errors import InputError


DEMO_MODELS = {"mnist": "mnist-cnn", "fashion-mnist": "fashion-cnn", "cifar10": "cifar10-cnn"}
"""The shipped model the demo attacks on each dataset."""

# The paper's element-FI rule on CIFAR-10 uses the authors' epsilon variant in their units (raw
# 0..255 pixels); on the MNIST-like datasets the exact FI.
DEMO_SELECTION = {"mnist": ["--selection", "fi"], "fashion-mnist": ["--selection", "fi"],
                  "cifar10": ["--selection", "fi-eps", "--fi-eps-scale", "255"]}


def add_parser(sub: Any) -> None:
    from .cli import _common

    p = sub.add_parser(
        "demo", help="influence -> select -> attack -> report on MNIST with the shipped mnist-cnn",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Runs `infoswarm influence`, `infoswarm attack` (the paper's rule: correct images with "
                    "image FI >= 0.01, every entry with element FI >= 0.01 perturbed within L-inf 0.15, a "
                    "reduced swarm) and `infoswarm report` into --out, printing each command first; ends "
                    "with the report's path and three headline numbers. About 2 minutes on 2 cores.",
        epilog="example:\n  infoswarm demo --out runs/demo --overwrite")
    g = p.add_argument_group("demo")
    g.add_argument("--dataset", default="mnist", choices=list(DEMO_MODELS),
                   help="mnist (default, shipped mnist-cnn), fashion-mnist (fashion-cnn) or cifar10 "
                        "(cifar10-cnn; CIFAR-10 must be on disk: --data-root or $INFOSWARM_DATA)")
    g.add_argument("--data-root", default=None, help="extra folder to look for the dataset in first")
    g.add_argument("--limit", type=int, default=2000, help="test images scanned (default 2000)")
    g.add_argument("--particles", type=int, default=100, help="swarm size (default 100; paper 500)")
    g.add_argument("--iterations", type=int, default=10, help="swarm iterations (default 10)")
    g.add_argument("--restart-iterations", type=int, default=10, help="restart iterations (default 10; paper 40)")
    _common(p)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from . import runs
    from .cli import _device, _positive, main

    # Checked here, so that bad input gives one line and not a failed step plus its message.
    _positive(args.limit, "--limit")
    _positive(args.particles, "--particles")
    for flag in ("iterations", "restart_iterations"):
        if getattr(args, flag) < 0:
            raise InputError(f"--{flag.replace('_', '-')} must be >= 0, got {getattr(args, flag)}", "pass 0 or more")
    _device(args.device)
    runs.check_out(args.out, args.overwrite)
    out = Path(args.out)
    shared = ["--seed", str(args.seed), "--device", args.device]
    ds, model = args.dataset, DEMO_MODELS[args.dataset]
    data_args = ["--dataset", ds, "--model", model] + (["--data-root", str(args.data_root)] if args.data_root else [])
    from . import data

    data.load(ds, "test", root=args.data_root)  # one line naming where it looked when absent
    steps = [
        ["influence", *data_args, "--split", "test", "--limit", str(args.limit),
         "--top", "12", "--out", str(out / "influence")],
        ["attack", *data_args, "--split", "test", "--limit", str(args.limit),
         "--select", "fi", "--tau", "0.01", "--fi-threshold", "0.01", *DEMO_SELECTION[ds],
         "--bounds", "paper", "--eps", "0.15",
         "--particles", str(args.particles), "--iterations", str(args.iterations),
         "--restart-iterations", str(args.restart_iterations), "--out", str(out / "attack")],
        ["report", str(out / "influence"), str(out / "attack"), "--out", str(out / "report.html")],
    ]
    if args.overwrite:  # only what an earlier demo wrote: the three outputs below
        import shutil

        for name in ("influence", "attack"):
            if (out / name).is_dir():
                shutil.rmtree(out / name)
        (out / "report.html").unlink(missing_ok=True)
    t0 = time.perf_counter()
    for step in steps:
        argv = step + (shared if step[0] != "report" else [])
        # With --json, stdout carries only the final JSON; the steps talk on stderr.
        with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):
            print(f"\n$ infoswarm {shlex.join(argv)}", flush=True)
            status = main(argv)
        if status != 0:
            raise InputError(f"demo step `infoswarm {step[0]}` failed (exit {status})", "see the message above")
    att = json.loads((out / "attack" / "summary.json").read_text())
    headline = {
        "report": str(out / "report.html"),
        "dataset": ds, "model": model,
        "vulnerable_images": f"{att['selected']} of {att['candidates']} {ds} test images are correctly classified "
                             f"with image FI >= 0.01",
        "success_rate": att["success_rate"],
        "pixels_per_image": att["pixel_l0_mean"],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if args.json:
        print(json.dumps(headline, indent=2))
    else:
        print(f"\nreport: {headline['report']}")
        print(f"  1. {headline['vulnerable_images']}")
        print(f"  2. mFI-PSO fooled {100 * att['success_rate']:.1f} % of them within L-inf 0.15")
        print(f"  3. {att['pixel_l0_mean']:.0f} pixels changed per image on average "
              f"(mean L-inf {att['linf_success']['mean'] or 0:.3f} on successes)")
        print(f"done in {headline['seconds']:.0f}s")
    return 0
