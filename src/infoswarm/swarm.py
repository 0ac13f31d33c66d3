"""Canonical particle swarm optimisation, batched over problems × particles × dimensions.

Each of B independent problems (one per image) has its own box [lower, upper] ⊂ R^D and its own
swarm of P particles. Per iteration, for every particle:

    v ← w·v + c1·r1·(personal best − x) + c2·r2·(global best − x),   r1, r2 ~ U(0,1) per entry
    v ← clip(v, ±vmax_frac·(upper − lower));   x ← clip(x + v, lower, upper)

The velocity is carried between iterations, each particle keeps its own best, and the social
term uses the swarm's global best (the defects of the authors' released code are not copied).
A problem stops costing evaluations as soon as it is finished (the objective reports success).
Each problem draws from its own random stream (seeded per problem), so a problem's result does
not depend on which other problems share the batch: batched and one-at-a-time runs agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .errors import InputError

Objective = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""fn(positions [b, P, D], problem indices [b]) -> (values [b, P] to minimise, success [b, P])."""


@dataclass(frozen=True)
class SwarmConfig:
    """PSO settings (defaults: the paper's, CIFAR-10 swarm size)."""

    particles: int = 200
    iterations: int = 10
    w: float = 0.6
    c1: float = 2.0
    c2: float = 2.0
    v_init: float = 0.1          # initial velocities ~ U(0, v_init)
    vmax_frac: float = 0.05      # velocity clip, as a fraction of each dimension's range
    stop_on_success: bool = True

    def validate(self) -> None:
        if self.particles < 1 or self.iterations < 0:
            raise InputError(f"particles must be >= 1 and iterations >= 0 (got {self.particles}, "
                             f"{self.iterations})", "pass e.g. particles=200 iterations=10")
        import math

        vals = {"w": self.w, "c1": self.c1, "c2": self.c2, "vmax_frac": self.vmax_frac, "v_init": self.v_init}
        for name, v in vals.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise InputError(f"swarm weight {name} must be a finite number >= 0, got {v!r}",
                                 "use the paper's w 0.6, c1 2, c2 2")
        if self.vmax_frac <= 0:
            raise InputError("w, c1, c2 must be >= 0 and vmax_frac > 0", "use the paper's 0.6, 2, 2, 0.05")


@dataclass
class SwarmResult:
    """Best position [B, D] and value [B] per problem, success [B], evaluations used [B],
    and iterations run per problem [B]."""

    position: torch.Tensor
    value: torch.Tensor
    success: torch.Tensor
    evaluations: torch.Tensor
    iterations: torch.Tensor


def minimize(fn: Objective, lower: torch.Tensor, upper: torch.Tensor, config: SwarmConfig,
             seeds: torch.Tensor | list[int], active: torch.Tensor | None = None) -> SwarmResult:
    """Minimise ``fn`` independently for B problems with boxes ``lower``/``upper`` [B, D].

    ``seeds`` [B] seeds each problem's random stream. ``active`` [B] bool selects the problems
    to run (the others keep value +inf and cost nothing)."""
    config.validate()
    if lower.shape != upper.shape or lower.dim() != 2:
        raise InputError("lower and upper must both be [B, D]", "pass per-problem bounds")
    if torch.any(lower > upper):
        raise InputError("a lower bound exceeds its upper bound", "check the bounds")
    b, d = lower.shape
    p = config.particles
    dev, dt = lower.device, lower.dtype
    span = (upper - lower).unsqueeze(1)                                   # [B, 1, D]

    seed_list = [int(v) for v in torch.as_tensor(seeds).reshape(-1).tolist()]
    if len(seed_list) != b:
        raise InputError(f"got {len(seed_list)} seeds for {b} problems", "pass one seed per problem")
    gens = [torch.Generator().manual_seed(sd) for sd in seed_list]

    def rand(idx: torch.Tensor) -> torch.Tensor:
        """U(0,1) [len(idx), P, D] from each listed problem's own stream."""
        out = torch.stack([torch.rand(p, d, generator=gens[i], dtype=dt) for i in idx.tolist()]) \
            if idx.numel() else torch.empty(0, p, d, dtype=dt)
        return out.to(dev)

    everyone = torch.arange(b, device=dev)
    pos = lower.unsqueeze(1) + rand(everyone) * span
    vel = rand(everyone) * config.v_init
    vmax = config.vmax_frac * span
    vel = torch.maximum(torch.minimum(vel, vmax), -vmax)

    running = torch.ones(b, dtype=torch.bool, device=dev) if active is None else active.clone().to(dev)
    evals = torch.zeros(b, dtype=torch.long, device=dev)
    iters = torch.zeros(b, dtype=torch.long, device=dev)
    pbest = pos.clone()
    pbest_val = torch.full((b, p), float("inf"), device=dev, dtype=dt)
    gbest = pos[:, 0].clone()
    gbest_val = torch.full((b,), float("inf"), device=dev, dtype=dt)
    success = torch.zeros(b, dtype=torch.bool, device=dev)

    def evaluate(idx: torch.Tensor) -> None:
        if idx.numel() == 0:
            return
        vals, ok = fn(pos[idx], idx)
        evals[idx] += p
        better = vals < pbest_val[idx]
        pbest_val[idx] = torch.where(better, vals, pbest_val[idx])
        pbest[idx] = torch.where(better.unsqueeze(-1), pos[idx], pbest[idx])
        best_val, best_i = pbest_val[idx].min(1)
        improved = best_val < gbest_val[idx]
        gbest_val[idx] = torch.where(improved, best_val, gbest_val[idx])
        chosen = pbest[idx, best_i]
        gbest[idx] = torch.where(improved.unsqueeze(-1), chosen, gbest[idx])
        success[idx] |= ok.any(1)

    evaluate(running.nonzero().view(-1))
    if config.stop_on_success:
        running &= ~success
    for _ in range(config.iterations):
        idx = running.nonzero().view(-1)
        if idx.numel() == 0:
            break
        r1, r2 = rand(idx), rand(idx)
        v = (config.w * vel[idx] + config.c1 * r1 * (pbest[idx] - pos[idx])
             + config.c2 * r2 * (gbest[idx].unsqueeze(1) - pos[idx]))
        v = torch.maximum(torch.minimum(v, vmax[idx]), -vmax[idx])
        vel[idx] = v
        pos[idx] = torch.maximum(torch.minimum(pos[idx] + v, upper[idx].unsqueeze(1)),
                                 lower[idx].unsqueeze(1))
        iters[idx] += 1
        evaluate(idx)
        if config.stop_on_success:
            running &= ~success
    return SwarmResult(position=gbest, value=gbest_val, success=success, evaluations=evals, iterations=iters)
