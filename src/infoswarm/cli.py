"""Command-line interface: a thin layer over the library.

Every command validates its input before doing work, writes its outputs atomically (see
:mod:`infoswarm.runs`) and reports bad input as one line on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import math
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch

from . import __version__
from .cpu import tune_cpu
from .errors import InputError


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line with exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message}; see `{self.prog} --help`", file=sys.stderr)
        sys.exit(2)


def _common(p: argparse.ArgumentParser, out_required: bool = True) -> None:
    g = p.add_argument_group("common options")
    g.add_argument("--out", required=out_required, help="output folder (written atomically)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    g.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument("--batch-size", type=int, default=None, help="images per batch")
    g.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")


def _data_args(p: argparse.ArgumentParser, default_split: str = "test") -> None:
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default=None,
                   help="mnist, fashion-mnist, cifar10, or a path to an .npz / image folder")
    g.add_argument("--split", default=default_split, choices=["train", "test"])
    g.add_argument("--data-root", default=None, help="extra folder to look for dataset files in")
    g.add_argument("--download", action="store_true",
                   help="download the official files (checked by SHA-256) if no local copy exists")
    g.add_argument("--limit", type=int, default=None, help="use only the first N images")


def _model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default="mnist-cnn",
                   help="zoo name, path/to/file.py:ClassName (with --weights), or a TorchScript file")
    g.add_argument("--weights", default=None, help=".safetensors weights for --model")
    g.add_argument("--outputs", default="logits", choices=["logits", "probs"],
                   help="what the model returns: logits (default) or probabilities (then log is used)")


def build_parser() -> argparse.ArgumentParser:
    """The ``infoswarm`` argument parser (commands: influence, train)."""
    parser = _Parser(prog="infoswarm", description="Find where image classifiers are fragile, "
                     "attack them with a particle swarm, and harden them.")
    parser.add_argument("--version", action="version", version=f"infoswarm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser(
        "influence", help="rank vulnerable images and map vulnerable pixels (Fisher influence)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Image-level and pixel-level first-order influence (FI) of a model.",
        epilog="example:\n  infoswarm influence --dataset mnist --model mnist-cnn --split test "
               "--limit 1000 --top 20 --out runs/fi")
    _data_args(p)
    _model_args(p)
    g = p.add_argument_group("influence")
    g.add_argument("--top", type=int, default=20, help="heatmaps for the N most vulnerable images")
    g.add_argument("--map-class", default="pred", choices=["pred", "true", "second"],
                   help="class c of the pixel maps' objective log p_c (default pred)")
    g.add_argument("--map", default=None, choices=["fi", "saliency", "grad-input", "eps-fi", "window-fi-3",
                                                   "window-fi-5", "window-fi-7", "random"],
                   help="heatmap: fi = exact FI set by --unit/--window/--eps; otherwise a map of infoswarm.maps "
                        "(default: the deletion benchmark's winner, see BENCHMARKS.md, unless --unit element, "
                        "--window or --eps ask for FI)")
    g.add_argument("--unit", default="pixel", choices=["pixel", "element"],
                   help="pixel: all channels of a location together; element: one channel")
    g.add_argument("--window", type=int, default=1, choices=[1, 3, 5, 7], help="block width")
    g.add_argument("--eps", "--fi-eps", dest="eps", type=float, default=None,
                   help="authors' regularised variant with this epsilon (e.g. 1e-3); default exact")
    g.add_argument("--fi-eps-scale", type=float, default=1.0,
                   help="input scale the epsilon variant is evaluated in: 1 for [0,1] models (default), "
                        "255 for models trained on raw 0..255 pixels (the authors' CIFAR-10 model)")
    g.add_argument("--tau", type=float, default=0.01,
                   help="vulnerability threshold on image FI, reported in the summary (default 0.01)")
    _common(p)
    p.set_defaults(func=cmd_influence, dataset="mnist")

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
    _data_args(p)
    _model_args(p)
    g = p.add_argument_group("selection of images")
    g.add_argument("--select", default="fi", choices=["fi", "all"],
                   help="fi: correct images with image FI >= --tau (paper); all: every correct image")
    g.add_argument("--tau", type=float, default=0.01, help="image FI threshold (default 0.01)")
    g = p.add_argument_group("attack")
    g.add_argument("--attack", default=None, choices=list(_attack_names()),
                   help="sparse-swarm (default), mfipso (the paper's swarm) or a baseline")
    g.add_argument("--preset", default=None, choices=["paper"],
                   help="paper: the paper's mFI-PSO as published (element FI >= 0.01 entries, paper bounds, "
                        "L-inf 0.15, 500 particles on MNIST-like data / 200 on CIFAR-10, 10 + 40 iterations, "
                        "target second); flags given explicitly still win")
    g.add_argument("--budget", type=int, default=1000,
                   help="queries per image for sparse-swarm / sparse-rs / onepixel / pgd0 (default 1000)")
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
                        "confusion, or a class index")
    g.add_argument("--confusion-min", type=int, default=5, help="errors needed for a confusion pair (default 5)")
    g.add_argument("--min-prob", type=float, default=None, help="success needs p(target) >= this")
    g.add_argument("--max-prob", type=float, default=None, help="success needs p(target) <= this")
    g.add_argument("--eps", type=float, default=None,
                   help="L-infinity bound in [0,1] units (default 1 = pure L0 for the sparse attacks, "
                        "0.15 for mfipso, fgsm, pgd)")
    g.add_argument("--bounds", default=None, choices=["box", "paper"],
                   help="mfipso: box (default): |delta| <= eps within [0,1]; paper: delta in [-eps*x, eps*(1-x)]")
    g.add_argument("--selection", default=None, choices=["fi", "fi-eps", "saliency", "random"],
                   help="mfipso: how pixels are chosen (default fi, exact)")
    g.add_argument("--fi-eps-scale", type=float, default=1.0,
                   help="with --selection fi-eps: input scale of the authors' epsilon cut-off "
                        "(1 for [0,1] units, 255 for the authors' raw-pixel CIFAR-10 setting)")
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
    _common(p)
    p.set_defaults(func=cmd_attack, dataset="mnist")

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
    _data_args(p)
    _model_args(p)
    g = p.add_argument_group("universality")
    g.add_argument("--mode", required=True, choices=["shared", "reuse", "transfer"])
    g.add_argument("--adversarial", default=None, help="adversarial.npz from `infoswarm attack` (reuse, transfer)")
    g.add_argument("--pixels", type=int, default=20, help="k pixels of the shared perturbation (default 20)")
    g.add_argument("--eps", type=float, default=0.15, help="L-infinity bound (default 0.15)")
    g.add_argument("--per-class", action="store_true", help="one shared perturbation per true class")
    g.add_argument("--selection", default="fi", choices=["fi", "saliency"],
                   help="how the shared pixels are chosen: mean exact FI (default) or mean gradient norm")
    g.add_argument("--fit", type=int, default=128, help="images the shared perturbation is fitted on")
    g.add_argument("--holdout", type=int, default=1000, help="held-out images it is evaluated on")
    g.add_argument("--particles", type=int, default=40, help="swarm size (default 40)")
    g.add_argument("--iterations", type=int, default=20, help="swarm iterations (default 20)")
    _common(p)
    p.set_defaults(func=cmd_universality, dataset="mnist")

    p = sub.add_parser(
        "train", help="train a zoo architecture with its recorded recipe",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a zoo model; writes model.safetensors, card.json and history.csv.",
        epilog="example:\n  infoswarm train --dataset mnist --model mnist-cnn --out runs/mnist-cnn")
    _data_args(p, default_split="train")
    g = p.add_argument_group("model")
    g.add_argument("--model", required=True, help="zoo architecture name")
    g.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    g.add_argument("--lr", type=float, default=None, help="override the recipe's learning rate")
    _common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "report", help="write one self-contained HTML page over run folders",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Read run folders (influence, attack, universality, train, harden) and write one "
                    "HTML page with every figure embedded: run summaries, pixel-FI heatmaps, adversarial "
                    "gallery, success rate vs k, perturbation histograms, attack comparison, training "
                    "curves, robustness before/after. The page loads nothing from the network.",
        epilog="examples:\n  infoswarm report runs/fi                      # writes runs/fi/report.html\n"
               "  infoswarm report runs/a1 runs/a5 runs/a20 --out runs/compare.html")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders written by infoswarm commands")
    p.add_argument("--out", default=None,
                   help="HTML file to write (default RUN_DIR/report.html of the first run; an existing "
                        "file is replaced, atomically)")
    p.add_argument("--json", action="store_true", help="print the path and sections as JSON on stdout")
    p.set_defaults(func=cmd_report, seed=0)

    from .cli_demo import add_parser as add_demo
    from .cli_harden import add_parsers

    add_parsers(sub)
    add_demo(sub)
    from .cli_analysis import add_parsers as add_analysis

    add_analysis(sub)
    return parser


# --------------------------------------------------------------------------------------------
# helpers


def _device(name: str) -> torch.device:
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown --device {name!r}", "use cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda", "mps", "xpu"):  # e.g. meta: a valid torch device that computes nothing
        raise InputError(f"--device {name!r} cannot run a model", "use cpu, cuda or cuda:N")
    for kind, backend in (("mps", getattr(torch.backends, "mps", None)), ("xpu", getattr(torch, "xpu", None))):
        if dev.type == kind and (backend is None or not backend.is_available()):
            raise InputError(f"--device {name} but no {kind.upper()} device is available here", "use --device cpu")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda but no CUDA device is available", "use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"--device {name} but only {torch.cuda.device_count()} CUDA device(s) are visible",
                         f"use cuda:0 .. cuda:{torch.cuda.device_count() - 1}")
    return dev


_NOTES: list[str] = []


def note(msg: str) -> None:
    """A one-line note for the user (an ignored flag, a model switched to eval mode). Notes are
    held until the command's checks have passed (:func:`flush_notes`), so bad input still gets
    exactly one line, and dropped when the command fails."""
    _NOTES.append(msg)


def flush_notes() -> None:
    """Print the held notes on stderr (called when the real work starts, and at the end)."""
    for msg in _NOTES:
        print(f"note: {msg}", file=sys.stderr, flush=True)
    _NOTES.clear()


def _positive(value: int | None, flag: str) -> None:
    if value is not None and value <= 0:
        raise InputError(f"{flag} must be positive, got {value}", f"pass {flag} 1 or more")


def _load_data(args: argparse.Namespace, split: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    from . import data

    _positive(args.limit, "--limit")
    x, y = data.load(args.dataset, split or args.split, root=args.data_root, download=args.download)
    if args.limit is not None:
        x, y = x[: args.limit], y[: args.limit]
    if len(x) == 0:
        raise InputError(f"dataset {args.dataset} {args.split} has no images", "check the data")
    folder = Path(args.dataset).expanduser()
    if folder.is_dir() and not getattr(args, "json", False):
        from .data import folder_labels

        sub = folder / (split or args.split)
        labels = folder_labels(sub if sub.is_dir() else folder)
        shown = ", ".join(f"{n} -> {k}" for n, k in list(labels.items())[:12])
        note(f"image folder classes (folder -> label): {shown}"
             + (f" (+{len(labels) - 12} more)" if len(labels) > 12 else ""))
    return x, y


def _class_names(args: argparse.Namespace, k: int) -> tuple[str, ...]:
    """K class names: the dataset's (an image folder's folder names), numbers for the rest."""
    from . import data

    names = list(data.class_names_of(args.dataset, args.split) or ())[:k]
    return tuple(names + [str(i) for i in range(len(names), k)])


def _progress(args: argparse.Namespace) -> bool:
    """Progress bars go to stderr, only when it is a terminal and --json is off."""
    return not args.json and sys.stderr.isatty()


def _print_summary(args: argparse.Namespace, summary: dict[str, Any], lines: list[str]) -> None:
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True, default=str))
    else:
        print("\n".join(lines))


# --------------------------------------------------------------------------------------------
# commands


def cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from safetensors.torch import save_file

    from . import data, runs, training, zoo

    if args.model not in zoo.ZOO:
        zoo.build(args.model)  # raises the unknown-name error
    entry = zoo.ZOO[args.model]
    args.dataset = args.dataset or entry.dataset
    recipe = entry.recipe
    _positive(args.epochs, "--epochs")
    _positive(args.batch_size, "--batch-size")
    if args.lr is not None and not args.lr > 0:
        raise InputError(f"--lr must be positive, got {args.lr}", "pass e.g. --lr 0.05, or omit it for the recipe's")
    if args.epochs:
        recipe = replace(recipe, epochs=args.epochs)
    if args.lr:
        recipe = replace(recipe, lr=args.lr)
    if args.batch_size:
        recipe = replace(recipe, batch_size=args.batch_size)
    device = _device(args.device)
    x, y = _load_data(args, "train")
    xt, yt = data.load(args.dataset, "test", root=args.data_root, download=args.download)
    want = zoo.ZOO[args.model].dataset
    if data.is_named(args.dataset) and data.INFO[want].shape != data.INFO[args.dataset].shape:
        raise InputError(f"{args.model} is built for {want}-shaped images, not {args.dataset}",
                         "pick the model made for this dataset")
    if tuple(x.shape[1:]) != tuple(xt.shape[1:]):
        raise InputError(f"train images {tuple(x.shape[1:])} and test images {tuple(xt.shape[1:])} of "
                         f"{args.dataset} differ in shape", "use one image size in both splits")
    torch.manual_seed(args.seed)
    model = zoo.build(args.model).to(device)
    try:  # fails here, before any training, when the images do not fit the architecture
        with torch.no_grad():
            probe = model.eval()(data.to_float(x[:PROBE]).to(device))
        model.train()
    except RuntimeError as e:
        raise InputError(f"model {args.model} cannot take {args.dataset} images of shape "
                         f"{tuple(x.shape[1:])} ({(str(e).splitlines() or [''])[0][:120]})",
                         "pick the model made for this dataset") from None
    _check_labels(y, int(probe.shape[1]), args)  # before any work: a label >= K would fail mid-epoch
    _check_labels(yt, int(probe.shape[1]), argparse.Namespace(dataset=f"{args.dataset} test"))
    settings = {"model": args.model, "dataset": args.dataset, "recipe": training.recipe_dict(recipe),
                "seed": args.seed, "train_images": len(x)}
    run = runs.ResumableRun(args.out, "train", settings, overwrite=args.overwrite, create=False,
                           inputs=_inputs(args))
    if run.finished and not args.overwrite:
        print(f"{args.out} is a finished train run with these settings; nothing to do "
              "(pass --overwrite to train again)", file=sys.stderr)
        return 0
    run = runs.ResumableRun(args.out, "train", settings, overwrite=args.overwrite, inputs=_inputs(args))
    state = run.load("train.pt") if run.resumed else None
    if state is not None:
        print(f"continuing the training in {args.out} after epoch {int(state['epoch'])} of "
              f"{recipe.epochs}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    elapsed0 = float(state.get("elapsed", 0.0)) if state is not None else 0.0
    log_path = run.path / "train.log"

    def line_of(row: dict[str, Any]) -> str:
        return (f"epoch {row['epoch']:3d}/{recipe.epochs}  lr {row['lr']:.4f}  loss {row['train_loss']:.4f}  "
                f"train {row['train_acc']:.4f}  test {row.get('test_acc', float('nan')):.4f}  "
                f"{row['seconds']:.0f}s")

    def log(row: dict[str, Any]) -> None:
        if not args.json:
            print(line_of(row), flush=True)

    def checkpoint(st: dict[str, Any]) -> None:
        st = dict(st, elapsed=elapsed0 + time.perf_counter() - t0)
        run.save("train.pt", st)
        # logged once the epoch is saved, so a killed and resumed run lists each epoch once
        with open(log_path, "a") as f:
            f.write(line_of(st["history"][-1]) + "\n")

    flush_notes()
    history = training.train(model, x.to(device), y.to(device), recipe, seed=args.seed,
                             x_test=xt.to(device), y_test=yt.to(device), log=log,
                             resume=state, checkpoint=checkpoint)
    model = model.cpu().eval()
    test_acc = training.accuracy(model, xt, yt)
    card = {
        "name": args.model, "architecture": type(model).__name__, "dataset": args.dataset,
        "train_images": len(x), "recipe": training.recipe_dict(recipe), "seed": args.seed,
        "test_accuracy": test_acc, "train_seconds": round(elapsed0 + time.perf_counter() - t0, 1),
        "torch": torch.__version__, "infoswarm": __version__,
        "threads": torch.get_num_threads(), "machine": _machine(),
        "command": "infoswarm " + " ".join(sys.argv[1:]) if sys.argv[1:] else None,
    }
    runs.atomic_write(run.path / "model.safetensors", lambda p: save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, str(p),
        # one metadata key: safetensors writes several keys in no fixed order, one keeps the
        # file bitwise repeatable
        metadata={"infoswarm": json.dumps({"name": args.model, "dataset": args.dataset}, sort_keys=True)}))
    run.write_json("card.json", card)
    run.write_csv("history.csv", history, list(history[0]))
    run.write_json(run.DONE, card)
    _print_summary(args, card, [f"{args.model} on {args.dataset}: test accuracy {test_acc:.4f}",
                                f"wrote {Path(args.out) / 'model.safetensors'} and card.json"])
    return 0


def _machine() -> str:
    """One line naming the CPU (or GPU) and the core count, for model cards."""
    import os
    import platform

    name = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if torch.cuda.is_available():
        name += f", {torch.cuda.get_device_name(0)}"
    return f"{name}, {os.cpu_count()} cores"


PROBE = 64
"""Images in the model probe of :func:`_load_model`: a realistic batch, so that models that fail
only on bigger batches, or whose outputs look like probabilities only over many rows, are caught
before any work."""


def _load_model(args: argparse.Namespace, x_probe: torch.Tensor, device: torch.device,
                grad: bool = False) -> torch.nn.Module:
    """Load --model/--weights and check, once and up front, on a batch of up to :data:`PROBE`
    images, that it takes the dataset's images and returns finite [N, K] logits (or, with
    ``--outputs probs``, probabilities, which are then turned into log-probabilities); with
    ``grad``, that its outputs have a gradient with respect to the images. A model in train
    mode is switched to eval mode with a note. K is kept on ``args.num_classes``."""
    from . import zoo
    from .checks import LogOutputs, check_gradient, check_logits, check_outputs, set_eval

    x_probe = x_probe[:PROBE]
    model = zoo.load(args.model, args.weights, device=device)
    set_eval(model, note)
    outputs = getattr(args, "outputs", "logits")
    if outputs == "probs":
        model = LogOutputs(model).eval()
    try:
        with torch.no_grad():
            out = model(x_probe.to(device))
    except RuntimeError as e:
        raise InputError(f"model {args.model} cannot take {args.dataset} images of shape "
                         f"{tuple(x_probe.shape[1:])} ({(str(e).splitlines() or [''])[0][:120]})",
                         "use the model made for this dataset") from None
    except Exception as e:  # a user's model can fail in any way; report it in one line
        raise InputError(f"model {args.model} failed on {args.dataset} images of shape "
                         f"{tuple(x_probe.shape[1:])} ({type(e).__name__}: {(str(e).splitlines() or [''])[0][:120]})",
                         "fix the model's forward, or use the model made for this dataset") from None
    if not isinstance(out, torch.Tensor):
        raise InputError(f"model {args.model} returned a {type(out).__name__}, not a tensor of logits",
                         "wrap the model so that it returns one row of class logits per image")
    args.num_classes = check_logits(out, x_probe.shape[0])
    check_outputs(out)  # after LogOutputs, probabilities have become log-probabilities
    if grad:
        check_gradient(model, x_probe.to(device))
    return model


def _check_labels(y: torch.Tensor, k: int, args: argparse.Namespace) -> None:
    """Every label must name one of the model's K classes (refused up front, never dropped)."""
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= k):
        bad = int(y[(y < 0) | (y >= k)][0])
        n = int(((y < 0) | (y >= k)).sum())
        raise InputError(f"{n} label(s) of {args.dataset} (e.g. {bad}) lie outside the model's {k} classes 0..{k - 1}",
                         "use the model made for this dataset, or relabel the data")


