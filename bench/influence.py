"""Benchmark: pixel-FI maps vs the K backward passes they need and vs a per-element SVD loop.

For each model, on the first N test images:
  (a) ``influence.pixel_fi(model, x, "pred", unit="pixel")``: exact FI maps, batched;
  (b) the floor of any Jacobian-based method: per batch one forward and K backward passes
      w.r.t. the input, nothing else;  target (a)/(b) <= 1.25;
  (c) a loop written to mirror the authors' method: image by image, K backward passes for the
      gradients of p_k, then for every channel entry a 1×K matrix of ∇p_k/(√p_k+ε), an SVD,
      singular values <= ε dropped, FI = ||S⁻¹Uᵀg||² with g = ∇p_c/(p_c+ε). It is slow, so it
      runs on a few images and is reported per image;  target (c)/(a) per image >= 100.
  (d) check: the library's ε-variant map equals the loop's values on those images.
Times are medians over repeated runs after one warm-up. Writes its own section of the output
Markdown file (between markers) and prints it.

    python bench/influence.py --out BENCHMARKS.md            # as `make bench`
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from infoswarm import data, influence, zoo

START, END = "<!-- bench:influence:start -->", "<!-- bench:influence:end -->"
REPO = Path(__file__).resolve().parents[1]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bare_backward(model: torch.nn.Module, x: torch.Tensor, batch_size: int) -> None:
    """One forward and K input-gradient backward passes per batch: the floor for (a)."""
    for i in range(0, len(x), batch_size):
        xb = x[i: i + batch_size].detach().requires_grad_(True)
        logits = model(xb)
        k = logits.shape[1]
        for j in range(k):
            torch.autograd.grad(logits[:, j].sum(), xb, retain_graph=j < k - 1)


def svd_loop(model: torch.nn.Module, x: torch.Tensor, eps: float = 1e-3) -> np.ndarray:
    """Per-entry FI, authors' style (batch 1, python loop, numpy SVD per entry): [n, C*H*W]."""
    out = []
    for i in range(len(x)):
        xi = x[i: i + 1].detach().requires_grad_(True)
        p = torch.softmax(model(xi), 1)[0]
        k = p.numel()
        grads = np.stack([torch.autograd.grad(p[j], xi, retain_graph=j < k - 1)[0].reshape(-1).numpy()
                          for j in range(k)])                                   # [K, D]: ∇p_k
        pn = p.detach().double().numpy()
        c = int(pn.argmax())
        cols = grads / (np.sqrt(pn) + eps)[:, None]
        fi = np.zeros(grads.shape[1])
        for e in range(grads.shape[1]):
            mat = cols[:, e].reshape(1, k)                                      # 1 x K
            u, s, _ = np.linalg.svd(mat, full_matrices=False)
            g = grads[c, e] / (pn[c] + eps)
            keep = s > eps
            if keep.any():
                fi[e] = float(np.sum((u[:, keep].T * g) ** 2 / s[keep] ** 2))
        out.append(fi)
    return np.stack(out)


