"""Input handling shared by every attack."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn

from ..checks import check_classes, check_gradient, check_images, check_logits, check_outputs, set_eval
from ..errors import InputError

TargetSpec = torch.Tensor | int | str | None


MIN_ROWS = 16
"""Model calls made by :func:`probs_of` have at least this many rows: CPU GEMM kernels take a
different, slightly differently rounding path for a handful of rows, and an image's result must
not depend on how many other images share its call (chunked and sharded runs agree bit for bit,
at one intra-op thread; with several threads the kernels' split can still depend on the rows)."""


@torch.no_grad()
def padded_forward(model: nn.Module, xb: torch.Tensor) -> torch.Tensor:
    """model(xb), with calls of fewer than :data:`MIN_ROWS` rows padded by repeating the last row."""
    m = xb.shape[0]
    if 0 < m < MIN_ROWS:
        xb = torch.cat([xb, xb[-1:].expand(MIN_ROWS - m, *xb.shape[1:])])
    return model(xb)[:m]


@torch.no_grad()
def probs_of(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Softmax probabilities (float64) [N, K] for images [N, C, H, W], in chunks (each call
    padded to at least :data:`MIN_ROWS` rows); :class:`InputError` when the model returns NaN
    or infinite values."""
    out = torch.cat([torch.softmax(padded_forward(model, x[i: i + batch_size]).double(), -1)
                     for i in range(0, len(x), batch_size)])
    if not torch.isfinite(out).all():  # argmax(NaN) is class 0: never count that as right or fooled
        raise InputError("the model returned NaN or infinite outputs",
                         "fix the model (its weights may be damaged); results on such a model mean nothing")
    return out


@torch.no_grad()
def prepare(model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: TargetSpec = None
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Check images/labels/targets; returns (clean logits [N,K], y [N], target [N]) where the
    target is −1 for untargeted. ``target``: None, ``"second"`` (most probable class other than
    y), or class indices (an int, or a tensor [N]); a target equal to the true class is refused."""
    check_images(x)
    set_eval(model)  # attacks wrapped in @evaluating have done this already and restore the mode
    logits = model(x)
    k = check_logits(logits, x.shape[0])
    check_outputs(logits)
    y = check_classes(torch.as_tensor(y, device=x.device), x.shape[0], k)
    n = x.shape[0]
    if target is None:
        t = torch.full((n,), -1, dtype=torch.long, device=x.device)
    elif isinstance(target, str):
        if target != "second":
            raise InputError(f"unknown target {target!r}", 'use "second", a class index, or None (untargeted)')
        t = logits.masked_fill(torch.nn.functional.one_hot(y, k).bool(), float("-inf")).argmax(1)
    else:
        t = check_classes(torch.as_tensor(target, device=x.device), n, k)
        same = (t == y).nonzero().view(-1)
        if same.numel():
            i = int(same[0])
            raise InputError(f"image {i}: target class {int(t[i])} equals its true class",
                             "choose a different target, or run untargeted")
    return logits.detach(), y, t


def takes_offset(attack: Any) -> bool:
    """Whether ``attack(x, y, offset=...)`` is accepted: attacks whose per-image seeded choices
    depend on where the images sit in the caller's list (see ``MFIPSO.__call__``)."""
    try:
        return "offset" in inspect.signature(attack).parameters
    except (TypeError, ValueError):
        return False


F = TypeVar("F", bound=Callable[..., Any])


def evaluating(grad: bool | Callable[[Any], bool] = False) -> Callable[[F], F]:
    """Decorator for an attack's ``__call__(self, x, y, ...)``: runs it with ``self.model`` in
    eval mode (a model found in train mode is switched, with a warning, and switched back
    afterwards) and, when ``grad`` (a bool, or a function of the attack), first checks once per
    model that its outputs have a finite gradient with respect to the images."""

    def deco(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(self: Any, x: torch.Tensor, y: Any, *args: Any, **kwargs: Any) -> Any:
            was_training = set_eval(self.model)
            try:
                if grad(self) if callable(grad) else grad:
                    check_images(x)
                    check_gradient(self.model, x)
                return fn(self, x, y, *args, **kwargs)
            finally:
                if was_training:
                    self.model.train()

        return wrapper  # type: ignore[return-value]

    return deco
