"""``infoswarm harden``: FI-targeted adversarial training (a thin layer over :mod:`infoswarm.hardening`)."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..errors import InputError
from .common import (
    PROBE,
    ModelSpec,
    check_labels,
    check_model_for,
    common_args,
    data_args,
    flush_notes,
    inputs_of,
    load_model,
    model_args,
    note,
    positive,
    print_finished,
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
    g.add_argument("--method", default="fi", choices=["fi", "paper", "sparse", "random", "pgd", "fgsm-rs", "none"],
                   help="fi or paper (the paper's offline method, the default), sparse (online sparse "
                        "adversarial training against k-pixel attacks: see 'sparse training' below), random "
                        "(mFI-PSO on random images), pgd or fgsm-rs L-inf adversarial fine-tuning, none (clean "
                        "fine-tuning only: the control)")
    g.add_argument("--protect", default=None, help="only these true:target confusions, e.g. 3:8,7:1")
    g.add_argument("--tau", type=float, default=0.01, help="image FI threshold for selection (default 0.01)")
    k = g.add_mutually_exclusive_group()
    k.add_argument("--pixels", type=int, default=None, help="k pixels per image (default: the paper's FI rule)")
    k.add_argument("--fi-threshold", type=float, default=0.01, help="element FI threshold (paper, 0.01)")
    g.add_argument("--eps", type=float, default=None,
                   help="L-infinity bound (default 0.15; --method sparse: 1, pure L0)")
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
    sparse_args(p)
    g = p.add_argument_group("fine-tuning (paper: MNIST 30 epochs, 0.1 -> x0.1 at 10, 20; CIFAR 50, at 15, 40; "
                             "--method sparse: 5 epochs, lr 0.02, cosine)")
    g.add_argument("--epochs", type=int, default=None)
    g.add_argument("--lr", type=float, default=None, help="default 0.1 (--method sparse: 0.02)")
    g.add_argument("--milestones", default=None, help="comma-separated epochs where lr drops x--gamma")
    g.add_argument("--gamma", type=float, default=0.1)
    g.add_argument("--momentum", type=float, default=0.9)
    g.add_argument("--weight-decay", type=float, default=None, help="default: the zoo recipe's, else 5e-4")
    common_args(p)
    p.set_defaults(func=cmd_harden, dataset=None)


SPARSE_FLAGS = ("k_train", "inner", "inner_steps", "random_frac", "prior", "corner", "objective", "beta",
                "label_smoothing", "fi_weight", "fi_control", "holdout", "eval_k", "eval_queries", "watch",
                "collapse_drop", "on_collapse", "keep")
"""The flags only ``--method sparse`` reads (their dests); the same names as the fields of
:class:`~infoswarm.sparse_hardening.SparseConfig`."""


def _parse_watch(text: str) -> tuple[str, ...]:
    """``--watch a,b`` as a tuple of names (checked by :meth:`SparseConfig.validate`)."""
    return tuple(t.strip() for t in text.split(",") if t.strip())


def sparse_args(p: argparse.ArgumentParser) -> None:
    """The ``--method sparse`` options (defaults: :class:`~infoswarm.sparse_hardening.SparseConfig`)."""
    from ..inner import CORNERS, INNER, OBJECTIVES, PRIORS
    from ..sparse_hardening import KEEP, ON_COLLAPSE, WATCH_ATTACKS

    g = p.add_argument_group(
        "sparse training (--method sparse: every batch, an inner L0 attack at --k-train pixels; the model trains "
        "on a smoothed objective; a watch set of held-out training images is re-attacked every epoch)")
    g.add_argument("--from", dest="start", default=None, metavar="NAME|scratch",
                   help="start from this zoo model's shipped weights (it sets --model), or 'scratch' for a freshly "
                        "initialised --model (default: --model with its weights: fine-tuning)")
    g.add_argument("--k-train", type=int, default=None, help="pixels of the inner attack (default 40)")
    g.add_argument("--inner", default=None, choices=INNER,
                   help="inner attack: one-step (one backward pass), swap (one-step, then --inner-steps "
                        "forward-only swap steps; default), pgd0 (one-step, then --inner-steps L0-PGD steps), "
                        "spgd (--inner-steps sparse-PGD steps from random locations), swarm (SparseSwarm with "
                        "--prior uniform or gain at --inner-steps queries per image)")
    g.add_argument("--inner-steps", type=int, default=None,
                   help="steps of swap, pgd0 or spgd, queries per image of swarm (default 4)")
    g.add_argument("--random-frac", type=float, default=None,
                   help="share of the k_train locations drawn at random (default 0.5; 0 = all by gain, "
                        "which makes one-step training collapse)")
    g.add_argument("--prior", default=None, choices=PRIORS,
                   help="where the inner attack puts its locations: uniform (default; measured best, RESULTS.md) "
                        "gain (first-order gain at the best corner), or both (per image the stronger of the two "
                        "runs; measured worse than uniform)")
    g.add_argument("--corner", default=None, choices=CORNERS,
                   help="the value written at each location: gradient (the box corner the clean gradient "
                        "points to; default, the zoo models' recipe) or far (the corner farthest from the pixel: "
                        "every location changes; on near-binary images such as MNIST the gradient's corner is "
                        "the pixel itself at about a third of random locations)")
    g.add_argument("--objective", default=None, choices=OBJECTIVES,
                   help="trades (CE on clean + beta * KL(clean || adversarial); default) or ce (on adversarial)")
    g.add_argument("--beta", type=float, default=None, help="TRADES trade-off weight (default 3)")
    g.add_argument("--label-smoothing", type=float, default=None, help="soft labels (default 0.1)")
    g.add_argument("--fi-weight", type=float, default=None,
                   help="weigh each image's loss by its image-FI rank in the batch: 1 + w * rank (default 0: off)")
    g.add_argument("--fi-control", action="store_true", default=None,
                   help="the uniform counterpart of --fi-weight: the same weights by a random rank")
    g.add_argument("--holdout", type=int, default=None,
                   help="last training images held out as the watch set (default 1000)")
    g.add_argument("--eval-k", type=int, default=None, help="pixels of the per-epoch watch attack (default 10)")
    g.add_argument("--eval-queries", type=int, default=None,
                   help="queries of each per-epoch watch attack (default 300)")
    g.add_argument("--watch", default=None, type=_parse_watch, metavar="A,B",
                   help="the watch attacks, each on the images the earlier left: "
                        f"{', '.join(WATCH_ATTACKS)} (default sparse-rs,swarm-gain: the query attack a masked "
                        "gradient cannot fool, then the standard verdict's strongest member; runs recorded before "
                        "this option watched with sparse-rs alone)")
    g.add_argument("--collapse-drop", type=float, default=None,
                   help="a fall of watch-set robust accuracy larger than this below the best epoch is reported "
                        "as catastrophic overfitting (default 0.15)")
    g.add_argument("--on-collapse", default=None, choices=ON_COLLAPSE,
                   help="warn (default), stop, or rollback (restore the best epoch and stop)")
    g.add_argument("--keep", default=None, choices=KEEP,
                   help="which epoch's weights the run keeps: best (highest watch-set robust accuracy; "
                        "default) or last")


def _settings(args: argparse.Namespace, method: str, particles: int, epochs: int, milestones: tuple[int, ...],
              wd: float) -> Any:
    from .. import zoo
    from ..hardening import HardenConfig, parse_protect

    return HardenConfig(
        method=method, tau=args.tau, limit=args.limit, protect=parse_protect(args.protect),
        pixels=args.pixels, fi_threshold=None if args.pixels else args.fi_threshold,
        eps=0.15 if args.eps is None else args.eps,
        particles=particles, iterations=args.iterations, restart_iterations=args.restart_iterations,
        bounds=args.bounds, pixel_rule=args.pixel_rule, target=args.target, epochs=epochs,
        lr=0.1 if args.lr is None else args.lr,
        milestones=milestones, gamma=args.gamma, momentum=args.momentum,
        batch_size=args.batch_size or 128, weight_decay=wd, pgd_steps=args.pgd_steps, repeat=args.repeat,
        eval_images=args.eval_images, chunk=args.chunk, seed=args.seed,
        channels_last=bool(args.model in zoo.ZOO and zoo.ZOO[args.model].recipe.channels_last))


_SWARM_FLAGS = {"particles": None, "iterations": 10, "restart_iterations": 40, "bounds": "paper",
                "selection": "fi", "target": "second", "chunk": 64, "pixels": None, "fi_threshold": 0.01,
                "tau": 0.01, "protect": None}


def _harden_bounds(args: argparse.Namespace, model_spec: ModelSpec, cfg: Any, model: torch.nn.Module,
                   x8: torch.Tensor, y: torch.Tensor, device: torch.device) -> None:
    """The model check, notes on the swarm flags a method ignores, and the time and memory the
    run would need (refused above a day, or beyond the free memory)."""
    from ..checks import check_memory, check_work

    mc = check_model_for(model_spec, model, x8, y, device, (cfg.batch_size, 500))
    if cfg.method in ("pgd", "fgsm-rs", "none"):
        given = [k for k, d in _SWARM_FLAGS.items() if getattr(args, k, d) != d and k != "protect"]
        if given:
            note(f"--method {cfg.method} attacks no training image with the swarm; "
                 + ", ".join("--" + k.replace("_", "-") for k in given)
                 + " set only the mFI-PSO re-attack of the evaluation")
    n = min(len(y), args.limit or len(y))
    swarm = 0.0 if cfg.method in ("pgd", "fgsm-rs", "none") else \
        float(cfg.particles) * (1 + cfg.iterations + cfg.restart_iterations) * (n + 2 * cfg.eval_images)
    per_epoch = 3.0 * n * (cfg.pgd_steps * 2 + 1 if cfg.method == "pgd" else 3 if cfg.method == "fgsm-rs" else 1)
    check_work(swarm + cfg.epochs * per_epoch, mc.seconds_per_image,
               f"harden --method {cfg.method} ({cfg.epochs} epochs on {n} images)",
               "lower --epochs, --particles, --iterations, --restart-iterations, --eval-images or --limit")
    if swarm:
        numel = int(x8[0].numel())
        check_memory(2.0 * cfg.particles * min(cfg.chunk, n) * numel * 4, f"--particles {cfg.particles}",
                     "lower --particles or --chunk", device)


def cmd_harden(args: argparse.Namespace) -> int:
    from .. import data, distributed, hardening, presets, runs, zoo

    method = "fi" if args.method == "paper" else args.method
    if method == "sparse":
        return _cmd_sparse(args)
    given = [f for f in SPARSE_FLAGS + ("start",) if getattr(args, f, None) is not None]
    if given:
        flag = "--from" if given[0] == "start" else "--" + given[0].replace("_", "-")
        note(f"--method {method} ignores {flag} (only --method sparse uses it)")

    dataset = args.dataset if args.dataset is not None or args.model not in zoo.ZOO else zoo.ZOO[args.model].dataset
    dataset = dataset or "mnist"
    model_spec = ModelSpec.of(args, dataset=dataset)
    paper = presets.paper_harden(dataset, epochs=args.epochs)   # epochs, milestones, particles
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
    cfg = _settings(args, method, args.particles if args.particles is not None else paper["particles"],
                    paper["epochs"], milestones, wd)
    ctx = distributed.init(args.device)
    nccl = ctx.active and ctx.backend == "nccl"
    device = torch.device("cuda", ctx.local_rank) if nccl else torch_device(args.device)
    x8, y = data.load(dataset, args.split, root=args.data_root, download=args.download)
    xt8, yt = data.load(dataset, "test", root=args.data_root, download=args.download)
    for split, xs in ((args.split, x8), ("test", xt8)):
        if len(xs) == 0:
            raise InputError(f"dataset {dataset} {split} has no images", "check the data")
    if tuple(x8.shape[1:]) != tuple(xt8.shape[1:]):
        raise InputError(f"train images {tuple(x8.shape[1:])} and test images {tuple(xt8.shape[1:])} of "
                         f"{dataset} differ in shape", "use one image size in both splits")
    model, num_classes = load_model(model_spec, x8[:PROBE].float() / 255.0, device, grad=True)
    cfg.validate(num_classes, int(x8.shape[2] * x8.shape[3]))
    check_labels(y[: args.limit] if args.limit else y, num_classes, dataset)
    check_labels(yt, num_classes, f"{dataset} test")
    if method != "pgd" and args.pgd_steps != 10:
        note(f"--method {method} ignores --pgd-steps (only --method pgd uses it)")
    _harden_bounds(args, model_spec, cfg, model, x8, y, device)
    settings = {"dataset": dataset, "split": args.split, "model": args.model,
                "weights": args.weights, **cfg.as_dict()}
    # Checked on every rank (nothing is written until all checks pass); rank 0 creates it.
    run = runs.ResumableRun(args.out, "harden", settings, overwrite=args.overwrite, create=False,
                           inputs=inputs_of(args))
    if run.finished and not args.overwrite:
        return print_finished(args, "harden", "pass --overwrite to run it again")
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
    summary.update({"dataset": dataset, "model": args.model, "weights": args.weights,
                    "infoswarm": __version__, "torch": torch.__version__,
                    "world_size": ctx.world_size})
    if distributed.is_main(ctx):
        from ..artifacts import model_card
        from ..checks import LogOutputs

        model = model.cpu().eval()
        inner = model.model if isinstance(model, LogOutputs) else model  # --outputs probs: the user's own keys
        record.card = model_card(f"{args.model}-hardened-{cfg.method}", inner, dataset,
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


def _parse_milestones(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(f"--milestones {text!r} is not a list of epochs", "write e.g. --milestones 10,20") from None


def _cmd_sparse(args: argparse.Namespace) -> int:
    """``harden --method sparse``: online sparse adversarial training (:mod:`infoswarm.sparse_hardening`)."""
    import os

    from .. import data, runs, zoo
    from ..artifacts import HardenRun
    from ..sparse_hardening import LEGACY_WATCH, SparseConfig, sparse_harden

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise InputError("--method sparse runs in one process", "run it without torchrun (use --device cuda for a GPU)")
    start = args.start
    model_name = args.model
    if start is not None and start != "scratch":
        if start not in zoo.ZOO:
            raise InputError(f"--from {start!r} is not a zoo model", f"use scratch or one of {', '.join(zoo.ZOO)}")
        if args.weights is not None:
            raise InputError("--from starts from a zoo model's shipped weights; --weights would replace them",
                             "drop --weights, or drop --from and pass --model with --weights")
        model_name = start
    if start == "scratch" and model_name not in zoo.ZOO:
        raise InputError(f"--from scratch needs a zoo architecture, not {model_name!r}",
                         f"pass --model one of {', '.join(zoo.ZOO)}")
    dataset = args.dataset
    if model_name in zoo.ZOO:
        made_for = zoo.ZOO[model_name].dataset
        if dataset is None:
            dataset = made_for
        elif dataset != made_for and data.is_named(dataset):
            raise InputError(f"{model_name} is made for {made_for}, not {dataset}",
                             f"pass --dataset {made_for}, or a model made for {dataset}")
    dataset = dataset or "mnist"
    for flag, value in (("--pixels", args.pixels), ("--particles", args.particles), ("--protect", args.protect)):
        if value is not None:
            note(f"--method sparse ignores {flag} (the inner attack's pixels are --k-train)")
    positive(args.limit, "--limit")
    positive(args.batch_size, "--batch-size")
    device = torch_device(args.device)
    x8, y = data.load(dataset, args.split, root=args.data_root, download=args.download)
    xt8, yt = data.load(dataset, "test", root=args.data_root, download=args.download)
    if len(y) == 0:
        raise InputError(f"dataset {dataset} {args.split} has no images", "check the data")
    model_spec = replace(ModelSpec.of(args, dataset=dataset), model=model_name)
    model, num_classes = load_model(model_spec, x8[:PROBE].float() / 255.0, device, grad=True)
    check_model_for(model_spec, model, x8, y, device, (args.batch_size or 128, 500))
    if start == "scratch":
        torch.manual_seed(args.seed)
        model = zoo.build(model_name).to(device).eval()
    check_labels(y[: args.limit] if args.limit else y, num_classes, dataset)
    check_labels(yt, num_classes, f"{dataset} test")
    recipe = zoo.ZOO[model_name].recipe if model_name in zoo.ZOO else None
    fields = {f: getattr(args, f) for f in SPARSE_FLAGS if getattr(args, f) is not None}
    cfg = SparseConfig(
        **fields, eps=1.0 if args.eps is None else args.eps, epochs=args.epochs or 5,
        lr=0.02 if args.lr is None else args.lr, milestones=_parse_milestones(args.milestones) or (),
        gamma=args.gamma, momentum=args.momentum, batch_size=args.batch_size or 128,
        weight_decay=args.weight_decay if args.weight_decay is not None else (recipe.weight_decay if recipe else 5e-4),
        augment=recipe.augment if recipe else "none", crop_pad=recipe.crop_pad if recipe else 2,
        eval_images=args.eval_images, limit=args.limit, seed=args.seed)
    cfg.validate(int(x8.shape[2] * x8.shape[3]), min(args.limit or len(y), len(y)))
    settings = {"dataset": dataset, "split": args.split, "model": model_name, "weights": args.weights,
                "from": start or "weights", "method": "sparse", **cfg.as_dict()}
    legacy = {"watch": list(LEGACY_WATCH), "corner": "gradient"}
    run = runs.ResumableRun(args.out, "harden", settings, overwrite=args.overwrite, create=False,
                           inputs=inputs_of(args), legacy=legacy)
    if run.finished and not args.overwrite:
        print(f"{args.out} is a finished harden run with these settings; nothing to do "
              "(pass --overwrite to run it again)", file=sys.stderr)
        return 0
    run = runs.ResumableRun(args.out, "harden", settings, overwrite=args.overwrite, inputs=inputs_of(args),
                            legacy=legacy)

    def log(msg: str) -> None:
        if not args.json:
            print(msg, flush=True)

    def epoch_log(row: dict[str, Any]) -> None:
        log(f"epoch {row['epoch']:3d}  lr {row['lr']:.4f}  loss {row['train_loss']:.4f}  test {row['test_acc']:.4f}  "
            f"watch clean {row['val_clean']:.3f} robust@{cfg.eval_k} {row['val_robust']:.3f}  {row['seconds']:.0f}s")

    if run.resumed:
        log(f"continuing the run in {args.out} from its checkpoints")
    t0 = time.perf_counter()
    flush_notes()
    summary = sparse_harden(model, x8, y, xt8, yt, cfg, run, log=log, epoch_log=epoch_log)
    summary.update({"dataset": dataset, "model": model_name, "weights": args.weights,
                    "infoswarm": __version__, "torch": torch.__version__, "world_size": 1})
    from ..checks import LogOutputs

    model = model.cpu().eval()
    card = {"name": f"{model_name}-sparse", "base": model_name, "dataset": dataset,
            "architecture": type(model).__name__, "hardening": settings,
            "test_accuracy": summary["after"]["clean_acc"], "watch_robust_accuracy": summary["after"]["val_robust"],
            "kept_epoch": summary["kept_epoch"], "train_seconds": summary["train_seconds"],
            "torch": torch.__version__, "infoswarm": __version__,
            "command": "infoswarm " + " ".join(sys.argv[1:])}
    inner = model.model if isinstance(model, LogOutputs) else model
    c, h, w = x8.shape[1:]
    empty = {"x_adv": torch.zeros(0, c, h, w), "y": torch.zeros(0, dtype=torch.long),
             "dataset_index": torch.zeros(0, dtype=torch.long)}
    HardenRun(summary=summary, card=card, adversarial=empty).save(run.path, inner.state_dict(), {"base": model_name})
    b, a = summary["before"], summary["after"]
    lines = [f"sparse: {summary['epochs_run']} epochs on {summary['train_images']} images at k_train={cfg.k_train} "
             f"({cfg.inner}), {summary['seconds_per_epoch']:.0f}s per epoch; kept epoch {summary['kept_epoch']}",
             f"clean test accuracy {100 * b['clean_acc']:.2f}% -> {100 * a['clean_acc']:.2f}%; watch set "
             f"({cfg.eval_images} held-out training images, k={cfg.eval_k}, {cfg.watch_text()}) "
             f"robust {100 * b['val_robust']:.1f}% -> {100 * a['val_robust']:.1f}%",
             *([f"warning: {m}" for m in summary["collapse"]]),
             f"for a verdict: infoswarm robustness --model {model_name} --weights {args.out}/model.safetensors "
             f"--dataset {dataset} --out DIR",
             f"wrote {args.out}/{{model.safetensors, card.json, metrics.csv, summary.json}} "
             f"({time.perf_counter() - t0:.0f}s)"]
    print_summary(args, summary, lines)
    return 0
