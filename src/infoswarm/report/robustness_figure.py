"""The robustness curve of ``infoswarm robustness``: robust accuracy against k (matplotlib)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _curve_points(summary: Mapping[str, Any]) -> tuple[list[int], list[float], list[list[float]]]:
    """k values from 0 (clean), robust accuracy (%) at each, and the error bars (below, above; %)
    of each 95 % Wilson interval, from a robustness run's summary.json."""
    ks = [int(k) for k in summary["ks"]]
    per_k = summary["per_k"]
    acc = [float(summary["clean_accuracy"])] + [float(per_k[str(k)]["robust_accuracy"]) for k in ks]
    ci = [list(summary["clean_ci95"])] + [list(per_k[str(k)]["robust_ci95"]) for k in ks]
    lo = [max(0.0, 100 * (a - c[0])) for a, c in zip(acc, ci)]     # Wilson bounds are clipped to [0, 1]
    hi = [max(0.0, 100 * (c[1] - a)) for a, c in zip(acc, ci)]
    return [0, *ks], [100 * a for a in acc], [lo, hi]


def _label_axes(ax: Any) -> None:
    ax.set_xlabel("k (pixels changed; 0 = clean)")
    ax.set_ylabel("robust accuracy (%)")
    ax.set_ylim(-2, 102)
    ax.grid(alpha=0.3)


def robustness_curve_figure(path: Path | str, summary: Mapping[str, Any], title: str = "") -> None:
    """Save robust accuracy (%) against k (pixels), from k = 0 (clean accuracy), with the 95 %
    Wilson interval of each k as an error bar; ``summary`` is a robustness run's summary.json
    (``clean_accuracy``, ``clean_ci95``, ``ks``, ``per_k``)."""
    xs, acc, bars = _curve_points(summary)
    fig, ax = plt.subplots(figsize=(4.8, 3.2), dpi=100)
    ax.errorbar(xs, acc, yerr=bars, marker="o", capsize=3, color="#1f4e79")
    _label_axes(ax)
    ax.set_xticks(xs)
    n = summary.get("images", "?")
    ax.set_title(title or f"robust accuracy vs k ({n} images, 95 % CI)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def robustness_curves_png(curves: Sequence[tuple[str, Mapping[str, Any]]]) -> bytes:
    """PNG bytes of several robustness runs' curves on one axis (e.g. a model before and after
    hardening): robust accuracy (%) against k from k = 0 (clean), each with its 95 % Wilson
    intervals; ``curves`` holds (label, summary.json of a robustness run) pairs."""
    import io

    fig, ax = plt.subplots(figsize=(5.6, 3.4), dpi=100)
    ax.set_xticks(sorted({0, *(int(k) for _, summary in curves for k in summary["ks"])}))
    for label, summary in curves:
        xs, acc, bars = _curve_points(summary)
        ax.errorbar(xs, acc, yerr=bars, marker="o", capsize=3,
                    label=f"{label} ({summary.get('images', '?')} images)")
    _label_axes(ax)
    # the legend under the axes, never over the curves (labels are often long); the saved image
    # grows to hold it
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.2), borderaxespad=0, frameon=False)
    ax.set_title("robust accuracy vs k, every robustness run (95 % CI)", fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    return buf.getvalue()