def _attack_names() -> tuple[str, ...]:
    from .attacks.registry import NAMES

    return NAMES


def cmd_attack(args: argparse.Namespace) -> int:
    """``infoswarm attack``. Under ``torchrun`` the selected images are split over the processes
    (:func:`infoswarm.runner.run_attack`) and only rank 0 writes; the process group is left on return."""
    from . import distributed

    try:
        return _cmd_attack(args)
    finally:
        distributed.shutdown()


def _cmd_attack(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from . import data, distributed, runs
    from .artifacts import AttackRun, AttackSpec
    from .attacks.mfipso import confusion_counts
    from .report.figures import gallery_figure
    from .runner import run_attack

    _ignored_flags(args)
    _resolve_attack(args)
    for flag in ("particles", "gallery", "chunk"):
        _positive(getattr(args, flag), "--" + flag)
    _positive(args.batch_size, "--batch-size")
    if args.pixels is not None:
        _positive(args.pixels, "--pixels")
    if args.iterations < 0 or args.restart_iterations < 0:
        raise InputError("--iterations and --restart-iterations must be >= 0", "pass 0 or more")
    if args.tau < 0:
        raise InputError(f"--tau must be >= 0, got {args.tau}", "pass e.g. --tau 0.01")
    if not 0 < args.eps <= 1:
        raise InputError(f"--eps must be positive and at most 1 (pixel units), got {args.eps:g}", "pass e.g. --eps 0.15")
    if args.confusion_min < 1:
        raise InputError(f"--confusion-min must be >= 1, got {args.confusion_min}", "pass e.g. --confusion-min 5")
    settings = _attack_settings(args)
    run_check = runs.ResumableRun(args.out, "attack", settings, overwrite=args.overwrite,
                                  create=False, inputs=_inputs(args))
    if run_check.finished and not args.overwrite:
        print(f"{args.out} is a finished attack run with these settings; nothing to do "
              "(pass --overwrite to run it again)", file=sys.stderr)
        return 0
    device = _device(args.device)
    ctx = distributed.init(args.device)          # under torchrun: join the group, a GPU per process
    device = torch.device(ctx.device) if ctx.active else device
    show = _progress(args) and distributed.is_main(ctx)
    x8, y = _load_data(args)
    needs_grad = args.attack in ("fgsm", "pgd", "jsma", "pgd0") or (args.attack == "mfipso" and (
        args.selection != "random" or args.fi_threshold is not None)) or (
        args.attack == "sparse-swarm" and args.prior != "uniform")
    model = _load_model(args, data.to_float(x8[:PROBE]), device, grad=needs_grad)
    k = args.num_classes
    _check_labels(y, k, args)
    from .selection import parse_target, select_images

    target = parse_target(args.target, k, name="--target")
    pixels = args.pixels if args.fi_threshold is None else None
    if pixels is None and args.fi_threshold is None:
        pixels = 10
    hw = int(x8.shape[2] * x8.shape[3])
    if pixels is not None and pixels > hw:
        raise InputError(f"--pixels {pixels} exceeds the {x8.shape[2]}x{x8.shape[3]} = {hw} pixels of an image",
                         f"pass at most {hw}")
    if args.attack != "mfipso" and args.fi_threshold is not None:
        raise InputError("--fi-threshold is an mfipso option", "use --pixels with other attacks")
    _positive(args.budget, "--budget")
    _positive(args.steps, "--steps")
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
                            inputs=_inputs(args)) if distributed.is_main(ctx) else run_check
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
    summary = {"command": "attack", "attack": args.attack, "dataset": args.dataset, "split": args.split, "model": args.model,
               "candidates": len(y), "selected": int(idx.numel()), "selection_rule": args.select,
               "tau": args.tau, "settings": {kk: v for kk, v in vars(args).items()
                                             if kk not in ("func", "json", "out", "overwrite")}}
    record = AttackRun.from_result(res, x, yy, idx, probs_before, probs_after, summary, spec)
    summary = record.summary
    names = _class_names(args, k)
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
    _print_summary(args, summary, lines)
    return 0


