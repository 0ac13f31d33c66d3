"""Benchmark: sparse attacks at equal pixel count k and query budget, with a random control.

Methods (each wrapped by a counter that times the model's forward passes):
  sparse-swarm: infoswarm's default sparse attack (SparseSwarm, its default settings);
  sparse-rs: our Sparse-RS (the reference query attack);
  pgd0: white-box L0 PGD (restarts of 20 steps, steps × restarts + 1 ≤ budget);
  mfipso-paper: the paper's mFI-PSO at equal k (exact-FI pixels, margin-free paper fitness,
      canonical PSO, 50 particles, half the iterations before the paper's restart, half after);
  random: the control — the same k and box, k uniform random locations at random box corners,
      no search (one query; SparseSwarm with queries=1).
Every image is a correctly classified test image (the first N); pixel values free in [0, 1]
(eps = 1, pure L0). Untargeted: success = misclassified. Targeted: a random target ≠ the label
per image (seeded), success = the target is predicted. Success is re-checked here (prediction on
the returned image and at most k changed pixel locations), not trusted from the attack.

    python bench/attack.py --models mnist-cnn,fashion-cnn --images 100 --ks 1,5,10,20 --budget 1000

``--ablation`` runs only SparseSwarm's prior × swarm-size table (k = 10, first model,
untargeted) and writes it to its own section.
The peers (torchattacks OnePixel, ART PixelAttack) are not part of this script.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, command_line, machine_line, md_table, replace_section  # noqa: E402

from infoswarm import data, zoo  # noqa: E402
from infoswarm.attacks import MFIPSO, PGD0, SparseRS, SparseSwarm  # noqa: E402
from infoswarm.attacks.base import probs_of  # noqa: E402
from infoswarm.attacks.result import wilson  # noqa: E402

METHODS = ("sparse-swarm", "sparse-rs", "pgd0", "mfipso-paper", "random")


class Counted(nn.Module):
    """Times the forward passes of the wrapped model."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.forward_seconds = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        out = self.inner(x)
        self.forward_seconds += time.perf_counter() - t0
        return out


