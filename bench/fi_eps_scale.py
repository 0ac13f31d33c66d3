"""How many channel entries pass the paper's element-FI threshold (0.01) under exact FI and under
the authors' ε-variant in [0, 1] units and in their raw 0–255 units (RESULTS.md, CIFAR-10).

usage: python bench/fi_eps_scale.py --model cifar10-cnn --dataset cifar10 --images 50 \
           --out RESULTS.md --section cifar10-fi-eps-scale

The images are the first correctly classified ones of the training split; the objective is
f = log p_t with t the second most probable class, as in the paper's pipeline.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from infoswarm import data, influence, zoo

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import replace_section  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="cifar10-cnn")
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--threshold", type=float, default=0.01)
    ap.add_argument("--out", default=None)
    ap.add_argument("--section", default="cifar10-fi-eps-scale")
    args = ap.parse_args()
    model = zoo.load(args.model)
    x8, y = data.load(args.dataset, "train")
    x = data.to_float(x8[: 4 * args.images])
    with torch.no_grad():
        pred = model(x).argmax(1)
    keep = (pred == y[: len(x)]).nonzero().view(-1)[: args.images]
    x = x[keep]
    rows = []
    for label, kw in (("exact FI", {}), ("ε-FI, ε = 1e-3, [0, 1] units", {"fi_eps": 1e-3}),
                      ("ε-FI, ε = 1e-3, raw 0–255 units (the authors')", {"fi_eps": 1e-3, "fi_eps_scale": 255})):
        fi = influence.pixel_fi(model, x, "second", unit="element", batch_size=16, **kw)
        share = (fi >= args.threshold).flatten(1).double().mean(1)
        rows.append(f"| {label} | {100 * share.mean():.1f} % | {100 * share.min():.1f}–{100 * share.max():.1f} % |")
        print(rows[-1], file=sys.stderr, flush=True)
    n_ent = x[0].numel()
    lines = [f"Share of the {n_ent} channel entries per image with element FI ≥ {args.threshold:g} (f = log p of the "
             f"second most probable class), on the first {len(x)} correctly classified {args.dataset} training "
             f"images, `{args.model}`. Command: `python bench/fi_eps_scale.py --images {args.images}`.", "",
             "| FI | mean share | min–max over images |", "|---|---|---|", *rows]
    text = "\n".join(lines)
    print(text)
    if args.out:
        replace_section(args.out, args.section, text, kind="results", header="# Results\n")


if __name__ == "__main__":
    main()
