"""A self-contained HTML report over one or more run folders.

:func:`write_report` reads the folders written by ``infoswarm influence``, ``attack``,
``universality``, ``train`` and ``harden`` and writes one HTML page: every figure is embedded as a
``data:image/png;base64`` URI, the CSS is inline and there is no script and no URL to fetch, so
the page opens the same offline, from a mail attachment or from an archive.

The kind of a run is its ``summary.json`` key ``"command"`` (a folder holding only ``card.json``,
as ``infoswarm train`` writes, is read as a train run). The page's sections are the list
:data:`SECTIONS`, in page order, each with a stable ``id``:

==================  =========================================================================
``summary``         one card per run: key numbers and its settings (always present)
``heatmaps``        influence runs: most vulnerable images and their pixel-FI maps
``gallery``         attack runs: original | adversarial | difference, probabilities before/after
``success-vs-k``    attack runs with at least two different k (pixels): success rate against k
``histograms``      attack runs with ``results.csv``: L∞ and pixel-L0 per image
``comparison``      attack runs: attack, k, eps, success rate, median queries, mean L∞, seconds
``training``        runs with ``metrics.csv``, ``history.csv`` or a ``history`` list: curves
``robustness``      runs whose summary has ``before`` / ``after`` metrics: a before/after table
``robust-accuracy`` ``infoswarm robustness`` runs: the curve, the per-k table (what each attack
                    added) and the masking warnings
==================  =========================================================================

Sections that none of the runs can fill are left out.

How to add a section (two edits, nothing else):

1. In this file, write a builder ``def _build_mine(runs: list[Run], shared: Shared) -> Any``
   that returns the section's data, or ``None`` (or anything empty) when no run can fill it,
   and append ``Section(id="mine", title="Mine", build=_build_mine, block="mine")`` to
   :data:`SECTIONS` at the place the section should appear on the page. ``id`` is the HTML
   ``id`` (the nav links to ``#mine``; keep it stable), ``title`` is the nav label, ``block``
   names the template block (a Python identifier; it defaults to ``id`` with ``-`` made ``_``).
   ``shared`` holds what several sections read, e.g. ``shared.attacks`` and
   ``shared.results(run)`` (an attack run's ``results.csv``, read once).
2. In ``templates/report.html.j2``, add ``{% block mine %} … {% endblock %}`` next to the
   other section blocks (inside the ``{% if false %}`` that keeps them from rendering in
   place). The renderer wraps it in ``<section id="mine">`` and adds the nav link; inside the
   block the section's data is the variable named like the block (``mine``), and ``version``
   and ``cards`` are there too. Write the section's ``<h2>`` in the block.

The nav, the ``<section>`` wrappers, :attr:`Report.sections` and the CLI's summary all follow
:data:`SECTIONS`; :func:`render_report` raises at once if a section's block is missing from the
template. ``tests/test_report.py::test_a_section_added_to_the_list_shows_in_page_and_nav`` is a
worked example (it appends a section and supplies its block from a template that extends the page).
"""

from __future__ import annotations

import base64
import csv
import json
import math
import os
import statistics
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..checks import printable
from ..errors import InputError
from ..stats import percent, rate_text

__all__ = ["Run", "Report", "Section", "Shared", "SECTIONS", "load_run", "render_report", "write_report"]

TEMPLATE = "report.html.j2"

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_HEATMAPS = 24  # per influence run
MAX_GALLERY = 8  # per attack run
_FIX_RUN = "pass a folder written by an infoswarm command (influence, attack, universality, train, harden)"


