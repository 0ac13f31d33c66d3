"""Input checks shared by the library: images, model outputs, class indices.

Each raises :class:`~infoswarm.errors.InputError` with a one-line message."""

from __future__ import annotations

import math
import os
import warnings
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

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


# --------------------------------------------------------------------------------------------
# the one model check every command and the API's attacks run before any work

SAME_CALL_RTOL = 1e-4
"""Two identical calls (same images, same batch) may differ by at most this times (1 + the largest
|output|): bit-for-bit on the CPU, within float noise on a GPU (atomic adds, TF32)."""

BATCH_RTOL = 2e-2
"""An image's outputs at two batch sizes may differ by at most this times (1 + the largest |output|):
kernels take other, differently rounding paths for other batch sizes (TF32 on GPUs included), but
dropout or noise changes outputs by far more."""

PROBE_ROWS = 64
"""Images in the repeated identical call of :func:`check_model`."""


@dataclass(frozen=True)
class ModelCheck:
    """What :func:`check_model` measured.

    classes: K, the number of outputs per image; accuracy: clean accuracy on the first ``images``
    labelled probe images (None without labels); images: how many; chance: 1/K;
    seconds_per_image: forward time per image at the largest batch probed (seconds, wall clock);
    batch_sizes: the batch sizes probed; warning: a one-line warning (accuracy near chance) or None."""

    classes: int
    accuracy: float | None
    images: int
    chance: float
    seconds_per_image: float
    batch_sizes: tuple[int, ...]
    warning: str | None = None


def check_model_object(model: object, name: str = "model") -> None:
    """``model`` must be a ``torch.nn.Module`` (a tuple, dict, string or None is refused in one line)."""
    if not isinstance(model, torch.nn.Module):
        hint = ("load it first: infoswarm.zoo.load(name)" if isinstance(model, (str, os.PathLike))
                else "pass the nn.Module itself (e.g. model, not (model,) or {'model': model})")
        raise InputError(f"{name} must be a torch.nn.Module, got {type(model).__name__}", hint)


def _first_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:120]}"


def check_input_shape(input_shape: Sequence[int] | None, shape: Sequence[int], name: str, data_name: str) -> None:
    """Refuse images of ``shape`` (C, H, W) for a model that takes ``input_shape`` (None: any)."""
    got = tuple(int(s) for s in shape)
    if input_shape is not None and tuple(input_shape) != got:
        raise InputError(f"{name} takes {'x'.join(map(str, input_shape))} images, but {data_name} are "
                         f"{'x'.join(map(str, got))}",
                         "use the model made for this dataset (a mismatched pair gives meaningless results)")