_LINF_ATTACKS = ("mfipso", "fgsm", "pgd")


def _resolve_attack(args: argparse.Namespace) -> None:
    """Fill the attack flags left at None: the preset's values, then each attack's defaults
    (in place; called after :func:`_ignored_flags`, which compares against the parser's Nones)."""
    if args.preset == "paper":
        if args.attack not in (None, "mfipso"):
            raise InputError(f"--preset paper runs mfipso, not --attack {args.attack}",
                             "drop --attack, or drop --preset")
        cifar = (args.dataset or "").lower().startswith("cifar")
        args.attack = "mfipso"
        if args.pixels is None and args.fi_threshold is None:
            args.fi_threshold = 0.01
        if args.bounds is None:
            args.bounds = "paper"
        if args.particles is None:
            args.particles = 200 if cifar else 500
        if args.selection is None:
            args.selection = "fi-eps" if cifar else "fi"
            if cifar and args.fi_eps_scale == 1.0:
                args.fi_eps_scale = 255.0
        if args.target is None:
            args.target = "second"
    if args.attack is None:
        args.attack = "sparse-swarm"
    mf = args.attack == "mfipso"
    if args.target is None:
        args.target = "second" if mf else "none"
    if args.eps is None:
        args.eps = 0.15 if args.attack in _LINF_ATTACKS else 1.0
    if args.particles is None:
        args.particles = 200 if mf else 1
    if args.bounds is None:
        args.bounds = "box"
    if args.selection is None:
        args.selection = "fi"


