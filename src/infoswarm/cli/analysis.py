"""The analysis commands of the AAAI'19 paper (Shu & Zhu): ``outliers`` (FI as an outlier
detector against the Jacobian norm) and ``sensitivity`` (per-layer parameter FI and image-FI
percentiles on the train and test splits). Thin layers over :mod:`infoswarm.outliers` and
:mod:`infoswarm.sensitivity`; registered from :func:`infoswarm.cli.build_parser`."""

from __future__ import annotations

import argparse
from typing import Any

import torch

from ..errors import InputError
from .common import (
    PROBE,
    DataSpec,
    ModelSpec,
    check_model_for,
    class_names,
    common_args,
    flush_notes,
    inputs_of,
    load_data,
    load_model,
    model_args,
    positive,
    print_summary,
    torch_device,
)


def _data_group(p: argparse.ArgumentParser, dataset_help: str, limit: int | None, limit_help: str) -> None:
    """The data options of the analysis commands (--dataset, --data-root, --download, --limit)."""
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default="mnist", help=dataset_help)
    g.add_argument("--data-root", default=None, help="extra folder to look for dataset files in")
    g.add_argument("--download", action="store_true", help="download the official files if no local copy exists")
    g.add_argument("--limit", type=int, default=limit, help=limit_help)


def add_parser(sub: Any) -> None:
    """Register ``outliers`` and ``sensitivity`` on the ``infoswarm`` sub-command parser."""

    p = sub.add_parser(
        "outliers", help="FI as an outlier detector: synthetic outliers, fine-tune, ROC/PR vs the Jacobian norm",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="AAAI'19 Setup 0. Builds synthetic outliers from the training split (the pixel-wise max of "
                    "an image and a shifted image of another class, labelled as the first), fine-tunes a copy "
                    "of the model on --limit clean training images plus the outliers, then scores every image "
                    "of that set by image FI of its label, (1 - p_y)/p_y, and by the Jacobian norm "
                    "||d log p_y / dx||_2. Writes ROC and precision-recall curves and areas for both scores "
                    "and the top-ranked images.",
        epilog="example:\n  infoswarm outliers --dataset mnist --model mnist-cnn --limit 10000 --outliers 1000 "
               "--out runs/outliers")
    _data_group(p, "mnist, fashion-mnist, cifar10, or a path (train split used)", 10000,
                "clean training images (the first N of the train split; default 10000)")
    model_args(p)
    g = p.add_argument_group("outliers")
    g.add_argument("--outliers", type=int, default=1000, help="synthetic outliers added (default 1000)")
    g.add_argument("--shift", type=int, nargs=2, default=(4, 8), metavar=("MIN", "MAX"),
                   help="the partner image moves by a random (dy, dx) with MIN <= max(|dy|,|dx|) <= MAX (default 4 8)")
    g.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs (default 2)")
    g.add_argument("--lr", type=float, default=0.01, help="fine-tuning learning rate, cosine to 0 (default 0.01)")
    g.add_argument("--top", type=int, default=32, help="top-ranked images shown per score (default 32)")
    common_args(p)
    p.set_defaults(func=cmd_outliers, split="train")

    p = sub.add_parser(
        "sensitivity", help="per-layer parameter FI (Manhattan plot) and image-FI percentiles, train vs test",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="AAAI'19 sensitivity analyses for any zoo or user model: per-layer parameter FI of log p_y "
                    "(all of a layer's weights perturbed together) on --param-images test images, plotted by "
                    "layer and class; and the 75/80/85/90/95/98/99/100th percentiles of image FI (1 - p_y)/p_y "
                    "on the train and test splits (--limit images of each).",
        epilog="example:\n  infoswarm sensitivity --dataset mnist --model mnist-cnn --limit 10000 "
               "--param-images 200 --out runs/sensitivity")
    _data_group(p, "mnist, fashion-mnist, cifar10, or a path to an .npz / folder", None,
                "images of each split for the percentiles (default all)")
    model_args(p)
    g = p.add_argument_group("sensitivity")
    g.add_argument("--param-images", type=int, default=200,
                   help="test images for the per-layer parameter FI (default 200)")
    g.add_argument("--fi-eps", dest="fi_eps", type=float, default=1e-3,
                   help="FI regulariser: epsilon of the authors' regularised FI for the layers "
                        "(default 1e-3, as in their code)")
    g.add_argument("--eps", dest="fi_eps", type=float, default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)  # the old name of --fi-eps
    g.add_argument("--exact", action="store_true",
                   help="exact layer FI instead (equals the image FI for any layer whose Jacobian has rank K)")
    common_args(p)
    p.set_defaults(func=cmd_sensitivity, split="test")


def _check_dataset_labels(y: torch.Tensor, k: int) -> None:
    if int(y.max()) >= k:
        raise InputError(f"labels go up to {int(y.max())} but the model has {k} classes",
                         "use the model made for this dataset")


