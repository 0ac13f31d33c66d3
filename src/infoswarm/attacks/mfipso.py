"""mFI-PSO: perturb the most influential pixels of each image with a particle swarm.

For each image: choose the entries to perturb (top-k pixel locations by pixel FI of the target
class, or the paper's rule "every channel entry with FI ≥ τ"), then let a canonical PSO search
their values δ ∈ R^m inside the L∞ box so that the criterion holds (misclassification, a target
class, a probability window). The swarm minimises Q = 1e7·aim + λ·Σ|δ| (aim as in
:mod:`infoswarm.criteria`; λ = 255, or 1 when a probability bound is set — the paper's values).
Images still correctly classified after the iterations restart once with the best wrong class
as target and ``restart_iterations`` more iterations (the paper's rule).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from .. import influence
from ..checks import unit_float
from ..errors import InputError
from ..swarm import SwarmConfig, minimize
from ._forward import probs_of
from ._rng import image_generators, image_seed
from .base import Attack, Call, TargetSpec, resolve_target
from .result import AttackResult

__all__ = ["MFIPSO", "PixelRule", "confusion_counts", "image_seed"]

PixelRule = Literal["fi", "fi-eps", "saliency", "random"]


class MFIPSO(Attack):
    """The customised sparse attack (torchattacks-like: ``MFIPSO(model, ...)(x, y)``).

    Args:
        model: classifier, [0,1] images [N,C,H,W] -> logits [N,K], eval mode.
        pixels: k, the number of pixel locations to perturb (all channels of each); or
        fi_threshold: τ, perturb every channel entry whose element FI ≥ τ (the paper's rule;
            give exactly one of the two).
        target: "second" (most probable wrong class), class indices [N] or an int, None
            (untargeted), or "confusion" with ``confusion=`` a [K,K] count matrix (target = the
            most frequent mistake for the true class when it has ≥ ``confusion_min`` errors,
            else "second").
        confusion: confusion counts [K, K] (true row, predicted column; e.g.
            :func:`confusion_counts`) for target "confusion"; the attribute ``attack.confusion``
            may also be set after construction.
        min_prob, max_prob: success also needs the judged class's probability in this window.
        eps: L∞ bound (pixel units in [0,1]); bounds="box": δ ∈ [max(−eps, −x), min(eps, 1−x)];
            bounds="paper": δ ∈ [−eps·x, eps·(1−x)] (the authors' code).
        particles, iterations, w, c1, c2: swarm settings (paper: 200 CIFAR / 500 MNIST, 10,
            0.6, 2, 2); restart / restart_iterations: the paper's second chance (40).
        pixel_rule: "fi" (exact FI), "fi-eps" (authors' ε = fi_eps, evaluated in input units
            0..fi_eps_scale: 255 reproduces the authors' CIFAR-10 model, which read raw 0–255
            pixels; 1 = [0, 1] units), "saliency" (|∇ log p_t|),
            "random" (a seeded random choice per image) — for ablations.
        seed: image number g of the caller's list (g = ``offset`` of the call + position in x)
            draws its swarm's numbers and its "random" selection from streams seeded with
            (seed, g), so a list attacked in chunks or shards makes the same choices as one call
            over the whole list, and results do not depend on the batch an image is in.
        batch_size: images per model call when evaluating particles. Default 1024, the fastest batch of
            `bench/throughput.py` (BENCHMARKS.md).

    Call: ``attack(x, y, target=None, offset=0)`` (the contract of :class:`.Attack`). When the
    target was chosen by the attack ("second", "confusion"), images still correctly classified
    after the swarm restart with the best wrong class as their target.
    """

    uses = ("pixels", "eps")
    targets = (*Attack.targets, "confusion")
    gradients = "optional"
    defaults = {"pixels": 10, "eps": 0.15, "target": "second"}
    """pixels: the registry's and the CLI's k when neither pixels nor fi_threshold is given (the
    constructor wants exactly one of them)."""

    def __init__(self, model: nn.Module, pixels: int | None = None, fi_threshold: float | None = None,
                 target: TargetSpec = "second", min_prob: float | None = None,
                 max_prob: float | None = None, eps: float = 0.15, particles: int = 200,
                 iterations: int = 10, w: float = 0.6, c1: float = 2.0, c2: float = 2.0,
                 restart: bool = True, restart_iterations: int = 40, pixel_rule: PixelRule = "fi",
                 bounds: Literal["box", "paper"] = "box", lam: float | None = None, seed: int = 0,
                 fi_eps: float = 1e-3, fi_eps_scale: float = 1.0, confusion: torch.Tensor | None = None,
                 confusion_min: int = 5, batch_size: int = 1024, vmax_frac: float = 0.05) -> None:
        if (pixels is None) == (fi_threshold is None):
            raise InputError("give exactly one of pixels=k and fi_threshold=tau",
                             "e.g. MFIPSO(model, pixels=10) or MFIPSO(model, fi_threshold=0.01)")
        if pixels is not None and (isinstance(pixels, bool) or not isinstance(pixels, int) or pixels <= 0):
            raise InputError(f"pixels must be a positive integer, got {pixels!r}", "pass pixels=1 or more")
        if fi_threshold is not None and fi_threshold < 0:
            raise InputError(f"fi_threshold must be >= 0, got {fi_threshold}", "pass e.g. fi_threshold=0.01")
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps <= 1:
            raise InputError(f"eps must be positive and at most 1 (pixel units), got {eps!r}", "pass e.g. eps=0.15")
        if isinstance(confusion_min, bool) or not isinstance(confusion_min, int) or confusion_min < 1:
            raise InputError(f"confusion_min must be an integer >= 1, got {confusion_min!r}",
                             "pass e.g. confusion_min=5")
        if pixel_rule not in ("fi", "fi-eps", "saliency", "random"):
            raise InputError(f"unknown pixel_rule {pixel_rule!r}", "use fi, fi-eps, saliency or random")
        if bounds not in ("box", "paper"):
            raise InputError(f"unknown bounds {bounds!r}", "use box or paper")
        super().__init__(model, target=target, min_prob=min_prob, max_prob=max_prob, seed=seed, batch_size=batch_size)
        self.swarm = SwarmConfig(particles=particles, iterations=iterations, w=w, c1=c1, c2=c2,
                                 vmax_frac=vmax_frac)
        self.swarm.validate()
        self.pixels, self.fi_threshold = pixels, fi_threshold
        self.eps, self.restart = float(eps), restart
        self.restart_iterations, self.pixel_rule, self.bounds = restart_iterations, pixel_rule, bounds
        self.lam = lam if lam is not None else (1.0 if (min_prob or max_prob) else 255.0)
        influence.check_fi_eps(fi_eps, fi_eps_scale)
        self.fi_eps = fi_eps
        self.fi_eps_scale = float(fi_eps_scale)
        self.confusion: Any = confusion
        self.confusion_min = confusion_min

    # ---------------------------------------------------------------------------------------

    def query_budget(self) -> int:
        """particles × (iterations + restart iterations when ``restart``)."""
        return self.swarm.particles * (self.swarm.iterations + (self.restart_iterations if self.restart else 0))

    def needs_gradient(self) -> bool:
        """Gradients for the FI threshold rule and every pixel rule but "random"."""
        return self.pixel_rule != "random" or self.fi_threshold is not None

    def _resolve_target(self, spec: TargetSpec, clean: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Targets [N]: :func:`.base.resolve_target`, plus ``"confusion"`` (the most frequent
        mistake for the true class in ``self.confusion`` when it has ≥ ``confusion_min`` errors,
        else "second")."""
        if not (isinstance(spec, str) and spec == "confusion"):
            return resolve_target(spec, clean, y)
        k = clean.shape[1]
        if self.confusion is None:
            raise InputError('target="confusion" needs a confusion count matrix',
                             "pass confusion=counts [K,K] (see infoswarm.attacks.confusion_counts)")
        counts = torch.as_tensor(self.confusion, device=y.device)
        m = counts.shape[0] if counts.dim() == 2 else -1
        if counts.shape != (m, m) or not 1 <= m <= k or counts.is_floating_point() or counts.dtype == torch.bool:
            raise InputError(f"confusion must be an integer count matrix [K, K] (K <= {k}, the model's classes), "
                             f"got {counts.dtype} of shape {tuple(counts.shape)}",
                             "pass confusion=infoswarm.attacks.confusion_counts(model, x, y)")
        counts = torch.nn.functional.pad(counts.long(), (0, k - m, 0, k - m))  # classes never seen: no errors
        second = resolve_target("second", clean, y)
        counts.fill_diagonal_(-1)
        best = counts[y].argmax(1)
        ok = counts[y].gather(1, best.view(-1, 1)).view(-1) >= self.confusion_min
        return torch.where(ok, best, second)

    def _scores(self, x: torch.Tensor, cls: torch.Tensor, unit: str, offset: torch.Tensor) -> torch.Tensor:
        """Selection scores: [N, H, W] for unit="pixel", [N, C, H, W] for "element"."""
        if self.pixel_rule == "random":
            shape = x.shape[1:] if unit == "element" else x.shape[2:]
            gens = image_generators(self.seed, offset, "")
            return torch.stack([torch.rand(shape, generator=g) for g in gens]).to(x.device) \
                if gens else torch.empty(0, *shape, device=x.device)
        if self.pixel_rule == "saliency":
            logits, jac = influence.logit_jacobian(self.model, x)
            p = torch.softmax(logits.double(), 1)
            idx = torch.arange(x.shape[0], device=x.device)
            grad = jac[idx, cls].double() - torch.einsum("nk,nkchw->nchw", p, jac.double())
            return grad.abs() if unit == "element" else grad.square().sum(1).sqrt()
        fi_eps = self.fi_eps if self.pixel_rule == "fi-eps" else None
        return influence.pixel_fi(self.model, x, cls, unit=unit, fi_eps=fi_eps,  # type: ignore[arg-type]
                                  fi_eps_scale=self.fi_eps_scale)

    def _select(self, x: torch.Tensor, cls: torch.Tensor, offset: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Perturbed entries as flat indices into C·H·W, [N, m] (−1 padding), and locations."""
        n, c, h, w = x.shape
        if self.pixels is not None:
            if self.pixels > h * w:
                raise InputError(f"pixels={self.pixels} exceeds the {h}x{w} = {h * w} pixels of an image",
                                 f"pass at most {h * w}")
            score = self._scores(x, cls, "pixel", offset).flatten(1)
            loc = torch.argsort(score, dim=1, descending=True, stable=True)[:, : self.pixels]   # [N, k]
            ent = (torch.arange(c, device=x.device).view(1, 1, c) * h * w + loc.unsqueeze(-1)).flatten(1)
            return ent, loc
        assert self.fi_threshold is not None                  # the constructor takes exactly one of the two
        score = self._scores(x, cls, "element", offset).flatten(1)                             # [N, CHW]
        keep = score >= self.fi_threshold
        m = max(int(keep.sum(1).max()), 1)
        order = torch.argsort(torch.where(keep, score, torch.full_like(score, -1.0)), dim=1,
                              descending=True, stable=True)[:, :m]
        ent = torch.where(keep.gather(1, order), order, torch.full_like(order, -1))
        pix = torch.where(ent >= 0, ent % (h * w), ent)
        return ent, pix

    def _swarm(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor, ent: torch.Tensor,
               active: torch.Tensor, iterations: int, seeds: list[int]
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One swarm over the images in ``active`` (image i's stream seeded with seeds[i]);
        returns (δ [N,m], success [N], queries [N])."""
        flat = x.flatten(1)
        valid = ent >= 0
        safe = ent.clamp(min=0)
        xv = flat.gather(1, safe)
        if self.bounds == "box":
            lo, hi = (-xv).clamp(min=-self.eps), (1 - xv).clamp(max=self.eps)
        else:
            lo, hi = -self.eps * xv, self.eps * (1 - xv)
        lo, hi = torch.where(valid, lo, 0.0), torch.where(valid, hi, 0.0)
        crit, lam, model, bs = self.criterion, self.lam, self.model, self.batch_size

        def objective(pos: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            b, p, m = pos.shape
            xa = flat[idx].unsqueeze(1).expand(b, p, -1).clone()
            xa.scatter_add_(2, safe[idx].unsqueeze(1).expand(b, p, m), torch.where(valid[idx].unsqueeze(1), pos, 0.0))
            xa = xa.clamp(0.0, 1.0).view(b * p, *x.shape[1:])
            probs = probs_of(model, xa, bs).view(b, p, -1)
            ok, aim, _, _ = crit.evaluate(probs, y[idx].unsqueeze(1).expand(b, p),
                                          target[idx].unsqueeze(1).expand(b, p))
            # 1e7·(aim + [not successful]): every failing particle ranks behind every successful
            # one (λ·Σ|δ| < 1e7), and failing ones keep the paper's order by aim.
            q = 1e7 * (aim + (~ok).double()) + lam * pos.abs().sum(-1).double()
            return q.to(pos.dtype), ok

        cfg = SwarmConfig(**{**self.swarm.__dict__, "iterations": iterations})
        res = minimize(objective, lo, hi, cfg, seeds=seeds, active=active)
        return res.position, res.success, res.evaluations

    @staticmethod
    def _apply(x: torch.Tensor, ent: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1).clone()
        flat.scatter_add_(1, ent.clamp(min=0), torch.where(ent >= 0, delta, 0.0))
        return flat.view_as(x).clamp(0.0, 1.0)

    def _run(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor, offset: torch.Tensor,
             call: Call) -> AttackResult:
        fi_class = torch.where(target >= 0, target, y)
        ent, loc = self._select(x, fi_class, offset)
        seeds = [image_seed(self.seed, g, "swarm") for g in offset.tolist()]
        all_imgs = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        delta, success, queries = self._swarm(x, y, target, ent, all_imgs, self.swarm.iterations, seeds)
        x_adv = self._apply(x, ent, delta)
        if self.restart and self.restart_iterations > 0:
            probs = probs_of(self.model, x_adv, self.batch_size)
            still = ~success & (probs.argmax(1) == y)
            if still.any():
                new_t = target.clone()
                best_wrong = probs.masked_fill(torch.nn.functional.one_hot(y, probs.shape[1]).bool(),
                                               float("-inf")).argmax(1)
                if isinstance(call.spec, str):  # the target was chosen by the attack: switch to the best wrong class
                    new_t = torch.where(still & (target >= 0), best_wrong, target)
                d2, s2, q2 = self._swarm(x, y, new_t, ent, still, self.restart_iterations, seeds)
                use = still & s2
                delta = torch.where(use.unsqueeze(1), d2, delta)
                target = torch.where(use, new_t, target)
                queries = queries + q2
                x_adv = self._apply(x, ent, delta)
        # L∞ is guaranteed by the bounds; clamp once more against rounding in x + δ.
        x_adv = torch.minimum(torch.maximum(x_adv, x - self.eps), x + self.eps).clamp(0, 1)
        return self._finish(x, x_adv, y, target, queries, indices=loc)


@torch.no_grad()
def confusion_counts(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Confusion matrix [K, K] (true row, predicted column) of ``model`` on [0,1] or uint8 images."""
    preds = []
    for i in range(0, len(x), batch_size):
        xb = x[i: i + batch_size]
        xb = unit_float(xb)
        preds.append(model(xb).argmax(1))
    pred = torch.cat(preds)
    k = int(max(int(pred.max()), int(y.max())) + 1)
    return torch.bincount(y * k + pred, minlength=k * k).view(k, k)
