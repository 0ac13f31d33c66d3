"""Deletion benchmark of pixel attribution maps: which map finds the pixels that matter?

For each dataset (model): the first N test images the model classifies correctly; for each map
of :data:`infoswarm.maps.MAPS` (exact element / pixel / window-3/5/7 FI, the authors' ε-FI,
saliency, gradient × input, random) perturb the k top-scoring locations (all channels), k = 1 …
K_MAX, to (a) the opposite corner of [0, 1] per channel ("box") and (b) a Gaussian-blurred value
(σ = 2, "blur"), and record the drop p_c(x) − p_c(x_k) of the true (= predicted) class. The AUC is
the mean drop over k = 1 … K_MAX; its 95 % interval is normal over images, and the best map is
compared with saliency and random by the paired per-image difference (normal 95 % interval).
Also reported: the share of images whose prediction changed by k = K_MAX (Wilson 95 % interval).

The results replace this script's section of ``--out`` (between its markers) and go to
``--json``.

    OMP_NUM_THREADS=1 python bench/maps.py --datasets mnist fashion-mnist --images 200
    INFOSWARM_DATA=/work/shared/data python bench/maps.py --datasets cifar10   # needs cifar10-cnn weights
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, machine_line, md_table, replace_section  # noqa: E402

from infoswarm import data, maps, zoo  # noqa: E402

SECTION = "maps"
MODELS = {"mnist": "mnist-cnn", "fashion-mnist": "fashion-cnn", "cifar10": "cifar10-cnn"}


def correct_images(model: torch.nn.Module, dataset: str, n: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The first n correctly classified test images (float [n, C, H, W]), labels, and how many
    test images were scanned to find them."""
    x8, y = data.load(dataset, "test")
    xs, ys, scanned = [], [], 0
    got = 0
    for i in range(0, len(x8), 1000):
        xb = data.to_float(x8[i: i + 1000])
        with torch.no_grad():
            ok = model(xb).argmax(1) == y[i: i + 1000]
        idx = ok.nonzero().flatten()[: n - got]
        xs.append(xb[idx])
        ys.append(y[i: i + 1000][idx])
        got += len(idx)
        scanned = i + (int(idx[-1]) + 1 if got >= n and len(idx) else len(xb))
        if got >= n:
            break
    return torch.cat(xs), torch.cat(ys), scanned


def run_dataset(dataset: str, n: int, k_max: int, seed: int, argv: list[str], weights: str | None = None) -> dict:
    model = zoo.load(MODELS[dataset], weights)
    x, y, scanned = correct_images(model, dataset, n)
    t0 = time.perf_counter()
    all_maps, c = maps.attribution_maps(model, x, maps.MAPS, y, seed=seed, batch_size=25)
    t_maps = time.perf_counter() - t0
    assert torch.equal(c, y)
    res: dict = {"dataset": dataset, "model": MODELS[dataset], "images": len(x), "scanned": scanned,
                 "weights": weights or "shipped", "machine": machine_line(), "command": command_line("bench/maps.py", argv),
                 "k_max": k_max, "seconds_maps": round(t_maps, 1), "replacements": {}}
    for how in maps.REPLACEMENTS:
        t0 = time.perf_counter()
        aucs: dict[str, torch.Tensor] = {}
        rows = {}
        for name in maps.MAPS:
            drop, lodrop, pred = maps.deletion_curves(model, x, c, all_maps[name], how, k_max)
            auc = maps.deletion_auc(drop)
            lo_auc = maps.mean_interval(maps.deletion_auc(lodrop))
            aucs[name] = auc
            flipped = int((pred[:, -1] != c).sum())
            s = maps.mean_interval(auc)
            rows[name] = {"auc": s.mean, "auc_lo": s.lo, "auc_hi": s.hi,
                          "drop_k10": float(drop[:, min(10, k_max)].mean()), "drop_kmax": float(drop[:, -1].mean()),
                          "changed_kmax": flipped, "changed_kmax_ci": maps.wilson(flipped, len(x)),
                          "auc_per_image": auc.tolist(), "logodds_auc": lo_auc.mean, "logodds_lo": lo_auc.lo, "logodds_hi": lo_auc.hi,
                          "curve": drop.mean(0).tolist(), "logodds_curve": lodrop.mean(0).tolist()}
        best = max(rows, key=lambda k: rows[k]["auc"])
        fi_best = max((k for k in rows if "fi" in k.split("-")), key=lambda k: rows[k]["auc"])
        comps, fi_comps = {}, {}
        for other in ("saliency", "random"):
            if other != best:
                d = maps.mean_interval(aucs[best] - aucs[other])
                comps[other] = {"diff": d.mean, "lo": d.lo, "hi": d.hi}
            d = maps.mean_interval(aucs[fi_best] - aucs[other])
            fi_comps[other] = {"diff": d.mean, "lo": d.lo, "hi": d.hi}
        res["replacements"][how] = {"maps": rows, "best": best, "best_vs": comps,
                                    "best_fi": fi_best, "best_fi_vs": fi_comps,
                                    "seconds": round(time.perf_counter() - t0, 1)}
        print(f"{dataset} {how}: best {best} " + ", ".join(f"{k} {v['auc']:.3f}" for k, v in rows.items()),
              flush=True)
    return res


