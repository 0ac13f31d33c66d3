"""Padded forward passes (private): an image's outputs do not depend on its batch-mates."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError

MIN_ROWS = 16
"""Model calls made by :func:`probs_of` have at least this many rows: CPU GEMM kernels take a
different, slightly differently rounding path for a handful of rows, and an image's result must
not depend on how many other images share its call (chunked and sharded runs agree bit for bit,
at one intra-op thread; with several threads the kernels' split can still depend on the rows)."""


def padded_logits(model: nn.Module, xb: torch.Tensor) -> torch.Tensor:
    """model(xb) [M, K], with calls of fewer than :data:`MIN_ROWS` rows padded by repeating the
    last row (detached: gradients flow to xb's own rows only). Differentiable; the gradient
    attacks use it so that an image's gradient does not depend on its batch-mates either."""
    m = xb.shape[0]
    if 0 < m < MIN_ROWS:
        xb = torch.cat([xb, xb[-1:].detach().expand(MIN_ROWS - m, *xb.shape[1:])])
    return model(xb)[:m]


@torch.no_grad()
def padded_forward(model: nn.Module, xb: torch.Tensor) -> torch.Tensor:
    """model(xb), with calls of fewer than :data:`MIN_ROWS` rows padded by repeating the last row."""
    return padded_logits(model, xb)


@torch.no_grad()
def probs_of(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Softmax probabilities (float64) [N, K] for images [N, C, H, W], in chunks (each call
    padded to at least :data:`MIN_ROWS` rows); :class:`InputError` when the model returns NaN
    or infinite values."""
    out = torch.cat([torch.softmax(padded_forward(model, x[i: i + batch_size]).double(), -1)
                     for i in range(0, len(x), batch_size)])
    if not torch.isfinite(out).all():  # argmax(NaN) is class 0: never count that as right or fooled
        raise InputError("the model returned NaN or infinite outputs",
                         "fix the model (its weights may be damaged); results on such a model mean nothing")
    return out
