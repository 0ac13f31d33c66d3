"""Benchmark of pixel-FI maps: the library against its own floor and against a per-entry SVD loop.

For each model, on the first N test images:

(a) ``infoswarm.influence.pixel_fi(model, x, "pred", unit="pixel", batch_size=B)``: exact FI
    maps (all channels of a location together; for one-channel MNIST a pixel is one entry).
(b) the same batches' forward pass and K input-gradient backward passes, nothing else: what
    any Jacobian-based FI method must spend at least. Target (a)/(b) <= 1.25.
(c) a loop written to follow the authors' released method: one image at a time, K backward
    passes for the gradients of p_k, then for every channel entry j a 1xK matrix
    ∇p_k[j]/(√p_k + ε) (ε = 1e-3), ``numpy.linalg.svd``, singular values <= ε dropped and
    FI_j = ||S⁻¹Uᵀg||² with g = ∇p_c[j]/(p_c + ε). Slow, so timed on a few images, reported per
    image and extrapolated to N. Target (c)/(a) per image >= 100.
(d) the library's ε-variant, ``pixel_fi(..., unit="element", fi_eps=1e-3)``, against the loop on
    the loop's images (max abs difference): the loop computes the same quantity.

(a) and (b) are timed in alternation (a, b, a, b, ...) after one warm-up each, so load from
other work on the machine hits both alike; every time is a median over ``--repeats`` runs.
The results replace this script's section of ``--out`` (between its markers) and are printed.

    python bench/influence.py                    # full run, as `make bench`
    python bench/influence.py --quick --out /tmp/bench.md   # smoke run
"""

from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from infoswarm import data, influence, zoo  # noqa: E402

from common import (  # noqa: E402
    command_line,
    interleaved_times,
    load_average,
    machine_line,
    md_table,
    median_time,
    replace_section,
    start_cpu,
)

SECTION = "influence"
EPS = 1e-3
SEED = 0
TARGET_AB = 1.25
TARGET_CA = 100.0
DEFAULT_CIFAR_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10"
DEFAULT_SVD_IMAGES = {"mnist-cnn": 4, "cifar10-cnn": 2, "cifar10-resnet32": 2}


# --------------------------------------------------------------------------------------------
# the three things timed


def jacobian_floor(model: nn.Module, x: torch.Tensor, batch_size: int) -> None:
    """(b): per batch, one forward pass and K backward passes w.r.t. the input; the gradients
    are computed and dropped (no stacking, no FI arithmetic)."""
    for i in range(0, x.shape[0], batch_size):
        xb = x[i: i + batch_size].detach().requires_grad_(True)
        with torch.enable_grad():
            z = model(xb)
            k = z.shape[1]
            for j in range(k):
                torch.autograd.grad(z[:, j].sum(), xb, retain_graph=j < k - 1)


def svd_loop(model: nn.Module, x: torch.Tensor, eps: float = EPS) -> np.ndarray:
    """(c): ε-regularised FI of every channel entry, one image and one entry at a time.

    Returns float64 [n, C*H*W] for images x [n, C, H, W]; the class is the predicted one."""
    maps = []
    for i in range(x.shape[0]):
        xi = x[i: i + 1].detach().requires_grad_(True)
        with torch.enable_grad():
            p = torch.softmax(model(xi), dim=1)[0]
            k = p.numel()
            dp = torch.stack([torch.autograd.grad(p[j], xi, retain_graph=j < k - 1)[0].reshape(-1)
                              for j in range(k)])                   # [K, D]: ∇p_k
        dp_np = dp.double().numpy()
        pk = p.detach().double().numpy()
        c = int(pk.argmax())
        col_scale = 1.0 / (np.sqrt(pk) + eps)                        # columns ∇p_k / (√p_k + ε)
        g_scale = 1.0 / (pk[c] + eps)                                # ∇f = ∇p_c / (p_c + ε)
        fi = np.zeros(dp_np.shape[1])
        for j in range(dp_np.shape[1]):
            mat = (dp_np[:, j] * col_scale).reshape(1, k)            # 1 x K
            u, s, _ = np.linalg.svd(mat, full_matrices=False)
            keep = s > eps
            if not keep.any():
                continue
            g = np.array([dp_np[c, j] * g_scale])
            proj = (u[:, keep].T @ g) / s[keep]                     # S⁻¹ Uᵀ g
            fi[j] = float(proj @ proj)
        maps.append(fi)
    return np.stack(maps)


# --------------------------------------------------------------------------------------------
# one model


@dataclass
class Result:
    model: str
    weights: str
    images: int
    shape: str
    batch: int
    repeats: int
    t_a: float
    t_b: float
    svd_images: int
    svd_conf: str
    t_c_image: float
    diff32: float
    diff64: float
    max_value: float
    nonzero: float

    @property
    def ratio_ab(self) -> float:
        return self.t_a / self.t_b

    @property
    def ratio_ca(self) -> float:
        return self.t_c_image / (self.t_a / self.images)

    @property
    def ratio_cb(self) -> float:
        """What (c)/(a) would be if the FI arithmetic of (a) cost nothing."""
        return self.t_c_image / (self.t_b / self.images)