def markdown(results: list[dict], missing: list[str]) -> str:
    lines = ["## Pixel maps: deletion test",
             "",
             "Which map points at the pixels that matter? For each map, the k top-scoring pixel "
             "locations (all channels) of an image are perturbed, k = 1 … "
             f"{results[0]['k_max'] if results else 50}, and the drop of the class probability "
             "p_c(x) − p_c(x_k) is recorded (c = the true class; only correctly classified test images, "
             "the first N of the test split). **box**: each channel goes to the opposite corner of [0, 1] "
             "(1 where x < 0.5, else 0: the largest change the box allows); **blur**: to a Gaussian-blurred "
             "copy (σ = 2 px). **AUC** = mean drop over k = 1 … k_max (higher = the map found more harmful "
             "pixels), with a normal 95 % interval over images. *changed @k_max* = images whose prediction "
             "changed once k_max pixels are perturbed (any misclassification; Wilson 95 % interval). "
             "*log-odds AUC*: the same area for the drop of log(p_c/(1 − p_c)) = −log(image FI), which "
             "does not saturate on confident images (nats). The "
             "random map is the control. Maps: exact element FI (summed over channels), exact pixel FI "
             "(all channels of a location), exact window FI 3/5/7 (all channels of the w×w block centred "
             "there), the authors' ε-FI (ε = 1e-3 in [0, 1] units, per entry, summed over channels), "
             "saliency max_ch |∂ log p_c/∂x|, gradient × input |Σ_ch x ∂ log p_c/∂x|. On one-channel "
             "images element and pixel FI coincide.",
             "",
             ""]
    for r in results:
        wt = "" if r.get("weights", "shipped") == "shipped" else f", weights {r['weights']}"
        lines.append(f"### {r['dataset']} ({r['model']}{wt}), {r['images']} images "
                     f"(first correct ones among {r['scanned']} test images), maps in {r['seconds_maps']} s")
        lines.append("")
        lines.append(f"Command: `{r.get('command', 'python bench/maps.py')}`  ")
        lines.append(f"Machine: {r.get('machine', 'not recorded')}")
        lines.append("")
        table = []
        for name in maps.MAPS:
            cells = [name]
            for how in maps.REPLACEMENTS:
                m = r["replacements"][how]["maps"][name]
                lo, hi = m["changed_kmax_ci"]
                star = " **(best)**" if r["replacements"][how]["best"] == name else ""
                cells += [f"{m['auc']:.3f} [{m['auc_lo']:.3f}, {m['auc_hi']:.3f}]{star}",
                          f"{m['logodds_auc']:.2f} [{m['logodds_lo']:.2f}, {m['logodds_hi']:.2f}]",
                          f"{m['changed_kmax']}/{r['images']} [{lo:.2f}, {hi:.2f}]"]
            table.append(cells)
        lines.append(md_table(["map", "box AUC [95 % CI]", "box log-odds AUC", f"box changed @{r['k_max']}",
                               "blur AUC [95 % CI]", "blur log-odds AUC", f"blur changed @{r['k_max']}"],
                              table))
        lines.append("")
        for how in maps.REPLACEMENTS:
            rr = r["replacements"][how]
            comps = "; ".join(f"minus {k}: {v['diff']:+.3f} [{v['lo']:+.3f}, {v['hi']:+.3f}]"
                              for k, v in rr["best_vs"].items())
            best_fi = rr.get("best_fi") or max((k for k in rr["maps"] if "fi" in k.split("-")),
                                               key=lambda k: rr["maps"][k]["auc"])
            fi_comps = "; ".join(f"minus {k}: {v['diff']:+.3f} [{v['lo']:+.3f}, {v['hi']:+.3f}]"
                                 for k, v in rr.get("best_fi_vs", {}).items())
            lines.append(f"- {how}: best map **{rr['best']}**" + (f"; paired AUC difference {comps}" if comps else "")
                         + f". Best FI map: {best_fi}" + (f", paired difference {fi_comps}." if fi_comps else "."))
        lines.append("")
    if missing:
        lines.append("Not run: " + "; ".join(missing) + ".")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["mnist", "fashion-mnist", "cifar10"],
                    choices=list(MODELS))
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--k-max", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "BENCHMARKS.md"))
    ap.add_argument("--json", default=None, help="also write the full results (curves included) here")
    ap.add_argument("--weights", nargs="*", default=[], metavar="DATASET=FILE",
                    help="weights for a dataset's model instead of the shipped ones, e.g. cifar10=runs/c/model.safetensors")
    ap.add_argument("--render-only", action="store_true",
                    help="only rewrite the Markdown section from the --merge JSON (no computation)")
    ap.add_argument("--merge", default=None,
                    help="earlier --json output whose datasets are kept unless rerun (e.g. add cifar10 later)")
    args = ap.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    torch.manual_seed(args.seed)
    results, missing = [], []
    if args.merge and Path(args.merge).is_file():
        results = [r for r in json.loads(Path(args.merge).read_text())["results"]
                   if args.render_only or r["dataset"] not in args.datasets]
    if args.render_only:
        args.datasets = []
    weights = dict(w.split("=", 1) for w in args.weights)
    for ds in args.datasets:
        if ds not in weights and not zoo.weights_path(MODELS[ds]).is_file():
            missing.append(f"{ds} ({MODELS[ds]} weights not shipped yet; rerun with --datasets {ds})")
            print(f"skip {ds}: no shipped {MODELS[ds]} weights", flush=True)
            continue
        results.append(run_dataset(ds, args.images, args.k_max, args.seed, argv, weights.get(ds)))
    order = list(MODELS)
    results.sort(key=lambda r: order.index(r["dataset"]))
    missing = [m for m in missing if not any(r["dataset"] == m.split()[0] for r in results)]
    done = {r["dataset"] for r in results}
    missing += [f"{ds} (rerun with --datasets {ds} --merge bench/maps_results.json)" for ds in MODELS
                if ds not in done and not any(m.startswith(ds + " ") for m in missing)]
    md = markdown(results, missing)
    replace_section(args.out, SECTION, md)
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results}, indent=1))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
