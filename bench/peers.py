"""Benchmark: infoswarm's sparse attacks beside the real peer libraries, at equal k and budget.

Peers (their own code, run from bench/.venv-peers, `make bench/.venv-peers/.installed`):
  torchattacks-onepixel: torchattacks 3.5.1 ``OnePixel`` (differential evolution, DE);
  art-pixel: adversarial-robustness-toolbox 1.20.1 ``PixelAttack`` (es=1, DE), through a
      ``PyTorchClassifier`` with clip_values (0, 1), channels first, softmax outputs.
Ours:
  sparse-swarm: ``SparseSwarm(model, pixels=k, budget=B, eps=1.0, seed)``, default settings (its
      default prior for a torch model is "saliency": one gradient pass per image, reported);
  sparse-swarm-uniform: the same with prior="uniform" (queries only, like the peers);
  sparse-rs: ``SparseRS(model, pixels=k, budget=B, eps=1.0, seed)``;
  random: the control — k distinct uniform random locations, each set to a uniform random corner
      of [0,1]^C, one query; no search.

Like with like: the same images (the first N correctly classified test images), the same k, pure
L0 (k pixel locations, values free in [0, 1]), and queries counted the same way for every method:
by a wrapper around the model that counts the image rows each call sends (rows sent with
gradients on are counted apart, as gradient passes). infoswarm pads a call of fewer than 16 rows
by repeating its last row (bit-reproducible CPU GEMMs); the wrapper therefore does not count a
call's trailing copies of its last row, for every method alike. All N images go to each attack
in one call (the peers loop over them inside); the wrapper charges every row to the clean image
it differs from in the fewest pixel locations (a candidate of image i differs from it in ≤ k). Success is re-checked here on the returned image with the
plain model: untargeted = predicted ≠ label; targeted = predicted = a random target ≠ label
(seeded); and at most k pixel locations differ from the clean image (by more than 1e-5: ART's
round trip through 0..255 moves untouched pixels by a float32 ulp), all values in [0, 1].

    python bench/peers.py --models mnist-cnn --images 50 --ks 1,3,5,10 --targeted-ks 5,10 --budget 1000
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from infoswarm import data, zoo  # noqa: E402
from infoswarm.attacks import SparseRS, SparseSwarm  # noqa: E402
from infoswarm.stats import wilson  # noqa: E402

from common import REPO, command_line, machine_line, md_table, replace_section  # noqa: E402

METHODS = ("random", "torchattacks-onepixel", "art-pixel", "sparse-swarm", "sparse-swarm-uniform", "sparse-rs")
SECTION = "attack-peers"
TOL = 1e-5


class Counted(nn.Module):
    """Counts the image rows sent to the wrapped model and charges each row to the clean image it
    comes from (the one it differs from in the fewest pixel locations; a candidate differs from
    its own image in at most k). Rows sent with gradients on are counted apart (``grad``). A
    call's trailing copies of its last row are padding (infoswarm pads calls of fewer than 16
    rows that way) and are not counted."""

    def __init__(self, inner: nn.Module, clean: torch.Tensor) -> None:
        super().__init__()
        self.inner = inner
        self.clean = clean.flatten(2)  # [N, C, HW]
        self.reset()

    def reset(self) -> None:
        n = self.clean.shape[0]
        self.queries = torch.zeros(n, dtype=torch.long)
        self.grad = torch.zeros(n, dtype=torch.long)
        self.padding = 0
        self.far = 0  # rows farther than ``far_limit`` locations from every clean image
        self.far_limit = 10**9

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xd = x.detach()
        n = xd.shape[0]
        if n > 1:
            same = (xd.flatten(1) == xd[-1].flatten()).all(1)
            rows = n - int(same.flip(0).int().cumprod(0).sum()) + 1
        else:
            rows = n
        self.padding += n - rows
        xd = xd[:rows]
        owner = torch.empty(rows, dtype=torch.long)
        for i in range(0, rows, 64):
            xb = xd[i: i + 64].flatten(2).to(self.clean.dtype)
            dist = ((xb[:, None] - self.clean[None]).abs() > TOL).any(2).sum(2)  # [rows, N] changed locations
            best = dist.min(1)
            owner[i: i + 64] = best.indices
            self.far += int((best.values > self.far_limit).sum())
        counts = torch.bincount(owner, minlength=self.clean.shape[0])
        if torch.is_grad_enabled() and x.requires_grad:
            self.grad += counts
        else:
            self.queries += counts
        return self.inner(x)


class Softmax(nn.Module):
    """Probabilities out: ART's PixelAttack uses the classifier's outputs as its fitness."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.inner(x), -1)


# --------------------------------------------------------------------------------------------
# Budgets of the peers' DE (see the docstrings for the lines of their source)


