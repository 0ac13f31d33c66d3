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
