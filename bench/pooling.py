"""Benchmark: the zoo models' max-pooling without autograd, strided maxima against ``max_pool2d``.

``infoswarm.models.max_pool2`` / ``global_max`` compute 2×2 and global max-pooling as elementwise
maxima of strided views when no gradient flows (the attacks' queries); this measures what that
buys against torch's ``F.max_pool2d`` / ``F.adaptive_max_pool2d`` (the code before), by swapping
the two functions in the module, alternately, in one process:

* forward passes under ``torch.no_grad`` of the zoo models at several batch sizes (ms per call,
  median over ``--repeats`` timed loops), and that the logits are bit for bit the same;
* one attack end to end: SparseSwarm (default settings, k = 10, ``--budget`` queries) on the first
  ``--images`` correctly classified test images of each model (wall seconds, median over
  ``--repeats``), and that it returns the same images and query counts either way.

    python bench/pooling.py --models mnist-cnn,cifar10-cnn --out BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from attack import fmt_rate, images_of  # noqa: E402

from infoswarm import models  # noqa: E402
from infoswarm.attacks import SparseSwarm  # noqa: E402

from common import REPO, command_line, machine_line, md_table, replace_section  # noqa: E402

FAST = (models.max_pool2, models.global_max)
SLOW = (lambda x: F.max_pool2d(x, 2), lambda x: F.adaptive_max_pool2d(x, 1).flatten(1))


def use(fns: tuple[Callable[..., Any], Callable[..., Any]]) -> None:
    models.max_pool2, models.global_max = fns


def timed(fn: Callable[[], Any], loops: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(loops):
        fn()
    return (time.perf_counter() - t0) / loops


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="mnist-cnn,cifar10-cnn")
    ap.add_argument("--batches", default="16,64,256,1024")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--section", default="speed-pooling")
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    machine = machine_line()
    started = time.perf_counter()
    fwd_rows: list[list[Any]] = []
    att_rows: list[list[Any]] = []
    for spec in args.models.split(","):
        model, x, y, _ = images_of(spec, args.images)
        gen = torch.Generator().manual_seed(0)
        for b in (int(s) for s in args.batches.split(",")):
            xb = torch.rand((b, *x.shape[1:]), generator=gen)
            xb[:, :, : x.shape[2] // 3] = 0                          # flat regions, as in real images
            loops = max(2, 2048 // b)
            t: dict[str, list[float]] = {"slow": [], "fast": []}
            out: dict[str, torch.Tensor] = {}
            for r in range(args.repeats):
                for name in (("slow", "fast") if r % 2 == 0 else ("fast", "slow")):
                    use(SLOW if name == "slow" else FAST)
                    with torch.no_grad():
                        t[name].append(timed(lambda m=model, v=xb: m(v), loops))
                        out[name] = model(xb)
            same = torch.equal(out["slow"], out["fast"])
            ms = {k: 1000 * statistics.median(v) for k, v in t.items()}
            fwd_rows.append([spec, b, f"{ms['slow']:.2f}", f"{ms['fast']:.2f}", f"{ms['slow'] / ms['fast']:.2f}",
                             "yes" if same else "**NO**"])
            print(fwd_rows[-1], flush=True)
        w: dict[str, list[float]] = {"slow": [], "fast": []}
        res: dict[str, Any] = {}
        for r in range(args.repeats):
            for name in (("slow", "fast") if r % 2 == 0 else ("fast", "slow")):
                use(SLOW if name == "slow" else FAST)
                t0 = time.perf_counter()
                res[name] = SparseSwarm(model, pixels=10, budget=args.budget, eps=1.0, seed=0)(x, y)
                w[name].append(time.perf_counter() - t0)
        same = (torch.equal(res["slow"].x_adv, res["fast"].x_adv)
                and torch.equal(res["slow"].queries, res["fast"].queries))
        s = {k: statistics.median(v) for k, v in w.items()}
        att_rows.append([spec, len(x), fmt_rate(int(res["fast"].success.sum()), len(x)), f"{s['slow']:.1f}", f"{s['fast']:.1f}",
                         f"{s['slow'] / s['fast']:.2f}", "yes" if same else "**NO**"])
        print(att_rows[-1], flush=True)
        use(FAST)
        write(args, argv, machine, fwd_rows, att_rows, started)
    return 0


def write(args: argparse.Namespace, argv: list[str] | None, machine: str, fwd_rows: list[list[Any]],
          att_rows: list[list[Any]], started: float) -> None:
    mins = (time.perf_counter() - started) / 60
    body = "\n".join([
        f"## Speed: max-pooling without autograd (`bench/pooling.py`, section {args.section})", "",
        f"{machine}. Whole run: {mins:.0f} min.",
        f"Command: `{command_line('bench/pooling.py', argv)}`.", "",
        "`before`: `F.max_pool2d(x, 2)` and `F.adaptive_max_pool2d(x, 1)` in the zoo models (the code before); "
        "`after`: `infoswarm.models.max_pool2` / `global_max` (elementwise maxima of strided views when no "
        "gradient flows; with a gradient they still call torch's pooling, so training and gradient passes are "
        "unchanged). Both run in one process, alternating, on the shipped weights; medians over "
        f"{args.repeats} timed loops. `same` = the logits (forward) or the adversarial images and query counts "
        "(attack) are bit for bit equal.", "",
        "Forward passes under `torch.no_grad` (uniform random images with a flat band, ms per call):", "",
        md_table(["model", "batch", "before ms", "after ms", "speed-up", "same logits"], fwd_rows), "",
        f"SparseSwarm (defaults, k = 10, untargeted, {args.budget} queries) on the first correctly classified "
        "test images (a speed table: the success rates with their random control are in sections wall and "
        "attack-spgd-*):", "",
        md_table(["model", "images", "misclassified (n/N = rate [95 % Wilson CI])", "before s", "after s", "speed-up", "same result"], att_rows)])
    replace_section(args.out, args.section, body)


if __name__ == "__main__":
    raise SystemExit(main())
