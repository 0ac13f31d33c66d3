"""Benchmark: sparse attacks at equal pixel count k and query budget, with a random control.

Methods (each wrapped by a counter that times the model's forward passes):
  sparse-swarm: infoswarm's default sparse attack (SparseSwarm, its default settings);
  sparse-rs: our Sparse-RS (the reference query attack);
  pgd0: white-box L0 PGD (restarts of 20 steps, steps × restarts + 1 ≤ budget);
  spgd: sparse-PGD, the cascade (projected, then unprojected on its failures) at 300 steps per
      variant, the authors' evaluation setting, whatever the budget (its cost is reported);
  onepixel: one-pixel-style differential evolution over k pixels (population 50, budget/50 − 1
      generations);
  jsma: white-box JSMA (k pixels at most; untargeted runs aim at the second class; queries =
      its forward + Jacobian passes, not limited by the budget);
  mfipso-paper: the paper's mFI-PSO at equal k (exact-FI pixels, margin-free paper fitness,
      canonical PSO, 50 particles, half the iterations before the paper's restart, half after);
  random: the control — the same k and box, k uniform random locations at random box corners,
      no search (one query; SparseSwarm with budget=1).
Every image is a correctly classified test image (the first N); pixel values free in [0, 1]
(eps = 1, pure L0). Untargeted: success = misclassified. Targeted: a random target ≠ the label
per image (seeded), success = the target is predicted. Success is re-checked here (prediction on
the returned image and at most k changed pixel locations), not trusted from the attack.

Modes: ``untargeted``, ``targeted`` (random target), ``targeted-p90`` (random target reached
with probability ≥ 0.9: every method gets ``min_prob=0.9``).
Models: zoo names, or ``label=zoo-name:weights.safetensors`` for other weights of a zoo
architecture (e.g. an adversarially trained one).

    python bench/attack.py --models mnist-cnn,fashion-cnn --images 100 --ks 1,5,10,20 --budgets 1000

A method ``sparse-swarm:loss=ce;particles=4`` runs SparseSwarm with those options
(``spgd:variant=projected;iterations=100`` likewise for sPGD).

``--equal-cost`` reads the budgets as forward-equivalents per image: a backward pass's cost
relative to a forward pass is measured on each model first (32 test images, forward under
no_grad against forward + backward to the input, interleaved, median of 20, median of three
rounds), sparse-swarm gets
the budget with ``grad_cost=r``: each of its backward passes (its prior, and any map refreshed at
the incumbent) takes r queries from it (one map: ⌊budget − r⌋ queries), pgd0 ⌊budget / (1 + r)⌋ (each step is a
forward and a backward pass), spgd its fixed steps; the tables then give forward and backward
passes and forward-equivalents (forwards + r · backwards) per image.

``--section NAME`` writes the tables to their own section of ``--out`` (so runs of different
sizes sit side by side). ``--ablation`` runs only SparseSwarm's ablation (k = 10, first model,
untargeted): prior × swarm size 1/4/16, then corner vs continuous values and the margin vs
CE vs the paper's fitness, one at a time from the defaults.
The peers (torchattacks OnePixel, ART PixelAttack) run in their own environment: bench/peers.py.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from infoswarm import data, zoo  # noqa: E402
from infoswarm.attacks import MFIPSO, SPGD, SparseSwarm, registry  # noqa: E402
from infoswarm.attacks.base import probs_of  # noqa: E402
from infoswarm.attacks.result import wilson  # noqa: E402

from common import REPO, command_line, interleaved_times, machine_line, md_table, replace_section  # noqa: E402

METHODS = ("sparse-swarm", "sparse-rs", "pgd0", "spgd", "onepixel", "jsma", "mfipso-paper", "random")
SPGD_ITERATIONS = 300
"""sPGD's steps per variant here: the authors' evaluation script's setting."""
MODES = ("untargeted", "targeted", "targeted-p90")


