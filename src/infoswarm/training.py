"""Standard training of zoo models (SGD with Nesterov momentum, a recorded recipe).

Runs are seeded; on CPU the same seed, data and recipe give bitwise the same weights.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .checks import unit_float
from .zoo import Recipe


def augment(x: torch.Tensor, recipe: Recipe, gen: torch.Generator) -> torch.Tensor:
    """Random crops (zero padding ``recipe.crop_pad``) and, for "flip-crop", horizontal flips
    of a float batch [N, C, H, W]; the identity for ``augment="none"``."""
    if recipe.augment == "none":
        return x
    n, _, h, w = x.shape
    if recipe.augment == "flip-crop":
        flip = (torch.rand(n, generator=gen) < 0.5).to(x.device)
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    p = recipe.crop_pad
    padded = F.pad(x, (p, p, p, p))
    dy = torch.randint(0, 2 * p + 1, (n,), generator=gen).to(x.device)
    dx = torch.randint(0, 2 * p + 1, (n,), generator=gen).to(x.device)
    rows = (dy.view(-1, 1) + torch.arange(h, device=x.device).view(1, -1))  # [N, H]
    cols = (dx.view(-1, 1) + torch.arange(w, device=x.device).view(1, -1))  # [N, W]
    idx_n = torch.arange(n, device=x.device).view(-1, 1, 1)
    out = padded.permute(0, 2, 3, 1)[idx_n, rows.view(n, h, 1), cols.view(n, 1, w)]
    return out.permute(0, 3, 1, 2).contiguous()


def lr_at(recipe: Recipe, epoch: float) -> float:
    """Learning rate at a (fractional) epoch: step decay at ``milestones``, a one-cycle ramp
    (``schedule="onecycle"``: linear from lr/10 to lr over ``warmup`` epochs, then linear to 0)
    or cosine to 0."""
    if recipe.schedule == "onecycle":
        if epoch < recipe.warmup:
            return recipe.lr * (0.1 + 0.9 * epoch / recipe.warmup)
        return recipe.lr * max(0.0, (recipe.epochs - epoch) / max(recipe.epochs - recipe.warmup, 1e-9))
    if recipe.milestones:
        return recipe.lr * recipe.gamma ** sum(epoch >= m for m in recipe.milestones)
    return 0.5 * recipe.lr * (1.0 + math.cos(math.pi * epoch / recipe.epochs))


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Top-1 accuracy (fraction in [0, 1]) of ``model`` on uint8 or float [0,1] images."""
    model.eval()
    dev = device_of(model)
    correct = 0
    for i in range(0, len(x), batch_size):
        xb = unit_float(x[i: i + batch_size].to(dev))
        correct += (model(xb).argmax(1) == y[i: i + batch_size].to(dev)).sum().item()
    return correct / max(len(x), 1)


# perturb(model, x, y, noise): adversarial versions of the batch x; ``noise`` is uniform in
# [-1, 1] with x's shape (drawn by the training loop, so every rank draws the same numbers).
Perturb = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def device_of(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, recipe: Recipe, seed: int = 0,
          x_test: torch.Tensor | None = None, y_test: torch.Tensor | None = None,
          log: Callable[[dict[str, Any]], None] | None = None, *,
          perturb: Perturb | None = None, resume: dict[str, Any] | None = None,
          checkpoint: Callable[[dict[str, Any]], None] | None = None,
          ddp: nn.Module | None = None, rank: int = 0, world_size: int = 1) -> list[dict[str, Any]]:
    """Train ``model`` in place on images ``x`` [N,C,H,W] (uint8 0..255 or float in [0,1]) with
    labels ``y`` [N].

    Returns one dict per epoch (epoch, lr, train_loss, train_acc, test_acc when a test set is
    given, seconds); ``log`` is called with each as it is made.

    Options used by adversarial fine-tuning (:mod:`infoswarm.hardening`):
      * ``perturb(model, xb, yb, noise)`` returns adversarial versions of a batch (made in eval
        mode; ``noise`` uniform in [−1, 1], for random starts); the step then trains on the clean
        and the adversarial batch together (2B images).
      * ``checkpoint(state)`` is called after every epoch with everything needed to continue
        (weights, optimiser, random-generator states, history; live references: save or copy
        them at once); ``resume=state`` continues from
        such a state. On CPU a resumed run ends bitwise equal to an uninterrupted one.
      * ``ddp``: the model wrapped in DistributedDataParallel; each of ``world_size`` ranks
        takes every ``world_size``-th image of each global batch (same permutation and noise on
        all ranks) and perturbs only its share; a last batch smaller than ``world_size`` is
        skipped; the loss and accuracy in the history are summed over ranks.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                          nesterov=recipe.momentum > 0, weight_decay=recipe.weight_decay)
    history: list[dict[str, Any]] = []
    start = 0
    if resume is not None:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        gen.set_state(resume["generator"])
        torch.set_rng_state(resume["torch_rng"])
        history = [dict(r) for r in resume["history"]]
        start = int(resume["epoch"])
    net = ddp if ddp is not None else model
    dev = device_of(model)
    fmt = torch.channels_last if recipe.channels_last else torch.contiguous_format
    if recipe.channels_last:
        model.to(memory_format=fmt)  # type: ignore[call-overload]  # torch's stubs omit memory_format
    n = len(x)
    steps = math.ceil(n / recipe.batch_size)
    for epoch in range(start, recipe.epochs):
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen)
        sums = torch.zeros(3, dtype=torch.float64)  # loss·count, correct, count
        for s in range(steps):
            for g in opt.param_groups:
                g["lr"] = lr_at(recipe, epoch + s / steps)
            idx = perm[s * recipe.batch_size: (s + 1) * recipe.batch_size]
            xb = augment(unit_float(x[idx].to(dev)), recipe, gen).contiguous(memory_format=fmt)
            yb = y[idx].to(dev)
            noise = torch.rand(xb.shape, generator=gen) * 2 - 1 if perturb is not None else None
            if world_size > 1:
                if len(idx) < world_size:
                    continue
                xb, yb = xb[rank::world_size], yb[rank::world_size]
                noise = noise[rank::world_size] if noise is not None else None
            if perturb is not None and noise is not None:
                model.eval()
                xa = perturb(model, xb, yb, noise.to(xb)).detach()
                model.train()
                xb, yb = torch.cat([xb, xa]), torch.cat([yb, yb])
            logits = net(xb)
            loss = F.cross_entropy(logits, yb, label_smoothing=recipe.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sums += torch.tensor([loss.item() * len(yb), (logits.argmax(1) == yb).sum().item(), len(yb)],
                                 dtype=torch.float64)
        if world_size > 1:
            import torch.distributed as dist

            dist.all_reduce(sums)
        row: dict[str, Any] = {"epoch": epoch + 1, "lr": lr_at(recipe, epoch),
                               "train_loss": float(sums[0] / sums[2]), "train_acc": float(sums[1] / sums[2])}
        if x_test is not None and y_test is not None:
            row["test_acc"] = accuracy(model, x_test, y_test)
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
        if log is not None:
            log(row)
        if checkpoint is not None:
            checkpoint({"epoch": epoch + 1, "model": model.state_dict(), "optimizer": opt.state_dict(),
                        "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
                        "history": history})
    if recipe.channels_last:
        model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    model.eval()
    return history


def recipe_dict(recipe: Recipe) -> dict[str, Any]:
    """The recipe as a JSON-ready dict (as recorded in model cards)."""
    d = asdict(recipe)
    d["milestones"] = list(recipe.milestones)
    d["optimizer"] = "SGD, Nesterov momentum"
    return d
