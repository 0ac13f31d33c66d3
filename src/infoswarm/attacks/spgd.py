"""sparse-PGD (sPGD): white-box k-pixel attack with a magnitude tensor and a continuous mask
(after Zhong, Liu & Huang, ICML 2024; written from the paper's description, not its code).

The perturbation is split in two:

* a magnitude tensor p [N,C,H,W] with values in the allowed box [lo − x, hi − x]
  (lo = max(0, x − eps), hi = min(1, x + eps); eps = 1: pure L0, values free in [0, 1]);
* a continuous mask m = σ(u) [N,1,H,W] with values in (0, 1), one per pixel location, kept as
  its logits u (the sigmoid maps every step back into (0, 1)).

The model sees x + b(m) ⊙ p, where b(m) is the 0/1 mask of the k largest entries of m (per
image). One iteration judges that image (forward pass; an image stops at its first success) and
otherwise takes one gradient step on both parts, from g = ∇ₓ objective:

* p ← clip(p + alpha · (hi − lo) · sign(g)) at every location (our choice: the sign of the input
  gradient also outside the current support, so that a location the mask brings in arrives with
  a useful value; inside the support it is the sign of ∇_p);
* u ← u + beta · √(H·W) · s / ‖s‖₂, with s = (Σ_c g ⊙ p) · σ'(u) the gradient with respect to u
  (our choice of normalisation: L2 over the image's H·W locations, scaled so that the
  root-mean-square step per location is beta).

alpha = beta = 0.25, the authors' defaults (a quarter of p's range). Why the sigmoid rather than
clipping m to [0, 1]: with clipping, the mask steps pushed many locations to exactly 1, the
top-k among the ties was arbitrary, and the projected run broke 6 of 32 mnist-cnn digits at k =
10 in 100 steps (28 of 32 with the sigmoid; PGD0 at a similar cost: 28) — a measurement made
while writing this module, with a version since replaced, so no command in the repository
repeats it. The two variants differ in where the mask's gradient is taken:

* ``"projected"``: at the image the model judged, x + b(m) ⊙ p (the gradient with respect to
  the binary mask passed straight through to m): one forward and one backward pass per step;
* ``"unprojected"``: at the continuous image x + m ⊙ p: one forward pass to judge the
  projected image and one forward + backward pass at the continuous one per step;
* ``"cascade"`` (default, as in sparse-AutoAttack): projected for ``iterations`` steps, then
  unprojected, from a fresh start, on the images the projected run did not break.

Restarts: when an image's objective has not improved on its best since the last (re)start for
``patience`` steps in a row, its mask is drawn afresh (p is kept). Starts: p uniform in its box;
m uniform in (0, 1) for the projected run; for the unprojected run σ(logit(U) + s) with U
uniform and s = log(k / (H·W − k)) (median k / (H·W): the continuous image's perturbation starts
near the mass of k pixels; from uniform starts it broke 9 of 32 mnist-cnn digits at k = 10 in
100 steps, from starts shifted by −3 or −6 on the logit scale 22 or 21 (s = −4.4 there) —
measured while writing this module; with this start, on 32 digits at k = 5 and 300 steps, the
projected run alone broke 8, the unprojected 14, the cascade 18). All draws are counter-based
per image (seed, the image's position), so chunks, shards and batch sizes give the same results.

Objective (ascended): ``"ce"`` the cross-entropy of the true class (untargeted) or minus that of
the target (targeted); ``"margin"`` the log-probability margin of the judged class (the target,
or the best wrong class) over the best other class. A ``min_prob`` / ``max_prob`` window adds
penalties in log-probability units (as in the query attacks' loss). Success is the criterion's
(target, window).

Counts per image: ``queries`` = forward passes (projected: ≤ iterations; unprojected: ≤ 2 ·
iterations − 1; cascade: ≤ 3 · iterations − 1); ``grad_evals`` = backward passes whose gradient
was used (≤ iterations − 1 per variant; no gradient after an image's last judged step). Within a
batch the backward pass also runs through rows that have just succeeded (their gradient is
discarded); those are not counted. A failed image returns its best judged image (highest
objective), so the final re-verification needs no extra query.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from ..errors import InputError
from ._forward import padded_logits
from ._rng import image_keys, uniforms
from ._sparse import _box, _check_common, _check_size
from .base import Attack, Call, TargetSpec
from .result import AttackResult

__all__ = ["SPGD", "SPGD_LOSSES", "SPGD_VARIANTS"]

SPGD_VARIANTS: tuple[str, ...] = ("cascade", "projected", "unprojected")
SPGD_LOSSES: tuple[str, ...] = ("ce", "margin")
Variant = Literal["cascade", "projected", "unprojected"]
Loss = Literal["ce", "margin"]


def _objective(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor, kind: str,
               min_prob: float | None, max_prob: float | None) -> torch.Tensor:
    """Objective [M] (float64) to ascend, from logits [M, K], labels and targets [M] (−1 =
    untargeted); see the module docstring."""
    logp = torch.log_softmax(logits.double(), -1)
    k = logp.shape[-1]
    targeted = target >= 0
    lp_y = logp.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    judged = torch.where(targeted, target.clamp(min=0),
                         logp.detach().masked_fill(torch.nn.functional.one_hot(y, k).bool(), float("-inf")).argmax(-1))
    lp_j = logp.gather(-1, judged.unsqueeze(-1)).squeeze(-1)
    if kind == "ce":
        obj = torch.where(targeted, lp_j, -lp_y)
    else:
        others = logp.masked_fill(torch.nn.functional.one_hot(judged, k).bool(), float("-inf")).amax(-1)
        obj = lp_j - others
    if min_prob is not None:
        obj = obj - (math.log(min_prob) - lp_j).clamp(min=0)
    if max_prob is not None:
        obj = obj - (lp_j - math.log(max_prob)).clamp(min=0)
    return obj


_U_MAX = 30.0
"""|u| is kept below this (σ(30) = 1 − 1e-13: the mask's logits never overflow)."""


def top_k_mask(u: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask [N,1,H,W] of the k largest entries of u [N,1,H,W] per image (the support)."""
    flat = u.flatten(1)
    return torch.zeros_like(flat, dtype=torch.bool).scatter_(1, flat.topk(k, dim=1).indices, True).view_as(u)


def _start_mask(keys: torch.Tensor, step: int, stream: int, shape: tuple[int, ...], dtype: torch.dtype,
                shift: float = 0.0) -> torch.Tensor:
    """Mask logits u [n,1,H,W] = logit(U) + shift, U uniform in (0, 1) per location, drawn per
    image (counter-based); shift 0: σ(u) uniform in (0, 1)."""
    m = uniforms(keys, step, stream, (shape[2] * shape[3],)).clamp(1e-6, 1 - 1e-6)
    return (torch.logit(m) + shift).view(shape).to(dtype)


class SPGD(Attack):
    """sparse-PGD, batched (``SPGD(model, pixels=k, ...)(x, y)``); see the module docstring.

    Args:
        model: classifier, [0,1] images [N,C,H,W] -> logits [N,K], eval mode (differentiable).
        pixels: k, pixel locations that may change (all channels of each), 1..H·W.
        eps: per-entry bound in [0,1] pixel units; 1.0 = pure L0.
        iterations: steps per variant (≥ 1); the authors' evaluation script uses 300.
        variant: ``"cascade"`` (projected, then unprojected on its failures), ``"projected"``
            or ``"unprojected"``.
        loss: ``"ce"`` (default) or ``"margin"``.
        patience: steps without improvement before the mask restarts (≥ 1).
        alpha: p's step as a share of its box width (> 0); beta: m's root-mean-square step per
            location (> 0); both 0.25 by default.
        target, min_prob, max_prob: as for every attack.
        seed: seeds the starts and restarts together with each image's position.
        batch_size: images attacked together (≥ 1).

    Call: ``attack(x, y, target=None, offset=0)`` (the contract of :class:`.Attack`); the
    result's ``queries`` are forward passes and ``grad_evals`` backward passes.
    """

    uses = ("pixels", "eps", "budget")
    gradients = "always"
    defaults = {"pixels": 10, "eps": 1.0, "budget": 900, "target": None}

    def __init__(self, model: nn.Module, pixels: int = 10, eps: float = 1.0, iterations: int = 300,
                 variant: Variant = "cascade", loss: Loss = "ce", patience: int = 3, alpha: float = 0.25,
                 beta: float = 0.25, target: TargetSpec = None, min_prob: float | None = None,
                 max_prob: float | None = None, seed: int = 0, batch_size: int = 1024) -> None:
        super().__init__(model, target=target, min_prob=min_prob, max_prob=max_prob, seed=seed,
                         batch_size=batch_size)
        _check_common(pixels, eps, batch_size, self.criterion)
        for name, v in (("iterations", iterations), ("patience", patience)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(f"{name} must be a positive integer, got {v!r}", f"pass e.g. {name}=3")
        for name, f in (("alpha", alpha), ("beta", beta)):
            if isinstance(f, bool) or not isinstance(f, (int, float)) or not math.isfinite(f) or f <= 0:
                raise InputError(f"{name} must be a positive number, got {f!r}", f"pass e.g. {name}=0.25")
        if variant not in SPGD_VARIANTS:
            raise InputError(f"unknown variant {variant!r}", f"use one of {', '.join(SPGD_VARIANTS)}")
        if loss not in SPGD_LOSSES:
            raise InputError(f"unknown loss {loss!r}", f"use one of {', '.join(SPGD_LOSSES)}")
        self.pixels, self.eps, self.iterations, self.variant, self.loss = pixels, float(eps), iterations, variant, loss
        self.patience, self.alpha, self.beta = patience, float(alpha), float(beta)

    def query_budget(self) -> int | None:
        """Forward passes per image at most: one per projected step, two per unprojected step."""
        per_step = {"projected": 1, "unprojected": 2, "cascade": 3}[self.variant]
        return per_step * self.iterations

    def _run(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor, offset: torch.Tensor,
             call: Call) -> AttackResult:
        _check_size(self.pixels, x)
        n, dev = x.shape[0], x.device
        keys = image_keys(self.seed, offset).to(dev)
        best = x.clone()
        queries = torch.zeros(n, dtype=torch.long, device=dev)
        grads = torch.zeros(n, dtype=torch.long, device=dev)
        runs = {"cascade": (False, True), "projected": (False,), "unprojected": (True,)}[self.variant]
        for s in range(0, n, self.batch_size):
            sl = slice(s, s + self.batch_size)
            self._chunk(x[sl], y[sl], target[sl], keys[sl], runs, best[sl], queries[sl], grads[sl])
        return self._finish(x, best, y, target, queries, grad_evals=grads)

    def _chunk(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor, keys: torch.Tensor,
               runs: tuple[bool, ...], best: torch.Tensor, queries: torch.Tensor, grads: torch.Tensor) -> None:
        """Attack one chunk, writing the returned images and counts into best, queries and grads
        (views of the call's tensors)."""
        lo, hi = _box(x, self.eps)
        done = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        best_obj = torch.full((x.shape[0],), float("-inf"), dtype=torch.float64, device=x.device)
        for v, unprojected in enumerate(runs):
            idx = (~done).nonzero().view(-1)
            if idx.numel() == 0:
                break
            img, ok, obj, q, g = self.sweep(x[idx], y[idx], target[idx], keys[idx], lo[idx], hi[idx],
                                             unprojected, stream=4 * v)
            queries[idx] += q
            grads[idx] += g
            better = ok | (obj > best_obj[idx])
            best[idx[better]] = img[better]
            best_obj[idx[better]] = obj[better]
            done[idx[ok]] = True

    def sweep(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor, keys: torch.Tensor,
              lo: torch.Tensor, hi: torch.Tensor, unprojected: bool, stream: int
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One sPGD run of ``self.iterations`` steps on images x [n,C,H,W] (all still unbroken).

        ``keys`` [n] are the images' counter-based stream keys (:func:`._rng.image_keys`), lo/hi
        [n,C,H,W] the box, ``stream`` the stream id of the starting draws (the attack's own
        variants use 4·variant; :class:`.SparseSwarm`'s sPGD seed uses 40). Returns (image
        [n,C,H,W]: the first success, else the best judged image; success [n]; its objective [n]
        (float64); forward passes [n]; backward passes [n])."""
        n, c, h, w = x.shape
        dev, k, crit = x.device, self.pixels, self.criterion
        width = hi - lo
        dlo, dhi = lo - x, hi - x
        p = dlo + uniforms(keys, 0, stream, (c * h * w,)).view_as(x).to(x.dtype) * width
        # the unprojected run's continuous image perturbs every location by σ(u) ⊙ p: start it
        # near the mass of k pixels (median σ(u) = k / (H·W)); the projected run only uses
        # top-k(u) and the normalised step, so it starts uniform
        shift = math.log(k / max(h * w - k, 1)) if unprojected else 0.0
        u = _start_mask(keys, 0, stream + 1, (n, 1, h, w), x.dtype, shift)
        out = x.clone()
        out_obj = torch.full((n,), float("-inf"), dtype=torch.float64, device=dev)
        success = torch.zeros(n, dtype=torch.bool, device=dev)
        fwd = torch.zeros(n, dtype=torch.long, device=dev)
        bwd = torch.zeros(n, dtype=torch.long, device=dev)
        run_best = torch.full((n,), float("-inf"), dtype=torch.float64, device=dev)
        stall = torch.zeros(n, dtype=torch.long, device=dev)
        active = torch.ones(n, dtype=torch.bool, device=dev)
        rms = math.sqrt(h * w)
        for it in range(self.iterations):
            a = active.nonzero().view(-1)
            if a.numel() == 0:
                break
            xa, ya, ta = x[a], y[a], target[a]
            adv = torch.where(top_k_mask(u[a], k), (xa + p[a]).clamp(lo[a], hi[a]), xa)
            last = it == self.iterations - 1
            with torch.enable_grad():
                xg = adv.clone().requires_grad_(not unprojected and not last)
                with torch.set_grad_enabled(xg.requires_grad):
                    logits = padded_logits(self.model, xg)
                    obj = _objective(logits, ya, ta, self.loss, crit.min_prob, crit.max_prob)
                ok, _, _, _ = crit.evaluate(torch.softmax(logits.detach().double(), -1), ya, ta)
                fwd[a] += 1
                o = obj.detach()
                better = ok | (o > out_obj[a])
                out[a[better]] = adv[better]
                out_obj[a[better]] = o[better]
                success[a[ok]] = True
                active[a[ok]] = False
                go = ~ok
                if last or not go.any():
                    continue
                f = a[go]
                if unprojected:                 # the gradient at the continuous image x + m ⊙ p
                    xc = (x[f] + torch.sigmoid(u[f]) * p[f]).requires_grad_(True)
                    lc = padded_logits(self.model, xc)
                    fwd[f] += 1
                    (g,) = torch.autograd.grad(_objective(lc, y[f], target[f], self.loss, crit.min_prob,
                                                          crit.max_prob).sum(), xc)
                else:
                    (g,) = torch.autograd.grad(obj[go].sum(), xg)
                    g = g[go]
            bwd[f] += 1
            pf = p[f]
            mf = torch.sigmoid(u[f])
            s = (g * pf).sum(1, keepdim=True) * mf * (1 - mf)                 # ∂objective/∂u [f,1,H,W]
            s = s / s.flatten(1).norm(dim=1).clamp(min=1e-30).view(-1, 1, 1, 1)
            p[f] = torch.minimum(torch.maximum(pf + self.alpha * width[f] * g.sign(), dlo[f]), dhi[f])
            u[f] = (u[f] + self.beta * rms * s).clamp(-_U_MAX, _U_MAX)
            # restarts: the mask is drawn afresh after `patience` steps without a new best
            of = o[go]
            improved = of > run_best[f]
            run_best[f] = torch.where(improved, of, run_best[f])
            stall[f] = torch.where(improved, torch.zeros_like(stall[f]), stall[f] + 1)
            r = f[stall[f] >= self.patience]
            if r.numel():
                u[r] = _start_mask(keys[r], it + 1, stream + 2, (r.numel(), 1, h, w), x.dtype, shift)
                stall[r] = 0
                run_best[r] = float("-inf")
        return out, success, out_obj, fwd, bwd