@dataclass
class Run:
    """One run folder: its path, display name, kind (``summary["command"]``) and summary."""

    path: Path
    kind: str
    summary: dict[str, Any]
    name: str = ""
    damaged: str | None = None
    """Why the folder cannot be drawn whole (see :func:`damage_of`), or None."""

    @property
    def settings(self) -> dict[str, Any]:
        """The run's settings (its ``settings`` dict, or the scalar descriptive keys)."""
        s = self.summary.get("settings")
        if isinstance(s, dict):
            return dict(s)
        keys = ("dataset", "split", "model", "mode", "method", "tau", "pixels", "eps", "name",
                "architecture", "seed", "train_images")
        out = {k: self.summary[k] for k in keys if k in self.summary}
        for k in ("map", "recipe"):
            if isinstance(self.summary.get(k), dict):
                sub = self.summary[k]  # influence runs since fi_eps repeat it as eps (eps_scale): show it once
                out.update({f"{k}.{kk}": v for kk, v in sub.items() if not (kk in ("eps", "eps_scale") and
                                                                            f"fi_{kk}" in sub)})
        return out


@dataclass
class Report:
    """What :func:`write_report` produced: the page's path, its section ids, and the runs."""

    path: Path
    sections: list[str]
    runs: list[Run] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(folder, why) of the run folders that could not be read and were left out."""


# --------------------------------------------------------------------------------------------
# reading run folders


def load_run(path: str | os.PathLike[str]) -> Run:
    """Read a run folder's ``summary.json`` (or ``card.json``); raises :class:`InputError` when
    the folder is missing or its summary is absent or unreadable."""
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"run folder {p} does not exist", _FIX_RUN)
    if not p.is_dir():
        raise InputError(f"run folder {p} is a file, not a folder", _FIX_RUN)
    for fname in ("summary.json", "card.json"):
        f = p / fname
        if f.is_file():
            break
    else:
        raise InputError(f"{p} has no summary.json", _FIX_RUN)
    try:
        summary = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise InputError(f"cannot read {f} ({type(e).__name__}: {str(e)[:80]})",
                         "re-run the command that wrote it") from None
    if not isinstance(summary, dict):
        raise InputError(f"{f} does not hold a JSON object", "re-run the command that wrote it")
    command = summary.get("command")
    if fname == "card.json":
        kind = "train"
    elif isinstance(command, str) and command:
        kind = command
    else:
        kind = ("attack" if (p / "results.csv").is_file() else
                "influence" if (p / "images.csv").is_file() else "other")
    return Run(path=p, kind=kind, summary=summary, name=p.resolve().name or str(p))


def _read_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV file with a header; :class:`InputError` when it cannot be read."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"cannot read {path} ({type(e).__name__})", "re-run the command that wrote it") from None


def _num(value: Any) -> float:
    """A float, or NaN for anything that is not a number."""
    if isinstance(value, bool):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _read_npz(path: Path) -> dict[str, Any]:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # OSError, ValueError, zipfile.BadZipFile, EOFError ...
        raise InputError(f"cannot read {path} ({type(e).__name__})",
                         "re-run infoswarm attack to write it again") from None
    missing = {"x", "x_adv", "y", "success"} - set(arrays)
    if missing:
        raise InputError(f"{path} lacks {', '.join(sorted(missing))}", "pass a folder written by infoswarm attack")
    n = len(arrays["x"])
    if arrays["x"].shape != arrays["x_adv"].shape or arrays["x"].ndim != 4 or len(arrays["y"]) != n \
            or len(arrays["success"]) != n:
        raise InputError(f"{path} holds arrays of inconsistent shapes", "re-run infoswarm attack to write it again")
    return arrays


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _png_file(path: Path) -> str | None:
    """The data URI of a PNG file, or None when it is missing or not a PNG."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    return _data_uri(raw) if raw.startswith(_PNG_MAGIC) else None


# --------------------------------------------------------------------------------------------
# formatting


