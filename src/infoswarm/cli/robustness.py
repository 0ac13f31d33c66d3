"""``infoswarm robustness``: robust accuracy at k pixels against an L0 attack ensemble."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch

from ..errors import InputError
from .common import (
    PROBE,
    DataSpec,
    ModelSpec,
    check_labels,
    check_model_for,
    common_args,
    data_args,
    flush_notes,
    inputs_of,
    load_data,
    load_model,
    model_args,
    note,
    positive,
    print_summary,
    show_progress,
    torch_device,
)


def add_parser(sub: Any) -> None:
    """Register ``robustness``."""
    from ..robustness import ENSEMBLE

    members = "\n".join(f"  {m.name:14s} {m.about} ({m.budget['quick']:,} / {m.budget['standard']:,} queries)"
                        for m in ENSEMBLE)
    p = sub.add_parser(
        "robustness", help="robust accuracy at k pixels against an L0 attack ensemble, with masking checks",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Robust accuracy of --model on the first --limit images of the split at each k of --ks: "
                    "the ensemble's members run in sequence, each on the images still robust (as AutoAttack "
                    "does); clean-misclassified images count as not robust. Writes summary.json (per_k: "
                    "robust, total, interval, what each attack added, queries, seconds; warnings), "
                    "adversarial.npz (x, y, x_adv_k<k>, broken_k<k>), robustness.csv and curve.png. "
                    "Unlike `evaluate`, which re-attacks a saved attack run with its settings, this is the "
                    "verdict of several attacks per image.",
        epilog="ensemble (in order; quick / standard queries per image):\n" + members +
               "\n\nexamples:\n  infoswarm robustness --model mnist-cnn --dataset mnist --split test --limit 500 "
               "--ks 5,10,20 --version standard --out runs/r\n"
               "  infoswarm robustness --model net.py:Net --weights net.safetensors --dataset cifar10 --limit 100 "
               "--version quick --attacks swarm-uniform,sparse-rs --out runs/q")
    data_args(p)
    model_args(p)
    g = p.add_argument_group("ensemble")
    g.add_argument("--ks", default="5,10,20", help="comma-separated pixel counts k (default 5,10,20)")
    g.add_argument("--version", default="standard", choices=["quick", "standard"],
                   help="quick: about 1,000 queries per query attack; standard: 10,000 (sAA's budget; default)")
    g.add_argument("--attacks", default=None,
                   help="comma-separated members to run (default all: " + ",".join(m.name for m in ENSEMBLE) + ")")
    g.add_argument("--targeted", action="store_true",
                   help="AutoAttack's targeted version: every wrong class as target in turn, on the images "
                        "still robust (an image is broken when misclassified)")
    g.add_argument("--eps", type=float, default=1.0,
                   help="L-infinity bound of a changed pixel in [0,1] units (default 1 = pure L0)")
    g.add_argument("--budget", type=int, default=None,
                   help="queries per image for every member, instead of --version's")
    g.add_argument("--chunk", type=int, default=64,
                   help="images per checkpointed chunk (default 64); a killed run continues from its checkpoints")
    common_args(p)
    p.set_defaults(func=cmd_robustness, dataset="mnist")


def _ks(text: str) -> list[int]:
    parts = [t.strip() for t in str(text).split(",") if t.strip()]
    if not parts:
        raise InputError(f"--ks {text!r} names no k", "pass e.g. --ks 5,10,20")
    try:
        return [int(t) for t in parts]
    except ValueError:
        raise InputError(f"--ks {text!r} is not a comma-separated list of integers", "pass e.g. --ks 5,10,20") from None


def _check_channels(args: argparse.Namespace, channels: int) -> None:
    """A zoo model must get images with the channels of the dataset it was made for (a
    normalising first layer would otherwise broadcast 1-channel images to 3 silently)."""
    from .. import zoo
    from ..data import catalog

    entry = zoo.ZOO.get(str(args.model))
    if entry is None or not catalog.is_named(entry.dataset):
        return
    want = catalog.info(entry.dataset).shape[0]
    if want != channels:
        raise InputError(f"model {args.model} takes {want}-channel {entry.dataset} images, {args.dataset} images "
                         f"have {channels} channel(s)", "use the model made for this dataset")


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """What a robustness run's results depend on (a rerun with other values is refused)."""
    return {k: v for k, v in sorted(vars(args).items())
            if k not in ("func", "json", "out", "overwrite", "command", "download", "data_root", "num_classes",
                         "batch_size")}


def cmd_robustness(args: argparse.Namespace) -> int:
    """``infoswarm robustness``. Under ``torchrun`` each member's images are split over the
    processes and only rank 0 writes; the process group is left on return."""
    from .. import distributed

    try:
        return _cmd(args)
    finally:
        distributed.shutdown()


