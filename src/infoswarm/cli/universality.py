"""``infoswarm universality``: shared perturbations, pattern reuse and transfer."""

from __future__ import annotations

import argparse
import time
from typing import Any

from ..errors import InputError
from .common import (
    PROBE,
    DataSpec,
    ModelSpec,
    check_labels,
    check_model_for,
    common_args,
    data_args,
    inputs_of,
    load_data,
    load_model,
    model_args,
    positive,
    print_summary,
    read_adversarial,
    torch_device,
)


def add_parser(sub: Any) -> None:
    """Register ``universality``."""
    p = sub.add_parser(
        "universality", help="measure adversarial universality: shared perturbations, pattern reuse, transfer",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="shared: one k-pixel perturbation optimised by the swarm on --fit images (global or "
                    "--per-class), fooling rate on the next --holdout images, next to a random control. "
                    "reuse: each successful perturbation in --adversarial added to held-out images. "
                    "transfer: --adversarial images (made on another model) evaluated on --model.",
        epilog="examples:\n  infoswarm universality --mode shared --dataset mnist --model mnist-cnn --pixels 20 "
               "--eps 0.3 --fit 128 --holdout 1000 --out runs/u\n"
               "  infoswarm universality --mode transfer --adversarial runs/a/adversarial.npz "
               "--model other.py:Net --weights other.safetensors --out runs/t")
    data_args(p)
    model_args(p)
    g = p.add_argument_group("universality")
    g.add_argument("--mode", required=True, choices=["shared", "reuse", "transfer"])
    g.add_argument("--adversarial", default=None, help="adversarial.npz from `infoswarm attack` (reuse, transfer)")
    g.add_argument("--pixels", type=int, default=20, help="k pixels of the shared perturbation (default 20)")
    g.add_argument("--eps", type=float, default=0.15, help="L-infinity bound (default 0.15)")
    g.add_argument("--per-class", action="store_true", help="one shared perturbation per true class")
    g.add_argument("--pixel-rule", default="fi", choices=["fi", "saliency"],
                   help="how the shared pixels are chosen: mean exact FI (default) or mean gradient norm")
    g.add_argument("--fit", type=int, default=128, help="images the shared perturbation is fitted on")
    g.add_argument("--holdout", type=int, default=1000, help="held-out images it is evaluated on")
    g.add_argument("--particles", type=int, default=40, help="swarm size (default 40)")
    g.add_argument("--iterations", type=int, default=20, help="swarm iterations (default 20)")
    common_args(p)
    p.set_defaults(func=cmd_universality, dataset="mnist")


def cmd_universality(args: argparse.Namespace) -> int:
    from .. import data, runs, universality

    for flag in ("pixels", "fit", "holdout", "particles"):
        positive(getattr(args, flag), "--" + flag)
    if not args.eps > 0:
        raise InputError(f"--eps must be positive, got {args.eps}", "pass e.g. --eps 0.15")
    runs.check_out(args.out, args.overwrite, inputs_of(args))
    device = torch_device(args.device)
    t0 = time.perf_counter()
    summary: dict[str, Any] = {"command": "universality", "mode": args.mode, "model": args.model}
    if args.mode == "transfer":
        adv = read_adversarial(args.adversarial)
        model_spec = ModelSpec.of(args)
        model, k = load_model(model_spec, adv["x"][:PROBE].float(), device)
        check_labels(adv["y"].long(), k, f"{args.dataset}")
        check_model_for(model_spec, model, adv["x"].float(), adv["y"].long(), device, (1024,),
                        images=f"images of {args.adversarial}")
        res = universality.transfer(model, adv["x"].float().to(device), adv["x_adv"].float().to(device),
                                    adv["y"].long().to(device), adv["success"].bool().to(device))
        summary.update(adversarial=str(args.adversarial), **res)
        lines = [f"transfer to {args.model}: accuracy {res['accuracy_clean']:.3f} clean -> "
                 f"{res['accuracy_adversarial']:.3f} adversarial; transfer rate {res['transfer_rate']:.3f} "
                 f"of {res['source_successes_correct_here']} source successes"]
    else:
        model_spec = ModelSpec.of(args)
        x8, y = load_data(DataSpec.of(args))
        model, k = load_model(model_spec, data.to_float(x8[:PROBE]), device, grad=args.mode == "shared")
        check_labels(y, k, f"{args.dataset}")
        mc = check_model_for(model_spec, model, x8, y, device, (1024,))
        if args.mode == "shared":
            from ..checks import check_memory, check_work

            n_fit = min(args.fit, len(x8))
            check_work(float(args.particles) * (args.iterations + 1) * n_fit,
                       mc.seconds_per_image, f"the shared swarm ({args.particles} particles, {args.iterations} "
                       f"iterations, {n_fit} fit images)", "lower --particles, --iterations or --fit")
            check_memory(float(args.particles) * n_fit * x8[0].numel() * 4, f"--particles {args.particles}",
                         "lower --particles or --fit", device)
        x = data.to_float(x8).to(device)
        y = y.to(device)
        if args.mode == "reuse":
            adv = read_adversarial(args.adversarial)
            ok = adv["success"].bool()
            if not ok.any():
                raise InputError(f"{args.adversarial} holds no successful adversarial image",
                                 "attack more images first")
            if tuple(adv["x"].shape[1:]) != tuple(x.shape[1:]):
                raise InputError("--adversarial images and --dataset images differ in shape", "use the same dataset")
            hold = x[: args.holdout], y[: args.holdout]
            x_ok, adv_ok = adv["x"][ok].float().to(device), adv["x_adv"][ok].float().to(device)
            res = universality.pattern_reuse(model, x_ok, adv_ok, *hold)
            summary.update(adversarial=str(args.adversarial), holdout=len(hold[0]), **res)
            lines = [f"pattern reuse over {res['sources']} sources: mean fooling rate {res['mean_fooling_rate']:.4f}, "
                     f"best {res['max_fooling_rate']:.4f}"]
        else:
            shared, numbers = universality.shared_study(
                model, x, y, args.pixels, fit=args.fit, holdout=args.holdout, eps=args.eps, per_class=args.per_class,
                particles=args.particles, iterations=args.iterations, seed=args.seed, pixel_rule=args.pixel_rule)
            summary.update(numbers)
            fit, held, control = numbers["fit"], numbers["holdout"], numbers["random_control"]
            lines = [f"shared {args.pixels}-pixel perturbation (eps {args.eps:g}): fooling rate "
                     f"{fit['fooling_rate']:.4f} on {numbers['fit_images']} fit images, {held['fooling_rate']:.4f} on "
                     f"{numbers['holdout_images']} held-out images; random control {control['fooling_rate']:.4f}"]
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    with runs.atomic_dir(args.out, args.overwrite, kind="universality", inputs=inputs_of(args)) as tmp:
        runs.write_json(tmp / "summary.json", summary)
        if args.mode == "shared":
            from safetensors.torch import save_file

            save_file({"locations": shared.locations.contiguous(), "delta": shared.delta.contiguous(),
                       "groups": shared.groups.contiguous()}, str(tmp / "perturbation.safetensors"))
    lines.append(f"{summary['seconds']:.1f}s; wrote {args.out}/summary.json")
    print_summary(args, summary, lines)
    return 0
