"""``infoswarm harden``: FI-targeted adversarial training (a thin layer over :mod:`infoswarm.hardening`)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..errors import InputError
from .common import (
    PROBE,
    check_labels,
    common_args,
    data_args,
    flush_notes,
    inputs_of,
    load_model,
    model_args,
    note,
    positive,
    print_summary,
    torch_device,
)


def add_parser(sub: Any) -> None:
    """Register ``harden``."""

    p = sub.add_parser(
        "harden", help="FI-targeted adversarial training: attack vulnerable training images, mix, fine-tune",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Image FI on the training split, selection (correct, FI >= --tau, or --protect pairs), "
                    "mFI-PSO on the selected images, the successful adversarial images added to the training "
                    "set with their true labels, fine-tuning (paper schedule), then evaluation before/after. "
                    "Writes model.safetensors, card.json, metrics.csv, adversarial-train.npz, summary.json. "
                    "A killed run continues from its last checkpoint when the same command is run again. "
                    "Under `torchrun --nproc_per_node=N -m infoswarm harden ...` the attack chunks and the "
                    "training batches are split over the processes (DistributedDataParallel).",
        epilog="examples:\n  infoswarm harden --dataset mnist --model mnist-cnn --out runs/h\n"
               "  infoswarm harden --dataset mnist --model mnist-cnn --protect 3:8,7:1 --out runs/h-38\n"
               "  infoswarm harden --method pgd --epochs 3 --lr 0.01 --milestones 2 --out runs/h-pgd")
    data_args(p, default_split="train")
    model_args(p)
    g = p.add_argument_group("hardening")
    g.add_argument("--method", default="fi", choices=["fi", "random", "pgd", "fgsm-rs", "none"],
                   help="fi (paper), random (mFI-PSO on random images), pgd or fgsm-rs adversarial "
                        "fine-tuning, none (clean fine-tuning only: the control)")
    g.add_argument("--protect", default=None, help="only these true:target confusions, e.g. 3:8,7:1")
    g.add_argument("--tau", type=float, default=0.01, help="image FI threshold for selection (default 0.01)")
    k = g.add_mutually_exclusive_group()
    k.add_argument("--pixels", type=int, default=None, help="k pixels per image (default: the paper's FI rule)")
    k.add_argument("--fi-threshold", type=float, default=0.01, help="element FI threshold (paper, 0.01)")
    g.add_argument("--eps", type=float, default=0.15, help="L-infinity bound (default 0.15)")
    g.add_argument("--particles", type=int, default=None, help="swarm size (default 500 MNIST-like, 200 CIFAR)")
    g.add_argument("--iterations", type=int, default=10, help="swarm iterations (default 10)")
    g.add_argument("--restart-iterations", type=int, default=40, help="restart iterations (default 40)")
    g.add_argument("--bounds", default="paper", choices=["box", "paper"], help="perturbation bounds (default paper)")
    g.add_argument("--pixel-rule", default="fi", choices=["fi", "fi-eps", "saliency", "random"],
                   help="pixel choice of the attack (default fi)")
    g.add_argument("--target", default="second", choices=["second", "none"], help="attack target (default second)")
    g.add_argument("--pgd-steps", type=int, default=10, help="PGD steps for --method pgd (default 10)")
    g.add_argument("--repeat", type=int, default=1,
                   help="add each adversarial image this many times to the training set (paper: 1)")
    g.add_argument("--chunk", type=int, default=64, help="images per attack chunk (one checkpoint each)")
    g.add_argument("--eval-images", type=int, default=200,
                   help="vulnerable test images, and as many vulnerable training images, "
                        "re-attacked before and after (default 200)")
    g = p.add_argument_group("fine-tuning (paper: MNIST 30 epochs, 0.1 -> x0.1 at 10, 20; CIFAR 50, at 15, 40)")
    g.add_argument("--epochs", type=int, default=None)
    g.add_argument("--lr", type=float, default=0.1)
    g.add_argument("--milestones", default=None, help="comma-separated epochs where lr drops x--gamma")
    g.add_argument("--gamma", type=float, default=0.1)
    g.add_argument("--momentum", type=float, default=0.9)
    g.add_argument("--weight-decay", type=float, default=None, help="default: the zoo recipe's, else 5e-4")
    common_args(p)
    p.set_defaults(func=cmd_harden, dataset=None)


def _settings(args: argparse.Namespace, particles: int, epochs: int, milestones: tuple[int, ...],
              wd: float) -> Any:
    from .. import zoo
    from ..hardening import HardenConfig, parse_protect

    return HardenConfig(
        method=args.method, tau=args.tau, limit=args.limit, protect=parse_protect(args.protect),
        pixels=args.pixels, fi_threshold=None if args.pixels else args.fi_threshold, eps=args.eps,
        particles=particles, iterations=args.iterations, restart_iterations=args.restart_iterations,
        bounds=args.bounds, pixel_rule=args.pixel_rule, target=args.target, epochs=epochs, lr=args.lr,
        milestones=milestones, gamma=args.gamma, momentum=args.momentum,
        batch_size=args.batch_size or 128, weight_decay=wd, pgd_steps=args.pgd_steps, repeat=args.repeat,
        eval_images=args.eval_images, chunk=args.chunk, seed=args.seed,
        channels_last=bool(args.model in zoo.ZOO and zoo.ZOO[args.model].recipe.channels_last))


def cmd_harden(args: argparse.Namespace) -> int:
    from .. import data, distributed, hardening, presets, runs, zoo

    if args.model in zoo.ZOO and args.dataset is None:
        args.dataset = zoo.ZOO[args.model].dataset
    args.dataset = args.dataset or "mnist"
    paper = presets.paper_harden(args.dataset, epochs=args.epochs)   # epochs, milestones, particles
    try:
        milestones = tuple(int(v) for v in args.milestones.split(",") if v.strip()) \
            if args.milestones is not None else paper["milestones"]
    except ValueError:
        raise InputError(f"--milestones {args.milestones!r} is not a list of epochs",
                         "write e.g. --milestones 10,20") from None
    wd = args.weight_decay if args.weight_decay is not None else (
        zoo.ZOO[args.model].recipe.weight_decay if args.model in zoo.ZOO else 5e-4)
    positive(args.limit, "--limit")
    positive(args.batch_size, "--batch-size")
    cfg = _settings(args, args.particles if args.particles is not None else paper["particles"],
                    paper["epochs"], milestones, wd)
    ctx = distributed.init(args.device)
    nccl = ctx.active and ctx.backend == "nccl"
    device = torch.device("cuda", ctx.local_rank) if nccl else torch_device(args.device)
    x8, y = data.load(args.dataset, args.split, root=args.data_root, download=args.download)
    xt8, yt = data.load(args.dataset, "test", root=args.data_root, download=args.download)
    model = load_model(args, x8[:PROBE].float() / 255.0, device, grad=True)
    cfg.validate(args.num_classes, int(x8.shape[2] * x8.shape[3]))
    check_labels(y[: args.limit] if args.limit else y, args.num_classes, args)
    check_labels(yt, args.num_classes, argparse.Namespace(dataset=f"{args.dataset} test"))
    if args.method != "pgd" and args.pgd_steps != 10:
        note(f"--method {args.method} ignores --pgd-steps (only --method pgd uses it)")
    settings = {"dataset": args.dataset, "split": args.split, "model": args.model,
                "weights": args.weights, **cfg.as_dict()}
    # Checked on every rank (nothing is written until all checks pass); rank 0 creates it.
    run = runs.ResumableRun(args.out, "harden", settings, overwrite=args.overwrite, create=False,
                           inputs=inputs_of(args))
    if run.finished and not args.overwrite:
        print(f"{args.out} is a finished harden run with these settings; nothing to do "
              "(pass --overwrite to run it again)", file=sys.stderr)
        return 0
    distributed.barrier(ctx)
    if distributed.is_main(ctx):
        run = runs.ResumableRun(args.out, "harden", settings, overwrite=args.overwrite, inputs=inputs_of(args))
    distributed.barrier(ctx)
    quiet = args.json or not distributed.is_main(ctx)

    def log(msg: str) -> None:
        if not quiet:
            print(msg, flush=True)

    tb = None
    if distributed.is_main(ctx):
        try:
            from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

            tb = SummaryWriter(str(Path(args.out) / "tensorboard"))
        except ImportError:
            tb = None

    def epoch_log(row: dict[str, Any]) -> None:
        log(f"epoch {row['epoch']:3d}  lr {row['lr']:.4f}  loss {row['train_loss']:.4f}  "
            f"test {row.get('test_acc', float('nan')):.4f}  {row['seconds']:.0f}s")
        if tb is not None:
            for key in ("train_loss", "train_acc", "test_acc", "lr"):
                if key in row:
                    tb.add_scalar(key, row[key], row["epoch"])
            tb.flush()

    if run.resumed:
        log(f"continuing the run in {args.out} from its checkpoints")
    t0 = time.perf_counter()
    flush_notes()
    record = hardening.harden(model, x8, y, xt8, yt, cfg, run, ctx, log=log, epoch_log=epoch_log)
    if tb is not None:
        tb.close()
    summary = record.summary
    summary.update({"dataset": args.dataset, "model": args.model, "weights": args.weights,
                    "infoswarm": __version__, "torch": torch.__version__,
                    "world_size": ctx.world_size})
    if distributed.is_main(ctx):
        from ..artifacts import model_card
        from ..checks import LogOutputs

        model = model.cpu().eval()
        inner = model.model if isinstance(model, LogOutputs) else model  # --outputs probs: the user's own keys
        record.card = model_card(f"{args.model}-hardened-{cfg.method}", inner, args.dataset,
                                 summary["after"]["clean_acc"], base=args.model, hardening=settings)
        record.save(run.path, inner.state_dict(), {"base": args.model})   # summary.json last: finished
    distributed.barrier(ctx)
    distributed.shutdown()
    b, a = summary["before"], summary["after"]

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.1f}%"

    lines = [f"{cfg.method}: {summary['selected']} images attacked, {summary['adversarial_added']} adversarial "
             f"images added; {cfg.epochs} epochs in {summary['train_seconds']:.0f}s",
             f"clean accuracy {pct(b['clean_acc'])} -> {pct(a['clean_acc'])}; re-attack success on "
             f"{summary['eval_images']} vulnerable test images {pct(b['reattack_success'])} -> "
             f"{pct(a['reattack_success'])}, "
             f"on {summary['eval_train_images']} vulnerable training images "
             f"{pct(b['reattack_train_success'])} -> {pct(a['reattack_train_success'])}",
             f"wrote {args.out}/{{model.safetensors, card.json, metrics.csv, summary.json}} "
             f"({time.perf_counter() - t0:.0f}s)"]
    if distributed.is_main(ctx):
        print_summary(args, summary, lines)
    return 0
