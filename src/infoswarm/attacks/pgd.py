"""L∞ PGD (Madry et al. 2018) with per-image early stopping.

Each iteration evaluates the current iterate of every unfinished image with one forward +
backward pass. An image whose iterate already meets the criterion stops there (that iterate,
the first successful one, is returned; later iterations cost it nothing). The others take a
step x ← Π(x + alpha·sign(∇ₓ objective)), Π the projection onto the eps ball around the clean
image intersected with [0, 1]. The objective is the one of :func:`.fgsm.objective`: ascend the
true label's cross-entropy (untargeted) or descend the target's (targeted); when the class
condition already holds but the judged class's probability is above ``max_prob``, the step is
reversed for that image so that it comes back into the window.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError
from ._forward import padded_logits
from .base import Call, TargetSpec
from .fgsm import _LinfGradientAttack, check_eps, objective, project
from .result import AttackResult


class PGD(_LinfGradientAttack):
    """Projected gradient descent in L∞, batched (``PGD(model, ...)(x, y)``).

    Args:
        model: classifier, [0,1] images [N,C,H,W] -> logits [N,K], in eval mode.
        eps: L∞ radius (pixel units; images live in [0,1]), > 0.
        alpha: step size per iteration (same units), > 0; default eps / 4.
        steps: number of gradient steps, ≥ 1.
        random_start: start from x + U(−eps, eps) (seeded); else from x.
        target: None (untargeted), ``"second"`` or class indices (int or LongTensor [N]).
        min_prob, max_prob: success also needs the judged class's probability in this window.
        seed: seeds the random start together with each image's position (see :class:`.Attack`).

    Call: ``attack(x, y, target=None, offset=0)`` (the contract of :class:`.Attack`) with
    x [N,C,H,W] float in [0,1], y [N] int labels ->
    :class:`AttackResult`. queries per image = model passes spent on it: one per evaluated
    iterate (forward+backward counts as one); an image that succeeds at iterate i (0 = the
    start) costs i+1; one that never succeeds costs steps+1 (the last is the final judgement).
    """

    uses = ("eps", "steps")
    defaults = {"eps": 8 / 255, "steps": 10, "target": None}

    def __init__(self, model: nn.Module, eps: float = 8 / 255, alpha: float | None = None,
                 steps: int = 10, random_start: bool = True, target: TargetSpec = None,
                 min_prob: float | None = None, max_prob: float | None = None, seed: int = 0) -> None:
        eps = check_eps(eps)  # eps, alpha, steps first, then the base checks the rest (and eps again)
        # default step eps/4 (2/255 at eps 8/255), so that 10 steps can cross the whole ball
        self.alpha = check_eps(alpha if alpha is not None else eps / 4, "alpha")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise InputError(f"steps must be an integer >= 1, got {steps!r}", "pass e.g. steps=10")
        self.steps = steps
        super().__init__(model, eps=eps, random_start=random_start, target=target, min_prob=min_prob,
                         max_prob=max_prob, seed=seed)

    def query_budget(self) -> int:
        """steps + 1 (the last pass judges the final iterate)."""
        return self.steps + 1

    def _run(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor, offset: torch.Tensor,
             call: Call) -> AttackResult:
        n = x.shape[0]
        cur = self._start(x, offset)  # written in place below
        queries = torch.zeros(n, dtype=torch.long, device=x.device)
        active = torch.ones(n, dtype=torch.bool, device=x.device)
        hi = self.criterion.max_prob
        for _ in range(self.steps):
            idx = active.nonzero().view(-1)
            if idx.numel() == 0:
                break
            xi, yi, ti = cur[idx], y[idx], target[idx]
            with torch.enable_grad():  # one forward serves both the judgement and the gradient
                xa = xi.clone().requires_grad_(True)
                logits = padded_logits(self.model, xa)
                probs = torch.softmax(logits.detach().double(), -1)
                ok, _, judged, p_j = self.criterion.evaluate(probs, yi, ti)
                flip = None
                if hi is not None:
                    pred = probs.argmax(-1)
                    cls_ok = torch.where(ti >= 0, pred == judged, pred != yi)
                    flip = cls_ok & (p_j > hi)
                queries[idx] += 1
                active[idx[ok]] = False
                go = ~ok
                if not go.any():
                    continue
                (grad,) = torch.autograd.grad(objective(logits, yi, ti, flip).sum(), xa)
            g_idx = idx[go]
            cur[g_idx] = project(xi[go] + self.alpha * grad[go].sign(), x[g_idx], self.eps)
        queries[active] += 1  # the final iterate is judged by finalize
        return self._finish(x, cur, y, target, queries)
