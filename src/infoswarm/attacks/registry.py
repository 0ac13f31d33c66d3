"""Build any attack by name from one set of options (used by the CLI and the benchmarks)."""

from __future__ import annotations

import importlib
from typing import Any, Callable

from torch import nn

from ..errors import InputError
from .result import AttackResult

NAMES = ("mfipso", "fgsm", "pgd", "jsma", "onepixel", "sparse-rs", "sparse-swarm", "pgd0")


def build(name: str, model: nn.Module, *, pixels: int | None = 10, eps: float = 0.15,
          target: Any = "second", min_prob: float | None = None, max_prob: float | None = None,
          seed: int = 0, budget: int = 1000, steps: int = 10, **mfipso: Any) -> Callable[..., AttackResult]:
    """An attack ready to call as ``attack(x, y)``.

    Shared options: ``pixels`` (k, for the sparse attacks), ``eps`` (L∞), ``target``,
    ``min_prob``/``max_prob``, ``seed``; ``budget`` queries per image for the query-based
    baselines (one-pixel DE: population 50; Sparse-RS; SparseSwarm; PGD0 as restarts of up to
    20 steps, steps × restarts + 1 ≤ budget); ``steps`` for PGD; the remaining
    keyword arguments go to :class:`MFIPSO` or :class:`SparseSwarm` (``particles``, ``prior``,
    ``loss``, ``refine``)."""
    if name not in NAMES:
        raise InputError(f"unknown attack {name!r}", f"use one of {', '.join(NAMES)}")
    if name == "mfipso":
        from .mfipso import MFIPSO

        return MFIPSO(model, pixels=pixels, eps=eps, target=target, min_prob=min_prob,
                      max_prob=max_prob, seed=seed, **mfipso)
    if target == "confusion":
        raise InputError("--target confusion is only for mfipso", "use second, none or a class index")
    common = dict(target=target, min_prob=min_prob, max_prob=max_prob)
    if name == "fgsm":
        from .fgsm import FGSM

        return FGSM(model, eps=eps, seed=seed, **common)
    if name == "pgd":
        from .pgd import PGD

        return PGD(model, eps=eps, steps=steps, seed=seed, **common)
    if pixels is None:
        raise InputError(f"{name} needs --pixels", "pass --pixels k")
    if name == "sparse-swarm":
        from .sparse_swarm import SparseSwarm

        return SparseSwarm(model, pixels=pixels, queries=budget, eps=eps, seed=seed, **common, **mfipso)
    if name == "pgd0":
        from .pgd0 import PGD0

        steps0 = min(20, max(1, budget - 1))                     # steps × restarts + 1 <= budget
        return PGD0(model, pixels=pixels, eps=eps, steps=steps0, restarts=max(1, (budget - 1) // steps0),
                    seed=seed, **common)
    if name == "jsma":
        from .jsma import JSMA

        return JSMA(model, pixels=pixels, eps=eps, **common)
    try:
        mod = importlib.import_module(f".{name.replace('-', '_')}", __package__)
    except ImportError:
        raise InputError(f"attack {name} is not available in this version", "use mfipso, fgsm, pgd or jsma") from None
    if name == "onepixel":
        return mod.OnePixel(model, pixels=pixels, population=50, iterations=max(1, budget // 50 - 1),
                            eps=eps, seed=seed, **common)
    return mod.SparseRS(model, pixels=pixels, queries=budget, eps=eps, seed=seed, **common)
