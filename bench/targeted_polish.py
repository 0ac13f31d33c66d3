"""Benchmark: can free pixel values lift p_target on the default attack's targeted-window misses?
(issue 21, part 4)

SparseSwarm searches corner values (each changed pixel at 0 or 1). On the images where the default
attack (``min_prob`` 0.9, k pixels, ``--budget`` queries) misses, this keeps the support it found
and maximises log p_target over the values of those pixels in [0, 1] by signed-gradient ascent
(``--steps`` steps of ``--lr``; white-box, outside any query budget), from the attack's corner
values and from mid-grey. If p_target stays below ``min_prob`` whatever the values, the miss is a
matter of which pixels, not of their values. Targets as in bench/targeted_window.py.

    python bench/targeted_polish.py --images 100 --budget 10000
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from attack import fmt_rate, images_of  # noqa: E402
from targeted_window import targets_for, window_hits  # noqa: E402

from infoswarm.attacks import SparseSwarm  # noqa: E402

from common import REPO, command_line, machine_line, md_table, replace_section  # noqa: E402


def polish(model: torch.nn.Module, x: torch.Tensor, start: torch.Tensor, mask: torch.Tensor, t: torch.Tensor,
           steps: int, lr: float) -> torch.Tensor:
    """The best p_target [N] over ``steps`` signed-gradient steps on the values inside ``mask``
    ([N, 1, H, W], 1 = a changed pixel), from ``start`` ([N, C, H, W] in [0, 1])."""
    v = start.clone().requires_grad_(True)
    best = torch.zeros(len(x))
    for _ in range(steps):
        logp = torch.log_softmax(model(x * (1 - mask) + v * mask), 1).gather(1, t.view(-1, 1)).squeeze(1)
        best = torch.maximum(best, logp.detach().exp())
        (g,) = torch.autograd.grad(logp.sum(), v)
        with torch.no_grad():
            v += lr * g.sign()
            v.clamp_(0, 1)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="mnist-cnn")
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--pixels", type=int, default=20)
    ap.add_argument("--budget", type=int, default=10000)
    ap.add_argument("--min-prob", type=float, default=0.9)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--section", default="targeted-polish")
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    machine, started = machine_line(), time.perf_counter()
    model, x, y, ds = images_of(args.model, args.images)
    t = targets_for(y, args.seed)
    k = args.pixels
    res = SparseSwarm(model, target=t, budget=args.budget, seed=args.seed, pixels=k, eps=1.0,
                      min_prob=args.min_prob)(x, y)
    hit, _, _, pt = window_hits(model, res.x_adv, x, y, t, k, args.min_prob)
    miss = (~hit).nonzero().view(-1)
    xs, ts, xa = x[miss], t[miss], res.x_adv[miss]
    mask = (xa != xs).any(1, keepdim=True).float()
    rows = [["the default attack's corner values", fmt_rate(int((pt[miss] >= args.min_prob).sum()), len(miss)),
             f"{pt[miss].max().item():.3f}", f"{pt[miss].median().item():.3f}"]]
    for name, start in (("free values from the attack's corners", xa),
                        ("free values from mid-grey", xs * (1 - mask) + 0.5 * mask)):
        best = polish(model, xs, start, mask, ts, args.steps, args.lr)
        rows.append([name, fmt_rate(int((best >= args.min_prob).sum()), len(miss)), f"{best.max().item():.3f}",
                     f"{best.median().item():.3f}"])
        print(rows[-1], flush=True)
    body = "\n".join([
        f"## Targeted with a probability window: free values on the misses' supports (`bench/targeted_polish.py`, "
        f"section {args.section})", "",
        f"{machine}. Whole run: {(time.perf_counter() - started) / 60:.0f} min.",
        f"Command: `{command_line('bench/targeted_polish.py', argv)}`.", "",
        f"{args.model} ({ds}), the first {len(x)} correctly classified test images, k = {k}, `min_prob "
        f"{args.min_prob}`, targets as in section targeted-window. The default SparseSwarm ({args.budget} queries) "
        f"hits {int(hit.sum())}/{len(x)}. On its {len(miss)} misses the support it found (at most k pixels) is kept "
        f"and the values of those pixels are optimised freely in [0, 1] ({args.steps} signed-gradient steps of "
        f"{args.lr} on log p_target, white-box). A hit: p_target ≥ min_prob at some step.", "",
        md_table(["values on the found support", "hits (n/N [95 % CI])", "best p_target", "median p_target"], rows)])
    replace_section(args.out, args.section, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
