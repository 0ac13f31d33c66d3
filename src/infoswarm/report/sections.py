"""The report's sections: :data:`SECTIONS`, in page order, each a :class:`Section` whose
``build(runs, shared)`` turns the runs (:class:`~infoswarm.report.load.Run`, read through the
artifacts records) into the data its template block draws; ``None`` or empty leaves the
section out. See :mod:`infoswarm.report.html` for how to add one."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..artifacts import ATTACK_GALLERY, FIGURES, HEATMAPS, INFLUENCE_DELETION, ROBUSTNESS_CURVE
from .format import data_uri, eps_of, fmt, get, headline, k_of, num, pct, png_file, rate
from .load import Run

MAX_HEATMAPS = 24  # per influence run
MAX_GALLERY = 8  # per attack run


def _card_figures(run: Run) -> list[dict[str, str]]:
    """Figures of the analysis commands (outliers, sensitivity) shown in the run's card."""
    out = []
    for name, caption in FIGURES.get(run.kind, ()):
        uri = png_file(run.path / name)
        if uri:
            out.append({"uri": uri, "caption": caption})
    return out


def _insertion(dele: dict[str, Any]) -> dict[str, Any] | None:
    """The insertion test stored beside an influence run's deletion test (curves drawn here, from
    the summary), or None for runs without one."""
    ins = dele.get("insertion")
    if not isinstance(ins, dict) or not isinstance(ins.get("auc"), dict) or not isinstance(ins.get("curves"), dict):
        return None
    from .analysis_figures import insertion_png

    try:
        curves = {str(k): [float(v) for v in c] for k, c in ins["curves"].items()}
        base = str(ins.get("replacement", "")).split(" (")[0]
        uri = data_uri(insertion_png(curves, f"insertion test on the {ins.get('images')} heatmap images "
                                              f"(baseline: {base})")) if curves else None
    except (TypeError, ValueError):
        uri = None
    return {"uri": uri, "images": ins.get("images"), "k_max": ins.get("k_max"), "replacement": ins.get("replacement"),
            "auc": [(str(k), fmt(v)) for k, v in ins["auc"].items()]}


def _heatmaps(run: Run) -> dict[str, Any] | None:
    top = run.summary.get("top")
    items: list[dict[str, Any]] = []
    if isinstance(top, list) and top:
        for t in top[:MAX_HEATMAPS]:
            if not isinstance(t, dict) or not isinstance(t.get("heatmap"), str):
                continue
            if t.get("label") is not None and t.get("label") != t.get("pred"):
                continue  # "vulnerable" means correctly classified: older runs also mapped misclassified images
            f = (run.path / t["heatmap"]).resolve()
            if run.path.resolve() not in f.parents:
                continue  # never read outside the run folder
            uri = png_file(f)
            if uri:
                items.append({"uri": uri, "rank": t.get("rank"), "index": t.get("index"),
                              "label": t.get("label"), "pred": t.get("pred"),
                              "p_pred": fmt(t.get("p_pred")), "fi": fmt(t.get("image_fi_pred"))})
    else:
        for f in sorted((run.path / HEATMAPS).glob("*.png"))[:MAX_HEATMAPS]:
            uri = png_file(f)
            if uri:
                items.append({"uri": uri, "rank": None, "index": None, "label": None, "pred": None,
                              "p_pred": "–", "fi": "–", "file": f.name})
    if not items:
        return None
    m = run.summary.get("map")
    dele = run.summary.get("deletion")
    deletion = None
    if isinstance(dele, dict) and isinstance(dele.get("auc"), dict):
        deletion = {"uri": png_file(run.path / INFLUENCE_DELETION), "images": dele.get("images"),
                    "k_max": dele.get("k_max"), "replacement": dele.get("replacement"),
                    "auc": [(str(k), fmt(v)) for k, v in dele["auc"].items()], "insertion": _insertion(dele)}
    return {"run": run.name, "items": items,
            "map": fmt(m.get("name")) if isinstance(m, dict) and "name" in m else fmt(m),
            "why": m.get("why") if isinstance(m, dict) else None, "deletion": deletion,
            "vulnerable": run.summary.get("vulnerable_correct"), "tau": fmt(run.summary.get("tau"))}


