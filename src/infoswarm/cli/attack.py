"""``infoswarm attack``: select vulnerable images and attack them."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import torch

from ..errors import InputError
from .common import (
    PROBE,
    attack_checks,
    check_labels,
    class_names,
    common_args,
    data_args,
    flush_notes,
    inputs_of,
    load_data,
    load_model,
    model_args,
    note,
    positive,
    print_finished,
    print_summary,
    show_progress,
    torch_device,
)


def add_parser(sub: Any) -> None:
    """Register ``attack``."""
    p = sub.add_parser(
        "attack", help="select vulnerable images (image FI >= tau) and attack them (SparseSwarm by default)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Select correctly classified images with image FI >= --tau (the paper's rule) "
                    "and attack them; writes adversarial.npz, results.csv, gallery.png, summary.json. "
                    "The default attack is SparseSwarm (k = 10 pixels, values free in [0, 1], 1,000 "
                    "queries, untargeted); --preset paper runs the paper's mFI-PSO with its settings.",
        epilog="examples:\n  infoswarm attack --dataset mnist --model mnist-cnn --split test --limit 500 "
               "--pixels 10 --out runs/a\n"
               "  infoswarm attack --dataset mnist --limit 500 --pixels 20 --target 3 --min-prob 0.9 "
               "--budget 10000 --out runs/t\n"
               "  infoswarm attack --dataset mnist --limit 500 --preset paper --out runs/paper")
    data_args(p)
    model_args(p)
    g = p.add_argument_group("selection of images")
    g.add_argument("--select", default="fi", choices=["fi", "all"],
                   help="which images are attacked: fi: correct images with image FI >= --tau (paper); "
                        "all: every correct image (--pixel-rule chooses the pixels)")
    g.add_argument("--tau", type=float, default=0.01, help="image FI threshold (default 0.01)")
    g = p.add_argument_group("attack")
    g.add_argument("--attack", default=None, choices=list(_attack_names()),
                   help="sparse-swarm (default), mfipso (the paper's swarm) or a baseline")
    g.add_argument("--preset", default=None, choices=["paper"],
                   help="paper: the paper's mFI-PSO as published (element FI >= 0.01 entries, paper bounds, "
                        "L-inf 0.15, 500 particles on MNIST-like data / 200 on CIFAR-10, 10 + 40 iterations, "
                        "target second); flags given explicitly still win")
    g.add_argument("--budget", type=int, default=1000,
                   help="queries per image for sparse-swarm / sparse-rs / onepixel / pgd0 / spgd (default 1000)")
    g.add_argument("--prior", default="auto", choices=["auto", "uniform", "gain", "saliency", "fi", "fi-eps"],
                   help="sparse-swarm: where fresh pixel locations are drawn (auto = gain: the linearised loss change)")
    g.add_argument("--loss", default="margin", choices=["margin", "ce", "paper"],
                   help="sparse-swarm: loss minimised before success (default margin)")
    g.add_argument("--refine", action="store_true",
                   help="sparse-swarm: after a success, spend leftover queries removing unneeded pixels")
    g.add_argument("--steps", type=int, default=10, help="PGD steps (default 10)")
    k = g.add_mutually_exclusive_group()
    k.add_argument("--pixels", type=int, default=None, help="k pixel locations to perturb (default 10)")
    k.add_argument("--fi-threshold", type=float, default=None,
                   help="perturb every channel entry with element FI >= this (the paper's rule, 0.01)")
    g.add_argument("--target", default=None,
                   help="none (untargeted; the default), second (most probable wrong class; mfipso's default), "
                        "confusion, or a class index (images already of that class are left out, with a note)")
    g.add_argument("--confusion-min", type=int, default=5, help="errors needed for a confusion pair (default 5)")
    g.add_argument("--min-prob", type=float, default=None, help="success needs p(target) >= this")
    g.add_argument("--max-prob", type=float, default=None, help="success needs p(target) <= this")
    g.add_argument("--eps", type=float, default=None,
                   help="L-infinity bound in [0,1] units (default 1 = pure L0 for the sparse attacks, "
                        "0.15 for mfipso, fgsm, pgd)")
    g.add_argument("--bounds", default=None, choices=["box", "paper"],
                   help="mfipso: box (default): |delta| <= eps within [0,1]; paper: delta in [-eps*x, eps*(1-x)]")
    rules = ["fi", "fi-eps", "saliency", "random"]
    g.add_argument("--pixel-rule", dest="selection", default=None, choices=rules,
                   help="mfipso: how the attacked pixels are chosen (default fi, exact); not --select, which "
                        "chooses the images (--selection, its old name, is still accepted)")
    g.add_argument("--selection", dest="selection", default=None, choices=rules, help=argparse.SUPPRESS)
    g.add_argument("--fi-eps-scale", type=float, default=None,
                   help="with --pixel-rule fi-eps: input scale of the authors' epsilon cut-off "
                        "(1 for [0,1] units, the default; 255 for the authors' raw-pixel CIFAR-10 setting, "
                        "which --preset paper uses on CIFAR-10)")
    g.add_argument("--particles", type=int, default=None,
                   help="swarm size (sparse-swarm default 1; mfipso default 200; paper: 200 CIFAR, 500 MNIST)")
    g.add_argument("--iterations", type=int, default=10, help="swarm iterations (default 10)")
    g.add_argument("--w", type=float, default=0.6, help="inertia (default 0.6)")
    g.add_argument("--c1", type=float, default=2.0, help="cognitive weight (default 2)")
    g.add_argument("--c2", type=float, default=2.0, help="social weight (default 2)")
    g.add_argument("--restart-iterations", type=int, default=40, help="second-chance iterations (default 40)")
    g.add_argument("--no-restart", action="store_true", help="skip the paper's restart")
    g.add_argument("--gallery", type=int, default=12, help="images in gallery.png (default 12)")
    g.add_argument("--chunk", type=int, default=64,
                   help="images per checkpointed chunk (default 64); a killed run continues from its last chunk")
    common_args(p)
    p.set_defaults(func=cmd_attack, dataset="mnist")


def _attack_names() -> tuple[str, ...]:
    from ..attacks.registry import NAMES

    return NAMES


def cmd_attack(args: argparse.Namespace) -> int:
    """``infoswarm attack``. Under ``torchrun`` the selected images are split over the processes
    (:func:`infoswarm.runner.run_attack`) and only rank 0 writes; the process group is left on return."""
    from .. import distributed

    try:
        return _cmd_attack(args)
    finally:
        distributed.shutdown()


def _cmd_attack(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from .. import data, distributed, presets, runs
    from ..artifacts import AttackRun, AttackSpec
    from ..attacks.mfipso import confusion_counts
    from ..report.figures import gallery_figure
    from ..runner import run_attack

    _ignored_flags(args)
    _resolve_attack(args)
    for flag in ("particles", "gallery", "chunk"):
        positive(getattr(args, flag), "--" + flag)
    positive(args.batch_size, "--batch-size")
    if args.pixels is not None:
        positive(args.pixels, "--pixels")
    if args.iterations < 0 or args.restart_iterations < 0:
        raise InputError("--iterations and --restart-iterations must be >= 0", "pass 0 or more")
    if args.tau < 0:
        raise InputError(f"--tau must be >= 0, got {args.tau}", "pass e.g. --tau 0.01")
    if not 0 < args.eps <= 1:
        raise InputError(f"--eps must be positive and at most 1 (pixel units), got {args.eps:g}",
                         "pass e.g. --eps 0.15")
    if args.confusion_min < 1:
        raise InputError(f"--confusion-min must be >= 1, got {args.confusion_min}", "pass e.g. --confusion-min 5")
    settings = _attack_settings(args)
    run_check = runs.ResumableRun(args.out, "attack", settings, overwrite=args.overwrite,
                                  create=False, inputs=inputs_of(args))
    if run_check.finished and not args.overwrite:
        return print_finished(args, "attack", "pass --overwrite to run it again")
    device = torch_device(args.device)
    ctx = distributed.init(args.device)          # under torchrun: join the group, a GPU per process
    device = torch.device(ctx.device) if ctx.active else device
    show = show_progress(args) and distributed.is_main(ctx)
    x8, y = load_data(args)
    needs_grad = args.attack in ("fgsm", "pgd", "jsma", "pgd0", "spgd") or (args.attack == "mfipso" and (
        args.selection != "random" or args.fi_threshold is not None)) or (
        args.attack == "sparse-swarm" and args.prior != "uniform")
    model = load_model(args, data.to_float(x8[:PROBE]), device, grad=needs_grad)
    k = args.num_classes
    check_labels(y, k, args)
    from ..selection import parse_target, select_images

    target = parse_target(args.target, k, name="--target")
    pixels = args.pixels if args.pixels is not None or args.fi_threshold is not None else \
        presets.attack_defaults(args.attack)["pixels"]
    hw = int(x8.shape[2] * x8.shape[3])
    if pixels is not None and pixels > hw:
        raise InputError(f"--pixels {pixels} exceeds the {x8.shape[2]}x{x8.shape[3]} = {hw} pixels of an image",
                         f"pass at most {hw}")
    if args.attack != "mfipso" and args.fi_threshold is not None:
        raise InputError("--fi-threshold is an mfipso option", "use --pixels with other attacks")
    positive(args.budget, "--budget")
    positive(args.steps, "--steps")
    spec = AttackSpec(
        name=args.attack, pixels=pixels, eps=args.eps, target="none" if target is None else target,
        min_prob=args.min_prob, max_prob=args.max_prob, seed=args.seed, budget=args.budget, steps=args.steps,
        options={} if args.attack not in ("mfipso", "sparse-swarm") else dict(
            fi_threshold=args.fi_threshold, particles=args.particles, iterations=args.iterations,
            w=args.w, c1=args.c1, c2=args.c2, restart=not args.no_restart,
            restart_iterations=args.restart_iterations, selection=args.selection, bounds=args.bounds,
            fi_eps_scale=args.fi_eps_scale,
            confusion_min=args.confusion_min, batch_size=args.batch_size or 1024) if args.attack == "mfipso" else dict(
            particles=args.particles, prior=args.prior, loss=args.loss, refine=args.refine))
    attack = spec.build(model, target=target)
    attack_checks(args, model, x8, y, device, spec, target, pixels)
    t0 = time.perf_counter()
    selection = select_images(model, x8, y, rule=args.select, tau=args.tau, target=target,
                              batch_size=500, device=device, progress=show)
    rank = selection.ranking
    idx = distributed.broadcast_object(selection.indices, ctx)   # rank 0's list everywhere
    if idx.numel() == 0:
        raise InputError(f"no image passes the selection (correct and image FI >= {args.tau:g}) "
                         f"among {len(y)}", "raise --limit or lower --tau")
    if target == "confusion":
        attack.confusion = confusion_counts(model, x8, y)
    x = data.to_float(x8[idx]).to(device)
    yy = y[idx].to(device)
    distributed.barrier(ctx)
    run = runs.ResumableRun(args.out, "attack", settings, overwrite=args.overwrite,
                            inputs=inputs_of(args)) if distributed.is_main(ctx) else run_check
    distributed.barrier(ctx)
    if run.resumed and distributed.is_main(ctx):
        print(f"continuing the attack in {args.out} from its checkpoints", file=sys.stderr, flush=True)
    flush_notes()
    res = run_attack(attack, x, yy, chunk=args.chunk, run=run, ctx=ctx, progress=show)
    if res is None:  # not rank 0: rank 0 merges and writes
        return 0
    res = replace(res, seconds=time.perf_counter() - t0)
    probs_before = torch.softmax(rank.logits[idx].double(), 1)
    with torch.no_grad():
        probs_after = torch.softmax(model(res.x_adv).double(), 1).cpu()
    summary = {"command": "attack", "attack": args.attack, "dataset": args.dataset, "split": args.split,
               "model": args.model,
               "candidates": len(y), "selected": int(idx.numel()), "selection_rule": args.select,
               "tau": args.tau, "settings": {kk: v for kk, v in vars(args).items()
                                             if kk not in ("func", "json", "out", "overwrite")}}
    record = AttackRun.from_result(res, x, yy, idx, probs_before, probs_after, summary, spec)
    summary = record.summary
    names = class_names(args, k)
    order = sorted(range(len(idx)), key=lambda j: (not bool(res.success[j]), j))[: args.gallery]
    captions = [{"before": f"#{int(idx[j])} {names[int(yy[j])]} p={float(probs_before[j, yy[j]]):.2f}",
                 "after": f"-> {names[int(res.pred[j])]} p={float(probs_after[j, res.pred[j]]):.2f}"
                          + ("" if res.success[j] else " (failed)"),
                 "diff": f"L0 {int(res.pixel_l0[j])} px, Linf {float(res.linf[j]):.3f}"} for j in order]
    record.save(run.path, before_summary=lambda: runs.atomic_write(
        run.path / "gallery.png", lambda p: gallery_figure(p, x[order].cpu(), res.x_adv[order].cpu(), captions)))
    rule = selection.describe()
    lines = [f"selected {int(idx.numel())} of {len(y)} images ({rule})",
             f"success rate {summary['success_rate']:.3f} ({summary['successes']}/{summary['images']}, 95% CI "
             f"{summary['success_ci95'][0]:.3f}-{summary['success_ci95'][1]:.3f}); misclassified "
             f"{summary['misclassified']:.3f} ({summary['misclassified_count']}/{summary['images']}, 95% CI "
             f"{summary['misclassified_ci95'][0]:.3f}-{summary['misclassified_ci95'][1]:.3f})",
             f"L-inf on successes: mean "
             f"{summary['linf_success']['mean'] or 0:.3f}, max {summary['linf_success']['max'] or 0:.3f}; "
             f"pixels per image {summary['pixel_l0_mean']:.1f}; queries {summary['queries_mean']:.0f}",
             f"{summary['seconds']:.1f}s; wrote {args.out}/{{adversarial.npz, results.csv, gallery.png, summary.json}}"]
    print_summary(args, summary, lines)
    return 0


def _resolve_attack(args: argparse.Namespace) -> None:
    """Fill the attack flags left at None (in place): the preset's values
    (:func:`infoswarm.presets.paper_attack`), then the attack's defaults
    (:func:`infoswarm.presets.attack_defaults`). Called after :func:`_ignored_flags`, which
    compares against the parser's Nones."""
    from .. import presets

    if args.preset == "paper":
        if args.attack not in (None, "mfipso"):
            raise InputError(f"--preset paper runs mfipso, not --attack {args.attack}",
                             "drop --attack, or drop --preset")
        args.attack = "mfipso"
        paper = presets.paper_attack(args.dataset)
        if args.pixels is not None:          # --pixels k replaces the paper's FI threshold
            paper.pop("fi_threshold")
        _fill(args, paper)
    args.attack = args.attack or "sparse-swarm"
    defaults = presets.attack_defaults(args.attack)
    defaults.pop("pixels")                   # resolved where it is used, so that settings keep None
    _fill(args, defaults)
    if args.target is None:
        args.target = "none"


