"""Which images an attack runs on, and what it aims at: one rule for ``attack``, ``harden`` and
``evaluate``.

* :func:`select_images`: the paper's rule (correctly classified and image FI ≥ τ, ``rule="fi"``)
  or every correctly classified image (``rule="all"``); with a class-index target, images whose
  label already is the target are left out (there is nothing to attack).
* :func:`parse_target`: the target text of the CLI and of a saved run (``none``, ``second``,
  ``least-likely``, ``random``, ``confusion`` or a class index) as the value
  :func:`infoswarm.attacks.registry.build` takes.

Errors name the Python argument (``target``, ``tau``); callers that read a flag pass its name
as ``name=`` so the user sees ``--target``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

import torch
from torch import nn

from . import influence
from .errors import InputError

RULES: tuple[str, ...] = ("fi", "all")

Target = Union[None, int, Literal["second", "least-likely", "random", "confusion"]]
"""An attack target: None (untargeted), "second" (the most probable wrong class),
"least-likely" (the least probable class), "random" (a wrong class drawn per image from the
seed and its position), "confusion" (mfipso: the most frequent confusion of the true class) or
one class index for every image."""


@dataclass(frozen=True)
class Selection:
    """The images chosen for an attack.

    ``indices`` [M] int64: positions in the scanned images, increasing. ``ranking``: the image-FI
    ranking the rule used (``fi`` [N] float64 image FI of the predicted class, ``logits`` [N, K],
    ``c`` [N] predicted classes), for every scanned image. ``correct`` [N] bool: prediction equals
    the label. ``rule`` and ``tau`` as applied."""

    indices: torch.Tensor
    ranking: influence.Ranking
    correct: torch.Tensor
    rule: str
    tau: float

    def __len__(self) -> int:
        return int(self.indices.numel())

    def describe(self) -> str:
        """The rule in words, e.g. ``correct, image FI >= 0.01``."""
        return f"correct, image FI >= {self.tau:g}" if self.rule == "fi" else "every correct image"


def select_images(model: nn.Module, x8: torch.Tensor, y: torch.Tensor, *, rule: str = "fi",
                  tau: float = 0.01, target: Target = None, batch_size: int = 500,
                  device: torch.device | str | None = None, progress: bool = False) -> Selection:
    """Choose the images to attack among ``x8`` [N, C, H, W] (uint8 0..255 or float [0, 1]) with
    labels ``y`` [N] int64.

    ``rule="fi"``: correctly classified and image FI (of the predicted class, dimensionless) ≥
    ``tau`` — the paper's vulnerable images, p_pred ≤ 1/(1+τ). ``rule="all"``: every correctly
    classified image. A class-index ``target`` drops images whose label is that class. The
    model's logits come from one pass in batches of ``batch_size`` on ``device``."""
    if rule not in RULES:
        raise InputError(f"unknown rule {rule!r}", f"use one of {', '.join(RULES)}")
    if not tau >= 0:
        raise InputError(f"tau must be >= 0, got {tau}", "pass e.g. tau=0.01")
    y = y.cpu()
    rank = influence.rank_images(model, x8, "pred", batch_size=batch_size, progress=progress, device=device)
    correct = rank.c == y
    chosen = correct & (rank.fi >= tau) if rule == "fi" else correct.clone()
    if isinstance(target, int) and not isinstance(target, bool):
        chosen &= y != target
    return Selection(indices=chosen.nonzero().view(-1), ranking=rank, correct=correct, rule=rule, tau=float(tau))


def parse_target(text: str | int | None, num_classes: int, *, name: str = "target",
                 allowed: tuple[str, ...] = ("none", "second", "least-likely", "random", "confusion")) -> Target:
    """The target named by ``text``: ``"none"`` (or None) → None, the other words as they are,
    or a class index in 0..``num_classes``−1 (an int, or its decimal text). ``allowed`` limits
    the words; errors call the argument ``name``."""
    if text is None:
        return None
    if isinstance(text, bool):
        raise InputError(f"invalid {name} {text!r}", f"use {', '.join(allowed)} or a class index")
    if isinstance(text, int):
        value = text
    else:
        word = text.strip().lower()
        if word in allowed:
            return None if word == "none" else word  # type: ignore[return-value]
        try:
            value = int(word)
        except ValueError:
            raise InputError(f"unknown {name} {text!r}", f"use {', '.join(allowed)} or a class index") from None
    if not 0 <= value < num_classes:
        raise InputError(f"{name} {value} is out of range for {num_classes} classes", f"use 0..{num_classes - 1}")
    return value
