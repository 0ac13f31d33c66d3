"""The attack contract: the :class:`Attack` base class every attack subclasses.

One call, the same for every attack::

    result = attack(x, y, target=None, offset=0)

``x`` [N, C, H, W] float images in [0, 1], ``y`` [N] integer labels. :meth:`Attack.__call__`
is final; it checks the inputs and the model's outputs, runs the model in eval mode (restoring
its mode afterwards), moves the inputs to the model's device, resolves the target and hands
over to the subclass's :meth:`Attack._run`, which returns an :class:`AttackResult` made by
:meth:`Attack._finish` (success re-verified by a fresh forward pass on the returned images).

Randomness is per image: image i of a call draws from streams seeded with (seed, offset + i),
so a list attacked in one call, in chunks or in shards gives the same results (bit for bit at
one intra-op thread: model calls are padded where the backend needs it, see :mod:`._forward`).
"""

from __future__ import annotations

import inspect
import operator
import time
from dataclasses import dataclass
from typing import Any, final

import torch
from torch import nn

from ..checks import (
    _first_line,
    check_classes,
    check_gradient,
    check_images,
    check_logits,
    check_model_object,
    check_model_once,
    check_outputs,
    set_eval,
)
from ..criteria import Criterion
from ..errors import InputError
from ._forward import MIN_ROWS, padded_forward, probs_of
from ._rng import Offset, positions
from .result import AttackResult, finalize

__all__ = ["Attack", "Call", "MIN_ROWS", "Offset", "TargetSpec", "check_seed", "padded_forward", "prepare",
           "probs_of", "resolve_target", "takes_offset"]

TargetSpec = torch.Tensor | int | str | None
"""What an attack aims for: None or ``"none"`` (untargeted), ``"second"`` (the most probable
class other than the true one, on the clean image), or class indices (an int, or an integer
tensor [N]); :class:`~infoswarm.attacks.MFIPSO` also takes ``"confusion"``."""


def check_seed(seed: int) -> int:
    """An integer seed (a Python or numpy int) as an int, or an :class:`InputError` naming ``seed``."""
    if not isinstance(seed, bool):
        try:
            return operator.index(seed)
        except TypeError:
            pass
    raise InputError(f"seed must be an int, got {seed!r}", "pass e.g. seed=0")


def _check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}", "pass e.g. 1024")
    return batch_size


