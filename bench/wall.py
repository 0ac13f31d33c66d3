"""Benchmark: wall time per image of SparseSwarm beside the official Sparse-RS code (issue 21, part 3).

The same images (the first N correctly classified test images of each model), k pixels, values
free in [0, 1] (pure L0), untargeted, one budget per run; the methods run one after another in
an order that alternates between repeats, so a change of load hits all of them alike:

* ``sparse-swarm``: the default attack, ``SparseSwarm(model, pixels=k, budget=B, eps=1,
  grad_cost=1)``: each backward pass takes one query from the budget, so its cost in
  forward-equivalents is at most B like the others' (a backward pass costs 0.9–1.1 forward
  passes on the zoo models, BENCHMARKS.md);
* ``official-sparse-rs``: the authors' code (fra31/sparse-rs, ``rs_attacks.RSAttack``, MIT
  licence), imported from ``--rs-src`` (a checkout of that repository; not part of infoswarm),
  ``norm='L0', eps=k, n_queries=B, p_init=0.8`` (sparse-AutoAttack's setting), one restart,
  seed 0, the model as its ``predict``;
* ``sparse-rs``: infoswarm's own Sparse-RS, same budget;
* ``random``: the control (k random locations at random corners, one query).

Per method: success re-checked here on the returned images (predicted ≠ label and at most k
pixel locations changed), with its 95 % Wilson interval; mean queries (every failure counted at
the budget); wall seconds per image and CPU seconds (user + sys of this process, all threads) per
image, the median over ``--repeats`` runs; and sys / user. The ratio columns divide by the
official Sparse-RS's median in the same run.

    python bench/wall.py --rs-src /path/to/sparse-rs --models mnist-cnn,cifar10-cnn --images 100 --budget 1000
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from attack import fmt_rate, images_of  # noqa: E402

from infoswarm.attacks import SparseRS, SparseSwarm  # noqa: E402
from infoswarm.attacks.base import probs_of  # noqa: E402

from common import REPO, command_line, machine_line, md_table, replace_section  # noqa: E402

METHODS = ("sparse-swarm", "official-sparse-rs", "sparse-rs", "random")


def _cpu() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def runner(name: str, model: torch.nn.Module, k: int, budget: int, rs_src: str | None
           ) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """A function (x, y) → (adversarial images, queries per image) for one method."""
    if name == "sparse-swarm":
        att: Any = SparseSwarm(model, pixels=k, budget=budget, eps=1.0, grad_cost=1.0, seed=0)
    elif name == "sparse-rs":
        att = SparseRS(model, pixels=k, budget=budget, eps=1.0, seed=0)
    elif name == "random":
        att = SparseSwarm(model, pixels=k, budget=1, eps=1.0, prior="uniform", seed=0)
    elif name == "official-sparse-rs":
        if not rs_src:
            raise SystemExit("official-sparse-rs needs --rs-src DIR (a checkout of github.com/fra31/sparse-rs)")
        src = str(Path(rs_src).resolve())
        if src not in sys.path:
            sys.path.insert(0, src)
        from rs_attacks import RSAttack

        def predict(xb: torch.Tensor) -> torch.Tensor:
            return model(xb)

        def official(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            rs = RSAttack(predict, norm="L0", eps=k, n_queries=budget, p_init=0.8, n_restarts=1, seed=0,
                          verbose=False, targeted=False, loss="margin", device=x.device)
            with torch.no_grad():
                qr, adv = rs.perturb(x, y)
            return adv, qr
        return official
    else:
        raise SystemExit(f"unknown method {name!r}; use {', '.join(METHODS)}")

    def ours(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        res = att(x, y)
        return res.x_adv, res.queries + res.grad_evals * (1 if name == "sparse-swarm" else 0)
    return ours


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="mnist-cnn,cifar10-cnn")
    ap.add_argument("--images", default="100", help="images per model: one number, or one per model (100,50)")
    ap.add_argument("--pixels", type=int, default=10)
    ap.add_argument("--budget", type=int, default=1000)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rs-src", default=None, help="a checkout of github.com/fra31/sparse-rs (rs_attacks.py)")
    ap.add_argument("--section", default="wall")
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    machine = machine_line()
    models = args.models.split(",")
    sizes = [int(s) for s in args.images.split(",")]
    sizes = sizes * len(models) if len(sizes) == 1 else sizes
    methods = args.methods.split(",")
    started = time.perf_counter()
    tables: list[str] = []
    for spec, n_img in zip(models, sizes):
        model, x, y, ds = images_of(spec, n_img)
        n, k = len(x), args.pixels
        runs: dict[str, list[dict[str, float]]] = {m: [] for m in methods}
        for r in range(args.repeats):
            order = methods if r % 2 == 0 else methods[::-1]
            for name in order:
                fn = runner(name, model, k, args.budget, args.rs_src)
                u0, s0 = _cpu()
                t0 = time.perf_counter()
                adv, q = fn(x.clone(), y.clone())
                wall = time.perf_counter() - t0
                u1, s1 = _cpu()
                adv = adv.detach().to(x.dtype)
                ok = (probs_of(model, adv.clamp(0, 1)).argmax(1) != y) & ((adv != x).any(1).flatten(1).sum(1) <= k)
                ok &= (adv >= 0).all() & (adv <= 1).all()
                q = q.double().cpu()
                cap = 1 if name == "random" else args.budget
                qm = torch.where(ok, q.clamp(max=cap), torch.full_like(q, float(cap)))
                runs[name].append(dict(succ=float(ok.sum()), wall=wall, user=u1 - u0, sys=s1 - s0,
                                       q=float(qm.mean())))
                print(f"{spec} {name} repeat {r}: {int(ok.sum())}/{n}, wall {wall:.1f} s, user {u1 - u0:.1f} s, "
                      f"sys {s1 - s0:.2f} s", flush=True)
        ref = "official-sparse-rs" if "official-sparse-rs" in methods else methods[0]
        med = {m: {key: statistics.median(d[key] for d in runs[m]) for key in runs[m][0]} for m in methods}
        rows = []
        for m in methods:
            d = med[m]
            succ = [int(v["succ"]) for v in runs[m]]
            cpu = d["user"] + d["sys"]
            ref_cpu = med[ref]["user"] + med[ref]["sys"]
            rows.append([m, fmt_rate(int(d["succ"]), n) + ("" if len(set(succ)) == 1 else f" (runs: {succ})"),
                         f"{d['q']:.0f}", f"{d['wall'] / n:.3f}", f"{cpu / n:.3f}",
                         f"{d['sys'] / max(d['user'], 1e-9):.3f}",
                         f"{d['wall'] / max(med[ref]['wall'], 1e-9):.2f}", f"{cpu / max(ref_cpu, 1e-9):.2f}"])
        tables.append(f"### {spec} ({ds}, {n} images), k = {k}, untargeted, {args.budget} queries per image\n\n"
                      + md_table(["method", "success (n/N = rate [95 % Wilson CI])", "mean queries (failures at budget)",
                                  "wall s / image", "CPU s / image", "sys / user", f"wall / {ref}",
                                  f"CPU / {ref}"], rows))
        write(args, argv, machine, tables, started)
    return 0


def write(args: argparse.Namespace, argv: list[str] | None, machine: str, tables: list[str], started: float) -> None:
    mins = (time.perf_counter() - started) / 60
    body = "\n".join([
        f"## Wall time per image beside the official Sparse-RS code (`bench/wall.py`, section {args.section})",
        "",
        f"{machine}. Whole run: {mins:.0f} min.",
        f"Command: `{command_line('bench/wall.py', argv)}`.",
        "",
        "Images: the first N correctly classified test images of each model; pure L0 (values free in [0, 1]); "
        "untargeted; success re-checked here (predicted ≠ label, at most k changed locations). SparseSwarm pays one "
        "query per backward pass (`grad_cost=1`), so every method spends at most the budget in forward-equivalents. "
        "The official Sparse-RS is the authors' `rs_attacks.RSAttack` (fra31/sparse-rs, MIT licence) run from "
        "`--rs-src`, `p_init=0.8`. Every cell is the median over "
        f"{args.repeats} runs in alternating order; times are this process's (all threads). `random` is the control.",
        "",
        *tables,
    ])
    replace_section(args.out, args.section, body)


if __name__ == "__main__":
    raise SystemExit(main())
