"""Benchmark: sparse attacks at equal pixel counts k and (about) equal query budgets.

Methods (each wrapped by a counter that records every image the model evaluates and the time
spent in the model's forward pass):
  mfipso-{fi,fi-eps,saliency,random}: infoswarm's MFIPSO with each pixel selection (ablation);
  onepixel (ours) and sparse-rs (ours) when those baselines are present in the package;
  torchattacks OnePixel and ART PixelAttack (real peers; run from an environment that has them,
  e.g. `bench/.venv-peers`, made by `make bench-peers`; skipped with a note otherwise);
  mfipso batch-1 loop: the same attack issuing its queries one image at a time (timed on a few
  images, per image).
All attacks are untargeted with values free in [0, 1] (eps = 1, as one-pixel attacks are),
on the first N correctly classified MNIST test images of the shipped mnist-cnn.

    bench/.venv-peers/bin/python bench/attack.py --images 100 --ks 1,5,20 --out BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from infoswarm import data, zoo
from infoswarm.attacks.base import probs_of
from infoswarm.attacks.mfipso import MFIPSO

START, END = "<!-- bench:attack:start -->", "<!-- bench:attack:end -->"
REPO = Path(__file__).resolve().parents[1]


class Counted(nn.Module):
    """Counts images evaluated (per image of the current attack call) and forward time."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.images = 0
        self.forward_seconds = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        out = self.inner(x)
        self.forward_seconds += time.perf_counter() - t0
        self.images += x.shape[0]
        return out

    def reset(self) -> None:
        self.images, self.forward_seconds = 0, 0.0


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def outcome(model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor, k: int) -> torch.Tensor:
    """Success = misclassified and at most k pixel locations changed (checked here, not trusted)."""
    pred = probs_of(model, x_adv.clamp(0, 1)).argmax(1)
    l0 = (x_adv != x).any(1).flatten(1).sum(1)
    return (pred != y) & (l0 <= k)