def least_confident(model: nn.Module, x: torch.Tensor, n: int, batch_size: int) -> torch.Tensor:
    """Indices of the n images with the lowest top probability (the ε-variant maps of very
    confident images are all zero, which would make check (d) empty)."""
    with torch.no_grad():
        top = torch.cat([torch.softmax(model(x[i: i + batch_size]), 1).amax(1)
                         for i in range(0, x.shape[0], batch_size)])
    return torch.argsort(top, stable=True)[:n]


def bench_model(name: str, model: nn.Module, weights: str, x: torch.Tensor, batch_size: int,
                repeats: int, svd_images: int) -> Result:
    bs = batch_size
    t = interleaved_times({
        "a": lambda: influence.pixel_fi(model, x, "pred", unit="pixel", batch_size=bs),
        "b": lambda: jacobian_floor(model, x, bs),
    }, repeats)
    n_svd = max(1, min(svd_images, x.shape[0]))
    idx = least_confident(model, x, n_svd, bs)
    xs = x[idx]
    with torch.no_grad():
        conf = torch.softmax(model(xs), 1).amax(1)
    t_c = median_time(lambda: svd_loop(model, xs), repeats)
    loop32 = svd_loop(model, xs)
    lib32 = influence.pixel_fi(model, xs, "pred", unit="element", fi_eps=EPS).flatten(1).numpy()
    model64 = copy.deepcopy(model).double()                          # the same check without float32 rounding
    loop64 = svd_loop(model64, xs.double())
    lib64 = influence.pixel_fi(model64, xs.double(), "pred", unit="element", fi_eps=EPS).flatten(1).numpy()
    return Result(
        model=name, weights=weights, images=x.shape[0], shape="×".join(map(str, x.shape[1:])),
        batch=bs, repeats=repeats, t_a=t["a"].median, t_b=t["b"].median, svd_images=n_svd,
        svd_conf=", ".join(f"{v:.3f}" for v in conf.tolist()), t_c_image=t_c.median / n_svd,
        diff32=float(np.abs(loop32 - lib32).max()), diff64=float(np.abs(loop64 - lib64).max()),
        max_value=float(np.abs(loop32).max()), nonzero=float((loop32 > 0).mean()))


def load_model(name: str) -> tuple[nn.Module, str]:
    """The zoo model with its shipped weights, or a seeded random init when none are shipped."""
    if zoo.weights_path(name).is_file():
        card = zoo.card(name) or {}
        acc = card.get("test_accuracy")
        note = f"shipped ({100 * acc:.2f} % test accuracy)" if isinstance(acc, float) else "shipped"
        return zoo.load(name), note
    torch.manual_seed(SEED)
    return zoo.build(name).eval(), f"none shipped: random init, seed {SEED} (untrained weights; timing only)"


# --------------------------------------------------------------------------------------------
# report


def fmt_s(v: float) -> str:
    return f"{v:.3f}" if v >= 0.1 else f"{v:.4f}"


def yes_no(ok: bool) -> str:
    return "yes" if ok else "**no**"


def model_table(r: Result) -> str:
    n = r.images
    rows = [
        ["weights", r.weights, "", ""],
        ["images (shape)", f"{n} ({r.shape}), first {n} of the test split", "", ""],
        ["batch size", r.batch, "", ""],
        ["(a) `pixel_fi`, exact pixel-FI maps", fmt_s(r.t_a), f"{1e3 * r.t_a / n:.2f} ms", ""],
        ["(b) forward + K backward passes only", fmt_s(r.t_b), f"{1e3 * r.t_b / n:.2f} ms",
         f"(a)/(b) = {r.ratio_ab:.2f}; target ≤ {TARGET_AB}: {yes_no(r.ratio_ab <= TARGET_AB)}"],
        [f"(c) per-entry SVD loop, measured on {r.svd_images} image(s)",
         fmt_s(r.t_c_image * r.svd_images), f"{1e3 * r.t_c_image:.1f} ms",
         f"(c)/(a) per image = {r.ratio_ca:.0f}×; target ≥ {TARGET_CA:.0f}×: "
         f"{yes_no(r.ratio_ca >= TARGET_CA)} (ceiling (c)/(b) = {r.ratio_cb:.0f}×)"],
        [f"(c) **extrapolated** to {n} images", f"{r.t_c_image * n:.1f} (extrapolated)", "", ""],
        ["(d) ε-variant `pixel_fi(unit=\"element\", fi_eps=1e-3)` vs loop",
         f"max abs diff {r.diff32:.1e} (float32 model), {r.diff64:.1e} (float64 model)",
         "", f"loop values up to {r.max_value:.3g}, {100 * r.nonzero:.0f} % non-zero; "
             f"top probabilities {r.svd_conf}"],
    ]
    return md_table(["", f"seconds (median of {r.repeats})", "per image", "ratio / check"], rows)


