"""Shared maths of the sparse attacks (one-pixel DE, Sparse-RS, SparseSwarm, PGD0; private).

* argument checks: :func:`_check_common` (pixels, eps, batch_size, criterion) and
  :func:`_check_size` (pixels against the images' H·W);
* the box :func:`_box` of allowed values per entry;
* the loss :func:`_loss` the query-based searches minimise, and :func:`_score`, which builds
  candidate images from (locations, values) and evaluates them in padded model calls;
* :func:`_apply`, which writes chosen values at chosen locations.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from ..criteria import Criterion
from ..errors import InputError
from .base import padded_forward

_forward = padded_forward
"""model(xb) with the call padded where the backend needs it (:mod:`._forward`: an image's result
does not depend on how many other images share its call)."""


def _check_common(pixels: int, eps: float, batch_size: int, criterion: Criterion) -> None:
    """The options every sparse attack shares: ``pixels`` k ≥ 1, ``eps`` in (0, 1] (pixel units),
    ``batch_size`` ≥ 1 (candidate images per model call), and the criterion's window."""
    if isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 1:
        raise InputError(f"pixels must be a positive integer, got {pixels!r}", "pass pixels=1 or more")
    if isinstance(eps, bool) or not (isinstance(eps, (int, float)) and 0 < eps <= 1):
        raise InputError(f"eps must be positive and at most 1, got {eps!r}",
                         "pass eps=1.0 for unbounded values, or e.g. 0.3")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}", "pass e.g. 1024")
    criterion.validate()


def _check_size(pixels: int, x: torch.Tensor) -> None:
    """``pixels`` must not exceed the H·W locations of images x [N, C, H, W]."""
    h, w = x.shape[-2:]
    if pixels > h * w:
        raise InputError(f"pixels={pixels} exceeds the {h}x{w} = {h * w} pixels of an image",
                         f"pass at most {h * w}")


def _box(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Allowed values per entry: lo = max(0, x − eps), hi = min(1, x + eps), each [N, C, H, W]."""
    return (x - eps).clamp(min=0.0), (x + eps).clamp(max=1.0)


LossKind = Literal["margin", "ce", "paper"]
LOSSES: tuple[str, ...] = ("margin", "ce", "paper")


def _loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor, criterion: Criterion,
          kind: LossKind = "margin") -> tuple[torch.Tensor, torch.Tensor]:
    """logits [M, K], y and target [M] -> (loss [M] float64, success [M] bool).

    loss is −1 on success, else (≥ 0): ``"margin"`` the logit margin (untargeted z_y − max_{j≠y}
    z_j, targeted max_{j≠t} z_j − z_t) plus the window penalties in log-probability units;
    ``"ce"`` the cross-entropy to the judged class, −log p_j (j = the target, or the best wrong
    class), plus the same penalties; ``"paper"`` the paper's saturating fitness (the criterion's
    ``aim``: probability gap plus window distances, in probability units)."""
    z = logits.double()
    if kind == "paper":
        ok, aim, _, _ = criterion.evaluate(torch.softmax(z, -1), y, target)
        return torch.where(ok, torch.full_like(aim, -1.0), aim.double()), ok
    # success as Criterion.evaluate decides it (the same softmax, the same argmax), in fewer ops
    probs = torch.softmax(z, -1)
    yy = y.unsqueeze(-1)
    targeted = target >= 0
    any_t = bool(targeted.any())
    best_wrong = probs.scatter(-1, yy, float("-inf")).argmax(-1)
    judged = torch.where(targeted, target.clamp(min=0), best_wrong) if any_t else best_wrong
    jj = judged.unsqueeze(-1)
    pred = probs.argmax(-1)
    ok = torch.where(targeted, pred == judged, pred != y) if any_t else pred != y
    logp = torch.log_softmax(z, -1)
    lp_j = logp.gather(-1, jj).squeeze(-1)
    if kind == "ce":
        loss = -lp_j
    else:
        lp_y = logp.gather(-1, yy).squeeze(-1)
        if any_t:
            others = logp.scatter(-1, jj, float("-inf")).amax(-1)
            loss = torch.where(targeted, others - lp_j, lp_y - lp_j).clamp(min=0)
        else:
            loss = (lp_y - lp_j).clamp(min=0)
    if criterion.min_prob is not None or criterion.max_prob is not None:
        p_j = probs.gather(-1, jj).squeeze(-1)
        if criterion.min_prob is not None:
            ok = ok & (p_j >= criterion.min_prob)
            loss = loss + (math.log(criterion.min_prob) - lp_j).clamp(min=0)
        if criterion.max_prob is not None:
            ok = ok & (p_j <= criterion.max_prob)
            loss = loss + (lp_j - math.log(criterion.max_prob)).clamp(min=0)
    return torch.where(ok, torch.full_like(loss, -1.0), loss), ok


@torch.no_grad()
def _score(model: nn.Module, x: torch.Tensor, img: torch.Tensor, loc: torch.Tensor, val: torch.Tensor,
           y: torch.Tensor, target: torch.Tensor, criterion: Criterion, batch_size: int,
           kind: LossKind = "margin") -> tuple[torch.Tensor, torch.Tensor]:
    """Loss and success of M candidates, built and evaluated ``batch_size`` at a time.

    x [N, C, H, W]; img [M] the image each candidate perturbs; loc [M, k] flat locations h·W + w;
    val [M, k, C] their values (rows repeating a location must repeat its value); y, target [N].
    Returns (loss [M] float64, success [M] bool)."""
    n, c, h, w = x.shape
    flat = x.reshape(n, c, h * w)
    losses, oks = [], []
    for s in range(0, img.shape[0], batch_size):
        i = img[s: s + batch_size]
        li = loc[s: s + batch_size]
        xb = flat[i].clone()
        xb.scatter_(2, li.unsqueeze(1).expand(-1, c, -1), val[s: s + batch_size].transpose(1, 2).to(x.dtype))
        loss, ok = _loss(padded_forward(model, xb.view(-1, c, h, w)), y[i], target[i], criterion, kind)
        losses.append(loss)
        oks.append(ok)
    if not losses:
        return torch.zeros(0, dtype=torch.float64, device=x.device), torch.zeros(0, dtype=torch.bool, device=x.device)
    return torch.cat(losses), torch.cat(oks)


def _apply(x: torch.Tensor, loc: torch.Tensor, val: torch.Tensor) -> torch.Tensor:
    """Write val [N, k, C] at locations loc [N, k] (−1 = none) into a copy of x [N, C, H, W]."""
    n, c, h, w = x.shape
    out = x.reshape(n, c, h * w).clone()
    valid = loc >= 0
    # unused slots repeat a used slot of their row (or location 0 with its own value), so that
    # no location receives two different values in the scatter
    anchor = valid.to(torch.int8).argmax(1, keepdim=True)                      # first used slot
    a_loc = loc.gather(1, anchor).clamp(min=0)
    a_val = torch.where(valid.gather(1, anchor).unsqueeze(-1),
                        val.gather(1, anchor.unsqueeze(-1).expand(-1, -1, c)).to(x.dtype),
                        out[:, :, 0].unsqueeze(1))
    loc = torch.where(valid, loc, a_loc)
    val = torch.where(valid.unsqueeze(-1), val.to(x.dtype), a_val)
    out.scatter_(2, loc.unsqueeze(1).expand(-1, c, -1), val.transpose(1, 2))
    return out.view_as(x)
