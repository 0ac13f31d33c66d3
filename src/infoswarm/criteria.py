"""What counts as a successful attack, and a continuous "aim" that is 0 exactly on success.

* targeted (``target`` ≥ 0): argmax = target and p_target ∈ [min_prob, max_prob];
* untargeted (``target`` = −1): argmax ≠ true label and the winning wrong class's probability
  ∈ [min_prob, max_prob].

The aim (in probability units, ≥ 0) is what the swarm drives to zero:
targeted  relu(max_{k≠t} p_k − p_t) + relu(min_prob − p_t) + relu(p_t − max_prob);
untargeted relu(p_y − p_w) + relu(min_prob − p_w) + relu(p_w − max_prob), w = best wrong class.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import InputError


@dataclass(frozen=True)
class Criterion:
    """Success rule with optional bounds on the winning (target) class's probability."""

    min_prob: float | None = None
    max_prob: float | None = None

    def validate(self) -> None:
        lo, hi = self.min_prob, self.max_prob
        for name, v in (("min_prob", lo), ("max_prob", hi)):
            if v is not None and not (0.0 < v <= 1.0):
                raise InputError(f"{name} must lie in (0, 1], got {v}", f"pass e.g. --{name.replace('_', '-')} 0.5")
        if lo is not None and hi is not None and lo > hi:
            raise InputError(f"min_prob {lo} is above max_prob {hi}", "make min_prob <= max_prob")

    def evaluate(self, probs: torch.Tensor, y: torch.Tensor, target: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """probs [..., K], y and target [...] (target −1 = untargeted) ->
        (success bool, aim float, winning class, its probability), each [...]."""
        k = probs.shape[-1]
        targeted = target >= 0
        # class whose probability is judged: the target, or the best class other than y
        not_y = probs.masked_fill(torch.nn.functional.one_hot(y, k).bool(), float("-inf"))
        best_wrong = not_y.argmax(-1)
        judged = torch.where(targeted, target.clamp(min=0), best_wrong)
        p_j = probs.gather(-1, judged.unsqueeze(-1)).squeeze(-1)
        others = probs.masked_fill(torch.nn.functional.one_hot(judged, k).bool(), float("-inf")).amax(-1)
        p_y = probs.gather(-1, y.unsqueeze(-1)).squeeze(-1)
        gap = torch.where(targeted, others - p_j, p_y - p_j)
        aim = gap.clamp(min=0)
        within = torch.ones_like(p_j, dtype=torch.bool)
        if self.min_prob is not None:
            aim = aim + (self.min_prob - p_j).clamp(min=0)
            within &= p_j >= self.min_prob
        if self.max_prob is not None:
            aim = aim + (p_j - self.max_prob).clamp(min=0)
            within &= p_j <= self.max_prob
        pred = probs.argmax(-1)
        success = torch.where(targeted, pred == judged, pred != y) & within
        return success, aim, judged, p_j