def make(name: str, model: nn.Module, k: int, budget: int, target: Any, seed: int, **kw: Any) -> Callable[..., Any]:
    if name == "sparse-swarm":
        return SparseSwarm(model, pixels=k, queries=budget, eps=1.0, target=target, seed=seed, **kw)
    if name == "random":
        return SparseSwarm(model, pixels=k, queries=1, eps=1.0, target=target, seed=seed, prior="uniform")
    if name == "sparse-rs":
        return SparseRS(model, pixels=k, queries=budget, eps=1.0, target=target, seed=seed)
    if name == "pgd0":
        steps = min(20, budget - 1)
        return PGD0(model, pixels=k, eps=1.0, steps=steps, restarts=max(1, (budget - 1) // steps),
                    target=target, seed=seed)
    if name == "mfipso-paper":
        particles = 50
        iters = max(1, budget // (2 * particles) - 1)
        return MFIPSO(model, pixels=k, eps=1.0, target=target, particles=particles, iterations=iters,
                      restart_iterations=iters, selection="fi", seed=seed)
    raise ValueError(name)


def run(name: str, counted: Counted, model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int,
        budget: int, target: torch.Tensor | None, seed: int, **kw: Any) -> dict[str, Any]:
    attack = make(name, counted, k, budget, target, seed, **kw)
    counted.forward_seconds = 0.0
    t0 = time.perf_counter()
    res = attack(x, y)
    wall = time.perf_counter() - t0
    pred = probs_of(model, res.x_adv.clamp(0, 1)).argmax(1)
    l0_ok = (res.x_adv != x).any(1).flatten(1).sum(1) <= k
    hit = (pred == target) if target is not None else (pred != y)
    succ = hit & l0_ok
    wrong = (pred != y) & l0_ok
    n = len(x)
    q = res.queries.double()
    cap = 1 if name == "random" else budget
    return {"method": name, "k": k, "n": n, "succ": int(succ.sum()), "wrong": int(wrong.sum()),
            "median_q": float(q[succ].median()) if succ.any() else float("nan"),
            "mean_q_fail_at_budget": float(torch.where(succ, q, torch.full_like(q, cap)).mean()),
            "max_q": int(q.max()), "grad_evals": float(res.grad_evals.double().mean()),
            "s_per_image": wall / n, "forward_share": counted.forward_seconds / wall if wall else float("nan"),
            "l0_mean": float(res.pixel_l0.double().mean())}


def fmt_rate(s: int, n: int) -> str:
    lo, hi = wilson(s, n)
    return f"{s}/{n} = {s / n:.2f} [{lo:.2f}, {hi:.2f}]"


def row_cells(r: dict[str, Any]) -> list[str]:
    med = "—" if r["median_q"] != r["median_q"] else f"{r['median_q']:.0f}"
    return [fmt_rate(r["succ"], r["n"]), f"{r['wrong'] / r['n']:.2f}", med, f"{r['mean_q_fail_at_budget']:.0f}",
            f"{r['grad_evals']:.0f}", f"{r['s_per_image']:.3f}", f"{r['forward_share']:.2f}"]


HEADER = ["success (n/N = rate [95 % Wilson CI])", "misclassified", "median queries (successes)",
          "mean queries (failures at budget)", "grad evals / image", "s / image", "forward share"]


def images_of(model_name: str, n: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor, str]:
    model = zoo.load(model_name).eval()
    ds = zoo.ZOO[model_name].dataset if model_name in zoo.ZOO else "mnist"
    x8, y = data.load(ds, "test")
    x = data.to_float(x8[: 4 * n])
    y = y[: 4 * n]
    ok = probs_of(model, x).argmax(1) == y
    return model, x[ok][:n], y[ok][:n], ds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="mnist-cnn,fashion-cnn", help="zoo names, comma-separated")
    ap.add_argument("--images", type=int, default=100, help="correctly classified test images per model")
    ap.add_argument("--ks", default="1,5,10,20")
    ap.add_argument("--budget", type=int, default=1000, help="queries per image")
    ap.add_argument("--modes", default="untargeted,targeted")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--ablation", action="store_true",
                    help="only SparseSwarm's prior x swarm size at k=10 (first model), in its own section")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ks = [int(v) for v in args.ks.split(",")]
    machine = machine_line()
    started = time.perf_counter()
    blocks = []
    for model_name in ([] if args.ablation else args.models.split(",")):
        model, x, y, ds = images_of(model_name, args.images)
        counted = Counted(model).eval()
        g = torch.Generator().manual_seed(args.seed)
        t_rand = (y + torch.randint(1, 10, y.shape, generator=g)) % 10
        for mode in args.modes.split(","):
            target = t_rand if mode == "targeted" else None
            rows = []
            for k in ks:
                for name in args.methods.split(","):
                    r = run(name, counted, model, x, y, k, args.budget, target, args.seed)
                    print(model_name, mode, r, flush=True)
                    rows.append([k, name, *row_cells(r)])
                    write(args, argv, machine, started, blocks + [
                        f"### {model_name} ({ds}), {mode}, budget {args.budget}\n\n"
                        + md_table(["k", "method", *HEADER], rows)], done=False)
            blocks.append(f"### {model_name} ({ds}), {mode}, budget {args.budget}\n\n"
                          + md_table(["k", "method", *HEADER], rows))
            write(args, argv, machine, started, blocks, done=False)
    if args.ablation:
        model_name = args.models.split(",")[0]
        model, x, y, ds = images_of(model_name, args.images)
        counted = Counted(model).eval()
        rows = []
        for prior in ("uniform", "saliency", "fi", "fi-eps"):
            for p in (1, 4, 16):
                r = run("sparse-swarm", counted, model, x, y, 10, args.budget, None, args.seed,
                        prior=prior, particles=p)
                print("ablation", prior, p, r, flush=True)
                rows.append([prior, p, *row_cells(r)])
                write(args, argv, machine, started, blocks + [md_table(["prior", "particles", *HEADER], rows)],
                      done=False)
        blocks.append(f"### Ablation: SparseSwarm prior × swarm size ({model_name}, k = 10, untargeted, "
                      f"budget {args.budget})\n\n" + md_table(["prior", "particles", *HEADER], rows))
    write(args, argv, machine, started, blocks, done=True)
    return 0


def write(args: argparse.Namespace, argv: list[str] | None, machine: str, started: float,
          blocks: list[str], done: bool) -> None:
    """(Re)write the section (``attack``, or ``attack-ablation``); a run in progress says so."""
    minutes = (time.perf_counter() - started) / 60
    state = f"Whole run: {minutes:.0f} min." if done else f"PARTIAL: {minutes:.0f} min so far, run still going."
    body = "\n".join([
        "### SparseSwarm ablation (`bench/attack.py --ablation`)" if args.ablation else
        "## Sparse attacks at equal k and budget (`bench/attack.py`)", "",
        f"Machine: {machine}. {state}",
        f"Command: `{command_line('bench/attack.py', argv)}`.",
        f"Images: the first {args.images} correctly classified test images of each model's dataset; pixel "
        "values free in [0, 1] (eps = 1, pure L0); one run per cell (seed "
        f"{args.seed}). Success is re-checked by the benchmark: untargeted = misclassified, targeted = a "
        "random target ≠ label (seeded) is predicted, and at most k pixel locations changed. "
        "`misclassified` is the share predicted ≠ label (the paper's measure). Mean queries count "
        "every failure at the full budget. `random` is the control: k random locations at random "
        "corners, no search. Grad evals are backward passes (PGD0: every step; SparseSwarm: its prior).",
        "", *[b + "\n" for b in blocks]])
    replace_section(args.out, "attack-ablation" if args.ablation else "attack", body)


if __name__ == "__main__":
    from common import start_cpu, sys_user_guard  # bench/common.py: tune_cpu, and the sys/user guard

    start_cpu()
    code = main()
    sys_user_guard("bench/attack.py, whole run")
    sys.exit(code)
