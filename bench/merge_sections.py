"""Copy every ``<!-- bench:NAME:start/end -->`` section of the given files into ``--out``
(BENCHMARKS.md), replacing the sections of the same name there and keeping everything else.

    python bench/merge_sections.py runs/bench-attack/a.md runs/bench-attack/b.md --out BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import replace_section  # noqa: E402

SECTION = re.compile(r"<!-- bench:([\w.-]+):start -->\n(.*?)\n<!-- bench:\1:end -->", re.S)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--out", default="BENCHMARKS.md")
    args = ap.parse_args(argv)
    for f in args.files:
        for name, body in SECTION.findall(Path(f).read_text(encoding="utf-8")):
            replace_section(args.out, name, body)
            print(f"{f}: section {name} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
