"""A RESULTS.md table from `infoswarm robustness` run folders (nothing typed by hand).

    python bench/robust_table.py --section robust-models --out RESULTS.md \\
        --run "mnist-cnn (start)=runs/robust-mnist-base" --run "mnist-cnn-l0=runs/robust-mnist-l0" ...

Each ``LABEL=FOLDER`` becomes a row: images, version and members, clean accuracy, robust accuracy
at each k with its count, 95 % Wilson interval, what each member added and the random control
(one random k-pixel perturbation per image; runs older than the control say so), the warnings, and the
verdict's wall time; written between the section's markers (``results:NAME``) of ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from infoswarm.stats import rate_text, wilson  # noqa: E402

from common import replace_section  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", action="append", required=True, help="LABEL=FOLDER of an infoswarm robustness run")
    p.add_argument("--section", required=True)
    p.add_argument("--title", default="")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    runs = []
    for spec in args.run:
        label, _, folder = spec.partition("=")
        runs.append((label, json.loads((Path(folder) / "summary.json").read_text())))
    ks = sorted({int(k) for _, s in runs for k in s["per_k"]})
    head = "| model | images, version | clean | " + " | ".join(f"robust k = {k}" for k in ks) + " | warnings | time |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for label, s in runs:
        n = s["images"]
        cells = []
        for k in ks:
            r = s["per_k"].get(str(k))
            if r is None:
                cells.append("–")
                continue
            added = ", ".join(f"{a['name']} +{a['added']}" for a in r["attacks"] if a.get("added"))
            rc = r.get("random_control")
            control = (f"; random control {rc['robust'] / n:.1%}".replace("%", " %") if rc
                       else "; random control not measured")
            cells.append(rate_text(r["robust"], n, r["robust"] / n, wilson(r["robust"], n))
                         + (f" ({added}{control})" if added else f" ({control[2:]})"))
        warn = "; ".join(w if isinstance(w, str) else f"{w.get('check')} (k = {w.get('k')})"
                         for w in s.get("warnings", [])) or "none"
        lines.append(f"| {label} | {n}, {s['version']} ({', '.join(s['members'])}) | "
                     f"{rate_text(s['clean_correct'], n, s['clean_correct'] / n, wilson(s['clean_correct'], n))} | "
                     + " | ".join(cells) + f" | {warn} | {s.get('seconds', 0) / 60:.0f} min |")
    body = "\n".join(([args.title, ""] if args.title else []) + lines + [
        "", "Command: `python bench/robust_table.py " + " ".join(f'--run "{r}"' for r in args.run)
        + f" --section {args.section}` over the `infoswarm robustness` runs named in the text above."])
    print(body)
    if args.out:
        replace_section(args.out, args.section, body, kind="results")


if __name__ == "__main__":
    main()
