"""The ``demo`` command: the main job on the built-in default (MNIST test split, shipped
``mnist-cnn``) — influence → select → attack → report — by running the ordinary commands, which
it prints so they can be re-run or changed one at a time."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import InputError
from ..stats import rate_text
from .common import common_args, note, positive, torch_device

run_command: Callable[[Sequence[str] | None], int] | None = None
"""The ``infoswarm`` entry point; :mod:`infoswarm.cli` sets it, so that this module does not
import its own package (the demo runs the ordinary commands through it)."""

DEMO_MODELS = {"mnist": "mnist-cnn", "fashion-mnist": "fashion-cnn", "cifar10": "cifar10-cnn"}
"""The shipped model the demo attacks on each dataset."""


def add_parser(sub: Any) -> None:

    p = sub.add_parser(
        "demo", help="influence -> select -> attack (SparseSwarm, random control, paper preset) -> report",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Runs `infoswarm influence`, then `infoswarm attack` three times on the vulnerable images "
                    "(correct, image FI >= 0.01): SparseSwarm at --pixels k (values free in [0, 1], --budget "
                    "queries, untargeted); the random control (k random pixels at random values, no search); "
                    "and the paper's mFI-PSO (--preset paper, with a reduced swarm); then `infoswarm report`, "
                    "all into --out, printing each command first. Ends with the report's path and the three "
                    "misclassification rates side by side. A few minutes on 2 cores.",
        epilog="example:\n  infoswarm demo --out runs/demo --overwrite")
    g = p.add_argument_group("demo")
    g.add_argument("--dataset", default="mnist", choices=list(DEMO_MODELS),
                   help="mnist (default, shipped mnist-cnn), fashion-mnist (fashion-cnn) or cifar10 "
                        "(cifar10-cnn; CIFAR-10 must be on disk: --data-root or $INFOSWARM_DATA)")
    g.add_argument("--data-root", default=None, help="extra folder to look for the dataset in first")
    g.add_argument("--limit", type=int, default=2000, help="test images scanned (default 2000)")
    g.add_argument("--pixels", type=int, default=10, help="k pixels SparseSwarm and the control change (default 10)")
    g.add_argument("--budget", type=int, default=1000, help="SparseSwarm's queries per image (default 1000)")
    g.add_argument("--particles", type=int, default=100, help="paper preset: swarm size (default 100; paper 500)")
    g.add_argument("--iterations", type=int, default=10, help="paper preset: swarm iterations (default 10)")
    g.add_argument("--restart-iterations", type=int, default=10,
                   help="paper preset: restart iterations (default 10; paper 40)")
    common_args(p)
    p.set_defaults(func=cmd_demo)


ATTACK_RUNS = (("attack", "SparseSwarm"), ("attack-random", "random control"), ("attack-paper", "paper mFI-PSO"))
"""The demo's attack folders and how the headline names them."""


def _steps(args: argparse.Namespace, out: Path) -> list[list[str]]:
    """The commands the demo runs, writing under ``out``."""
    ds, model = args.dataset, DEMO_MODELS[args.dataset]
    data_args = ["--dataset", ds, "--model", model] + (["--data-root", str(args.data_root)] if args.data_root else [])
    select = [*data_args, "--split", "test", "--limit", str(args.limit), "--select", "fi", "--tau", "0.01"]
    k = ["--pixels", str(args.pixels)]
    return [
        ["influence", *data_args, "--split", "test", "--limit", str(args.limit),
         "--top", "12", "--out", str(out / "influence")],
        ["attack", *select, *k, "--budget", str(args.budget), "--out", str(out / "attack")],
        ["attack", *select, *k, "--prior", "uniform", "--budget", "1", "--out", str(out / "attack-random")],
        ["attack", *select, "--preset", "paper", "--particles", str(args.particles),
         "--iterations", str(args.iterations), "--restart-iterations", str(args.restart_iterations),
         "--out", str(out / "attack-paper")],
        ["report", str(out / "influence"), *[str(out / d) for d, _ in ATTACK_RUNS], "--out", str(out / "report.html")],
    ]


def _check_bounds(args: argparse.Namespace, x8: Any) -> None:
    """Refuse a demo that would run longer than a day (the model timed on the first images)."""
    from .. import zoo
    from ..checks import check_model, check_work, unit_float

    hw = int(x8.shape[2] * x8.shape[3])
    if args.pixels > hw:
        raise InputError(f"--pixels {args.pixels} exceeds the {x8.shape[2]}x{x8.shape[3]} = {hw} pixels of an image",
                         f"pass at most {hw}")
    model = zoo.load(DEMO_MODELS[args.dataset])
    mc = check_model(model, unit_float(x8[:64]), batch_sizes=(500,), name=DEMO_MODELS[args.dataset])
    per_image = args.budget + 1 + args.particles * (1 + args.iterations + args.restart_iterations)
    check_work(float(per_image) * len(x8), mc.seconds_per_image,
               f"the demo's attacks on up to {len(x8)} images", "lower --budget, --particles, --iterations, "
               "--restart-iterations or --limit")