def _fill(args: argparse.Namespace, values: dict[str, Any]) -> None:
    """Set each flag of ``values`` (Python keywords) that is still None; keywords without a
    flag of their own (e.g. ``restart``, whose flag is --no-restart) are left to the parser."""
    for key, value in values.items():
        if hasattr(args, key) and getattr(args, key) is None:
            setattr(args, key, value)


def _attack_settings(args: argparse.Namespace) -> dict[str, Any]:
    """What an attack run's results depend on (a rerun with other values is refused)."""
    return {k: v for k, v in sorted(vars(args).items())
            if k not in ("func", "json", "out", "overwrite", "command", "gallery", "download", "data_root",
                         "num_classes")}


_MFIPSO_ONLY = ("particles", "iterations", "w", "c1", "c2", "restart_iterations", "no_restart", "selection",
                "bounds", "confusion_min")


def _defaults() -> dict[str, Any]:
    """The attack options' parser defaults (None where a preset or the attack decides)."""
    sub = argparse.ArgumentParser().add_subparsers()
    add_parser(sub)
    return {a.dest: a.default for a in sub.choices["attack"]._actions}


def _ignored_flags(args: argparse.Namespace) -> None:
    """One note on stderr naming the attack options given that the chosen --attack ignores."""
    defaults = _defaults()
    swarm = ("budget", "particles", "prior", "loss", "refine")
    used = {"mfipso": _MFIPSO_ONLY, "onepixel": ("budget",), "sparse-rs": ("budget",), "pgd": ("steps",),
            "pgd0": ("budget",), "spgd": ("budget",), "sparse-swarm": swarm, None: swarm}
    known = set(_MFIPSO_ONLY) | set(swarm) | {"steps"}
    attack = "mfipso" if args.preset == "paper" else args.attack
    ignored = [k for k in sorted(known - set(used.get(attack, ())))
               if getattr(args, k, None) != defaults.get(k)]
    if (args.target or "").lower() != "confusion" and args.confusion_min != defaults.get("confusion_min") \
            and "confusion_min" not in ignored:
        ignored.append("confusion_min")
    if ignored:
        flags = {"selection": "pixel-rule"}
        note(f"--attack {attack or 'sparse-swarm'} ignores "
             + ", ".join("--" + flags.get(k, k.replace("_", "-")) for k in ignored))
