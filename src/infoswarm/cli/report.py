"""``infoswarm report``: one self-contained HTML page over run folders."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import flush_notes, note, print_summary


def add_parser(sub: Any) -> None:
    """Register ``report``."""
    p = sub.add_parser(
        "report", help="write one self-contained HTML page over run folders",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Read run folders (influence, attack, universality, train, harden) and write one "
                    "HTML page with every figure embedded: run summaries, pixel-FI heatmaps, adversarial "
                    "gallery, success rate vs k, perturbation histograms, attack comparison, training "
                    "curves, robustness before/after. The page loads nothing from the network.",
        epilog="examples:\n  infoswarm report runs/fi                      # writes runs/fi/report.html\n"
               "  infoswarm report runs/a1 runs/a5 runs/a20 --out runs/compare.html")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders written by infoswarm commands")
    p.add_argument("--out", default=None,
                   help="HTML file to write (default RUN_DIR/report.html of the first run; an existing "
                        "file is replaced, atomically)")
    p.add_argument("--json", action="store_true", help="print the path and sections as JSON on stdout")
    p.set_defaults(func=cmd_report, seed=0)


def cmd_report(args: argparse.Namespace) -> int:
    from ..checks import printable
    from ..errors import InputError
    from ..report.html import load_run, write_report

    first = args.runs[0]
    for r in args.runs:  # the default page goes into the first folder that can be read
        try:
            load_run(r)
        except InputError:
            continue
        first = r
        break
    out = Path(args.out) if args.out is not None else Path(first) / "report.html"
    rep = write_report([Path(r) for r in args.runs], out)
    for folder, why in rep.skipped:
        note(f"left out {printable(folder)}: {why}", "warning")
    for r in rep.runs:
        if r.damaged:
            note(f"{printable(r.path)} is damaged ({r.damaged}); the page shows only its summary, marked DAMAGED",
                 "warning")
    flush_notes()
    print_summary(args, {"path": str(rep.path), "sections": rep.sections, "runs": [str(r.path) for r in rep.runs],
                         "skipped": [{"run": f, "why": w} for f, w in rep.skipped],
                         "damaged": {str(r.path): r.damaged for r in rep.runs if r.damaged}},
                  [f"wrote {rep.path} ({', '.join(rep.sections)})"])
    return 0