def _rate(s: dict[str, Any], count: str, rate: str, ci: str) -> str:
    """"n/N = r % [95 % CI lo, hi]" from an attack summary's keys ``count``, ``rate``, ``ci``."""
    return rate_text(s[count], s["images"], s[rate], s[ci], label="95 % CI")


def cmd_demo(args: argparse.Namespace) -> int:
    from .. import runs
    main = run_command
    if main is None:
        raise RuntimeError("infoswarm.cli sets demo.run_command when it is imported")

    # Checked here, so that bad input gives one line and not a failed step plus its message.
    for flag in ("limit", "pixels", "budget", "particles", "batch_size"):
        positive(getattr(args, flag), "--" + flag.replace("_", "-"))
    if args.batch_size is not None:
        note("demo runs each command at its own batch size; --batch-size is ignored")
    for flag in ("iterations", "restart_iterations"):
        if getattr(args, flag) < 0:
            raise InputError(f"--{flag.replace('_', '-')} must be >= 0, got {getattr(args, flag)}", "pass 0 or more")
    torch_device(args.device)
    runs.check_out(args.out, args.overwrite)
    out = Path(args.out)
    from .. import data

    x8, _ = data.load(args.dataset, "test", root=args.data_root)  # one line naming where it looked when absent
    _check_bounds(args, x8[: args.limit])
    t0 = time.perf_counter()
    # Built in a hidden temporary folder beside --out and moved into place when every step has
    # succeeded (a failed or killed demo leaves the old --out, or nothing); the commands and
    # messages are printed with the final paths.
    with runs.atomic_dir(args.out, args.overwrite, kind="demo") as tmp:
        for step in _steps(args, tmp):
            argv = step + (["--seed", str(args.seed), "--device", args.device] if step[0] != "report" else [])
            shown = shlex.join(argv).replace(str(tmp), str(out))
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                status = main(argv)
            # With --json, stdout carries only the final JSON; the steps talk on stderr.
            print(f"\n$ infoswarm {shown}\n" + buf.getvalue().replace(str(tmp), str(out)).rstrip("\n"),
                  file=sys.stderr if args.json else sys.stdout, flush=True)
            if status != 0:
                raise InputError(f"demo step `infoswarm {step[0]}` failed (exit {status})", "see the message above")
        page = tmp / "report.html"
        page.write_text(page.read_text(encoding="utf-8").replace(str(tmp), str(out)), encoding="utf-8")
        runs_ = {d: json.loads((tmp / d / "summary.json").read_text()) for d, _ in ATTACK_RUNS}
    att = runs_["attack"]
    headline = {
        "report": str(out / "report.html"),
        "dataset": args.dataset, "model": DEMO_MODELS[args.dataset],
        "vulnerable_images": f"{att['selected']} of {att['candidates']} {args.dataset} test images are correctly "
                             "classified with image FI >= 0.01",
        "attacks": {name: {"folder": str(out / d), "images": s["images"],
                           "misclassified": s["misclassified"], "misclassified_count": s["misclassified_count"],
                           "misclassified_ci95": s["misclassified_ci95"], "pixels_per_image": s["pixel_l0_mean"],
                           "queries_median_success": s["queries_median_success"], "seconds": s["seconds"]}
                    for (d, name), s in zip(ATTACK_RUNS, runs_.values())},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if args.json:
        print(json.dumps(headline, indent=2))
    else:
        rnd, pap = runs_["attack-random"], runs_["attack-paper"]
        print(f"\nreport: {headline['report']}")
        print(f"  1. {headline['vulnerable_images']}")
        print(f"  2. SparseSwarm, {args.pixels} pixels, values free in [0, 1], <= {args.budget} queries: "
              f"misclassified {_rate(att, 'misclassified_count', 'misclassified', 'misclassified_ci95')}, "
              f"median {att['queries_median_success'] or 0:.0f} queries")
        print(f"  3. random control, {args.pixels} random pixels at random values: "
              f"{_rate(rnd, 'misclassified_count', 'misclassified', 'misclassified_ci95')}")
        print(f"  4. paper's mFI-PSO (--preset paper, {args.particles} particles): "
              f"{_rate(pap, 'misclassified_count', 'misclassified', 'misclassified_ci95')} "
              f"with {pap['pixel_l0_mean']:.0f} pixels changed per image (L-inf 0.15)")
        print(f"done in {headline['seconds']:.0f}s")
    return 0
