"""Robust accuracy at k pixels: an L0 attack ensemble run in sequence, with masking checks.

:func:`robust_accuracy` answers "what is this model's robust accuracy against k-pixel
perturbations?" for each k of a list, as AutoAttack does for L∞ and sparse-AutoAttack (sAA) for
L0: every member of an attack ensemble (:data:`ENSEMBLE`, in order) runs **only on the images
still robust** after the members before it, and an image counts as robust at k when no member
found an adversarial image with at most k changed pixels. Images the model already misclassifies
count as not robust (robust accuracy ≤ clean accuracy; the total is all N images).

The ensemble (``version="quick"`` / ``"standard"`` query budgets per image and k):

==================  ============  ==========================================================
member              registry      setting
==================  ============  ==========================================================
``swarm-gain``      sparse-swarm  gradient ("gain") prior; 1,000 / 10,000 queries
``pgd0``            pgd0          white-box L0 PGD, restarts of 20 steps; 5 / 50 restarts
``spgd``            spgd          sparse-PGD cascade (projected, then unprojected on its
                                  failures); 300 / 1,000 steps per variant
``swarm-uniform``   sparse-swarm  uniform prior (query-only); 1,000 / 10,000 queries
``sparse-rs``       sparse-rs     sAA's setting: p_init 0.8, cross-entropy loss;
                                  1,000 / 10,000 queries
==================  ============  ==========================================================

The members that use input gradients run first and the query-only ones after them (sAA's
order: sPGD, then Sparse-RS), so the masking check below can compare the two groups. Adding a
member is one :class:`Member` row.

Every member is built with :func:`infoswarm.attacks.registry.build` (pure L0 by default:
``eps`` = 1, perturbed pixels at 0/1 corners) and run with :func:`infoswarm.runner.run_attack`
over the images still robust, in checkpointed chunks (one checkpoint name per k, member and
target rank), sharded under torchrun. Image i always draws its random numbers from (seed, i),
its position in x, whatever other images are still robust: a member's result on an image does
not depend on which images it shares a call with, so the ensemble breaks exactly the union of
what its members break alone (bit for bit at one intra-op thread).

An image broken at a smaller k is broken at every larger k (a perturbation of ≤ k′ pixels is
one of ≤ k pixels), so the reported robust count at k is the images that no attack broke at any
k′ ≤ k; ``robust_raw`` is what the attacks at k alone left, and a raw count that rises with k
is reported as a warning (the attacks are not reliable at this budget).

Targeted (``targeted=True``, AutoAttack's targeted versions): each member runs K − 1 times,
with the target the r-th most probable wrong class of the clean image (r = 1 … K − 1), each time
on the images still robust; an image is broken as soon as a returned image is misclassified
(any class but the true one), so the robust count is comparable with the untargeted one.

Masking checks (:attr:`RobustnessResult.warnings`, each with what to do):

* ``randomised``: two identical forward passes give different outputs;
* ``gradient``: the input gradient of the cross-entropy is zero or not finite on ≥ 10 % of the
  correctly classified images (quantised inputs, saturated outputs, non-differentiable parts);
* ``query-beats-gradient`` (per k, with both groups present): the query-only members broke a
  share of the images the gradient members left that is clearly (95 % Wilson intervals apart)
  larger than the share of all correct images the gradient members broke. The gradient members'
  leftovers are the images they found hardest; a query attack that finds them easier than the
  gradient attacks found the average image points at a gradient that does not lead anywhere;
* ``rises-with-k``: the raw robust count at a larger k exceeds that at a smaller k.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from . import distributed
from .attacks import registry
from .attacks.base import clean_logits
from .attacks.result import AttackResult
from .checks import check_classes, check_images
from .errors import InputError
from .runner import run_attack
from .stats import rate_text, wilson

__all__ = ["ENSEMBLE", "VERSIONS", "KResult", "Member", "MemberStats", "RobustnessResult", "check_options",
           "member_names", "robust_accuracy"]

VERSIONS: tuple[str, ...] = ("quick", "standard")
"""``quick``: about 1,000 queries per query attack; ``standard``: 10,000 (sAA's budget)."""


@dataclass(frozen=True)
class Member:
    """One row of the ensemble: ``name`` (how results name it), ``attack`` (its
    :data:`infoswarm.attacks.registry.ATTACKS` name), ``budget`` per version (queries per image
    passed as the registry's ``budget``), ``kwargs`` (extra constructor arguments for
    :func:`~infoswarm.attacks.registry.build`), ``gradient`` (it uses input gradients; decides its
    group in the masking check) and ``about`` (one line for help texts)."""

    name: str
    attack: str
    budget: Mapping[str, int]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    gradient: bool = False
    about: str = ""


ENSEMBLE: tuple[Member, ...] = (
    Member("swarm-gain", "sparse-swarm", {"quick": 1000, "standard": 10000}, {"prior": "gain"}, gradient=True,
           about="SparseSwarm with its gradient (gain) prior"),
    Member("pgd0", "pgd0", {"quick": 101, "standard": 1001}, {}, gradient=True,
           about="white-box L0 PGD, restarts of 20 steps (5 quick, 50 standard)"),
    Member("spgd", "spgd", {"quick": 900, "standard": 3000}, {}, gradient=True,
           about="sparse-PGD cascade, projected then unprojected (300 / 1,000 steps each)"),
    Member("swarm-uniform", "sparse-swarm", {"quick": 1000, "standard": 10000}, {"prior": "uniform"},
           about="SparseSwarm with the uniform prior (query-only, immune to gradient masking)"),
    Member("sparse-rs", "sparse-rs", {"quick": 1000, "standard": 10000}, {"p_init": 0.8, "loss": "ce"},
           about="Sparse-RS in sparse-AutoAttack's setting (p_init 0.8, cross-entropy loss)"),
)
"""The ensemble, in the order it runs (gradient members first, then the query-only ones)."""

GRADIENT_SHARE = 0.10
"""Share of correct images with zero or non-finite input gradients from which ``gradient`` warns."""


def member_names() -> tuple[str, ...]:
    """The names of :data:`ENSEMBLE`'s members, in order."""
    return tuple(m.name for m in ENSEMBLE)


@dataclass
class MemberStats:
    """What one member did at one k: ``attacked`` images it ran on (still robust when its turn
    came; with targets, counted once per image), ``added`` images it broke that the members
    before it had left, ``queries`` model queries it spent in all (sum over images and target
    ranks), ``grad_evals`` backward passes outside its queries, ``seconds`` its wall time (as
    the chunks took it, also when loaded from checkpoints), ``budget`` queries per image."""

    name: str
    attack: str
    budget: int
    gradient: bool
    attacked: int = 0
    added: int = 0
    queries: int = 0
    grad_evals: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "attack": self.attack, "budget": self.budget, "gradient": self.gradient,
                "attacked": self.attacked, "added": self.added, "queries": self.queries,
                "queries_mean": self.queries / self.attacked if self.attacked else 0.0,
                "grad_evals": self.grad_evals, "seconds": self.seconds}


