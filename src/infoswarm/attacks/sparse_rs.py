"""Sparse-RS, L0 pixel version (Croce, Andriushchenko, Singh, Flammarion & Hein 2022).

Random search over a set M of ``pixels`` distinct locations per image. Every perturbed pixel
sits at a corner of its allowed box: each channel either lo = max(0, x − eps) or
hi = min(1, x + eps) (eps = 1: 0 or 1, the paper's setting). Start: M uniform without replacement,
corners uniform. Step i (one query): pick n = max(⌊α_i·pixels⌋, 1) slots of M uniformly, move
them to n locations drawn uniformly from outside M, and give those new corners; keep the
candidate when its loss is not worse than the current one. Our choice: a new pixel's corner is
drawn uniformly among the corners different from the clean pixel (when the clean pixel is itself
a corner, e.g. a black MNIST background pixel with eps = 1, re-drawing it would change nothing).
When pixels = H·W there is no outside; the n slots then only get new corners.

α follows the paper's piecewise-constant schedule, defined for a 10 000-query budget and rescaled
to ``queries``: with j = ⌊10 000·i / queries⌋, α = p_init / d where d = 1 for j = 0 and
d = 2, 4, 5, 6, 8, 10, 12, 15, 20 for j in (0, 50], (50, 200], (200, 500], (500, 1000],
(1000, 2000], (2000, 4000], (4000, 6000], (6000, 8000], (8000, ∞). So with a budget of at most
10 000 queries the first step already uses p_init / 2.

Loss, minimised: the margin shared with :mod:`~infoswarm.attacks.onepixel` (−1 on success;
untargeted z_y − max_{k≠y} z_k, targeted max_{k≠t} z_k − z_t in logit = log-probability units,
clipped at 0, plus log-space penalties for the probability window) — the paper's margin loss in
the untargeted case. (The paper uses cross-entropy for targeted attacks; the margin pursues the
same goal and reaches 0 exactly when the target wins.) ``loss="ce"`` minimises the cross-entropy
to the judged class instead (−log p_j, j = the target or the best wrong class; the same window
penalties), the setting sparse-AutoAttack runs Sparse-RS with; see :func:`._sparse._loss`.

Queries per image: 1 for the start plus 1 per step, at most ``queries``; an image stops at its
first success. Images whose clean prediction already meets the criterion are returned unchanged
with 0 queries.

Randomness: every image draws from its own counter-based stream (:mod:`._rng`: a SplitMix64 hash
of the seed, the image's position in the caller's list, the step and the element index), all
images of a step in one vectorised draw — no generator objects, no Python loop over images.
Step i's draw per image: k uniforms that pick the slots leaving (the m smallest), H·W that pick
the entering locations (the m smallest outside M), m that pick their corners. Model calls are
padded where the backend needs it (:mod:`._forward`), so batched, chunked and one-at-a-time runs
(with ``offset``) agree bit for bit at one intra-op thread.
"""

from __future__ import annotations

import bisect

import torch
from torch import nn

from ..criteria import Criterion
from ..errors import InputError
from ._rng import image_keys, uniforms
from ._sparse import LOSSES, LossKind, _apply, _box, _check_common, _check_size, _loss, _score
from .base import Attack, Call, TargetSpec
from .result import AttackResult