def _gallery(run: Run, rows: list[dict[str, str]] | None) -> dict[str, Any] | None:
    from .figures import triptych_png

    z = run.attack_arrays()
    if z is None:
        uri = png_file(run.path / ATTACK_GALLERY)
        return {"run": run.name, "items": [], "fallback": uri} if uri else None
    import torch

    n = len(z["x"])
    if n == 0:
        return None
    # results.csv rows: matched by dataset index when the npz has one, else by position
    by_row: list[dict[str, str] | None] = [None] * n
    if rows and "dataset_index" in z and "index" in rows[0]:
        lookup = {r["index"]: r for r in rows}
        by_row = [lookup.get(str(int(i))) for i in z["dataset_index"]]
    elif rows is not None and len(rows) == n:
        by_row = list(rows)
    success = [bool(s) for s in z["success"]]
    order = sorted(range(n), key=lambda j: (not success[j], j))[:MAX_GALLERY]
    items = []
    for j in order:
        r = by_row[j] or {}
        index = int(z["dataset_index"][j]) if "dataset_index" in z else r.get("index", "–")
        png = triptych_png(torch.from_numpy(z["x"][j]).float(), torch.from_numpy(z["x_adv"][j]).float())
        items.append({
            "uri": data_uri(png), "success": success[j], "index": index,
            "label": int(z["y"][j]),
            "target": ("untargeted" if int(z["target"][j]) < 0 else fmt(int(z["target"][j]))) if "target" in z
            else r.get("target", "–"),
            "pred_adv": r.get("pred_adv", "–"),
            "p_true_before": fmt(num(r.get("p_true_before"))),
            "p_true_after": fmt(num(r.get("p_true_after"))),
            "target_prob": fmt(num(r.get("target_prob"))),
            "linf": fmt(num(r.get("linf"))), "pixel_l0": r.get("pixel_l0", "–"),
        })
    return {"run": run.name, "items": items, "fallback": None, "shown": len(items), "total": n}


def _histogram(run: Run, rows: list[dict[str, str]]) -> dict[str, Any] | None:
    from .figures import perturbation_histograms_png

    if not rows or "linf" not in rows[0] or "pixel_l0" not in rows[0]:
        return None
    linf = [num(r.get("linf")) for r in rows]
    l0 = [num(r.get("pixel_l0")) for r in rows]
    ok = [num(r.get("success")) == 1 for r in rows]
    png = perturbation_histograms_png(linf, l0, ok)
    return {"run": run.name, "uri": data_uri(png), "images": len(rows)}


def _comparison_row(run: Run, rows: list[dict[str, str]] | None) -> dict[str, Any]:
    s = run.summary
    med: Any = s.get("queries_median_success")
    if rows and "queries" in rows[0]:
        q = [num(r.get("queries")) for r in rows if num(r.get("success")) == 1]
        q = [v for v in q if not math.isnan(v)]
        med = statistics.median(q) if q else None
    k = k_of(run)
    return {"run": run.name, "attack": s.get("attack", "–"),
            "k": k if k is not None else ("FI ≥ " + fmt(get(s, "settings", "fi_threshold"))
                                          if get(s, "settings", "fi_threshold") is not None else "–"),
            "eps": fmt(eps_of(run)), "images": fmt(s.get("selected", s.get("images"))),
            "success": rate(s, "successes", "success_rate", "success_ci95"),
            "misclassified": rate(s, "misclassified_count", "misclassified", "misclassified_ci95"),
            "queries": fmt(med),
            "linf": fmt(get(s, "linf_success", "mean")), "seconds": fmt(s.get("seconds"))}


def _success_vs_k(attacks: Sequence[Run]) -> dict[str, Any] | None:
    from .figures import success_vs_k_png

    pts: list[tuple[Run, int, float]] = []
    for r in attacks:
        k, s = k_of(r), num(r.summary.get("success_rate"))
        if k is not None and not math.isnan(s):
            pts.append((r, k, s))
    if len({k for _, k, _ in pts}) < 2:
        return None
    eps_by_attack: dict[str, set[float | None]] = {}
    for r, _, _ in pts:
        eps_by_attack.setdefault(str(r.summary.get("attack", "?")), set()).add(eps_of(r))
    series: dict[str, list[tuple[float, float]]] = {}
    for r, k, s in pts:
        name = str(r.summary.get("attack", "?"))
        if len(eps_by_attack[name]) > 1:
            name += f" (eps {fmt(eps_of(r))})"
        series.setdefault(name, []).append((float(k), s))
    table = [{"series": name, "k": int(k), "success": pct(s)} for name, p in sorted(series.items())
             for k, s in sorted(p)]
    return {"uri": data_uri(success_vs_k_png(series)), "table": table}