@dataclass
class KResult:
    """The verdict at one k for N images (tensors on the CPU).

    ``broken`` [N] bool: not robust at k (clean-misclassified, broken at k, or carried from a
    smaller k); ``broken_raw`` [N]: broken by this k's attacks (clean-misclassified included);
    ``by`` [N] str: ``"clean"`` (misclassified without attack), the member that broke it, or
    ``""`` (robust); ``at_k`` [N] int64: the k whose attack broke it (k itself, a smaller k
    when carried, 0 for clean-misclassified, −1 robust); ``queries`` [N]: the breaking member's
    queries (0 when robust or clean); ``queries_total`` [N]: all members' queries on the image
    at this k; ``pixel_l0`` [N]: pixels changed in ``x_adv``; ``x_adv`` [N, C, H, W]: the image
    that broke it (the clean image elsewhere)."""

    k: int
    broken: torch.Tensor
    broken_raw: torch.Tensor
    by: list[str]
    at_k: torch.Tensor
    queries: torch.Tensor
    queries_total: torch.Tensor
    pixel_l0: torch.Tensor
    x_adv: torch.Tensor
    members: list[MemberStats]
    seconds: float

    @property
    def total(self) -> int:
        return int(self.broken.numel())

    @property
    def robust(self) -> int:
        return int((~self.broken).sum())

    @property
    def robust_raw(self) -> int:
        return int((~self.broken_raw).sum())


