"""``infoswarm train``: train a zoo architecture with its recorded recipe."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
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
    positive,
    print_finished,
    print_summary,
    torch_device,
)


def add_parser(sub: Any) -> None:
    """Register ``train``."""
    p = sub.add_parser(
        "train", help="train a zoo architecture with its recorded recipe",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a zoo model; writes model.safetensors, card.json and history.csv.",
        epilog="example:\n  infoswarm train --dataset mnist --model mnist-cnn --out runs/mnist-cnn")
    data_args(p, default_split="train")
    g = p.add_argument_group("model")
    g.add_argument("--model", required=True, help="zoo architecture name")
    g.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    g.add_argument("--lr", type=float, default=None, help="override the recipe's learning rate")
    common_args(p)
    p.set_defaults(func=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from .. import data, runs, training, zoo
    from ..artifacts import model_card, save_model

    if args.model not in zoo.ZOO:
        zoo.build(args.model)  # raises the unknown-name error
    entry = zoo.ZOO[args.model]
    dataset = args.dataset or entry.dataset
    recipe = entry.recipe
    positive(args.epochs, "--epochs")
    positive(args.batch_size, "--batch-size")
    if args.lr is not None and not args.lr > 0:
        raise InputError(f"--lr must be positive, got {args.lr}", "pass e.g. --lr 0.05, or omit it for the recipe's")
    if args.epochs:
        recipe = replace(recipe, epochs=args.epochs)
    if args.lr:
        recipe = replace(recipe, lr=args.lr)
    if args.batch_size:
        recipe = replace(recipe, batch_size=args.batch_size)
    device = torch_device(args.device)
    x, y = load_data(DataSpec.of(args, dataset=dataset), "train")
    xt, yt = data.load(dataset, "test", root=args.data_root, download=args.download)
    want = zoo.ZOO[args.model].dataset
    shaped = "x".join(map(str, data.INFO[want].shape))
    if data.is_named(dataset) and tuple(data.INFO[want].shape) != tuple(x.shape[1:]):
        raise InputError(f"model {args.model} takes {shaped} images ({want}), "
                         f"but {dataset} images are {'x'.join(map(str, x.shape[1:]))}",
                         "pick the model made for this dataset")
    if tuple(x.shape[1:]) != tuple(xt.shape[1:]):
        raise InputError(f"train images {tuple(x.shape[1:])} and test images {tuple(xt.shape[1:])} of "
                         f"{dataset} differ in shape", "use one image size in both splits")
    torch.manual_seed(args.seed)
    model = zoo.build(args.model).to(device)
    try:  # fails here, before any training, when the images do not fit the architecture
        with torch.no_grad():
            probe = model.eval()(data.to_float(x[:PROBE]).to(device))
        model.train()
    except RuntimeError as e:
        raise InputError(f"model {args.model} (made for {shaped} {want} images) cannot take {dataset} images "
                         f"of shape {'x'.join(map(str, x.shape[1:]))} ({(str(e).splitlines() or [''])[0][:120]})",
                         "pick the model made for this dataset") from None
    check_labels(y, int(probe.shape[1]), dataset)  # before any work: a label >= K would fail mid-epoch
    check_labels(yt, int(probe.shape[1]), f"{dataset} test")
    if len(xt) and tuple(x.shape[1:]) == tuple(xt.shape[1:]):
        from ..checks import check_work

        mc = check_model_for(ModelSpec(model=args.model, dataset=dataset), model.eval(), x, None, device,
                             (recipe.batch_size, 500), shipped=False)
        model.train()
        check_work(3.0 * recipe.epochs * len(x) + recipe.epochs * len(xt), mc.seconds_per_image,
                   f"training {recipe.epochs} epochs on {len(x)} images", "lower --epochs or --limit")
    settings = {"model": args.model, "dataset": dataset, "recipe": training.recipe_dict(recipe),
                "seed": args.seed, "train_images": len(x)}
    run = runs.ResumableRun(args.out, "train", settings, overwrite=args.overwrite, create=False,
                           inputs=inputs_of(args))
    if run.finished and not args.overwrite:
        return print_finished(args, "train", "pass --overwrite to train again")
    run = runs.ResumableRun(args.out, "train", settings, overwrite=args.overwrite, inputs=inputs_of(args))
    state = run.load("train.pt") if run.resumed else None
    if state is not None:
        _check_state(state, model, run.checkpoint_path("train.pt"))
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
    card = model_card(args.model, model, dataset, test_acc, train_images=len(x),
                      recipe=training.recipe_dict(recipe), seed=args.seed,
                      train_seconds=round(elapsed0 + time.perf_counter() - t0, 1),
                      threads=torch.get_num_threads(), machine=_machine())
    # one metadata key: safetensors writes several keys in no fixed order, one keeps the file bitwise repeatable
    save_model(run.path, model.state_dict(), card,
               {"infoswarm": json.dumps({"name": args.model, "dataset": dataset}, sort_keys=True)})
    run.write_csv("history.csv", history, list(history[0]))
    run.write_json(run.DONE, card)
    print_summary(args, card, [f"{args.model} on {dataset}: test accuracy {test_acc:.4f}",
                                f"wrote {Path(args.out) / 'model.safetensors'} and card.json"])
    return 0


_STATE = ("model", "optimizer", "generator", "torch_rng", "history", "epoch")


def _check_state(state: Any, model: torch.nn.Module, path: Path) -> None:
    """A train checkpoint must hold the training state of this model (checked before resuming)."""
    import copy

    lacking = [k for k in _STATE if k not in state] if isinstance(state, dict) else list(_STATE)
    problem = (f"it lacks {', '.join(lacking)}" if isinstance(state, dict) else
               f"it holds a {type(state).__name__}, not the training state") if lacking else None
    if problem is None:
        try:
            copy.deepcopy(model).load_state_dict(state["model"])
            int(state["epoch"])
        except Exception as e:  # noqa: BLE001 - any content that does not fit
            problem = f"its weights do not fit {type(model).__name__} ({type(e).__name__})"
    if problem:
        raise InputError(f"checkpoint {path} is not a train checkpoint of this run: {problem}",
                         "pass --overwrite to start this run over (or delete that file)")


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
