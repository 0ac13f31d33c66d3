"""RESULTS.md section of an ``infoswarm sensitivity`` run: image-FI percentiles on the train and
test splits with distribution-free 95 % intervals, the train-versus-test comparison, and the
per-layer parameter FI summary.

The percentiles' intervals and the comparison need every image's FI, which the run keeps only
as percentiles: the script recomputes image FI (1 − p_y)/p_y of the same images (the first
``images`` of each split, as the command took them; one forward pass each) and first checks that
its percentiles equal the run's ``summary.json``. Layer FI is read from the run's ``layer_fi.csv``.

    python bench/sensitivity_results.py runs/sens-full [--out RESULTS.md]

* percentile interval: order statistics v_(l) … v_(u) with l, u = n·q ∓ 1.96·√(n·q·(1 − q))
  (normal approximation to the binomial count below the quantile; none for the maximum);
* P(FI_test > FI_train): the Mann–Whitney probability that a test image has larger FI than a
  training image (ties count ½), Hanley–McNeil 95 % interval.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from infoswarm import data, influence, outliers, sensitivity, zoo  # noqa: E402
from infoswarm.stats import wilson  # noqa: E402

from common import md_table, replace_section  # noqa: E402

SECTION = "sensitivity"
Z = 1.959964


def quantile_interval(v: torch.Tensor, q: float) -> tuple[float, float] | None:
    """Distribution-free 95 % interval of the q-quantile (0 < q < 1) of the values v [n]."""
    n = v.numel()
    if not 0 < q < 1:
        return None
    s = v.double().sort().values
    half = Z * math.sqrt(n * q * (1 - q))
    lo, hi = max(0, math.floor(n * q - half) - 1), min(n - 1, math.ceil(n * q + half))
    return float(s[lo]), float(s[hi])


def image_fi(model: torch.nn.Module, dataset: str, split: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """FI of the true label (float64 [n]) and correctness (bool [n]) of the first n images."""
    x8, y = data.load(dataset, split)
    x8, y = x8[:n], y[:n]
    rank = influence.rank_images(model, x8, "pred", batch_size=500)
    return influence.image_fi_from_logits(rank.logits, y), rank.c == y


def fmt(v: float) -> str:
    return f"{v:.2g}" if abs(v) < 0.01 or abs(v) >= 100 else f"{v:.3g}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="folder written by infoswarm sensitivity (zoo model, built-in dataset)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "RESULTS.md"))
    ap.add_argument("--where", default="", help="how the run was made, for the text (e.g. '2 shared CPU cores, nice 5')")
    args = ap.parse_args(argv)
    run = Path(args.run)
    s = json.loads((run / "summary.json").read_text())
    model = zoo.load(s["model"])
    fi, ok = {}, {}
    for split in ("train", "test"):
        fi[split], ok[split] = image_fi(model, s["dataset"], split, s["percentiles"][split]["images"])
        mine = sensitivity.fi_percentiles(fi[split])
        for q, v in s["percentiles"][split]["fi_true"].items():
            if not math.isclose(mine[q], v, rel_tol=1e-6, abs_tol=1e-12):
                raise SystemExit(f"{split} {q}th percentile {mine[q]} differs from the run's {v}: not the same images/model")
    n_tr, n_te = fi["train"].numel(), fi["test"].numel()
    limit = n_tr if n_tr == n_te else None
    lf = s["layer_fi"]
    fi_eps = lf.get("fi_eps", lf.get("eps"))  # runs before the rename stored it as "eps" only
    cmd = (f"infoswarm sensitivity --dataset {s['dataset']} --model {s['model']}"
           + (f" --limit {limit}" if limit else "") + f" --param-images {lf['images']}"
           + (" --exact" if lf["exact"] else f" --fi-eps {fi_eps:g}") + f" --out {run}")
    qs = sorted(s["percentiles"]["train"]["fi_true"], key=float)
    rows = []
    for split in ("train", "test"):
        a = int(ok[split].sum())
        lo, hi = wilson(a, len(ok[split]))
        cells = [f"{split} ({len(ok[split]):,} images; accuracy {a / len(ok[split]):.2%} [{lo:.2%}, {hi:.2%}])"]
        for q in qs:
            v = s["percentiles"][split]["fi_true"][q]
            ci = quantile_interval(fi[split], float(q) / 100)
            cells.append(fmt(v) + (f" [{fmt(ci[0])}, {fmt(ci[1])}]" if ci else ""))
        rows.append(cells)
    ratio = ["test / train"] + [f"{s['percentiles']['test']['fi_true'][q] / s['percentiles']['train']['fi_true'][q]:.2f}"
                                if s["percentiles"]["train"]["fi_true"][q] > 0 else "–" for q in qs]
    rows.append(ratio)
    auc = outliers.roc_auc(torch.cat([fi["test"], fi["train"]]),
                           torch.cat([torch.ones(n_te, dtype=torch.bool), torch.zeros(n_tr, dtype=torch.bool)]))
    a_lo, a_hi = outliers.roc_auc_interval(auc, n_te, n_tr)
    higher = [q for q in qs if s["percentiles"]["test"]["fi_true"][q] > s["percentiles"]["train"]["fi_true"][q]]
    cis = {sp: {q: quantile_interval(fi[sp], float(q) / 100) for q in qs if float(q) < 100} for sp in fi}
    above = [q for q in cis["test"] if cis["test"][q][0] > cis["train"][q][1]]
    below = [q for q in cis["test"] if cis["test"][q][1] < cis["train"][q][0]]

    with open(run / "layer_fi.csv") as f:
        lrows = list(csv.DictReader(f))
    layers = [k.split(":", 1)[1] for k in lrows[0] if k.startswith("layer:")]
    img = torch.tensor([float(r["image_fi"]) for r in lrows], dtype=torch.float64)
    ltab, med_cis, rhos = [], {}, {}
    for name in ["image", *layers]:
        v = img if name == "image" else torch.tensor([float(r[f"layer:{name}"]) for r in lrows], dtype=torch.float64)
        med_ci = quantile_interval(v, 0.5)
        rho = "–" if name == "image" else f"{float(torch.corrcoef(torch.stack([v.argsort().argsort().double(), img.argsort().argsort().double()]))[0, 1]):.3f}"
        ratio_med = "–" if name == "image" else fmt(float((v / img).median()))
        if name != "image":
            med_cis[name], rhos[name] = med_ci, float(rho)
        ltab.append([name if name != "image" else "image FI (1 − p_y)/p_y", f"{fmt(float(v.median()))} [{fmt(med_ci[0])}, {fmt(med_ci[1])}]",
                     fmt(float(v.mean())), fmt(float(v.max())), f"{int((v == 0).sum())}/{v.numel()}", ratio_med, rho])
    per_class = s["layer_fi"]["layers"][layers[0]]["per_class_median"]
    overlap = max(c[0] for c in med_cis.values()) <= min(c[1] for c in med_cis.values())
    layer_reading = (f"The layers' medians {'share a common point of their 95 % intervals' if overlap else 'do not all overlap'}"
                     f" (range {fmt(min(float(torch.tensor([float(r[f'layer:{n}']) for r in lrows]).median()) for n in layers))}"
                     f" – {fmt(max(float(torch.tensor([float(r[f'layer:{n}']) for r in lrows]).median()) for n in layers))}),"
                     f" and every layer ranks the images almost as image FI does (Spearman ρ ≥ {min(rhos.values()):.3f}).")
    eps_txt = "exact" if lf["exact"] else f"the authors' ε = {fi_eps:g}"
    secs = s["seconds"]

    lines = [
        f"## Sensitivity: image-FI percentiles, train vs test, and per-layer FI ({s['dataset']}, {s['model']})",
        "",
        f"`{cmd}` ({secs['percentiles']} s for the percentiles, {secs['layer_fi']} s for layer FI"
        + (f"; {args.where}" if args.where else "") + "), then `python bench/sensitivity_results.py "
        f"{run}` for the intervals and this section. Percentiles: the first {n_tr:,} training and the first "
        f"{n_te:,} test images; layer FI: the first {lf['images']} test images.",
        "",
        "Image FI of the true label (1 − p_y)/p_y, percentiles with distribution-free 95 % intervals (order "
        "statistics; accuracy with its Wilson interval):",
        "",
        md_table(["split", *[f"{q} %" for q in qs]], rows),
        "",
        f"The test split is higher at {len(higher)} of the {len(qs)} percentiles "
        f"({', '.join(higher) or 'none'}). Below the maximum, the intervals are disjoint with test above "
        f"train at {len(above)} of {len(cis['test'])} ({', '.join(above) or 'none'}) and with test below train at "
        f"{len(below)} ({', '.join(below) or 'none'}). "
        f"P(a test image has larger FI than a training image) = {auc:.4f} [{a_lo:.4f}, {a_hi:.4f}] "
        "(Mann–Whitney, Hanley–McNeil 95 %; 0.5 = same distribution).",
        "",
        f"Per-layer parameter FI ({eps_txt}; all of a layer's weights perturbed together; f = log p_y) on "
        f"{lf['images']} test images, against the image's own FI: median with its 95 % interval, mean, max, "
        "images whose value is exactly 0 (ε-FI drops directions with singular value ≤ ε, all of them on very "
        "confident images), "
        "median of the per-image ratio layer FI / image FI, and Spearman's rank correlation with image FI "
        "over the images:",
        "",
        md_table(["layer", "median [95 % CI]", "mean", "max", "zeros", "median ratio to image FI", "Spearman ρ with image FI"],
                 ltab),
        "",
        layer_reading + " Exact layer FI would equal the image value (1 − p_y)/p_y for every layer whose "
        "logit Jacobian has rank K (the metric's range then holds the whole gradient), so only the ε-variant "
        "can tell layers apart" + (" — and on this network it does not." if overlap else "."),
        "",
        f"Per-class medians of the first layer ({layers[0]}): "
        + ", ".join(f"{c} {fmt(v)}" for c, v in per_class.items()) + ". `layer_fi.png` in the run plots every "
        "image's value by layer and class (Manhattan style).",
    ]
    replace_section(args.out, SECTION, "\n".join(lines), kind="results")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
