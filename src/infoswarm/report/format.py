"""Display forms for the report page: a value's short text, rates with their intervals, a run's
key numbers (:func:`headline`) and PNG data URIs."""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..artifacts import RunFolder
from ..stats import percent, rate_text

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def num(value: Any) -> float:
    """A float, or NaN for anything that is not a number."""
    if isinstance(value, bool):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def png_file(path: Path) -> str | None:
    """The data URI of a PNG file, or None when it is missing or not a PNG."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    return data_uri(raw) if raw.startswith(_PNG_MAGIC) else None


def fmt(v: Any) -> str:
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
        text = ", ".join(fmt(x) for x in v[:8])
        return text + (", …" if len(v) > 8 else "")
    if isinstance(v, dict):
        return ", ".join(f"{k}: {fmt(x)}" for k, x in list(v.items())[:8])
    return str(v)


def pct(v: Any) -> str:
    return percent(num(v))


def rate(s: Mapping[str, Any], count: str, rate: str, ci: str) -> str:
    """"n/N = r % [lo, hi]" from an attack summary (the count and interval when recorded)."""
    n, c, r, iv = s.get("images"), s.get(count), s.get(rate), s.get(ci)
    if isinstance(c, int) and isinstance(n, int) and isinstance(iv, list) and len(iv) == 2:
        return rate_text(c, n, num(r), (num(iv[0]), num(iv[1])))
    return pct(r)


def get(d: Mapping[str, Any], *keys: str) -> Any:
    """d[k1][k2]..., or None when any level is missing."""
    cur: Any = d
    for k in keys:
        if not isinstance(cur, Mapping) or k not in cur:
            return None
        cur = cur[k]
    return cur


def k_of(run: RunFolder) -> int | None:
    k = get(run.summary, "settings", "pixels")
    if k is None:
        k = run.summary.get("pixels")
    return int(k) if isinstance(k, (int, float)) and not isinstance(k, bool) else None


def eps_of(run: RunFolder) -> float | None:
    e = get(run.summary, "settings", "eps")
    if e is None:
        e = run.summary.get("eps")
    return float(e) if isinstance(e, (int, float)) and not isinstance(e, bool) else None


def headline(run: RunFolder) -> list[tuple[str, str]]:
    """The key numbers of a run's summary card."""
    s = run.summary
    out: list[tuple[str, str]] = []

    def add(label: str, value: Any, percent: bool = False) -> None:
        if value is not None:
            out.append((label, pct(value) if percent else fmt(value)))

    if run.kind == "influence":
        add("images", s.get("images"))
        add("accuracy", s.get("accuracy"), percent=True)
        add(f"vulnerable (FI ≥ {fmt(s.get('tau'))})", s.get("vulnerable_correct"))
        add("median image FI", get(s, "image_fi_pred_quantiles", "0.5"))
        add("99 % quantile FI", get(s, "image_fi_pred_quantiles", "0.99"))
    elif run.kind == "attack":
        add("attack", s.get("attack"))
        add("images attacked", s.get("selected", s.get("images")))
        add("success rate", s.get("success_rate"), percent=True)
        add("mean L∞ (successes)", get(s, "linf_success", "mean"))
        add("pixels per image", s.get("pixel_l0_mean"))
        add("queries per image", s.get("queries_mean"))
        add("seconds", s.get("seconds"))
    elif run.kind == "universality":
        add("mode", s.get("mode"))
        add("fit fooling rate", get(s, "fit", "fooling_rate"), percent=True)
        add("held-out fooling rate", get(s, "holdout", "fooling_rate"), percent=True)
        add("random control", get(s, "random_control", "fooling_rate"), percent=True)
        add("mean fooling rate", s.get("mean_fooling_rate"), percent=True)
        add("transfer rate", s.get("transfer_rate"), percent=True)
        add("clean accuracy", s.get("accuracy_clean"), percent=True)
        add("adversarial accuracy", s.get("accuracy_adversarial"), percent=True)
        add("seconds", s.get("seconds"))
    elif run.kind == "outliers":
        add("clean + outlier images", f"{s.get('clean_images')} + {s.get('outliers')}")
        add("ROC AUC, image FI", get(s, "scores", "fi", "roc_auc"))
        add("ROC AUC, Jacobian norm", get(s, "scores", "jacobian", "roc_auc"))
        add("avg precision, image FI", get(s, "scores", "fi", "average_precision"))
        add("avg precision, Jacobian norm", get(s, "scores", "jacobian", "average_precision"))
        add("random (outlier share)", s.get("outlier_share"))
    elif run.kind == "robustness":
        add("images", s.get("images"))
        add("clean accuracy", s.get("clean_accuracy"), percent=True)
        for k in s.get("ks") or []:
            add(f"robust accuracy, k = {k}", get(s, "per_k", str(k), "robust_accuracy"), percent=True)
        add("warnings", len(s.get("warnings") or []))
        add("seconds", s.get("seconds"))
    elif run.kind == "sensitivity":
        for split in ("train", "test"):
            add(f"{split}: 99th pct image FI", get(s, "percentiles", split, "fi_true", "99"))
            add(f"{split}: max image FI", get(s, "percentiles", split, "fi_true", "100"))
        add("layer-FI images", get(s, "layer_fi", "images"))
    if not out:  # train, harden and anything else: scalar numbers at the top level
        for k, v in s.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and len(out) < 8:
                add(k.replace("_", " "), v)
    return out
