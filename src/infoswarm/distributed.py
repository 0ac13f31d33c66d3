"""A small layer over :mod:`torch.distributed` for running commands under ``torchrun``.

``torchrun --nproc_per_node=N -m infoswarm <command> ...`` starts N processes with the
environment variables WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR and MASTER_PORT set.
:func:`init` turns them into a process group (gloo on CPU, nccl on CUDA) and a :class:`Context`;
without them, or with WORLD_SIZE=1, it returns an inactive single-process context, and every
helper here then does the single-process thing (gather returns ``[obj]``, barriers are no-ops,
models are not wrapped), so callers never branch on whether they run distributed.

Helpers for work split over ranks:

* :func:`shard` – a contiguous, balanced block of n items for this rank (attack sweeps);
* :func:`gather_objects`, :func:`broadcast_object`, :func:`barrier`, :func:`is_main`;
* :func:`wrap_ddp` / :func:`unwrap` – DistributedDataParallel when active;
* :func:`epoch_indices` – this rank's share of a seeded per-epoch permutation (training).
"""

from __future__ import annotations

import datetime
import gc
import os
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

from .cpu import tune_cpu
from .errors import InputError

__all__ = ["Context", "init", "shutdown", "shard", "shard_bounds", "gather_objects", "broadcast_object",
           "barrier", "is_main", "wrap_ddp", "unwrap", "epoch_indices"]

_ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
T = TypeVar("T")