def render(results: list[Result], skipped: list[str], args: argparse.Namespace, command: str,
           machine: str) -> str:
    parts = ["## Influence maps (`bench/influence.py`)", "",
             f"Machine: {machine}.", f"Command: `{command}`" +
             (" (smoke run with tiny sizes: the numbers mean nothing)." if args.quick else "."), ""]
    for r in results:
        parts += [f"### {r.model}", "", model_table(r), ""]
    for s in skipped:
        parts += [f"Skipped: {s}", ""]
    parts += [
        "What the columns mean. (a) is the library's exact pixel-FI map (f = log p of the "
        "predicted class; all channels of a location form one block) for every location of every "
        "image, in batches. (b) is the same batches' forward pass plus one input-gradient "
        "backward pass per class, with nothing computed from the gradients: no method that needs "
        "the Jacobian can be faster, so (a)/(b) is the library's overhead. (c) follows the "
        "authors' released method: one image at a time, K backward passes for ∇p_k, then a "
        "Python loop over every channel entry with one `numpy.linalg.svd` of a 1×K matrix, "
        "ε = 1e-3; it runs on the least confident of the N images, its per-image time is a "
        "median over the repeats divided by its image count, and its N-image figure is that "
        "per-image time times N, not a measurement. (c)/(a) compares per-image times; (c)/(b), "
        "in brackets, is the most (c)/(a) could be for any method built on the K backward passes. "
        "(d) is the largest absolute difference between the loop's values and the library's "
        "`fi_eps=1e-3` mode on the loop's images, once with the model in float32 (as timed) and "
        "once in float64; small values show both compute the same quantity.",
        "",
        "Caveats. The released code does two `scipy.linalg.svd` calls per entry and reloads the "
        "model for every image, so (c) is a lower bound of its cost. For CIFAR, (a) computes "
        "pixel blocks of three channels while (c) computes single entries. Timings on a machine "
        f"shared with other work are noisy (load average at the end: {load_average()})."]
    return "\n".join(parts)


# --------------------------------------------------------------------------------------------
# main


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Time pixel-FI maps against the K backward passes "
                                             "they need and against a per-entry SVD loop.")
    ap.add_argument("--images", type=int, default=256, help="images per model (default 256)")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per measure; the median is reported")
    ap.add_argument("--batch-size", type=int, default=64, help="batch size of (a) and (b) (default 64)")
    ap.add_argument("--svd-images", type=int, default=None,
                    help="images for the SVD loop (default 4 for MNIST, 2 for CIFAR-10)")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    ap.add_argument("--out", default="BENCHMARKS.md", help="Markdown file whose influence section is replaced")
    ap.add_argument("--cifar-root", default=str(DEFAULT_CIFAR_ROOT), help="folder with the CIFAR-10 test split")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run")
    ap.add_argument("--models", default="mnist-cnn,cifar10-cnn",
                    help="comma-separated zoo models (default mnist-cnn,cifar10-cnn; cifar10-resnet32 "
                         "has no shipped weights and is timed with random ones)")
    args = ap.parse_args(argv)
    if args.quick:
        args.images, args.repeats, args.batch_size = min(args.images, 8), 1, min(args.batch_size, 4)
        args.svd_images = 1
    for flag in ("images", "repeats", "batch_size", "threads"):
        if getattr(args, flag) < 1:
            ap.error(f"--{flag.replace('_', '-')} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    start_cpu()
    torch.set_num_threads(args.threads)
    command = command_line("bench/influence.py", argv)
    machine = machine_line()                       # before the runs: the load average at start
    results: list[Result] = []
    skipped: list[str] = []

    plans = [("mnist-cnn", lambda: data.load("mnist", "test")),
             ("cifar10-cnn", lambda: data.load("cifar10", "test", root=args.cifar_root)),
             ("cifar10-resnet32", lambda: data.load("cifar10", "test", root=args.cifar_root))]
    plans = [p for p in plans if p[0] in args.models.split(",")]
    for name, load in plans:
        try:
            x8, _ = load()
        except Exception as e:  # noqa: BLE001 - a missing data set skips its model, and says why
            skipped.append(f"{name}: test images not found ({e}).")
            print(f"skipping {name}: {e}", file=sys.stderr)
            continue
        model, weights = load_model(name)
        x = data.to_float(x8[: args.images])
        n_svd = args.svd_images if args.svd_images is not None else DEFAULT_SVD_IMAGES[name]
        print(f"{name}: {x.shape[0]} images, weights {weights} ...", file=sys.stderr, flush=True)
        results.append(bench_model(name, model, weights, x, args.batch_size, args.repeats, n_svd))

    text = render(results, skipped, args, command, machine)
    replace_section(args.out, SECTION, text)
    print(text)
    print(f"\n(section '{SECTION}' written to {args.out})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
