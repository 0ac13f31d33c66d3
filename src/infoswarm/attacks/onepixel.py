"""One-pixel attack (Su, Vargas & Sakurai 2019): differential evolution over a few pixels.

Each candidate encodes ``pixels`` tuples (row, col, v_1..v_C). Rows and columns are real genes in
[0, H] and [0, W] read as ``min(floor(g), H − 1)``; each channel gene u ∈ [0, 1] sets the value
``lo + u·(hi − lo)`` of the allowed box at that location, lo = max(0, x − eps), hi = min(1, x + eps)
(eps = 1: the paper's unbounded values). The paper's DE/rand/1 without crossover:

    trial_i = pop[r1] + F·(pop[r2] − pop[r3]),  r1, r2, r3 distinct and ≠ i,  F = 0.5,

genes clipped back into their ranges; a trial replaces its parent when its loss is not worse
(greedy one-to-one selection). Initial population: coordinates uniform, u ~ N(0.5, 0.5) clipped
to [0, 1] (the paper's N(128, 127) on 0..255).

Loss, minimised (our choice, shared with :mod:`~infoswarm.attacks.sparse_rs`): −1 on success,
otherwise the margin in log-probability units (= logit units; untargeted log p_y − log p_w, w the
best wrong class; targeted max_{k≠t} log p_k − log p_t), clipped at 0, plus log-space penalties
relu(log min_prob − log p_j) and relu(log p_j − log max_prob) for the probability window. Like the
criterion's probability aim it measures the distance to success, but it keeps ranking candidates
when a confident network pushes p_w below float64 resolution (where p_y − p_w is exactly 1).
(The paper minimises p_y, untargeted, or maximises p_t, targeted; no extra tie-break is used.)

An image stops (and stops costing queries) at the first generation with a successful candidate;
queries per image = population × (1 + generations run). Images whose clean prediction already
meets the criterion are returned unchanged with 0 queries.

Batching: the images' populations are evaluated together in model calls of ``batch_size`` rows;
each image draws from its own generator seeded with (``seed``, the image's position in the
caller's list, see :class:`.Attack`), and every model call has at least 16 rows (CPU GEMM kernels
take a different, slightly different-rounding path for a handful of rows), so an image's result
does not depend on the other images in the batch or on the chunking.
"""

from __future__ import annotations

import torch
from torch import nn

from ..criteria import Criterion
from ..errors import InputError
from ._rng import image_generators
from ._sparse import _apply, _box, _check_common, _check_size, _loss, _score
from .base import Attack, Call, TargetSpec
from .result import AttackResult