def check_model(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, *,
                batch_sizes: Iterable[int] = (), outputs: str = "logits",
                input_shape: Sequence[int] | None = None, classes: int | None = None,
                name: str = "the model", data_name: str = "the images", max_rows: int = 1024,
                accuracy_floor: float | None = None) -> ModelCheck:
    """Check, once and before any work, that ``model`` gives meaningful, repeatable outputs on ``x``.

    Args:
        model: the classifier (an ``nn.Module``; it should already be in eval mode). With
            ``outputs="probs"`` pass it wrapped in :class:`LogOutputs`.
        x: probe images, float [N, C, H, W] in [0, 1] (N >= 1; e.g. the first 256 images a
            command will use), on the model's device.
        y: their labels, int [N] (optional): then the clean accuracy is measured.
        batch_sizes: the batch sizes (rows per model call) the command will use; each is probed,
            capped at ``max_rows``, by tiling ``x`` (so failures that appear only on big batches,
            and outputs that depend on the batch, are caught here).
        outputs: ``"logits"`` or ``"probs"`` (the model's raw outputs must then be probabilities:
            non-negative rows summing to 1).
        input_shape: the (C, H, W) the model is made for, when known (zoo models); other shapes are
            refused, also when the model would run on them (broadcast normalisation, adaptive pooling).
        classes: the number of classes of the dataset, when known; a model with another number of
            outputs is refused.
        name, data_name: how the model and the images are named in messages.
        accuracy_floor: clean accuracy below which :attr:`ModelCheck.warning` is set (default
            1/K + 0.1, i.e. near chance).

    Refused with a one-line :class:`InputError`: a non-Module; a shape or class-count mismatch; a
    forward that raises (at any probed batch size); outputs that are not [N, K] finite logits (or
    not probabilities with ``outputs="probs"``); two identical calls that differ by more than
    :data:`SAME_CALL_RTOL` (dropout left on, noise in forward); outputs of an image that change
    with the batch size by more than :data:`BATCH_RTOL` (noise reseeded per call, batch statistics).

    Returns a :class:`ModelCheck` (K, clean accuracy, forward seconds per image)."""
    import time

    check_model_object(model)
    check_images(x)
    shape = tuple(int(s) for s in x.shape[1:])
    check_input_shape(input_shape, shape, name, data_name)
    if outputs not in ("logits", "probs"):
        raise InputError(f"unknown outputs={outputs!r}", 'use "logits" or "probs"')

    def call(xb: torch.Tensor, what: str) -> torch.Tensor:
        try:
            with torch.no_grad():
                out = model(xb)
        except Exception as e:  # noqa: BLE001 - a user's model can fail in any way
            if isinstance(e, RuntimeError) and _is_oom(e):
                raise InputError(f"{name} ran out of memory on a batch of {len(xb)} images ({_first_line(e)})",
                                 "lower `batch_size`, or use a device with more memory") from None
            raise InputError(f"{name} failed on {what} of {data_name} (shape {shape}; {_first_line(e)})",
                             "fix the model's forward, or use the model made for this dataset") from None
        if not isinstance(out, torch.Tensor):
            raise InputError(f"{name} returned a {type(out).__name__}, not a tensor of logits",
                             "wrap the model so that it returns one row of class logits per image")
        check_logits(out, len(xb))
        return out.detach()

    n0 = min(len(x), PROBE_ROWS)
    a = call(x[:n0], f"a batch of {n0} images")
    k = int(a.shape[1])
    if outputs == "probs":
        raw = model.model if isinstance(model, LogOutputs) else model
        with torch.no_grad():
            p = raw(x[:n0]).detach().double()
        sums = p.sum(1)
        if not (bool((p >= 0).all()) and torch.allclose(sums, torch.ones_like(sums), atol=1e-3)):
            raise InputError(f"outputs=probs, but {name}'s outputs are not probabilities (values "
                             f"{float(p.min()):.3g} .. {float(p.max()):.3g}, row sums {float(sums.min()):.3g} .. "
                             f"{float(sums.max()):.3g})", "drop outputs=probs if the model returns logits, "
                             "or make it return softmax probabilities")
    check_outputs(a)
    b = call(x[:n0], f"a batch of {n0} images")
    scale = 1.0 + float(a.abs().max())
    diff = float((a - b).abs().max())
    if diff > SAME_CALL_RTOL * scale:
        raise InputError(f"{name} is random: two identical calls on the same {n0} images differ (by up to "
                         f"{diff:.3g}); dropout left on or noise in forward (e.g. torch.randn) would make every "
                         "result meaningless", "call model.eval() and remove the randomness from forward "
                         "(or draw it from a generator seeded inside forward)")
    if n0 > 1:  # the same images in reverse order, and half of them: noise drawn per row from a
        #          generator seeded per call, or outputs normalised by the batch's own statistics
        r = call(x[:n0].flip(0), f"a batch of {n0} images").flip(0)
        h = call(x[: max(1, n0 // 2)], f"a batch of {max(1, n0 // 2)} images")
        d = max(float((r - a).abs().max()), float((h - a[: len(h)]).abs().max()))
        if d > BATCH_RTOL * scale:
            raise InputError(f"{name} gives other outputs for the same images in another order or batch (by up "
                             f"to {d:.3g}): noise in forward (reseeded on every call), or batch statistics "
                             "(batch-norm in train mode)", "call model.eval() and remove the randomness from forward")
    if classes is not None and k != classes:
        raise InputError(f"{name} returns {k} classes, but {data_name} have {classes}",
                         "use the model made for this dataset")
    sizes = sorted({n0} | {max(1, min(int(s), max_rows)) for s in batch_sizes})
    ref, t_best, rows_best = a, 0.0, n0
    for s in sizes:
        xb = x[torch.arange(s, device=x.device) % len(x)] if s != n0 else x[:n0]
        t0 = time.perf_counter()
        out = call(xb, f"a batch of {s} images")
        dt = time.perf_counter() - t0
        if out.shape[1] != k:
            raise InputError(f"{name} returned {out.shape[1]} classes on a batch of {s} images and {k} on {n0}",
                             "wrap the model so that it returns one row of class logits per image")
        check_outputs(out)
        m = min(s, n0)
        d = float((out[:m] - a[:m]).abs().max())
        if d > BATCH_RTOL * scale:
            raise InputError(f"{name} gives other outputs for the same images in a batch of {s} than in one of "
                             f"{n0} (by up to {d:.3g}): noise in forward, or batch statistics (batch-norm in "
                             "train mode)", "call model.eval() and remove the randomness from forward")
        if s >= rows_best:
            t_best, rows_best = dt, s
        if min(s, len(x)) > len(ref):
            ref = out[: min(s, len(x))]
    acc = None
    n_acc = 0
    if y is not None:
        n_acc = min(len(ref), len(y))
        acc = float((ref[:n_acc].argmax(1).cpu() == torch.as_tensor(y)[:n_acc].cpu()).float().mean())
    chance = 1.0 / k
    floor = chance + 0.1 if accuracy_floor is None else accuracy_floor
    warning = None
    if acc is not None and acc < floor:
        warning = (f"clean accuracy {acc:.3f} on {n_acc} images is near chance ({chance:.3f} for {k} classes): "
                   f"{name} may not fit {data_name} (other dataset, weights, normalisation or label order); "
                   "results on it mean little")
    return ModelCheck(classes=k, accuracy=acc, images=n_acc, chance=chance,
                      seconds_per_image=max(t_best, 1e-9) / max(rows_best, 1), batch_sizes=tuple(sizes),
                      warning=warning)


def _is_oom(e: BaseException) -> bool:
    text = str(e).lower()
    return isinstance(e, MemoryError) or "out of memory" in text or "not enough memory" in text \
        or "defaultcpuallocator" in text or "can't allocate memory" in text


_MODEL_CHECKED: "weakref.WeakSet[torch.nn.Module]" = weakref.WeakSet()


def check_model_once(model: torch.nn.Module, x: torch.Tensor, batch_size: int) -> None:
    """:func:`check_model` on up to 16 of ``x`` at ``batch_size`` rows (capped at 64), once per
    model (the API's attacks call it on their first call)."""
    try:
        if model in _MODEL_CHECKED:
            return
    except TypeError:
        pass
    check_model(model, x[:16], batch_sizes=(min(batch_size, 64),))
    try:
        _MODEL_CHECKED.add(model)
    except TypeError:
        pass


# --------------------------------------------------------------------------------------------
# bounds: work and memory a person would never mean


DAY = 86400.0
"""The longest run a command starts without being split (seconds)."""


def check_work(forward_images: float, seconds_per_image: float, what: str, fix: str,
               limit_s: float = DAY) -> float:
    """Refuse work that would take longer than ``limit_s`` (default a day): ``forward_images``
    model evaluations of one image each at ``seconds_per_image`` (measured by :func:`check_model`).
    Returns the estimate in seconds."""
    est = float(forward_images) * seconds_per_image
    if not math.isfinite(est) or est > limit_s:
        raise InputError(f"{what} needs about {_count(forward_images)} model evaluations, which would take "
                         f"{_duration(est)} on this machine (measured {seconds_per_image * 1e3:.3g} ms per image), "
                         f"longer than the {_duration(limit_s)} a run may take", fix)
    return est


def available_memory(device: torch.device | str = "cpu") -> int:
    """Bytes free for new tensors on ``device``: the CUDA free memory, else MemAvailable of
    /proc/meminfo (else the physical memory)."""
    dev = torch.device(device)
    if dev.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(dev)[0])
        except Exception:  # noqa: BLE001
            pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def check_memory(nbytes: float, what: str, fix: str, device: torch.device | str = "cpu") -> None:
    """Refuse a tensor of ``nbytes`` bytes that cannot fit in the free memory of ``device``."""
    free = available_memory(device)
    if not math.isfinite(float(nbytes)) or nbytes > free:
        raise InputError(f"{what} needs about {_bytes(nbytes)} of memory at once, but only {_bytes(free)} is free",
                         fix)


def _count(n: float) -> str:
    return f"{n:.3g}" if not math.isfinite(n) or n >= 1e6 else f"{int(n)}"


def _bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} bytes"


def _duration(s: float) -> str:
    if not math.isfinite(s) or s > 3.15e9:
        return "more than a century"
    for unit, size in (("years", 3.15e7), ("days", DAY), ("hours", 3600.0), ("minutes", 60.0)):
        if s >= size:
            value = f"{s / size:.3g}"
            return f"{value} {unit[:-1] if value == '1' else unit}"
    return f"{s:.3g} s"


# --------------------------------------------------------------------------------------------
# text that is safe to print


def printable(text: object) -> str:
    """``text`` as a string any terminal can show: characters that are not valid Unicode (file
    names that are not UTF-8 come into Python as lone surrogates) are written as ``\\xNN``."""
    s = str(text)
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace") \
            if _all_escapes(s) else s.encode("utf-8", "backslashreplace").decode("utf-8")


def _all_escapes(s: str) -> bool:
    try:
        s.encode("utf-8", "surrogateescape")
        return True
    except UnicodeEncodeError:
        return False