def bench_model(label: str, model: torch.nn.Module, x: torch.Tensor, args: argparse.Namespace,
                svd_images: int, weights_note: str) -> dict[str, object]:
    bs = args.batch_size
    t_a = median_time(lambda: influence.pixel_fi(model, x, "pred", unit="pixel", batch_size=bs), args.repeats)
    t_b = median_time(lambda: bare_backward(model, x, bs), args.repeats)
    with torch.no_grad():  # the loop runs on the least confident images, where ε-FI is not all 0
        conf = torch.softmax(model(x), 1).amax(1)
    xs = x[torch.argsort(conf)[:svd_images]]
    t_c = median_time(lambda: svd_loop(model, xs), max(1, args.repeats // 2)) / svd_images
    ref = svd_loop(model, xs)
    lib = influence.pixel_fi(model, xs, "pred", unit="element", eps=1e-3).flatten(1).numpy()
    per_a = t_a / len(x)
    return {"model": label, "weights": weights_note, "images": len(x), "batch": bs,
            "shape": "x".join(str(s) for s in x.shape[1:]), "a": t_a, "b": t_b, "ratio_ab": t_a / t_b,
            "c_per_image": t_c, "svd_images": svd_images, "ratio_ca": t_c / per_a,
            "max_abs_diff": float(np.abs(ref - lib).max()), "ref_max": float(np.abs(ref).max())}


def section(rows: list[dict[str, object]], args: argparse.Namespace, command: str) -> str:
    lines = [START, "## Influence maps (`bench/influence.py`)", "",
             f"Machine: {cpu_name()}, {torch.get_num_threads()} torch threads "
             f"({args.threads} requested), torch {torch.__version__}, Python {platform.python_version()}; "
             f"{datetime.date.today().isoformat()}.",
             f"Command: `{command}`. Times are medians of {args.repeats} runs after a warm-up "
             "(the SVD loop: medians of fewer runs on a few images, per image).", "",
             "| model | weights | images (shape) | batch | (a) pixel-FI maps, s | (b) bare K backward passes, s "
             "| (a)/(b) (target ≤ 1.25) | (c) per-entry SVD loop, s/image | (c)/(a) per image (target ≥ 100) "
             "| (d) max abs diff, ε-variant vs loop |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['weights']} | {r['images']} ({r['shape']}) | {r['batch']} | {r['a']:.3f} "
            f"| {r['b']:.3f} | {r['ratio_ab']:.3f} {'✓' if r['ratio_ab'] <= 1.25 else '✗'} "
            f"| {r['c_per_image']:.3f} (on {r['svd_images']} images) | {r['ratio_ca']:.0f}× "
            f"{'✓' if r['ratio_ca'] >= 100 else '✗'} | {r['max_abs_diff']:.1e} (values up to {r['ref_max']:.2g}) |")
    lines += ["",
              "(a) exact pixel FI (all channels of a location; for MNIST a pixel is one entry) for every "
              "pixel of every image, batched. (b) the same batches' forward pass plus K = 10 "
              "input-gradient backward passes and nothing else: the cost floor of any method that needs "
              "the Jacobian. (c) a loop that mirrors the authors' released method (one image at a time, "
              "one numpy SVD per channel entry, ε = 1e-3), timed on the least confident few images and reported per image; "
              "the ratio compares per-image times. (d) shows (c) computes the quantity that the library's "
              "`eps=1e-3` mode computes.", "",
              "Reading (c)/(a): the loop's cost per image is its batch-1 forward and K backward passes plus "
              "one small SVD per channel entry (a 1×K matrix, tens of microseconds each). However fast the "
              "FI arithmetic is, (a) cannot cost less than (b), so the ratio is bounded by how much those "
              "loop costs exceed the batched backward passes of (b); where the table shows ✗ the 100× "
              "target is not met by this honest baseline.", END]
    return "\n".join(lines)


def write_section(path: Path, text: str) -> None:
    old = path.read_text() if path.exists() else "# Benchmarks\n\nEach section is written by the script it names; run `make bench`.\n"
    if START in old and END in old:
        new = old[: old.index(START)] + text + old[old.index(END) + len(END):]
    else:
        new = old.rstrip("\n") + "\n\n" + text + "\n"
    path.write_text(new)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--svd-images", type=int, default=4)
    ap.add_argument("--cifar-root", default=str(REPO.parent / "shared" / "data" / "cifar10"))
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    ap.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run")
    args = ap.parse_args(argv)
    if args.quick:
        args.images, args.repeats, args.svd_images = 8, 1, 1
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    x8, _ = data.load("mnist", "test")
    model = zoo.load("mnist-cnn")
    rows.append(bench_model("mnist-cnn", model, data.to_float(x8[: args.images]), args,
                            args.svd_images, "shipped (99.25 %)"))
    print(rows[-1], flush=True)
    try:
        c8, _ = data.load("cifar10", "test", root=args.cifar_root)
    except Exception as e:  # noqa: BLE001 - report and go on with what we have
        print(f"skipping cifar10-resnet32: {e}", file=sys.stderr)
    else:
        try:
            resnet, note = zoo.load("cifar10-resnet32"), "shipped"
        except Exception:  # noqa: BLE001 - no shipped weights yet
            torch.manual_seed(0)
            resnet, note = zoo.build("cifar10-resnet32").eval(), "untrained, seeded (timing only)"
        rows.append(bench_model("cifar10-resnet32", resnet, data.to_float(c8[: args.images]), args,
                                max(1, args.svd_images // 2), note))
        print(rows[-1], flush=True)
    command = "python bench/influence.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = section(rows, args, command.strip())
    write_section(Path(args.out), text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