_STREAM = 40
"""Sparse-RS's stream number in :func:`._rng.uniforms` (SparseSwarm uses 0: a shared seed gives
the two attacks unrelated draws)."""
_MILESTONES = (0, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
_DIVISORS = (1, 2, 4, 5, 6, 8, 10, 12, 15, 20)


def alpha_schedule(step: int, queries: int, p_init: float) -> float:
    """Fraction α of the locations resampled at step ``step`` (1-based) of a ``queries`` budget."""
    j = int(step / queries * 10000)
    return p_init / _DIVISORS[bisect.bisect_left(_MILESTONES, j)]


class SparseRS(Attack):
    """Sparse-RS L0 pixel attack (query-only), batched over images.

    Args:
        model: classifier, [0,1] images [N,C,H,W] -> logits [N,K], eval mode.
        pixels: k, the number of pixel locations perturbed (all channels of each), 1..H·W.
        budget: model evaluations (queries) per image at most (≥ 1; the start counts as one).
        eps: L∞ bound in [0,1] pixel units; each perturbed entry goes to x − eps or x + eps,
            clipped to [0, 1]; 1.0 = the paper's unbounded 0/1 values.
        target: None (untargeted), "second" (most probable wrong class), or class indices [N] / int.
        min_prob, max_prob: success also needs the judged class's probability in this window.
        p_init: initial fraction α of the k locations resampled per step, in (0, 1] (paper: 0.3).
        seed: seeds every image's own random stream together with its position (results do not
            depend on the batch or the chunking).
        batch_size: candidate images per model call. Default 1024, the fastest batch of
            `bench/throughput.py` (BENCHMARKS.md); results do not depend on it.
        loss: what the search minimises before success: "margin" (default; the paper's
            untargeted loss) or "ce" (cross-entropy to the judged class; sparse-AutoAttack's
            setting); "paper" (the saturating probability gap) for ablations.

    Calling ``attack(x, y, target=None, offset=0)`` (the contract of :class:`.Attack`) returns an
    :class:`AttackResult`; ``indices`` [N, k] holds the
    locations h·W + w of the returned perturbation (all −1 for images returned unchanged).
    """

    uses = ("pixels", "eps", "budget")
    defaults = {"pixels": 10, "eps": 1.0, "budget": 1000, "target": None}

    def __init__(self, model: nn.Module, pixels: int = 10, budget: int = 1000, eps: float = 1.0,
                 target: TargetSpec = None, min_prob: float | None = None, max_prob: float | None = None,
                 p_init: float = 0.3, seed: int = 0, batch_size: int = 1024, loss: LossKind = "margin") -> None:
        _check_common(pixels, eps, batch_size, Criterion(min_prob, max_prob))
        if loss not in LOSSES:
            raise InputError(f"unknown loss {loss!r}", f"use one of {', '.join(LOSSES)}")
        super().__init__(model, target=target, min_prob=min_prob, max_prob=max_prob, seed=seed, batch_size=batch_size)
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise InputError(f"budget must be a positive integer, got {budget!r}", "pass e.g. budget=1000")
        if not (isinstance(p_init, (int, float)) and 0 < p_init <= 1):
            raise InputError(f"p_init must lie in (0, 1], got {p_init!r}", "use the paper's 0.3")
        self.pixels, self.queries, self.eps, self.p_init = pixels, budget, float(eps), float(p_init)
        self.loss: LossKind = loss

    @staticmethod
    def _corners(u: torch.Tensor, clean_code: torch.Tensor, c: int) -> torch.Tensor:
        """Corner codes (bit j set = channel j at hi) from uniforms u [...], avoiding clean_code
        [...] (−1 when the clean pixel is not a corner)."""
        has = clean_code >= 0
        m = torch.where(has, torch.full_like(clean_code, 2 ** c - 1), torch.full_like(clean_code, 2 ** c))
        v = (u * m).long().clamp(max=m - 1)
        return v + (has & (v >= clean_code)).long()

    @property
    def budget(self) -> int:
        """Model queries per image at most (the constructor's ``budget``)."""
        return self.queries

    @torch.no_grad()
    def _run(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor, offset: torch.Tensor,
             call: Call) -> AttackResult:
        _check_size(self.pixels, x)
        n, c, h, w = x.shape
        k, hw, dev = self.pixels, h * w, x.device
        lo, hi = _box(x, self.eps)
        lo_f, hi_f = lo.reshape(n, c, hw), hi.reshape(n, c, hw)
        bits = (2 ** torch.arange(c, device=dev)).view(1, c, 1)
        xf = x.reshape(n, c, hw)
        corner = ((xf == lo_f) | (xf == hi_f)).all(1)
        clean_code = torch.where(corner, ((xf == hi_f).long() * bits).sum(1),      # [N, H*W], −1: none
                                 torch.full_like(corner, -1, dtype=torch.long))

        def values(i: torch.Tensor, loc: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
            """[b, k, C] values of corners ``code`` [b, k] at ``loc`` [b, k] of images i [b]."""
            at = (i.view(-1, 1, 1), torch.arange(c, device=dev).view(1, 1, c), loc.unsqueeze(-1))
            up = (code.unsqueeze(-1) & bits.view(1, 1, c)) > 0
            return torch.where(up, hi_f[at], lo_f[at])

        _, done = _loss(call.clean, y, target, self.criterion)            # already adversarial
        keys = image_keys(self.seed, offset).to(dev)
        u0 = uniforms(keys, 0, _STREAM, (hw + k,))
        loc = u0[:, :hw].topk(k, dim=1).indices                            # k distinct uniform locations
        code = self._corners(u0[:, hw:], clean_code.gather(1, loc), c)
        loss = torch.full((n,), float("inf"), dtype=torch.float64, device=dev)
        queries = torch.zeros(n, dtype=torch.long, device=dev)

        idx = (~done).nonzero().view(-1)
        if idx.numel():
            loss[idx], ok = _score(self.model, x, idx, loc[idx], values(idx, loc[idx], code[idx]), y, target,
                                   self.criterion, self.batch_size, self.loss)
            queries[idx] += 1
            done[idx] |= ok
        for step in range(1, self.queries):
            idx = (~done).nonzero().view(-1)
            if idx.numel() == 0:
                break
            m = max(int(alpha_schedule(step, self.queries, self.p_init) * k), 1)
            move = hw > k
            if move:
                m = min(m, hw - k)
            u = uniforms(keys[idx], step, _STREAM, (k + (hw if move else 0) + m,))   # this image's own stream
            slots = u[:, :k].topk(m, dim=1, largest=False).indices      # [b, m]
            cur_loc, cur_code = loc[idx], code[idx]
            if move:
                score = u[:, k: k + hw].scatter(1, cur_loc, 2.0)          # members of M last
                new_loc = score.topk(m, dim=1, largest=False).indices
            else:
                new_loc = cur_loc.gather(1, slots)
            new_code = self._corners(u[:, -m:], clean_code[idx].gather(1, new_loc), c)
            cand_loc = cur_loc.scatter(1, slots, new_loc)
            cand_code = cur_code.scatter(1, slots, new_code)
            lc, ok = _score(self.model, x, idx, cand_loc, values(idx, cand_loc, cand_code), y, target,
                            self.criterion, self.batch_size, self.loss)
            queries[idx] += 1
            accept = lc <= loss[idx]
            loc[idx] = torch.where(accept.unsqueeze(1), cand_loc, cur_loc)
            code[idx] = torch.where(accept.unsqueeze(1), cand_code, cur_code)
            loss[idx] = torch.where(accept, lc, loss[idx])
            done[idx] |= ok

        untouched = queries == 0
        all_i = torch.arange(n, device=dev)
        val = values(all_i, loc, code)
        loc = torch.where(untouched.unsqueeze(1), torch.full_like(loc, -1), loc)
        x_adv = torch.minimum(torch.maximum(_apply(x, loc, val), lo), hi)
        return self._finish(x, x_adv, y, target, queries, indices=loc)
