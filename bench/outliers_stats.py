"""Intervals for an ``infoswarm outliers`` run from its ``scores.csv`` (no recomputation):
ROC AUC of image FI and of the Jacobian norm with Hanley-McNeil 95 % intervals, average
precision, and the paired stratified-bootstrap interval of their AUC difference.

    python bench/outliers_stats.py runs/outliers [--boot 500]
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch

from infoswarm import outliers


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="folder written by infoswarm outliers")
    ap.add_argument("--boot", type=int, default=500)
    args = ap.parse_args(argv)
    with open(Path(args.run) / "scores.csv") as f:
        rows = list(csv.DictReader(f))
    pos = torch.tensor([r["outlier"] == "1" for r in rows])
    sc = {k: torch.tensor([float(r[c]) for r in rows], dtype=torch.float64)
          for k, c in (("image FI", "image_fi"), ("Jacobian norm", "jacobian_norm"))}
    n1, n0 = int(pos.sum()), int((~pos).sum())
    print(f"{len(rows)} images, {n1} outliers (share {n1 / len(rows):.4f})")
    for k, s in sc.items():
        auc = outliers.roc_auc(s, pos)
        lo, hi = outliers.roc_auc_interval(auc, n1, n0)
        ap = outliers.average_precision(s, pos)
        print(f"{k}: ROC AUC {auc:.4f} [{lo:.4f}, {hi:.4f}], average precision {ap:.4f}")
    d, lo, hi = outliers.auc_difference(sc["image FI"], sc["Jacobian norm"], pos, n_boot=args.boot)
    print(f"AUC difference (image FI - Jacobian norm): {d:+.4f} [{lo:+.4f}, {hi:+.4f}] (paired bootstrap, {args.boot})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