@dataclass
class RobustnessResult:
    """What :func:`robust_accuracy` found for N images.

    ``ks`` (ascending), ``version``, ``targeted``, ``eps``; ``correct`` [N] bool: clean
    prediction right; ``per_k``: k → :class:`KResult`; ``min_k`` [N] int64: the smallest k
    that broke the image (0: misclassified clean, −1: robust at every k); ``warnings``: dicts
    with ``check``, ``k`` (or None), ``message`` and ``fix``; ``members``: the names run;
    ``random_broken``: k → [N] bool, not robust to the random control (:func:`random_control`)."""

    ks: list[int]
    version: str
    targeted: bool
    eps: float
    correct: torch.Tensor
    per_k: dict[int, KResult]
    min_k: torch.Tensor
    warnings: list[dict[str, Any]]
    members: list[str]
    seconds: float = 0.0
    random_broken: dict[int, torch.Tensor] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return int(self.correct.numel())

    def summary(self) -> dict[str, Any]:
        """The JSON-ready numbers: ``per_k`` {"10": {"robust", "total", "robust_accuracy",
        "robust_ci95", "robust_raw", "carried", "clean_correct", "clean_accuracy", "attacks"
        (one :meth:`MemberStats.to_dict` per member, in order), "seconds"}}, the clean accuracy,
        the curve (k, robust accuracy) from k = 0 (clean), the warnings and the settings. Each k
        also holds "random_control" {"robust", "total", "robust_accuracy", "robust_ci95",
        "queries", "text"}: the same count under :func:`random_control`."""
        n = self.total
        c = int(self.correct.sum())
        per_k: dict[str, Any] = {}
        for k in self.ks:
            r = self.per_k[k]
            carried = int((r.broken & ~r.broken_raw).sum())
            per_k[str(k)] = {"robust": r.robust, "total": n, "robust_accuracy": r.robust / n,
                             "robust_ci95": list(wilson(r.robust, n)), "robust_raw": r.robust_raw,
                             "carried": carried, "clean_correct": c, "clean_accuracy": c / n,
                             "attacks": [m.to_dict() for m in r.members], "seconds": r.seconds,
                             "text": rate_text(r.robust, n, r.robust / n, wilson(r.robust, n))}
            if k in self.random_broken:
                rr = int((~self.random_broken[k]).sum())
                per_k[str(k)]["random_control"] = {"robust": rr, "total": n, "robust_accuracy": rr / n,
                                                   "robust_ci95": list(wilson(rr, n)), "queries": 1,
                                                   "text": rate_text(rr, n, rr / n, wilson(rr, n))}
        curve = [[0, c / n]] + [[k, self.per_k[k].robust / n] for k in self.ks]
        return {"images": n, "clean_correct": c, "clean_accuracy": c / n, "clean_ci95": list(wilson(c, n)),
                "ks": list(self.ks), "version": self.version, "targeted": self.targeted, "eps": self.eps,
                "members": list(self.members), "per_k": per_k, "curve": curve, "warnings": list(self.warnings),
                "seconds": self.seconds}


# ---------------------------------------------------------------------------------------------
# argument checks


def _check_ks(ks: Sequence[int], hw: int) -> list[int]:
    if isinstance(ks, (int, str)) or not isinstance(ks, Sequence):
        raise InputError(f"ks must be a list of pixel counts, got {ks!r}", "pass e.g. ks=(5, 10, 20)")
    if len(ks) == 0:
        raise InputError("ks is empty", "pass at least one k, e.g. ks=(5, 10, 20)")
    out = []
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise InputError(f"ks holds {k!r}, not a positive integer", "pass pixel counts 1 or more")
        if k > hw:
            raise InputError(f"ks holds {k}, more than the {hw} pixels of an image", f"pass ks of at most {hw}")
        out.append(int(k))
    return sorted(set(out))


