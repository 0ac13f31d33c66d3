"""Adversarial universality made measurable (the paper claims it but does not define it).

(a) Cross-image, shared perturbation: choose k pixel locations from FI aggregated over a fit
    batch (mean pixel FI of log p_true), then let the swarm optimise ONE δ on those locations
    for the whole batch (or one δ per true class). Report its fooling rate — the share of
    correctly classified held-out images it misclassifies — next to a random control (same
    number of pixels, random locations, random ±eps values).
(b) Cross-image, pattern reuse: take the perturbation found by mFI-PSO for one image (its
    pixels and values) and add it to other images.
(c) Cross-model, transfer: adversarial images made on one model, evaluated on another.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import influence
from .attacks.base import probs_of
from .checks import check_classes, check_images
from .errors import InputError
from .swarm import SwarmConfig, minimize


@dataclass
class SharedPerturbation:
    """One δ per group: ``locations`` [G, k] pixel indices h·W + w, ``delta`` [G, C, k] values
    added to those pixels (clipped to [0, 1] when applied); ``groups`` [G] the true class each
    δ is for (−1: every class)."""

    locations: torch.Tensor
    delta: torch.Tensor
    groups: torch.Tensor
    eps: float

    def apply(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Add the group's δ to each image [N,C,H,W] (by its label y for per-class δ)."""
        check_images(x)
        n, c, h, w = x.shape
        if self.groups[0] < 0:
            g = torch.zeros(n, dtype=torch.long, device=x.device)
        else:
            lookup = {int(cls): i for i, cls in enumerate(self.groups.tolist())}
            g = torch.tensor([lookup.get(int(v), -1) for v in y.tolist()], device=x.device)
        out = x.clone().flatten(2)
        has = g >= 0
        gi = g.clamp(min=0)
        loc = self.locations[gi].unsqueeze(1).expand(n, c, -1)               # [N, C, k]
        vals = torch.where(has.view(-1, 1, 1), self.delta[gi], torch.zeros_like(self.delta[gi]))
        out.scatter_add_(2, loc, vals)
        return out.view_as(x).clamp(0.0, 1.0)


def fooling_rate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor,
                 batch_size: int = 1024) -> dict[str, float]:
    """Among images the model classifies correctly, the share misclassified after the change."""
    clean = probs_of(model, x, batch_size).argmax(1) == y
    after = probs_of(model, x_adv, batch_size).argmax(1) == y
    n = int(clean.sum())
    fooled = int((clean & ~after).sum())
    return {"correct_before": n, "fooled": fooled, "fooling_rate": fooled / n if n else 0.0,
            "accuracy_before": float(clean.double().mean()), "accuracy_after": float(after.double().mean())}


