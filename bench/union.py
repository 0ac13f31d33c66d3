"""Image-by-image comparisons from a `bench/attack.py` log (nothing typed by hand).

    python bench/union.py LOG --model mnist-cnn-l0 --k 10 --a sparse-swarm@10000 --b spgd@1000 --b sparse-rs@10000

METHOD is the name given to ``--methods`` (with its options, e.g. ``sparse-swarm:refresh=0;leave=0``;
logs written before that name was logged carry the base name only), BUDGET the ``--budgets``
value of the run. Each result line of the log carries, per image, whether the method broke it (``per_image``: a
0/1 string over the same images for every method of a model). Prints, for one model and k: the
images broken by A, by the union of the B methods (an ensemble run in sequence breaks exactly
this union), by A only and by the union only, with an exact two-sided McNemar (sign) test on the
discordant images.
"""

from __future__ import annotations

import argparse
import ast
import re

from infoswarm.stats import mcnemar


def _lines(path: str) -> list[tuple[str, int, dict]]:
    out = []
    pat = re.compile(r"^(\S+) (\S+) (\d+) (\{.*\})$")
    for line in open(path, encoding="utf-8"):
        m = pat.match(line.strip())
        if not m:
            continue
        d = ast.literal_eval(re.sub(r"\bnan\b", "None", m.group(4)))
        if "per_image" in d:
            out.append((m.group(1), int(m.group(3)), d))
    return out


def _pick(rows: list[tuple[str, int, dict]], model: str, k: int, spec: str) -> str:
    method, _, budget = spec.partition("@")
    hits = [d["per_image"] for mod, nominal, d in rows      # nominal: the run's --budgets value
            if mod == model and d["method"] == method and d["k"] == k and (not budget or nominal == int(budget))]
    if not hits:
        raise SystemExit(f"no line for {model}, k={k}, {spec} in the log")
    return hits[-1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("log")
    p.add_argument("--model", required=True)
    p.add_argument("--k", type=int, required=True)
    p.add_argument("--a", required=True, help="METHOD@BUDGET")
    p.add_argument("--b", action="append", required=True, help="METHOD@BUDGET (repeat: their union)")
    args = p.parse_args()
    rows = _lines(args.log)
    a = _pick(rows, args.model, args.k, args.a)
    bs = [_pick(rows, args.model, args.k, s) for s in args.b]
    union = ["1" if any(b[i] == "1" for b in bs) else "0" for i in range(len(a))]
    only_a = sum(1 for x, u in zip(a, union) if x == "1" and u == "0")
    only_u = sum(1 for x, u in zip(a, union) if x == "0" and u == "1")
    n = len(a)
    print(f"{args.model} k={args.k}: {args.a} broke {a.count('1')}/{n}; union of {' + '.join(args.b)} "
          f"broke {union.count('1')}/{n}; only {args.a}: {only_a}, only the union: {only_u} "
          f"(McNemar p = {mcnemar(only_a, only_u):.3g})")


if __name__ == "__main__":
    main()