def _training(run: Run) -> dict[str, Any] | None:
    from .figures import training_curves_png

    src = run.curves()
    if src is None:
        return None
    name, rows = src
    if not rows:
        return None
    if "epoch" in rows[0]:
        epochs = [num(r.get("epoch")) for r in rows]
    else:
        epochs = [float(i + 1) for i in range(len(rows))]
    columns: dict[str, list[float]] = {}
    for c in rows[0]:
        if c == "epoch" or c is None:
            continue
        vals = [num(r.get(c)) for r in rows]
        if any(not math.isnan(v) for v in vals):
            columns[c] = vals
    if not columns:
        return None
    png = training_curves_png(epochs, columns)
    last = {c: fmt(v[-1]) for c, v in columns.items()}
    return {"run": run.name, "source": name, "uri": data_uri(png), "epochs": len(rows), "last": last}


def _robustness(run: Run) -> dict[str, Any] | None:
    before, after = run.summary.get("before"), run.summary.get("after")
    if not isinstance(before, dict) or not isinstance(after, dict):
        return None
    rows = []
    for key in list(before) + [k for k in after if k not in before]:
        b, a = before.get(key), after.get(key)
        nb, na = num(b), num(a)
        change = "–" if math.isnan(nb) or math.isnan(na) else f"{na - nb:+.4g}"
        rows.append({"metric": key, "before": fmt(b), "after": fmt(a), "change": change})
    if not rows:
        return None
    return {"run": run.name, "method": fmt(run.summary.get("method", run.kind)), "rows": rows}


def _robust_accuracy(run: Run) -> dict[str, Any] | None:
    """A robustness run's curve (curve.png), per-k rows and warnings, or None."""
    s = run.summary
    ks, per_k = s.get("ks"), s.get("per_k")
    if run.kind != "robustness" or not isinstance(ks, list) or not isinstance(per_k, dict):
        return None
    rows = []
    for k in ks:
        e = per_k.get(str(k))
        if not isinstance(e, dict):
            continue
        attacks: list[Any] = e["attacks"] if isinstance(e.get("attacks"), list) else []
        rows.append({"k": k, "robust": fmt(e.get("text", e.get("robust"))), "raw": fmt(e.get("robust_raw")),
                     "carried": fmt(e.get("carried")), "seconds": fmt(e.get("seconds")),
                     "attacks": [{"name": fmt(a.get("name")), "added": fmt(a.get("added")),
                                  "attacked": fmt(a.get("attacked")), "queries": fmt(a.get("queries_mean")),
                                  "seconds": fmt(a.get("seconds"))} for a in attacks if isinstance(a, dict)]})
    warns = [{"check": fmt(w.get("check")), "message": fmt(w.get("message")), "fix": fmt(w.get("fix"))}
             for w in (s.get("warnings") or []) if isinstance(w, dict)]
    clean = s.get("clean_correct"), s.get("images")
    return {"run": run.name, "uri": png_file(run.path / ROBUSTNESS_CURVE), "rows": rows, "warnings": warns,
            "version": fmt(s.get("version")), "targeted": bool(s.get("targeted")),
            "clean": f"{fmt(clean[0])}/{fmt(clean[1])}", "members": ", ".join(map(str, s.get("members") or []))}


class Shared:
    """What several sections' builders read, computed once per page."""

    def __init__(self, runs: list[Run]) -> None:
        self.runs = runs
        self.attacks = [r for r in runs if r.kind == "attack"]
        self._results: dict[int, list[dict[str, str]] | None] = {}

    def results(self, run: Run) -> list[dict[str, str]] | None:
        """The rows of an attack run's ``results.csv`` (``None`` without one), read once."""
        if id(run) not in self._results:
            self._results[id(run)] = run.results()
        return self._results[id(run)]


