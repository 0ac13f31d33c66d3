"""The paper's pipeline (DESIGN §2) as run by `infoswarm attack`, with its random controls, as a
RESULTS.md table: both success measures, each with its image count and a 95 % Wilson interval.

usage: python bench/paper_pipeline.py --out RESULTS.md --section cifar10-paper \
           --run "mFI-PSO, paper preset=runs/p/cifar10-paper" --run "random start only=runs/p/..."

Each --run is LABEL=FOLDER, a finished `infoswarm attack` folder (summary.json, results.csv).
Measures: "target hit" = the attack's own criterion (the second most probable class wins);
"misclassified" = prediction on the adversarial image ≠ true label (the paper's measure).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from infoswarm.stats import wilson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import replace_section  # noqa: E402


def rate(k: int, n: int) -> str:
    lo, hi = wilson(k, n)
    return f"{100 * k / max(n, 1):.1f} % ({k}/{n}; {100 * lo:.1f}–{100 * hi:.1f})"


def row(label: str, folder: Path) -> str:
    s = json.loads((folder / "summary.json").read_text())
    with open(folder / "results.csv") as f:
        rows = list(csv.DictReader(f))
    n = len(rows)
    hit = sum(int(r["success"]) for r in rows)
    mis = sum(int(r["pred_adv"]) != int(r["label"]) for r in rows)
    linf = [float(r["linf"]) for r in rows]
    el0 = [int(r["element_l0"]) for r in rows]
    q = sorted(int(r["queries"]) for r in rows)
    st = s.get("settings", {})
    setting = (f"{st.get('particles')} particles, {st.get('iterations')} + "
               f"{0 if st.get('no_restart') else st.get('restart_iterations')} iterations")
    return (f"| {label} | {setting} | {s['candidates']} → {n} | {rate(hit, n)} | {rate(mis, n)} | "
            f"{sum(linf) / max(n, 1):.3f} | {sum(el0) / max(n, 1):.0f} | {q[n // 2] if n else '–'} | "
            f"{s['seconds'] / 60:.1f} min |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="RESULTS.md")
    ap.add_argument("--section", required=True)
    ap.add_argument("--run", action="append", required=True, help="LABEL=FOLDER")
    args = ap.parse_args()
    lines = ["| run | swarm | candidates → selected | target hit (95 % CI) | misclassified (95 % CI) "
             "| mean L∞ | mean entries changed | median queries | time |",
             "|---|---|---|---|---|---|---|---|---|"]
    for spec in args.run:
        label, _, folder = spec.partition("=")
        lines.append(row(label, Path(folder)))
    replace_section(args.out, args.section, "\n".join(lines), kind="results", header="# Results\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
