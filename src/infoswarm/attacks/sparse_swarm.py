"""SparseSwarm: a small swarm that searches *where* to perturb (k pixel locations) and sets each
perturbed pixel to a corner of its allowed box.

State per image: ``particles`` particles, each a set of k distinct pixel locations with a corner
code per location (bit j of the code set = channel j at hi = min(1, x + eps), else at
lo = max(0, x − eps); eps = 1 gives the pure-L0 values {0,1}^C). A particle's current set is also
its personal best (a candidate replaces it only when its loss is not worse). The swarm's global
best is the particle with the lowest loss.

Start: every particle draws k locations from the prior without replacement (Gumbel top-k on
log prior) and a corner per location, uniformly among the corners different from the clean pixel
when the clean pixel is itself a corner (re-drawing it would change nothing). One query each.

Step (one query per particle): n = max(⌊α·k⌋, 1) locations of the particle's personal best
leave and n enter, with α on the Sparse-RS schedule (:func:`.sparse_rs.alpha_schedule`) read at
the queries spent so far of the ``budget``, so the swap size decays with the budget.
*Which leave*: drawn uniformly among the particle's locations that the global best does not
hold (those the global best holds leave last). *Which enter*: each global-best location the
particle lacks is offered with probability ``social`` (it enters with the global best's corner);
the remaining entries are drawn from the prior among the locations outside the particle (with a
fresh corner). With one particle this is Sparse-RS with a sampling prior.

Prior over locations (where fresh locations are drawn): ``"uniform"``; ``"gain"`` (the default
for torch models, one backward pass): the first-order change of log p_c when the pixel moves to
the best corner of its box, Σ_channels |∂ log p_c/∂x| · |v* − x| with v* = hi where the
gradient points the wanted way (up for the target, down for the true class) and lo otherwise —
unlike saliency it knows that a black pixel can only get brighter; with it, particle 0 starts at
the k locations of largest gain at their corners v*, and a location drawn from the prior enters
at v* with probability 1/2 (else at a random corner); ``"saliency"`` (per-pixel
‖∇ₓ log p_c‖₂ over channels, one backward pass); ``"fi"`` (exact pixel FI of log p_c,
:func:`infoswarm.influence.pixel_fi`, K backward passes) or ``"fi-eps"`` (the authors' ε-FI);
c = the target class (targeted) or the true class. A map s ≥ 0 becomes the distribution
prior_mix/HW + (1 − prior_mix)·s/Σs, so every location keeps a chance. Gradient passes for the
prior are counted in ``AttackResult.grad_evals``, not in ``queries``.

Loss, minimised (shared with Sparse-RS and one-pixel DE): −1 on success, else the margin in
logit units (untargeted z_y − max_{j≠y} z_j; targeted max_{j≠t} z_j − z_t), clipped at 0, plus
relu(log p* − log p_t) for ``min_prob`` = p* and relu(log p_t − log max_prob): it keeps ranking
candidates where probabilities saturate.

Probability window (``min_prob`` set, "gain" prior): reaching the target is not the end, and
the search then climbs p_target one swap at a time, where a map drawn at the clean image is stale
(the class to push down is no longer the true one) and a uniform choice of the leaving pixel
mostly throws out a pixel that carries the image. So in these runs the gain map (and its corner
codes) is recomputed at the image's incumbent every ``window_refresh`` steps (20) when the
incumbent has improved since its last map (one backward pass each, counted in ``grad_evals``),
and from the first such map on the leaving pixels are drawn among the ``window_leave`` (10) least
useful of the k by the map's first-order estimate of what each contributes to log p_target
(gradient × (value − clean value)). Untargeted images and runs without ``min_prob`` follow
``refresh`` and ``leave`` instead (below).

Gradients inside the search (issue 21; measured in BENCHMARKS.md, section swarm-gradients, at
equal cost in forward-equivalents). With the "gain" prior the defaults are ``refresh=25`` and
``leave=0.5`` (``None`` = these with "gain", 0 otherwise): on the L0-hardened ``mnist-cnn-l0`` at
k = 10 they broke 83 of 200 digits where one map broke 64 (21 images only with them, 2 only
without), and nowhere measured did they do worse; ``refresh=0, leave=0`` is the one-map search of
before. The sPGD seed did not help and is off by default.

* ``refresh = m``: the gain map and its corner codes are redrawn at the image's incumbent (the
  best particle) every m steps when its loss has improved since the last map, for every image
  (untargeted: c = the true class, pushed down; targeted: the target, pushed up); fresh
  locations are then drawn from it (a particle's own locations never re-enter). Window images
  keep ``window_refresh``.
* ``leave = f``: gradient-guided swaps: the leaving pixels are drawn among the ⌈f·k⌉ least useful
  of the particle by the latest map (first-order contribution towards success, as in window
  runs), the others leave last; entering pixels come from the (refreshed) gain prior as always.
  Before the first refresh the clean image's map is used (alone, without refresh, that hurt:
  BENCHMARKS.md).
* ``spgd_steps = T``: particle 0 starts where a projected sPGD run (:class:`.spgd.SPGD`, T
  steps, its own counter-based streams) ended: its changed pixels with sPGD's values (in the
  box, not necessarily corners), filled up to k from the greedy start; an image sPGD breaks is
  done after one more query.
* ``grad_cost = r``: every backward pass takes r queries from the budget, so a variant that
  spends more gradients gets fewer queries: queries ≤ ⌊budget − r · grad_evals⌋ per image (an
  image stops when its next step no longer fits, and a map is redrawn only when a step still
  fits after it). The step schedule (α) stays that of the whole budget.

Stopping and budget: an image stops at the first step in which one of its particles succeeds;
the successful particle is returned. Queries per image: every candidate evaluated (the start
included), never above ``budget`` (the last step evaluates only as many particles as remain in
the budget). The clean forward pass that checks which images are already adversarial (these are
returned unchanged, 0 queries) and the final re-verification are not counted, as for the other
attacks. ``refine=True`` spends leftover budget after a success on removing pixels: one by one
in random order, a pixel goes back to its clean value when the image stays adversarial (one query
per try).

Randomness: a counter-based hash (SplitMix64 finalizer) of (seed, image position g, step,
stream, counter; :mod:`._rng`) — no generator objects, no Python loop over images. Image g = ``offset`` + its
position in x, so a list attacked in chunks or shards makes the same draws as one call; model
calls are padded where the backend needs it (:mod:`._forward`), so (at one intra-op thread)
results agree bit for bit.

Query-only models: with the uniform prior (the default for them) only forward passes are made,
so ``model`` may be any
callable mapping [0,1] images to logits or probabilities (``outputs=``), or the path of an ONNX
file (onnxruntime, ``pip install infoswarm[onnx]``); see :mod:`.query`.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from .. import influence
from ..criteria import Criterion
from ..errors import InputError
from ._forward import padded_logits
from ._rng import image_keys as image_keys
from ._rng import uniforms as uniforms
from ._sparse import LOSSES, LossKind, _apply, _box, _check_common, _check_size, _loss, _score
from .base import Attack, Call, TargetSpec
from .query import ModelLike, Outputs, as_model, is_query_only
from .result import AttackResult
from .sparse_rs import SparseRS, alpha_schedule
from .spgd import SPGD

Prior = Literal["auto", "uniform", "saliency", "gain", "fi", "fi-eps"]
PRIORS = ("auto", "uniform", "saliency", "gain", "fi", "fi-eps")
Values = Literal["corner", "continuous"]
VALUES = ("corner", "continuous")
REFRESH = 25
"""Default ``refresh`` with the "gain" prior: steps between maps redrawn at the incumbent."""
LEAVE = 0.5
"""Default ``leave`` with the "gain" prior: the leaving pixels are drawn among the least useful half."""


def _gumbel(u: torch.Tensor) -> torch.Tensor:
    return -torch.log(-torch.log(u.clamp(1e-300, 1 - 2.0 ** -53)))


class SparseSwarm(Attack):
    """Location-searching sparse swarm attack (query-based; the default sparse attack).

    Args:
        model: an ``nn.Module`` mapping [0,1] images [N,C,H,W] to logits [N,K] (eval mode), any
            callable doing the same (query-only), or the path of an ONNX file (query-only).
        pixels: k, pixel locations perturbed (all channels of each), 1..H·W.
        budget: model evaluations (queries) per image at most (≥ 1).
        eps: L∞ bound in [0,1] pixel units; perturbed entries go to x − eps or x + eps clipped
            to [0, 1]; 1.0 = pure L0 (values 0 or 1).
        target: None (untargeted), "second" (most probable wrong class), or class indices.
        min_prob, max_prob: success also needs the judged class's probability in this window
            (targeted with min_prob and the "gain" prior: the map follows the incumbent and the
            least useful pixels leave; see "Probability window" in the module docstring).
        particles: swarm size (≥ 1; one query per particle per step; small swarms do best).
        prior: where fresh locations are drawn: "uniform" (no gradients), "gain", "saliency",
            "fi", "fi-eps" (gradient priors; not for query-only models), or "auto" (default):
            "gain" for a torch module, "uniform" for a query-only model (see the ablation in
            BENCHMARKS.md).
        prior_mix: weight of the uniform part of a gradient prior, in [0, 1].
        fi_eps: ε of the "fi-eps" prior.
        social: probability that a global-best location the particle lacks is offered to enter.
        p_init: initial swap fraction α, in (0, 1] (Sparse-RS's 0.3).
        refine: after a success, spend leftover budget on removing pixels that are not needed.
        loss: what the search minimises before success: "margin" (default; logit margin to the
            best other class, or to the target), "ce" (cross-entropy to the target / best wrong
            class) or "paper" (the paper's saturating probability gap; for ablations).
        values: "corner" (default; each perturbed channel at x − eps or x + eps clipped to
            [0, 1]) or "continuous" (uniform in that box; for ablations).
        refresh: steps between redraws of the gain map at the image's incumbent, when it has
            improved since the last map (one backward pass each; 0 = never; "gain" prior only).
            None (default): 25 with the "gain" prior, else 0. See "Gradients inside the search"
            in the module docstring.
        leave: with the "gain" prior, the leaving pixels are drawn among the ⌈leave·k⌉ least
            useful of the particle by the latest map (in [0, 1]; 0 = uniform). None (default):
            0.5 with the "gain" prior, else 0.
        grad_cost: forward passes one backward pass costs; each backward pass then takes that
            many queries from ``budget`` (queries ≤ ⌊budget − grad_cost · grad_evals⌋), so that
            variants with more gradients compare at equal cost (0 = not charged, the default).
        spgd_steps: particle 0 starts where a projected sparse-PGD run of this many steps
            ended (its forward passes count as queries, its backward passes in grad_evals; 0 =
            no seed, the default).
        outputs: "logits" or "probs" — what ``model`` returns.
        seed: seed of the counter-based random streams.
        batch_size: candidate images per model call.

    Call ``attack(x, y, target=None, offset=0)`` (the contract of :class:`.Attack`) ->
    :class:`AttackResult`; ``indices`` [N, k] holds the
    perturbed locations h·W + w (−1 for removed pixels and for images returned unchanged),
    ``grad_evals`` [N] the backward passes (the prior, refreshed maps, an sPGD seed).
    """

    uses = ("pixels", "eps", "budget")
    gradients = "optional"
    defaults = {"pixels": 10, "eps": 1.0, "budget": 1000, "target": None}

    def needs_gradient(self) -> bool:
        """Every prior but "uniform" (the default "auto" is "gain" for a torch module) takes a
        backward pass."""
        return self.prior != "uniform" or self.spgd_steps > 0

    def __init__(self, model: ModelLike, pixels: int = 10, budget: int = 1000, eps: float = 1.0,
                 target: TargetSpec = None, min_prob: float | None = None, max_prob: float | None = None,
                 particles: int = 1, prior: Prior = "auto", prior_mix: float = 0.5,
                 fi_eps: float = 1e-3, social: float = 0.5, p_init: float = 0.3, refine: bool = False,
                 loss: LossKind = "margin", values: Values = "corner", refresh: int | None = None,
                 leave: float | None = None,
                 grad_cost: float = 0.0, spgd_steps: int = 0,
                 outputs: Outputs = "logits", seed: int = 0, batch_size: int = 4096) -> None:
        _check_common(pixels, eps, batch_size, Criterion(min_prob, max_prob))
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise InputError(f"budget must be a positive integer, got {budget!r}", "pass e.g. budget=1000")
        if isinstance(particles, bool) or not isinstance(particles, int) or particles < 1:
            raise InputError(f"particles must be a positive integer, got {particles!r}", "pass e.g. particles=1")
        if prior not in PRIORS:
            raise InputError(f"unknown prior {prior!r}", f"use one of {', '.join(PRIORS)}")
        if loss not in LOSSES:
            raise InputError(f"unknown loss {loss!r}", f"use one of {', '.join(LOSSES)}")
        if values not in VALUES:
            raise InputError(f"unknown values {values!r}", f"use one of {', '.join(VALUES)}")
        for name, v, lo_ok in (("prior_mix", prior_mix, True), ("social", social, True), ("p_init", p_init, False)):
            if not isinstance(v, (int, float)) or not ((0 <= v) if lo_ok else (0 < v)) or v > 1:
                raise InputError(f"{name} must lie in {'[0' if lo_ok else '(0'}, 1], got {v!r}",
                                 f"pass e.g. {name}=0.5")
        if refresh is not None and (isinstance(refresh, bool) or not isinstance(refresh, int) or refresh < 0):
            raise InputError(f"refresh must be a non-negative integer (steps; 0 = never), got {refresh!r}",
                             "pass e.g. refresh=25")
        if leave is not None and (isinstance(leave, bool) or not isinstance(leave, (int, float))
                                  or not 0 <= leave <= 1):
            raise InputError(f"leave must lie in [0, 1] (0 = off), got {leave!r}", "pass e.g. leave=0.5")
        if isinstance(spgd_steps, bool) or not isinstance(spgd_steps, int) or not 0 <= spgd_steps < budget:
            raise InputError(f"spgd_steps must be an integer in [0, budget), got {spgd_steps!r}",
                             "pass e.g. spgd_steps=20 (0 = no sparse-PGD seed)")
        if isinstance(grad_cost, bool) or not isinstance(grad_cost, (int, float)) or not 0 <= grad_cost < budget:
            raise InputError(f"grad_cost must lie in [0, budget), got {grad_cost!r}",
                             "pass the cost of a backward pass in forward passes, e.g. grad_cost=1.2")
        super().__init__(as_model(model, outputs), target=target, min_prob=min_prob, max_prob=max_prob, seed=seed,
                         batch_size=batch_size)
        if prior == "auto":
            prior = "uniform" if is_query_only(self.model) else "gain"
        if prior != "uniform" and is_query_only(self.model):
            raise InputError(f'prior "{prior}" needs gradients, which a query-only model does not give',
                             'use prior="uniform", or pass the model as a torch nn.Module')
        if spgd_steps and is_query_only(self.model):
            raise InputError("spgd_steps= needs gradients, which a query-only model does not give",
                             "leave spgd_steps=0, or pass the model as a torch nn.Module")
        if refresh is None:                         # default: follow the incumbent with the gain prior
            refresh = REFRESH if prior == "gain" else 0
        if leave is None:
            leave = LEAVE if prior == "gain" else 0.0
        if (refresh or leave) and prior != "gain":
            raise InputError(f'refresh= and leave= follow the "gain" map; prior "{prior}" has none',
                             'use prior="gain" (the default for torch models), or leave them at 0')
        self.pixels, self.queries, self.eps = pixels, budget, float(eps)
        self.particles, self.prior, self.prior_mix, self.fi_eps = particles, prior, float(prior_mix), fi_eps
        self.social, self.p_init, self.refine = float(social), float(p_init), bool(refine)
        self.loss, self.values = loss, values
        self.greedy_values = 0.5
        self.window_refresh = 20
        """Window runs (min_prob set, "gain" prior): steps between refreshes of the gain map at the incumbent."""
        self.window_leave = 10
        """Window runs: the leaving pixels are drawn among this many least useful ones (k or more: uniform)."""
        self.refresh, self.leave, self.grad_cost = refresh, float(leave), float(grad_cost)
        self.spgd_steps = spgd_steps

    @property
    def budget(self) -> int:
        """Model queries per image at most (the constructor's ``budget``)."""
        return self.queries

    # ---------------------------------------------------------------------------------------

    def _log_prior(self, x: torch.Tensor, cls: torch.Tensor, classes: int, up: torch.Tensor | None = None,
                   lo: torch.Tensor | None = None, hi: torch.Tensor | None = None,
                   grad_out: list[torch.Tensor] | None = None) -> tuple[torch.Tensor, int, torch.Tensor | None]:
        """log prior over locations [N, H·W] (float64), backward passes per image, and (for the
        "gain" prior) the corner code [N, H·W] each location's linearised gain is measured at.

        ``up`` [N] bool: raise log p_cls (targeted) or lower it (untargeted); ``lo``/``hi`` the
        box [N, C, H, W] (needed by "gain"); ``grad_out``: a list that receives ∂ log p_cls/∂x
        [N, C, H·W] (float64; "saliency" and "gain")."""
        n, c, h, w = x.shape
        if self.prior == "uniform":
            return torch.zeros(n, h * w, dtype=torch.float64, device=x.device), 0, None
        code = None
        if self.prior in ("saliency", "gain"):
            xa = x.detach().clone().requires_grad_(True)
            with torch.enable_grad():
                logp = torch.log_softmax(padded_logits(self.model, xa).double(), -1)
                (g,) = torch.autograd.grad(logp.gather(1, cls.view(-1, 1)).sum(), xa)
            passes = 1
            if grad_out is not None:
                grad_out.append(g.double().reshape(n, c, h * w))
            if self.prior == "saliency":
                s = g.double().square().sum(1).sqrt().flatten(1)
            else:
                assert up is not None and lo is not None and hi is not None
                d = g.double() * torch.where(up, 1.0, -1.0).to(g.device, torch.float64).view(-1, 1, 1, 1)
                go_up = d > 0
                v = torch.where(go_up, hi, lo).double()
                s = (d.abs() * (v - x.double()).abs()).sum(1).flatten(1)      # first-order gain
                bits = (2 ** torch.arange(c, device=x.device)).view(1, c, 1, 1)
                code = (go_up.long() * bits).sum(1).flatten(1)
        else:
            fi_eps = self.fi_eps if self.prior == "fi-eps" else None
            s = influence.pixel_fi(self.model, x, cls, unit="pixel", fi_eps=fi_eps).double().flatten(1)
            passes = classes
        s = torch.nan_to_num(s, nan=0.0, posinf=0.0).clamp(min=0)
        tot = s.sum(1, keepdim=True)
        share = torch.where(tot > 0, s / tot.clamp(min=1e-300), torch.full_like(s, 1.0 / (h * w)))
        p = self.prior_mix / (h * w) + (1 - self.prior_mix) * share
        return torch.log(p.clamp(min=1e-300)), passes, code

    @torch.no_grad()
    def _run(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor, offset: torch.Tensor,
             call: Call) -> AttackResult:
        _check_size(self.pixels, x)
        clean = call.clean
        n, c, h, w = x.shape
        k, hw, dev, P, budget = self.pixels, h * w, x.device, self.particles, self.queries
        keys = image_keys(self.seed, offset).to(dev)

        lo, hi = _box(x, self.eps)
        lo_f, hi_f = lo.reshape(n, c, hw), hi.reshape(n, c, hw)
        bits = (2 ** torch.arange(c, device=dev)).view(1, c, 1)
        xf = x.reshape(n, c, hw)
        corner = ((xf == lo_f) | (xf == hi_f)).all(1)
        clean_code = torch.where(corner, ((xf == hi_f).long() * bits).sum(1),      # [N, HW], −1: none
                                 torch.full_like(corner, -1, dtype=torch.long))
        chan = torch.arange(c, device=dev).view(1, 1, c)

        def fresh(idx: torch.Tensor, new: torch.Tensor, u: torch.Tensor, code: torch.Tensor | None = None
                  ) -> torch.Tensor:
            """Fresh values [b, p, m, C] for locations new [b, p, m] of images idx [b], from
            uniforms u [b, p, m·C] ("continuous": uniform in the box) or [b, p, 2m] (a random
            corner other than the clean pixel's own; with the "gain" prior, the linearised best
            corner with probability greedy_values); ``code`` [b, p, m] forces the corners."""
            b, p, m = new.shape
            at = (idx.view(-1, 1, 1, 1), chan.view(1, 1, 1, c), new.unsqueeze(-1))
            lo_v, hi_v = lo_f[at], hi_f[at]                               # [b, p, m, C]
            if self.values == "continuous":
                return lo_v + u.reshape(b, p, m, c).to(x.dtype) * (hi_v - lo_v)
            if code is None:
                code = SparseRS._corners(u[..., :m], clean_code[idx].unsqueeze(1).expand(-1, p, -1).gather(2, new), c)
                if greedy_code is not None and self.greedy_values > 0:    # "gain": often the linearised best corner
                    gc = greedy_code[idx].unsqueeze(1).expand(-1, p, -1).gather(2, new)
                    code = torch.where((u[..., m:] < self.greedy_values) & (gc >= 0), gc, code)
            up = (code.unsqueeze(-1) & bits.view(1, 1, 1, c)) > 0
            return torch.where(up, hi_v, lo_v)

        def n_val(m: int) -> int:
            """Uniforms per particle that :func:`fresh` takes for m locations."""
            return m * c if self.values == "continuous" else 2 * m

        _, done = _loss(clean, y, target, self.criterion)                 # already adversarial
        cls = torch.where(target >= 0, target, y)
        logw = torch.zeros(n, hw, dtype=torch.float64, device=dev)
        greedy_code: torch.Tensor | None = None
        grad_evals = torch.zeros(n, dtype=torch.long, device=dev)
        todo = (~done).nonzero().view(-1)
        # probability window: the gain map follows the incumbent, the least useful pixels leave
        wimg = target >= 0                                                # targeted images only
        window = self.prior == "gain" and self.criterion.min_prob is not None and bool(wimg.any())
        win = wimg & window                                               # the images the window rules
        # per image: steps between maps at the incumbent (0: never), pixels the leaving ones are drawn among
        period = torch.where(win, self.window_refresh, self.refresh).to(dev)
        n_leave = math.ceil(self.leave * k) if self.leave > 0 else k
        leave_n = torch.where(win, self.window_leave, n_leave).to(dev)
        guided = window or self.leave > 0                                 # some leaving pixels follow a map
        gmap = torch.zeros(n, c, hw, dtype=torch.float64, device=dev) if guided else None
        has_map = torch.zeros(n, dtype=torch.bool, device=dev)            # gmap holds a map of the image
        sign = torch.where(target >= 0, 1.0, -1.0).to(dev, torch.float64).view(-1, 1, 1)  # gmap: towards success
        mapped = torch.full((n,), float("inf"), dtype=torch.float64, device=dev)   # best loss at the last map
        # (window images: the first map at an incumbent is drawn at step window_refresh; until then
        # the leaving pixels stay uniform: the clean image's gradient misjudges what the start's
        # pixels carry; with ``leave`` the other images start from the clean image's map)
        if todo.numel() and self.prior != "uniform":
            grads0: list[torch.Tensor] = []
            with torch.enable_grad():
                lw, passes, gcode = self._log_prior(x[todo], cls[todo], clean.shape[1], (target[todo] >= 0),
                                                    lo[todo], hi[todo], grads0 if self.leave > 0 else None)
            logw[todo] = lw.to(dev)
            if gcode is not None:
                greedy_code = torch.full((n, hw), -1, dtype=torch.long, device=dev)
                greedy_code[todo] = gcode.to(dev)
            grad_evals[todo] = passes
            if gmap is not None and grads0:
                start_map = todo[~win[todo]]
                gmap[start_map] = grads0[0].to(dev)[~win[todo]] * sign[start_map]
                has_map[start_map] = True
        spent = torch.zeros(n, dtype=torch.bool, device=dev)              # out of budget (grad_cost)
        loc = torch.zeros(n, P, k, dtype=torch.long, device=dev)
        val = torch.zeros(n, P, k, c, dtype=x.dtype, device=dev)
        loss = torch.full((n, P), float("inf"), dtype=torch.float64, device=dev)
        queries = torch.zeros(n, dtype=torch.long, device=dev)

        def evaluate(idx: torch.Tensor, cl: torch.Tensor, cv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            b, p = cl.shape[:2]
            img = idx.repeat_interleave(p)
            lv, ok = _score(self.model, x, img, cl.reshape(b * p, k), cv.reshape(b * p, k, c), y, target,
                            self.criterion, self.batch_size, self.loss)
            queries[idx] += p
            return lv.view(b, p), ok.view(b, p)

        # start: P particles from the prior, one query each (as many as the budget allows)
        idx = (~done).nonzero().view(-1)
        used = 0
        if idx.numel():
            p0 = min(P, budget)
            kk = keys[idx]
            u = uniforms(kk, 0, 0, (p0, hw + n_val(k)))
            score = logw[idx].unsqueeze(1) + _gumbel(u[..., :hw])
            loc[idx, :p0] = score.topk(k, dim=2).indices
            val[idx, :p0] = fresh(idx, loc[idx, :p0], u[..., hw:])
            if greedy_code is not None:             # "gain": particle 0 starts at the linearised best
                g_loc = logw[idx].topk(k, dim=1).indices                   # [b, k]
                loc[idx, 0] = g_loc
                g_code = greedy_code[idx].gather(1, g_loc).unsqueeze(1)
                val[idx, 0] = fresh(idx, g_loc.unsqueeze(1), u[:, :1, hw:], g_code)[:, 0]
            if self.spgd_steps:                     # particle 0 starts where a short sPGD run ended
                loc[idx, 0], val[idx, 0], fwd, bwd = self._spgd_seed(x[idx], y[idx], target[idx], keys[idx], lo[idx],
                                                                     hi[idx], loc[idx, 0], val[idx, 0])
                queries[idx] += fwd
                grad_evals[idx] += bwd
            lv, ok = evaluate(idx, loc[idx, :p0], val[idx, :p0])
            loss[idx, :p0] = lv
            done[idx] |= ok.any(1)
            used = p0
        step = 0
        while used < budget:
            idx = (~done & ~spent).nonzero().view(-1)
            if idx.numel() == 0:
                break
            step += 1
            p = min(P, budget - used)
            if self.grad_cost > 0 or self.spgd_steps:   # per-image budgets (backward passes charged, sPGD's passes)
                fits = queries[idx] + p <= self._cap(grad_evals[idx])
                spent[idx[~fits]] = True
                idx = idx[fits]
                if idx.numel() == 0:
                    used += p
                    continue
            if greedy_code is not None and bool((period[idx] > 0).any()):
                best_now = loss[idx].min(1).values
                due = (period[idx] > 0) & (step % period[idx].clamp(min=1) == 0)
                due &= best_now < mapped[idx]                              # improved since the last map
                if self.grad_cost > 0:              # and a step still fits after paying for the map
                    due &= queries[idx] + p <= self._cap(grad_evals[idx] + 1)
                ri = idx[due]
                if ri.numel():
                    gb0 = loss[ri].argmin(1)
                    x_inc = torch.minimum(torch.maximum(_apply(x[ri], loc[ri, gb0], val[ri, gb0]), lo[ri]), hi[ri])
                    grads: list[torch.Tensor] = []
                    with torch.enable_grad():
                        lw, passes, gcode = self._log_prior(x_inc, cls[ri], clean.shape[1], (target[ri] >= 0),
                                                            lo[ri], hi[ri], grads)
                    assert gcode is not None
                    logw[ri], greedy_code[ri] = lw.to(dev), gcode.to(dev)
                    if gmap is not None:
                        gmap[ri] = grads[0].to(dev) * sign[ri]
                        has_map[ri] = True
                    grad_evals[ri] += passes
                    mapped[ri] = loss[ri].min(1).values
            b = idx.numel()
            m = max(int(alpha_schedule(max(used, 1), budget, self.p_init) * k), 1)
            move = hw > k
            if move:
                m = min(m, hw - k)
            kk = keys[idx]
            # one draw per step: [slots k | entering locations hw | offers k (swarm) | values]
            nl = (hw + (k if P > 1 else 0)) if move else 0
            u = uniforms(kk, step, 0, (p, k + nl + n_val(m)))
            u_val = u[..., k + nl:]
            cur_loc, cur_val, cur_loss = loc[idx, :p], val[idx, :p], loss[idx]
            # window runs and ``leave``: 1 for a pixel among the most useful (it leaves last), else 0
            useful: torch.Tensor | float = 0.0
            mapped_i = has_map[idx] & (~win[idx] | (step > self.window_refresh))
            if gmap is not None and bool(mapped_i.any()):
                useful = self._useful(gmap[idx], xf[idx], cur_loc, cur_val, leave_n[idx]) * mapped_i.view(-1, 1, 1)
            if P == 1:
                # one particle: it is the global best; which leave is uniform, which enter from the prior
                slots = (u[..., :k] + useful).topk(m, dim=2, largest=False).indices
                if move:
                    sc = u[..., k: k + hw].clone() if self.prior == "uniform" else \
                        logw.index_select(0, idx).unsqueeze(1) + _gumbel(u[..., k: k + hw])
                    sc.scatter_(2, cur_loc, float("-inf"))                # not the particle's own
                    new_loc = sc.topk(m, dim=2).indices                   # [b, 1, m]
                else:
                    new_loc = cur_loc.gather(2, slots)
                new_val = fresh(idx, new_loc, u_val)
            else:
                gb = cur_loss.argmin(1)                                    # global best particle
                g_loc = loc[idx, gb]                                       # [b, k]
                g_mask = torch.zeros(b, hw, dtype=torch.bool, device=dev).scatter_(1, g_loc, True)
                # which leave: uniform among the slots the global best does not hold, those last
                held = g_mask.gather(1, cur_loc.reshape(b, p * k)).view(b, p, k).double()
                slots = (u[..., :k] + held + useful).topk(m, dim=2, largest=False).indices
                if move:
                    # which enter: global-best locations (offered with prob. social), else the prior
                    g_map = torch.zeros(b, hw, c, dtype=x.dtype, device=dev).scatter_(
                        1, g_loc.unsqueeze(-1).expand(-1, -1, c), val[idx, gb])    # [b, HW, C]
                    sc = logw.index_select(0, idx).unsqueeze(1) + _gumbel(u[..., k: k + hw])
                    offer = (u[..., k + hw: 2 * k + hw] < self.social).double() * 1e6
                    sc.scatter_add_(2, g_loc.unsqueeze(1).expand(-1, p, -1), offer)
                    sc.scatter_(2, cur_loc, float("-inf"))                # not the particle's own
                    new_loc = sc.topk(m, dim=2).indices                   # [b, p, m]
                    from_g = g_mask.unsqueeze(1).expand(-1, p, -1).gather(2, new_loc)
                    g_val = g_map.gather(1, new_loc.reshape(b, p * m, 1).expand(-1, -1, c)).view(b, p, m, c)
                    new_val = torch.where(from_g.unsqueeze(-1), g_val, fresh(idx, new_loc, u_val))
                else:                                                     # k = H·W: recolour only
                    new_loc = cur_loc.gather(2, slots)
                    new_val = fresh(idx, new_loc, u_val)
            cand_loc = cur_loc.scatter(2, slots, new_loc)
            cand_val = cur_val.scatter(2, slots.unsqueeze(-1).expand(-1, -1, -1, c), new_val)
            lc, ok = evaluate(idx, cand_loc, cand_val)
            used += p
            accept = lc <= cur_loss[:, :p]
            loc[idx, :p] = torch.where(accept.unsqueeze(-1), cand_loc, cur_loc)
            val[idx, :p] = torch.where(accept.view(b, p, 1, 1), cand_val, cur_val)
            loss[idx, :p] = torch.where(accept, lc, cur_loss[:, :p])
            done[idx] |= ok.any(1)

        all_i = torch.arange(n, device=dev)
        best = loss.argmin(1)                                             # a success (−1) if any
        bloc, bval = loc[all_i, best], val[all_i, best]
        untouched = queries == 0
        bloc = torch.where(untouched.unsqueeze(1), torch.full_like(bloc, -1), bloc)
        if self.refine:
            bloc = self._refine(x, y, target, bloc, bval, loss.min(1).values < 0, queries, keys,
                                self._cap(grad_evals))
        x_adv = torch.minimum(torch.maximum(_apply(x, bloc, bval), lo), hi)
        return self._finish(x, x_adv, y, target, queries, indices=bloc, grad_evals=grad_evals)

    def _spgd_seed(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor, keys: torch.Tensor,
                   lo: torch.Tensor, hi: torch.Tensor, loc0: torch.Tensor, val0: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """A projected sPGD run of ``spgd_steps`` steps on images x [b, C, H, W]; its best judged
        image becomes a particle: (locations [b, k], values [b, k, C], forward passes [b],
        backward passes [b]). Its changed pixels keep sPGD's values (inside the box, not
        necessarily corners); when it changed fewer than k, the particle's own start (loc0 [b, k],
        val0 [b, k, C]) fills the rest."""
        b, c, h, w = x.shape
        hw, k = h * w, self.pixels
        sp = SPGD(self.model, pixels=k, eps=self.eps, iterations=self.spgd_steps, variant="projected",
                  min_prob=self.criterion.min_prob, max_prob=self.criterion.max_prob, seed=self.seed,
                  batch_size=self.batch_size)
        img, _, _, fwd, bwd = sp.sweep(x, y, target, keys, lo, hi, False, stream=40)
        xf, imf = x.reshape(b, c, hw), img.reshape(b, c, hw)
        chg = (imf != xf).any(1)                                          # [b, hw], at most k
        own = torch.zeros(b, hw, dtype=torch.float64, device=x.device).scatter_(1, loc0, 1.0)
        order = torch.arange(hw, device=x.device, dtype=torch.float64) * 1e-9   # ties: the lower location
        loc = (2 * chg.double() + own - order).topk(k, dim=1).indices     # [b, k]
        own_val = torch.zeros(b, hw, c, dtype=val0.dtype, device=x.device).scatter_(
            1, loc0.unsqueeze(-1).expand(-1, -1, c), val0)
        seed_val = imf.gather(2, loc.unsqueeze(1).expand(-1, c, -1)).transpose(1, 2)   # [b, k, C]
        val = torch.where(chg.gather(1, loc).unsqueeze(-1), seed_val,
                          own_val.gather(1, loc.unsqueeze(-1).expand(-1, -1, c)))
        return loc, val.to(val0.dtype), fwd, bwd

    def _cap(self, grad_evals: torch.Tensor) -> torch.Tensor:
        """Queries an image may spend after ``grad_evals`` backward passes: the budget less
        ``grad_cost`` per pass (rounded down; the budget itself when grad_cost = 0)."""
        if self.grad_cost == 0:
            return torch.full_like(grad_evals, self.queries)
        return torch.floor(self.queries - self.grad_cost * grad_evals.double() + 1e-9).long()

    def _useful(self, g: torch.Tensor, x0: torch.Tensor, loc: torch.Tensor, val: torch.Tensor,
                leave: torch.Tensor | None = None) -> torch.Tensor | float:
        """[b, p, k] float64: 1 for the pixels outside the ``leave`` [b] (default: ``window_leave``)
        least useful of each particle, by the first-order contribution to the goal
        Σ_channels g · (value − clean) (g [b, C, H·W] the map's gradient of log p_c, signed so that
        it points towards success, x0 [b, C, H·W] the clean images, loc [b, p, k], val
        [b, p, k, C]); 0.0 when every pixel may leave."""
        b, p, k = loc.shape
        c = g.shape[1]
        if leave is None:
            leave = torch.full((b,), self.window_leave, dtype=torch.long, device=loc.device)
        if bool((leave >= k).all()):
            return 0.0
        at = loc.reshape(b, 1, p * k).expand(-1, c, -1)
        d = val.reshape(b, p * k, c).transpose(1, 2).double() - x0.gather(2, at).double()
        contrib = (g.gather(2, at) * d).sum(1).view(b, p, k)
        rank = contrib.argsort(dim=2, stable=True).argsort(dim=2)
        return (rank >= leave.view(-1, 1, 1)).double()

    def _refine(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor, loc: torch.Tensor,
                val: torch.Tensor, won: torch.Tensor, queries: torch.Tensor, keys: torch.Tensor,
                cap: torch.Tensor) -> torch.Tensor:
        """Drop pixels (loc → −1) of successful images while they stay adversarial, one try per
        query and pixel in a random order, within the budget (``cap`` [N] queries per image);
        updates ``queries`` in place."""
        n, k = loc.shape
        order = torch.argsort(uniforms(keys, 1 << 40, 5, (k,)), dim=1)    # [N, k]
        for r in range(k):
            idx = (won & (queries < cap)).nonzero().view(-1)
            if idx.numel() == 0:
                break
            slot = order[idx, r]
            cand = loc[idx].scatter(1, slot.view(-1, 1), -1)
            # a removed slot repeats a kept slot's location and value, so it writes nothing new
            keep = cand >= 0
            anchor = keep.to(torch.int8).argmax(1, keepdim=True)
            if not bool(keep.any(1).all()):                               # the last pixel: keep it
                live = keep.any(1)
                idx, slot, cand, keep, anchor = idx[live], slot[live], cand[live], keep[live], anchor[live]
                if idx.numel() == 0:
                    break
            fl = torch.where(keep, cand, cand.gather(1, anchor))
            a_val = val[idx].gather(1, anchor.unsqueeze(-1).expand(-1, -1, val.shape[2]))
            fv = torch.where(keep.unsqueeze(-1), val[idx], a_val)
            _, ok = _score(self.model, x, idx, fl, fv, y, target, self.criterion, self.batch_size, self.loss)
            queries[idx] += 1
            loc[idx] = torch.where(ok.unsqueeze(1), cand, loc[idx])
        return loc