_RESERVED = frozenset({"title", "version", "sections", "self", "loop", "super"})


@dataclass(frozen=True)
class Section:
    """One section of the page: its HTML ``id``, its nav ``title``, the ``build`` that returns its
    data from the runs (``None`` or empty: the section is left out) and the template ``block``
    that draws it (default: ``id`` with ``-`` made ``_``; the data is passed under that name)."""

    id: str
    title: str
    build: Callable[[list[Run], Shared], Any]
    block: str = ""

    def __post_init__(self) -> None:
        if not self.block:
            object.__setattr__(self, "block", self.id.replace("-", "_"))
        if not self.block.isidentifier() or self.block in _RESERVED:
            raise ValueError(f"section {self.id!r}: block {self.block!r} is not a Python identifier "
                             f"or is one of the page's own names {sorted(_RESERVED)}")


def build_summary(runs: list[Run], shared: Shared) -> list[dict[str, Any]]:
    return [{"name": r.name + (" (DAMAGED)" if r.damaged else ""),
             "kind": r.kind + (", damaged: only its summary is shown" if r.damaged else ""), "path": str(r.path),
             "headline": ([("DAMAGED", r.damaged)] if r.damaged else []) + headline(r),
             "figures": _card_figures(r),
             "settings": [(k, fmt(v)) for k, v in sorted(r.settings.items()) if k not in ("func", "command")]}
            for r in runs]


def _build_heatmaps(runs: list[Run], shared: Shared) -> list[dict[str, Any]]:
    return [h for h in (_heatmaps(r) for r in runs if r.kind == "influence") if h]


def _build_gallery(runs: list[Run], shared: Shared) -> list[dict[str, Any]]:
    return [g for g in (_gallery(r, shared.results(r)) for r in shared.attacks) if g]


def _build_success_vs_k(runs: list[Run], shared: Shared) -> dict[str, Any] | None:
    return _success_vs_k(shared.attacks)


def _build_histograms(runs: list[Run], shared: Shared) -> list[dict[str, Any]]:
    return [h for h in (_histogram(r, shared.results(r) or []) for r in shared.attacks) if h]


def _build_comparison(runs: list[Run], shared: Shared) -> list[dict[str, Any]]:
    return [_comparison_row(r, shared.results(r)) for r in shared.attacks]


def _build_training(runs: list[Run], shared: Shared) -> list[dict[str, Any]]:
    return [t for t in (_training(r) for r in runs) if t]


def _build_robustness(runs: list[Run], shared: Shared) -> list[dict[str, Any]]:
    return [t for t in (_robustness(r) for r in runs) if t]


def _build_robust_accuracy(runs: list[Run], shared: Shared) -> list[dict[str, Any]]:
    """One item per robustness run; with two or more, a first item draws all their curves on one
    axis (a model before and after hardening, or several defences)."""
    items = [t for t in (_robust_accuracy(r) for r in runs) if t]
    if len(items) >= 2:
        from .robustness_figure import robustness_curves_png

        curves = [(r.name, r.summary) for r in runs if _robust_accuracy(r)]
        try:
            uri: str | None = data_uri(robustness_curves_png(curves))
        except (KeyError, TypeError, ValueError):        # a damaged summary: its own item says what it has
            uri = None
        if uri:
            items.insert(0, {"run": "all robustness runs", "uri": uri, "rows": [], "warnings": [],
                             "version": "–", "targeted": False, "clean": "–", "members": "–", "overlay": True})
    return items


#: The page's sections, in page order: one entry here and one template block make a section.
SECTIONS: list[Section] = [
    Section("summary", "Runs", build_summary, block="cards"),
    Section("heatmaps", "Vulnerable images", _build_heatmaps),
    Section("gallery", "Adversarial gallery", _build_gallery),
    Section("success-vs-k", "Success vs k", _build_success_vs_k),
    Section("histograms", "Perturbations", _build_histograms),
    Section("comparison", "Comparison", _build_comparison),
    Section("training", "Training", _build_training),
    Section("robustness", "Robustness", _build_robustness),
    Section("robust-accuracy", "Robust accuracy", _build_robust_accuracy),
]