class Counted(nn.Module):
    """Times the forward passes of the wrapped model."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.forward_seconds = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        out = self.inner(x)
        self.forward_seconds += time.perf_counter() - t0
        return out


def make(name: str, model: nn.Module, k: int, budget: int, target: Any, seed: int, min_prob: float | None = None,
         **kw: Any) -> Callable[..., Any]:
    """A registered attack (``infoswarm.attacks.registry``) with this benchmark's shared options
    (k pixels, the query budget, eps = 1 for the L0 attacks; an L∞ attack keeps its own eps;
    untargeted runs use the attack's default target: jsma aims at the second class), or one of
    the two benchmark-only methods ("random", "mfipso-paper")."""
    if name == "spgd":                       # the authors' evaluation setting: a fixed number of steps
        return SPGD(model, pixels=k, eps=1.0, seed=seed,
                    **{"iterations": SPGD_ITERATIONS, "target": target, "min_prob": min_prob, **kw})
    if name in registry.names():
        cls = registry.attack_class(name)
        shared = {"pixels": k, "budget": budget, "eps": 1.0 if cls.norm == "l0" else None}
        opts = {o: v for o, v in shared.items() if o in cls.uses and v is not None}
        judged = {"min_prob": min_prob, **({} if target is None else {"target": target})}
        return registry.build(name, model, seed=seed, **opts, **judged, **kw)
    w = dict(target=target, min_prob=min_prob)
    if name == "random":
        return SparseSwarm(model, pixels=k, budget=1, eps=1.0, seed=seed, prior="uniform", **w)
    if name == "mfipso-paper":
        particles = 50
        iters = max(1, budget // (2 * particles) - 1)
        return MFIPSO(model, pixels=k, eps=1.0, particles=particles, iterations=iters,
                      restart_iterations=iters, pixel_rule="fi", seed=seed, **w)
    raise ValueError(name)


def run(name: str, counted: Counted, model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int,
        budget: int, target: torch.Tensor | None, seed: int, min_prob: float | None = None,
        **kw: Any) -> dict[str, Any]:
    attack = make(name, counted, k, budget, target, seed, min_prob, **kw)
    counted.forward_seconds = 0.0
    t0 = time.perf_counter()
    res = attack(x, y)
    wall = time.perf_counter() - t0
    probs = probs_of(model, res.x_adv.clamp(0, 1))
    pred = probs.argmax(1)
    l0_ok = (res.x_adv != x).any(1).flatten(1).sum(1) <= k
    hit = (pred == target) if target is not None else (pred != y)
    if min_prob is not None and target is not None:
        hit &= probs.gather(1, target.view(-1, 1)).view(-1) >= min_prob
    succ = hit & l0_ok
    wrong = (pred != y) & l0_ok
    n = len(x)
    q = res.queries.double()
    capped = getattr(attack, "query_budget", lambda: budget)() is not None   # jsma: no cap, its own passes
    cap = 1 if name == "random" else (budget if capped else int(q.max()))
    return {"method": name, "k": k, "n": n, "succ": int(succ.sum()), "wrong": int(wrong.sum()),
            "budget": budget, "fwd": float(q.mean()), "fwd_max": int(q.max()),
            "bwd_max": int(res.grad_evals.max()),
            "median_q": float(q[succ].median()) if succ.any() else float("nan"),
            "mean_q_fail_at_budget": float(torch.where(succ, q, torch.full_like(q, cap)).mean()),
            "max_q": int(q.max()), "grad_evals": float(res.grad_evals.double().mean()),
            "s_per_image": wall / n, "forward_share": counted.forward_seconds / wall if wall else float("nan"),
            "l0_mean": float(res.pixel_l0.double().mean()),
            "per_image": "".join("1" if s else "0" for s in succ.tolist())}   # for paired comparisons


def _is_float(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def variant(name: str) -> tuple[str, dict[str, Any]]:
    """``"sparse-swarm:loss=ce;particles=4"`` -> ("sparse-swarm", {"loss": "ce", "particles": 4}):
    a registered attack with non-default constructor options (integers and decimals are
    converted; the registry refuses an option the attack does not take)."""
    base, _, opts = name.partition(":")
    kw: dict[str, Any] = {}
    for item in filter(None, opts.split(";")):
        key, _, value = item.partition("=")
        kw[key] = int(value) if value.isdigit() else float(value) if _is_float(value) else value
    if kw and base not in registry.names():
        raise SystemExit(f"options after ':' are for registered attacks ({', '.join(registry.names())}), not {base}")
    return base, kw


def fmt_rate(s: int, n: int) -> str:
    lo, hi = wilson(s, n)
    return f"{s}/{n} = {s / n:.2f} [{lo:.2f}, {hi:.2f}]"


def row_cells(r: dict[str, Any]) -> list[str]:
    med = "—" if r["median_q"] != r["median_q"] else f"{r['median_q']:.0f}"
    return [fmt_rate(r["succ"], r["n"]), fmt_rate(r["wrong"], r["n"]), med, f"{r['mean_q_fail_at_budget']:.0f}",
            f"{r['grad_evals']:.0f}", f"{r['s_per_image']:.3f}", f"{r['forward_share']:.2f}"]


def backward_ratio(model: nn.Module, x: torch.Tensor) -> float:
    """r = (time of forward + backward to the input − time of a forward) / time of a forward,
    on 32 images (interleaved, median of 20 after a warm-up; the median of three such rounds): a
    backward pass in forward passes."""
    xb = x[:32]

    def fwd() -> None:
        with torch.no_grad():
            model(xb)

    def fwd_bwd() -> None:
        xa = xb.clone().requires_grad_(True)
        torch.autograd.grad(model(xa).logsumexp(1).sum(), xa)

    ratios = []
    for _ in range(3):                       # three interleaved rounds; their median resists a burst of load
        t = interleaved_times({"f": fwd, "fb": fwd_bwd}, repeats=20, warmup=3)
        ratios.append(max(0.0, (t["fb"].median - t["f"].median) / t["f"].median))
    return sorted(ratios)[1]


def equal_cost_budget(name: str, budget: float, r: float) -> int:
    """Queries for ``name`` so that it spends about ``budget`` forward-equivalents per image
    (sparse-swarm: the whole budget, with ``grad_cost=r`` charging each backward pass to it, see
    :func:`equal_cost_options`)."""
    if name == "sparse-swarm":
        return max(1, int(budget))
    if name == "pgd0":
        return max(2, int(budget // (1 + r)))
    return int(budget)


def equal_cost_options(name: str, r: float) -> dict[str, Any]:
    """Constructor options that make ``name`` pay for its backward passes out of its budget:
    sparse-swarm's ``grad_cost`` (r forward passes per backward pass, so one prior map leaves
    ⌊budget − r⌋ queries, and every refreshed map r fewer)."""
    return {"grad_cost": r} if name == "sparse-swarm" else {}


def cost_cells(r: dict[str, Any], ratio: float) -> list[str]:
    fe = r["fwd"] + ratio * r["grad_evals"]
    fe_max = r["fwd_max"] + ratio * r["bwd_max"]
    budget = {"spgd": "300 steps / variant", "random": "1"}.get(r["method"], str(r["budget"]))
    return [fmt_rate(r["succ"], r["n"]), fmt_rate(r["wrong"], r["n"]), budget, f"{r['fwd']:.0f}",
            f"{r['grad_evals']:.0f}", f"{fe:.0f}", f"{fe_max:.0f}", f"{r['s_per_image']:.3f}"]


COST_HEADER = ["success (n/N = rate [95 % Wilson CI])", "misclassified (n/N [CI])", "queries given",
               "forward passes / image (mean)", "backward passes / image (mean)",
               "forward-equivalents / image (mean)", "forward-equivalents (max)", "s / image"]

HEADER = ["success (n/N = rate [95 % Wilson CI])", "misclassified (n/N [CI])", "median queries (successes)",
          "mean queries (failures at budget)", "grad evals / image", "s / image", "forward share"]


def images_of(spec: str, n: int, skip: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor, str]:
    """``spec``: a zoo name, or ``label=zoo-name:weights.safetensors``; the first n correctly
    classified test images after the first ``skip`` of them (a separate set for pilot runs)."""
    arch, weights = spec, None
    if "=" in spec:
        arch, weights = spec.split("=", 1)[1].split(":", 1)
    model = zoo.load(arch, weights).eval()
    ds = zoo.ZOO[arch].dataset
    x8, y = data.load(ds, "test")
    x = data.to_float(x8[: 4 * (n + skip)])
    y = y[: 4 * (n + skip)]
    ok = probs_of(model, x).argmax(1) == y
    return model, x[ok][skip: skip + n], y[ok][skip: skip + n], ds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="mnist-cnn,fashion-cnn",
                    help="zoo names or label=zoo-name:weights.safetensors, comma-separated")
    ap.add_argument("--images", type=int, default=100, help="correctly classified test images per model")
    ap.add_argument("--skip", type=int, default=0,
                    help="leave out the first SKIP correctly classified images (pilot runs on other images)")
    ap.add_argument("--ks", default="1,5,10,20")
    ap.add_argument("--budgets", "--budget", dest="budgets", default="1000", help="queries per image, comma-separated")
    ap.add_argument("--modes", default="untargeted,targeted", help=f"comma-separated of {', '.join(MODES)}")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--ablation", action="store_true",
                    help="only SparseSwarm's ablation at k=10 (first model, untargeted), in its own section")
    ap.add_argument("--section", default=None, help="section of --out to write (default attack / attack-ablation)")
    ap.add_argument("--equal-cost", action="store_true",
                    help="budgets are forward-equivalents per image (a backward pass measured per model)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    ks = [int(v) for v in args.ks.split(",")]
    budgets = [int(v) for v in args.budgets.split(",")]
    for m in args.modes.split(","):
        if m not in MODES:
            ap.error(f"unknown mode {m!r}")
    machine = machine_line()
    started = time.perf_counter()
    blocks: list[str] = []
    for spec in ([] if args.ablation else args.models.split(",")):
        model, x, y, ds = images_of(spec, args.images, args.skip)
        label = spec.split("=", 1)[0]
        counted = Counted(model).eval()
        ratio = backward_ratio(model, x) if args.equal_cost else 0.0
        g = torch.Generator().manual_seed(args.seed)
        t_rand = (y + torch.randint(1, 10, y.shape, generator=g)) % 10
        for budget in budgets:
            for mode in args.modes.split(","):
                target = None if mode == "untargeted" else t_rand
                min_prob = 0.9 if mode == "targeted-p90" else None
                rows: list[list[Any]] = []
                title = f"### {label} ({ds}, {len(x)} images), {mode}, budget {budget}\n\n"
                head = ["k", "method", *HEADER]
                if args.equal_cost:
                    title = (f"### {label} ({ds}, {len(x)} images), {mode}, {budget} forward-equivalents per image; "
                             f"a backward pass costs {ratio:.2f} forward passes here (measured)\n\n")
                    head = ["k", "method", *COST_HEADER]
                for k in ks:
                    for name in args.methods.split(","):
                        base, kw = variant(name)
                        q = equal_cost_budget(base, budget, ratio) if args.equal_cost else budget
                        if args.equal_cost:
                            kw = {**equal_cost_options(base, ratio), **kw}
                        r = run(base, counted, model, x, y, k, q, target, args.seed, min_prob, **kw)
                        print(label, mode, budget, {**r, "method": name}, flush=True)   # the variant's full name
                        rows.append([k, name, *(cost_cells(r, ratio) if args.equal_cost else row_cells(r))])
                        write(args, argv, machine, started, blocks + [title + md_table(head, rows)], done=False)
                blocks.append(title + md_table(head, rows))
                write(args, argv, machine, started, blocks, done=False)
    if args.ablation:
        spec = args.models.split(",")[0]
        model, x, y, ds = images_of(spec, args.images)
        counted = Counted(model).eval()
        budget = budgets[0]
        rows = []
        variants: list[dict[str, Any]] = [dict(prior=pr, particles=p) for pr in ("uniform", "gain", "saliency", "fi", "fi-eps")
                                          for p in (1, 4, 16)]
        variants += [dict(values="continuous"), dict(loss="paper"), dict(loss="ce"), dict(refine=True)]
        head = ["prior", "particles", "values", "loss", "refine", *HEADER]
        for v in variants:
            r = run("sparse-swarm", counted, model, x, y, 10, budget, None, args.seed, **v)
            print("ablation", v, r, flush=True)
            rows.append([v.get("prior", "gain"), v.get("particles", 1), v.get("values", "corner"),
                         v.get("loss", "margin"), "yes" if v.get("refine") else "no", *row_cells(r)])
            write(args, argv, machine, started, blocks + [md_table(head, rows)], done=False)
        blocks.append(f"### Ablation: SparseSwarm at k = 10 ({spec}, {len(x)} images, untargeted, budget {budget})"
                      "\n\nFirst the prior × swarm-size grid (corner values, margin loss), then one change at a "
                      "time from the defaults (gain prior, 1 particle, corner values, margin loss).\n\n"
                      + md_table(head, rows))
    write(args, argv, machine, started, blocks, done=True)
    return 0


def write(args: argparse.Namespace, argv: list[str] | None, machine: str, started: float,
          blocks: list[str], done: bool) -> None:
    """(Re)write the section (``attack``, or ``attack-ablation``); a run in progress says so."""
    minutes = (time.perf_counter() - started) / 60
    after = f" after the first {args.skip}" if args.skip else ""
    state = f"Whole run: {minutes:.0f} min." if done else f"PARTIAL: {minutes:.0f} min so far, run still going."
    body = "\n".join([
        "### SparseSwarm ablation (`bench/attack.py --ablation`)" if args.ablation else
        f"## Sparse attacks at equal k and budget (`bench/attack.py`, section {args.section or 'attack'})", "",
        f"Machine: {machine}. {state}",
        f"Command: `{command_line('bench/attack.py', argv)}`.",
        f"Images: the first {args.images} correctly classified test images of each model's dataset{after}; pixel "
        "values free in [0, 1] (eps = 1, pure L0); one run per cell (seed "
        f"{args.seed}). Success is re-checked by the benchmark: untargeted = misclassified, targeted = a "
        "random target ≠ label (seeded) is predicted, and at most k pixel locations changed. "
        "`misclassified` is the share predicted ≠ label (the paper's measure). Mean queries count "
        "every failure at the full budget. `random` is the control: k random locations at random "
        "corners, no search. Grad evals are backward passes (PGD0: every step; SparseSwarm: its prior; "
        "sPGD: its steps, its queries being forward passes only; JSMA: none counted, its Jacobians are in its "
        "queries)." + (" Equal cost (`--equal-cost`): the budget is in forward-equivalents per image "
                       "(forward passes + r · backward passes, r measured per model); sparse-swarm pays r queries "
                       "per backward pass out of the budget (`grad_cost`; one map: ⌊budget − r⌋ queries), pgd0 ⌊budget / (1 + r)⌋ steps, spgd its 300 steps per variant whatever the budget, "
                       "so its cost column is what it spent." if args.equal_cost else ""),
        "", *[b + "\n" for b in blocks]])
    replace_section(args.out, args.section or ("attack-ablation" if args.ablation else "attack"), body)


if __name__ == "__main__":
    from common import start_cpu, sys_user_guard  # bench/common.py: tune_cpu, and the sys/user guard

    start_cpu()
    code = main()
    sys_user_guard("bench/attack.py, whole run")
    sys.exit(code)