def shared_perturbation(model: nn.Module, x: torch.Tensor, y: torch.Tensor, pixels: int, *,
                        eps: float = 0.15, per_class: bool = False, particles: int = 40,
                        iterations: int = 20, seed: int = 0, batch_size: int = 1024,
                        pixel_rule: str = "fi") -> SharedPerturbation:
    """Optimise one k-pixel δ (or one per true class) on fit images x [N,C,H,W], labels y [N].

    Locations: top-k of the mean pixel score over the group's images — exact pixel FI of
    log p_true (``pixel_rule="fi"``), or the mean gradient norm of log p_true ("saliency").
    Objective:
    the mean log-margin relu(log p_y − log p_best-wrong) over the group's images — unlike a
    probability gap it still moves for confident images — so the swarm pushes all of them
    towards misclassification at once."""
    check_images(x)
    n, c, h, w = x.shape
    if not 0 < pixels <= h * w:
        raise InputError(f"pixels must be in 1..{h * w}, got {pixels}", f"pass pixels=1 to {h * w}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps <= 1:
        raise InputError(f"eps must be positive and at most 1 (pixel units), got {eps!r}", "pass e.g. eps=0.15")
    y = check_classes(y, n, probs_of(model, x[:1]).shape[1])
    if pixel_rule == "fi":
        fi = influence.pixel_fi(model, x, y, unit="pixel", batch_size=64).flatten(1)   # [N, HW]
    elif pixel_rule == "saliency":
        logits, jac = influence.logit_jacobian(model, x)
        p = torch.softmax(logits.double(), 1)
        grad = jac[torch.arange(n), y].double() - torch.einsum("nk,nkchw->nchw", p, jac.double())
        fi = grad.square().sum(1).flatten(1)
    else:
        raise InputError(f"unknown pixel_rule {pixel_rule!r}", "use fi or saliency")
    groups = torch.unique(y) if per_class else torch.tensor([-1])
    members = [(y == g) if g >= 0 else torch.ones_like(y, dtype=torch.bool) for g in groups.tolist()]
    locations = torch.stack([fi[m].mean(0).topk(pixels).indices for m in members])   # [G, k]
    flat = x.flatten(2)                                                               # [N, C, HW]

    def objective(pos: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        vals = []
        for row, gi in zip(pos, idx.tolist()):          # one group at a time: [P, C*k]
            m = members[gi]
            xs, ys = flat[m], y[m]
            p_, q = row.shape[0], xs.shape[0]
            xa = xs.unsqueeze(0).expand(p_, -1, -1, -1).clone()                     # [P, q, C, HW]
            loc = locations[gi].view(1, 1, 1, -1).expand(p_, q, c, -1)
            xa.scatter_add_(3, loc, row.view(p_, 1, c, pixels).expand(p_, q, c, pixels))
            probs = probs_of(model, xa.clamp(0, 1).view(p_ * q, c, h, w), batch_size).view(p_, q, -1)
            logp = probs.clamp(min=1e-300).log()
            true = logp.gather(2, ys.view(1, q, 1).expand(p_, q, 1)).squeeze(2)
            wrong = logp.scatter(2, ys.view(1, q, 1).expand(p_, q, 1), float("-inf")).amax(2)
            vals.append((true - wrong).clamp(min=0).mean(1))  # mean log-margin of the group
        v = torch.stack(vals).to(pos.dtype)
        return v, torch.zeros_like(v, dtype=torch.bool)

    g_count = len(members)
    lo = torch.full((g_count, c * pixels), -eps, dtype=x.dtype, device=x.device)
    hi = torch.full((g_count, c * pixels), eps, dtype=x.dtype, device=x.device)
    cfg = SwarmConfig(particles=particles, iterations=iterations, vmax_frac=0.2, stop_on_success=False)
    res = minimize(objective, lo, hi, cfg, seeds=[seed] * g_count)
    return SharedPerturbation(locations=locations, delta=res.position.view(g_count, c, pixels),
                              groups=groups, eps=eps)


def shared_study(model: nn.Module, x: torch.Tensor, y: torch.Tensor, pixels: int, *, fit: int, holdout: int,
                 eps: float = 0.15, per_class: bool = False, particles: int = 40, iterations: int = 20,
                 seed: int = 0, pixel_rule: str = "fi") -> tuple[SharedPerturbation, dict]:
    """The shared-perturbation experiment on images x [N, C, H, W] in [0, 1] with labels y [N]:
    :func:`shared_perturbation` fitted on the first ``fit`` images, its fooling rate there and
    on the next ``holdout`` (held-out) images, and the fooling rate of a random ``pixels``-pixel
    control on the held-out images (a log line per stage). Refuses fewer than ``fit + 1``
    images. Returns the perturbation and the numbers (``pixels``, ``eps``, ``per_class``,
    ``fit_images``, ``holdout_images``, ``fit``, ``holdout``, ``random_control``, ``locations``,
    ``groups``)."""
    from .progress import LogProgress

    if len(x) < fit + 1:
        raise InputError(f"only {len(x)} images for `fit` {fit} plus a hold-out", "raise `limit` or lower `fit`")
    xf, yf = x[:fit], y[:fit]
    xh, yh = x[fit: fit + holdout], y[fit: fit + holdout]
    stages = LogProgress("universality", 4, "stages (fit, fit images, held-out, control)")
    sp = shared_perturbation(model, xf, yf, pixels, eps=eps, per_class=per_class, particles=particles,
                             iterations=iterations, seed=seed, pixel_rule=pixel_rule)
    stages.update(1)
    fit_rate = fooling_rate(model, xf, yf, sp.apply(xf, yf))
    stages.update(2)
    held = fooling_rate(model, xh, yh, sp.apply(xh, yh))
    stages.update(3)
    control = fooling_rate(model, xh, yh, random_control(xh, pixels, eps, seed))
    stages.update(4)
    return sp, {"pixels": pixels, "eps": eps, "per_class": per_class, "fit_images": len(xf),
                "holdout_images": len(xh), "fit": fit_rate, "holdout": held, "random_control": control,
                "locations": sp.locations.tolist(), "groups": sp.groups.tolist()}


def random_control(x: torch.Tensor, pixels: int, eps: float, seed: int = 0) -> torch.Tensor:
    """The control for (a): each image gets k random pixel locations moved by ±eps at random."""
    gen = torch.Generator().manual_seed(seed)
    n, c, h, w = x.shape
    loc = torch.rand(n, h * w, generator=gen).topk(pixels, 1).indices                   # [N, k]
    sign = torch.where(torch.rand(n, c, pixels, generator=gen) < 0.5, -eps, eps).to(x.dtype)
    out = x.clone().flatten(2)
    out.scatter_add_(2, loc.unsqueeze(1).expand(n, c, pixels).to(x.device), sign.to(x.device))
    return out.view_as(x).clamp(0.0, 1.0)


def pattern_reuse(model: nn.Module, x_src: torch.Tensor, x_adv_src: torch.Tensor,
                  x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> dict[str, float]:
    """(b): add each source image's perturbation (x_adv_src − x_src) to every image of x; the
    mean and the best fooling rate over sources."""
    check_images(x)
    rates = []
    for s in range(len(x_src)):
        d = (x_adv_src[s] - x_src[s]).unsqueeze(0)
        rates.append(fooling_rate(model, x, y, (x + d).clamp(0, 1), batch_size)["fooling_rate"])
    t = torch.tensor(rates, dtype=torch.float64)
    return {"sources": len(rates), "mean_fooling_rate": float(t.mean()) if rates else 0.0,
            "max_fooling_rate": float(t.max()) if rates else 0.0}


def transfer(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor,
             success: torch.Tensor | None = None, batch_size: int = 1024) -> dict[str, float]:
    """(c): how adversarial images made on another model fare on ``model``: its accuracy on x
    and on x_adv, and the share of the source's successes that also fool it."""
    check_images(x)
    check_images(x_adv)
    pred_x = probs_of(model, x, batch_size).argmax(1)
    pred_a = probs_of(model, x_adv, batch_size).argmax(1)
    ok = pred_x == y
    src = success if success is not None else torch.ones_like(y, dtype=torch.bool)
    base = ok & src
    return {"images": len(y), "accuracy_clean": float(ok.double().mean()),
            "accuracy_adversarial": float((pred_a == y).double().mean()),
            "source_successes_correct_here": int(base.sum()),
            "transfer_rate": float((base & (pred_a != y)).sum()) / max(int(base.sum()), 1)}
