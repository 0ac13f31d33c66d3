"""Static figures (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


def _show_image(ax: plt.Axes, img: torch.Tensor) -> None:
    """Draw a [C, H, W] image in [0, 1] (grey for C = 1)."""
    img = img.detach().cpu().float()
    if img.shape[0] == 1:
        ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(img.permute(1, 2, 0).clamp(0, 1).numpy())
    ax.set_xticks([])
    ax.set_yticks([])


def heatmap_figure(path: Path, image: torch.Tensor, fi_map: torch.Tensor, title: str,
                   map_title: str = "pixel FI") -> None:
    """Save the image beside its FI map ([H, W], or [C, H, W] summed over channels)."""
    m = fi_map.detach().cpu().double()
    if m.dim() == 3:
        m = m.sum(0)
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.2), dpi=100)
    _show_image(axes[0], image)
    axes[0].set_title("image", fontsize=9)
    im = axes[1].imshow(m.numpy(), cmap="inferno", vmin=0)
    axes[1].set_xticks([])
    axes[1].set_yticks([])
    axes[1].set_title(map_title, fontsize=9)
    fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.04)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def gallery_figure(path: Path, x: torch.Tensor, x_adv: torch.Tensor, rows: list[dict[str, str]],
                   max_rows: int = 12) -> None:
    """Original | adversarial | difference for up to ``max_rows`` images; ``rows`` holds the
    captions ("before", "after") per image. Differences are shown with a symmetric colour map."""
    n = min(len(x), max_rows)
    if n == 0:
        return
    fig, axes = plt.subplots(n, 3, figsize=(7.2, 2.3 * n), dpi=90, squeeze=False)
    for i in range(n):
        _show_image(axes[i, 0], x[i])
        axes[i, 0].set_title(rows[i]["before"], fontsize=8)
        _show_image(axes[i, 1], x_adv[i])
        axes[i, 1].set_title(rows[i]["after"], fontsize=8)
        diff = (x_adv[i] - x[i]).detach().cpu().float().sum(0)
        lim = max(float(diff.abs().max()), 1e-6)
        axes[i, 2].imshow(diff.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
        axes[i, 2].set_xticks([])
        axes[i, 2].set_yticks([])
        axes[i, 2].set_title(rows[i].get("diff", "difference"), fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# --------------------------------------------------------------------------------------------
# figures for the HTML report (returned as PNG bytes, ready to embed)


def _png(fig: plt.Figure) -> bytes:
    """Render ``fig`` to PNG bytes and close it."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def triptych_png(x: torch.Tensor, x_adv: torch.Tensor, scale: int = 4, gap: int = 2) -> bytes:
    """One image as original | adversarial | difference, side by side in a single PNG
    (``[C, H, W]`` in [0, 1], each pixel drawn as a ``scale`` x ``scale`` block, panels
    ``gap`` pixels apart on white). The difference, summed over channels, uses the RdBu_r colour
    map centred on zero with full scale at its largest magnitude (red up, blue down); titles are
    left to the caller. Drawn as an array, not a figure, so a gallery of dozens stays fast."""
    import io

    import numpy as np
    from matplotlib import colormaps
    from matplotlib.image import imsave

    def rgb(img: torch.Tensor) -> np.ndarray:
        a = img.detach().cpu().float().clamp(0, 1).numpy()
        return np.repeat(a, 3, 0).transpose(1, 2, 0) if a.shape[0] == 1 else a[:3].transpose(1, 2, 0)

    diff = (x_adv.detach().cpu().float() - x.detach().cpu().float()).sum(0).numpy()
    lim = max(float(np.abs(diff).max()), 1e-6)
    d = colormaps["RdBu_r"]((diff / lim + 1) / 2)[..., :3]
    h = d.shape[0]
    space = np.ones((h, gap, 3))
    row = np.concatenate([rgb(x), space, rgb(x_adv), space, d], axis=1)
    row = np.repeat(np.repeat(row, scale, 0), scale, 1)
    buf = io.BytesIO()
    imsave(buf, np.clip(row, 0, 1), format="png")
    return buf.getvalue()


def success_vs_k_png(series: dict[str, list[tuple[float, float]]]) -> bytes:
    """Success rate against k (pixels), one line per series name of (k, rate) points."""
    fig, ax = plt.subplots(figsize=(5.6, 3.4), dpi=90)
    for name, points in sorted(series.items()):
        pts = sorted(points)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ax.set_xlabel("k (pixels perturbed)")
    ax.set_ylabel("success rate")
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.15, top=0.95)
    return _png(fig)


def perturbation_histograms_png(linf: list[float], pixel_l0: list[float], success: list[bool],
                                title: str = "") -> bytes:
    """Histograms of L-infinity and pixel-L0 per image, successes and failures stacked."""
    import numpy as np

    ok = np.asarray(success, dtype=bool)
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 2.8), dpi=90)
    for ax, values, label in ((axes[0], linf, "L∞ (max |Δ|)"), (axes[1], pixel_l0, "pixel L0")):
        v = np.asarray(values, dtype=float)
        keep = np.isfinite(v)
        groups = [v[keep & ok], v[keep & ~ok]]
        finite = v[keep]
        if finite.size:
            lo, hi = float(finite.min()), float(finite.max())
            if np.all(finite == np.round(finite)) and hi - lo <= 60:  # counts: one bin per value
                bins = np.arange(lo - 0.5, hi + 1.5)
            elif hi > lo:
                bins = np.linspace(lo, hi, 21)
            else:
                pad = max(abs(lo) * 0.05, 1e-3)
                bins = np.linspace(lo - pad, lo + pad, 11)
            ax.hist(groups, bins=bins, stacked=True, color=["#2a7f62", "#c0504d"],
                    label=["success", "failure"])
            ax.legend(fontsize=8)
        ax.set_xlabel(label)
        ax.set_ylabel("images")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.17, top=0.86 if title else 0.95, wspace=0.25)
    return _png(fig)


def training_curves_png(epochs: list[float], columns: dict[str, list[float]], title: str = "") -> bytes:
    """Per-epoch curves; columns are grouped into panels by name: losses, accuracies and rates,
    learning rate, and everything else (one panel each, only those that have columns)."""
    groups: dict[str, list[str]] = {"loss": [], "accuracy / rate": [], "learning rate": [], "other": []}
    for name in columns:
        low = name.lower()
        if "loss" in low:
            groups["loss"].append(name)
        elif "acc" in low or "rate" in low or "success" in low:
            groups["accuracy / rate"].append(name)
        elif low == "lr" or "learning" in low:
            groups["learning rate"].append(name)
        else:
            groups["other"].append(name)
    panels = [(k, v) for k, v in groups.items() if v]
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(3.3 * max(len(panels), 1), 2.9),
                             dpi=90, squeeze=False)
    for ax, (label, names) in zip(axes[0][: len(panels)], panels, strict=True):
        for name in names:
            ax.plot(epochs, columns[name], marker="o", markersize=3, label=name)
        ax.set_xlabel("epoch")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.16, top=0.8 if title else 0.88, wspace=0.3)
    return _png(fig)
