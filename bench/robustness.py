"""Benchmark: robust accuracy of the shipped models against the L0 ensemble of
``infoswarm robustness``, each member alone beside it, and a random control.

For each model, on the first N test images of its dataset (clean-misclassified images count as
not robust, as in AutoAttack) and each k:

* ensemble: :func:`infoswarm.robustness.robust_accuracy` (the members in sequence on the images
  still robust), the number ``infoswarm robustness`` reports;
* each member alone: the same attack (same seed, each image seeded by its position) on every
  correctly classified image. The ensemble already ran member m on every image the members
  before it had left; m is run here only on the images they broke, with the same positions, so
  its results are its own (the ensemble's per-image result does not depend on the images an
  attack shares a call with). The script checks that the ensemble broke exactly the union of
  the members alone;
* random control: a random search with the same number of queries as one query member,
  ``--budget`` (each query: k distinct locations drawn uniformly, each channel of each at 0 or
  1, independently of the others; broken when any query is misclassified).

As in the ensemble, an image broken at a smaller k counts as broken at a larger k (for the
members alone and the control too).

    python bench/robustness.py --models mnist-cnn:100,fashion-cnn:100,cifar10-cnn:50 --version quick

writes the section ``robustness`` of BENCHMARKS.md (``--out`` another file, ``--section`` another
name). ``--budget`` replaces every member's budget (and the control's query count).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from infoswarm import data, zoo  # noqa: E402
from infoswarm.attacks import registry  # noqa: E402
from infoswarm.robustness import ENSEMBLE, robust_accuracy  # noqa: E402
from infoswarm.stats import rate_text, wilson  # noqa: E402

from common import REPO, command_line, machine_line, md_table, replace_section, start_cpu  # noqa: E402


@torch.no_grad()
def random_control(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, k: int, queries: int,
                   seed: int = 0, rows: int = 500) -> torch.Tensor:
    """[N] bool: some of ``queries`` random k-pixel perturbations (k distinct uniform locations,
    each channel at 0 or 1) of image i is misclassified. Image i draws from its own generator
    seeded with (seed, i)."""
    n, c, h, w = x.shape
    out = torch.zeros(n, dtype=torch.bool)
    for i in range(n):
        g = torch.Generator().manual_seed(seed * 1_000_003 + i)
        for s in range(0, queries, rows):
            q = min(rows, queries - s)
            loc = torch.rand(q, h * w, generator=g).topk(k, dim=1).indices             # [q, k]
            val = (torch.rand(q, c, k, generator=g) < 0.5).to(x.dtype)                 # [q, C, k]
            xb = x[i].reshape(1, c, h * w).repeat(q, 1, 1)
            xb.scatter_(2, loc.unsqueeze(1).expand(-1, c, -1), val)
            if bool((model(xb.view(q, c, h, w)).argmax(1) != y[i]).any()):
                out[i] = True
                break
    return out


def members_alone(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, res: Any, budget: int | None,
                  version: str) -> dict[int, dict[str, torch.Tensor]]:
    """k -> member -> [N] bool broken by that member alone at k (raw, before carrying smaller k)."""
    names = [m.name for m in ENSEMBLE]
    out: dict[int, dict[str, torch.Tensor]] = {}
    for k in res.ks:
        r = res.per_k[k]
        raw_by = [b if int(a) == k else "" for b, a in zip(r.by, r.at_k.tolist())]   # carried: all ran, all failed
        out[k] = {}
        for j, m in enumerate(ENSEMBLE):
            broken = torch.tensor([b == m.name for b in raw_by])
            before = torch.tensor([b in names[:j] for b in raw_by])                 # m never saw these
            idx = before.nonzero().view(-1)
            if idx.numel():
                b = budget if budget is not None else int(m.budget[version])
                attack = registry.build(m.attack, model, pixels=k, eps=1.0, target=None, seed=0, budget=b,
                                        **dict(m.kwargs))
                got = attack(x[idx], y[idx], offset=idx)
                broken[idx] = got.pred.cpu() != y[idx]
            out[k][m.name] = broken | ~res.correct
    return out


def carry(ks: list[int], broken: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
    """Broken at k or at any smaller k."""
    out, prev = {}, None
    for k in ks:
        out[k] = broken[k] if prev is None else broken[k] | prev
        prev = out[k]
    return out


def cell(broken: torch.Tensor) -> str:
    n, r = broken.numel(), int((~broken).sum())
    return rate_text(r, n, r / n, wilson(r, n))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="mnist-cnn:100,fashion-cnn:100,cifar10-cnn:50",
                   help="comma-separated zoo-name:images[:budget] (first test images of the model's dataset; "
                        "a budget there replaces --budget for that model)")
    p.add_argument("--ks", default="5,10,20")
    p.add_argument("--version", default="quick", choices=["quick", "standard"])
    p.add_argument("--budget", type=int, default=None, help="queries per image for every member and the control")
    p.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    p.add_argument("--section", default="robustness")
    args = p.parse_args(argv)
    tuning = start_cpu()
    torch.set_num_threads(1)
    ks = [int(k) for k in args.ks.split(",")]
    machine = machine_line()
    t_all = time.perf_counter()
    parts = []
    for spec in args.models.split(","):
        name, _, rest = spec.partition(":")
        count, _, own = rest.partition(":")
        n = int(count or 100)
        budget = int(own) if own else args.budget
        entry = zoo.ZOO[name]
        try:
            x8, y = data.load(entry.dataset, "test")
        except Exception as e:  # noqa: BLE001 - a dataset that is not installed is skipped and said so
            parts.append(f"### {name}\n\nskipped: {entry.dataset} is not installed here ({str(e)[:100]}).")
            print(f"{name}: skipped ({e})", flush=True)
            continue
        model = zoo.load(name)
        x, y = data.to_float(x8[:n]), y[:n]
        t0 = time.perf_counter()
        res = robust_accuracy(model, x, y, ks, version=args.version, budget=budget, log=False,
                              say=lambda s, name=name: print(f"{name} {s}", flush=True))
        t_ens = time.perf_counter() - t0
        t0 = time.perf_counter()
        alone = members_alone(model, x, y, res, budget, args.version)
        t_alone = time.perf_counter() - t0
        union_ok = all(torch.equal(res.per_k[k].broken_raw,
                                   torch.stack(list(alone[k].values())).any(0)) for k in ks)
        t0 = time.perf_counter()
        q_random = budget if budget is not None else int(ENSEMBLE[-1].budget[args.version])
        rand = {k: random_control(model, x, y, k, q_random) | ~res.correct for k in ks}
        t_rand = time.perf_counter() - t0
        print(f"{name}: ensemble {t_ens:.0f}s, members alone (extra) {t_alone:.0f}s, random {t_rand:.0f}s; "
              f"ensemble == union of members: {union_ok}", flush=True)
        singles = {m.name: carry(ks, {k: alone[k][m.name] for k in ks}) for m in ENSEMBLE}
        rand_c = carry(ks, rand)
        c = int(res.correct.sum())
        rows = []
        for k in ks:
            r = res.per_k[k]
            added = ", ".join(f"{s.name} +{s.added}" for s in r.members)
            rows.append([k, f"**{cell(r.broken)}**", *[cell(singles[m.name][k]) for m in ENSEMBLE], cell(rand_c[k]),
                         added, f"{r.seconds:.0f}"])
        header = ["k", "ensemble (robust n/N = rate [95 % CI])", *[f"{m.name} alone" for m in ENSEMBLE],
                  f"random control ({q_random} queries)", "added in sequence", "ensemble s"]
        warns = "; ".join(f"`{w['check']}`" + (f" (k={w['k']})" if w["k"] is not None else "") for w in res.warnings)
        used = "; every member's budget " + str(budget) + " queries" if budget is not None else ""
        parts.append(
            f"### {name} ({entry.dataset}, first {n} test images{used}, clean accuracy "
            f"{rate_text(c, n, c / n, wilson(c, n))})"
            f"\n\n{md_table(header, rows)}\n\nWarnings: {warns or 'none'}. The ensemble broke exactly the union of "
            f"its members alone at every k: {'yes' if union_ok else 'NO'}. Wall time: ensemble {t_ens:.0f} s, the "
            f"members alone on the images the ensemble did not run them on {t_alone:.0f} s, random control "
            f"{t_rand:.0f} s.")
    members = "; ".join(f"{m.name}: {m.about}, budget {m.budget[args.version]}" for m in ENSEMBLE)
    body = (f"## Robust accuracy of the shipped models (`bench/robustness.py`, section {args.section})\n\n"
            f"Machine: {machine}. {tuning}. Whole run: {(time.perf_counter() - t_all) / 60:.1f} min.\n"
            f"Command: `{command_line('bench/robustness.py', argv)}`.\n\n"
            f"Robust accuracy (share of all N images that no attack broke with at most k changed pixels, pure L0: "
            f"changed pixels at 0/1 values; clean-misclassified images count as broken) at version "
            f"`{args.version}`. Members in the order they run (budgets per image of the version, unless a model's "
            f"heading gives its own): {members}. Each member alone runs with the same "
            "seed on every correct image; an image broken at a smaller k counts as broken at larger k in every "
            "column. Random control: a random search with the query count shown (k uniform locations at random "
            "0/1 values per query). Lower is a stronger attack.\n\n" + "\n\n".join(parts))
    replace_section(args.out, args.section, body)
    print(f"wrote section {args.section} of {args.out}", flush=True)


if __name__ == "__main__":
    main()
