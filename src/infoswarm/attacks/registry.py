"""Build any attack by name from one set of options (used by the CLI, ``evaluate`` and the
benchmarks).

:data:`ATTACKS` is the one table: name -> :class:`Spec` (the class, a line for help texts, and,
only where the shared options do not map one to one, how they map to its constructor). What an
attack is (its norm, the shared options it uses, its targets, whether it takes gradients, its
defaults) is written once, on its class (:class:`.base.Attack`'s capabilities); :func:`names`,
:func:`defaults` and :func:`build` read the table and the class, so adding an attack is one
module (a subclass of :class:`.base.Attack`) and one row here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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

__all__ = ["ATTACKS", "Options", "Spec", "attack_class", "build", "defaults", "names"]


@dataclass(frozen=True)
class Options:
    """The shared options of :func:`build`, resolved (an option the attack does not use keeps
    whatever was passed, possibly None).

    pixels: k pixel locations; eps: L∞ bound in [0,1] pixel units; target: see
    :data:`.base.TargetSpec`; min_prob / max_prob: the judged class's probability window; seed:
    random streams; budget: model queries per image; steps: gradient steps."""

    pixels: int | None
    eps: float | None
    target: Any
    min_prob: float | None
    max_prob: float | None
    seed: int
    budget: int | None
    steps: int | None

    def judged(self) -> dict[str, Any]:
        """target, min_prob, max_prob: what every attack's success is judged by."""
        return {"target": self.target, "min_prob": self.min_prob, "max_prob": self.max_prob}


_SAME_NAME = {"pixels": "pixels", "eps": "eps", "steps": "steps", "budget": "budget"}
"""How a shared option maps to a constructor argument by default: to the argument of its name."""


def _plain(cls: type[Attack], o: Options) -> dict[str, Any]:
    """The default mapping: each used option to the constructor argument of its name,
    the judged options, and ``seed`` when the constructor takes one."""
    kw = {_SAME_NAME[k]: getattr(o, k) for k in cls.uses}
    if "seed" in inspect.signature(cls.__init__).parameters:
        kw["seed"] = o.seed
    return {**kw, **o.judged()}


@dataclass(frozen=True)
class Spec:
    """One registry row: ``cls`` the attack class; ``about`` one line for help texts;
    ``kwargs`` (only where the default mapping, each used option to the constructor argument
    of its name, does not fit) maps the resolved :class:`Options` to
    its constructor's keyword arguments (the extra keyword arguments of :func:`build` are added)."""

    cls: type[Attack]
    about: str = ""
    kwargs: Callable[[Options], dict[str, Any]] | None = None

    def arguments(self, o: Options) -> dict[str, Any]:
        return self.kwargs(o) if self.kwargs is not None else _plain(self.cls, o)