def _attack_settings(args: argparse.Namespace) -> dict[str, Any]:
    """What an attack run's results depend on (a rerun with other values is refused)."""
    return {k: v for k, v in sorted(vars(args).items())
            if k not in ("func", "json", "out", "overwrite", "command", "gallery", "download", "data_root",
                         "num_classes")}


_MFIPSO_ONLY = ("particles", "iterations", "w", "c1", "c2", "restart_iterations", "no_restart", "selection",
                "bounds", "confusion_min")


def _ignored_flags(args: argparse.Namespace) -> None:
    """One note on stderr naming the attack options given that the chosen --attack ignores."""
    parser = build_parser()
    sub = next(a for a in parser._subparsers._group_actions if a.dest == "command")  # type: ignore[union-attr]
    defaults = {a.dest: a.default for a in sub.choices["attack"]._actions}
    swarm = ("budget", "particles", "prior", "loss", "refine")
    used = {"mfipso": _MFIPSO_ONLY, "onepixel": ("budget",), "sparse-rs": ("budget",), "pgd": ("steps",),
            "pgd0": ("budget",), "sparse-swarm": swarm, None: swarm}
    known = set(_MFIPSO_ONLY) | set(swarm) | {"steps"}
    attack = "mfipso" if args.preset == "paper" else args.attack
    ignored = [k for k in sorted(known - set(used.get(attack, ())))
               if getattr(args, k, None) != defaults.get(k)]
    if (args.target or "").lower() != "confusion" and args.confusion_min != defaults.get("confusion_min") \
            and "confusion_min" not in ignored:
        ignored.append("confusion_min")
    if ignored:
        note(f"--attack {attack or 'sparse-swarm'} ignores " + ", ".join("--" + k.replace("_", "-") for k in ignored))


