"""PGD0: white-box L0 projected gradient descent over k pixels (after Croce & Hein, ICCV 2019).

Our reading of the method, written from the paper's description: iterate
    u = x_t + alpha · D · g / ‖g‖₁   (g = ∇ₓ of the objective at x_t, D = C·H·W entries),
then project u onto the set of images that differ from the clean x in at most k pixel locations
and stay in the box [lo, hi] = [max(0, x − eps), min(1, x + eps)]: clip u into the box, score
each location by how much keeping its clipped change reduces the squared distance to u
(‖u − x‖² − ‖u − clip(u)‖² over its channels), keep the k best locations and reset the others to
the clean values (the exact Euclidean projection onto this set). The objective is the one of
L∞ PGD (:func:`.fgsm.objective`: ascend the true label's cross-entropy, untargeted; descend the
target's, targeted). Restart r > 0 starts from k random locations set to random values in their
box (seeded per image); restart 0 starts from x.

Each iterate is judged on the forward pass that also gives its gradient; an image stops at its
first successful iterate. queries [N] = iterates evaluated (forward + backward counts as one);
the same count is reported as ``grad_evals``. At most ``steps × restarts`` + 1 per image (the
last iterate of the last restart is judged by the final re-verification).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError
from ._forward import padded_logits
from ._rng import image_keys, uniforms
from ._sparse import _box, _check_common, _check_size
from .base import Attack, Call, TargetSpec
from .fgsm import objective
from .result import AttackResult


def project_l0(x: torch.Tensor, u: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, k: int) -> torch.Tensor:
    """The image nearest to u [N,C,H,W] (in L2) that is in the box [lo, hi] and differs from
    x in at most k pixel locations."""
    n = x.shape[0]
    v = torch.minimum(torch.maximum(u, lo), hi)
    d = v - x
    # what keeping a location saves in ‖result − u‖²: ‖u − x‖² there minus ‖u − clip(u)‖²
    score = ((u - x).square() - (u - v).square()).sum(1).flatten(1)      # [N, H*W]
    keep = torch.zeros_like(score, dtype=torch.bool)
    keep.scatter_(1, score.topk(k, dim=1).indices, True)
    keep &= score > 0
    return x + d * keep.view(n, 1, *x.shape[2:])


class PGD0(Attack):
    """White-box L0 PGD baseline, batched (``PGD0(model, pixels=k, ...)(x, y)``).

    Args:
        model: classifier, [0,1] images [N,C,H,W] -> logits [N,K], eval mode (differentiable).
        pixels: k, pixel locations that may change (all channels of each), 1..H·W.
        eps: per-entry bound in [0,1] pixel units; 1.0 = pure L0.
        steps: gradient steps per restart (≥ 1); restarts: runs (≥ 1), the first from x.
        alpha: step size (average change per entry of the L1-normalised step), > 0; 0.1 did
            best of 0.02/0.05/0.1/0.3/1/5 on mnist-cnn at k = 10 (40 digits, 1,000 queries).
        target, min_prob, max_prob: as for every attack.
        seed: seeds the random starts together with each image's position (independent of the batch).

    Call: ``attack(x, y, target=None, offset=0)`` (the contract of :class:`.Attack`).
    """

    uses = ("pixels", "eps", "budget")
    gradients = "always"
    defaults = {"pixels": 10, "eps": 1.0, "budget": 1000, "target": None}
    """budget: model passes per image; the registry spends it as restarts of up to 20 steps
    (steps × restarts + 1 ≤ budget). The constructor's own steps=20, restarts=1 is one run."""

    def __init__(self, model: nn.Module, pixels: int = 10, eps: float = 1.0, steps: int = 20,
                 restarts: int = 1, alpha: float = 0.1, target: TargetSpec = None,
                 min_prob: float | None = None, max_prob: float | None = None, seed: int = 0) -> None:
        super().__init__(model, target=target, min_prob=min_prob, max_prob=max_prob, seed=seed)
        _check_common(pixels, eps, 1, self.criterion)
        for name, v in (("steps", steps), ("restarts", restarts)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(f"{name} must be a positive integer, got {v!r}", f"pass e.g. {name}=1")
        if not (isinstance(alpha, (int, float)) and alpha > 0):
            raise InputError(f"alpha must be positive, got {alpha!r}", "pass e.g. alpha=1.0")
        self.pixels, self.eps, self.steps, self.restarts = pixels, float(eps), steps, restarts
        self.alpha = float(alpha)

    def query_budget(self) -> int:
        """steps × restarts + 1."""
        return self.steps * self.restarts + 1

    def _start(self, x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, keys: torch.Tensor, r: int) -> torch.Tensor:
        n, c, h, w = x.shape
        loc = uniforms(keys, r, 0, (h * w,)).topk(self.pixels, dim=1).indices
        mask = torch.zeros(n, h * w, dtype=torch.bool, device=x.device).scatter_(1, loc, True).view(n, 1, h, w)
        v = lo + uniforms(keys, r, 1, (c * h * w,)).view_as(x).to(x.dtype) * (hi - lo)
        return torch.where(mask, v, x)

    def _run(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor, offset: torch.Tensor,
             call: Call) -> AttackResult:
        _check_size(self.pixels, x)
        n, dev = x.shape[0], x.device
        lo, hi = _box(x, self.eps)
        keys = image_keys(self.seed, offset).to(dev)
        d = x[0].numel()
        queries = torch.zeros(n, dtype=torch.long, device=dev)
        active = torch.ones(n, dtype=torch.bool, device=dev)
        best = x.clone()
        for r in range(self.restarts):
            cur = x.clone() if r == 0 else self._start(x, lo, hi, keys, r)
            last = r == self.restarts - 1
            for _ in range(self.steps):
                idx = active.nonzero().view(-1)
                if idx.numel() == 0:
                    break
                xi, yi, ti = cur[idx], y[idx], target[idx]
                with torch.enable_grad():
                    xa = xi.clone().requires_grad_(True)
                    logits = padded_logits(self.model, xa)
                    ok, _, _, _ = self.criterion.evaluate(torch.softmax(logits.detach().double(), -1), yi, ti)
                    queries[idx] += 1
                    best[idx[ok]] = xi[ok]
                    active[idx[ok]] = False
                    go = ~ok
                    if not go.any():
                        continue
                    (g,) = torch.autograd.grad(objective(logits, yi, ti, None).sum(), xa)
                gi, g = idx[go], g[go]
                step = self.alpha * d * g / g.abs().flatten(1).sum(1).clamp(min=1e-12).view(-1, 1, 1, 1)
                cur[gi] = project_l0(x[gi], xi[go] + step, lo[gi], hi[gi], self.pixels)
            if last:
                best[active] = cur[active]
        queries[active] += 1                                   # the final iterate is judged by finalize
        return self._finish(x, best, y, target, queries, grad_evals=queries.clone())