def _pgd0(o: Options) -> dict[str, Any]:
    assert o.budget is not None
    steps = min(20, max(1, o.budget - 1))                          # steps × restarts + 1 <= budget
    return dict(pixels=o.pixels, eps=o.eps, steps=steps, restarts=max(1, (o.budget - 1) // steps), seed=o.seed,
                **o.judged())


def _onepixel(o: Options) -> dict[str, Any]:
    assert o.budget is not None
    return dict(pixels=o.pixels, population=50, iterations=max(1, o.budget // 50 - 1), eps=o.eps, seed=o.seed,
                **o.judged())


def _spgd(o: Options) -> dict[str, Any]:
    assert o.budget is not None
    return dict(pixels=o.pixels, eps=o.eps, iterations=max(1, (o.budget + 1) // 3), seed=o.seed, **o.judged())


ATTACKS: dict[str, Spec] = {
    "sparse-swarm": Spec(SparseSwarm, "the default sparse attack: a swarm over pixel locations, budget queries"),
    "mfipso": Spec(MFIPSO, "FI-selected pixels, values searched by a particle swarm (the paper's attack)"),
    "fgsm": Spec(FGSM, "one signed-gradient step (L∞)"),
    "pgd": Spec(PGD, "projected gradient descent (L∞), steps"),
    "jsma": Spec(JSMA, "Jacobian saliency map, one location per step (L0)"),
    "onepixel": Spec(OnePixel, "differential evolution, population 50, budget // 50 generations", _onepixel),
    "sparse-rs": Spec(SparseRS, "Sparse-RS random search (L0), budget queries"),
    "pgd0": Spec(PGD0, "white-box L0 PGD, restarts of up to 20 steps within the budget", _pgd0),
    "spgd": Spec(SPGD, "sparse-PGD cascade (white-box L0), (budget + 1) // 3 steps per variant, ≤ budget forwards",
                 _spgd),
}


def names() -> tuple[str, ...]:
    """The registered attack names, in table order (read when called, so a row added at run
    time counts)."""
    return tuple(ATTACKS)


def attack_class(name: str) -> type[Attack]:
    """The class of attack ``name`` (:class:`InputError` naming the known ones otherwise)."""
    spec = ATTACKS.get(name)
    if spec is None:
        raise InputError(f"unknown attack {name!r}", f"use one of {', '.join(names())}")
    return spec.cls


def defaults(name: str) -> dict[str, Any]:
    """The defaults of attack ``name`` for the shared options it uses and ``target``: a copy of
    its class's :attr:`~.base.Attack.defaults` (the one place they are written)."""
    return dict(attack_class(name).defaults)


class _Unset:
    def __repr__(self) -> str:
        return "default"


UNSET: Any = _Unset()
"""Default of :func:`build`'s shared options: the attack's own default (:func:`defaults`)."""


def _check_extra(name: str, cls: type[Attack], given: dict[str, Any], extra: dict[str, Any]) -> None:
    """Extra keyword arguments must be constructor arguments the shared options do not set."""
    params = inspect.signature(cls.__init__).parameters
    for key in extra:
        if key in given:
            raise InputError(f"{key}= is set by build's shared options for {name}",
                             "pass the shared option (pixels, eps, target, min_prob, max_prob, seed, budget, steps)")
        if key not in params or key in ("self", "model"):
            known = sorted(set(params) - {"self", "model"} - set(given))
            raise InputError(f"{name} takes no argument {key}=", f"use one of {', '.join(known) or '(none)'}")


def build(name: str, model: Any, *, pixels: Any = UNSET, eps: Any = UNSET, target: Any = UNSET,
          min_prob: float | None = None, max_prob: float | None = None, seed: int = 0, budget: Any = UNSET,
          steps: Any = UNSET, **extra: Any) -> Attack:
    """An attack ready to call as ``attack(x, y, target=None, offset=0)``.

    Shared options: ``pixels`` (k), ``eps`` (L∞ box), ``target``, ``min_prob``/``max_prob``,
    ``seed``, ``budget`` (model queries per image; sPGD's cascade: (budget + 1) // 3 steps per
    variant, at most budget forward passes, backward passes counted apart as ``grad_evals``),
    ``steps`` (gradient steps). Each attack reads
    those in its class's ``uses``; one not given takes the attack's default (:func:`defaults`),
    so ``build(name, model)`` is the attack as its class builds it. The remaining keyword
    arguments go to the attack's constructor (e.g. ``particles``, ``prior``, ``loss``,
    ``refine`` for :class:`SparseSwarm`; the swarm settings for :class:`MFIPSO`); an argument
    the attack does not take, one the shared options set, or a target mode it does not support
    raises :class:`InputError`."""
    cls = attack_class(name)
    d = cls.defaults
    given = {"pixels": pixels, "eps": eps, "budget": budget, "steps": steps, "target": target}
    v = {k: (d.get(k) if val is UNSET else val) for k, val in given.items()}
    t = v["target"]
    if isinstance(t, str) and t not in cls.targets:
        allowed = [n for n, s in ATTACKS.items() if t in s.cls.targets]
        raise InputError(f"target={t} is only for {', '.join(allowed) or 'no attack'}",
                         "use " + ", ".join(m for m in cls.targets if m != "class") + " or a class index")
    optional = inspect.signature(cls.__init__).parameters.get("pixels")
    if "pixels" in cls.uses and v["pixels"] is None and (optional is None or optional.default is not None):
        raise InputError(f"{name} needs `pixels`", "pass pixels=k")
    for key in ("budget", "steps"):
        value = v[key]
        if key in cls.uses and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise InputError(f"{key} must be a positive integer, got {v[key]!r}", f"pass e.g. {key}={d.get(key)}")
    o = Options(pixels=v["pixels"], eps=v["eps"], target=t, min_prob=min_prob, max_prob=max_prob, seed=seed,
                budget=v["budget"], steps=v["steps"])
    kw = ATTACKS[name].arguments(o)
    _check_extra(name, cls, kw, extra)
    return cls(model, **kw, **extra)