def _choose(attacks: Sequence[str] | None) -> list[Member]:
    if attacks is None:
        return list(ENSEMBLE)
    if isinstance(attacks, str) or len(attacks) == 0:
        raise InputError(f"attacks must be a non-empty list of member names, got {attacks!r}",
                         f"choose from {', '.join(member_names())}")
    unknown = [a for a in attacks if a not in member_names()]
    if unknown:
        raise InputError(f"attacks names an unknown member {unknown[0]!r}", f"choose from {', '.join(member_names())}")
    return [m for m in ENSEMBLE if m.name in set(attacks)]


def check_options(ks: Sequence[int], pixels: int, *, version: str = "standard", attacks: Sequence[str] | None = None,
                  budget: int | None = None, chunk: int = 64) -> tuple[list[int], list[Member]]:
    """The checks :func:`robust_accuracy` makes of its options for images of ``pixels`` = H·W
    locations (a caller can make them before writing anything); returns (the ks sorted without
    repeats, the members to run, in the table's order). :class:`InputError` for an empty ``ks``,
    a k outside 1 … H·W, an unknown ``version`` or member, a ``budget`` or ``chunk`` below 1."""
    k_list = _check_ks(ks, pixels)
    if version not in VERSIONS:
        raise InputError(f"unknown version {version!r}", f"use one of {', '.join(VERSIONS)}")
    members = _choose(attacks)
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 1):
        raise InputError(f"budget must be a positive integer, got {budget!r}", "pass e.g. budget=1000")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise InputError(f"chunk must be a positive integer, got {chunk!r}", "pass e.g. chunk=64")
    return k_list, members


# ---------------------------------------------------------------------------------------------
# masking checks


@torch.no_grad()
def _randomised(model: nn.Module, x: torch.Tensor) -> bool:
    """Whether two identical forward passes on up to 64 images give different outputs."""
    xb = x[:64]
    return not torch.equal(model(xb), model(xb))


def _gradient_health(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 256) -> tuple[int, int]:
    """(images whose input gradient of the cross-entropy is all zero, images whose gradient is
    not finite) among x [M, C, H, W] with labels y [M]."""
    zero = bad = 0
    for s in range(0, len(x), batch):
        xa = x[s: s + batch].detach().clone().requires_grad_(True)
        with torch.enable_grad():
            out = model(xa)
            if not out.requires_grad:                  # no gradient at all (the gradient members refuse it)
                return len(x), 0
            loss = torch.nn.functional.cross_entropy(out.double(), y[s: s + batch], reduction="sum")
            (g,) = torch.autograd.grad(loss, xa, allow_unused=True)
        if g is None:
            return len(x), 0
        g = g.flatten(1)
        finite = torch.isfinite(g).all(1)
        bad += int((~finite).sum())
        zero += int((finite & (g.abs().amax(1) == 0)).sum())
    return zero, bad


def _warn(check: str, k: int | None, message: str, fix: str) -> dict[str, Any]:
    return {"check": check, "k": k, "message": message, "fix": fix}


def _query_vs_gradient(k: int, correct: int, grad_broke: int, left: int, query_broke: int) -> dict[str, Any] | None:
    """The ``query-beats-gradient`` warning at k, or None (see the module docstring)."""
    if correct == 0 or left == 0:
        return None
    g_lo, g_hi = wilson(grad_broke, correct)
    q_lo, q_hi = wilson(query_broke, left)
    if q_lo <= g_hi:
        return None
    return _warn("query-beats-gradient", k,
                 f"k={k}: the query-only attacks broke {rate_text(query_broke, left, query_broke / left, (q_lo, q_hi))}"
                 f" of the images the gradient attacks left, more than the gradient attacks broke of all correct "
                 f"images ({rate_text(grad_broke, correct, grad_broke / correct, (g_lo, g_hi))}): gradient masking "
                 "is suspected",
                 "trust the ensemble's number (the query-only members are in it), not a gradient attack's alone; "
                 "check the model for non-differentiable or saturating parts and run the standard version "
                 "(--version standard)")


# ---------------------------------------------------------------------------------------------
# the ensemble