def _read_adversarial(path: str | None) -> dict[str, Any]:
    """The arrays of ``--adversarial`` (see :func:`infoswarm.artifacts.read_npz`)."""
    from .artifacts import read_npz

    if path is None:
        raise InputError("this mode needs --adversarial", "pass runs/<attack run>/adversarial.npz")
    return read_npz(path)


def cmd_universality(args: argparse.Namespace) -> int:
    from . import data, runs, universality

    for flag in ("pixels", "fit", "holdout", "particles"):
        _positive(getattr(args, flag), "--" + flag)
    if not args.eps > 0:
        raise InputError(f"--eps must be positive, got {args.eps}", "pass e.g. --eps 0.15")
    runs.check_out(args.out, args.overwrite, _inputs(args))
    device = _device(args.device)
    t0 = time.perf_counter()
    summary: dict[str, Any] = {"command": "universality", "mode": args.mode, "model": args.model}
    if args.mode == "transfer":
        adv = _read_adversarial(args.adversarial)
        model = _load_model(args, adv["x"][:PROBE].float(), device)
        _check_labels(adv["y"].long(), args.num_classes, args)
        res = universality.transfer(model, adv["x"].float().to(device), adv["x_adv"].float().to(device),
                                    adv["y"].long().to(device), adv["success"].bool().to(device))
        summary.update(adversarial=str(args.adversarial), **res)
        lines = [f"transfer to {args.model}: accuracy {res['accuracy_clean']:.3f} clean -> "
                 f"{res['accuracy_adversarial']:.3f} adversarial; transfer rate {res['transfer_rate']:.3f} "
                 f"of {res['source_successes_correct_here']} source successes"]
    else:
        x8, y = _load_data(args)
        model = _load_model(args, data.to_float(x8[:PROBE]), device, grad=args.mode == "shared")
        _check_labels(y, args.num_classes, args)
        x = data.to_float(x8).to(device)
        y = y.to(device)
        if args.mode == "reuse":
            adv = _read_adversarial(args.adversarial)
            ok = adv["success"].bool()
            if not ok.any():
                raise InputError(f"{args.adversarial} holds no successful adversarial image", "attack more images first")
            if tuple(adv["x"].shape[1:]) != tuple(x.shape[1:]):
                raise InputError("--adversarial images and --dataset images differ in shape", "use the same dataset")
            hold = x[: args.holdout], y[: args.holdout]
            res = universality.pattern_reuse(model, adv["x"][ok].float().to(device), adv["x_adv"][ok].float().to(device),
                                             *hold)
            summary.update(adversarial=str(args.adversarial), holdout=len(hold[0]), **res)
            lines = [f"pattern reuse over {res['sources']} sources: mean fooling rate {res['mean_fooling_rate']:.4f}, "
                     f"best {res['max_fooling_rate']:.4f}"]
        else:
            if len(x) < args.fit + 1:
                raise InputError(f"only {len(x)} images for --fit {args.fit} plus a hold-out",
                                 "raise --limit or lower --fit")
            xf, yf = x[: args.fit], y[: args.fit]
            xh, yh = x[args.fit: args.fit + args.holdout], y[args.fit: args.fit + args.holdout]
            from .progress import LogProgress

            stages = LogProgress("universality", 4, "stages (fit, fit images, held-out, control)")
            sp = universality.shared_perturbation(model, xf, yf, args.pixels, eps=args.eps, per_class=args.per_class,
                                                  particles=args.particles, iterations=args.iterations, seed=args.seed,
                                                  selection=args.selection)
            stages.update(1)
            fit = universality.fooling_rate(model, xf, yf, sp.apply(xf, yf))
            stages.update(2)
            held = universality.fooling_rate(model, xh, yh, sp.apply(xh, yh))
            stages.update(3)
            control = universality.fooling_rate(model, xh, yh, universality.random_control(xh, args.pixels, args.eps, args.seed))
            stages.update(4)
            summary.update(pixels=args.pixels, eps=args.eps, per_class=args.per_class, fit_images=len(xf),
                           holdout_images=len(xh), fit=fit, holdout=held, random_control=control,
                           locations=sp.locations.tolist(), groups=sp.groups.tolist())
            lines = [f"shared {args.pixels}-pixel perturbation (eps {args.eps:g}): fooling rate "
                     f"{fit['fooling_rate']:.4f} on {len(xf)} fit images, {held['fooling_rate']:.4f} on "
                     f"{len(xh)} held-out images; random control {control['fooling_rate']:.4f}"]
            shared = sp
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    with runs.atomic_dir(args.out, args.overwrite, kind="universality", inputs=_inputs(args)) as tmp:
        runs.write_json(tmp / "summary.json", summary)
        if args.mode == "shared":
            from safetensors.torch import save_file

            save_file({"locations": shared.locations.contiguous(), "delta": shared.delta.contiguous(),
                       "groups": shared.groups.contiguous()}, str(tmp / "perturbation.safetensors"))
    lines.append(f"{summary['seconds']:.1f}s; wrote {args.out}/summary.json")
    _print_summary(args, summary, lines)
    return 0