def _cmd(args: argparse.Namespace) -> int:
    from .. import data, distributed, runs
    from ..artifacts import RobustnessRun
    from ..report.robustness_figure import robustness_curve_figure
    from ..robustness import check_options, robust_accuracy

    ks = _ks(args.ks)
    attacks = None if args.attacks is None else [a.strip() for a in args.attacks.split(",") if a.strip()]
    positive(args.chunk, "--chunk")
    if args.budget is not None and args.budget < 1:
        raise InputError(f"--budget must be positive, got {args.budget}", "pass --budget 1 or more")
    if not 0 < args.eps <= 1:
        raise InputError(f"--eps must be positive and at most 1 (pixel units), got {args.eps:g}", "pass e.g. --eps 1")
    if args.batch_size is not None:
        note("robustness ignores --batch-size (each attack sizes its own model calls)")
    settings = _settings(args)
    run_check = runs.ResumableRun(args.out, "robustness", settings, overwrite=args.overwrite, create=False,
                                  inputs=inputs_of(args))
    if run_check.finished and not args.overwrite:
        print(f"{args.out} is a finished robustness run with these settings; nothing to do "
              "(pass --overwrite to run it again)", file=sys.stderr)
        return 0
    device = torch_device(args.device)
    ctx = distributed.init(args.device)
    device = torch.device(ctx.device) if ctx.active else device
    main = distributed.is_main(ctx)
    model_spec = ModelSpec.of(args)
    x8, y = load_data(DataSpec.of(args))
    _check_channels(args, int(x8.shape[1]))
    k_list, members = check_options(ks, int(x8.shape[2] * x8.shape[3]), version=args.version, attacks=attacks,
                                    budget=args.budget, chunk=args.chunk)
    model, num_classes = load_model(model_spec, data.to_float(x8[:PROBE]), device,
                                    grad=any(m.gradient for m in members))
    check_model_for(model_spec, model, x8, y, device, (args.chunk,))
    check_labels(y, num_classes, f"{args.dataset}")
    x = data.to_float(x8).to(device)
    with torch.no_grad():
        from ..attacks.base import probs_of

        clean_pred = probs_of(model, x).argmax(1).cpu()
    distributed.barrier(ctx)
    run = runs.ResumableRun(args.out, "robustness", settings, overwrite=args.overwrite,
                            inputs=inputs_of(args)) if main else run_check
    distributed.barrier(ctx)
    if run.resumed and main:
        print(f"continuing the robustness run in {args.out} from its checkpoints", file=sys.stderr, flush=True)
    flush_notes()

    def say(line: str) -> None:
        if main and not args.json:
            print(line, file=sys.stderr, flush=True)

    res = robust_accuracy(model, x, y.to(device), k_list, version=args.version, attacks=[m.name for m in members],
                          targeted=args.targeted, eps=args.eps, budget=args.budget, seed=args.seed, chunk=args.chunk,
                          run=run, ctx=ctx, progress=show_progress(args) and main, log=main, say=say)
    if not main:
        return 0
    summary = {"command": "robustness", "dataset": args.dataset, "split": args.split, "model": args.model,
               "settings": {**{k: v for k, v in vars(args).items() if k not in ("func", "json", "out", "overwrite")},
                            "num_classes": num_classes}}
    record = RobustnessRun.from_result(res, x, y, torch.arange(len(y)), clean_pred, summary)
    summary = record.summary
    record.save(run.path, before_summary=lambda: runs.atomic_write(
        run.path / "curve.png", lambda p: robustness_curve_figure(
            p, summary, title=f"{args.model}: robust accuracy vs k, {len(y)} {args.dataset} images, 95 % CI")))
    n = summary["images"]
    lines = [f"{args.model} on {n} {args.dataset} {args.split} images, {args.version} "
             f"({'targeted' if args.targeted else 'untargeted'}, eps {args.eps:g}); members: {', '.join(res.members)}",
             f"clean accuracy {summary['clean_correct']}/{n}"]
    for k in k_list:
        e = summary["per_k"][str(k)]
        added = ", ".join(f"{a['name']} +{a['added']}" for a in e["attacks"])
        control = f"; random control {e['random_control']['text']}" if "random_control" in e else ""
        lines.append(f"k={k}: robust accuracy {e['text']} ({added}; {e['seconds']:.1f}s){control}")
    for w in summary["warnings"]:
        lines.append(f"warning [{w['check']}]: {w['message']}; {w['fix']}")
    lines.append(f"{summary['seconds']:.1f}s; wrote {args.out}/{{adversarial.npz, robustness.csv, curve.png, "
                 "summary.json}")
    print_summary(args, summary, lines)
    return 0