def cmd_outliers(args: argparse.Namespace) -> int:
    """``infoswarm outliers``."""
    from safetensors.torch import save_file

    from .. import data, outliers, runs
    from ..checks import check_memory, check_work
    from ..report.analysis_figures import image_grid_figure, roc_pr_figure

    for flag in ("limit", "outliers", "epochs", "top", "batch_size"):
        positive(getattr(args, flag), "--" + flag.replace("_", "-"))
    if not args.lr > 0:
        raise InputError(f"--lr must be positive, got {args.lr}", "pass e.g. --lr 0.01")
    lo, hi = args.shift
    if not 0 <= lo <= hi:
        raise InputError(f"--shift needs 0 <= MIN <= MAX, got {lo} {hi}", "pass e.g. --shift 4 8")
    runs.check_out(args.out, args.overwrite, inputs_of(args))
    device = torch_device(args.device)
    model_spec, data_spec = ModelSpec.of(args), DataSpec.of(args)
    x8, y = load_data(data_spec, "train")
    if x8.shape[-1] <= hi or x8.shape[-2] <= hi:
        raise InputError(f"--shift MAX {hi} is not smaller than the image size {tuple(x8.shape[-2:])}",
                         "pass a smaller --shift")
    model, k = load_model(model_spec, data.to_float(x8[:PROBE]), device)
    _check_dataset_labels(y, k)
    if isinstance(model, torch.jit.ScriptModule):
        raise InputError("fine-tuning needs a Python nn.Module, not TorchScript",
                         "load the model as file.py:Class with --weights")
    bs = args.batch_size or outliers.FINETUNE.batch_size
    mc = check_model_for(model_spec, model, x8, y, device, (bs, 500))
    check_memory(float(args.outliers) * x8[0].numel() * 2, f"--outliers {args.outliers}",
                 "lower --outliers", "cpu")
    check_work(3.0 * args.epochs * (len(x8) + args.outliers) + 4.0 * (len(x8) + args.outliers),
               mc.seconds_per_image, f"fine-tuning {args.epochs} epochs on {len(x8) + args.outliers} images",
               "lower --epochs, --limit or --outliers")
    flush_notes()
    study = outliers.outlier_study(model, x8, y, args.outliers, device=device, seed=args.seed, min_shift=lo,
                                   max_shift=hi, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                                   top=args.top, names=(args.model, args.dataset))
    summary, xs, ys, is_out, out = study.summary, study.x, study.y, study.is_outlier, study.outliers
    result, curves, names = summary["scores"], study.curves, outliers.SCORE_NAMES
    roc_pts = {names[k]: (curves[k]["fpr"], curves[k]["tpr"], result[k]["roc_auc"]) for k in names}
    pr_pts = {names[k]: (curves[k]["recall"], curves[k]["precision"], result[k]["average_precision"]) for k in names}
    with runs.atomic_dir(args.out, args.overwrite, kind="outliers", inputs=inputs_of(args)) as tmp:
        runs.write_csv(tmp / "scores.csv", study.rows, list(study.rows[0]))
        runs.write_json(tmp / "curves.json", curves)
        roc_pr_figure(tmp / "roc_pr.png", roc_pts, pr_pts, len(out.x) / len(xs),
                      f"{args.model} fine-tuned on {len(x8)} clean + {len(out.x)} outlier {args.dataset} images")
        for key in names:
            top = study.top[key]
            image_grid_figure(tmp / f"top_{key}.png", data.to_float(xs[top]),
                              [f"#{r + 1} y={int(ys[i])} {'OUT' if is_out[i] else 'clean'}"
                               for r, i in enumerate(top.tolist())],
                              [bool(is_out[i]) for i in top.tolist()],
                              f"top {len(top)} by {names[key]} (red frame: synthetic outlier)")
        torch.save({"x": out.x, "y": out.y, "base": out.base, "partner": out.partner, "shift": out.shift},
                   tmp / "outliers.pt")
        save_file({k: v.detach().cpu().contiguous() for k, v in study.model.state_dict().items()},
                  str(tmp / "model.safetensors"))
        runs.write_json(tmp / "summary.json", summary)
    top_n = int(is_out.sum())
    diff = summary["roc_auc_fi_minus_jacobian"]
    d, (d_lo, d_hi) = diff["difference"], diff["ci95"]
    lines = [f"{args.model} fine-tuned {summary['finetune']['epochs']} epochs on {len(x8)} clean + "
             f"{len(out.x)} outlier {args.dataset} train images ({study.tune_seconds:.0f}s)"]
    for key in names:
        r = result[key]
        lo_, hi_ = r["roc_auc_ci95"]
        lines.append(f"{names[key]}: ROC AUC {r['roc_auc']:.4f} [{lo_:.4f}, {hi_:.4f}], average precision "
                     f"{r['average_precision']:.4f} (random {len(out.x) / len(xs):.4f}), precision in the top "
                     f"{top_n}: {r['precision_at_n_outliers']:.3f}")
    lines.append(f"ROC AUC difference (FI - Jacobian norm): {d:+.4f} [{d_lo:+.4f}, {d_hi:+.4f}] "
                 "(paired bootstrap 95 %)")
    lines.append(f"wrote {args.out}/{{summary.json, scores.csv, curves.json, roc_pr.png, top_fi.png, "
                 "top_jacobian.png, outliers.pt, model.safetensors}")
    print_summary(args, summary, lines)
    return 0


