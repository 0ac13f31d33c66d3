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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, final

import torch
from torch import nn

from ..checks import (
    _first_line,
    check_classes,
    check_gradient,
    check_images,
    check_logits,
    check_model_once,
    check_outputs,
    set_eval,
)
from ..criteria import Criterion
from ..errors import InputError
from ._forward import MIN_ROWS, padded_forward, probs_of
from ._rng import Offset, image_keys, positions, uniforms
from .query import is_query_only
from .result import AttackResult, finalize

__all__ = ["Attack", "Call", "GRADIENTS", "MIN_ROWS", "NORMS", "OPTIONS", "Offset", "TARGETS", "TargetSpec",
           "check_seed", "clean_logits", "padded_forward", "probs_of", "resolve_target", "takes_offset"]

TargetSpec = torch.Tensor | int | str | None
"""What an attack aims for: None or ``"none"`` (untargeted), ``"second"`` (the most probable
class other than the true one, on the clean image), ``"least-likely"`` (the least probable class
on the clean image), ``"random"`` (a wrong class drawn per image from (seed, its position), so
chunks and shards draw the same), or class indices (an int, or an integer tensor [N]);
:class:`~infoswarm.attacks.MFIPSO` also takes ``"confusion"``."""

NORMS = ("l0", "linf")
"""The distances an attack may bound (:attr:`Attack.norm`): ``"l0"`` (k pixel locations, each
also within ``eps`` of the clean value) or ``"linf"`` (every entry within ``eps``)."""

OPTIONS = ("pixels", "eps", "budget", "steps")
"""The shared options of :func:`infoswarm.attacks.registry.build` an attack may use
(:attr:`Attack.uses`): ``pixels`` k locations, ``eps`` the L∞ box in [0, 1] pixel units,
``budget`` model queries per image, ``steps`` gradient steps."""

TARGETS = ("none", "second", "least-likely", "random", "class")
"""Target modes every attack supports (:attr:`Attack.targets`; ``"class"`` = class indices)."""

GRADIENTS = ("never", "always", "optional")
"""Whether an attack class takes input gradients (:attr:`Attack.gradients`): never, always, or
depending on its settings (then :meth:`Attack.needs_gradient` says for one configuration)."""

_TARGET_WORDS = ("none", "second", "least-likely", "random")


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


def resolve_target(spec: TargetSpec, clean: torch.Tensor, y: torch.Tensor, *, seed: int = 0,
                   positions: torch.Tensor | None = None) -> torch.Tensor:
    """Targets [N] (int64, on y's device; −1 = untargeted) from a target ``spec`` (see
    :data:`TargetSpec`), the clean logits [N, K] and the checked labels y [N]. ``"random"``
    draws image i's wrong class from (``seed``, ``positions[i]``) (default positions 0..N−1),
    so the same image at the same position gets the same target in any chunk. A target equal to
    the true class is refused."""
    n, k = clean.shape
    if spec is None or (isinstance(spec, str) and spec == "none"):
        return torch.full((n,), -1, dtype=torch.long, device=y.device)
    if isinstance(spec, str):
        if spec not in _TARGET_WORDS:
            raise InputError(f"unknown target {spec!r}", 'use target="second", "least-likely", "random", "none", '
                             "a class index, or None (untargeted)")
        if k < 2:
            raise InputError(f"target={spec} needs a model with at least 2 classes", "run untargeted")
        own = torch.nn.functional.one_hot(y, k).bool()
        c = clean.to(y.device)
        if spec == "second":
            return c.masked_fill(own, float("-inf")).argmax(1)
        if spec == "least-likely":
            return c.masked_fill(own, float("inf")).argmin(1)
        pos = torch.arange(n, dtype=torch.long) if positions is None else positions
        u = uniforms(image_keys(check_seed(seed), pos.cpu()), 0, 7, (1,)).view(-1).to(y.device)
        r = (u * (k - 1)).long().clamp(max=k - 2)             # one of the K − 1 wrong classes
        return r + (r >= y).long()
    if isinstance(spec, bool):
        raise InputError(f"target must be a class index, not {spec!r}", 'pass e.g. target=3 or target="second"')
    t = check_classes(torch.as_tensor(spec).to(y.device), n, k)
    same = (t == y).nonzero().view(-1)
    if same.numel():
        i = int(same[0])
        raise InputError(f"the target class of image {i} (of {n}) is {int(t[i])}, its true class, so there is "
                         f"nothing to attack ({same.numel()} image(s) like this)",
                         "choose a target class other than the true one, or run untargeted")
    return t


