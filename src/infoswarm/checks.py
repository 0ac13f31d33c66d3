"""Input checks shared by the library: images, model outputs, class indices.

Each raises :class:`~infoswarm.errors.InputError` with a one-line message."""

from __future__ import annotations

import torch

from .errors import InputError


def check_images(x: torch.Tensor, channels: int | None = None) -> None:
    """``x`` must be a float tensor [N, C, H, W] with finite values in [0, 1]."""
    if not isinstance(x, torch.Tensor):
        raise InputError(f"images must be a torch.Tensor, got {type(x).__name__}",
                         "convert with torch.as_tensor")
    if x.dim() != 4:
        raise InputError(f"images must be [N, C, H, W], got shape {tuple(x.shape)}",
                         "add the missing batch or channel axis (x[None] or x[:, None])")
    if not x.is_floating_point():
        raise InputError(f"images must be float in [0, 1], got {x.dtype}",
                         "convert uint8 images with infoswarm.data.to_float")
    if channels is not None and x.shape[1] != channels:
        raise InputError(f"images have {x.shape[1]} channels, the model takes {channels}",
                         "use the dataset the model was made for")
    if x.numel() == 0:
        raise InputError("no images given", "pass at least one image")
    if not torch.isfinite(x).all():
        raise InputError("images contain NaN or infinite values", "clean the input images")
    lo, hi = x.min().item(), x.max().item()
    if lo < 0.0 or hi > 1.0:
        raise InputError(f"image values lie in [{lo:.4g}, {hi:.4g}], outside [0, 1]",
                         "scale pixels to [0, 1] (e.g. x / 255) and normalise inside the model")


def check_logits(logits: torch.Tensor, n: int) -> int:
    """A model's output must be [n, K] with K >= 2; returns K."""
    if logits.dim() != 2 or logits.shape[0] != n or logits.shape[1] < 2:
        raise InputError(f"the model returned shape {tuple(logits.shape)} for {n} images, "
                         "expected [N, K] logits with K >= 2",
                         "wrap the model so that it returns one row of class logits per image")
    return int(logits.shape[1])


def check_classes(c: torch.Tensor, n: int, k: int) -> torch.Tensor:
    """Class indices: int tensor [n] (a scalar is broadcast) with values in 0..k-1."""
    c = torch.as_tensor(c)
    if c.is_floating_point() or c.dtype == torch.bool:
        raise InputError(f"class indices must be integers, got {c.dtype}", "pass a LongTensor")
    c = c.to(torch.long).reshape(-1)
    if c.numel() == 1 and n != 1:
        c = c.expand(n)
    if c.numel() != n:
        raise InputError(f"got {c.numel()} class indices for {n} images", "pass one class per image")
    if n and (c.min().item() < 0 or c.max().item() >= k):
        bad = c[(c < 0) | (c >= k)][0].item()
        raise InputError(f"class index {bad} is out of range for a model with {k} classes",
                         f"use classes 0..{k - 1}")
    return c.contiguous()