@dataclass(frozen=True)
class Context:
    """Where this process stands in a (possibly trivial) process group.

    rank / world_size: this process's global rank and the number of processes; local_rank: its
    rank on this machine (picks the GPU); backend: "gloo", "nccl" or None when inactive; active:
    whether a process group with more than one process is running; device: the torch device this
    process should use ("cuda:<local_rank>" under torchrun with CUDA, else what was asked)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    active: bool = False
    device: str = "cpu"


_CONTEXT: Context | None = None   # the active context, while a process group is up
_OWNED = False                    # whether init() created that group (shutdown() ends only those)


def _env_int(name: str) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value)
    except ValueError:
        raise InputError(f"environment variable {name}={value!r} is not an integer",
                         "start the command with torchrun, or unset the torchrun variables") from None


def init(device: str = "cpu") -> Context:
    """Join the torchrun process group if there is one; idempotent.

    With WORLD_SIZE > 1 in the environment (as torchrun sets it), initialise the default process
    group from the environment (``env://``) with backend nccl when ``device`` is a CUDA device
    (after ``torch.cuda.set_device(LOCAL_RANK)``; the context's device is then
    ``cuda:<LOCAL_RANK>``, whatever index ``device`` named) and gloo otherwise. Without those
    variables, or with WORLD_SIZE <= 1, return an inactive single-process context. While the
    group is up, later calls return the same context; a group set up by someone else is joined
    as it is (and left to them by :func:`shutdown`)."""
    global _CONTEXT, _OWNED
    if _CONTEXT is not None and dist.is_available() and dist.is_initialized():
        return _CONTEXT
    if dist.is_available() and dist.is_initialized():  # set up by the caller (e.g. a test harness)
        backend = str(dist.get_backend())
        local = int(os.environ.get("LOCAL_RANK", "0") or 0)
        dev = f"cuda:{local}" if backend == "nccl" else device
        _CONTEXT = Context(dist.get_rank(), dist.get_world_size(), local, backend,
                           dist.get_world_size() > 1, dev)
        return _CONTEXT
    if "WORLD_SIZE" not in os.environ or _env_int("WORLD_SIZE") <= 1:
        return Context(device=device)
    missing = [v for v in _ENV if v not in os.environ]
    if missing:
        raise InputError(f"WORLD_SIZE is set but {', '.join(missing)} is not",
                         "start the command with torchrun --nproc_per_node=N -m infoswarm ...")
    if not dist.is_available():
        raise InputError("this torch build has no torch.distributed", "run without torchrun")
    world, rank, local = _env_int("WORLD_SIZE"), _env_int("RANK"), _env_int("LOCAL_RANK")
    try:
        cuda = torch.device(device).type == "cuda"
    except RuntimeError:
        raise InputError(f"unknown device={device!r}", "use cpu, cuda or cuda:N") from None
    if cuda:
        if not torch.cuda.is_available() or local >= torch.cuda.device_count():
            raise InputError(f"local rank {local} has no CUDA device "
                             f"({torch.cuda.device_count() if torch.cuda.is_available() else 0} visible)",
                             "start at most one process per GPU, or use --device cpu")
        torch.cuda.set_device(local)
        backend, dev = "nccl", f"cuda:{local}"
    else:
        backend, dev = "gloo", device
    tune_cpu()  # a torchrun worker: keep big freed buffers in the process (infoswarm.cpu; idempotent)
    # A long timeout: ranks wait at barriers for the slowest rank's attack chunk.
    dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world,
                            timeout=datetime.timedelta(hours=12))
    _CONTEXT, _OWNED = Context(rank, world, local, backend, True, dev), True
    return _CONTEXT


def shutdown() -> None:
    """Leave the process group that :func:`init` created (if any) and forget the context; a
    no-op otherwise, so it is safe in a ``finally``.

    Drop DistributedDataParallel wrappers before calling it. Garbage is collected around the
    destroy: gloo objects held only by reference cycles (DDP's reducer, autograd graphs) were
    otherwise freed during interpreter shutdown, where a gloo thread aborted the process
    ("terminate called without an active exception") in about 2 of 5 two-process runs on CPU;
    with the collection, 0 of 80."""
    global _CONTEXT, _OWNED
    if _OWNED and dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
        gc.collect()
    _CONTEXT, _OWNED = None, False


def is_main(ctx: Context) -> bool:
    """True on rank 0 (the process that prints and writes outputs)."""
    return ctx.rank == 0


def shard_bounds(n: int, world_size: int, rank: int) -> tuple[int, int]:
    """[start, stop) of rank ``rank``'s contiguous block of n items split over ``world_size``.

    The first ``n % world_size`` ranks get one item more than the others, so block sizes differ
    by at most one; ranks beyond n (when n < world_size) get an empty block at n. The blocks of
    ranks 0, 1, ... follow each other and cover 0..n-1 exactly once."""
    if n < 0 or world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"bad shard: n={n}, world_size={world_size}, rank={rank}")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def shard(n: int, ctx: Context) -> slice:
    """This rank's contiguous, balanced block of n items, as a slice (see :func:`shard_bounds`);
    the whole range when the context is inactive."""
    return slice(*shard_bounds(n, ctx.world_size if ctx.active else 1, ctx.rank if ctx.active else 0))


def gather_objects(obj: T, ctx: Context) -> list[T]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank (``all_gather_object``);
    ``[obj]`` when inactive. Move tensors to the CPU first: they are unpickled onto the device
    they were saved from."""
    if not ctx.active:
        return [obj]
    out: list[T | None] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out  # type: ignore[return-value]


def broadcast_object(obj: T, ctx: Context, src: int = 0) -> T:
    """Rank ``src``'s ``obj`` on every rank (the others' ``obj`` is ignored); ``obj`` when inactive."""
    if not ctx.active:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier(ctx: Context) -> None:
    """Wait until every rank gets here; a no-op when inactive."""
    if not ctx.active:
        return
    if ctx.backend == "nccl":
        dist.barrier(device_ids=[ctx.local_rank])
    else:
        dist.barrier()


def wrap_ddp(model: nn.Module, ctx: Context, **kwargs: object) -> nn.Module:
    """``model`` wrapped in DistributedDataParallel when the context is active (on its CUDA
    device with ``device_ids=[local_rank]`` for nccl), else ``model`` itself. Move the model to
    ``ctx.device`` first; extra keyword arguments go to DDP (e.g. ``find_unused_parameters``).
    DDP averages gradients over ranks, so with a per-rank batch b a step equals a single-process
    step with batch world_size·b (up to batch-norm statistics, which stay per rank)."""
    if not ctx.active:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if ctx.backend == "nccl":
        return DistributedDataParallel(model, device_ids=[ctx.local_rank], output_device=ctx.local_rank,
                                       **kwargs)  # type: ignore[arg-type]
    return DistributedDataParallel(model, **kwargs)  # type: ignore[arg-type]


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or ``model`` itself): save this."""
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model


def epoch_indices(n: int, ctx: Context, seed: int = 0, epoch: int = 0, *, shuffle: bool = True,
                  drop_last: bool = False) -> torch.Tensor:
    """This rank's example indices (int64 [m]) for one epoch, like ``DistributedSampler``.

    The epoch's order is the single-process permutation ``torch.randperm(n)`` drawn from a CPU
    generator seeded with ``seed + epoch`` (``arange(n)`` with ``shuffle=False``), the same on
    every rank. Rank r takes positions r, r + W, r + 2W, ... of it (W = world size), so step t of
    all ranks together, each with batch b, consumes exactly the examples of step t of a single
    process with batch W·b.

    Padding: every rank must get the same number of indices (DDP steps in lockstep). With
    ``drop_last=False`` the order is extended to ceil(n / W)·W entries by repeating it from its
    start (cyclically when n < W), so up to W − 1 examples appear twice in the epoch, all in the
    last positions; reading the ranks' lists interleaved (rank 0's first, rank 1's first, ...)
    gives the single-process permutation followed by the padding, and the union of the ranks'
    sets is all n examples. With ``drop_last=True`` the order is cut to floor(n / W)·W entries
    (the last n mod W examples of the permutation are skipped this epoch). Inactive context:
    W = 1, the whole permutation."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    world, rank = (ctx.world_size, ctx.rank) if ctx.active else (1, 0)
    if shuffle:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed) + int(epoch)))
    else:
        order = torch.arange(n)
    if drop_last:
        order = order[: n - n % world]
    elif n % world and n:
        total = -(-n // world) * world
        order = order.repeat(-(-total // n))[:total]
    return order[rank::world].clone()