def _fmt(v: Any) -> str:
    """Short display form of a setting or metric."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        text = ", ".join(_fmt(x) for x in v[:8])
        return text + (", …" if len(v) > 8 else "")
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_fmt(x)}" for k, x in list(v.items())[:8])
    return str(v)


def _pct(v: Any) -> str:
    return percent(_num(v))


def _rate(s: Mapping[str, Any], count: str, rate: str, ci: str) -> str:
    """"n/N = r % [lo, hi]" from an attack summary (the count and interval when recorded)."""
    n, c, r, iv = s.get("images"), s.get(count), s.get(rate), s.get(ci)
    if isinstance(c, int) and isinstance(n, int) and isinstance(iv, list) and len(iv) == 2:
        return rate_text(c, n, _num(r), (_num(iv[0]), _num(iv[1])))
    return _pct(r)


def _get(d: Mapping[str, Any], *keys: str) -> Any:
    """d[k1][k2]..., or None when any level is missing."""
    cur: Any = d
    for k in keys:
        if not isinstance(cur, Mapping) or k not in cur:
            return None
        cur = cur[k]
    return cur


def _k_of(run: Run) -> int | None:
    k = _get(run.summary, "settings", "pixels")
    if k is None:
        k = run.summary.get("pixels")
    return int(k) if isinstance(k, (int, float)) and not isinstance(k, bool) else None


def _eps_of(run: Run) -> float | None:
    e = _get(run.summary, "settings", "eps")
    if e is None:
        e = run.summary.get("eps")
    return float(e) if isinstance(e, (int, float)) and not isinstance(e, bool) else None


def _headline(run: Run) -> list[tuple[str, str]]:
    """The key numbers of a run's summary card."""
    s = run.summary
    out: list[tuple[str, str]] = []

    def add(label: str, value: Any, pct: bool = False) -> None:
        if value is not None:
            out.append((label, _pct(value) if pct else _fmt(value)))

    if run.kind == "influence":
        add("images", s.get("images"))
        add("accuracy", s.get("accuracy"), pct=True)
        add(f"vulnerable (FI ≥ {_fmt(s.get('tau'))})", s.get("vulnerable_correct"))
        add("median image FI", _get(s, "image_fi_pred_quantiles", "0.5"))
        add("99 % quantile FI", _get(s, "image_fi_pred_quantiles", "0.99"))
    elif run.kind == "attack":
        add("attack", s.get("attack"))
        add("images attacked", s.get("selected", s.get("images")))
        add("success rate", s.get("success_rate"), pct=True)
        add("mean L∞ (successes)", _get(s, "linf_success", "mean"))
        add("pixels per image", s.get("pixel_l0_mean"))
        add("queries per image", s.get("queries_mean"))
        add("seconds", s.get("seconds"))
    elif run.kind == "universality":
        add("mode", s.get("mode"))
        add("fit fooling rate", _get(s, "fit", "fooling_rate"), pct=True)
        add("held-out fooling rate", _get(s, "holdout", "fooling_rate"), pct=True)
        add("random control", _get(s, "random_control", "fooling_rate"), pct=True)
        add("mean fooling rate", s.get("mean_fooling_rate"), pct=True)
        add("transfer rate", s.get("transfer_rate"), pct=True)
        add("clean accuracy", s.get("accuracy_clean"), pct=True)
        add("adversarial accuracy", s.get("accuracy_adversarial"), pct=True)
        add("seconds", s.get("seconds"))
    elif run.kind == "outliers":
        add("clean + outlier images", f"{s.get('clean_images')} + {s.get('outliers')}")
        add("ROC AUC, image FI", _get(s, "scores", "fi", "roc_auc"))
        add("ROC AUC, Jacobian norm", _get(s, "scores", "jacobian", "roc_auc"))
        add("avg precision, image FI", _get(s, "scores", "fi", "average_precision"))
        add("avg precision, Jacobian norm", _get(s, "scores", "jacobian", "average_precision"))
        add("random (outlier share)", s.get("outlier_share"))
    elif run.kind == "robustness":
        add("images", s.get("images"))
        add("clean accuracy", s.get("clean_accuracy"), pct=True)
        for k in s.get("ks") or []:
            add(f"robust accuracy, k = {k}", _get(s, "per_k", str(k), "robust_accuracy"), pct=True)
        add("warnings", len(s.get("warnings") or []))
        add("seconds", s.get("seconds"))
    elif run.kind == "sensitivity":
        for split in ("train", "test"):
            add(f"{split}: 99th pct image FI", _get(s, "percentiles", split, "fi_true", "99"))
            add(f"{split}: max image FI", _get(s, "percentiles", split, "fi_true", "100"))
        add("layer-FI images", _get(s, "layer_fi", "images"))
    if not out:  # train, harden and anything else: scalar numbers at the top level
        for k, v in s.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and len(out) < 8:
                add(k.replace("_", " "), v)
    return out


