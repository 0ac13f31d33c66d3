"""Deletion benchmark of pixel attribution maps: which map finds the pixels that matter?

For each dataset (model): the first N test images the model classifies correctly; for each map
of :data:`infoswarm.maps.MAPS` (exact element / pixel / window-3/5/7 FI, the authors' ε-FI,
saliency, gradient × input, random) perturb the k top-scoring locations (all channels), k = 1 …
K_MAX, to (a) the opposite corner of [0, 1] per channel ("box") and (b) a Gaussian-blurred value
(σ = 2, "blur"), and record the drop p_c(x) − p_c(x_k) of the true (= predicted) class. The AUC is
the mean drop over k = 1 … K_MAX; its 95 % interval is normal over images, and the best map is
compared with saliency and random by the paired per-image difference (normal 95 % interval).
Also reported: the share of images whose prediction changed by k = K_MAX (Wilson 95 % interval).

The insertion test runs the other way: from the replaced image (box corner or blurred copy) the
k top-scoring locations are restored to their clean values, and the rise of p_c is recorded
(AUC = mean rise over k = 1 … K_MAX, same intervals and paired comparisons; share of images
classified as c again at K_MAX). ``--curves`` picks the tests; with ``--merge`` a test not rerun
keeps its stored results (same images and K_MAX required).

The results replace this script's section of ``--out`` (between its markers) and go to
``--json``.

    OMP_NUM_THREADS=1 python bench/maps.py --datasets mnist fashion-mnist --images 200
    INFOSWARM_DATA=/work/shared/data python bench/maps.py --datasets cifar10   # needs cifar10-cnn weights
    python bench/maps.py --curves insertion --merge tests/fixtures/maps_results.json --json tests/fixtures/maps_results.json

The stored results live in ``tests/fixtures/maps_results.json`` (the test of the default map
reads them; until issue 22 they were ``bench/maps_results.json``, the path in the recorded
commands).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from infoswarm import data, maps, zoo  # noqa: E402

from common import command_line, machine_line, md_table, replace_section  # noqa: E402

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


def _compare(aucs: dict[str, torch.Tensor], rows: dict[str, dict]) -> dict:
    """Best map, best FI map and their paired AUC differences against saliency and random
    (mean over images of the per-image difference, normal 95 % interval)."""
    best = max(rows, key=lambda k: rows[k]["auc"])
    fi_best = max((k for k in rows if "fi" in k.split("-")), key=lambda k: rows[k]["auc"])
    comps, fi_comps = {}, {}
    for other in ("saliency", "random"):
        if other != best:
            d = maps.mean_interval(aucs[best] - aucs[other])
            comps[other] = {"diff": d.mean, "lo": d.lo, "hi": d.hi}
        d = maps.mean_interval(aucs[fi_best] - aucs[other])
        fi_comps[other] = {"diff": d.mean, "lo": d.lo, "hi": d.hi}
    return {"best": best, "best_vs": comps, "best_fi": fi_best, "best_fi_vs": fi_comps}


def run_curves(model, x, c, all_maps, kind: str, how: str, k_max: int) -> dict:
    """One test ("deletion" or "insertion") with one replacement for every map: AUC with its
    interval, log-odds AUC, the curves, the prediction share at k_max and the comparisons."""
    t0 = time.perf_counter()
    aucs: dict[str, torch.Tensor] = {}
    rows = {}
    n = len(x)
    for name in maps.MAPS:
        if kind == "deletion":
            curve, locurve, pred = maps.deletion_curves(model, x, c, all_maps[name], how, k_max)
            extra = {}
            hits = int((pred[:, -1] != c).sum())                     # prediction changed
        else:
            curve, locurve, pred, p0 = maps.insertion_curves(model, x, c, all_maps[name], how, k_max)
            extra = {"p_baseline": float(p0.mean()), "baseline_correct": int((pred[:, 0] == c).sum())}
            hits = int((pred[:, -1] == c).sum())                     # class c predicted again
        auc = maps.deletion_auc(curve)
        lo_auc = maps.mean_interval(maps.deletion_auc(locurve))
        aucs[name] = auc
        sm = maps.mean_interval(auc)
        key = "changed_kmax" if kind == "deletion" else "recovered_kmax"
        word = "drop" if kind == "deletion" else "rise"
        rows[name] = {"auc": sm.mean, "auc_lo": sm.lo, "auc_hi": sm.hi,
                      f"{word}_k10": float(curve[:, min(10, k_max)].mean()), f"{word}_kmax": float(curve[:, -1].mean()),
                      key: hits, f"{key}_ci": maps.wilson(hits, n),
                      "auc_per_image": auc.tolist(), "logodds_auc": lo_auc.mean, "logodds_lo": lo_auc.lo,
                      "logodds_hi": lo_auc.hi, "curve": curve.mean(0).tolist(),
                      "logodds_curve": locurve.mean(0).tolist(), **extra}
    out = {"maps": rows, **_compare(aucs, rows), "seconds": round(time.perf_counter() - t0, 1)}
    print(f"{kind} {how}: best {out['best']} " + ", ".join(f"{k} {v['auc']:.3f}" for k, v in rows.items()),
          flush=True)
    return out


def run_dataset(dataset: str, n: int, k_max: int, seed: int, argv: list[str], weights: str | None = None,
                curves: tuple[str, ...] = ("deletion", "insertion"), old: dict | None = None) -> dict:
    """Maps and the requested tests on one dataset; ``old`` (an earlier result of the same
    dataset, images and k_max) keeps the tests not rerun."""
    model = zoo.load(MODELS[dataset], weights)
    x, y, scanned = correct_images(model, dataset, n)
    t0 = time.perf_counter()
    all_maps, c = maps.attribution_maps(model, x, maps.MAPS, y, seed=seed, batch_size=25)
    t_maps = time.perf_counter() - t0
    assert torch.equal(c, y)
    about = {"images": len(x), "scanned": scanned, "weights": weights or "shipped", "machine": machine_line(),
             "command": command_line("bench/maps.py", argv), "k_max": k_max, "seconds_maps": round(t_maps, 1)}
    res: dict = dict(old) if old else {"dataset": dataset, "model": MODELS[dataset]}
    if old and (old["k_max"], old.get("weights", "shipped")) != (k_max, about["weights"]):
        raise SystemExit(f"{dataset}: the merged results used k_max {old['k_max']}, weights "
                         f"{old.get('weights', 'shipped')}; rerun both tests (--curves deletion insertion)")
    # a test rerun on fewer images uses the first of the same images (the first correct ones)
    for kind in curves:
        key = "replacements" if kind == "deletion" else "insertion"   # "replacements": the deletion test
        res[key] = {how: run_curves(model, x, c, all_maps, kind, how, k_max) for how in maps.REPLACEMENTS}
        res[f"{kind}_run"] = about
    if "deletion" in curves or not old:
        res.update(about)
    return res


TESTS = {"deletion": "replacements", "insertion": "insertion"}   # test -> key of its results


def _ci(v: dict, digits: int = 3) -> str:
    return f"{v['diff']:+.{digits}f} [{v['lo']:+.{digits}f}, {v['hi']:+.{digits}f}]"


def _ties(rr: dict) -> list[str]:
    """Maps whose paired AUC difference to the best map has a 95 % interval containing 0
    (["n/a"] for results stored without per-image AUCs)."""
    if "auc_per_image" not in rr["maps"][rr["best"]]:
        return ["n/a"]
    best = torch.tensor(rr["maps"][rr["best"]]["auc_per_image"], dtype=torch.float64)
    out = []
    for name, m in rr["maps"].items():
        if name == rr["best"]:
            continue
        d = maps.mean_interval(best - torch.tensor(m["auc_per_image"], dtype=torch.float64))
        if d.lo <= 0:
            out.append(name)
    return out


def failed(kind: str, rr: dict) -> bool:
    """An insertion setting where every map's AUC is negative (the random map's included): its
    baseline still holds the class evidence, so the test ranks nothing (see the section's note)."""
    return kind == "insertion" and all(m["auc"] < 0 for m in rr["maps"].values())


def tally(results: list[dict]) -> dict[str, dict[str, int]]:
    """{test: {map: settings where the map is best or tied with the best, "settings": count}}
    over datasets × replacements, failed tests left out: the evidence for the default map."""
    out = {kind: {**{m: 0 for m in maps.MAPS}, "settings": 0} for kind in TESTS}
    for r in results:
        for kind, key in TESTS.items():
            for how in maps.REPLACEMENTS:
                rr = r.get(key, {}).get(how)
                if rr is None or failed(kind, rr):
                    continue
                out[kind]["settings"] += 1
                for m in {rr["best"], *_ties(rr)} - {"n/a"}:
                    out[kind][m] += 1
    return out


def _winners(results: list[dict]) -> list[str]:
    """The summary table (best map per dataset × test × replacement) and counts over settings."""
    rows = []
    top = {kind: {"saliency": 0, "grad-input": 0, "an FI map": 0, "random": 0, "settings": 0} for kind in TESTS}
    for r in results:
        for kind, key in TESTS.items():
            if key not in r:
                continue
            for how in maps.REPLACEMENTS:
                rr = r[key][how]
                b = rr["maps"][rr["best"]]
                ties = _ties(rr)
                vs = {k: _ci(v) for k, v in rr["best_vs"].items()}
                fi_sal = rr["best_fi_vs"].get("saliency")
                n_img = r.get(f"{kind}_run", r)["images"]
                rows.append([f"{r['dataset']} ({n_img} images)", kind, how,
                             f"**{rr['best']}** {b['auc']:.3f} [{b['auc_lo']:.3f}, {b['auc_hi']:.3f}]",
                             vs.get("saliency", "(is saliency)"), vs.get("random", "(is random)"),
                             ", ".join(ties) or "none",
                             f"{rr['best_fi']}: {_ci(fi_sal)}" if fi_sal else "–"])
                if failed(kind, rr):
                    rows[-1][3] += " (failed test, see below)"
                    continue                                  # not counted: see the note below the table
                winners = {rr["best"], *ties}
                t = top[kind]
                t["settings"] += 1
                t["saliency"] += "saliency" in winners
                t["grad-input"] += "grad-input" in winners
                t["random"] += "random" in winners
                t["an FI map"] += any("fi" in w.split("-") for w in winners)
    if not rows:
        return []
    degenerate = []
    for r in results:
        for how in maps.REPLACEMENTS:
            rr = r.get("insertion", {}).get(how)
            if rr and failed("insertion", rr):
                b = rr["maps"]["random"]
                n = r.get("insertion_run", r)["images"]
                degenerate.append(f"{r['dataset']} {how} (baseline p_c {b['p_baseline']:.3f}, class c still predicted "
                                  f"on {b['baseline_correct']}/{n})")
    note = ([f"Insertion settings where every map's AUC is negative, the random map's included: "
             f"{'; '.join(degenerate)}. There the baseline is no evidence-free start (the model still gives c "
             "much of its probability) and restoring a few clean pixels makes a mixed image it likes less, so "
             "those rows rank maps by how little they hurt, not by how much evidence they restore; read them "
             "as a failed test, not as a win.", ""] if degenerate else [])
    lines = ["### Which map wins", "",
             "Best map by AUC in each setting; *best − saliency* / *best − random*: paired per-image "
             "AUC difference (mean, normal 95 % interval over images); *tied with the best*: maps whose paired "
             "difference to the best map has an interval containing 0; last column: the best of the FI maps "
             "(exact element / pixel / window FI, ε-FI) minus saliency.", "",
             md_table(["dataset", "test", "replacement", "best map, AUC [95 % CI]", "best − saliency",
                       "best − random", "tied with the best", "best FI map − saliency"], rows), "",
             "Best or tied with the best (failed tests not counted) — " + "; ".join(
                 f"{kind} ({t['settings']} settings): " + ", ".join(f"{k} {v}" for k, v in t.items() if k != "settings")
                 for kind, t in top.items() if t["settings"]) + ".", "", *note]
    return lines


def _dataset_block(r: dict, kind: str) -> list[str]:
    key = TESTS[kind]
    run = r.get(f"{kind}_run") or r
    wt = "" if r.get("weights", "shipped") == "shipped" else f", weights {r['weights']}"
    n = run.get("images", r["images"])
    lines = [f"### {kind}: {r['dataset']} ({r['model']}{wt}), {n} images "
             f"(first correct ones among {run.get('scanned', r['scanned'])} test images), maps in {run['seconds_maps']} s", "",
             f"Command: `{run.get('command', 'python bench/maps.py')}`  ",
             f"Machine: {run.get('machine', 'not recorded')}", ""]
    if kind == "insertion":
        base = "; ".join(f"{how}: mean p_c {r[key][how]['maps']['random']['p_baseline']:.3f}, "
                         f"class c predicted on {r[key][how]['maps']['random']['baseline_correct']}/{n}"
                         for how in maps.REPLACEMENTS)
        lines += [f"Baselines (k = 0) — {base}.", ""]
    hit, word = ("changed_kmax", "changed") if kind == "deletion" else ("recovered_kmax", "c predicted")
    table = []
    for name in maps.MAPS:
        cells = [name]
        for how in maps.REPLACEMENTS:
            m = r[key][how]["maps"][name]
            lo, hi = m[f"{hit}_ci"]
            star = " **(best)**" if r[key][how]["best"] == name else ""
            cells += [f"{m['auc']:.3f} [{m['auc_lo']:.3f}, {m['auc_hi']:.3f}]{star}",
                      f"{m['logodds_auc']:.2f} [{m['logodds_lo']:.2f}, {m['logodds_hi']:.2f}]",
                      f"{m[hit]}/{n} [{lo:.2f}, {hi:.2f}]"]
        table.append(cells)
    k = r["k_max"]
    lines.append(md_table(["map", "box AUC [95 % CI]", "box log-odds AUC", f"box {word} @{k}",
                           "blur AUC [95 % CI]", "blur log-odds AUC", f"blur {word} @{k}"], table))
    lines.append("")
    for how in maps.REPLACEMENTS:
        rr = r[key][how]
        comps = "; ".join(f"minus {k}: {_ci(v)}" for k, v in rr["best_vs"].items())
        fi_comps = "; ".join(f"minus {k}: {_ci(v)}" for k, v in rr.get("best_fi_vs", {}).items())
        lines.append(f"- {how}: best map **{rr['best']}**" + (f"; paired AUC difference {comps}" if comps else "")
                     + f". Best FI map: {rr['best_fi']}" + (f", paired difference {fi_comps}." if fi_comps else "."))
    lines.append("")
    return lines


def markdown(results: list[dict], missing: list[str]) -> str:
    k_max = results[0]["k_max"] if results else 50
    lines = ["## Pixel maps: deletion test",
             "",
             "Which map points at the pixels that matter? For each map, the k top-scoring pixel "
             f"locations (all channels) of an image are perturbed, k = 1 … {k_max}, and the drop of the "
             "class probability p_c(x) − p_c(x_k) is recorded (c = the true class; only correctly classified "
             "test images, the first N of the test split). **box**: each channel goes to the opposite corner "
             "of [0, 1] (1 where x < 0.5, else 0: the largest change the box allows); **blur**: to a "
             "Gaussian-blurred copy (σ = 2 px). **AUC** = mean drop over k = 1 … k_max (higher = the map found "
             "more harmful pixels), with a normal 95 % interval over images. *changed @k_max* = images whose "
             "prediction changed once k_max pixels are perturbed (any misclassification; Wilson 95 % "
             "interval). *log-odds AUC*: the same area for the drop of log(p_c/(1 − p_c)) = −log(image FI), "
             "which does not saturate on confident images (nats). The random map is the control. Maps: exact "
             "element FI (summed over channels), exact pixel FI (all channels of a location), exact window FI "
             "3/5/7 (all channels of the w×w block centred there), the authors' ε-FI (ε = 1e-3 in [0, 1] "
             "units, per entry, summed over channels), saliency max_ch |∂ log p_c/∂x|, gradient × input "
             "|Σ_ch x ∂ log p_c/∂x|. On one-channel images element and pixel FI coincide.",
             "",
             "**Insertion test** (the mirror image, below): start from the replaced image (box: every entry "
             "at the opposite corner; blur: the blurred copy) and restore the k top-scoring locations of the "
             "same maps (computed on the clean image) to their clean values; the **AUC** is the mean rise "
             "p_c(x_k) − p_c(baseline) over k = 1 … k_max (higher = the map's top pixels carry more of the "
             "evidence for c); *c predicted @k_max*: images classified as c again after k_max restored "
             "locations (Wilson 95 % interval). The same images and maps as the deletion test.",
             "",
             "Reproduce: `OMP_NUM_THREADS=1 INFOSWARM_DATA=/work/shared/data python bench/maps.py --images "
             "200 --json tests/fixtures/maps_results.json` (both tests, all three datasets; `--curves "
             "insertion --merge tests/fixtures/maps_results.json` adds one test to stored results; "
             "`--render-only --merge tests/fixtures/maps_results.json` rewrites this section from the JSON). "
             "The commands recorded under each table are the runs that produced it (the file was "
             "bench/maps_results.json then).",
             ""]
    lines += _winners(results)
    for r in results:
        if "replacements" in r:
            lines += _dataset_block(r, "deletion")
    if any("insertion" in r for r in results):
        lines += ["## Pixel maps: insertion test", ""]
        for r in results:
            if "insertion" in r:
                lines += _dataset_block(r, "insertion")
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
    ap.add_argument("--curves", nargs="+", default=["deletion", "insertion"], choices=list(TESTS),
                    help="tests to run (default both); a test not run keeps its --merge results")
    args = ap.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    torch.manual_seed(args.seed)
    results, missing = [], []
    merged: dict[str, dict] = {}
    if args.merge and Path(args.merge).is_file():
        merged = {r["dataset"]: r for r in json.loads(Path(args.merge).read_text())["results"]}
        results = [r for r in merged.values() if args.render_only or r["dataset"] not in args.datasets]
    curves = tuple(dict.fromkeys(args.curves))
    partial = set(curves) != set(TESTS)
    if args.render_only:
        args.datasets = []
    weights = dict(w.split("=", 1) for w in args.weights)
    for ds in args.datasets:
        if ds not in weights and not zoo.weights_path(MODELS[ds]).is_file():
            missing.append(f"{ds} ({MODELS[ds]} weights not shipped yet; rerun with --datasets {ds})")
            print(f"skip {ds}: no shipped {MODELS[ds]} weights", flush=True)
            continue
        old = merged.get(ds) if partial else None
        if partial and old is None:
            raise SystemExit(f"--curves {' '.join(curves)} for {ds} needs its other test in --merge; run both tests")
        results.append(run_dataset(ds, args.images, args.k_max, args.seed, argv, weights.get(ds), curves, old))
        if args.json:  # after each dataset, so a stopped run keeps what it finished
            Path(args.json).write_text(json.dumps({"results": results}, indent=1))
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
