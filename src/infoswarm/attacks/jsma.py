"""JSMA: the Jacobian-based saliency map attack (Papernot et al. 2016), single-pixel variant.

Every iteration, for each unfinished image and its class t (the target; untargeted: the best
wrong class at the current iterate), one forward pass and two vector-Jacobian products give, per
pixel LOCATION p (the channels of a location move together, so their derivatives are summed):

    α_p = Σ_c ∂Z_t/∂x_{c,p},      β_p = Σ_c Σ_{j≠t} ∂Z_j/∂x_{c,p}      (Z = logits)

and, with s = sign(theta) (s = +1 raises pixel values, −1 lowers them), the saliency map

    S_p = (s·α_p)·(−s·β_p)   if s·α_p > 0 and s·β_p < 0,   else 0 (not a candidate).

The location with the largest S_p moves by theta in every channel, clipped to
[max(x − eps, 0), min(x + eps, 1)]. Logits rather than softmax probabilities are used: the
probability Jacobian vanishes where the softmax saturates (Carlini & Wagner 2017 make the same
choice). If no location satisfies the sign condition, the rule falls back to the largest positive
s·(α_p − β_p) (the first-order gain in Z_t − Σ_{j≠t} Z_j); an image with no such location either
stops and fails. Budget: at most ``pixels`` distinct locations per image; a chosen location
may be chosen again (theta smaller than the room left) at no cost to the budget, until it is
saturated. The loop stops per image on success (also when the class condition holds but the
judged class's probability is already above ``max_prob``: only more of the same would follow).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import InputError
from ._forward import padded_logits
from ._sparse import _check_size
from .base import Attack, Call, TargetSpec
from .fgsm import check_eps
from .result import AttackResult


class JSMA(Attack):
    """Jacobian saliency map attack, batched (``JSMA(model, ...)(x, y)``).

    Args:
        model: classifier, [0,1] images [N,C,H,W] -> logits [N,K], in eval mode.
        pixels: the budget k, distinct pixel locations changed per image (all channels of a
            location count as one), ≥ 1 and at most H·W.
        theta: change per selected location per iteration (pixel units): > 0 raises values,
            < 0 lowers them; ±1 saturates a location in one iteration (the paper's setting).
        target: ``"second"`` (most probable wrong class at the clean image; the default), class
            indices (int or LongTensor [N]), or None (untargeted: the best wrong class at each
            iteration is the class pushed up).
        min_prob, max_prob: success also needs the judged class's probability in this window.
        eps: L∞ bound around x (pixel units), > 0; the default 1.0 leaves only [0, 1].

    Deterministic (no random numbers: ``offset`` changes nothing).

    Call: ``attack(x, y, target=None, offset=0)`` (the contract of :class:`.Attack`) with
    x [N,C,H,W] float in [0,1], y [N] int labels ->
    :class:`AttackResult` whose ``indices`` [N, pixels] list the chosen locations h·W + w in
    choice order (−1 padding). queries per image = forward+Jacobian passes spent on it (an
    image that fails after using its whole budget gets one more, the final judgement).
    """

    uses = ("pixels", "eps")
    gradients = "always"
    defaults = {"pixels": 10, "eps": 1.0, "target": "second"}

    def __init__(self, model: nn.Module, pixels: int = 10, theta: float = 1.0,
                 target: TargetSpec = "second", min_prob: float | None = None,
                 max_prob: float | None = None, eps: float = 1.0) -> None:
        if isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 1:
            raise InputError(f"pixels must be an integer >= 1, got {pixels!r}", "pass e.g. pixels=10")
        if (isinstance(theta, bool) or not isinstance(theta, (int, float)) or not math.isfinite(theta)
                or theta == 0):
            raise InputError(f"theta must be a nonzero number, got {theta!r}",
                             "pass theta=1.0 to raise pixel values or theta=-1.0 to lower them")
        self.eps = check_eps(eps)
        super().__init__(model, target=target, min_prob=min_prob, max_prob=max_prob)
        self.pixels, self.theta = pixels, float(theta)

    def query_budget(self) -> int:
        """One forward pass per saliency step (pixels × the moves that saturate a location), plus
        the final judgement."""
        return self.pixels * max(1, math.ceil(min(self.eps, 1.0) / abs(self.theta) - 1e-9)) + 1

    def _run(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor, offset: torch.Tensor,
             call: Call) -> AttackResult:
        n, c, h, w = x.shape
        _check_size(self.pixels, x)
        s = 1.0 if self.theta > 0 else -1.0
        lo = (x - self.eps).clamp(min=0.0).view(n, c, h * w)
        hi = (x + self.eps).clamp(max=1.0).view(n, c, h * w)
        cur = x.clone().view(n, c, h * w)
        dev = x.device
        used = torch.zeros(n, h * w, dtype=torch.bool, device=dev)
        chosen = torch.full((n, self.pixels), -1, dtype=torch.long, device=dev)
        queries = torch.zeros(n, dtype=torch.long, device=dev)
        active = torch.ones(n, dtype=torch.bool, device=dev)
        # each location saturates after ceil(room / |theta|) moves, room ≤ min(eps, 1)
        max_iter = self.pixels * max(1, math.ceil(min(self.eps, 1.0) / abs(self.theta) - 1e-9))
        for _ in range(max_iter):
            idx = active.nonzero().view(-1)
            if idx.numel() == 0:
                break
            xi, yi, ti = cur[idx].view(-1, c, h, w), y[idx], target[idx]
            with torch.enable_grad():  # one forward serves the judgement and both VJPs
                xa = xi.clone().requires_grad_(True)
                z = padded_logits(self.model, xa)
                probs = torch.softmax(z.detach().double(), -1)
                # judged = the target, or (untargeted) the best wrong class right now
                ok, _, judged, p_j = self.criterion.evaluate(probs, yi, ti)
                queries[idx] += 1
                stop = ok
                if self.criterion.max_prob is not None:
                    pred = probs.argmax(-1)
                    cls_ok = torch.where(ti >= 0, pred == judged, pred != yi)
                    stop = stop | (cls_ok & (p_j > self.criterion.max_prob))
                active[idx[stop]] = False
                go = ~stop
                if not go.any():
                    continue
                (alpha,) = torch.autograd.grad(z.gather(1, judged.view(-1, 1)).sum(), xa, retain_graph=True)
                (total,) = torch.autograd.grad(z.sum(), xa)
            g_idx = idx[go]
            alpha, beta = alpha[go], (total - alpha)[go]                    # ∇Z_t, ∇Σ_{j≠t} Z_j
            a = s * alpha.flatten(2).sum(1)                                   # [B, HW]
            b = s * beta.flatten(2).sum(1)
            cb, lb, hb = cur[g_idx], lo[g_idx], hi[g_idx]
            movable = ((cb < hb) if s > 0 else (cb > lb)).any(1)             # [B, HW]
            under = used[g_idx].sum(1, keepdim=True) < self.pixels
            allowed = movable & (used[g_idx] | under)
            strict = allowed & (a > 0) & (b < 0)
            none = torch.full_like(a, float("-inf"))
            score = torch.where(strict, a * (-b), none)
            loose = torch.where(allowed & (a - b > 0), a - b, none)          # fallback rule
            score = torch.where(strict.any(1, keepdim=True), score, loose)
            best = score.argmax(1)                                            # [B]
            found = torch.isfinite(score.gather(1, best.view(-1, 1)).view(-1))
            # images with nothing left to move stop (their current iterate is already judged)
            active[g_idx[~found]] = False
            g_idx, best = g_idx[found], best[found]
            if g_idx.numel() == 0:
                continue
            col = best.view(-1, 1, 1).expand(-1, c, 1)
            v = cur[g_idx].gather(2, col)
            new = torch.minimum(torch.maximum(v + self.theta, lo[g_idx].gather(2, col)),
                                hi[g_idx].gather(2, col))
            cur[g_idx] = cur[g_idx].scatter(2, col, new)
            fresh = ~used[g_idx, best]
            slot = used[g_idx].sum(1)
            fi, fs = g_idx[fresh], slot[fresh]
            chosen[fi, fs] = best[fresh]
            used[g_idx, best] = True
        queries[active] += 1  # budget spent: the final iterate is judged by finalize
        x_adv = cur.view(n, c, h, w)
        return self._finish(x, x_adv, y, target, queries, indices=chosen)