# --------------------------------------------------------------------------------------------
# sections


ANALYSIS_FIGURES = {"outliers": (("roc_pr.png", "ROC and precision-recall: image FI vs Jacobian norm"),
                                 ("top_fi.png", "top-ranked by image FI (red: synthetic outlier)"),
                                 ("top_jacobian.png", "top-ranked by Jacobian norm (red: synthetic outlier)")),
                    "sensitivity": (("layer_fi.png", "parameter FI per layer and class"),)}


def _card_figures(run: Run) -> list[dict[str, str]]:
    """Figures of the analysis commands (outliers, sensitivity) shown in the run's card."""
    out = []
    for name, caption in ANALYSIS_FIGURES.get(run.kind, ()):
        uri = _png_file(run.path / name)
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
        uri = _data_uri(insertion_png(curves, f"insertion test on the {ins.get('images')} heatmap images "
                                              f"(baseline: {base})")) if curves else None
    except (TypeError, ValueError):
        uri = None
    return {"uri": uri, "images": ins.get("images"), "k_max": ins.get("k_max"), "replacement": ins.get("replacement"),
            "auc": [(str(k), _fmt(v)) for k, v in ins["auc"].items()]}


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
            uri = _png_file(f)
            if uri:
                items.append({"uri": uri, "rank": t.get("rank"), "index": t.get("index"),
                              "label": t.get("label"), "pred": t.get("pred"),
                              "p_pred": _fmt(t.get("p_pred")), "fi": _fmt(t.get("image_fi_pred"))})
    else:
        for f in sorted((run.path / "heatmaps").glob("*.png"))[:MAX_HEATMAPS]:
            uri = _png_file(f)
            if uri:
                items.append({"uri": uri, "rank": None, "index": None, "label": None, "pred": None,
                              "p_pred": "–", "fi": "–", "file": f.name})
    if not items:
        return None
    m = run.summary.get("map")
    dele = run.summary.get("deletion")
    deletion = None
    if isinstance(dele, dict) and isinstance(dele.get("auc"), dict):
        deletion = {"uri": _png_file(run.path / "deletion.png"), "images": dele.get("images"),
                    "k_max": dele.get("k_max"), "replacement": dele.get("replacement"),
                    "auc": [(str(k), _fmt(v)) for k, v in dele["auc"].items()], "insertion": _insertion(dele)}
    return {"run": run.name, "items": items,
            "map": _fmt(m.get("name")) if isinstance(m, dict) and "name" in m else _fmt(m),
            "why": m.get("why") if isinstance(m, dict) else None, "deletion": deletion,
            "vulnerable": run.summary.get("vulnerable_correct"), "tau": _fmt(run.summary.get("tau"))}


def _results(run: Run) -> list[dict[str, str]] | None:
    f = run.path / "results.csv"
    return _read_csv(f) if f.is_file() else None


def _gallery(run: Run, rows: list[dict[str, str]] | None) -> dict[str, Any] | None:
    from .figures import triptych_png

    f = run.path / "adversarial.npz"
    if not f.is_file():
        uri = _png_file(run.path / "gallery.png")
        return {"run": run.name, "items": [], "fallback": uri} if uri else None
    import torch

    z = _read_npz(f)
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
            "uri": _data_uri(png), "success": success[j], "index": index,
            "label": int(z["y"][j]),
            "target": ("untargeted" if int(z["target"][j]) < 0 else _fmt(int(z["target"][j]))) if "target" in z
            else r.get("target", "–"),
            "pred_adv": r.get("pred_adv", "–"),
            "p_true_before": _fmt(_num(r.get("p_true_before"))),
            "p_true_after": _fmt(_num(r.get("p_true_after"))),
            "target_prob": _fmt(_num(r.get("target_prob"))),
            "linf": _fmt(_num(r.get("linf"))), "pixel_l0": r.get("pixel_l0", "–"),
        })
    return {"run": run.name, "items": items, "fallback": None, "shown": len(items), "total": n}


