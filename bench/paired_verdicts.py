"""Paired comparison of two ``infoswarm robustness`` runs on the images they share.

Reads each run's ``robustness.csv`` (one row per test image: ``index``, ``clean_correct`` and
``broken_kK`` per k) and, for every k both runs measured, counts the images robust in each run
(correctly classified and not broken at k), the images robust in only one of them, and the exact
two-sided McNemar p-value of that split (binomial, p = 1/2). The same image index in both runs
is the same test image (runs made with the same --dataset, --split and --limit).

    python bench/paired_verdicts.py runs/robust-before runs/robust-after
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from infoswarm.stats import mcnemar


def load(folder: str) -> dict[int, dict[str, str]]:
    with open(Path(folder) / "robustness.csv", newline="", encoding="utf-8") as f:
        return {int(r["index"]): r for r in csv.DictReader(f)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("first")
    ap.add_argument("second")
    args = ap.parse_args(argv)
    a, b = load(args.first), load(args.second)
    common = sorted(set(a) & set(b))
    if not common:
        raise SystemExit("the two runs share no image index")
    ks = sorted(int(key[len("broken_k"):]) for key in a[common[0]] if key.startswith("broken_k")
                and key in b[common[0]])
    print(f"{len(common)} shared images; first = {args.first}, second = {args.second}")
    for k in ks:
        key = f"broken_k{k}"
        ra = [a[i]["clean_correct"] == "1" and a[i][key] == "0" for i in common]
        rb = [b[i]["clean_correct"] == "1" and b[i][key] == "0" for i in common]
        only_a = sum(x and not y for x, y in zip(ra, rb))
        only_b = sum(y and not x for x, y in zip(ra, rb))
        print(f"k={k}: robust {sum(ra)} vs {sum(rb)}; only in the first {only_a}, only in the second {only_b}; "
              f"McNemar p = {mcnemar(only_a, only_b):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