def cmd_sensitivity(args: argparse.Namespace) -> int:
    """``infoswarm sensitivity``."""
    import numpy as np

    from .. import data, runs, sensitivity
    from ..checks import check_work
    from ..report.analysis_figures import manhattan_figure

    positive(args.param_images, "--param-images")
    positive(args.batch_size, "--batch-size")
    if not args.exact and not args.fi_eps > 0:
        raise InputError(f"--fi-eps must be positive, got {args.fi_eps}", "pass e.g. --fi-eps 1e-3, or --exact")
    fi_eps = None if args.exact else args.fi_eps
    fi_text = "exact" if fi_eps is None else f"fi-eps={fi_eps:g}"
    runs.check_out(args.out, args.overwrite, inputs_of(args))
    device = torch_device(args.device)
    model_spec, data_spec = ModelSpec.of(args), DataSpec.of(args)
    splits = {s: load_data(data_spec, s) for s in ("train", "test")}
    x_test, y_test = splits["test"]
    if tuple(splits["train"][0].shape[1:]) != tuple(x_test.shape[1:]):
        raise InputError(f"train images {tuple(splits['train'][0].shape[1:])} and test images "
                         f"{tuple(x_test.shape[1:])} of {args.dataset} differ in shape",
                         "use one image size in both splits")
    model, k = load_model(model_spec, data.to_float(x_test[:PROBE]), device)
    if isinstance(model, torch.jit.ScriptModule):
        raise InputError("parameter FI needs a Python nn.Module, not TorchScript",
                         "load the model as file.py:Class with --weights")
    for _s, (_, yy) in splits.items():
        _check_dataset_labels(yy, k)
    bs = args.batch_size or 500
    mc = check_model_for(model_spec, model, x_test, y_test, device, (bs, min(args.batch_size or 16, 64)))
    n_all = sum(len(yy) for _, yy in splits.values())
    check_work(3.0 * n_all + 3.0 * k * min(args.param_images, len(x_test)) * 8, mc.seconds_per_image,
               f"image FI of {n_all} images and layer FI of {min(args.param_images, len(x_test))}",
               "lower --limit or --param-images")
    flush_notes()
    classes = class_names(data_spec, k)
    study = sensitivity.sensitivity_study(model, splits, param_images=args.param_images, fi_eps=fi_eps, device=device,
                                          batch_size=args.batch_size, class_names=classes,
                                          names=(args.model, args.dataset))
    summary, pct, n = study.summary, study.summary["percentiles"], len(study.y)
    layers, img, lfi, yp = summary["layer_fi"]["layers"], study.image_fi, study.layer_fi, study.y
    fi_rows, pct_rows = study.layer_rows, study.percentile_rows
    with runs.atomic_dir(args.out, args.overwrite, kind="sensitivity", inputs=inputs_of(args)) as tmp:
        runs.write_csv(tmp / "layer_fi.csv", fi_rows, list(fi_rows[0]))
        runs.write_csv(tmp / "percentiles.csv", pct_rows, list(pct_rows[0]))
        vals = {"image": img.numpy(), **{name: v.numpy() for name, v in lfi.items()}}
        manhattan_figure(tmp / "layer_fi.png", vals, yp.numpy().astype(np.int64), classes,
                         f"{args.model}: parameter FI per layer ({fi_text}), "
                         f"{n} {args.dataset} test images by class; 'image' = image FI")
        runs.write_json(tmp / "summary.json", summary)
    qs = list(pct["train"]["fi_true"])
    lines = [f"{args.model} on {args.dataset}: image FI of the true label, percentiles " + " / ".join(qs)]
    for s in ("train", "test"):
        lines.append(f"  {s:5s} ({pct[s]['images']} images, acc {pct[s]['accuracy']:.4f}): "
                     + " / ".join(f"{pct[s]['fi_true'][q]:.3g}" for q in qs))
    lines.append(f"layer FI ({fi_text}, {n} test images), median: "
                 + ", ".join(f"{name} {v['median']:.3g}" for name, v in layers.items()))
    lines.append(f"wrote {args.out}/{{summary.json, percentiles.csv, layer_fi.csv, layer_fi.png}}")
    print_summary(args, summary, lines)
    return 0