def _histogram(run: Run, rows: list[dict[str, str]]) -> dict[str, Any] | None:
    from .figures import perturbation_histograms_png

    if not rows or "linf" not in rows[0] or "pixel_l0" not in rows[0]:
        return None
    linf = [_num(r.get("linf")) for r in rows]
    l0 = [_num(r.get("pixel_l0")) for r in rows]
    ok = [_num(r.get("success")) == 1 for r in rows]
    png = perturbation_histograms_png(linf, l0, ok)
    return {"run": run.name, "uri": _data_uri(png), "images": len(rows)}


def _comparison_row(run: Run, rows: list[dict[str, str]] | None) -> dict[str, Any]:
    s = run.summary
    med: Any = s.get("queries_median_success")
    if rows and "queries" in rows[0]:
        q = [_num(r.get("queries")) for r in rows if _num(r.get("success")) == 1]
        q = [v for v in q if not math.isnan(v)]
        med = statistics.median(q) if q else None
    k = _k_of(run)
    return {"run": run.name, "attack": s.get("attack", "–"),
            "k": k if k is not None else ("FI ≥ " + _fmt(_get(s, "settings", "fi_threshold"))
                                          if _get(s, "settings", "fi_threshold") is not None else "–"),
            "eps": _fmt(_eps_of(run)), "images": _fmt(s.get("selected", s.get("images"))),
            "success": _rate(s, "successes", "success_rate", "success_ci95"),
            "misclassified": _rate(s, "misclassified_count", "misclassified", "misclassified_ci95"),
            "queries": _fmt(med),
            "linf": _fmt(_get(s, "linf_success", "mean")), "seconds": _fmt(s.get("seconds"))}


def _success_vs_k(attacks: Sequence[Run]) -> dict[str, Any] | None:
    from .figures import success_vs_k_png

    pts: list[tuple[Run, int, float]] = []
    for r in attacks:
        k, s = _k_of(r), _num(r.summary.get("success_rate"))
        if k is not None and not math.isnan(s):
            pts.append((r, k, s))
    if len({k for _, k, _ in pts}) < 2:
        return None
    eps_by_attack: dict[str, set[float | None]] = {}
    for r, _, _ in pts:
        eps_by_attack.setdefault(str(r.summary.get("attack", "?")), set()).add(_eps_of(r))
    series: dict[str, list[tuple[float, float]]] = {}
    for r, k, s in pts:
        name = str(r.summary.get("attack", "?"))
        if len(eps_by_attack[name]) > 1:
            name += f" (eps {_fmt(_eps_of(r))})"
        series.setdefault(name, []).append((float(k), s))
    table = [{"series": name, "k": int(k), "success": _pct(s)} for name, p in sorted(series.items())
             for k, s in sorted(p)]
    return {"uri": _data_uri(success_vs_k_png(series)), "table": table}


def _curves_source(run: Run) -> tuple[str, list[dict[str, Any]]] | None:
    for fname in ("metrics.csv", "history.csv"):
        f = run.path / fname
        if f.is_file():
            return fname, list(_read_csv(f))
    h = run.summary.get("history")
    if isinstance(h, list) and h and all(isinstance(r, dict) for r in h):
        return "summary.json history", h
    return None