class _AtPositions:
    """An attack called on a sub-list of images, with each image's random streams seeded by its
    position ``pos`` [M] in the whole list (run_attack's offsets are positions in the sub-list)."""

    def __init__(self, attack: Callable[..., AttackResult], pos: torch.Tensor) -> None:
        self.attack, self.pos = attack, pos

    def __call__(self, x: torch.Tensor, y: torch.Tensor, *, target: Any = None, offset: Any = 0) -> AttackResult:
        if isinstance(offset, torch.Tensor):
            where = self.pos[offset.cpu().long()]
        else:
            where = self.pos[int(offset): int(offset) + len(x)]
        kwargs: dict[str, Any] = {"offset": where}
        if target is not None:
            kwargs["target"] = target
        return self.attack(x, y, **kwargs)


def _target_ranks(clean: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """[N, K−1]: the wrong classes of each image, most probable first (clean logits)."""
    k = clean.shape[1]
    order = clean.double().masked_fill(torch.nn.functional.one_hot(y, k).bool(), float("-inf")).sort(
        dim=1, descending=True, stable=True).indices
    return order[:, : k - 1]


def robust_accuracy(model: nn.Module, x: torch.Tensor, y: Any, ks: Sequence[int] = (5, 10, 20), *,
                    version: str = "standard", attacks: Sequence[str] | None = None, targeted: bool = False,
                    eps: float = 1.0, budget: int | None = None, seed: int = 0, chunk: int = 64, run: Any = None,
                    ctx: distributed.Context | None = None, progress: bool = False, log: bool = True,
                    say: Callable[[str], None] | None = None) -> RobustnessResult:
    """Robust accuracy of ``model`` on images x [N, C, H, W] (float in [0, 1]) with labels y [N]
    at each k of ``ks`` (pixels changed, 1 … H·W), against the attack ensemble
    :data:`ENSEMBLE` run in sequence on the images still robust (module docstring).

    ``version``: ``"quick"`` or ``"standard"`` (each member's ``budget`` per version);
    ``attacks``: member names to run (default all, always in the table's order); ``targeted``:
    AutoAttack's targeted version (every wrong class as target in turn); ``eps``: L∞ bound of a
    changed pixel in [0, 1] units (1 = pure L0); ``budget``: queries per image for every member
    instead of the version's; ``seed``: random streams (image i uses (seed, i)); ``chunk``:
    images per checkpoint; ``run``: a :class:`~infoswarm.runs.ResumableRun` (checkpoints named
    ``k<k>-<member>[-t<r>]-<start>-<stop>.pt``; a rerun loads them); ``ctx``: torchrun context
    (every rank gets the whole result); ``progress``/``log``: as :func:`infoswarm.runner.run_attack`;
    ``say``: receives one line per member and k (default: none).

    Raises :class:`InputError` for an empty or out-of-range ``ks``, an unknown version or member,
    a budget below 1, bad images or labels, or a model that returns NaN."""
    started = time.perf_counter()
    check_images(x)
    k_list, members = check_options(ks, x.shape[-2] * x.shape[-1], version=version, attacks=attacks,
                                    budget=budget, chunk=chunk)
    dev = next((p.device for p in model.parameters()), x.device)
    x = x.detach().to(dev)
    was_training = model.training
    model.eval()
    try:
        clean = clean_logits(model, x, 1024)        # checks the outputs (NaN, shape)
        yt = check_classes(torch.as_tensor(y, device=x.device), x.shape[0], clean.shape[1])
        return _run(model, x, yt, clean, k_list, members, version=version, targeted=targeted, eps=eps,
                    budget=budget, seed=seed, chunk=chunk, run=run, ctx=ctx, progress=progress, log=log,
                    say=say or (lambda s: None), started=started)
    finally:
        if was_training:
            model.train()


def _run(model: nn.Module, x: torch.Tensor, y: torch.Tensor, clean: torch.Tensor, ks: list[int],
         members: list[Member], *, version: str, targeted: bool, eps: float, budget: int | None, seed: int,
         chunk: int, run: Any, ctx: distributed.Context | None, progress: bool, log: bool,
         say: Callable[[str], None], started: float) -> RobustnessResult:
    n = len(x)
    correct = (clean.argmax(1) == y).cpu()
    y_cpu = y.cpu()
    warnings: list[dict[str, Any]] = []
    if _randomised(model, x):
        warnings.append(_warn("randomised", None, "two identical forward passes gave different outputs: the model "
                              "is randomised (dropout left on, random transforms, noise)",
                              "evaluate the deterministic model, or an expectation over its randomness (EOT); "
                              "a robust accuracy of a randomised model overstates its robustness"))
    uses_grad = any(m.gradient for m in members)
    if uses_grad and bool(correct.any()):
        ci = correct.nonzero().view(-1).to(x.device)
        zero, bad = _gradient_health(model, x[ci], y[ci])
        m = len(ci)
        if zero + bad >= max(1, GRADIENT_SHARE * m):
            warnings.append(_warn("gradient", None,
                                  f"the input gradient is zero on {zero} and NaN or infinite on {bad} of the {m} "
                                  "correctly classified images: gradient masking (quantised or saturated outputs, "
                                  "non-differentiable preprocessing); gradient attacks and the gain prior are blind "
                                  "on them",
                                  "read the query-only members' column (swarm-uniform, sparse-rs); fix the model's "
                                  "forward for gradients (e.g. a straight-through estimator for rounding) before "
                                  "trusting gradient attacks"))
    targets = _target_ranks(clean, y).cpu() if targeted else None
    per_k: dict[int, KResult] = {}
    for k in ks:
        per_k[k] = _one_k(model, x, y, y_cpu, correct, k, members, version=version, targets=targets, eps=eps,
                          budget=budget, seed=seed, chunk=chunk, run=run, ctx=ctx, progress=progress, log=log,
                          say=say)
        gm = [s for s, mm in zip(per_k[k].members, members) if mm.gradient]
        qm = [s for s, mm in zip(per_k[k].members, members) if not mm.gradient]
        if gm and qm:                                   # the table runs every gradient member first
            c = int(correct.sum())
            g = sum(s.added for s in gm)
            q = sum(s.added for s in qm)
            warn = _query_vs_gradient(k, c, g, c - g, q)
            if warn:
                warnings.append(warn)
    # a perturbation of <= k' pixels is one of <= k pixels: carry what smaller k broke
    prev: KResult | None = None
    for k in ks:
        r = per_k[k]
        if prev is not None:
            carry = prev.broken & ~r.broken
            if bool(carry.any()):
                i = carry.nonzero().view(-1)
                r.broken[i] = True
                r.x_adv[i] = prev.x_adv[i]
                r.pixel_l0[i] = prev.pixel_l0[i]
                r.queries[i] = prev.queries[i]
                r.at_k[i] = prev.at_k[i]
                for j in i.tolist():
                    r.by[j] = prev.by[j]
        prev = r
    raw = [(k, per_k[k].robust_raw) for k in ks]
    for (k1, r1), (k2, r2) in zip(raw, raw[1:]):
        if r2 > r1:
            warnings.append(_warn("rises-with-k", k2,
                                  f"the attacks at k={k2} left {r2} images robust, more than the {r1} at k={k1} "
                                  f"({r2 - r1} more); the reported k={k2} "
                                  "count takes the smaller k's successes into account",
                                  "the attacks are not reliable at this budget: run the standard version "
                                  "(--version standard) or raise the budget (--budget)"))
    random_broken = {k: random_control(model, x, y, k, eps, seed) | ~correct for k in ks}
    min_k = torch.full((n,), -1, dtype=torch.long)
    for k in reversed(ks):
        min_k = torch.where(per_k[k].broken, torch.full_like(min_k, k), min_k)
    min_k = torch.where(correct, min_k, torch.zeros_like(min_k))
    return RobustnessResult(ks=ks, version=version, targeted=targeted, eps=float(eps), correct=correct, per_k=per_k,
                            min_k=min_k, warnings=warnings, members=[m.name for m in members],
                            seconds=time.perf_counter() - started, random_broken=random_broken)


@torch.no_grad()
def random_control(model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int, eps: float = 1.0, seed: int = 0,
                   batch_size: int = 1024) -> torch.Tensor:
    """The random control of a k-pixel verdict: [N] bool (CPU), True where one random k-pixel
    perturbation of the image is misclassified. Each image gets k distinct uniform pixel
    locations, each channel set to a random corner of its box [x − eps, x + eps] ∩ [0, 1]
    (0 or 1 for eps = 1): one query per image. x [N, C, H, W] in [0, 1], y [N]; the draws come
    from one generator seeded by (seed, k), so the control does not depend on chunking."""
    n, c, h, w = x.shape
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(k))
    loc = torch.rand(n, h * w, generator=gen).topk(k, dim=1).indices                    # [N, k]
    up = torch.rand(n, c, k, generator=gen) < 0.5                                         # [N, C, k]
    out = torch.zeros(n, dtype=torch.bool)
    for s in range(0, n, batch_size):
        xb = x[s:s + batch_size].flatten(2)                                               # [B, C, HW]
        idx = loc[s:s + batch_size].to(x.device).unsqueeze(1).expand(-1, c, -1)
        cur = xb.gather(2, idx)
        val = torch.where(up[s:s + batch_size].to(x.device), (cur + eps).clamp(max=1.0), (cur - eps).clamp(min=0.0))
        xa = xb.scatter(2, idx, val).view(-1, c, h, w)
        out[s:s + batch_size] = (model(xa).argmax(1) != y[s:s + batch_size]).cpu()
    return out