def cmd_influence(args: argparse.Namespace) -> int:
    from . import data, influence, runs
    from .report.figures import heatmap_figure

    _positive(args.top, "--top")
    _positive(args.batch_size, "--batch-size")
    if args.eps is not None and not (args.eps > 0 and math.isfinite(args.eps)):
        raise InputError(f"--eps must be a finite number > 0, got {args.eps}", "pass e.g. --eps 1e-3, or omit it for exact FI")
    if not (args.fi_eps_scale > 0 and math.isfinite(args.fi_eps_scale)):
        raise InputError(f"--fi-eps-scale must be a finite number > 0, got {args.fi_eps_scale}",
                         "pass 1 for [0,1] models or 255 for models trained on raw 0..255 pixels")
    if args.tau < 0:
        raise InputError(f"--tau must be >= 0, got {args.tau}", "pass e.g. --tau 0.01")
    from .maps import choose_map

    choose_map(args.map, args.unit, args.window, args.eps, args.fi_eps_scale)  # checks the combination first
    runs.check_out(args.out, args.overwrite, _inputs(args))
    device = _device(args.device)
    x8, y = _load_data(args)
    model = _load_model(args, data.to_float(x8[:PROBE]), device, grad=True)
    k = args.num_classes
    _check_labels(y, k, args)
    classes = _class_names(args, k)
    bs = args.batch_size or 500
    flush_notes()
    t0 = time.perf_counter()
    rank = influence.rank_images(model, x8, "pred", batch_size=bs, progress=_progress(args), device=device)
    fi_true = influence.image_fi_from_logits(rank.logits, y)
    t_rank = time.perf_counter() - t0
    probs = torch.softmax(rank.logits.double(), 1)
    pred = rank.c
    correct = pred == y
    top = rank.order[: args.top]
    t0 = time.perf_counter()
    xt = data.to_float(x8[top]).to(device)
    from .maps import heatmaps_for_report

    maps, map_info, deletion = heatmaps_for_report(model, xt, args.map_class, y[top].to(device), map_name=args.map,
                                                   unit=args.unit, window=args.window, eps=args.eps,
                                                   eps_scale=args.fi_eps_scale, batch_size=min(bs, 64))
    t_maps = time.perf_counter() - t0
    map_cls = influence.resolve_class(rank.logits[top], args.map_class, y[top])
    vulnerable = correct & (rank.fi >= args.tau)
    rows = [{"index": i, "label": int(y[i]), "pred": int(pred[i]), "p_pred": float(probs[i, pred[i]]),
             "image_fi_pred": float(rank.fi[i]), "image_fi_true": float(fi_true[i])}
            for i in range(len(y))]
    top_rows = []
    summary: dict[str, Any] = {
        "command": "influence", "dataset": args.dataset, "split": args.split, "model": args.model,
        "images": len(y), "accuracy": float(correct.float().mean()), "tau": args.tau,
        "vulnerable_correct": int(vulnerable.sum()),
        "vulnerable_rule": "correctly classified and image FI (pred) >= tau, i.e. p_pred <= 1/(1+tau)",
        "image_fi_pred_quantiles": {q: float(torch.quantile(rank.fi, float(q))) for q in ("0.5", "0.9", "0.99")},
        "map": map_info, "deletion": deletion,
        "seconds": {"image_fi": round(t_rank, 3), "pixel_maps": round(t_maps, 3)},
        "top": top_rows, "versions": {"infoswarm": __version__, "torch": torch.__version__},
    }
    with runs.atomic_dir(args.out, args.overwrite, kind="influence", inputs=_inputs(args)) as tmp:
        runs.write_csv(tmp / "images.csv", rows, list(rows[0]))
        (tmp / "heatmaps").mkdir()
        for r, i in enumerate(top.tolist()):
            name = f"rank{r + 1:03d}_index{i}.png"
            mc = int(map_cls[r])
            title = (f"#{r + 1}: index {i}, label {classes[int(y[i])]}, pred {classes[int(pred[i])]} "
                     f"(p={float(probs[i, pred[i]]):.3f}), image FI {float(rank.fi[i]):.3g}")
            heatmap_figure(tmp / "heatmaps" / name, xt[r], maps[r],
                           title, f"{map_info['name']}, f = log p[{classes[mc]}]")
            top_rows.append({"rank": r + 1, "index": i, "label": int(y[i]), "pred": int(pred[i]),
                             "p_pred": float(probs[i, pred[i]]), "image_fi_pred": float(rank.fi[i]),
                             "map_class": mc, "map_max": float(maps[r].max()), "heatmap": f"heatmaps/{name}"})
        if deletion:
            from .report.analysis_figures import deletion_figure

            deletion_figure(tmp / "deletion.png", deletion["curves"],
                            f"deletion test on the {len(top)} heatmap images ({deletion['replacement']})")
        runs.write_json(tmp / "summary.json", summary)
    lines = [
        f"{args.model} on {args.dataset} {args.split}: {len(y)} images, accuracy {summary['accuracy']:.4f}",
        f"vulnerable (correct, image FI >= {args.tau:g}): {summary['vulnerable_correct']}",
        "most vulnerable: " + ", ".join(f"{t['index']} (FI {t['image_fi_pred']:.3g})" for t in top_rows[:5]),
        f"image FI {t_rank:.1f}s, {len(top)} pixel maps {t_maps:.1f}s; wrote {args.out}/"
        "{images.csv, summary.json, heatmaps/}",
    ]
    _print_summary(args, summary, lines)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report.html import write_report

    out = Path(args.out) if args.out is not None else Path(args.runs[0]) / "report.html"
    rep = write_report([Path(r) for r in args.runs], out)
    _print_summary(args, {"path": str(rep.path), "sections": rep.sections, "runs": [str(r.path) for r in rep.runs]},
                   [f"wrote {rep.path} ({', '.join(rep.sections)})"])
    return 0