def _training(run: Run) -> dict[str, Any] | None:
    from .figures import training_curves_png

    src = _curves_source(run)
    if src is None:
        return None
    name, rows = src
    if not rows:
        return None
    if "epoch" in rows[0]:
        epochs = [_num(r.get("epoch")) for r in rows]
    else:
        epochs = [float(i + 1) for i in range(len(rows))]
    columns: dict[str, list[float]] = {}
    for c in rows[0]:
        if c == "epoch" or c is None:
            continue
        vals = [_num(r.get(c)) for r in rows]
        if any(not math.isnan(v) for v in vals):
            columns[c] = vals
    if not columns:
        return None
    png = training_curves_png(epochs, columns)
    last = {c: _fmt(v[-1]) for c, v in columns.items()}
    return {"run": run.name, "source": name, "uri": _data_uri(png), "epochs": len(rows), "last": last}


def _robustness(run: Run) -> dict[str, Any] | None:
    before, after = run.summary.get("before"), run.summary.get("after")
    if not isinstance(before, dict) or not isinstance(after, dict):
        return None
    rows = []
    for key in list(before) + [k for k in after if k not in before]:
        b, a = before.get(key), after.get(key)
        nb, na = _num(b), _num(a)
        change = "–" if math.isnan(nb) or math.isnan(na) else f"{na - nb:+.4g}"
        rows.append({"metric": key, "before": _fmt(b), "after": _fmt(a), "change": change})
    if not rows:
        return None
    return {"run": run.name, "method": _fmt(run.summary.get("method", run.kind)), "rows": rows}


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
        rows.append({"k": k, "robust": _fmt(e.get("text", e.get("robust"))), "raw": _fmt(e.get("robust_raw")),
                     "carried": _fmt(e.get("carried")), "seconds": _fmt(e.get("seconds")),
                     "attacks": [{"name": _fmt(a.get("name")), "added": _fmt(a.get("added")),
                                  "attacked": _fmt(a.get("attacked")), "queries": _fmt(a.get("queries_mean")),
                                  "seconds": _fmt(a.get("seconds"))} for a in attacks if isinstance(a, dict)]})
    warns = [{"check": _fmt(w.get("check")), "message": _fmt(w.get("message")), "fix": _fmt(w.get("fix"))}
             for w in (s.get("warnings") or []) if isinstance(w, dict)]
    clean = s.get("clean_correct"), s.get("images")
    return {"run": run.name, "uri": _png_file(run.path / "curve.png"), "rows": rows, "warnings": warns,
            "version": _fmt(s.get("version")), "targeted": bool(s.get("targeted")),
            "clean": f"{_fmt(clean[0])}/{_fmt(clean[1])}", "members": ", ".join(map(str, s.get("members") or []))}


# --------------------------------------------------------------------------------------------
# the page


def _unique_names(runs: list[Run]) -> None:
    """Give runs distinct display names (parent/name where two folders share a name)."""
    seen: dict[str, int] = {}
    for r in runs:
        seen[r.name] = seen.get(r.name, 0) + 1
    for r in runs:
        if seen[r.name] > 1:
            rp = r.path.resolve()
            r.name = f"{rp.parent.name}/{rp.name}"
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.name] = counts.get(r.name, 0) + 1
        if counts[r.name] > 1:
            r.name = f"{r.name} ({counts[r.name]})"


