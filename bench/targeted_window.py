"""Benchmark: targeted SparseSwarm with a required target probability (issue 21, part 4).

Success = the target is predicted AND p_target ≥ ``--min-prob`` (0.9), with at most k changed
pixel locations, re-checked here on the returned images (not trusted from the attack). Images:
the first N correctly classified test images of the model's dataset (``bench/attack.py``'s
``images_of``); targets: bench/attack.py's rule, a random class ≠ the label per image
(``(y + randint(1, 10)) % 10`` from a generator seeded with ``--seed``). Pixel values free in
[0, 1] (eps = 1, pure L0).

Rows: ``sparse-swarm`` (the default attack; in window runs its gain map follows the incumbent and
the least useful pixels leave), ``sparse-swarm, window off`` (the same attack with that rule
switched off: the map stays the clean image's and the leaving pixel is uniform — the behaviour
before the fix), ``sparse-rs`` (reference query attack) and ``random`` (the control: k random
locations at random corners, one query). ``--methods`` picks a subset.

    python bench/targeted_window.py --images 100 --budget 10000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from attack import fmt_rate, images_of  # noqa: E402

from infoswarm.attacks import SPGD, SparseRS, SparseSwarm  # noqa: E402
from infoswarm.attacks.base import probs_of  # noqa: E402

from common import REPO, command_line, machine_line, md_table, replace_section  # noqa: E402

METHODS = ("sparse-swarm", "window-off", "sparse-rs", "random")
EXTRA = ("uniform", "spgd")
LABELS = {"sparse-swarm": "sparse-swarm", "window-off": "sparse-swarm, window off (before the fix)",
          "sparse-rs": "sparse-rs", "random": "random (control)", "uniform": "sparse-swarm, uniform prior",
          "spgd": "sPGD cascade"}


def build(name: str, model: torch.nn.Module, k: int, budget: int, target: torch.Tensor, min_prob: float,
          seed: int, spgd_iterations: int = 3000) -> Any:
    w: dict[str, Any] = dict(pixels=k, eps=1.0, target=target, min_prob=min_prob, seed=seed)
    if name == "sparse-swarm":
        return SparseSwarm(model, budget=budget, **w)
    if name == "window-off":
        att = SparseSwarm(model, budget=budget, **w)
        att.window_refresh, att.window_leave = 10 ** 9, k          # no refresh, uniform leaving
        return att
    if name == "sparse-rs":
        return SparseRS(model, budget=budget, **w)
    if name == "random":
        return SparseSwarm(model, budget=1, prior="uniform", **w)
    if name == "uniform":
        return SparseSwarm(model, budget=budget, prior="uniform", **w)
    if name == "spgd":                              # white-box reference: its own step count, not the budget
        return SPGD(model, iterations=spgd_iterations, **w)
    raise SystemExit(f"unknown method {name!r}; use {', '.join(METHODS + EXTRA)}")


def targets_for(y: torch.Tensor, seed: int) -> torch.Tensor:
    """bench/attack.py's target rule: a random class ≠ the label per image, (y + randint(1, 10)) % 10
    from a generator seeded with ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return (y + torch.randint(1, 10, y.shape, generator=g)) % 10


