"""FI-targeted adversarial training (the paper's step 5) and the baseline defences.

The pipeline: image FI on the training split → selection (correctly classified, FI ≥ τ; or
chosen true→target pairs with ``protect``) → mFI-PSO on the selected images → the successful
adversarial images, with their true labels, added to the whole training set → fine-tuning with
the paper's schedule → evaluation (clean accuracy, re-attack success on vulnerable test images
and on vulnerable training images at the same budget, before and after).

Baselines for comparison at reported compute: ``method="random"`` (mFI-PSO on randomly chosen
correctly classified images, as many as the FI rule picks), ``"pgd"`` (PGD adversarial
fine-tuning) and ``"fgsm-rs"`` (FGSM with a random start). The two gradient defences make
their adversarial batch on the fly and train on clean + adversarial images. ``"none"`` is the
control: the same fine-tuning on the clean training set alone, which separates what the
adversarial images do from what more training does.

Every step checkpoints into a :class:`~infoswarm.runs.ResumableRun` (one file per attack chunk,
one per epoch), so a killed run continues where it stopped and ends bitwise equal on CPU.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import distributed, training
from .artifacts import HardenRun
from .attacks.fgsm import project
from .attacks.mfipso import MFIPSO
from .attacks.result import AttackResult
from .errors import InputError
from .runner import run_attack
from .zoo import Recipe

METHODS = ("fi", "random", "pgd", "fgsm-rs", "none")


@dataclass(frozen=True)
class HardenConfig:
    """Settings of a hardening run (defaults: the paper's MNIST settings, DESIGN §2).

    Selection: ``tau`` (image-FI threshold), ``limit`` (only the first N training images are attack
    candidates; fine-tuning always uses the whole split), ``protect`` (true→target pairs; only
    those are attacked). Attack: as
    :class:`~infoswarm.attacks.MFIPSO` (``pixels`` k or ``fi_threshold``; eps is L∞ in [0,1]
    units). Fine-tuning: ``epochs``, ``lr`` with steps ×``gamma`` at ``milestones``, SGD
    Nesterov ``momentum``, ``batch_size``, ``weight_decay``; ``repeat`` adds each adversarial
    image that many times (1 in the paper). Evaluation: ``eval_images``
    vulnerable test images, and as many vulnerable training images, re-attacked before and after."""

    method: str = "fi"
    tau: float = 0.01
    limit: int | None = None
    protect: tuple[tuple[int, int], ...] = ()
    pixels: int | None = None
    fi_threshold: float | None = 0.01
    eps: float = 0.15
    particles: int = 500
    iterations: int = 10
    restart_iterations: int = 40
    bounds: str = "paper"
    pixel_rule: str = "fi"
    target: str = "second"
    epochs: int = 30
    lr: float = 0.1
    milestones: tuple[int, ...] = (10, 20)
    gamma: float = 0.1
    momentum: float = 0.9
    batch_size: int = 128
    weight_decay: float = 5e-4
    pgd_steps: int = 10
    repeat: int = 1
    eval_images: int = 200
    chunk: int = 64
    channels_last: bool = False  # fine-tune in channels-last layout (the zoo recipe's choice)
    seed: int = 0

    def validate(self, num_classes: int, pixels_per_image: int | None = None) -> None:
        if self.method not in METHODS:
            raise InputError(f"unknown method={self.method!r}", f"use one of {', '.join(METHODS)}")
        if self.protect and self.method not in ("fi", "random"):
            raise InputError("`protect` needs an mFI-PSO method", "use method=fi or method=random")
        for a, b in self.protect:
            for c in (a, b):
                if not 0 <= c < num_classes:
                    raise InputError(f"`protect` pair {a}:{b} names class {c}, unknown for "
                                     f"{num_classes} classes", f"use classes 0..{num_classes - 1}")
            if a == b:
                raise InputError(f"`protect` pair {a}:{b} has equal classes",
                                 "give true:target pairs of two different classes, e.g. 3:8")
        if not 0 < self.eps <= 1:
            raise InputError(f"`eps` must be positive and at most 1 (pixel units), got {self.eps}",
                             "pass e.g. eps=0.15")
        bad = [m for m in self.milestones if not 0 < m <= self.epochs]
        if bad:
            raise InputError(f"milestones={bad[0]} is not an epoch inside the {self.epochs}-epoch schedule",
                             f"give milestones between 1 and {self.epochs}, or raise `epochs`")
        if list(self.milestones) != sorted(set(self.milestones)):
            raise InputError(f"milestones={','.join(map(str, self.milestones))} must increase",
                             "write them in order, each once, e.g. milestones=10,20")
        for name in ("epochs", "batch_size", "particles", "chunk", "eval_images", "repeat"):
            if getattr(self, name) < 1:
                raise InputError(f"`{name}` must be positive, got {getattr(self, name)}",
                                 "pass 1 or more")
        if self.tau < 0 or not self.lr > 0:
            raise InputError("`tau` must be >= 0 and `lr` > 0", "pass e.g. tau=0.01 lr=0.1")
        if self.pixels is not None and self.pixels < 1:
            raise InputError(f"`pixels` must be positive, got {self.pixels}", "pass 1 or more")
        if self.pixels is not None and pixels_per_image is not None and self.pixels > pixels_per_image:
            raise InputError(f"pixels={self.pixels} exceeds the {pixels_per_image} pixels of an image",
                             f"pass at most {pixels_per_image}")
        if self.fi_threshold is not None and self.fi_threshold < 0:
            raise InputError(f"`fi_threshold` must be >= 0, got {self.fi_threshold}", "pass e.g. 0.01")
        if self.iterations < 0 or self.restart_iterations < 0:
            raise InputError("`iterations` and `restart_iterations` must be >= 0", "pass 0 or more")
        if self.momentum < 0 or self.weight_decay < 0 or self.gamma <= 0:
            raise InputError("`momentum` and `weight_decay` must be >= 0 and `gamma` > 0",
                             "pass e.g. momentum=0.9 weight_decay=5e-4 gamma=0.1")
        if self.pgd_steps < 1:
            raise InputError(f"`pgd_steps` must be positive, got {self.pgd_steps}", "pass 1 or more")

    def recipe(self) -> Recipe:
        return Recipe(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, momentum=self.momentum,
                      weight_decay=self.weight_decay, milestones=tuple(self.milestones), gamma=self.gamma,
                      channels_last=self.channels_last)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["protect"] = [list(p) for p in self.protect]
        d["milestones"] = list(self.milestones)
        return d


def parse_protect(text: str | None) -> tuple[tuple[int, int], ...]:
    """``"3:8,7:1"`` → ((3, 8), (7, 1))."""
    if not text:
        return ()
    pairs = []
    for part in text.split(","):
        bits = part.strip().split(":")
        try:
            a, b = (int(v) for v in bits)
        except ValueError:
            raise InputError(f"`protect` pair {part.strip()!r} is not TRUE:TARGET",
                             "write pairs of class indices like 3:8,7:1") from None
        pairs.append((a, b))
    return tuple(pairs)


# ----------------------------------------------------------------------------------- attack

def build_attack(model: nn.Module, cfg: HardenConfig) -> MFIPSO:
    """The mFI-PSO attack a hardening run uses (and re-uses to evaluate); its own target is
    ``cfg.target`` ("second" or "none"), which a call's per-image targets override."""
    return MFIPSO(model, pixels=cfg.pixels, fi_threshold=None if cfg.pixels else cfg.fi_threshold,
                  target=None if cfg.target == "none" else cfg.target, eps=cfg.eps, particles=cfg.particles,
                  iterations=cfg.iterations, restart=cfg.restart_iterations > 0,
                  restart_iterations=cfg.restart_iterations, bounds=cfg.bounds,  # type: ignore[arg-type]
                  pixel_rule=cfg.pixel_rule, seed=cfg.seed)  # type: ignore[arg-type]


def select(model: nn.Module, x8: torch.Tensor, y: torch.Tensor, cfg: HardenConfig,
           device: torch.device | None = None, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Images to attack: indices [M] into ``x8`` and targets [M] (−1: the attack's own rule,
    "second"). FI rule: correct and image FI ≥ τ; ``protect`` keeps only the listed true
    classes and targets each image at its listed class of highest probability; "random" takes
    as many correct images as the FI rule would, uniformly at random (seeded)."""
    from .selection import select_images

    y = y.cpu()
    base = select_images(model, x8, y, rule="fi", tau=cfg.tau, batch_size=500, device=device, progress=progress)
    rank, correct = base.ranking, base.correct
    chosen = torch.zeros_like(correct)
    chosen[base.indices] = True
    target = torch.full_like(y, -1)
    if cfg.protect:
        probs = torch.softmax(rank.logits.double(), 1)
        allowed = torch.zeros(int(probs.shape[1]), int(probs.shape[1]), dtype=torch.bool)
        for a, b in cfg.protect:
            allowed[a, b] = True
        ok = allowed[y]                                         # [N, K]
        chosen &= ok.any(1)
        target = torch.where(ok.any(1), probs.masked_fill(~ok, -1.0).argmax(1), target)
    if cfg.method == "random":
        m = int(chosen.sum())
        pool = correct & (allowed[y].any(1) if cfg.protect else True)
        cand = pool.nonzero().view(-1)
        gen = torch.Generator().manual_seed(cfg.seed)
        pick = cand[torch.randperm(len(cand), generator=gen)[:m]].sort().values
        chosen = torch.zeros_like(chosen)
        chosen[pick] = True
    idx = chosen.nonzero().view(-1)
    return idx, target[idx]


# ------------------------------------------------------------------------- baseline defences

def fgsm_rs(eps: float, alpha: float | None = None) -> training.Perturb:
    """FGSM with a uniform random start (Wong et al. 2020), step ``alpha`` (default 1.25·eps)."""
    step = 1.25 * eps if alpha is None else alpha

    def perturb(model: nn.Module, x: torch.Tensor, y: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        delta = noise.to(x) * eps
        delta.requires_grad_(True)
        loss = F.cross_entropy(model((x + delta).clamp(0, 1)), y)
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + step * grad.sign()).clamp(-eps, eps)
        return (x + delta).clamp(0, 1)

    return perturb


def pgd(eps: float, steps: int = 10, alpha: float | None = None) -> training.Perturb:
    """L∞ PGD from a random start, ``steps`` steps of ``alpha`` (default 2.5·eps/steps)."""
    step = 2.5 * eps / steps if alpha is None else alpha

    def perturb(model: nn.Module, x: torch.Tensor, y: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        xa = (x + noise.to(x) * eps).clamp(0, 1)
        for _ in range(steps):
            xa.requires_grad_(True)
            loss = F.cross_entropy(model(xa), y)
            (grad,) = torch.autograd.grad(loss, xa)
            xa = project(xa.detach() + step * grad.sign(), x, eps)
        return xa.detach()

    return perturb


def mixed_training_set(x8: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor,
                       y_adv: torch.Tensor, repeat: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """All training images (uint8 → float [0,1]) followed by the adversarial ones with their
    true labels, each ``repeat`` times (1: the paper): ([N+R·M, C, H, W] float32, [N+R·M] int64)."""
    return (torch.cat([x8.float() / 255.0, *[x_adv.float()] * repeat]),
            torch.cat([y, *[y_adv] * repeat]))


# ------------------------------------------------------------------------------ the pipeline

def _success_rate(res: AttackResult) -> float | None:
    return float(res.success.float().mean()) if len(res) else None


def harden(model: nn.Module, x8: torch.Tensor, y: torch.Tensor, xt8: torch.Tensor, yt: torch.Tensor,
           cfg: HardenConfig, run: Any, ctx: distributed.Context | None = None,
           log: Callable[[str], None] = lambda s: None,
           epoch_log: Callable[[dict[str, Any]], None] | None = None) -> HardenRun:
    """Run (or continue) the hardening pipeline in the :class:`~infoswarm.runs.ResumableRun`
    ``run``; ``model`` (eval mode, CPU or device) is fine-tuned in place.

    Images: ``x8`` [N,C,H,W] uint8 training split with labels ``y``; ``xt8``/``yt`` the test
    split. Returns the run's record (:class:`~infoswarm.artifacts.HardenRun`, its ``card`` left
    for the caller): ``summary`` (plain JSON values: what the CLI writes to summary.json) with
    "before" and "after" metrics, and ``adversarial``, the adversarial training images added
    (``x_adv`` [M,C,H,W], ``y`` [M], ``dataset_index`` [M], CPU tensors). The metrics: clean
    test accuracy, re-attack success on ``cfg.eval_images`` vulnerable
    test images, accuracy on the adversarial test images made against the original model, and
    re-attack success on ``cfg.eval_images`` vulnerable training images (the first that the FI
    rule picks among the attack candidates, whatever the method: for "fi" these are images it
    trained on, the paper's "resists re-attack" check). Every re-attack is the run's mFI-PSO
    attack with the same seed and budget before and after."""
    import copy

    ctx = ctx or distributed.Context()
    t_start = time.perf_counter()
    x8, y, xt8, yt = x8.cpu(), y.cpu(), xt8.cpu(), yt.cpu()   # data stays on the CPU; batches move
    dev = training.device_of(model)
    original = copy.deepcopy(model).eval()
    with torch.no_grad():
        k = int(original(x8[:1].float().to(dev) / 255.0).shape[1])
    cfg.validate(k, int(x8.shape[2] * x8.shape[3]))
    n_sel = min(cfg.limit or len(y), len(y))  # candidates for the attack: the first n_sel images
    swarm = cfg.method in ("fi", "random")   # the defences that attack training images first

    def attack(stage: str, net: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> AttackResult:
        """``build_attack(net)`` on float images x with per-image targets (−1: the attack's own),
        checkpointed as ``<stage>-<start>-<stop>.pt``; every rank gets the whole result."""
        res = run_attack(build_attack(net, cfg), x, y, target=target, chunk=cfg.chunk, run=run, name=stage,
                         ctx=ctx, everyone=True, log=False)
        assert res is not None  # everyone=True: every rank gets the result
        log(f"{stage}: {len(res)} images attacked, {int(res.success.sum())} successes")
        return res

    def shared(name: str, make: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Made once by rank 0 and saved; every rank then reads the same saved copy."""
        if distributed.is_main(ctx) and run.load(name) is None:
            run.save(name, make())
        distributed.barrier(ctx)
        return run.load(name)

    # 1-2. selection and the attack on the training images
    if not swarm:
        idx = torch.empty(0, dtype=torch.long)
        adv = AttackResult.empty(x8[:0].float(), y[:0])
    else:
        sel = shared("selection.pt", lambda: dict(zip(("index", "target"),
                                                      select(original, x8[:n_sel], y[:n_sel], cfg))))
        idx, tgt = sel["index"], sel["target"]
        log(f"selected {len(idx)} of {n_sel} training images")
        adv = attack("attack-train", original, x8[idx].float() / 255.0, y[idx], tgt)
    ok = adv.success.cpu()
    x_mix, y_mix = mixed_training_set(x8, y, adv.x_adv.cpu()[ok], y[idx][ok], cfg.repeat)
    if swarm:
        log(f"adding {int(ok.sum())} adversarial images to {len(y)} training images")
    elif cfg.method == "none":
        log(f"fine-tuning on the {len(y)} clean training images only (control)")
    else:
        log(f"fine-tuning on {len(y)} training images with {cfg.method} adversarial batches made on the fly")

    # 3. fine-tuning, one checkpoint per epoch
    perturb = None
    if cfg.method == "pgd":
        perturb = pgd(cfg.eps, cfg.pgd_steps)
    elif cfg.method == "fgsm-rs":
        perturb = fgsm_rs(cfg.eps)
    state = run.load("train.pt")

    def checkpoint(st: dict[str, Any]) -> None:
        if distributed.is_main(ctx):
            run.save("train.pt", st)

    history = training.train(model, x_mix, y_mix, cfg.recipe(), seed=cfg.seed, x_test=xt8, y_test=yt,
                             log=epoch_log, perturb=perturb, resume=state, checkpoint=checkpoint,
                             ddp=distributed.wrap_ddp(model, ctx) if ctx.active else None, rank=ctx.rank,
                             world_size=ctx.world_size)
    distributed.barrier(ctx)
    model.eval()

    # 4. evaluation on vulnerable test images, same attack and budget before and after
    eval_cfg = replace(cfg, method="fi")

    def first_vulnerable(xs8: torch.Tensor, ys: torch.Tensor) -> Callable[[], dict[str, torch.Tensor]]:
        """The first ``eval_images`` that the FI rule picks under the original model."""
        def make() -> dict[str, torch.Tensor]:
            i, t = select(original, xs8, ys, eval_cfg)
            return {"index": i[: cfg.eval_images], "target": t[: cfg.eval_images]}
        return make

    ev = shared("eval-selection.pt", first_vulnerable(xt8, yt))
    eidx, etgt = ev["index"], ev["target"]
    xe, ye = xt8[eidx].float() / 255.0, yt[eidx]
    before = attack("eval-before", original, xe, ye, etgt)
    after = attack("eval-after", model, xe, ye, etgt)
    # the paper's check: re-attack vulnerable *training* images (for "fi", the first it attacked)
    tv = shared("eval-train-selection.pt", first_vulnerable(x8[:n_sel], y[:n_sel]))
    tidx, ttgt = tv["index"], tv["target"]
    xv, yv = x8[tidx].float() / 255.0, y[tidx]
    train_before = attack("eval-train-before", original, xv, yv, ttgt)
    train_after = attack("eval-train-after", model, xv, yv, ttgt)
    made = before.success.cpu()
    adv_acc = training.accuracy(model, before.x_adv.cpu()[made], ye[made]) if made.any() else None
    train_seconds = float(sum(r["seconds"] for r in history))
    attack_seconds = float(adv.seconds)
    summary: dict[str, Any] = {
        "command": "harden", "method": cfg.method, "settings": cfg.as_dict(),
        "train_images": int(len(y)), "candidates": n_sel, "selected": int(len(idx)),
        "attack_success_rate": _success_rate(adv) if swarm else None,
        "adversarial_added": int(ok.sum()), "epochs": cfg.epochs,
        "attack_seconds": attack_seconds, "train_seconds": train_seconds,
        "defence_seconds": attack_seconds + train_seconds,
        "eval_attack_seconds": float(sum(r.seconds for r in (before, after, train_before, train_after))),
        "eval_images": int(len(eidx)), "eval_train_images": int(len(tidx)),
        "before": {"clean_acc": training.accuracy(original, xt8, yt),
                   "reattack_success": _success_rate(before), "adv_test_acc": 0.0 if made.any() else None,
                   "reattack_train_success": _success_rate(train_before)},
        # the last epoch already measured the fine-tuned model on the test split
        "after": {"clean_acc": history[-1]["test_acc"] if history else training.accuracy(model, xt8, yt),
                  "reattack_success": _success_rate(after), "adv_test_acc": adv_acc,
                  "reattack_train_success": _success_rate(train_after)},
        "history": history,
        "seconds_this_invocation": time.perf_counter() - t_start,
        "resumed": bool(getattr(run, "resumed", False)),
    }
    return HardenRun(summary=summary, card={},
                     adversarial={"x_adv": adv.x_adv.cpu()[ok], "y": y[idx][ok].cpu(), "dataset_index": idx[ok].cpu()})