def onepixel_plan(k: int, channels: int, budget: int, popsize: int = 100) -> dict[str, int]:
    """torchattacks OnePixel: ``popmul = max(1, int(self.popsize / len(bounds)))`` with
    len(bounds) = (2 + C)·k, and its DE makes ``max(5, popmul * parameter_count)`` members; the
    start evaluates them all, each of ``steps`` generations evaluates them all plus one callback
    query (``_attack_success`` on the best member)."""
    dims = (2 + channels) * k
    pop = max(5, max(1, popsize // dims) * dims)
    steps = max(1, (budget - pop) // (pop + 1))
    return {"popsize": popsize, "population": pop, "steps": steps, "max_queries": pop + steps * (pop + 1)}


def art_plan(k: int, channels: int, budget: int) -> dict[str, int]:
    """ART PixelAttack (es=1): ``popsize=max(1, 400 // len(bounds))`` (fixed in its source), so
    about 400 members; start + ``max_iter`` generations of members + 1 callback query, then one
    final ``_attack_success`` query. max_iter is the largest that keeps this ≤ budget (≥ 1)."""
    dims = (2 + channels) * k
    pop = max(5, max(1, 400 // dims) * dims)
    it = max(1, (budget - pop - 1) // (pop + 1))
    return {"population": pop, "max_iter": it, "max_queries": pop + it * (pop + 1) + 1}


# --------------------------------------------------------------------------------------------


def attack(name: str, counted: Counted, k: int, budget: int, x: torch.Tensor, y: torch.Tensor,
           target: torch.Tensor | None, seed: int) -> torch.Tensor:
    """Attack all images x [N,C,H,W] in one call; returns the adversarial images."""
    n, c, h, w = x.shape
    if name == "random":
        g = torch.Generator().manual_seed(seed)
        loc = torch.rand(n, h * w, generator=g).argsort(1)[:, :k]          # k distinct locations
        corner = torch.randint(0, 2, (n, c, k), generator=g).to(x.dtype)   # a random corner each
        xa = x.clone().flatten(2)
        xa.scatter_(2, loc[:, None, :].expand(n, c, k), corner)
        xa = xa.view_as(x)
        with torch.no_grad():
            counted(xa)
        return xa
    if name == "torchattacks-onepixel":
        import torchattacks

        plan = onepixel_plan(k, c, budget)
        np.random.seed(seed)  # its DE draws from numpy's global generator (seed=None)
        atk = torchattacks.OnePixel(counted, pixels=k, steps=plan["steps"], popsize=plan["popsize"], inf_batch=128)
        if target is not None:
            atk.set_mode_targeted_by_function(lambda im, lab: target)
        return atk(x, y).detach()
    if name == "art-pixel":
        from art.attacks.evasion import PixelAttack
        from art.estimators.classification import PyTorchClassifier

        plan = art_plan(k, c, budget)
        np.random.seed(seed)  # its DE draws from numpy's global generator (seed=None)
        clf = PyTorchClassifier(model=Softmax(counted), loss=nn.CrossEntropyLoss(), input_shape=(c, h, w),
                                nb_classes=10, clip_values=(0.0, 1.0), channels_first=True, device_type="cpu")
        atk = PixelAttack(clf, th=k, es=1, max_iter=plan["max_iter"], targeted=target is not None, verbose=False)
        lab = (target if target is not None else y).numpy()
        return torch.from_numpy(atk.generate(x.numpy(), lab)).to(x.dtype)
    if name in ("sparse-swarm", "sparse-swarm-uniform"):
        kw = {"prior": "uniform"} if name == "sparse-swarm-uniform" else {}
        return SparseSwarm(counted, pixels=k, budget=budget, eps=1.0, target=target, seed=seed, **kw)(x, y).x_adv.detach()
    if name == "sparse-rs":
        return SparseRS(counted, pixels=k, budget=budget, eps=1.0, target=target, seed=seed)(x, y).x_adv.detach()
    raise ValueError(name)


def run(name: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int, budget: int,
        target: torch.Tensor | None, seed: int) -> dict[str, Any]:
    counted = Counted(model, x).eval()
    counted.far_limit = k
    t0 = time.perf_counter()
    xa = attack(name, counted, k, budget, x, y, target, seed)
    wall = time.perf_counter() - t0
    with torch.no_grad():
        pred = model(xa).argmax(1)
    l0 = ((xa - x).abs() > TOL).any(1).flatten(1).sum(1)
    box = (xa.flatten(1).min(1).values >= 0) & (xa.flatten(1).max(1).values <= 1)
    hit = pred == target if target is not None else pred != y
    succ = hit & (l0 <= k) & box
    n = len(x)
    cap = 1 if name == "random" else budget
    q = counted.queries
    return {"method": name, "k": k, "n": n, "succ": int(succ.sum()),
            "wrong": int(((pred != y) & (l0 <= k) & box).sum()),
            "median_q": float(q[succ].double().median()) if succ.any() else float("nan"),
            "mean_q": float(torch.where(succ, q, torch.full_like(q, cap)).double().mean()),
            "max_q": int(q.max()), "over_budget": int((q > cap).sum()),
            "grad": float(counted.grad.double().mean()), "s_per_image": wall / n,
            "bad_l0": int((l0 > k).sum()), "bad_box": int((~box).sum()),
            "padding_rows": counted.padding, "far_rows": counted.far}


def fmt_rate(s: int, n: int) -> str:
    lo, hi = wilson(s, n)
    return f"{s}/{n} = {s / n:.2f} [{lo:.2f}, {hi:.2f}]"


HEADER = ["k", "method", "success (n/N = rate [95 % Wilson CI])", "median queries (successes)",
          "mean queries (failures at budget)", "max queries counted", "grad passes / image", "s / image"]


def row_cells(r: dict[str, Any]) -> list[str]:
    med = "—" if math.isnan(r["median_q"]) else f"{r['median_q']:.0f}"
    mx = f"{r['max_q']}" + (f" ({r['over_budget']} over)" if r["over_budget"] else "")
    return [str(r["k"]), r["method"], fmt_rate(r["succ"], r["n"]), med, f"{r['mean_q']:.0f}", mx,
            f"{r['grad']:.0f}", f"{r['s_per_image']:.3f}"]


def images_of(model_name: str, n: int) -> tuple[nn.Module, torch.Tensor, torch.Tensor, str]:
    model = zoo.load(model_name).eval()
    ds = zoo.ZOO[model_name].dataset
    x8, y = data.load(ds, "test")
    x = data.to_float(x8[: 4 * n + 20])
    y = y[: 4 * n + 20]
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    return model, x[ok][:n].contiguous(), y[ok][:n].contiguous(), ds


def plans_text(ks: list[int], channels: int, budget: int) -> str:
    parts = []
    for k in ks:
        o, a = onepixel_plan(k, channels, budget), art_plan(k, channels, budget)
        parts.append(f"k = {k}: OnePixel popsize={o['popsize']} → {o['population']} members, steps={o['steps']} "
                     f"(≤ {o['max_queries']} queries); ART {a['population']} members, max_iter={a['max_iter']} "
                     f"(≤ {a['max_queries']} queries)")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="mnist-cnn", help="zoo names, comma-separated")
    ap.add_argument("--images", type=int, default=50, help="correctly classified test images per model")
    ap.add_argument("--ks", default="1,3,5,10")
    ap.add_argument("--budget", type=int, default=1000, help="queries per image")
    ap.add_argument("--modes", default="untargeted,targeted")
    ap.add_argument("--targeted-ks", default="5,10", help="the ks of the targeted tables (default: --ks)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--note", default="", help="a sentence on what this run reduced, printed in the section")
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ks = [int(v) for v in args.ks.split(",")]
    machine = machine_line()
    started = time.perf_counter()
    blocks: list[str] = []
    results: list[dict[str, Any]] = []
    for model_name in args.models.split(","):
        model, x, y, ds = images_of(model_name, args.images)
        g = torch.Generator().manual_seed(args.seed)
        t_rand = (y + torch.randint(1, 10, y.shape, generator=g)) % 10
        for mode in args.modes.split(","):
            target = t_rand if mode == "targeted" else None
            rows: list[list[str]] = []
            title = (f"### {model_name} ({ds}), {mode}, budget {args.budget}, {len(x)} images\n\n"
                     f"Peer settings: {plans_text(ks, x.shape[1], args.budget)}.\n\n")
            mode_ks = [int(v) for v in args.targeted_ks.split(",")] if mode == "targeted" and args.targeted_ks else ks
            title = title.replace(plans_text(ks, x.shape[1], args.budget), plans_text(mode_ks, x.shape[1], args.budget))
            for k in mode_ks:
                for name in args.methods.split(","):
                    r = run(name, model, x, y, k, args.budget, target, args.seed)
                    r.update(model=model_name, mode=mode)
                    results.append(r)
                    print(model_name, mode, r, flush=True)
                    rows.append(row_cells(r))
                    write(args, argv, machine, started, blocks + [title + md_table(HEADER, rows)], results, False)
            blocks.append(title + md_table(HEADER, rows))
    write(args, argv, machine, started, blocks, results, True)
    return 0


def checks_text(results: list[dict[str, Any]]) -> str:
    bad = [r for r in results if r["bad_l0"] or r["bad_box"] or r["far_rows"]]
    if not bad:
        return ("Re-check: every returned image of every method changed at most k pixel locations and "
                "stayed in [0, 1], and every query row lay within k locations of its image.")
    return "Re-check failures (counted as failures): " + "; ".join(
        f"{r['model']} {r['mode']} k={r['k']} {r['method']}: {r['bad_l0']} over k, {r['bad_box']} out of [0, 1], "
        f"{r['far_rows']} query rows more than k locations from every clean image"
        for r in bad) + "."


def reading(results: list[dict[str, Any]]) -> str:
    """The reading under the tables, computed from the results: per table and k, the best
    success rate, the methods whose rates are not distinguishable from it (Wilson intervals
    overlap), how the peers stand, and the control."""
    lines = ["Reading (generated from the rows above; \"tied\" = 95 % Wilson intervals overlap, not a test):"]
    for key in dict.fromkeys((r["model"], r["mode"]) for r in results):
        rs = [r for r in results if (r["model"], r["mode"]) == key]
        for k in dict.fromkeys(r["k"] for r in rs):
            row = {r["method"]: r for r in rs if r["k"] == k}
            att = {m: r for m, r in row.items() if m != "random"}
            if not att:
                continue
            best = max(att.values(), key=lambda r: (r["succ"], -r["mean_q"]))
            lo_b, _ = wilson(best["succ"], best["n"])
            tied = [m for m, r in att.items() if m != best["method"] and wilson(r["succ"], r["n"])[1] >= lo_b]
            below = [f"{m} {r['succ']}/{r['n']}" for m, r in att.items()
                     if m != best["method"] and m not in tied]
            ctrl = row.get("random")
            parts = [f"- {key[0]} {key[1]}, k = {k}: most successes {best['method']} "
                     f"{best['succ']}/{best['n']} (mean queries {best['mean_q']:.0f})"]
            parts.append("; tied with it: " + ", ".join(
                f"{m} {att[m]['succ']}/{att[m]['n']} (mean queries {att[m]['mean_q']:.0f})" for m in tied)
                if tied else "; no other method within its interval")
            if below:
                parts.append("; below it: " + ", ".join(below))
            if ctrl is not None:
                lo_c, hi_c = wilson(ctrl["succ"], ctrl["n"])
                beat = [m for m, r in att.items() if wilson(r["succ"], r["n"])[0] > hi_c]
                parts.append(f"; random control {ctrl['succ']}/{ctrl['n']}"
                             + (f", above it: {', '.join(beat)}" if beat else ", no method clearly above it"))
            lines.append("".join(parts) + ".")
    return "\n".join(lines)


def write(args: argparse.Namespace, argv: list[str] | None, machine: str, started: float,
          blocks: list[str], results: list[dict[str, Any]], done: bool) -> None:
    minutes = (time.perf_counter() - started) / 60
    state = f"Whole run: {minutes:.0f} min." if done else f"PARTIAL: {minutes:.0f} min so far, run still going."
    body = "\n".join([
        "## Sparse attacks beside the real peers (`bench/peers.py`)", "",
        f"Machine: {machine}. {state}",
        f"Command: `make bench-peers ARGS=\"{' '.join(sys.argv[1:] if argv is None else argv)}\"` "
        f"(= `{command_line('bench/peers.py', argv)}` in bench/.venv-peers).",
        "Peers: torchattacks 3.5.1 `OnePixel` and ART 1.20.1 `PixelAttack` (es=1: differential "
        "evolution; es=0 needs the `cma` package, not installed) in their own environment. Ours: "
        "`sparse-swarm` (defaults: saliency prior, one gradient pass per image), `sparse-swarm-uniform` "
        "(prior=\"uniform\", queries only, like the peers) and `sparse-rs`. `random`: the control, k random "
        "locations at random corners of [0,1]^C, one query.",
        f"Images: the first {args.images} correctly classified test images of each model's dataset; "
        "all N in one call per method (the peers loop over them inside); seed "
        f"{args.seed} (the peers' DE draws from numpy's global generator, seeded with it before each "
        "call). Pure L0: k pixel "
        "locations, values free in [0, 1]. Queries are image rows counted by a wrapper around the "
        "model, each charged to the clean image it is within k locations of (a call's trailing copies of its last row, infoswarm's padding to 16 rows, are not "
        "counted; rows with gradients on are the grad passes). Mean queries count every failure at "
        "the full budget (the control at 1). Success is re-checked by the benchmark on the returned "
        "image: untargeted = misclassified, targeted = a random target ≠ label (seeded) is predicted, "
        "at most k locations changed (> 1e-5), values in [0, 1].",
        checks_text(results),
        *([args.note] if args.note else []),
        "", *[b + "\n" for b in blocks],
        *([reading(results)] if done else [])])
    replace_section(args.out, SECTION, body)


if __name__ == "__main__":
    from common import start_cpu, sys_user_guard  # bench/common.py: tune_cpu, and the sys/user guard

    start_cpu()
    code = main()
    sys_user_guard("bench/peers.py, whole run")
    sys.exit(code)
