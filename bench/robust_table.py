"""A RESULTS.md table from `infoswarm robustness` run folders (nothing typed by hand).

    python bench/robust_table.py --section robust-models --out RESULTS.md \\
        --run "mnist-cnn (start)=runs/robust-mnist-base" --run "mnist-cnn-l0=runs/robust-mnist-l0" ...

Each ``LABEL=FOLDER`` becomes a row (``LABEL=FOLDER+FOLDER2``: verdicts of the same weights on the
same images at different k, merged into one row): images, version (or the ``--budget`` that replaced
its budgets) and members, clean accuracy, robust accuracy
at each k with its count, 95 % Wilson interval, what each member added and the random control
(one random k-pixel perturbation per image; runs older than the control say so), the warnings, and the
verdict's wall time; written between the section's markers (``results:NAME``) of ``--out``.

``--train "LABEL=PATH[,PATH...]"`` adds the training columns to that row: clean accuracy on the
whole test split and the epochs, seconds per epoch and total seconds of the defence (with the
offline methods' attack phase), summed over the stages named in training order. A PATH is a harden run folder (its ``summary.json``), a zoo
card (``src/infoswarm/weights/NAME.json``: its ``hardening`` stages; a card without them gives the
clean accuracy only) or a variant of ``bench/hardening.py`` (``WORK/DATASET/VARIANT.json`` beside
its checkpoint). ``--figure PNG`` draws every row's robust accuracy against k (k = 0: clean
accuracy on the verdict's images) with its 95 % intervals on one axis.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from infoswarm.stats import rate_text, wilson  # noqa: E402

from common import fail, replace_section  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", action="append", required=True, help="LABEL=FOLDER of an infoswarm robustness run")
    p.add_argument("--section", required=True)
    p.add_argument("--title", default="")
    p.add_argument("--out", default=None)
    p.add_argument("--train", action="append", default=[],
                   help="LABEL=PATH[,PATH...]: the row's training (harden runs, zoo cards or bench/hardening.py "
                        "variants, in order)")
    p.add_argument("--figure", default=None, help="PNG of every row's robust accuracy against k")
    args = p.parse_args()
    runs = []
    for spec in args.run:
        label, _, folders = spec.partition("=")
        missing = [f for f in folders.split("+") if not (Path(f) / "summary.json").is_file()]
        if missing or not label:
            fail(f"--run {spec!r}: give LABEL=FOLDER of a finished `infoswarm robustness` run "
                 f"({'no summary.json in ' + missing[0] if missing else 'no label'})")
        runs.append((label, merged([json.loads((Path(f) / "summary.json").read_text()) for f in folders.split("+")])))
    train = {}
    for spec in args.train:
        label, _, paths = spec.partition("=")
        if label not in {lab for lab, _ in runs}:
            fail(f"--train {label!r}: no --run has that label")
        train[label] = training_info([Path(q) for q in paths.split(",")])
    ks = sorted({int(k) for _, s in runs for k in s["per_k"]})
    extra = " clean (whole test split) | epochs | s / epoch | training |" if train else ""
    head = ("| model | images, version | clean |" + extra + " " + " | ".join(f"robust k = {k}" for k in ks)
            + " | warnings | time |")
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
        t = train.get(label)
        tcells = ""
        if train:
            tcells = (" – | – | – | – |" if t is None else
                      f" {t['clean']:.2%} | ".replace("%", " %") + (f"{t['epochs']} | {t['seconds'] / t['epochs']:.0f} | "
                                                                   f"{t['seconds'] / 60:.0f} min |"
                                                                   if t["epochs"] else "– | – | – |"))
        budget = (s.get("settings") or {}).get("budget")
        version = f"{budget:,} queries per member" if budget else s["version"]
        lines.append(f"| {label} | {n}, {version} ({', '.join(s['members'])}) | "
                     f"{rate_text(s['clean_correct'], n, s['clean_correct'] / n, wilson(s['clean_correct'], n))} |"
                     + tcells + " " + " | ".join(cells) + f" | {warn} | {s.get('seconds', 0) / 60:.0f} min |")
    if args.figure:
        from infoswarm.report.robustness_figure import robustness_curves_png

        Path(args.figure).write_bytes(robustness_curves_png(runs))
    body = "\n".join(([args.title, ""] if args.title else []) + lines + [
        "", "Command: `python bench/robust_table.py " + " ".join(f'--run "{r}"' for r in args.run)
        + "".join(f' --train "{t}"' for t in args.train) + (f" --figure {args.figure}" if args.figure else "")
        + f" --section {args.section}` over the `infoswarm robustness` runs named in the text above."])
    print(body)
    if args.out:
        replace_section(args.out, args.section, body, kind="results")


def merged(summaries: list[dict]) -> dict:
    """One row from verdicts of the same weights on the same images at different k (``F1+F2``):
    their per-k figures, seconds and warnings together; refused when images, version, members or
    clean counts differ."""
    first = summaries[0]
    for other in summaries[1:]:
        for key in ("images", "version", "members", "clean_correct", "dataset", "split"):
            if other.get(key) != first.get(key):
                fail(f"cannot merge verdicts with different {key}: {first.get(key)} vs {other.get(key)}")
    out = dict(first)
    out["per_k"] = {k: v for s in summaries for k, v in s["per_k"].items()}
    out["ks"] = sorted({int(k) for k in out["per_k"]})
    out["seconds"] = sum(s.get("seconds", 0) for s in summaries)
    out["warnings"] = [w for s in summaries for w in s.get("warnings", [])]
    return out


def training_info(paths: list[Path]) -> dict:
    """Clean test accuracy (of the last stage) and the epochs and seconds summed over ``paths``
    (harden run folders, zoo cards, or bench/hardening.py variant files, in training order)."""
    import torch

    clean, epochs, seconds = None, 0, 0.0
    for path in paths:
        if not path.exists() or (path.is_dir() and not (path / "summary.json").is_file()):
            fail(f"{path}: not found, or a harden run without summary.json (an unfinished run)")
        if path.is_dir():                       # infoswarm harden run
            summ = json.loads((path / "summary.json").read_text())
            clean = summ["after"]["clean_acc"]
            epochs += summ.get("epochs_run", summ.get("epochs")) or 0
            seconds += summ["train_seconds"] + (summ.get("attack_seconds") or 0.0)   # the offline methods' attack phase
        elif path.suffix == ".json" and isinstance(json.loads(path.read_text()), dict):     # zoo card
            card = json.loads(path.read_text())
            clean = card["test_accuracy"]
            for stage in card.get("hardening", []):
                epochs += stage.get("epochs_run") or 0
                seconds += stage.get("train_seconds") or 0.0
        elif path.suffix == ".json":            # bench/hardening.py variant: [info, verdict] + its checkpoint
            info, _ = json.loads(path.read_text())
            state = torch.load(path.with_suffix("") / "checkpoints" / "train.pt", weights_only=True)
            kept = info["kept_epoch"]
            rows = {r["epoch"]: r for r in state["history"]}
            if kept == 0:
                fail(f"{path}: the variant rolled back to its start; give the start's row instead")
            clean = rows[kept]["test_acc"]
            epochs, seconds = epochs + info["epochs"], seconds + info["train_seconds"]
        else:
            fail(f"{path}: not a harden run folder, a zoo card or a bench/hardening.py variant file")
    if clean is None:
        fail(f"{', '.join(map(str, paths))}: no clean accuracy found")
    return {"clean": float(clean), "epochs": epochs, "seconds": seconds}


if __name__ == "__main__":
    main()
