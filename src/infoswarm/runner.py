"""Run an attack over a list of images: in checkpointed chunks, split over torchrun processes,
with one log line per chunk when there is no progress bar.

:func:`run_attack` is what ``infoswarm attack`` and ``infoswarm evaluate`` call. Its results do
not depend on the chunk size or on the number of processes: each image's random streams are
seeded by its position (attacks that take ``offset=`` get it) and model calls are padded to at
least 16 rows by the attacks themselves.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from typing import Any

import torch

from . import distributed
from .attacks.base import takes_offset
from .attacks.result import AttackResult
from .errors import InputError
from .progress import LogProgress

CHECKPOINT = "chunk-{start:07d}-{stop:07d}.pt"
"""Checkpoint name of the chunk of images ``start`` .. ``stop`` − 1 (positions in x)."""

_CONCAT = ("x_adv", "success", "pred", "target", "target_prob", "pixel_l0", "element_l0", "linf",
           "queries", "y", "grad_evals")


def run_attack(attack: Callable[..., AttackResult], x: torch.Tensor, y: torch.Tensor, *, chunk: int = 64,
               run: Any = None, ctx: distributed.Context | None = None, progress: bool = False,
               offset: int = 0, log: bool = True, label: str = "attack") -> AttackResult | None:
    """Attack float images ``x`` [N, C, H, W] in [0, 1] with labels ``y`` [N] int64 and return one
    :class:`AttackResult` over all N images, in the order of x, on x's device; ``seconds`` is this
    call's wall time.

    ``chunk``: images per call of ``attack`` (and per checkpoint). ``run``: a
    :class:`~infoswarm.runs.ResumableRun`; each finished chunk is saved as
    ``checkpoints/chunk-<start>-<stop>.pt`` and loaded instead of attacked again on a rerun.
    ``ctx``: a :class:`~infoswarm.distributed.Context`; under torchrun each process attacks its
    shard and rank 0 gets every result, the other ranks get None. ``offset``: position of x[0]
    in a longer list (added to the per-image ``offset=`` of the attacks that take one).
    ``progress``: a bar on stderr; otherwise, with ``log``, one line per chunk on rank 0,
    named ``label``."""
    if chunk < 1:
        raise InputError(f"chunk must be positive, got {chunk}", "pass chunk=1 or more")
    ctx = ctx or distributed.Context()
    started = time.perf_counter()
    parts = _attack_shard(attack, x, y, chunk=chunk, run=run, ctx=ctx, progress=progress, offset=offset,
                          log=log, label=label)
    if ctx.active:
        gathered = distributed.gather_objects([result_to(r, "cpu") for r in parts], ctx)
        if not distributed.is_main(ctx):
            return None
        parts = [result_to(r, x.device) for rank_parts in gathered for r in rank_parts]
    if not parts:
        raise InputError("no images to attack", "select at least one image")
    return merge(parts, time.perf_counter() - started)


def _attack_shard(attack: Callable[..., AttackResult], x: torch.Tensor, y: torch.Tensor, *, chunk: int,
                  run: Any, ctx: distributed.Context, progress: bool, offset: int, log: bool,
                  label: str) -> list[AttackResult]:
    """This process's shard of (x, y), attacked (or loaded) chunk by chunk."""
    from tqdm.auto import tqdm

    part = distributed.shard(len(x), ctx)
    per_image = takes_offset(attack)
    starts = list(range(part.start, part.stop, chunk))
    lines = LogProgress(label, len(starts), "chunks", enabled=log and not progress and distributed.is_main(ctx))
    results = []
    for n, i in enumerate(tqdm(starts, desc="mFI-PSO", unit="batch", disable=not progress)):
        j = min(i + chunk, part.stop)
        name = CHECKPOINT.format(start=i, stop=j)
        saved = run.load(name) if run is not None else None
        if saved is not None:
            res = result_from_dict(saved, x.device)
            lines.skip()
        else:
            res = attack(x[i:j], y[i:j], **({"offset": offset + i} if per_image else {}))
            if run is not None:
                run.save(name, result_dict(res))
        results.append(res)
        lines.update(n + 1)
    return results


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
                         "pass --overwrite to start this run over")
    moved: dict[str, Any] = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in d.items()}
    return AttackResult(**moved)


def result_to(res: AttackResult, device: torch.device | str) -> AttackResult:
    """``res`` with every tensor moved to ``device``."""
    return replace(res, **{f.name: getattr(res, f.name).to(device) for f in fields(res)
                           if isinstance(getattr(res, f.name), torch.Tensor)})


def merge(parts: Sequence[AttackResult], seconds: float) -> AttackResult:
    """Concatenate results over chunks of images; perturbed locations are padded with −1 to the
    widest chunk's k."""
    width = max(p.indices.shape[1] for p in parts)

    def pad(t: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pad(t, (0, width - t.shape[1]), value=-1)

    cat = {f: torch.cat([getattr(p, f) for p in parts]) for f in _CONCAT}
    return AttackResult(indices=torch.cat([pad(p.indices) for p in parts]), seconds=seconds, **cat)
