"""An adaptive check for a median-filter front (``mnist-cnn-median``): the same network whose
gradient is taken through a 3×3 *mean* instead of the median (BPDA, Athalye et al. 2018).

The forward pass is exactly the median model's, so an adversarial image found here fools that
model; only the gradient the gradient-guided members follow changes: the mean spreads it over
every pixel of the window, where the median sends it to one pixel, so an attack can see that
changing a pixel next to others may move the filtered image. Run the gradient members on it and
join the broken images with the ``standard`` verdict of the model itself:

    infoswarm robustness --model bench/median_bpda.py:MedianBPDA --weights W.safetensors \\
        --dataset mnist --split test --limit 1000 --ks 5,10,20 --attacks swarm-gain,pgd0,spgd ...
    python bench/paired_verdicts.py VERDICT BPDA-RUN    # "both": robust under both
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from infoswarm.models import SmallCNN, median_filter  # noqa: E402


def mean_filter(x: torch.Tensor, size: int = 3) -> torch.Tensor:
    """The mean of each size×size window, edge rows and columns repeated outward: [N, C, H, W]."""
    r = size // 2
    return F.avg_pool2d(F.pad(x, (r, r, r, r), mode="replicate"), size, stride=1)


class MedianBPDA(SmallCNN):
    """``mnist-cnn-median``'s network: forward through the 3×3 median, backward through the 3×3 mean."""

    def __init__(self) -> None:
        super().__init__(1, 10, 28, (0.1307,), (0.3081,), median=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        smooth = mean_filter(x, 3)
        return super().forward(smooth + (median_filter(x, 3) - smooth).detach())
