"""Named settings in one place: the paper's mFI-PSO per dataset and the paper's fine-tuning
schedule for hardening (the figures are the paper's, DESIGN §2). Each attack's own defaults are
on its class (``Attack.defaults`` and its constructor; :func:`infoswarm.attacks.registry.defaults`).

Pure data: every function returns a fresh dict of Python keyword arguments, which the CLI maps
to its flags and an API user passes on, e.g. ``MFIPSO(model, **paper_attack("cifar10"))``.
"""

from __future__ import annotations

from typing import Any

from .data.catalog import INFO, is_named

__all__ = ["cifar_like", "paper_attack", "paper_harden"]


def cifar_like(dataset: str | None) -> bool:
    """Whether the paper's CIFAR-10 settings apply to ``dataset``: a named dataset with 3
    channels, or another name (a path) that starts with "cifar"."""
    name = (dataset or "").lower()
    return INFO[name].shape[0] == 3 if is_named(name) else name.startswith("cifar")


def paper_attack(dataset: str | None) -> dict[str, Any]:
    """The paper's mFI-PSO as published, as :class:`~infoswarm.attacks.MFIPSO` keywords:
    every channel entry with element FI ≥ 0.01, the paper's bounds δ ∈ [−εx, ε(1−x)] with
    ε = 0.15, 10 iterations plus a 40-iteration restart, target the second most probable class;
    500 particles on MNIST-like data, 200 on CIFAR-10, where the authors ranked entries by their
    ε-regularised FI on raw 0–255 pixels (``pixel_rule="fi-eps"``, ``fi_eps_scale=255``)."""
    cifar = cifar_like(dataset)
    return {"fi_threshold": 0.01, "bounds": "paper", "eps": 0.15, "particles": 200 if cifar else 500,
            "iterations": 10, "restart": True, "restart_iterations": 40,
            "pixel_rule": "fi-eps" if cifar else "fi", "fi_eps_scale": 255.0 if cifar else 1.0, "target": "second"}


def paper_harden(dataset: str | None, epochs: int | None = None) -> dict[str, Any]:
    """The paper's hardening settings that depend on the dataset, as
    :class:`~infoswarm.hardening.HardenConfig` keywords: fine-tuning for 30 epochs with the
    learning rate ×0.1 at epochs 10 and 20 (CIFAR-10: 50 epochs, at 15 and 40), and the attack's
    500 particles (CIFAR-10: 200). With ``epochs`` given, the milestones past it are dropped."""
    cifar = cifar_like(dataset)
    n = epochs if epochs is not None else (50 if cifar else 30)
    return {"epochs": n, "milestones": tuple(m for m in ((15, 40) if cifar else (10, 20)) if m <= n),
            "particles": 200 if cifar else 500}
