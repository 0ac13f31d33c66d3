"""What does sparse adversarial training cost per epoch, against a plain training epoch?

Times training steps of each method on the same batches, interleaved (plain, one-step, swap,
pgd0, plain, ...) so that the load of a shared machine hits every method alike, and reports the
median wall time per batch, the ratio to the plain step measured in the same run, the process CPU
time per batch, and the projected seconds per epoch of ``--epoch-images`` images. The steps are
``infoswarm.sparse_hardening.train_step`` (the step ``harden --method sparse`` runs) with harden's
defaults (TRADES beta 3, soft labels 0.1), and for "plain" one cross-entropy step on the clean
batch (the step of a plain training epoch). The per-epoch watch attack is not included: it is
the same for every method and set by ``--eval-images`` / ``--eval-queries``.

Example (the run in BENCHMARKS.md):
  python bench/epoch_cost.py --dataset mnist --model mnist-cnn --batches 10 --repeats 5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from infoswarm import data, zoo  # noqa: E402
from infoswarm.sparse_hardening import SparseConfig, train_step  # noqa: E402

from common import command_line, interleaved_times, machine_line, md_table, replace_section  # noqa: E402

METHODS = {
    "one-step-ce": {"inner": "one-step", "inner_steps": 0, "objective": "ce"},
    "one-step": {"inner": "one-step", "inner_steps": 0},
    "swap": {"inner": "swap", "inner_steps": 4},
    "pgd0": {"inner": "pgd0", "inner_steps": 4},
}
"""The inner attacks timed beside the plain step: harden's ``--inner``, ``--inner-steps`` and
``--objective`` (TRADES by default: its clean term adds a forward and backward pass of the batch)."""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--model", default="mnist-cnn")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--batches", type=int, default=10, help="batches per timed call")
    p.add_argument("--repeats", type=int, default=5, help="interleaved timed rounds (median over them)")
    p.add_argument("--k-train", type=int, default=60)
    p.add_argument("--epoch-images", type=int, default=59000, help="images per epoch for the projection")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "BENCHMARKS.md"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x8, y = data.load(args.dataset, "train")
    n = args.batch_size * args.batches
    x, y = data.to_float(x8[:n]), y[:n]
    batches = [(x[i:i + args.batch_size], y[i:i + args.batch_size]) for i in range(0, n, args.batch_size)]
    models = {name: zoo.load(args.model) for name in ["plain", *METHODS]}
    opts = {name: torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9) for name, m in models.items()}
    cfgs = {name: SparseConfig(k_train=args.k_train, prior="uniform", **kw) for name, kw in METHODS.items()}
    gens = {name: torch.Generator().manual_seed(0) for name in METHODS}
    cpu: dict[str, list[float]] = {name: [] for name in models}
    passes: dict[str, dict[str, int]] = {}

    def plain() -> None:
        m, opt = models["plain"], opts["plain"]
        m.train()
        for xb, yb in batches:
            loss = F.cross_entropy(m(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    def sparse(name: str) -> Callable[[], None]:
        def run() -> None:
            for xb, yb in batches:
                _, _, passes[name] = train_step(models[name], opts[name], xb, yb, cfgs[name], gens[name])
        return run

    def timed_cpu(name: str, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            t0 = time.process_time()
            fn()
            cpu[name].append(time.process_time() - t0)
        return run

    fns = {"plain": timed_cpu("plain", plain), **{k: timed_cpu(k, sparse(k)) for k in METHODS}}
    machine = machine_line()
    t0 = time.perf_counter()
    times = interleaved_times(fns, args.repeats, warmup=1)
    total = time.perf_counter() - t0
    base = times["plain"].median
    rows = []
    for name, t in times.items():
        per_batch = t.median / args.batches
        cpu_batch = sorted(cpu[name][1:])[len(cpu[name][1:]) // 2] / args.batches  # the warm-up round left out
        inner = "–" if name == "plain" else f"{passes[name]['forward']} / {passes[name]['backward']}"
        rows.append([name, inner, f"{1e3 * per_batch:.0f}", f"{t.median / base:.2f}", f"{1e3 * cpu_batch:.0f}",
                     f"{per_batch * args.epoch_images / args.batch_size:.0f}"])
    body = "\n".join([
        f"### Cost of a sparse adversarial training epoch ({args.model}, {args.dataset})",
        "",
        f"Command: `{command_line('bench/epoch_cost.py', argv)}` ({total:.0f} s). Every method trains a copy of "
        f"the shipped {args.model} on the same {args.batches} batches of {args.batch_size} training images per "
        f"timed call; the calls alternate (plain, one-step-ce, one-step, swap, pgd0, ...) for {args.repeats} rounds after one "
        f"untimed round, so a change of load hits all alike. k_train = {args.k_train}, uniform locations, TRADES "
        "β 3 with soft labels 0.1 (harden's defaults; one-step-ce: cross-entropy on the adversarial batch "
        "alone, soft labels 0.1); 'plain' is one cross-entropy step on the clean batch. "
        "The epoch column projects the median to "
        f"{args.epoch_images} images; the per-epoch watch attack is left out (the same for every method).",
        "",
        md_table(["method", "inner passes per image (fwd / bwd)", "ms / batch (median wall)", "× plain",
                  "CPU ms / batch (median)", "s / epoch (projected)"], rows),
        "",
        f"Machine: {machine}",
        "",
        "Target (hardening issue): the one-step method's epoch ≤ 2.5× a plain epoch.",
    ])
    replace_section(args.out, f"epoch-cost-{args.dataset}", body)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