def clean_logits(model: nn.Module, x: torch.Tensor, batch_size: int) -> torch.Tensor:
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


def _as_images(x: Any) -> Any:
    """A numpy array of images as a torch tensor (its dtype; ``__call__`` then takes the
    model's); other inputs unchanged (checked by :func:`check_images`)."""
    if type(x).__module__ == "numpy" and hasattr(x, "dtype"):
        return torch.from_numpy(x.copy() if not x.flags.writeable else x)
    return x


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
        model: classifier, [0,1] images [N,C,H,W] -> logits [N,K]: an ``nn.Module``, or (for
            the attacks that need no gradients in their configuration) any callable doing the
            same or the path of an ONNX file (:func:`.query.as_model`).
        target: the default target of every call (:data:`TargetSpec`); a call's ``target=``
            overrides it. The attribute ``attack.target`` may also be reassigned.
        min_prob, max_prob: success also needs the judged class's probability (the target, or
            the best wrong class) in [min_prob, max_prob].
        seed: seeds every image's random streams together with its position (an int).
        batch_size: rows per model call (≥ 1).

    Capabilities (class attributes, read by the registry, the CLI, ``evaluate``, the presets,
    the artifacts and the benchmarks; as Foolbox's ``distance`` and torchattacks'
    ``supported_mode``): :attr:`norm`, :attr:`uses`, :attr:`targets`, :attr:`gradients` and
    :attr:`defaults`; :meth:`needs_gradient` says it for one configuration.

    A subclass implements :meth:`_run` (and may override :meth:`needs_gradient` and
    :meth:`_resolve_target`); it never overrides ``__call__``.
    """

    norm: ClassVar[Literal["l0", "linf"]] = "l0"
    """The distance the attack bounds (:data:`NORMS`)."""
    uses: ClassVar[tuple[str, ...]] = ()
    """The shared options of :func:`~infoswarm.attacks.registry.build` it reads (:data:`OPTIONS`);
    the others are ignored (the CLI says so in a note)."""
    targets: ClassVar[tuple[str, ...]] = TARGETS
    """The target modes it supports (:data:`TARGETS`, plus e.g. ``"confusion"``)."""
    gradients: ClassVar[Literal["never", "always", "optional"]] = "never"
    """Whether it takes input gradients (:data:`GRADIENTS`)."""
    defaults: ClassVar[Mapping[str, Any]] = {"target": None}
    """The one place of its defaults for the shared options it uses, and ``target``: what
    ``registry.build(name, model)`` and ``infoswarm attack --attack NAME`` use when they are not
    given; its constructor's own defaults agree (``tests/test_attack_contract.py`` checks)."""

    model: nn.Module
    target: TargetSpec
    criterion: Criterion
    seed: int
    batch_size: int

    def __init__(self, model: Any, *, target: TargetSpec = None, min_prob: float | None = None,
                 max_prob: float | None = None, seed: int = 0, batch_size: int = 1024) -> None:
        from .query import as_model

        self.criterion = Criterion(min_prob, max_prob)
        self.criterion.validate()
        self.seed = check_seed(seed)
        self.batch_size = _check_batch_size(batch_size)
        self.model, self.target = as_model(model), target

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__call__" in cls.__dict__:
            raise TypeError(f"{cls.__name__} overrides Attack.__call__, which is final; implement _run instead")

    def __repr__(self) -> str:
        """``Name(setting=value, ...)``: the constructor's arguments as this attack holds them
        (read from attributes of the same name; the model is left out)."""
        parts = []
        swarm = getattr(self, "swarm", None)                      # MFIPSO keeps its swarm settings together
        for name in inspect.signature(type(self)).parameters:
            if name in ("self", "model"):
                continue
            if name in ("min_prob", "max_prob"):
                value: Any = getattr(self.criterion, name, None)
            elif hasattr(self, name):
                value = getattr(self, name)
            elif hasattr(swarm, name):
                value = getattr(swarm, name)
            else:
                continue
            if isinstance(value, torch.Tensor):
                value = f"tensor{tuple(value.shape)}"
            parts.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def needs_gradient(self) -> bool:
        """Whether this attack, as configured, takes input gradients (then the model's are
        checked once, up front; a query-only model is refused)."""
        return self.gradients == "always"

    def query_budget(self) -> int | None:
        """Model queries per image at most, as configured (None where the attack has no fixed
        cap): ``evaluate`` re-runs baselines at this budget. Default: the attribute ``budget``."""
        q = getattr(self, "budget", None)
        return int(q) if isinstance(q, int) else None

    def work_per_image(self) -> float:
        """Model evaluations per image at most, a pass with a gradient counted as two (forward
        and backward): what the commands bound a run's time by. From :meth:`query_budget` (1
        where the attack has no cap), doubled for attacks that take a gradient at every query."""
        q = self.query_budget()
        return float(q if q is not None else 1) * (2.0 if self.gradients == "always" else 1.0)

    def check_model(self, x: torch.Tensor | None = None) -> None:
        """Refuse, in one line, a model this attack cannot use: a query-only model (a callable
        or an ONNX file) when :meth:`needs_gradient`; with probe images ``x`` [N,C,H,W], also a
        module whose outputs have no finite input gradient. Called by ``__call__``; callers may
        call it earlier (the CLI does, before any work)."""
        if not self.needs_gradient():
            return
        if is_query_only(self.model):
            raise InputError(f"{type(self).__name__} needs input gradients, which a query-only model "
                             "(a callable or an ONNX file) does not give",
                             "pass the model as a torch nn.Module, or use an attack that needs none "
                             "(sparse-swarm, sparse-rs, onepixel)")
        if x is not None:
            check_gradient(self.model, x)

    @final
    def __call__(self, x: Any, y: Any, *, target: TargetSpec = None, offset: Offset = 0) -> AttackResult:
        """Attack images x [N,C,H,W] (float, finite, in [0,1]; a torch tensor or a numpy array)
        with true labels y [N] (integers in 0..K−1; tensor, array or list) and return an
        :class:`AttackResult` on the model's device.

        ``target``: this call's target (:data:`TargetSpec`); None uses the constructor's (the
        attribute ``self.target``); pass ``"none"`` for untargeted when that is set.
        ``offset``: position of x[0] in the caller's whole list of images (an int ≥ 0), or the
        positions of all N images (an integer tensor [N]); image i draws its random numbers from
        (seed, its position), so chunked and sharded runs give the same results as one call.

        Final: subclasses implement :meth:`_run`. The model runs in eval mode (a model found in
        train mode is switched with a warning and switched back afterwards); x and y move to the
        model's device; bad inputs or model outputs raise a one-line :class:`InputError`."""
        started = time.perf_counter()
        from_numpy = not isinstance(x, torch.Tensor)
        x = _as_images(x)
        check_images(x)
        if from_numpy:                       # numpy float64 arrays meet a float32 model: take its dtype
            dtype = next((p.dtype for p in self.model.parameters() if p.is_floating_point()), x.dtype)
            x = x.to(dtype)
        self.check_model()
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
            clean = clean_logits(self.model, x, self.batch_size)
            check_model_once(self.model, x, self.batch_size)
            y = check_classes(yt.to(x.device), n, clean.shape[1])
            spec = self.target if target is None else target
            if isinstance(spec, str) and spec in ("random", "least-likely"):
                t = resolve_target(spec, clean, y, seed=self.seed, positions=pos)
            else:
                t = self._resolve_target(spec, clean, x, y)
            if self.needs_gradient():
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