def resolve_target(spec: TargetSpec, clean: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Targets [N] (int64, on y's device; −1 = untargeted) from a target ``spec`` (see
    :data:`TargetSpec`), the clean logits [N, K] and the checked labels y [N]. A target equal to
    the true class is refused."""
    n, k = clean.shape
    if spec is None or (isinstance(spec, str) and spec == "none"):
        return torch.full((n,), -1, dtype=torch.long, device=y.device)
    if isinstance(spec, str):
        if spec != "second":
            raise InputError(f"unknown target {spec!r}",
                             'use target="second", "none", a class index, or None (untargeted)')
        return clean.to(y.device).masked_fill(torch.nn.functional.one_hot(y, k).bool(), float("-inf")).argmax(1)
    if isinstance(spec, bool):
        raise InputError(f"target must be a class index, not {spec!r}", 'pass e.g. target=3 or target="second"')
    t = check_classes(torch.as_tensor(spec).to(y.device), n, k)
    same = (t == y).nonzero().view(-1)
    if same.numel():
        i = int(same[0])
        raise InputError(f"image {i}: target class {int(t[i])} equals its true class",
                         "choose a different target, or run untargeted")
    return t


def _clean_logits(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Logits [N, K] of the clean images in padded calls of ``batch_size`` rows at most, with the
    shape and value checks of the contract (:class:`InputError` for anything else)."""
    parts = []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            xb = x[i: i + batch_size]
            try:
                out = padded_forward(model, xb)
            except Exception as e:  # noqa: BLE001 - a user's model can fail in any way; one line
                raise InputError(f"the model failed on images of shape {tuple(x.shape[1:])} ({_first_line(e)})",
                                 "pass images of the shape the model was made for (e.g. 1x28x28 for "
                                 "mnist-cnn, 3x32x32 for cifar10-cnn)") from None
            if not isinstance(out, torch.Tensor):
                raise InputError(f"the model returned a {type(out).__name__}, not a tensor of logits",
                                 "wrap the model so that it returns one row of class logits per image")
            check_logits(out, xb.shape[0])
            parts.append(out.detach())
    logits = torch.cat(parts)
    if any(p.shape[1] != parts[0].shape[1] for p in parts):
        raise InputError("the model returned a different number of classes for different images",
                         "wrap the model so that it returns one row of class logits per image")
    check_outputs(logits)
    return logits


def _model_device(model: nn.Module) -> torch.device | None:
    """The device of the model's first parameter or buffer (None for a model without either,
    e.g. a query-only callable: the inputs then stay where they are)."""
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return None


def _model_dtype(model: nn.Module) -> torch.dtype | None:
    """The floating dtype of the model's first floating parameter (None without one)."""
    for p in model.parameters():
        if p.is_floating_point():
            return p.dtype
    return None


@dataclass(frozen=True)
class Call:
    """What :meth:`Attack.__call__` learnt about one call, for :meth:`Attack._run`.

    clean: logits [N, K] of the clean images (padded forward passes; not counted as queries);
    spec: the target spec the call's target tensor was resolved from (the per-call ``target=``,
    else the constructor's)."""

    clean: torch.Tensor
    spec: TargetSpec


class Attack:
    """Base class of every attack (see the module docstring for the contract).

    Args (keyword arguments of every subclass's constructor):
        model: classifier, [0,1] images [N,C,H,W] -> logits [N,K].
        target: the default target of every call (:data:`TargetSpec`); a call's ``target=``
            overrides it. The attribute ``attack.target`` may also be reassigned.
        min_prob, max_prob: success also needs the judged class's probability (the target, or
            the best wrong class) in [min_prob, max_prob].
        seed: seeds every image's random streams together with its position (an int).
        batch_size: rows per model call (≥ 1).

    A subclass implements :meth:`_run` (and may override :meth:`_needs_gradient` and
    :meth:`_resolve_target`); it never overrides ``__call__``.
    """

    model: nn.Module
    target: TargetSpec
    criterion: Criterion
    seed: int
    batch_size: int

    def __init__(self, model: nn.Module, *, target: TargetSpec = None, min_prob: float | None = None,
                 max_prob: float | None = None, seed: int = 0, batch_size: int = 1024) -> None:
        check_model_object(model)
        self.criterion = Criterion(min_prob, max_prob)
        self.criterion.validate()
        self.seed = check_seed(seed)
        self.batch_size = _check_batch_size(batch_size)
        self.model, self.target = model, target

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__call__" in cls.__dict__:
            raise TypeError(f"{cls.__name__} overrides Attack.__call__, which is final; implement _run instead")

    @final
    def __call__(self, x: torch.Tensor, y: Any, *, target: TargetSpec = None, offset: Offset = 0) -> AttackResult:
        """Attack images x [N,C,H,W] (float, finite, in [0,1]) with true labels y [N] (integers in
        0..K−1) and return an :class:`AttackResult` on the model's device.

        ``target``: this call's target (:data:`TargetSpec`); None uses the constructor's (the
        attribute ``self.target``); pass ``"none"`` for untargeted when that is set.
        ``offset``: position of x[0] in the caller's whole list of images (an int ≥ 0), or the
        positions of all N images (an integer tensor [N]); image i draws its random numbers from
        (seed, its position), so chunked and sharded runs give the same results as one call.

        Final: subclasses implement :meth:`_run`. The model runs in eval mode (a model found in
        train mode is switched with a warning and switched back afterwards); x and y move to the
        model's device; bad inputs or model outputs raise a one-line :class:`InputError`."""
        started = time.perf_counter()
        check_model_object(self.model)
        check_images(x)
        was_training = set_eval(self.model)
        try:
            dev, dtype = _model_device(self.model), _model_dtype(self.model)
            x = x.detach() if dev is None else x.detach().to(dev)
            if dtype is not None and x.dtype != dtype:  # e.g. float64 images for a float32 model
                x = x.to(dtype)
            n = x.shape[0]
            pos = positions(offset, n)
            yt = torch.as_tensor(y) if not isinstance(y, torch.Tensor) else y.detach()
            if yt.is_floating_point() or yt.dtype == torch.bool:
                raise InputError(f"labels y must be integers, got {yt.dtype}", "pass y as a LongTensor [N]")
            clean = _clean_logits(self.model, x, self.batch_size)
            check_model_once(self.model, x, self.batch_size)
            y = check_classes(yt.to(x.device), n, clean.shape[1])
            spec = self.target if target is None else target
            t = self._resolve_target(spec, clean, x, y)
            if self._needs_gradient():
                check_gradient(self.model, x)
            res = self._run(x, y, t, pos, Call(clean=clean, spec=spec))
        finally:
            if was_training:
                self.model.train()
        if not isinstance(res, AttackResult) or len(res) != n or res.x_adv.shape != x.shape:
            raise RuntimeError(f"{type(self).__name__}._run broke the attack contract "
                               "(it must return an AttackResult for the N images)")
        res.seconds = time.perf_counter() - started
        return res

    # ---- for subclasses --------------------------------------------------------------------

    def _run(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor, offset: torch.Tensor,
             call: Call) -> AttackResult:
        """Attack checked images x [N,C,H,W] on the model's device, labels y [N] (int64), targets
        [N] (int64, −1 = untargeted), positions ``offset`` [N] (int64, CPU) of the images in the
        caller's list (seed image i's streams with (self.seed, offset[i])), and the call's facts
        ``call``; return :meth:`_finish`'s result. The model is in eval mode."""
        raise NotImplementedError

    def _needs_gradient(self) -> bool:
        """Whether this attack takes input gradients (the model's are then checked once)."""
        return False

    def _resolve_target(self, spec: TargetSpec, clean: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Targets [N] (−1 = untargeted) for a target spec; see :func:`resolve_target`."""
        return resolve_target(spec, clean, y)

    def _finish(self, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor, target: torch.Tensor,
                queries: torch.Tensor, *, indices: torch.Tensor | None = None,
                grad_evals: torch.Tensor | None = None) -> AttackResult:
        """The result for adversarial images x_adv [N,C,H,W]: clamped to [0,1], success
        re-verified by a fresh (padded) forward pass (:func:`.result.finalize`); ``queries`` [N]
        model evaluations spent per image, ``indices`` [N, k] the perturbed locations (default:
        those that changed), ``grad_evals`` [N] backward passes outside the queries (default 0)."""
        res = finalize(self.model, x, x_adv, y, target, self.criterion, queries, time.perf_counter(),
                       indices=indices, batch_size=self.batch_size)
        if grad_evals is not None:
            res.grad_evals = grad_evals.to(res.queries.device, torch.long)
        return res


def takes_offset(attack: Any) -> bool:
    """Whether ``attack(x, y, offset=...)`` is accepted: true for every :class:`Attack` (the
    contract); for another callable (a caller's own wrapper), whether its signature names
    ``offset``."""
    if isinstance(attack, Attack):
        return True
    try:
        return "offset" in inspect.signature(attack).parameters
    except (TypeError, ValueError):
        return False


@torch.no_grad()
def prepare(model: nn.Module, x: torch.Tensor, y: Any, target: TargetSpec = None
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Check images/labels/targets as :meth:`Attack.__call__` does; returns (clean logits [N,K],
    y [N], target [N]) where the target is −1 for untargeted. Does not change the model's mode."""
    check_images(x)
    clean = _clean_logits(model, x, 1024)
    y = check_classes(torch.as_tensor(y, device=x.device), x.shape[0], clean.shape[1])
    return clean, y, resolve_target(target, clean, y)