def _terminate_cleanly() -> None:
    """SIGTERM (a scheduler's or `kill`'s default) ends the command like Ctrl-C: temporary files
    are removed and checkpoints kept. Only from the main thread (signal handlers live there)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, handler)
    except (ValueError, OSError):
        pass


def _check_numbers(args: argparse.Namespace) -> None:
    """Every float option finite, the seed in torch's range: checked before any command runs."""
    import math

    for name, value in sorted(vars(args).items()):
        if isinstance(value, float) and not math.isfinite(value):
            flag = "--" + name.replace("_", "-")
            raise InputError(f"{flag} must be a finite number, got {value}", f"pass a number such as {flag} 0.1")
    seed = getattr(args, "seed", 0)
    if isinstance(seed, int) and not 0 <= seed < 2 ** 63:
        raise InputError(f"--seed must lie in 0 .. 2^63-1, got {seed}", "pass e.g. --seed 0")


def _lock(args: argparse.Namespace) -> Any:
    """The run-folder lock (:func:`infoswarm.runs.lock`) of commands that write an --out folder."""
    import contextlib

    from . import runs

    import os

    if args.command == "report" or not getattr(args, "out", None) or os.environ.get("RANK", "0") != "0":
        return contextlib.nullcontext()  # under torchrun only rank 0 holds the lock
    return runs.lock(args.out)


def _inputs(args: argparse.Namespace) -> list[str]:
    """Files and folders a command reads (never to be written into or over)."""
    paths = [getattr(args, k, None) for k in ("dataset", "weights", "against", "adversarial")]
    model = getattr(args, "model", None)
    if isinstance(model, str):
        paths.append(model.rsplit(":", 1)[0] if ":" in model and not Path(model).exists() else model)
    return [str(p) for p in paths if p and Path(str(p)).expanduser().exists()]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``infoswarm`` command; returns the exit status."""
    tune_cpu()  # keep big freed tensor buffers in the process (glibc; see infoswarm.cpu)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        print("error: no command given; choose one of "
              "influence, attack, universality, train, harden, evaluate, report, demo", file=sys.stderr)
        return 2
    _terminate_cleanly()
    try:
        _check_numbers(args)
        torch.manual_seed(args.seed)
        with _lock(args):
            status = int(args.func(args) or 0)
        flush_notes()
        return status
    except InputError as e:
        _NOTES.clear()
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; no half-written output was left (attack, train and harden runs keep "
              "their checkpoints: run the same command to continue)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