def window_hits(model: torch.nn.Module, x_adv: torch.Tensor, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor,
                k: int, min_prob: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Re-checked on the returned images x_adv [N, C, H, W] (clean x, labels y, targets t): (hit [N]:
    argmax = target, p_target ≥ min_prob and at most k changed locations; reach [N]: the target
    predicted, at most k changed; misclassified [N]: argmax ≠ label, at most k changed; p_target [N])."""
    p = probs_of(model, x_adv.clamp(0, 1))
    pred, pt = p.argmax(1), p.gather(1, t.view(-1, 1)).view(-1)
    l0_ok = (x_adv != x).any(1).flatten(1).sum(1) <= k
    return (pred == t) & (pt >= min_prob) & l0_ok, (pred == t) & l0_ok, (pred != y) & l0_ok, pt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="mnist-cnn")
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--pixels", type=int, default=20)
    ap.add_argument("--budget", type=int, default=10000)
    ap.add_argument("--min-prob", type=float, default=0.9)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--spgd-iterations", type=int, default=3000, help="steps per sPGD variant (method spgd)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--section", default="targeted-window")
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    machine = machine_line()
    model, x, y, ds = images_of(args.model, args.images)
    t = targets_for(y, args.seed)
    k, n = args.pixels, len(x)
    rows: list[list[Any]] = []
    misses: list[str] = []
    started = time.perf_counter()
    for name in args.methods.split(","):
        att = build(name, model, k, args.budget, t, args.min_prob, args.seed, args.spgd_iterations)
        t0 = time.perf_counter()
        res = att(x, y)
        wall = time.perf_counter() - t0
        hit, reach, wrong, pt = window_hits(model, res.x_adv, x, y, t, k, args.min_prob)
        q = res.queries.double()
        med = f"{q[hit].median().item():.0f}" if hit.any() else "—"
        fail_pt = pt[~hit]
        fails = (f"{fail_pt.median().item():.2f} (reach the target: {int(reach[~hit].sum())})"
                 if len(fail_pt) else "—")
        rows.append([LABELS[name], fmt_rate(int(hit.sum()), n), fmt_rate(int(reach.sum()), n),
                     fmt_rate(int(wrong.sum()), n), med, f"{res.grad_evals.double().mean():.1f}",
                     fails, f"{wall:.0f}", f"{wall / n:.2f}"])
        print(rows[-1], flush=True)
        miss = (~hit).nonzero().view(-1).tolist()
        misses.append(f"- {LABELS[name]}: " + (", ".join(f"{int(y[i])}→{int(t[i])} ({pt[i].item():.2f})" for i in miss)
                                               if name != "random" and miss else ("none" if not miss else "all")))
        write(args, argv, machine, rows, started, ds, n, done=False, misses=misses)
    write(args, argv, machine, rows, started, ds, n, done=True, misses=misses)
    return 0


def write(args: argparse.Namespace, argv: list[str] | None, machine: str, rows: list[list[Any]], started: float,
          ds: str, n: int, done: bool, misses: list[str] | None = None) -> None:
    minutes = (time.perf_counter() - started) / 60
    state = f"Whole run: {minutes:.1f} min." if done else f"PARTIAL: {minutes:.1f} min so far, run still going."
    head = ["method", f"target hit with p ≥ {args.min_prob} (n/N = rate [95 % Wilson CI])",
            "target predicted (any p)", "misclassified", "median queries (hits)", "backward passes / image (mean)",
            "median p_target of the misses", "wall s", "s / image"]
    body = "\n".join([
        f"## Targeted with a probability window (`bench/targeted_window.py`, section {args.section})", "",
        f"Machine: {machine}. {state}",
        f"Command: `{command_line('bench/targeted_window.py', argv)}`.",
        f"{args.model} ({ds}): the first {n} correctly classified test images; k = {args.pixels} pixels, "
        f"{args.budget} queries per image, `min_prob {args.min_prob}`; target = a random class ≠ the label per "
        f"image (bench/attack.py's rule, seed {args.seed}). A hit needs argmax = target and p_target ≥ "
        f"{args.min_prob}, re-checked on the returned images, with at most k changed pixels. `window off` is the "
        "default attack with the window rule disabled (the gain map stays the clean image's, the leaving "
        "pixel is uniform), i.e. the behaviour before the fix; `random` is the control (k random locations "
        "at random corners, one query). Backward passes are outside the query budget (SparseSwarm's "
        "prior and, with the window, its refreshes at the incumbent). Extra rows when asked: `uniform` (the default "
        f"attack with the uniform prior: queries only), `spgd` (the sPGD cascade, {args.spgd_iterations} steps per "
        "variant, a white-box reference that does not follow the query budget).", "",
        md_table(head, rows), "",
        "The misses of each method (label→target, and p_target on the returned image):", "",
        *(misses or [])])
    replace_section(args.out, args.section, body)


if __name__ == "__main__":
    raise SystemExit(main())
