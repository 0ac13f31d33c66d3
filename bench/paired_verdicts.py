"""Paired comparison of two models' ``infoswarm robustness`` verdicts on the images they share.

Reads each run's ``robustness.csv`` (one row per test image: ``index``, ``clean_correct`` and
``broken_kK`` per k) and, for every k both sides measured, counts the images robust in each
(correctly classified and not broken at k), the images robust in only one of them, and the exact
two-sided McNemar p-value of that split (binomial, p = 1/2), and the images robust in both (the
robust count of the union of the two runs' attacks, when both sides are the same model under
different attacks).

Each side is one run folder or several joined by ``+`` (verdicts of the same weights on other
images), each optionally ``FOLDER@START``: the run's image i is test image START + i (a run on an
``.npz`` slice of the test split; START defaults to 0, a run made with ``--limit``). Where both
runs stored their images (``adversarial.npz``, key ``x``), every shared image is checked to be
the same on both sides, and a mismatch (a wrong START, another split) is refused in one line.

    python bench/paired_verdicts.py runs/robust-before runs/robust-after
    python bench/paired_verdicts.py runs/zoo-1000 "runs/new-first100+runs/new-next100@100"
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from infoswarm.stats import mcnemar  # noqa: E402

from common import fail  # noqa: E402  (bench/ is not a package)

Side = dict[int, tuple[dict[str, str], "np.ndarray | None"]]


def load(spec: str) -> Side:
    """Rows (and stored images, where the run kept them) of every run of ``spec``, keyed by test index."""
    out: Side = {}
    for part in spec.split("+"):
        folder, _, start_text = part.partition("@")
        try:
            start = int(start_text or 0)
        except ValueError:
            fail(f"{part!r}: START after @ must be an integer (the test index of the run's first image)")
        csv_path = Path(folder) / "robustness.csv"
        if not csv_path.is_file():
            fail(f"{folder!r} has no robustness.csv: name the folder of a finished `infoswarm robustness` run")
        with open(csv_path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        images = None
        npz = Path(folder) / "adversarial.npz"
        if npz.is_file():
            with np.load(npz) as z:
                images = z["x"] if "x" in z.files else None
        for r in rows:
            i = int(r["index"])
            if start + i in out:
                fail(f"test image {start + i} appears twice in {spec!r}: its runs overlap")
            out[start + i] = (r, None if images is None else images[i])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("first", help="FOLDER[@START][+FOLDER[@START]...] of one model's verdicts")
    ap.add_argument("second", help="the same for the other model")
    args = ap.parse_args(argv)
    a, b = load(args.first), load(args.second)
    common = sorted(set(a) & set(b))
    if not common:
        fail("the two sides share no test image (check each run's @START)")
    for i in common:
        xa, xb = a[i][1], b[i][1]
        if xa is not None and xb is not None and not np.array_equal(xa, xb):
            fail(f"test image {i} differs between the two sides: a wrong @START or another dataset/split")
    ks = sorted(int(key[len("broken_k"):]) for key in a[common[0]][0] if key.startswith("broken_k")
                and key in b[common[0]][0])
    print(f"{len(common)} shared images; first = {args.first}, second = {args.second}")
    for k in ks:
        key = f"broken_k{k}"
        ra = [a[i][0]["clean_correct"] == "1" and a[i][0][key] == "0" for i in common]
        rb = [b[i][0]["clean_correct"] == "1" and b[i][0][key] == "0" for i in common]
        only_a = sum(x and not y for x, y in zip(ra, rb))
        only_b = sum(y and not x for x, y in zip(ra, rb))
        both = sum(x and y for x, y in zip(ra, rb))
        print(f"k={k}: robust {sum(ra)} vs {sum(rb)}; only in the first {only_a}, only in the second {only_b}; "
              f"McNemar p = {mcnemar(only_a, only_b):.3f}; robust in both {both}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
