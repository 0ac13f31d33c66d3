"""Collect harden and evaluate runs into RESULTS.md tables (the commands are in RESULTS.md).

usage: python bench/results.py --out RESULTS.md --section mnist \
           --harden runs/r-mnist-fi runs/r-mnist-random ... \
           --evaluate runs/r-mnist-eval-none runs/r-mnist-eval-fi ...

Writes (or replaces) the block between ``<!-- results:SECTION:start -->`` and ``:end -->``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import replace_section  # noqa: E402

ADDED = {"pgd": "on the fly", "fgsm-rs": "on the fly", "none": "none (control)"}


def pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"


def attack_minutes(d: Path, s: dict) -> float | None:
    """mFI-PSO time on the training images: from the summary, or (runs made before it was
    recorded) from the checkpoint timestamps, selection.pt to the last attack chunk."""
    if s.get("attack_seconds") is not None:
        return s["attack_seconds"] / 60
    chunks = sorted((d / "checkpoints").glob("attack-train-*.pt"))
    sel = d / "checkpoints" / "selection.pt"
    if not chunks or not sel.exists():
        return None
    return (max(p.stat().st_mtime for p in chunks) - sel.stat().st_mtime) / 60


def harden_table(folders: list[Path]) -> list[str]:
    lines = ["| run (defence) | attacked | adversarial images added | epochs | attack time | fine-tune time "
             "| clean acc before → after | re-attack success on vulnerable test images, before → after "
             "| re-attack success on vulnerable training images, before → after "
             "| acc. on adversarial test images |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for d in folders:
        s = json.loads((d / "summary.json").read_text())
        b, a = s["before"], s["after"]
        swarm = s["method"] in ("fi", "random")
        am = attack_minutes(d, s) if swarm else None
        name = d.name  # the run folder, as in the evaluate table
        lines.append(f"| {name} | {s['selected'] if swarm else '–'} "
                     f"| {s['adversarial_added'] if swarm else ADDED.get(s['method'], '–')} | {s['epochs']} "
                     f"| {'–' if am is None else f'{am:.1f} min'} | {s['train_seconds'] / 60:.1f} min "
                     f"| {pct(b['clean_acc'])} → {pct(a['clean_acc'])} "
                     f"| {pct(b['reattack_success'])} → {pct(a['reattack_success'])} "
                     f"| {pct(b.get('reattack_train_success'))} → {pct(a.get('reattack_train_success'))} "
                     f"| {pct(a['adv_test_acc'])} |")
    return lines


def evaluate_table(folders: list[Path]) -> list[str]:
    rows = [json.loads((d / "summary.json").read_text()) for d in folders]
    attacks = [r["attack"] for r in rows[0]["reattack"]]
    lines = ["| model | clean acc | acc. on transferred adversarial images | "
             + " | ".join(f"{a} success" for a in attacks) + " |",
             "|---|---|---|" + "---|" * len(attacks)]
    for r in rows:
        name = Path(r["weights"]).parent.name if r.get("weights") else f"{r['model']} (original)"
        cells = {x["attack"]: x["success_rate"] for x in r["reattack"]}
        lines.append(f"| {name} | {pct(r['clean_acc'])} | {pct(r['adv_acc'])} | "
                     + " | ".join(pct(cells.get(a)) for a in attacks) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="RESULTS.md")
    ap.add_argument("--section", required=True)
    ap.add_argument("--harden", nargs="*", default=[])
    ap.add_argument("--evaluate", nargs="*", default=[])
    args = ap.parse_args()
    body = []
    if args.harden:
        body += harden_table([Path(p) for p in args.harden]) + [""]
    if args.evaluate:
        body += evaluate_table([Path(p) for p in args.evaluate]) + [""]
    replace_section(args.out, args.section, "\n".join(body), kind="results", header="# Results\n")


if __name__ == "__main__":
    main()
