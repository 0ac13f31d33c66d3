"""Online sparse adversarial training (``infoswarm harden --method sparse``).

Every training batch, an inner L0 attack (:func:`infoswarm.inner.inner_attack`) at ``k_train``
pixels makes adversarial images, and the model takes one SGD step on a smoothed objective
(:func:`infoswarm.inner.objective`: TRADES with β and label smoothing by default, or
cross-entropy on the adversarial images). This is sAT / sTRADES (DESIGN §6) with cheap inner
attacks: one backward pass ("one-step"), plus a few forward-only swap steps ("swap"), or a few
L0-PGD steps ("pgd0"), or sparse-PGD steps from random locations ("spgd").

Catastrophic overfitting is watched, not hoped against: after every epoch the robust accuracy
of a fixed held-out set (the last ``holdout`` images of the training split, never trained on)
under a small ensemble goes to the history (``val_robust``) and the log: by default Sparse-RS
(a *query* attack: a masked gradient cannot fool it) and then SparseSwarm with its gain prior
(the member that breaks most images in the ``standard`` verdict) on the images Sparse-RS left,
each at ``eval_k`` pixels with ``eval_queries`` queries (``watch``); a drop of more than
``collapse_drop`` below the best epoch is reported in one line and, with ``on_collapse="stop"``
or ``"rollback"``, ends training ("rollback" also restores the best epoch's weights). With
``keep="best"`` (default) the model returned is the epoch of highest ``val_robust``.

Influence's part (the paper's idea that vulnerable images and pixels matter most), each with
its uniform counterpart for ablations: ``fi_weight`` > 0 weighs each image's loss by its rank
of image FI (1 − p_y)/p_y within the batch (``fi_control=True``: by a random rank instead);
``prior="gain"`` chooses the inner attack's locations by their first-order gain, ``"uniform"``
(the default) at random. Measured (RESULTS.md, MNIST, reduced schedule): uniform locations gave
a robust model where the gain prior's runs lost watch-set robustness and were rolled back to the
start, and the FI weights changed nothing measurable; so the default is uniform and FI weights
are off.

Every epoch is checkpointed in a :class:`~infoswarm.runs.ResumableRun`; a killed run continues
from its last finished epoch and ends bitwise equal on CPU.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from . import inner, training
from .attacks.sparse_rs import SparseRS
from .checks import unit_float
from .errors import InputError
from .zoo import Recipe

ON_COLLAPSE = ("warn", "stop", "rollback")
KEEP = ("best", "last")
WATCH_ATTACKS = ("sparse-rs", "swarm-gain", "swarm-uniform")
"""The attacks the watch set can run, in the order given (each on the images the earlier left)."""
LEGACY_WATCH = ("sparse-rs",)
"""The watch of runs recorded before ``watch`` was a setting (a resumed old run has this one)."""


@dataclass(frozen=True)
class SparseConfig:
    """Settings of a sparse adversarial training run.

    Inner attack: ``k_train`` pixels (1..H·W), ``inner`` ("one-step", "swap", "pgd0", "spgd") with
    ``inner_steps`` steps, ``eps`` (L∞ box of the changed entries in [0, 1] units; 1 = pure L0),
    ``random_frac`` (share of the k locations drawn uniformly), ``prior`` ("gain" or "uniform"),
    ``alpha`` (PGD0 step), ``corner`` ("gradient" or "far": the values written, see
    :mod:`infoswarm.inner`). Objective: ``objective`` ("trades" or "ce"), ``beta`` (≥ 0),
    ``label_smoothing`` in [0, 1), ``fi_weight`` (≥ 0) and ``fi_control``. Optimiser: SGD
    Nesterov ``momentum``, ``lr`` with a cosine schedule to 0 over ``epochs`` (or steps ×``gamma``
    at ``milestones``), ramped up linearly from 0 over the first ``warmup`` epochs together with
    β (a model that is not yet robust starts with a large KL term: without the ramp the first
    steps wreck a fine-tuned model's clean accuracy), ``batch_size``, ``weight_decay``,
    ``augment``/``crop_pad`` as the zoo recipe. Watch: ``holdout`` images, ``eval_images`` of
    them attacked at ``eval_k`` pixels with ``eval_queries`` queries per attack after every epoch
    by the attacks ``watch`` (names of :data:`WATCH_ATTACKS`, in order), ``collapse_drop``,
    ``on_collapse``, ``keep``."""

    k_train: int = 40
    inner: str = "swap"
    inner_steps: int = 4
    eps: float = 1.0
    random_frac: float = 0.5
    prior: str = "uniform"
    alpha: float = 0.1
    corner: str = "gradient"
    objective: str = "trades"
    beta: float = 3.0
    label_smoothing: float = 0.1
    fi_weight: float = 0.0
    fi_control: bool = False
    epochs: int = 5
    lr: float = 0.02
    warmup: float = 0.5
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1
    momentum: float = 0.9
    batch_size: int = 128
    weight_decay: float = 5e-4
    augment: str = "none"
    crop_pad: int = 2
    holdout: int = 1000
    eval_images: int = 200
    eval_k: int = 10
    eval_queries: int = 300
    watch: tuple[str, ...] = ("sparse-rs", "swarm-gain")
    collapse_drop: float = 0.15
    on_collapse: str = "warn"
    keep: str = "best"
    limit: int | None = None
    seed: int = 0

    def validate(self, pixels_per_image: int, train_images: int) -> None:
        """One-line :class:`InputError` for settings no run can use."""
        if not 1 <= self.k_train <= pixels_per_image:
            raise InputError(f"k_train={self.k_train} must lie in 1..{pixels_per_image} (the pixels of an image)",
                             "pass e.g. k_train=40")
        if not 1 <= self.eval_k <= pixels_per_image:
            raise InputError(f"eval_k={self.eval_k} must lie in 1..{pixels_per_image}", "pass e.g. eval_k=10")
        if self.inner not in inner.INNER:
            raise InputError(f"unknown inner attack {self.inner!r}", f"use one of {', '.join(inner.INNER)}")
        if self.prior not in inner.PRIORS:
            raise InputError(f"unknown prior {self.prior!r}", f"use one of {', '.join(inner.PRIORS)}")
        if self.inner == "swarm" and (self.prior not in ("uniform", "gain") or self.inner_steps < 1):
            raise InputError(f"the swarm inner attack needs prior uniform or gain and inner_steps >= 1 (its queries), "
                             f"got prior {self.prior!r}, inner_steps {self.inner_steps}",
                             "pass e.g. --prior uniform --inner-steps 100")
        if self.corner not in inner.CORNERS:
            raise InputError(f"unknown corner {self.corner!r}", f"use one of {', '.join(inner.CORNERS)}")
        if self.objective not in inner.OBJECTIVES:
            raise InputError(f"unknown objective {self.objective!r}", f"use one of {', '.join(inner.OBJECTIVES)}")
        if self.on_collapse not in ON_COLLAPSE:
            raise InputError(f"unknown on_collapse {self.on_collapse!r}", f"use one of {', '.join(ON_COLLAPSE)}")
        bad_watch = [a for a in self.watch if a not in WATCH_ATTACKS]
        if not self.watch or bad_watch or len(set(self.watch)) != len(self.watch):
            raise InputError(f"watch={','.join(self.watch) or '(empty)'} must name one or more of "
                             f"{', '.join(WATCH_ATTACKS)}, each once", "pass e.g. watch=sparse-rs,swarm-gain")
        if self.keep not in KEEP:
            raise InputError(f"unknown keep {self.keep!r}", f"use one of {', '.join(KEEP)}")
        if not (self.beta >= 0):
            raise InputError(f"beta must be >= 0, got {self.beta}", "pass e.g. beta=3")
        if not 0 < self.eps <= 1:
            raise InputError(f"eps must be positive and at most 1, got {self.eps}", "pass eps=1 for pure L0")
        if not 0 <= self.random_frac <= 1:
            raise InputError(f"random_frac must lie in [0, 1], got {self.random_frac}", "pass e.g. random_frac=0.5")
        if not 0 <= self.label_smoothing < 1:
            raise InputError(f"label_smoothing must lie in [0, 1), got {self.label_smoothing}",
                             "pass e.g. label_smoothing=0.1")
        if self.fi_weight < 0:
            raise InputError(f"fi_weight must be >= 0, got {self.fi_weight}", "pass 0 to switch it off")
        if self.warmup < 0:
            raise InputError(f"warmup must be >= 0 epochs, got {self.warmup}", "pass e.g. warmup=0.5")
        if not self.lr > 0 or self.momentum < 0 or self.weight_decay < 0 or not self.alpha > 0:
            raise InputError("lr and alpha must be > 0, momentum and weight_decay >= 0",
                             "pass e.g. lr=0.02 momentum=0.9 weight_decay=5e-4")
        for name in ("epochs", "batch_size", "eval_images", "eval_queries"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be positive, got {getattr(self, name)}", "pass 1 or more")
        if self.inner_steps < 0:
            raise InputError(f"inner_steps must be >= 0, got {self.inner_steps}", "pass 0 or more")
        if not 0 <= self.collapse_drop <= 1:
            raise InputError(f"collapse_drop must lie in [0, 1], got {self.collapse_drop}", "pass e.g. 0.15")
        if self.holdout < 1 or self.holdout >= train_images:
            raise InputError(f"holdout={self.holdout} must leave training images out of {train_images}",
                             f"pass a holdout between 1 and {train_images - 1}")
        bad = [m for m in self.milestones if not 0 < m <= self.epochs]
        if bad:
            raise InputError(f"milestones={bad[0]} is not an epoch inside the {self.epochs}-epoch schedule",
                             f"give milestones between 1 and {self.epochs}")

    def recipe(self) -> Recipe:
        return Recipe(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, momentum=self.momentum,
                      weight_decay=self.weight_decay, milestones=tuple(self.milestones), gamma=self.gamma,
                      augment=self.augment, crop_pad=self.crop_pad)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["milestones"] = list(self.milestones)
        d["watch"] = list(self.watch)
        return d

    def watch_text(self) -> str:
        """The watch attack in words, e.g. ``sparse-rs then swarm-gain, 300 queries each``."""
        return " then ".join(self.watch) + f", {self.eval_queries} queries" + (" each" if len(self.watch) > 1 else "")


def watch_attack(name: str, model: nn.Module, k: int, queries: int, seed: int = 0) -> Any:
    """The watch attack ``name`` (of :data:`WATCH_ATTACKS`) at k pixels, pure L0, ``queries``
    queries per image, untargeted: Sparse-RS with p_init 0.8, or SparseSwarm with its gain /
    uniform prior."""
    from .attacks import registry

    if name == "sparse-rs":
        return SparseRS(model, pixels=k, budget=queries, seed=seed, p_init=0.8)
    return registry.build("sparse-swarm", model, pixels=k, budget=queries, seed=seed, prior=name.split("-", 1)[1])


def robust_accuracy_on(model: nn.Module, x: torch.Tensor, y: torch.Tensor, k: int, queries: int,
                       seed: int = 0, attacks: Sequence[str] = LEGACY_WATCH) -> tuple[float, float]:
    """(clean accuracy, robust accuracy) of ``model`` on float images x [N, C, H, W] in [0, 1]
    under ``attacks`` (names of :data:`WATCH_ATTACKS`) run in order, each on the images the
    earlier ones left, at k pixels (pure L0, ``queries`` queries each, untargeted): robust =
    correct on the clean image and broken by none. ``sparse-rs`` is Sparse-RS with p_init 0.8;
    ``swarm-gain`` / ``swarm-uniform`` SparseSwarm with its gain / uniform prior. The model is
    left in eval mode."""
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i: i + 500]).argmax(1) for i in range(0, len(x), 500)])
    left = pred == y
    if not bool(left.any()):
        return 0.0, 0.0
    clean = float(left.float().mean())
    for name in attacks:
        if not bool(left.any()):
            break
        attack = watch_attack(name, model, k, queries, seed)
        idx = left.nonzero().flatten()
        res = attack(x[idx], y[idx])
        left[idx[res.success.to(idx.device)]] = False
    return clean, int(left.sum()) / len(y)


def train_step(model: nn.Module, opt: torch.optim.Optimizer, xb: torch.Tensor, yb: torch.Tensor,
               cfg: SparseConfig, gen: torch.Generator, ramp: float = 1.0
               ) -> tuple[torch.Tensor, torch.Tensor, dict[str, int]]:
    """One step of sparse adversarial training on a batch ``xb`` [B, C, H, W] in [0, 1] with labels
    ``yb`` [B]: the inner L0 attack at ``cfg.k_train`` pixels (model in eval mode), then one
    optimiser step on ``cfg.objective`` (model in train mode); ``ramp`` in (0, 1] scales β during
    the warm-up. Returns the loss (scalar), the adversarial logits [B, K] and the inner attack's
    passes per image ``{"forward": …, "backward": …}``."""
    model.eval()
    xa, passes, ce0 = inner.inner_attack(model, xb, yb, cfg.k_train, kind=cfg.inner,  # type: ignore[arg-type]
                                         steps=cfg.inner_steps, eps=cfg.eps, random_frac=cfg.random_frac,
                                         prior=cfg.prior, alpha=cfg.alpha, corner=cfg.corner,  # type: ignore[arg-type]
                                         gen=gen)
    weights = None
    if cfg.fi_weight > 0:
        score = torch.rand(len(yb), generator=gen).to(xb.device) if cfg.fi_control else ce0
        weights = inner.rank_weights(score, cfg.fi_weight)
    model.train()
    if cfg.objective == "trades":
        out = model(torch.cat([xb, xa]))
        lc, la = out[: len(yb)], out[len(yb):]
    else:
        lc, la = None, model(xa)
    loss = inner.objective(lc, la, yb, kind=cfg.objective, beta=cfg.beta * ramp,  # type: ignore[arg-type]
                           label_smoothing=cfg.label_smoothing, weights=weights)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss, la, passes


def sparse_harden(model: nn.Module, x8: torch.Tensor, y: torch.Tensor, xt8: torch.Tensor, yt: torch.Tensor,
                  cfg: SparseConfig, run: Any, log: Callable[[str], None] = lambda s: None,
                  epoch_log: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train ``model`` (on its device; modified in place and returned in eval mode with the kept
    epoch's weights) with online sparse adversarial training and return the summary.

    ``x8`` [N, C, H, W] uint8 training split with labels ``y`` [N] (the first ``cfg.limit``
    images, less the last ``cfg.holdout`` of them, are trained on; those ``holdout`` images are the
    watch set); ``xt8``/``yt`` the test split (clean accuracy every epoch). ``run``: a
    :class:`~infoswarm.runs.ResumableRun` (``save``/``load``; one checkpoint per epoch).

    Summary keys: "command", "method" ("sparse"), "settings", "train_images", "holdout",
    "epochs_run", "kept_epoch", "collapse" (list of one-line reports), "before" and "after"
    ({"clean_acc": test accuracy, "val_clean", "val_robust"}), "history" (one dict per epoch:
    epoch, lr, train_loss, train_acc (on the adversarial images), test_acc, val_clean,
    val_robust, seconds, inner_forward, inner_backward: passes per image per batch),
    "train_seconds", "seconds_per_epoch"."""
    x8, y, xt8, yt = x8.cpu(), y.cpu(), xt8.cpu(), yt.cpu()
    n_all = min(cfg.limit or len(y), len(y))
    cfg.validate(int(x8.shape[2] * x8.shape[3]), n_all)
    dev = training.device_of(model)
    n_train = n_all - cfg.holdout
    xtr, ytr = x8[:n_train], y[:n_train]
    xv = unit_float(x8[n_train:n_all][: cfg.eval_images]).to(dev)
    yv = y[n_train:n_all][: cfg.eval_images].to(dev)
    recipe = cfg.recipe()

    def watch(net: nn.Module) -> tuple[float, float]:
        return robust_accuracy_on(net, xv, yv, cfg.eval_k, cfg.eval_queries, seed=cfg.seed, attacks=cfg.watch)

    state = run.load("train.pt")
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
                          weight_decay=cfg.weight_decay)
    if state is None:
        model.eval()
        v_clean, v_rob = watch(model)
        before = {"clean_acc": training.accuracy(model, xt8, yt), "val_clean": v_clean, "val_robust": v_rob}
        history: list[dict[str, Any]] = []
        best: dict[str, Any] = {"epoch": 0, "val_robust": v_rob, "model": copy.deepcopy(model.state_dict())}
        collapse: list[str] = []
        start = 0
        log(f"before: test accuracy {100 * before['clean_acc']:.2f} %, watch set {len(yv)} images: clean "
            f"{100 * v_clean:.1f} %, robust at k={cfg.eval_k} {100 * v_rob:.1f} % ({cfg.watch_text()})")
    else:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        history = [dict(r) for r in state["history"]]
        before = dict(state["before"])
        best = {"epoch": int(state["best_epoch"]), "val_robust": float(state["best_val_robust"]),
                "model": state["best_model"]}
        collapse = list(state["collapse"])
        start = int(state["epoch"])
        log(f"continuing from epoch {start}")
    stopped = bool(state["stopped"]) if state is not None else False
    n = len(xtr)
    steps = -(-n // cfg.batch_size)
    for epoch in range(start, cfg.epochs if not stopped else start):
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen)
        sums = torch.zeros(3, dtype=torch.float64)
        passes = {"forward": 0, "backward": 0}
        for s in range(steps):
            ramp = min(1.0, (epoch + (s + 1) / steps) / cfg.warmup) if cfg.warmup > 0 else 1.0
            for g in opt.param_groups:
                g["lr"] = training.lr_at(recipe, epoch + s / steps) * ramp
            idx = perm[s * cfg.batch_size: (s + 1) * cfg.batch_size]
            xb = training.augment(unit_float(xtr[idx]).to(dev), recipe, gen)
            yb = ytr[idx].to(dev)
            loss, la, passes = train_step(model, opt, xb, yb, cfg, gen, ramp)
            sums += torch.tensor([loss.item() * len(yb), (la.argmax(1) == yb).sum().item(), len(yb)],
                                 dtype=torch.float64)
        train_s = time.perf_counter() - t0
        model.eval()
        v_clean, v_rob = watch(model)
        row: dict[str, Any] = {"epoch": epoch + 1, "lr": training.lr_at(recipe, epoch),
                               "train_loss": float(sums[0] / sums[2]), "train_acc": float(sums[1] / sums[2]),
                               "test_acc": training.accuracy(model, xt8, yt), "val_clean": v_clean,
                               "val_robust": v_rob, "seconds": train_s,
                               "inner_forward": passes["forward"], "inner_backward": passes["backward"]}
        history.append(row)
        if epoch_log is not None:
            epoch_log(row)
        if v_rob >= best["val_robust"]:                   # ties: the later epoch (more training)
            best = {"epoch": epoch + 1, "val_robust": v_rob, "model": copy.deepcopy(model.state_dict())}
        if best["val_robust"] - v_rob > cfg.collapse_drop:
            msg = (f"catastrophic overfitting suspected at epoch {epoch + 1}: robust accuracy on the watch set fell "
                   f"from {100 * best['val_robust']:.1f} % (epoch {best['epoch']}) to {100 * v_rob:.1f} %")
            collapse.append(msg)
            log(msg + {"warn": "; training goes on (on_collapse=warn), the best epoch is kept",
                       "stop": "; training stops (on_collapse=stop)",
                       "rollback": f"; back to epoch {best['epoch']}'s weights, training stops"}[cfg.on_collapse])
            if cfg.on_collapse != "warn":
                stopped = True
                if cfg.on_collapse == "rollback":
                    model.load_state_dict(best["model"])
        run.save("train.pt", {"epoch": epoch + 1, "model": model.state_dict(), "optimizer": opt.state_dict(),
                              "generator": gen.get_state(), "torch_rng": torch.get_rng_state(), "history": history,
                              "before": before, "best_epoch": best["epoch"], "best_val_robust": best["val_robust"],
                              "best_model": best["model"], "collapse": collapse, "stopped": stopped})
        if stopped:
            break
    kept = len(history)
    if cfg.keep == "best" and best["epoch"] != len(history) and best["epoch"] > 0:
        model.load_state_dict(best["model"])
        kept = best["epoch"]
        log(f"keeping epoch {kept} (highest robust accuracy on the watch set)")
    elif cfg.keep == "best" and best["epoch"] == 0 and history:
        model.load_state_dict(best["model"])
        kept = 0
        log("no epoch beat the starting model's robust accuracy on the watch set: keeping the starting weights")
    model.eval()
    kept_row = history[kept - 1] if kept > 0 else None
    after = ({"clean_acc": kept_row["test_acc"], "val_clean": kept_row["val_clean"],
              "val_robust": kept_row["val_robust"]} if kept_row is not None else dict(before))
    train_seconds = float(sum(r["seconds"] for r in history))
    return {"command": "harden", "method": "sparse", "settings": cfg.as_dict(), "train_images": n_train,
            "holdout": cfg.holdout, "epochs_run": len(history), "kept_epoch": kept, "collapse": collapse,
            "before": before, "after": after, "history": history, "train_seconds": train_seconds,
            "seconds_per_epoch": train_seconds / max(len(history), 1)}
