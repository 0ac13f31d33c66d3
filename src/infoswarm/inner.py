"""Inner L0 attacks and smoothed objectives for sparse adversarial training (pure maths, batched).

Used by :mod:`infoswarm.sparse_hardening` on every training batch; they are not
:class:`~infoswarm.attacks.Attack` objects (no checks, no result type, no per-image seeding):
they take a float batch x [B, C, H, W] in [0, 1] with labels y [B] and return adversarial
images of the same shape that differ from x in at most ``k`` pixel locations (all channels of a
location may change), every changed entry inside the box [max(0, x − eps), min(1, x + eps)]
(eps = 1: pure L0, values in {0, 1}).

Inner attacks (the model is put in eval mode by the caller; the attack loss is the
cross-entropy of the true label, which the attack raises):

* ``"one-step"`` — one backward pass. Each location's first-order *gain* is
  Σ_channels |∂CE/∂x| · |v* − x| with v* the corner of the box the gradient points to
  (``corner="gradient"``), or Σ_channels max(0, ∂CE/∂x · (v* − x)) with v* the corner farthest
  from x (``corner="far"``: every chosen location really changes; on near-binary images such as
  MNIST the gradient's corner is x itself for about a third of uniformly drawn locations, which
  wastes them); the
  ``k − ⌊random_frac·k⌋`` locations of largest gain (``prior="gain"``) or as many uniformly
  random ones (``prior="uniform"``) are set to v*, and the remaining ⌊random_frac·k⌋ locations
  are drawn uniformly among the rest (also at v*). Keeping random locations matters: a purely
  greedy one-step attack picks poor locations and one-step L0 training then collapses
  (DESIGN §6).
* ``"swap"`` — the one-step start, then ``steps`` search steps of one forward pass each: per
  image, ``m`` locations of the current set leave (uniformly) and ``m`` enter, drawn from the
  prior (gain map mixed half-and-half with uniform, or uniform) among the locations outside the
  set, at v*; the candidate is kept when its loss is not lower. m follows a halving schedule
  from ⌈k/4⌉ to 1.
* ``"pgd0"`` — the one-step start, then ``steps`` L0-PGD steps (a gradient step of size
  ``alpha``·D on the L1-normalised gradient, then the exact projection onto k pixels in the box,
  :func:`infoswarm.attacks.pgd0.project_l0`); one forward and one backward pass each; the
  iterate of highest loss is returned.
* ``"spgd"`` — ``steps`` sparse-PGD steps (DESIGN §6, as sAT's inner attack; after Zhong, Liu &
  Huang 2024, our own compact version without restarts): the perturbation is a value tensor in
  the box (started at v*, so the one-step pass is not wasted) and a mask of logits u over the H·W
  locations (started from the prior: uniform noise, or the gain's log plus noise); the model sees
  the value at the k locations of largest u. Each batch uses one of the two gradient variants,
  drawn from ``gen`` with equal odds: through the projected mask (straight-through; one forward
  and one backward pass per step) or through the continuous mask σ(u) (one more forward pass per
  step to judge the projected image). Values step by 0.25 of the box's width along the sign of
  their gradient; u steps by 0.25·√(H·W) along its L2-normalised gradient. The judged image of
  highest loss is returned; its changed values lie anywhere in the box (not only at corners).

* ``"swarm"`` — SparseSwarm (:class:`infoswarm.attacks.SparseSwarm`, the evaluation's strongest
  member) with a budget of ``steps`` queries per image, its margin loss, corners other than the
  pixel's own (the far corner on grey images) and its ``prior`` ("uniform", or "gain": its
  gradient map, refreshed at the incumbent); an image stops at its first misclassification, so
  the passes reported are the mean over the batch (rounded up). Its seed is drawn from ``gen``.
  ``corner``, ``random_frac`` and ``alpha`` do not apply; ``prior="both"`` is not offered.

``prior="both"`` runs the attack twice from one clean gradient, with uniform and with gain
locations, and keeps per image the result of higher loss (the shared gradient pass once, the
passes of both runs and two judging forward passes are counted):
a model trained on it sees both the randomly and the gradient-placed perturbations.

Objectives (:func:`objective`): ``"ce"`` (cross-entropy on the adversarial images, with label
smoothing), ``"trades"`` (cross-entropy on the clean images + β·KL(p_clean ‖ p_adv), with label
smoothing on the clean term), each with optional per-image weights.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .attacks.pgd0 import project_l0
from .attacks.sparse_swarm import SparseSwarm
from .attacks.spgd import top_k_mask

InnerKind = Literal["one-step", "swap", "pgd0", "spgd", "swarm"]
INNER: tuple[str, ...] = ("one-step", "swap", "pgd0", "spgd", "swarm")
SPGD_STEP = 0.25
PriorKind = Literal["gain", "uniform", "both"]
PRIORS: tuple[str, ...] = ("gain", "uniform", "both")
CornerKind = Literal["gradient", "far"]
CORNERS: tuple[str, ...] = ("gradient", "far")
ObjectiveKind = Literal["ce", "trades"]
OBJECTIVES: tuple[str, ...] = ("ce", "trades")


def _box(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    return (x - eps).clamp(min=0.0), (x + eps).clamp(max=1.0)


def _ce_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-image CE [B], its gradient w.r.t. x [B, C, H, W]): one forward and one backward pass."""
    xa = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(xa), y, reduction="none")
        (g,) = torch.autograd.grad(loss.sum(), xa)
    return loss.detach(), g