def run_ours(name: str, counted: Counted, x: torch.Tensor, y: torch.Tensor, k: int, budget: int,
             seed: int) -> dict[str, Any]:
    particles = 50
    iters = max(1, budget // (2 * particles) - 1)           # half before, half after the restart
    if name.startswith("mfipso-"):
        attack = MFIPSO(counted, pixels=k, eps=1.0, target=None, particles=particles, iterations=iters,
                        restart_iterations=iters, selection=name.split("-", 1)[1], seed=seed)
    elif name == "onepixel":
        from infoswarm.attacks.onepixel import OnePixel

        attack = OnePixel(counted, pixels=k, population=50, iterations=budget // 50 - 1,
                                     eps=1.0, seed=seed)
    elif name == "sparse-rs":
        from infoswarm.attacks.sparse_rs import SparseRS

        attack = SparseRS(counted, pixels=k, queries=budget, eps=1.0, seed=seed)
    else:
        raise ValueError(name)
    counted.reset()
    t0 = time.perf_counter()
    res = attack(x, y)
    wall = time.perf_counter() - t0
    return {"x_adv": res.x_adv, "queries": res.queries.double(), "wall": wall,
            "forward": counted.forward_seconds, "counted": counted.images}


def run_peer(name: str, counted: Counted, x: torch.Tensor, y: torch.Tensor, k: int, budget: int) -> dict[str, Any]:
    """torchattacks / ART, image by image so that queries per image are counted exactly."""
    per_q, advs = [], []
    counted.reset()
    t0 = time.perf_counter()
    if name == "torchattacks":
        import torchattacks

        dims = k * (2 + x.shape[1])
        pop = 200
        steps = max(1, budget // max(pop // dims * dims, dims) - 1)
        attack = torchattacks.OnePixel(counted, pixels=k, steps=steps, popsize=pop, inf_batch=512)
        for i in range(len(x)):
            before = counted.images
            advs.append(attack(x[i: i + 1], y[i: i + 1]).detach())
            per_q.append(counted.images - before)
    elif name == "art":
        from art.attacks.evasion import PixelAttack
        from art.estimators.classification import PyTorchClassifier

        clf = PyTorchClassifier(counted, loss=nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                                nb_classes=10, clip_values=(0.0, 1.0), device_type="cpu")
        iters = max(1, budget // 400 - 1)
        attack = PixelAttack(clf, th=k, es=1, max_iter=iters, targeted=False, verbose=False)
        for i in range(len(x)):
            before = counted.images
            out = attack.generate(x[i: i + 1].numpy(), y=np.eye(10)[y[i: i + 1].numpy()])
            advs.append(torch.from_numpy(out).float())
            per_q.append(counted.images - before)
    else:
        raise ValueError(name)
    wall = time.perf_counter() - t0
    return {"x_adv": torch.cat(advs), "queries": torch.tensor(per_q, dtype=torch.float64), "wall": wall,
            "forward": counted.forward_seconds, "counted": counted.images}


def batch1_loop(counted: Counted, x: torch.Tensor, y: torch.Tensor, k: int, budget: int, seed: int,
                images: int) -> float:
    """mFI-PSO's queries issued one image at a time, one particle per model call: s/image."""

    class OneAtATime(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, xb: torch.Tensor) -> torch.Tensor:
            return torch.cat([self.inner(xb[i: i + 1]) for i in range(xb.shape[0])])

    particles = 50
    iters = max(1, budget // (2 * particles) - 1)
    attack = MFIPSO(OneAtATime(counted), pixels=k, eps=1.0, target=None, particles=particles,
                    iterations=iters, restart_iterations=iters, seed=seed)
    t0 = time.perf_counter()
    for i in range(images):
        attack(x[i: i + 1], y[i: i + 1])
    return (time.perf_counter() - t0) / images


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--ks", default="1,3,5,10,20")
    ap.add_argument("--budget", type=int, default=1000, help="queries per image")
    ap.add_argument("--methods", default="mfipso-fi,mfipso-fi-eps,mfipso-saliency,mfipso-random,onepixel,sparse-rs,torchattacks,art")
    ap.add_argument("--loop-images", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ks = [int(v) for v in args.ks.split(",")]
    model = zoo.load("mnist-cnn")
    x8, y = data.load("mnist", "test")
    x = data.to_float(x8[: 4 * args.images])
    y = y[: 4 * args.images]
    ok = probs_of(model, x).argmax(1) == y
    x, y = x[ok][: args.images], y[ok][: args.images]
    counted = Counted(model).eval()
    rows, notes = [], []

    for k in ks:
        for name in args.methods.split(","):
            try:
                if name in ("torchattacks", "art"):
                    r = run_peer(name, counted, x, y, k, args.budget)
                else:
                    r = run_ours(name, counted, x, y, k, args.budget, args.seed)
            except ImportError as e:
                notes.append(f"{name}: not available here ({e.name}); run from bench/.venv-peers")
                continue
            succ = outcome(model, x, y, r["x_adv"], k)
            q = r["queries"][succ]
            rows.append({"k": k, "method": name, "success": float(succ.double().mean()),
                         "median_q": float(q.median()) if q.numel() else float("nan"),
                         "mean_q": float(r["queries"].mean()), "s_per_image": r["wall"] / len(x),
                         "forward_share": r["forward"] / r["wall"] if r["wall"] else float("nan"),
                         "counted_per_image": r["counted"] / len(x)})
            print(rows[-1], flush=True)
        if "mfipso-fi" in args.methods.split(",") and args.loop_images > 0:
            t_loop = batch1_loop(counted, x, y, k, args.budget, args.seed, args.loop_images)
            batched = next(r for r in rows if r["k"] == k and r["method"] == "mfipso-fi")
            rows.append({"k": k, "method": "mfipso-fi, batch-1 loop", "success": float("nan"),
                         "median_q": float("nan"), "mean_q": float("nan"), "s_per_image": t_loop,
                         "forward_share": float("nan"), "counted_per_image": float("nan"),
                         "speedup": t_loop / batched["s_per_image"]})
            print(rows[-1], flush=True)
    command = "python bench/attack.py " + " ".join(sys.argv[1:] if argv is None else argv)
    write_section(Path(args.out), section(rows, notes, args, command.strip(), len(x)))
    return 0


def section(rows: list[dict[str, Any]], notes: list[str], args: argparse.Namespace, command: str, n: int) -> str:
    lines = [START, "## Sparse attacks at equal k and budget (`bench/attack.py`)", "",
             f"Machine: {cpu_name()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
             f"Python {platform.python_version()}; {datetime.date.today().isoformat()}.",
             f"Command: `{command}`. Model: shipped mnist-cnn; {n} correctly classified MNIST test images "
             f"(the first ones); untargeted; pixel values free in [0, 1]; budget {args.budget} queries "
             "per image (the peers' population sizes make their budgets approximate: the table shows "
             "the queries counted). Success is re-checked here: misclassified with at most k changed "
             "pixel locations. One run per cell (seed 0).", "",
             "| k | method | success rate | median queries (successes) | mean queries | s / image "
             "| forward share of wall time | batch-1 loop / batched |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        def f(v: float, fmt: str) -> str:
            return "—" if v != v else format(v, fmt)
        lines.append(f"| {r['k']} | {r['method']} | {f(r['success'], '.3f')} | {f(r['median_q'], '.0f')} "
                     f"| {f(r['mean_q'], '.0f')} | {r['s_per_image']:.4f} | {f(r['forward_share'], '.2f')} "
                     f"| {format(r['speedup'], '.0f') + '×' if 'speedup' in r else ''} |")
    lines += [""] + [f"- {n_}" for n_ in notes] + [END]
    return "\n".join(lines)


def write_section(path: Path, text: str) -> None:
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    if START in old and END in old:
        new = old[: old.index(START)] + text + old[old.index(END) + len(END):]
    else:
        new = old.rstrip("\n") + "\n\n" + text + "\n"
    path.write_text(new)


if __name__ == "__main__":
    from common import start_cpu, sys_user_guard  # bench/common.py: tune_cpu, and the sys/user guard

    start_cpu()
    code = main()
    sys_user_guard("bench/attack.py, whole run")
    sys.exit(code)
