"""``infoswarm influence``: image FI ranking and pixel heatmaps of a model."""

from __future__ import annotations

import argparse
import math
from typing import Any

from ..errors import InputError
from .common import (
    PROBE,
    DataSpec,
    ModelSpec,
    check_labels,
    check_model_for,
    class_names,
    common_args,
    data_args,
    flush_notes,
    inputs_of,
    load_data,
    load_model,
    model_args,
    positive,
    print_summary,
    show_progress,
    torch_device,
)


def add_parser(sub: Any) -> None:
    """Register ``influence``."""
    p = sub.add_parser(
        "influence", help="rank vulnerable images and map vulnerable pixels (Fisher influence)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Image-level and pixel-level first-order influence (FI) of a model.",
        epilog="example:\n  infoswarm influence --dataset mnist --model mnist-cnn --split test "
               "--limit 1000 --top 20 --out runs/fi")
    data_args(p)
    model_args(p)
    g = p.add_argument_group("influence")
    g.add_argument("--top", type=int, default=20, help="heatmaps for the N most vulnerable correctly classified images")
    g.add_argument("--map-class", default="pred", choices=["pred", "true", "second"],
                   help="class c of the pixel maps' objective log p_c (default pred)")
    g.add_argument("--map", default=None, choices=["fi", "saliency", "grad-input", "eps-fi", "window-fi-3",
                                                   "window-fi-5", "window-fi-7", "random"],
                   help="heatmap: fi = exact FI set by --unit/--window/--fi-eps; otherwise a map of infoswarm.maps "
                        "(default: the deletion benchmark's winner, see BENCHMARKS.md, unless --unit element, "
                        "--window or --fi-eps ask for FI)")
    g.add_argument("--unit", default="pixel", choices=["pixel", "element"],
                   help="pixel: all channels of a location together; element: one channel")
    g.add_argument("--window", type=int, default=1, choices=[1, 3, 5, 7], help="block width")
    g.add_argument("--fi-eps", dest="fi_eps", type=float, default=None,
                   help="FI regulariser: the authors' regularised FI variant with this epsilon (e.g. 1e-3); "
                        "default exact FI")
    g.add_argument("--eps", dest="fi_eps", type=float, default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)  # the old name of --fi-eps
    g.add_argument("--fi-eps-scale", type=float, default=1.0,
                   help="input scale the epsilon variant is evaluated in: 1 for [0,1] models (default), "
                        "255 for models trained on raw 0..255 pixels (the authors' CIFAR-10 model)")
    g.add_argument("--tau", type=float, default=0.01,
                   help="vulnerability threshold on image FI, reported in the summary (default 0.01)")
    common_args(p)
    p.set_defaults(func=cmd_influence, dataset="mnist")


def cmd_influence(args: argparse.Namespace) -> int:
    from .. import data, runs
    from ..artifacts import HEATMAPS, INFLUENCE_DELETION
    from ..pipeline import InfluenceRequest, influence_scan
    from ..report.figures import heatmap_figure

    positive(args.top, "--top")
    positive(args.batch_size, "--batch-size")
    if args.fi_eps is not None and not (args.fi_eps > 0 and math.isfinite(args.fi_eps)):
        raise InputError(f"--fi-eps must be a finite number > 0, got {args.fi_eps}",
                         "pass e.g. --fi-eps 1e-3, or omit it for exact FI")
    if not (args.fi_eps_scale > 0 and math.isfinite(args.fi_eps_scale)):
        raise InputError(f"--fi-eps-scale must be a finite number > 0, got {args.fi_eps_scale}",
                         "pass 1 for [0,1] models or 255 for models trained on raw 0..255 pixels")
    if args.tau < 0:
        raise InputError(f"--tau must be >= 0, got {args.tau}", "pass e.g. --tau 0.01")
    from ..maps import choose_map

    choose_map(args.map, args.unit, args.window, args.fi_eps, args.fi_eps_scale)  # checks the combination first
    runs.check_out(args.out, args.overwrite, inputs_of(args))
    device = torch_device(args.device)
    model_spec, data_spec = ModelSpec.of(args), DataSpec.of(args)
    x8, y = load_data(data_spec)
    model, k = load_model(model_spec, data.to_float(x8[:PROBE]), device, grad=True)
    check_labels(y, k, data_spec.dataset)
    classes = class_names(data_spec, k)
    bs = args.batch_size or 500
    check_model_for(model_spec, model, x8, y, device, (bs, min(bs, 64)))
    flush_notes()
    request = InfluenceRequest(top=args.top, tau=args.tau, map=args.map, unit=args.unit, window=args.window,
                               fi_eps=args.fi_eps, fi_eps_scale=args.fi_eps_scale, map_class=args.map_class,
                               batch_size=bs, dataset=args.dataset, split=args.split, model=args.model)
    scan = influence_scan(request, model, x8, y, device=device, progress=show_progress(args))
    summary, top_rows = scan.record.summary, scan.record.summary["top"]
    with runs.atomic_dir(args.out, args.overwrite, kind="influence", inputs=inputs_of(args)) as tmp:
        (tmp / HEATMAPS).mkdir()
        for r, t in enumerate(top_rows):
            title = (f"#{r + 1}: index {t['index']}, label {classes[t['label']]}, pred {classes[t['pred']]} "
                     f"(p={t['p_pred']:.3f}), image FI {t['image_fi_pred']:.3g}")
            heatmap_figure(tmp / t["heatmap"], scan.x[r], scan.maps[r],
                           title, f"{summary['map']['name']}, f = log p[{classes[t['map_class']]}]")
        if scan.deletion:
            from ..report.analysis_figures import deletion_figure

            deletion_figure(tmp / INFLUENCE_DELETION, scan.deletion["curves"],
                            f"deletion test on the {len(top_rows)} heatmap images ({scan.deletion['replacement']})")
        scan.record.save(tmp)   # images.csv, summary.json last
    t_rank, t_maps = summary["seconds"]["image_fi"], summary["seconds"]["pixel_maps"]
    lines = [
        f"{args.model} on {args.dataset} {args.split}: {len(y)} images, accuracy {summary['accuracy']:.4f}",
        f"vulnerable (correct, image FI >= {args.tau:g}): {summary['vulnerable_correct']}",
        "most vulnerable (correct): " + ", ".join(f"{t['index']} (FI {t['image_fi_pred']:.3g})" for t in top_rows[:5]),
        f"image FI {t_rank:.1f}s, {len(top_rows)} pixel maps {t_maps:.1f}s; wrote {args.out}/"
        "{images.csv, summary.json, heatmaps/}",
    ]
    print_summary(args, summary, lines)
    return 0
