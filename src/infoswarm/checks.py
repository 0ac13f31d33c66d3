"""Input checks shared by the library: images, model outputs, class indices.

Each raises :class:`~infoswarm.errors.InputError` with a one-line message."""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable

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


def check_outputs(out: torch.Tensor, outputs: str = "logits") -> None:
    """Refuse model outputs that would give silently wrong results: NaN or infinite values
    (argmax of NaN is class 0, a NaN model would look right or fooled), and rows that look like
    probabilities (every entry in [0, 1], each row summing to 1) when the code expects logits.

    ``outputs``: ``"logits"`` (the default) or ``"probs"`` (the model returns probabilities; wrap
    it with :class:`LogOutputs` first, which is what ``--outputs probs`` does)."""
    if outputs not in ("logits", "probs"):
        raise InputError(f"unknown outputs={outputs!r}", 'use "logits" or "probs"')
    out = out.detach()
    if not torch.isfinite(out).all():
        bad = int((~torch.isfinite(out)).any(1).sum()) if out.dim() == 2 else int((~torch.isfinite(out)).sum())
        raise InputError(f"the model returned NaN or infinite outputs (for {bad} of {len(out)} probe images)",
                         "fix the model (its weights may be damaged); results on such a model mean nothing")
    if outputs == "logits" and out.dim() == 2 and out.shape[0] >= 2 and looks_like_probs(out):
        raise InputError("the model's outputs look like probabilities (each row in [0, 1] summing to 1), "
                         "not logits", "return logits from forward, or say --outputs probs "
                         "(API: wrap the model with infoswarm.checks.LogOutputs)")


def looks_like_probs(out: torch.Tensor) -> bool:
    """True when every row of ``out`` [N, K] lies in [0, 1] and sums to 1 (±1e-3)."""
    o = out.detach().double()
    return bool(((o >= 0) & (o <= 1)).all() and torch.allclose(o.sum(1), torch.ones_like(o[:, 0]), atol=1e-3))


class LogOutputs(torch.nn.Module):
    """Wraps a model that returns probabilities [N, K] so that it returns log-probabilities,
    which the library treats as logits (softmax of log p is p). Probabilities are clamped at
    1e-30 before the log, so a zero gives a large negative logit, not −inf."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.train(model.training)  # same mode as the wrapped model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).clamp_min(1e-30).log()


_GRAD_CHECKED: "weakref.WeakSet[torch.nn.Module]" = weakref.WeakSet()


def check_gradient(model: torch.nn.Module, x: torch.Tensor) -> None:
    """The model's outputs must have a finite gradient with respect to its input images (the
    FI, saliency and gradient attacks need it); checked once per model on up to 16 images."""
    try:
        if model in _GRAD_CHECKED:
            return
    except TypeError:  # not hashable: check every time
        pass
    xp = x[:16].detach().clone().requires_grad_(True)
    with torch.enable_grad():
        try:
            out = model(xp)
        except Exception as e:  # noqa: BLE001 - a user's model can fail in any way
            raise InputError(f"the model failed on a gradient probe ({type(e).__name__}: "
                             f"{(str(e).splitlines() or [''])[0][:100]})", "fix the model's forward") from None
        if isinstance(out, torch.Tensor) and out.dim() == 2:
            check_outputs(out)
        if not isinstance(out, torch.Tensor) or not out.requires_grad:
            raise InputError("the model's outputs have no gradient with respect to the images "
                             "(torch.no_grad, .detach() or non-torch code in forward)",
                             "remove it from forward, or use an attack without gradients "
                             "(onepixel, sparse-rs, sparse-swarm --prior uniform, mfipso --pixel-rule random)")
        (g,) = torch.autograd.grad(out.double().logsumexp(1).sum() if out.dim() == 2 else out.sum(), xp,
                                   allow_unused=True)
    if g is None or not torch.isfinite(g).all():
        raise InputError("the model's gradient with respect to the images is " +
                         ("missing" if g is None else "NaN or infinite"),
                         "fix the model's forward, or use an attack without gradients (onepixel, sparse-rs)")
    try:
        _GRAD_CHECKED.add(model)
    except TypeError:
        pass


def set_eval(model: torch.nn.Module, note: Callable[[str], None] | None = None) -> bool:
    """Switch a model in train mode to eval mode (dropout off, batch-norm statistics frozen),
    so that results are reproducible; returns whether it was in train mode (for restoring).
    ``note`` receives a one-line message; by default a :class:`UserWarning` is issued."""
    if not model.training:
        return False
    msg = ("the model was in train mode; switched to eval mode for this run (dropout off, "
           "batch-norm statistics frozen) and restored afterwards")
    if note is None:
        warnings.warn(msg, UserWarning, stacklevel=3)
    else:
        note(msg)
    model.eval()
    return True


def unit_float(x: torch.Tensor) -> torch.Tensor:
    """Images as floats in [0, 1]: uint8 images (0..255) divided by 255 as float32, any other
    tensor returned as it is (same shape)."""
    return x.float() / 255.0 if x.dtype == torch.uint8 else x