class OnePixel(Attack):
    """Differential-evolution one/few-pixel attack, batched over images × population.

    Args:
        model: classifier, [0,1] images [N,C,H,W] -> logits [N,K], eval mode.
        pixels: locations each candidate perturbs (all channels of each), 1..H·W.
        population: DE population size per image (≥ 4; the paper uses 400).
        iterations: generations at most (≥ 1; the paper uses 100).
        eps: L∞ bound on the change of a perturbed entry, in [0,1] pixel units; 1.0 = unbounded.
        target: None (untargeted), "second" (most probable wrong class), or class indices [N] / int.
        min_prob, max_prob: success also needs the judged class's probability in this window.
        seed: seeds every image's own generator together with its position (results do not
            depend on the batch or the chunking).
        batch_size: candidate images per model call.

    Calling ``attack(x, y, target=None, offset=0)`` (the contract of :class:`.Attack`) returns an
    :class:`AttackResult`; ``indices`` [N, pixels] holds the
    encoded locations h·W + w of the returned candidate (−1 for a repeated location, and for
    images returned unchanged); ``queries`` [N] ≤ population × (iterations + 1).
    """

    F = 0.5

    uses = ("pixels", "eps", "budget")
    defaults = {"pixels": 1, "eps": 1.0, "budget": 50 * 20, "target": None}
    """budget: model queries per image; the registry spends it as population 50 × (budget // 50)
    generations (1000 = 50 × 20: the start and 19 generations). The constructor's own
    population 400 × 100 generations is the paper's setting."""

    def __init__(self, model: nn.Module, pixels: int = 1, population: int = 400, iterations: int = 100,
                 eps: float = 1.0, target: TargetSpec = None, min_prob: float | None = None,
                 max_prob: float | None = None, seed: int = 0, batch_size: int = 1024) -> None:
        _check_common(pixels, eps, batch_size, Criterion(min_prob, max_prob))
        super().__init__(model, target=target, min_prob=min_prob, max_prob=max_prob, seed=seed, batch_size=batch_size)
        if isinstance(population, bool) or not isinstance(population, int) or population < 4:
            raise InputError(f"population must be an integer >= 4 (DE/rand/1 needs 3 other members), "
                             f"got {population!r}", "pass e.g. population=400")
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
            raise InputError(f"iterations must be a positive integer, got {iterations!r}", "pass e.g. iterations=100")
        self.pixels, self.population, self.iterations, self.eps = pixels, population, iterations, float(eps)

    def query_budget(self) -> int:
        """population × (iterations + 1)."""
        return self.population * (self.iterations + 1)

    # ---------------------------------------------------------------------------------------

    @staticmethod
    def _others(gen: torch.Generator, p: int) -> torch.Tensor:
        """[p, 3] indices r1, r2, r3: distinct, and each ≠ its row index."""
        excluded = torch.arange(p).unsqueeze(1)                           # [p, 1] sorted
        picks = []
        for j in range(3):
            r = torch.randint(0, p - 1 - j, (p,), generator=gen)
            for e in excluded.unbind(1):                                  # ascending: skip each
                r = r + (r >= e).long()
            picks.append(r)
            excluded = torch.sort(torch.cat([excluded, r.unsqueeze(1)], 1), 1).values
        return torch.stack(picks, 1)

    @staticmethod
    def _decode(genes: torch.Tensor, img: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """genes [M, k, 2+C] of images img [M] -> (loc [M, k], val [M, k, C], first [M, k] bool).

        A location repeated within a candidate takes the values of its first occurrence;
        ``first`` marks the slots that are first occurrences."""
        n, c, h, w = lo.shape
        m, k = genes.shape[:2]
        r = genes[..., 0].floor().clamp(0, h - 1).long()
        col = genes[..., 1].floor().clamp(0, w - 1).long()
        loc = r * w + col
        at = (img.view(m, 1, 1), torch.arange(c, device=loc.device).view(1, 1, c), loc.unsqueeze(-1))
        lo_g = lo.reshape(n, c, h * w)[at]                    # [M, k, C]
        hi_g = hi.reshape(n, c, h * w)[at]
        u = genes[..., 2:].to(lo.dtype)
        val = torch.minimum(torch.maximum(lo_g + u * (hi_g - lo_g), lo_g), hi_g)
        # first occurrence of each location (stable sort: lowest slot wins)
        sl, perm = torch.sort(loc, dim=1, stable=True)
        new = torch.ones_like(sl, dtype=torch.bool)
        new[:, 1:] = sl[:, 1:] != sl[:, :-1]
        pos = torch.arange(k, device=loc.device).expand(m, k)
        start = torch.where(new, pos, torch.zeros_like(pos)).cummax(1).values
        first_of = torch.empty_like(perm).scatter_(1, perm, perm.gather(1, start))
        val = val.gather(1, first_of.unsqueeze(-1).expand(-1, -1, c))
        return loc, val, first_of == pos

    @torch.no_grad()
    def _run(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor, offset: torch.Tensor,
             call: Call) -> AttackResult:
        _check_size(self.pixels, x)
        n, c, h, w = x.shape
        p, k, dev = self.population, self.pixels, x.device
        lo, hi = _box(x, self.eps)
        _, done = _loss(call.clean, y, target, self.criterion)            # already adversarial
        gens = image_generators(self.seed, offset, "onepixel")
        scale = torch.tensor([float(h), float(w)], dtype=torch.float64)

        genes = torch.zeros(n, p, k, 2 + c, dtype=torch.float64, device=dev)
        for i in range(n):                                                # every image draws its init
            coords = torch.rand(p, k, 2, generator=gens[i], dtype=torch.float64) * scale
            u = (0.5 + 0.5 * torch.randn(p, k, c, generator=gens[i], dtype=torch.float64)).clamp(0, 1)
            genes[i] = torch.cat([coords, u], -1).to(dev)
        loss = torch.full((n, p), float("inf"), dtype=torch.float64, device=dev)
        queries = torch.zeros(n, dtype=torch.long, device=dev)
        upper = torch.cat([scale, torch.ones(c, dtype=torch.float64)]).to(dev)

        def evaluate(idx: torch.Tensor, cand: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            img = idx.repeat_interleave(p)
            loc, val, _ = self._decode(cand.reshape(-1, k, 2 + c), img, lo, hi)
            lv, ok = _score(self.model, x, img, loc, val, y, target, self.criterion, self.batch_size)
            queries[idx] += p
            return lv.view(-1, p), ok.view(-1, p)

        idx = (~done).nonzero().view(-1)
        if idx.numel():
            loss[idx], ok = evaluate(idx, genes[idx])
            done[idx] |= ok.any(1)
        for _ in range(self.iterations):
            idx = (~done).nonzero().view(-1)
            if idx.numel() == 0:
                break
            r = torch.stack([self._others(gens[i], p) for i in idx.tolist()]).to(dev)   # [b, P, 3]
            pop = genes[idx]                                              # [b, P, k, 2+C]
            r1, r2, r3 = (pop.gather(1, r[..., j].view(*r.shape[:2], 1, 1).expand_as(pop)) for j in range(3))
            trial = r1 + self.F * (r2 - r3)
            trial = torch.minimum(trial.clamp(min=0.0), upper)
            lt, ok = evaluate(idx, trial)
            accept = lt <= loss[idx]
            genes[idx] = torch.where(accept.view(*accept.shape, 1, 1), trial, pop)
            loss[idx] = torch.where(accept, lt, loss[idx])
            done[idx] |= ok.any(1)

        best = loss.argmin(1)                                             # a success (−1) if any
        bg = genes[torch.arange(n, device=dev), best]
        loc, val, first = self._decode(bg, torch.arange(n, device=dev), lo, hi)
        untouched = queries == 0
        loc = torch.where(first & ~untouched.unsqueeze(1), loc, torch.full_like(loc, -1))
        x_adv = _apply(x, loc, val)
        x_adv = torch.minimum(torch.maximum(x_adv, lo), hi)
        return self._finish(x, x_adv, y, target, queries, indices=loc)