def _one_k(model: nn.Module, x: torch.Tensor, y: torch.Tensor, y_cpu: torch.Tensor, correct: torch.Tensor, k: int,
           members: list[Member], *, version: str, targets: torch.Tensor | None, eps: float, budget: int | None,
           seed: int, chunk: int, run: Any, ctx: distributed.Context | None, progress: bool, log: bool,
           say: Callable[[str], None]) -> KResult:
    t0 = time.perf_counter()
    n = len(x)
    broken = ~correct
    by = ["" if c else "clean" for c in correct.tolist()]
    at_k = torch.where(correct, torch.full((n,), -1, dtype=torch.long), torch.zeros(n, dtype=torch.long))
    queries = torch.zeros(n, dtype=torch.long)
    queries_total = torch.zeros(n, dtype=torch.long)
    pixel_l0 = torch.zeros(n, dtype=torch.long)
    x_adv = x.detach().cpu().clone()
    stats: list[MemberStats] = []
    for m in members:
        b = budget if budget is not None else int(m.budget[version])
        st = MemberStats(name=m.name, attack=m.attack, budget=b, gradient=m.gradient)
        stats.append(st)
        attack = registry.build(m.attack, model, pixels=k, eps=eps, target=None, seed=seed, budget=b, **dict(m.kwargs))
        st.attacked = int((~broken).sum())
        for r in range(targets.shape[1] if targets is not None else 1):
            left = (~broken).nonzero().view(-1)
            if left.numel() == 0:
                break
            name = f"k{k}-{m.name}" + (f"-t{r + 1}" if targets is not None else "")
            dl = left.to(x.device)
            res = run_attack(_AtPositions(attack, left), x[dl], y[dl],
                             target=None if targets is None else targets[left, r], chunk=chunk, run=run, name=name,
                             ctx=ctx, everyone=True, progress=progress, log=log, label=f"k={k} {m.name}")
            assert res is not None
            res = res.to("cpu")
            hit = res.pred != y_cpu[left]
            got = left[hit]
            broken[got] = True
            for j in got.tolist():
                by[j] = m.name
            at_k[got] = k
            queries[got] = res.queries[hit]
            pixel_l0[got] = res.pixel_l0[hit]
            x_adv[got] = res.x_adv[hit].to(x_adv.dtype)
            queries_total[left] += res.queries
            st.added += int(hit.sum())
            st.queries += int(res.queries.sum())
            st.grad_evals += int(res.grad_evals.sum()) if res.grad_evals is not None else 0
            st.seconds += float(res.seconds)
        say(f"k={k} {m.name}: broke {st.added} of {st.attacked} still robust; {int((~broken).sum())}/{n} robust "
            f"({st.seconds:.1f}s)")
    return KResult(k=k, broken=broken, broken_raw=broken.clone(), by=by, at_k=at_k, queries=queries,
                   queries_total=queries_total, pixel_l0=pixel_l0, x_adv=x_adv, members=stats,
                   seconds=time.perf_counter() - t0)
