"""Run an attack over a list of images: in checkpointed chunks, split over torchrun processes,
with one log line per chunk when there is no progress bar.

:func:`run_attack` is what ``infoswarm attack`` and ``infoswarm evaluate`` call. Its results do
not depend on the chunk size or on the number of processes: each image's random streams are
seeded by its position (attacks that take ``offset=`` get it) and model calls are padded to at
least 16 rows by the attacks themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

import torch

from . import distributed
from .attacks.base import takes_offset
from .attacks.result import AttackResult
from .errors import InputError
from .progress import LogProgress

CHECKPOINT = "{name}-{start:07d}-{stop:07d}.pt"
"""Checkpoint name of the chunk of images ``start`` .. ``stop`` − 1 (positions in x) of a run
named ``name`` ("chunk" for ``infoswarm attack``; the stage for ``infoswarm harden``)."""


def run_attack(attack: Callable[..., AttackResult], x: torch.Tensor, y: torch.Tensor, *,
               target: torch.Tensor | None = None, chunk: int = 64, run: Any = None, name: str = "chunk",
               ctx: distributed.Context | None = None, everyone: bool = False, progress: bool = False,
               offset: int = 0, log: bool = True, label: str = "attack") -> AttackResult | None:
    """Attack float images ``x`` [N, C, H, W] in [0, 1] with labels ``y`` [N] int64 and return one
    :class:`AttackResult` over all N images, in the order of x, on x's device (an empty result
    for N = 0). Its ``seconds`` is the attack time summed over the chunks (a chunk loaded from a
    checkpoint counts the time it took when it was made; under torchrun, summed over processes).

    ``target``: None (every image gets the attack's own target), or an integer tensor [N]: an
    entry ≥ 0 is that image's target class, −1 leaves the image to the attack's own target
    (its constructor's ``target``); such a chunk is attacked in two calls, its own-target images
    first. ``chunk``: images per chunk (one checkpoint each). ``run``: a
    :class:`~infoswarm.runs.ResumableRun` (anything with ``save(name, obj)`` and ``load(name)``);
    each finished chunk is saved as ``checkpoints/<name>-<start>-<stop>.pt`` (:data:`CHECKPOINT`)
    and loaded instead of attacked again on a rerun. ``ctx``: a
    :class:`~infoswarm.distributed.Context`; under torchrun each process attacks its contiguous
    shard, and rank 0 gets every result while the other ranks get None, or, with ``everyone``,
    every rank gets every result. ``offset``: position of x[0] in a longer list (added to the
    per-image ``offset=`` of the attacks that take one). ``progress``: a bar on stderr;
    otherwise, with ``log``, one line per chunk on rank 0, named ``label``.

    The result does not depend on ``chunk`` or on the number of processes: image i's random
    streams are seeded by its position ``offset + i`` and model calls are padded by the attacks."""
    if chunk < 1:
        raise InputError(f"chunk must be positive, got {chunk}", "pass chunk=1 or more")
    if target is not None:
        target = torch.as_tensor(target).to(torch.long).view(-1).cpu()
        if target.numel() != len(x):
            raise InputError(f"target has {target.numel()} entries for {len(x)} images", "pass one target per image")
        if len(x) and int(target.min()) < -1:
            raise InputError(f"target {int(target.min())} is not a class", "use class indices, or -1 for the "
                                                                            "attack's own target")
    ctx = ctx or distributed.Context()
    parts = _attack_shard(attack, x, y, target, chunk=chunk, run=run, name=name, ctx=ctx, progress=progress,
                          offset=offset, log=log, label=label)
    if ctx.active:
        gathered = distributed.gather_objects([r.to("cpu") for r in parts], ctx)
        if not (everyone or distributed.is_main(ctx)):
            return None
        parts = [r.to(x.device) for rank_parts in gathered for r in rank_parts]
    if not parts:
        return AttackResult.empty(x, y)
    return AttackResult.cat(parts).to(x.device)


def _attack_shard(attack: Callable[..., AttackResult], x: torch.Tensor, y: torch.Tensor,
                  target: torch.Tensor | None, *, chunk: int, run: Any, name: str, ctx: distributed.Context,
                  progress: bool, offset: int, log: bool, label: str) -> list[AttackResult]:
    """This process's shard of (x, y), attacked (or loaded) chunk by chunk."""
    from tqdm.auto import tqdm

    part = distributed.shard(len(x), ctx)
    starts = list(range(part.start, part.stop, chunk))
    lines = LogProgress(label, len(starts), "chunks", enabled=log and not progress and distributed.is_main(ctx))
    results = []
    for n, i in enumerate(tqdm(starts, desc=label, unit="chunk", disable=not progress)):
        j = min(i + chunk, part.stop)
        file = CHECKPOINT.format(name=name, start=i, stop=j)
        saved = run.load(file) if run is not None else None
        if saved is not None:
            res = result_from_dict(saved, x.device)
            lines.skip()
        else:
            res = _attack_chunk(attack, x[i:j], y[i:j], None if target is None else target[i:j], offset + i)
            if run is not None:
                run.save(file, result_dict(res))
        results.append(res)
        lines.update(n + 1)
    return results


def _attack_chunk(attack: Callable[..., AttackResult], x: torch.Tensor, y: torch.Tensor,
                  target: torch.Tensor | None, start: int) -> AttackResult:
    """One chunk whose first image sits at position ``start``: one call, or (with per-image
    targets) one call for the images left to the attack's own target and one for the rest."""
    if target is None:
        return attack(x, y, **({"offset": start} if takes_offset(attack) else {}))
    pos = torch.arange(start, start + len(x))
    groups = [(sel, own) for sel, own in ((target < 0, True), (target >= 0, False)) if bool(sel.any())]
    done = []
    for sel, own in groups:
        kwargs: dict[str, Any] = {"offset": pos[sel]} if takes_offset(attack) else {}
        if not own:
            kwargs["target"] = target[sel].to(x.device)
        where = sel.to(x.device)
        done.append(attack(x[where], y[where], **kwargs))
    order = torch.cat([sel.nonzero().view(-1) for sel, _ in groups]).argsort()
    res = AttackResult.cat(done)
    return res.take(order.to(res.success.device))


def result_dict(res: AttackResult) -> dict[str, Any]:
    """An AttackResult as a dict of CPU tensors and numbers (a weights-only checkpoint)."""
    return {f.name: (v.cpu() if isinstance(v, torch.Tensor) else v)
            for f in fields(res) for v in [getattr(res, f.name)]}


def result_from_dict(d: Any, device: torch.device | str) -> AttackResult:
    """The inverse of :func:`result_dict`, tensors on ``device``; a checkpoint of another
    version's fields raises :class:`InputError`."""
    names = {f.name for f in fields(AttackResult)}
    if not isinstance(d, dict) or set(d) != names:
        raise InputError("an attack chunk checkpoint does not match this version's results",
                         "pass overwrite=True to start this run over")
    moved: dict[str, Any] = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in d.items()}
    return AttackResult(**moved)
