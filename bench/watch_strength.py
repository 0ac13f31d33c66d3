"""What the per-epoch watch of `harden --method sparse` reports for a model, per watch setting.

    python bench/watch_strength.py --model mnist-cnn-l0 --dataset mnist --k 20 \\
        --watch sparse-rs --watch sparse-rs,swarm-gain

The watch set is what `harden` holds out: the last ``--holdout`` training images, the first
``--images`` of them. Each ``--watch`` runs :func:`infoswarm.sparse_hardening.robust_accuracy_on`
(its attacks in turn, ``--queries`` queries each, at ``--k`` pixels, seed 0), as `harden` does
before the first epoch, and prints the robust accuracy n/N with its 95 % Wilson interval and the
wall time, beside the random control (k random locations at random corners, one query).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from infoswarm import zoo  # noqa: E402
from infoswarm.data.loader import load, to_float  # noqa: E402
from infoswarm.errors import InputError  # noqa: E402
from infoswarm.sparse_hardening import SparseConfig, robust_accuracy_on  # noqa: E402
from infoswarm.stats import rate_text, wilson  # noqa: E402

from common import fail  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="zoo name")
    p.add_argument("--weights", default=None)
    p.add_argument("--dataset", required=True)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--holdout", type=int, default=1000)
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--watch", action="append", required=True, help="comma-separated watch attacks, e.g. sparse-rs")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    try:
        model = zoo.load(args.model, weights=args.weights).eval()
        x8, y8 = load(args.dataset, "train")[:2]
        watches = [tuple(w.split(",")) for w in args.watch]
        for w in watches:              # the checks harden makes: k within the image, known attacks, a real holdout
            SparseConfig(watch=w, eval_k=args.k, holdout=args.holdout,
                         eval_queries=args.queries).validate(int(x8.shape[2] * x8.shape[3]), len(y8))
    except InputError as e:
        fail(str(e))
    n_train = len(y8) - args.holdout
    x, y = to_float(x8[n_train:][: args.images]), torch.as_tensor(y8[n_train:][: args.images]).long()
    n = len(y)
    print(f"{args.model} on the watch set: training images {n_train}..{n_train + n - 1} of {args.dataset}, k = {args.k}")
    g = torch.Generator().manual_seed(0)
    hw = x.shape[2] * x.shape[3]
    loc = torch.rand(n, hw, generator=g).topk(args.k, dim=1).indices
    corners = (torch.rand(x.shape, generator=g) < 0.5).to(x.dtype)
    mask = torch.zeros(n, hw).scatter_(1, loc, 1.0).view(n, 1, *x.shape[2:])
    with torch.no_grad():
        ok = model(x).argmax(1) == y
        kept = int((ok & (model(torch.where(mask > 0, corners, x)).argmax(1) == y)).sum())
    print(f"random control: robust {rate_text(kept, n, kept / n, wilson(kept, n))}")
    for w in watches:
        t = time.perf_counter()
        _, rob = robust_accuracy_on(model, x, y, args.k, args.queries, attacks=w)
        r = round(rob * n)
        print(f"watch {','.join(w)} ({args.queries} queries each): robust {rate_text(r, n, r / n, wilson(r, n))}; "
              f"{time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()