def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("infoswarm.report", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = _fmt
    return env


# --------------------------------------------------------------------------------------------
# the list of sections


class Shared:
    """What several sections' builders read, computed once per page."""

    def __init__(self, runs: list[Run]) -> None:
        self.runs = runs
        self.attacks = [r for r in runs if r.kind == "attack"]
        self._results: dict[int, list[dict[str, str]] | None] = {}

    def results(self, run: Run) -> list[dict[str, str]] | None:
        """The rows of an attack run's ``results.csv`` (``None`` without one), read once."""
        if id(run) not in self._results:
            self._results[id(run)] = _results(run)
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


def _build_summary(runs: list[Run], shared: Shared) -> list[dict[str, Any]]:
    return [{"name": r.name + (" (DAMAGED)" if r.damaged else ""),
             "kind": r.kind + (", damaged: only its summary is shown" if r.damaged else ""), "path": str(r.path),
             "headline": ([("DAMAGED", r.damaged)] if r.damaged else []) + _headline(r),
             "figures": _card_figures(r),
             "settings": [(k, _fmt(v)) for k, v in sorted(r.settings.items()) if k not in ("func", "command")]}
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
            uri: str | None = _data_uri(robustness_curves_png(curves))
        except (KeyError, TypeError, ValueError):        # a damaged summary: its own item says what it has
            uri = None
        if uri:
            items.insert(0, {"run": "all robustness runs", "uri": uri, "rows": [], "warnings": [],
                             "version": "–", "targeted": False, "clean": "–", "members": "–", "overlay": True})
    return items


#: The page's sections, in page order: one entry here and one template block make a section.
SECTIONS: list[Section] = [
    Section("summary", "Runs", _build_summary, block="cards"),
    Section("heatmaps", "Vulnerable images", _build_heatmaps),
    Section("gallery", "Adversarial gallery", _build_gallery),
    Section("success-vs-k", "Success vs k", _build_success_vs_k),
    Section("histograms", "Perturbations", _build_histograms),
    Section("comparison", "Comparison", _build_comparison),
    Section("training", "Training", _build_training),
    Section("robustness", "Robustness", _build_robustness),
    Section("robust-accuracy", "Robust accuracy", _build_robust_accuracy),
]


def _blocks(env: Any, name: str) -> set[str]:
    """The block names of template ``name`` and of the templates it extends."""
    from jinja2 import nodes

    found: set[str] = set()
    todo, seen = [name], set()
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        found |= set(env.get_template(n).blocks)
        ast = env.parse(env.loader.get_source(env, n)[0])
        todo += [e.template.value for e in ast.find_all(nodes.Extends) if isinstance(e.template, nodes.Const)]
    return found


def render_report(run_dirs: Iterable[str | os.PathLike[str]]) -> tuple[str, list[str], list[Run]]:
    """Read the runs and return the page's HTML, its section ids (in order) and the runs."""
    dirs = list(run_dirs)
    if not dirs:
        raise InputError("no run folder given", "pass one or more run folders")
    runs = [load_run(d) for d in dirs]
    _unique_names(runs)
    for r in runs:
        r.damaged = damage_of(r)
    whole = [r for r in runs if not r.damaged]   # a damaged run gets its card, marked, and nothing else

    template = _environment().get_template(TEMPLATE)
    ids = [s.id for s in SECTIONS]
    if len(set(ids)) != len(ids):
        raise ValueError(f"report sections with the same id: {ids}")
    missing = [s.block for s in SECTIONS if s.block not in _blocks(template.environment, TEMPLATE)]
    if missing:
        raise ValueError(f"report sections without a block in {TEMPLATE}: {missing}")
    shared = Shared(whole)
    ctx: dict[str, Any] = {
        "title": "infoswarm report: " + ", ".join(r.name for r in runs[:4]) + (" …" if len(runs) > 4 else ""),
        "version": __version__,
    }
    shown: list[dict[str, str]] = []
    for s in SECTIONS:
        data = s.build(runs if s.block == "cards" else whole, shared)
        ctx[s.block] = data
        if data is not None and (not isinstance(data, (list, tuple, dict, str)) or len(data) > 0):
            shown.append({"id": s.id, "title": s.title, "block": s.block})
    ctx.setdefault("cards", _build_summary(runs, shared))
    ctx["sections"] = shown
    html = template.render(**ctx)
    return html, [s["id"] for s in shown], runs


_EXPECTED: dict[str, tuple[str, ...]] = {"influence": ("images.csv",)}
"""Files a finished run of each kind always holds (summary.json is written last); an attack run
may lack adversarial.npz (older runs: its gallery.png is shown instead)."""


def damage_of(run: Run) -> str | None:
    """Why ``run`` cannot be drawn whole, in a few words, or None: a file its kind always writes is
    missing, a CSV or ``adversarial.npz`` cannot be read, a PNG is not a PNG, a heatmap its summary
    lists is gone, or results.csv disagrees with the summary's image count."""
    problems: list[str] = []
    for fname in _EXPECTED.get(run.kind, ()):
        if not (run.path / fname).is_file():
            problems.append(f"{fname} is missing")
    rows = None
    for fname in ("results.csv", "images.csv", "metrics.csv", "history.csv"):
        f = run.path / fname
        if f.is_file():
            try:
                got = _read_csv(f)
            except InputError:
                problems.append(f"{fname} cannot be read")
                continue
            if fname == "results.csv":
                rows = got
    f = run.path / "adversarial.npz"
    if f.is_file() and run.kind == "attack":             # the attack run's format (a robustness run's differs)
        try:
            z = _read_npz(f)
        except InputError as e:
            problems.append(f"adversarial.npz: {str(e).split(';')[0].replace(str(f), '').strip()}")
        else:
            if rows is not None and len(rows) != len(z["x"]):
                problems.append(f"results.csv has {len(rows)} rows, adversarial.npz {len(z['x'])} images")
    n = run.summary.get("images")
    if rows is not None and isinstance(n, int) and not isinstance(n, bool) and n != len(rows):
        problems.append(f"results.csv has {len(rows)} rows, the summary says {n} images")
    for png in sorted(run.path.glob("*.png")) + sorted((run.path / "heatmaps").glob("*.png")):
        if _png_file(png) is None:
            problems.append(f"{png.relative_to(run.path)} is not a PNG image")
    top = run.summary.get("top") if run.kind == "influence" else None
    if isinstance(top, list):
        gone = [t.get("heatmap") for t in top if isinstance(t, dict) and isinstance(t.get("heatmap"), str)
                and not (run.path / t["heatmap"]).is_file()]
        if gone:
            problems.append(f"{len(gone)} heatmap(s) listed in summary.json are missing")
    if not problems:
        return None
    return "; ".join(problems[:3]) + (f" (+{len(problems) - 3} more)" if len(problems) > 3 else "")


def _check_out(out: Path) -> Path:
    if out.is_dir():
        raise InputError(f"--out {out} is a folder", "pass a file path such as report.html")
    if out.is_symlink() and not out.exists():
        raise InputError(f"--out {out} is a symbolic link to a missing file", "remove the link or choose another --out")
    if out.exists() and not is_report(out):
        raise InputError(f"--out {out} exists and is not an infoswarm report (it would be replaced)",
                         "choose a new file name such as report.html")
    from ..runs import check_writable_parent

    check_writable_parent(out, "choose an --out path in a folder you can write to")
    return out


def is_report(path: Path) -> bool:
    """True when ``path`` is an HTML page written by :func:`write_report` (its generator tag)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return b'<meta name="generator" content="infoswarm' in head


def write_report(run_dirs: Iterable[str | os.PathLike[str]], out: str | os.PathLike[str]) -> Report:
    """Build the page (see :func:`render_report`) and write it atomically to ``out``: a temporary
    file in the same folder is renamed over ``out`` only when complete (an existing file is
    replaced). Returns the path, section ids and runs. Raises :class:`InputError` for a missing
    folder, a folder without ``summary.json``, an unreadable summary, CSV or ``adversarial.npz``,
    or an ``out`` that is a folder or cannot be written."""
    dirs = list(run_dirs)
    skipped: list[tuple[str, str]] = []
    readable = []
    for d in dirs:  # cheap checks of every input before any work
        try:
            load_run(d)
            readable.append(d)
        except InputError as e:
            skipped.append((str(d), str(e).split("; ")[0]))
    if not readable:  # nothing to draw: the first folder's problem is the error
        load_run(dirs[0]) if dirs else render_report(dirs)
    path = _check_out(Path(out).expanduser())
    html, sections, runs = render_report(readable)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
            f.write(printable(html))   # folder names that are not UTF-8: shown escaped
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return Report(path=path, sections=sections, runs=runs, skipped=skipped)

