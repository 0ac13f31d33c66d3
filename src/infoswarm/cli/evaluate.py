"""``infoswarm evaluate``: a model's robustness against a saved attack run."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError
from .common import (
    PROBE,
    ModelSpec,
    check_labels,
    check_model_for,
    common_args,
    inputs_of,
    load_model,
    model_args,
    print_summary,
    torch_device,
)


def add_parser(sub: Any) -> None:
    """Register ``evaluate``."""
    p = sub.add_parser(
        "evaluate", help="robustness of a model against an attack run: adversarial accuracy and a fresh re-attack",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Clean test accuracy of --model; its accuracy on the successful adversarial images of "
                    "--against (made against another model); and the success rate of a fresh attack with "
                    "the --against run's settings (and of --baselines at the same query budget) on the "
                    "same original images. Writes summary.json. It re-attacks a saved run with that run's one "
                    "attack; for a model's robust accuracy at k pixels (several attacks per image, a curve "
                    "over k, masking checks) use `infoswarm robustness`.",
        epilog="example:\n  infoswarm evaluate --model mnist-cnn --weights runs/h/model.safetensors "
               "--against runs/a --out runs/e")
    model_args(p)
    g = p.add_argument_group("evaluation")
    g.add_argument("--against", required=True, help="an `infoswarm attack` run folder")
    g.add_argument("--baselines", default="sparse-rs",
                   help="comma-separated baseline attacks re-run at the same budget (default sparse-rs; '' for none)")
    g.add_argument("--data-root", default=None, help="extra folder to look for dataset files in")
    g.add_argument("--download", action="store_true", help="download the test split if missing")
    common_args(p)
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .. import data, runs, training
    from ..artifacts import AttackRun
    from ..attacks import registry
    from ..pipeline import reattack

    folder = Path(args.against)
    record = AttackRun.load(folder, name="--against")
    arrays, info = record.arrays, record.summary
    names = [b.strip() for b in args.baselines.split(",") if b.strip()]
    for b in names:
        if b not in registry.names():
            raise InputError(f"unknown baseline {b!r}", f"use some of {', '.join(registry.names())}")
    runs.check_out(args.out, args.overwrite, inputs_of(args))
    device = torch_device(args.device)
    model_spec = ModelSpec.of(args, dataset=info["dataset"])
    x, x_adv = arrays["x"].float().to(device), arrays["x_adv"].float().to(device)
    y, success = arrays["y"].long().to(device), arrays["success"].bool().to(device)
    model, num_classes = load_model(model_spec, x[:PROBE], device)
    check_labels(y, num_classes, f"{folder}/adversarial.npz")
    if x.shape[1:] != x_adv.shape[1:] or len(x) == 0:
        raise InputError(f"{folder}/adversarial.npz has no usable images", "re-run the attack")
    check_model_for(model_spec, model, x, y, device, (1024,), images=f"images of {folder}/adversarial.npz")
    xt8, yt = data.load(info["dataset"], "test", root=args.data_root, download=args.download)
    t0 = time.perf_counter()
    with torch.no_grad():
        adv_acc = float((model(x_adv[success]).argmax(1) == y[success]).float().mean()) if success.any() else None
    rows, budget = reattack(record, model, names, num_classes=num_classes, device=device, seed=args.seed,
                            where=str(folder), probe=PROBE)
    summary = {"command": "evaluate", "model": args.model, "weights": args.weights, "against": str(folder),
               "dataset": info["dataset"], "images": int(len(x)),
               "clean_acc": training.accuracy(model, xt8.to(device), yt.to(device)),
               "adv_acc": adv_acc, "adversarial_images": int(success.sum()), "reattack": rows,
               "query_budget": budget, "seconds": time.perf_counter() - t0}
    with runs.atomic_dir(args.out, args.overwrite, kind="evaluate", inputs=inputs_of(args, info["dataset"])) as tmp:
        runs.write_json(tmp / "summary.json", summary)
        runs.write_csv(tmp / "reattack.csv", rows, list(rows[0]))
    lines = [f"clean test accuracy {summary['clean_acc']:.4f}; accuracy on {int(success.sum())} adversarial images "
             f"from {folder}: {'n/a' if adv_acc is None else f'{adv_acc:.4f}'}"]
    lines += [f"fresh {r['attack']}: success {r['success_rate']:.3f} ({r['queries_mean']:.0f} queries/image)"
              for r in rows]
    lines.append(f"wrote {args.out}/summary.json")
    print_summary(args, summary, lines)
    return 0