def gain(g: torch.Tensor, x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
         corner: CornerKind = "gradient") -> tuple[torch.Tensor, torch.Tensor]:
    """First-order gain of each location [B, H·W] (≥ 0) when its channels move to the corner
    v* [B, C, H, W]: the one the gradient g points to (hi where g > 0, else lo; ``"gradient"``),
    or the one farthest from x (hi where hi − x > x − lo, else lo; ``"far"``, whose gain counts
    only the channels that the move helps to first order)."""
    if corner == "far":
        v = torch.where(hi - x > x - lo, hi, lo)
        return (g * (v - x)).clamp(min=0).sum(1).flatten(1), v
    v = torch.where(g > 0, hi, lo)
    return (g.abs() * (v - x).abs()).sum(1).flatten(1), v


def _write(x: torch.Tensor, v: torch.Tensor, loc: torch.Tensor) -> torch.Tensor:
    """x with locations loc [B, k] (flat h·W + w) replaced by v's values there."""
    b, c, h, w = x.shape
    mask = torch.zeros(b, h * w, dtype=torch.bool, device=x.device).scatter_(1, loc, True)
    return torch.where(mask.view(b, 1, h, w), v, x)


def _gumbel_topk(logp: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """k distinct indices per row drawn without replacement with probabilities exp(logp) [B, n]."""
    u = torch.rand(logp.shape, generator=gen, dtype=torch.float64).to(logp.device)
    gumbel = -torch.log(-torch.log(u.clamp(1e-300, 1 - 2.0 ** -53)))
    return (logp.double() + gumbel).topk(k, dim=1).indices


def one_step_support(score: torch.Tensor, k: int, random_frac: float, prior: PriorKind,
                     gen: torch.Generator) -> torch.Tensor:
    """Locations [B, k]: k − ⌊random_frac·k⌋ by largest ``score`` [B, HW] ("gain") or uniformly
    ("uniform"), the rest uniformly among the remaining locations."""
    b, hw = score.shape
    n_rand = int(random_frac * k)
    n_top = k - n_rand
    flat = torch.zeros(b, hw, dtype=torch.float64, device=score.device)
    if prior == "gain":
        top = score.topk(n_top, dim=1).indices if n_top else score.new_zeros(b, 0, dtype=torch.long)
    else:
        top = _gumbel_topk(flat, n_top, gen)
    if n_rand == 0:
        return top
    rest = flat.scatter(1, top, float("-inf"))
    return torch.cat([top, _gumbel_topk(rest, n_rand, gen)], 1)


def swap_size(step: int, steps: int, m0: int) -> int:
    """Locations swapped at swap step ``step`` (0-based) of ``steps``: ``m0`` halved
    ⌊log2 m0⌋ times in equal stretches of the steps, so the last stretch swaps one location
    (m0 = 15: 15, 7, 3, 1); coarse moves first, single-location refinements at the end."""
    halvings = max(m0, 1).bit_length() - 1
    return max(1, m0 >> (step * (halvings + 1) // max(steps, 1)))


def inner_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int, *, kind: InnerKind = "one-step",
                 steps: int = 0, eps: float = 1.0, random_frac: float = 0.5, prior: PriorKind = "gain",
                 alpha: float = 0.1, corner: CornerKind = "gradient", gen: torch.Generator
                 ) -> tuple[torch.Tensor, dict[str, int], torch.Tensor]:
    """Adversarial versions [B, C, H, W] of a batch x (see the module docstring), the passes
    spent per image (``{"forward": …, "backward": …}``) and the clean images' cross-entropy [B]
    (from the first pass; exp(CE) − 1 is the image FI of the true class). ``steps`` is ignored by
    "one-step"; ``corner`` chooses the values written (see the module docstring); ``gen`` is a
    CPU generator (all randomness comes from it)."""
    b, c, h, w = x.shape
    hw = h * w
    if not 1 <= k <= hw:
        raise ValueError(f"k={k} must lie in 1..{hw}")
    if corner not in CORNERS:
        raise ValueError(f"unknown corner {corner!r}")
    if kind == "swarm":
        return _swarm(model, x, y, k, steps, eps, prior, gen)
    loss0, g = _ce_grad(model, x, y)
    lo, hi = _box(x, eps)
    score, v = gain(g, x, lo, hi, corner)
    if prior == "both":              # per image, the stronger of the uniform and the gain run (one gradient)
        xu, pu = _from_gain(model, x, y, k, score, v, lo, hi, kind, steps, random_frac, "uniform", alpha, gen)
        xg, pg = _from_gain(model, x, y, k, score, v, lo, hi, kind, steps, random_frac, "gain", alpha, gen)
        with torch.no_grad():
            lu = F.cross_entropy(model(xu), y, reduction="none")
            lg = F.cross_entropy(model(xg), y, reduction="none")
        both = {key: pu[key] + pg[key] - 1 for key in pu}       # the shared gradient pass counted once
        both["forward"] += 2
        return torch.where((lg > lu).view(-1, 1, 1, 1), xg, xu), both, loss0
    xa, passes = _from_gain(model, x, y, k, score, v, lo, hi, kind, steps, random_frac, prior, alpha, gen)
    return xa, passes, loss0


def _swarm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int, steps: int, eps: float, prior: PriorKind,
           gen: torch.Generator) -> tuple[torch.Tensor, dict[str, int], torch.Tensor]:
    """The "swarm" inner attack (see the module docstring): SparseSwarm at ``steps`` queries."""
    if prior not in ("uniform", "gain"):
        raise ValueError(f'the swarm inner attack takes prior "uniform" or "gain", not {prior!r}')
    if steps < 1:
        raise ValueError("the swarm inner attack needs steps >= 1 (its query budget per image)")
    with torch.no_grad():
        loss0 = F.cross_entropy(model(x), y, reduction="none")
    seed = int(torch.randint(0, 2 ** 62, (1,), generator=gen))
    res = SparseSwarm(model, pixels=k, budget=steps, eps=eps, prior=prior, seed=seed)(x, y)
    grad = res.grad_evals if res.grad_evals is not None else torch.zeros(1)
    passes = {"forward": 1 + math.ceil(float(res.queries.double().mean())),
              "backward": math.ceil(float(grad.double().mean()))}
    return res.x_adv.to(x.dtype).detach(), passes, loss0


def _from_gain(model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int, score: torch.Tensor, v: torch.Tensor,
               lo: torch.Tensor, hi: torch.Tensor, kind: InnerKind, steps: int, random_frac: float,
               prior: PriorKind, alpha: float, gen: torch.Generator) -> tuple[torch.Tensor, dict[str, int]]:
    """:func:`inner_attack` for one prior ("gain" or "uniform") from the gain map of the clean
    images' CE gradient (``score`` [B, HW] and the best corner values ``v`` [B, C, H, W] in the
    box [lo, hi]; the gradient's forward and backward pass are counted in the passes)."""
    b, c, h, w = x.shape
    hw = h * w
    loc = one_step_support(score, k, random_frac, prior, gen)
    xa = _write(x, v, loc)
    passes = {"forward": 1, "backward": 1}
    if kind == "one-step" or steps <= 0:
        return xa.detach(), passes
    if kind == "swap":
        with torch.no_grad():
            cur = F.cross_entropy(model(xa), y, reduction="none")
        passes["forward"] += 1
        if prior == "gain":
            tot = score.sum(1, keepdim=True).clamp(min=1e-30)
            logw = torch.log((0.5 / hw + 0.5 * score / tot).clamp(min=1e-300))
        else:
            logw = torch.zeros(b, hw, dtype=torch.float64, device=x.device)
        m0 = max(1, -(-k // 4))
        for s in range(steps):
            m = min(swap_size(s, steps, m0), hw - k) if hw > k else 0
            if m == 0:
                break
            u = torch.rand(b, k, generator=gen, dtype=torch.float64).to(x.device)
            slots = u.topk(m, dim=1, largest=False).indices
            sc = logw.double().scatter(1, loc, float("-inf"))
            new = _gumbel_topk(sc, m, gen)
            cand = loc.scatter(1, slots, new)
            xc = _write(x, v, cand)
            with torch.no_grad():
                lc = F.cross_entropy(model(xc), y, reduction="none")
            passes["forward"] += 1
            better = lc >= cur
            loc = torch.where(better.view(-1, 1), cand, loc)
            xa = torch.where(better.view(-1, 1, 1, 1), xc, xa)
            cur = torch.where(better, lc, cur)
        return xa.detach(), passes
    if kind == "pgd0":
        best, best_loss = xa.detach(), torch.full((b,), -float("inf"), device=x.device)
        cur = xa.detach()
        d = x[0].numel()
        for _ in range(steps):
            lc, gc = _ce_grad(model, cur, y)
            passes["forward"] += 1
            passes["backward"] += 1
            take = lc > best_loss
            best = torch.where(take.view(-1, 1, 1, 1), cur, best)
            best_loss = torch.where(take, lc, best_loss)
            step = alpha * d * gc / gc.abs().flatten(1).sum(1).clamp(min=1e-12).view(-1, 1, 1, 1)
            cur = project_l0(x, cur + step, lo, hi, k).detach()
        with torch.no_grad():
            lc = F.cross_entropy(model(cur), y, reduction="none")
        passes["forward"] += 1
        take = lc > best_loss
        return torch.where(take.view(-1, 1, 1, 1), cur, best).detach(), passes
    if kind == "spgd":
        noise = torch.rand(b, hw, generator=gen, dtype=torch.float64).to(x.device)
        # logistic noise, shifted so that σ(u) has median k / (H·W): the continuous image starts near
        # the mass of k pixels (the top-k, and so the projected variant, ignore the shift)
        u = (torch.log(noise / (1 - noise)).clamp(-30, 30) + math.log(k / max(hw - k, 1))).to(x.dtype)
        if prior == "gain":
            u = u + torch.log((score / score.sum(1, keepdim=True).clamp(min=1e-30)).clamp(min=1e-12)).to(x.dtype)
        projected = bool(torch.rand(1, generator=gen).item() < 0.5)
        return _spgd(model, x, y, k, steps, lo, hi, v, u.view(b, 1, h, w), projected, passes)
    raise ValueError(f"unknown inner attack {kind!r}")


def _spgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int, steps: int, lo: torch.Tensor,
          hi: torch.Tensor, val: torch.Tensor, u: torch.Tensor, projected: bool, passes: dict[str, int]
          ) -> tuple[torch.Tensor, dict[str, int]]:
    """The "spgd" inner attack's loop (see the module docstring); val [B, C, H, W] in [lo, hi],
    u [B, 1, H, W] the mask logits."""
    b = x.shape[0]
    hw = x.shape[2] * x.shape[3]
    width = hi - lo
    best = _write(x, val, u.flatten(1).topk(k, dim=1).indices)
    best_loss = torch.full((b,), -float("inf"), device=x.device)
    for _ in range(steps):
        val_ = val.detach().requires_grad_(True)
        u_ = u.detach().requires_grad_(True)
        with torch.enable_grad():
            hard = top_k_mask(u_.detach(), k).to(x.dtype)
            soft = torch.sigmoid(u_)
            mask = hard + soft - soft.detach() if projected else soft
            loss = F.cross_entropy(model(x + mask * (val_ - x)), y, reduction="none")
            gv, gu = torch.autograd.grad(loss.sum(), (val_, u_))
        passes["forward"] += 1
        passes["backward"] += 1
        judged = x + hard * (val - x)
        if projected:
            lj = loss.detach()
        else:
            with torch.no_grad():
                lj = F.cross_entropy(model(judged), y, reduction="none")
            passes["forward"] += 1
        take = lj > best_loss
        best = torch.where(take.view(-1, 1, 1, 1), judged, best)
        best_loss = torch.where(take, lj, best_loss)
        val = torch.minimum(torch.maximum(val + SPGD_STEP * width * gv.sign(), lo), hi).detach()
        norm = gu.flatten(1).norm(dim=1).clamp(min=1e-12).view(-1, 1, 1, 1)
        u = (u + SPGD_STEP * hw ** 0.5 * gu / norm).detach()
    with torch.no_grad():
        judged = x + top_k_mask(u, k).to(x.dtype) * (val - x)
        lj = F.cross_entropy(model(judged), y, reduction="none")
    passes["forward"] += 1
    take = lj > best_loss
    return torch.where(take.view(-1, 1, 1, 1), judged, best).detach(), passes


def rank_weights(score: torch.Tensor, strength: float) -> torch.Tensor:
    """Per-image loss weights [B] with mean 1: 1 + strength·r, r the within-batch rank of
    ``score`` scaled to [0, 1] (highest score → r = 1), normalised to mean 1."""
    b = score.numel()
    if strength == 0 or b < 2:
        return torch.ones(b, device=score.device)
    r = score.argsort().argsort().float() / (b - 1)
    w = 1 + strength * r
    return (w / w.mean()).to(score.device)


def objective(logits_clean: torch.Tensor | None, logits_adv: torch.Tensor, y: torch.Tensor, *,
              kind: ObjectiveKind = "trades", beta: float = 3.0, label_smoothing: float = 0.0,
              weights: torch.Tensor | None = None) -> torch.Tensor:
    """The training loss (a scalar). "ce": CE(logits_adv, y) with label smoothing; "trades":
    CE(logits_clean, y) + β·KL(softmax(clean) ‖ softmax(adv)), per image, label smoothing on the
    CE term. ``weights`` [B] (mean 1) weighs each image's term."""
    if kind == "ce":
        per = F.cross_entropy(logits_adv, y, reduction="none", label_smoothing=label_smoothing)
    elif kind == "trades":
        if logits_clean is None:
            raise ValueError("trades needs the clean logits")
        ce = F.cross_entropy(logits_clean, y, reduction="none", label_smoothing=label_smoothing)
        kl = F.kl_div(F.log_softmax(logits_adv, 1), F.log_softmax(logits_clean, 1), reduction="none",
                      log_target=True).sum(1)
        per = ce + beta * kl
    else:
        raise ValueError(f"unknown objective {kind!r}")
    if weights is not None:
        per = per * weights
    return per.mean()
