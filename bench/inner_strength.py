"""How strong is each inner attack of `harden --method sparse` against a model?

    python bench/inner_strength.py --model mnist-cnn-l0 --dataset mnist --images 512 \\
        --attack swap:8:60:uniform --attack pgd0:8:20:uniform --attack spgd:8:20:uniform \\
        --attack swap:96:20:uniform:far --peers 100

Each ``--attack KIND:STEPS:K:PRIOR[:CORNER]`` (CORNER ``gradient``, the default, or ``far``) runs :func:`infoswarm.inner.inner_attack` once on the first
``--images`` test images (one batch, seed 0) and prints the share of correctly classified images
it misleads, n/N with a 95 % Wilson interval, the pixels it changed per image (mean; at most K),
its passes per image and its wall time, beside the
random control (K random locations per image, each channel at a random corner 0 or 1; printed for
every K named). ``--peers Q`` adds, for every K named, the evaluation's query attacks at Q queries
(Sparse-RS with p_init 0.8, SparseSwarm with its uniform and its gain prior; seed 0): the inner
attacks' yardstick at a like number of forward passes. A model that
resists its own training attack but not a stronger one learns little more from the former.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from infoswarm import inner, zoo  # noqa: E402
from infoswarm.data.loader import load, to_float  # noqa: E402
from infoswarm.sparse_hardening import WATCH_ATTACKS, watch_attack  # noqa: E402
from infoswarm.stats import rate_text, wilson  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="zoo name")
    p.add_argument("--weights", default=None)
    p.add_argument("--dataset", required=True)
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--attack", action="append", required=True, help="KIND:STEPS:K:PRIOR[:CORNER]")
    p.add_argument("--peers", type=int, default=0, help="queries of the peer query attacks per K (0: none)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = zoo.load(args.model, weights=args.weights).eval()
    x, y = load(args.dataset, "test")[:2]
    x, y = to_float(x[: args.images]), y[: args.images]
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    print(f"{args.model} on the first {len(y)} {args.dataset} test images: {int(ok.sum())} correct")
    n = int(ok.sum())
    for k in sorted({int(spec.split(":")[2]) for spec in args.attack}):
        g = torch.Generator().manual_seed(0)
        loc = torch.rand(len(x), x.shape[2] * x.shape[3], generator=g).topk(k, dim=1).indices
        corners = (torch.rand(x.shape, generator=g) < 0.5).to(x.dtype)
        mask = torch.zeros(len(x), x.shape[2] * x.shape[3]).scatter_(1, loc, 1.0).view(len(x), 1, *x.shape[2:])
        with torch.no_grad():
            fooled = int(((model(torch.where(mask > 0, corners, x)).argmax(1) != y) & ok).sum())
        print(f"random control, {k} pixels: misleads {rate_text(fooled, n, fooled / n, wilson(fooled, n))}")
    for k in sorted({int(spec.split(":")[2]) for spec in args.attack}) if args.peers > 0 else ():
        for name in WATCH_ATTACKS:
            t = time.perf_counter()
            idx = ok.nonzero().flatten()
            fooled = int(watch_attack(name, model, k, args.peers, seed=0)(x[idx], y[idx]).success.sum())
            print(f"{name}, {k} pixels, {args.peers} queries: misleads "
                  f"{rate_text(fooled, n, fooled / n, wilson(fooled, n))}; {time.perf_counter() - t:.1f} s")
    for spec in args.attack:
        kind, steps, k, prior, *rest = spec.split(":")
        t = time.perf_counter()
        xa, passes, _ = inner.inner_attack(model, x, y, int(k), kind=kind, steps=int(steps),  # type: ignore[arg-type]
                                           prior=prior, corner=rest[0] if rest else "gradient",  # type: ignore[arg-type]
                                           gen=torch.Generator().manual_seed(0))
        dt = time.perf_counter() - t
        with torch.no_grad():
            fooled = int(((model(xa).argmax(1) != y) & ok).sum())
        changed = float((xa != x).any(1).flatten(1).sum(1).double().mean())
        print(f"{spec}: misleads {rate_text(fooled, n, fooled / n, wilson(fooled, n))} of the correct images; "
              f"pixels changed per image {changed:.1f} (mean); passes per image {passes}; {dt:.1f} s")


if __name__ == "__main__":
    main()
