"""Per-image random numbers for the attacks (private).

Every attack draws image g's random numbers (g = its position in the caller's whole list, see
:func:`positions`) from streams that depend only on (seed, g), never on the other images of a
call, so a list attacked in one call, in chunks or in shards makes the same draws.

Two kinds of streams:

* counter-based uniforms (:func:`image_keys`, :func:`uniforms`): a SplitMix64 hash of (seed, g,
  step, stream, element index); no generator objects, no Python loop over images;
* seeded ``torch.Generator`` objects per image (:func:`image_generators`), for the attacks
  written around sequential draws (one-pixel DE, the mFI-PSO swarm). SparseSwarm, Sparse-RS and
  PGD0 use the counter-based uniforms.
"""

from __future__ import annotations

import hashlib

import torch

from ..errors import InputError

Offset = int | torch.Tensor
"""Where a call's images sit in the caller's whole list: the position of x[0] (an int ≥ 0), or
the positions of all N images (an integer tensor [N])."""


def positions(offset: Offset, n: int) -> torch.Tensor:
    """Positions [n] (int64, CPU) in the caller's list of a call's n images: offset, offset+1, …
    for an int, or the entries of an integer tensor [n]. Raises :class:`InputError` naming
    ``offset`` for anything else."""
    if isinstance(offset, torch.Tensor):
        if offset.shape != (n,) or offset.is_floating_point() or offset.dtype == torch.bool:
            raise InputError(f"offset must be an int or an integer tensor of shape [{n}], got {offset.dtype} "
                             f"of shape {tuple(offset.shape)}", "pass the images' positions in the caller's list")
        pos = offset.detach().to(device="cpu", dtype=torch.long)
        if n and int(pos.min()) < 0:
            raise InputError(f"offset holds a negative position {int(pos.min())}", "pass positions >= 0")
        return pos
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InputError(f"offset must be an int >= 0 or an integer tensor [N], got {offset!r}",
                         "pass the position of x[0] in the caller's list, e.g. offset=0")
    return torch.arange(n, dtype=torch.long) + offset


# ---- counter-based uniforms -----------------------------------------------------------------


def _s64(v: int) -> int:
    """A 64-bit constant as a signed int64."""
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >= 1 << 63 else v


_GOLD, _C1, _C2 = _s64(0x9E3779B97F4A7C15), _s64(0xBF58476D1CE4E5B9), _s64(0x94D049BB133111EB)


def _srl(z: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (z >> s) & ((1 << (64 - s)) - 1)


def _mix(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64 finaliser on int64 tensors (multiplication wraps modulo 2^64)."""
    z = (z ^ _srl(z, 30)).mul_(_C1)
    z = (z ^ _srl(z, 27)).mul_(_C2)
    return z.bitwise_xor_(_srl(z, 31))


def image_keys(seed: int, positions: torch.Tensor) -> torch.Tensor:
    """int64 keys [N] (on ``positions``' device) of the images at ``positions`` [N] of a run
    seeded with ``seed``."""
    s = _mix(torch.tensor(int(seed) & ((1 << 63) - 1), dtype=torch.long) * _GOLD + 1).to(positions.device)
    return _mix(s + (positions.long() + 1) * _GOLD)


def _mix_int(v: int) -> int:
    """:func:`_mix` of one int64 value, in Python integers (no tensor ops)."""
    z = v & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return _s64(z ^ (z >> 31))


_M64 = (1 << 64) - 1
_counters: dict[tuple[int, str], torch.Tensor] = {}


def _counter(m: int, device: torch.device) -> torch.Tensor:
    """(1, 2, …, m) · golden ratio (int64 [m], wrapping), cached per length and device."""
    key = (m, str(device))
    ctr = _counters.get(key)
    if ctr is None:
        ctr = torch.arange(1, m + 1, dtype=torch.long, device=device) * _GOLD
        if len(_counters) > 256:
            _counters.clear()
        _counters[key] = ctr
    return ctr


def uniforms(keys: torch.Tensor, step: int, stream: int, shape: tuple[int, ...]) -> torch.Tensor:
    """float64 uniforms in [0, 1), shape [len(keys), *shape], on ``keys``' device: a hash of
    (image key, step, stream, element index) — the same numbers whatever the other images of
    the call."""
    base = _mix(keys + _mix_int(step * 64 + stream + 1))
    m = 1
    for d in shape:
        m *= d
    z = _mix(base.view(-1, 1) + _counter(m, keys.device).view(1, -1))
    return (_srl(z, 11).double() * 2.0 ** -53).view(len(keys), *shape)


# ---- seeded generators ----------------------------------------------------------------------


def image_seed(seed: int, index: int, stream: str = "") -> int:
    """A 63-bit seed for image ``index`` of a run seeded with ``seed`` (a blake2b hash of both,
    so neighbouring seeds and indices give unrelated streams); a non-empty ``stream`` name
    gives another independent seed for the same image."""
    text = f"{int(seed)}/{int(index)}" + (f"/{stream}" if stream else "")
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def image_generators(seed: int, pos: torch.Tensor, stream: str) -> list[torch.Generator]:
    """One CPU ``torch.Generator`` per image at positions ``pos`` [N], seeded with
    :func:`image_seed` (seed, position, stream)."""
    return [torch.Generator().manual_seed(image_seed(seed, g, stream)) for g in pos.tolist()]
