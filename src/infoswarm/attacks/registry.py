"""Build any attack by name from one set of options (used by the CLI and the benchmarks).

:data:`ATTACKS` is the one table: name -> :class:`Spec` (the class, and how the shared options
map to its constructor). :data:`NAMES` and :func:`build` read it, so adding an attack is one
module (a subclass of :class:`.base.Attack`) and one row here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..errors import InputError
from .base import Attack
from .fgsm import FGSM
from .jsma import JSMA
from .mfipso import MFIPSO
from .onepixel import OnePixel
from .pgd import PGD
from .pgd0 import PGD0
from .sparse_rs import SparseRS
from .sparse_swarm import SparseSwarm
from .spgd import SPGD

__all__ = ["ATTACKS", "NAMES", "Options", "Spec", "build"]


@dataclass(frozen=True)
class Options:
    """The shared options of :func:`build`.

    pixels: k pixel locations (sparse attacks; None where an attack has another rule);
    eps: L∞ bound in [0,1] pixel units; target: see :data:`.base.TargetSpec`;
    min_prob / max_prob: the judged class's probability window; seed: random streams;
    budget: model queries per image (query-based attacks); steps: gradient steps (PGD)."""

    pixels: int | None
    eps: float
    target: Any
    min_prob: float | None
    max_prob: float | None
    seed: int
    budget: int
    steps: int

    def judged(self) -> dict[str, Any]:
        """target, min_prob, max_prob: what every attack's success is judged by."""
        return {"target": self.target, "min_prob": self.min_prob, "max_prob": self.max_prob}


@dataclass(frozen=True)
class Spec:
    """One registry row: ``cls`` the attack class; ``kwargs`` maps the shared :class:`Options`
    to its constructor's keyword arguments (the extra keyword arguments of :func:`build` are
    added to them); ``pixels``: the attack needs ``pixels`` k; ``confusion``: it accepts
    target "confusion"; ``about``: one line for help texts."""

    cls: type[Attack]
    kwargs: Callable[[Options], dict[str, Any]]
    pixels: bool = True
    confusion: bool = False
    about: str = ""


def _pgd0(o: Options) -> dict[str, Any]:
    steps = min(20, max(1, o.budget - 1))                          # steps × restarts + 1 <= budget
    return dict(pixels=o.pixels, eps=o.eps, steps=steps, restarts=max(1, (o.budget - 1) // steps), seed=o.seed,
                **o.judged())


ATTACKS: dict[str, Spec] = {
    "mfipso": Spec(MFIPSO, lambda o: dict(pixels=o.pixels, eps=o.eps, seed=o.seed, **o.judged()),
                   pixels=False, confusion=True, about="FI-selected pixels, values searched by a particle swarm"),
    "fgsm": Spec(FGSM, lambda o: dict(eps=o.eps, seed=o.seed, **o.judged()), pixels=False,
                 about="one signed-gradient step (L∞)"),
    "pgd": Spec(PGD, lambda o: dict(eps=o.eps, steps=o.steps, seed=o.seed, **o.judged()), pixels=False,
                about="projected gradient descent (L∞), steps"),
    "jsma": Spec(JSMA, lambda o: dict(pixels=o.pixels, eps=o.eps, **o.judged()),
                 about="Jacobian saliency map, one location per step (L0)"),
    "onepixel": Spec(OnePixel, lambda o: dict(pixels=o.pixels, population=50, iterations=max(1, o.budget // 50 - 1),
                                              eps=o.eps, seed=o.seed, **o.judged()),
                     about="differential evolution, population 50, budget // 50 generations"),
    "sparse-rs": Spec(SparseRS, lambda o: dict(pixels=o.pixels, queries=o.budget, eps=o.eps, seed=o.seed,
                                               **o.judged()), about="Sparse-RS random search (L0), budget queries"),
    "sparse-swarm": Spec(SparseSwarm, lambda o: dict(pixels=o.pixels, queries=o.budget, eps=o.eps, seed=o.seed,
                                                     **o.judged()),
                         about="the default sparse attack: a swarm over pixel locations, budget queries"),
    "pgd0": Spec(PGD0, _pgd0, about="white-box L0 PGD, restarts of up to 20 steps within the budget"),
    "spgd": Spec(SPGD, lambda o: dict(pixels=o.pixels, eps=o.eps, iterations=max(1, (o.budget + 1) // 3), seed=o.seed,
                                      **o.judged()),
                 about="sparse-PGD cascade (white-box L0), (budget + 1) // 3 steps per variant, ≤ budget forwards"),
}

NAMES: tuple[str, ...] = tuple(ATTACKS)


def _check_extra(name: str, spec: Spec, given: dict[str, Any], extra: dict[str, Any]) -> None:
    """Extra keyword arguments must be constructor arguments the shared options do not set."""
    params = inspect.signature(spec.cls.__init__).parameters
    for key in extra:
        if key in given:
            raise InputError(f"{key}= is set by build's shared options for {name}",
                             "pass the shared option (pixels, eps, target, min_prob, max_prob, seed, budget, steps)")
        if key not in params or key in ("self", "model"):
            known = sorted(set(params) - {"self", "model"} - set(given))
            raise InputError(f"{name} takes no argument {key}=", f"use one of {', '.join(known) or '(none)'}")


def build(name: str, model: nn.Module, *, pixels: int | None = 10, eps: float = 0.15,
          target: Any = "second", min_prob: float | None = None, max_prob: float | None = None,
          seed: int = 0, budget: int = 1000, steps: int = 10, **extra: Any) -> Attack:
    """An attack ready to call as ``attack(x, y, target=None, offset=0)``.

    Shared options: ``pixels`` (k, for the sparse attacks), ``eps`` (L∞), ``target``,
    ``min_prob``/``max_prob``, ``seed``; ``budget`` queries per image for the query-based
    baselines (one-pixel DE: population 50; Sparse-RS; SparseSwarm; PGD0 as restarts of up to
    20 steps, steps × restarts + 1 ≤ budget; sPGD's cascade with (budget + 1) // 3 steps per
    variant, at most 3 · steps − 1 ≤ budget forward passes, backward passes counted apart as
    ``grad_evals``); ``steps`` for PGD. The remaining keyword arguments
    go to the attack's constructor (e.g. ``particles``, ``prior``, ``loss``, ``refine`` for
    :class:`SparseSwarm`; the swarm settings for :class:`MFIPSO`); an argument the attack does
    not take, or one the shared options set, raises :class:`InputError`."""
    spec = ATTACKS.get(name)
    if spec is None:
        raise InputError(f"unknown attack {name!r}", f"use one of {', '.join(NAMES)}")
    if target == "confusion" and not spec.confusion:
        allowed = [n for n, s in ATTACKS.items() if s.confusion]
        raise InputError(f"target=confusion is only for {', '.join(allowed)}", "use second, none or a class index")
    if spec.pixels and pixels is None:
        raise InputError(f"{name} needs `pixels`", "pass pixels=k")
    given = spec.kwargs(Options(pixels=pixels, eps=eps, target=target, min_prob=min_prob, max_prob=max_prob,
                                seed=seed, budget=budget, steps=steps))
    _check_extra(name, spec, given, extra)
    return spec.cls(model, **given, **extra)
