"""FGSM: one signed-gradient step of size eps on the cross-entropy (Goodfellow et al. 2015).

Untargeted (``target=None``): ascend the cross-entropy of the true label y.
Targeted (a class index per image, or ``"second"``): descend the cross-entropy of the target.
With ``random_start`` the step starts from a point drawn uniformly in the L∞ eps ball (counter-based
uniforms per image, seeded with (seed, the image's position in the caller's list), so equal seeds
give equal results whatever the chunking) and the result is projected back onto the eps ball
around x intersected with [0, 1].

The helpers :func:`objective`, :func:`project` and :func:`uniform_start`, and the private base class
:class:`_LinfGradientAttack` (eps, random start, gradients), are shared with :mod:`.pgd`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ._forward import padded_logits
from ._rng import image_keys, uniforms
from .base import Attack, Call, TargetSpec, check_seed
from .result import AttackResult

__all__ = ["FGSM", "check_eps", "check_seed", "loss_grad", "objective", "project", "uniform_start"]


def check_eps(eps: float, name: str = "eps") -> float:
    """A positive, finite L∞ radius (pixel units in [0,1]) or an InputError."""
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps <= 0:
        raise InputError(f"{name} must be a positive number, got {eps!r}", f"pass e.g. {name}=8/255")
    if eps > 1:
        raise InputError(f"{name} must be at most 1 (images lie in [0, 1]), got {eps!r}", f"pass e.g. {name}=8/255")
    return float(eps)


def objective(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor,
              flip: torch.Tensor | None = None) -> torch.Tensor:
    """Per-image objective [N] to be ASCENDED: CE(logits, y) when untargeted (target −1),
    −CE(logits, target) when targeted; ``flip`` [N] bool negates it (used to pull a class whose
    probability overshot ``max_prob`` back down)."""
    ce_y = F.cross_entropy(logits, y, reduction="none")
    ce_t = F.cross_entropy(logits, target.clamp(min=0), reduction="none")
    obj = torch.where(target >= 0, -ce_t, ce_y)
    return obj if flip is None else torch.where(flip, -obj, obj)


def loss_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor,
              flip: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward + backward pass: (logits [N,K] detached, ∇ₓ objective [N,C,H,W]).
    Images are independent (model in eval mode), so the batch gradient is per image; calls are
    padded to :data:`.base.MIN_ROWS` rows (results do not depend on the batch)."""
    with torch.enable_grad():
        xa = x.detach().clone().requires_grad_(True)
        logits = padded_logits(model, xa)
        (grad,) = torch.autograd.grad(objective(logits, y, target, flip).sum(), xa)
    return logits.detach(), grad


def project(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Project onto {x' : |x' − x|∞ ≤ eps} ∩ [0, 1]^D (elementwise clip; exact for L∞)."""
    return torch.minimum(torch.maximum(x_adv, x - eps), x + eps).clamp(0.0, 1.0)


def uniform_start(x: torch.Tensor, eps: float, seed: int, offset: torch.Tensor | None = None) -> torch.Tensor:
    """x [N,C,H,W] + U(−eps, eps) noise, projected to [0,1] ∩ the eps ball. Image i's noise is
    a function of (seed, offset[i]) only (counter-based uniforms, :mod:`._rng`); ``offset`` [N]
    are the images' positions in the caller's list (default 0..N−1)."""
    pos = torch.arange(x.shape[0]) if offset is None else offset
    keys = image_keys(seed, pos.to(torch.long)).to(x.device)
    noise = uniforms(keys, 0, 0, tuple(x.shape[1:])).to(x.dtype)
    return project(x + (2.0 * noise - 1.0) * eps, x, eps)


class _LinfGradientAttack(Attack):
    """What FGSM and PGD share: an L∞ radius ``eps`` (checked with :func:`check_eps`), an optional
    random start in the eps ball (:func:`uniform_start`) and gradients of the model.

    Args: ``eps`` and ``random_start`` as in :class:`FGSM`, the rest as in :class:`.Attack`.
    """

    norm = "linf"
    gradients = "always"

    eps: float
    random_start: bool

    def __init__(self, model: nn.Module, *, eps: float, random_start: bool, target: TargetSpec,
                 min_prob: float | None, max_prob: float | None, seed: int) -> None:
        self.eps = check_eps(eps)
        super().__init__(model, target=target, min_prob=min_prob, max_prob=max_prob, seed=seed)
        self.random_start = bool(random_start)

    def _start(self, x: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        """The starting point [N,C,H,W]: x + U(−eps, eps) projected (image i's noise from (seed,
        offset[i])) with ``random_start``, else a copy of x; a new tensor either way."""
        return uniform_start(x, self.eps, self.seed, offset) if self.random_start else x.clone()


class FGSM(_LinfGradientAttack):
    """Fast gradient sign method, batched (torchattacks-like: ``FGSM(model, ...)(x, y)``).

    Args:
        model: classifier, [0,1] images [N,C,H,W] -> logits [N,K], in eval mode.
        eps: L∞ radius and step size (pixel units; images live in [0,1]), > 0.
        target: None (untargeted), ``"second"`` (most probable wrong class), or class indices
            (an int, or a LongTensor [N]); a target equal to the true label is refused.
        min_prob, max_prob: success also needs the judged class's probability (the target, or
            the best wrong class) in [min_prob, max_prob]. FGSM does not aim for the window; it
            is only used when judging success.
        random_start: start from x + U(−eps, eps) (then take the eps step and project back).
        seed: seeds the random start together with each image's position (see :class:`.Attack`).

    Call: ``attack(x, y, target=None, offset=0)`` (the contract of :class:`.Attack`) with
    x [N,C,H,W] float in [0,1], y [N] int labels ->
    :class:`AttackResult`. queries = 2 per image: one forward+backward pass for the gradient
    and one forward pass to judge the result.
    """

    uses = ("eps",)
    defaults = {"eps": 8 / 255, "target": None}

    def __init__(self, model: nn.Module, eps: float = 8 / 255, target: TargetSpec = None,
                 min_prob: float | None = None, max_prob: float | None = None,
                 random_start: bool = False, seed: int = 0) -> None:
        super().__init__(model, eps=eps, random_start=random_start, target=target, min_prob=min_prob,
                         max_prob=max_prob, seed=seed)

    def query_budget(self) -> int:
        """2: one forward+backward pass, one judging pass."""
        return 2

    def _run(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor, offset: torch.Tensor,
             call: Call) -> AttackResult:
        start = self._start(x, offset)
        _, grad = loss_grad(self.model, start, y, target)
        x_adv = project(start + self.eps * grad.sign(), x, self.eps)
        queries = torch.full((x.shape[0],), 2, dtype=torch.long, device=x.device)
        return self._finish(x, x_adv, y, target, queries)
