"""Figures of the analysis commands (outliers, sensitivity, map deletion and insertion curves);
matplotlib, no display needed. Each function writes one PNG file, except :func:`insertion_png`,
which returns the PNG bytes for the report."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def roc_pr_figure(path: Path, roc: Mapping[str, tuple[Sequence[float], Sequence[float], float]],
                  pr: Mapping[str, tuple[Sequence[float], Sequence[float], float]], base_rate: float,
                  title: str = "") -> None:
    """ROC (fpr, tpr, auc) and precision-recall (recall, precision, ap) curves per score name;
    ``base_rate`` (outlier share) is drawn as the PR curve of a random score."""
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.6), dpi=100)
    for name, (fpr, tpr, auc) in roc.items():
        axes[0].plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})")
    axes[0].plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="random (0.5)")
    axes[0].set_xlabel("false-positive rate")
    axes[0].set_ylabel("true-positive rate")
    axes[0].set_title("ROC", fontsize=9)
    for name, (rec, prec, ap) in pr.items():
        axes[1].plot(rec, prec, label=f"{name} (AP {ap:.3f})")
    axes[1].axhline(base_rate, color="grey", lw=0.8, ls="--", label=f"random ({base_rate:.3f})")
    axes[1].set_xlabel("recall")
    axes[1].set_ylabel("precision")
    axes[1].set_ylim(0, 1.02)
    axes[1].set_title("precision-recall", fontsize=9)
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def image_grid_figure(path: Path, x: torch.Tensor, captions: Sequence[str], marked: Sequence[bool],
                      title: str = "", cols: int = 8) -> None:
    """Images [M, C, H, W] in [0, 1] in a grid with captions; ``marked`` ones get a red frame."""
    m = len(x)
    if m == 0:
        return
    rows = (m + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.5 * rows + 0.4), dpi=100, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= m:
            ax.axis("off")
            continue
        img = x[i].detach().cpu().float()
        if img.shape[0] == 1:
            ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(img.permute(1, 2, 0).clamp(0, 1).numpy())
        ax.set_title(captions[i], fontsize=6)
        for s in ax.spines.values():
            s.set_color("red" if marked[i] else "lightgrey")
            s.set_linewidth(2.5 if marked[i] else 0.5)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def manhattan_figure(path: Path, values: Mapping[str, np.ndarray], classes: np.ndarray,
                     class_names: Sequence[str], title: str = "", ylabel: str = "log10 FI") -> None:
    """Manhattan-style plot: one block of points per layer (x axis), each image one point, the
    images inside a block sorted by class and coloured by class; y = log10 of the value."""
    order = np.argsort(classes, kind="stable")
    cmap = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(values) + 2), 3.8), dpi=100)
    n = len(classes)
    ticks = []
    pos = [float(np.min(a[a > 0])) for a in (np.asarray(v, dtype=float) for v in values.values()) if np.any(a > 0)]
    floor = min(pos) / 10 if pos else 1e-12            # zeros are drawn here (log scale)
    zeros = 0
    for b, (layer, v) in enumerate(values.items()):
        xs = b * (n + n // 5) + np.arange(n)
        a = np.asarray(v, dtype=float)[order]
        zeros += int(np.sum(a <= 0))
        yv = np.log10(np.maximum(a, floor))
        ax.scatter(xs, yv, s=4, c=[cmap(int(c) % 10) for c in classes[order]])
        ticks.append((xs.mean(), layer))
    ax.set_xticks([t[0] for t in ticks])
    ax.set_xticklabels([t[1] for t in ticks], rotation=30, ha="right", fontsize=8)
    handles = [plt.Line2D([], [], ls="", marker="o", color=cmap(k % 10), label=str(class_names[k]))
               for k in sorted(set(int(c) for c in classes))]
    ax.legend(handles=handles, fontsize=6, ncol=2, loc="best", title="class", title_fontsize=7)
    if zeros:
        ax.axhline(np.log10(floor), color="grey", lw=0.6, ls=":")
        ylabel += f" ({zeros} zeros drawn at {floor:.1e})"
    ax.set_ylabel(ylabel, fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _curves_fig(curves: Mapping[str, Sequence[float]], title: str, ylabel: str, xlabel: str):
    fig, ax = plt.subplots(figsize=(5.6, 3.4), dpi=100)
    for name, c in curves.items():
        ax.plot(np.arange(len(c)), c, label=name, lw=2 if name != "random" else 1,
                ls="--" if name == "random" else "-")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def deletion_figure(path: Path, curves: Mapping[str, Sequence[float]], title: str = "",
                    ylabel: str = "drop of p_c") -> None:
    """Mean deletion curves (value at k = 0 … k_max) per map name."""
    fig = _curves_fig(curves, title, ylabel, "k (pixels perturbed, most vulnerable first)")
    fig.savefig(path)
    plt.close(fig)


def insertion_png(curves: Mapping[str, Sequence[float]], title: str = "", ylabel: str = "rise of p_c") -> bytes:
    """Mean insertion curves (rise of p_c at k = 0 … k_max restored pixels) per map name, as PNG
    bytes (drawn by the report from a run's summary)."""
    import io

    fig = _curves_fig(curves, title, ylabel, "k (pixels restored to their clean values, top-scoring first)")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
