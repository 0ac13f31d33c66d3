"""Padded forward passes (private): an image's outputs do not depend on its batch-mates.

CPU kernels may take a different, differently rounding path for a handful of rows (measured with
torch 2.13 at one intra-op thread: ``mnist-cnn``'s 3136×128 linear layer for 1–3 rows, the
convolutions of both zoo CNNs for 1 row), so a call with few rows could give an image other
outputs than a call with many. Every model call made here therefore has at least
:func:`call_rows` rows, padded by repeating its last row:

* :func:`call_rows` pads a call of m < :data:`MIN_ROWS` rows to the smallest size r ≥ m that
  was found to agree: calls of r rows give bit for bit the outputs (and, for gradient calls, the
  input gradients) that the same rows get inside a 35-row call, on a fixed random probe, taken
  at the start and at the end of that call. Each size is checked once per (model, per-row
  shape, dtype, device, thread count, gradient or not), when a call of that size is first
  needed. Kernels are chosen by shape, not by values, so a size that agrees on the probe runs
  the same arithmetic. A model whose 16-row calls already disagree (a randomised model, or a
  backend whose kernels change above 16 rows), one in train mode and a query-only model (a
  black box that must not see extra inputs) keep the fixed padding to :data:`MIN_ROWS` rows.
* Calls of fewer than :data:`SMALL_ROWS` rows on the CPU run at one intra-op thread (restored
  afterwards): a tail of one or a few images gains nothing from a second thread, and on a busy
  machine its wake-ups cost more than the work (measured in BENCHMARKS.md, speed section). The
  check above runs the small calls the same way, so they still agree with the big ones.

Chunked and sharded runs agree bit for bit at one intra-op thread; with several threads the
kernels' split can still depend on the rows (the check then measures at that thread count).
"""

from __future__ import annotations

import weakref

import torch
from torch import nn

from ..errors import InputError

MIN_ROWS = 16
"""The most rows a call is padded to: calls of at least this many rows are taken to give every
row the outputs it gets in any other call of at least this many rows (checked by
:func:`call_rows` on its probe; the fixed padding of models it cannot check)."""

SMALL_ROWS = 16
"""Calls of fewer rows (after padding) run on the CPU at one intra-op thread."""

_PROBE_ROWS = 2 * MIN_ROWS + 3
_Key = tuple[tuple[int, ...], torch.dtype, str, int, bool]
_cache: weakref.WeakKeyDictionary[nn.Module, dict[_Key, "_Check"]] = weakref.WeakKeyDictionary()


def _call(model: nn.Module, xb: torch.Tensor) -> torch.Tensor:
    """model(xb), at one intra-op thread when xb has fewer than :data:`SMALL_ROWS` rows on the CPU."""
    threads = torch.get_num_threads()
    if xb.shape[0] >= SMALL_ROWS or threads == 1 or xb.device.type != "cpu":
        return model(xb)
    torch.set_num_threads(1)
    try:
        return model(xb)
    finally:
        torch.set_num_threads(threads)


class _Check:
    """The probe of one (model, per-row shape, dtype, device, thread count, gradient or not) and
    which call sizes below :data:`MIN_ROWS` were found to agree with the reference call."""

    def __init__(self, model: nn.Module, row_shape: tuple[int, ...], dtype: torch.dtype, device: torch.device,
                 grad: bool) -> None:
        self.model, self.grad = model, grad
        self.sizes: dict[int, bool] = {}
        gen = torch.Generator().manual_seed(0x5EED)
        self.probe = torch.rand((_PROBE_ROWS, *row_shape), generator=gen, dtype=torch.float64).to(device, dtype)
        self.ref_grad: torch.Tensor | None = None
        self.w = torch.empty(0)
        try:
            if grad:
                xa = self.probe.clone().requires_grad_(True)
                with torch.enable_grad():
                    out = _call(model, xa)
                    self.w = torch.rand(out.shape, generator=gen, dtype=torch.float64).to(device, out.dtype)
                    (self.ref_grad,) = torch.autograd.grad((out * self.w).sum(), xa)
                self.ref = out.detach()
            else:
                with torch.no_grad():
                    self.ref = _call(model, self.probe)
            self.broken = not (isinstance(self.ref, torch.Tensor) and self.ref.shape[0] == _PROBE_ROWS
                               and self._agrees(MIN_ROWS))
        except Exception:  # a model that cannot take the probe: the caller's own call reports why
            self.broken = True

    def _agrees(self, r: int) -> bool:
        """Whether calls of r rows give the reference's outputs (and gradients) for the same
        rows, taken near the start and at the end of the reference call."""
        for a in (3, _PROBE_ROWS - r):
            xa = self.probe[a: a + r].detach().clone()
            if self.ref_grad is None:
                with torch.no_grad():
                    out = _call(self.model, xa)
                if not torch.equal(out, self.ref[a: a + r]):
                    return False
                continue
            xa.requires_grad_(True)
            with torch.enable_grad():
                out = _call(self.model, xa)
                (g,) = torch.autograd.grad((out * self.w[a: a + r]).sum(), xa)
            if not (torch.equal(out.detach(), self.ref[a: a + r]) and torch.equal(g, self.ref_grad[a: a + r])):
                return False
        return True

    def rows_for(self, m: int) -> int:
        """The rows a call of m (< :data:`MIN_ROWS`) images is padded to: the smallest size from
        m up found to agree (each size checked once, when first needed), else MIN_ROWS."""
        if self.broken:
            return MIN_ROWS
        for r in range(m, MIN_ROWS):
            if r not in self.sizes:
                try:
                    self.sizes[r] = self._agrees(r)
                except Exception:
                    self.sizes[r] = False
            if self.sizes[r]:
                return r
        return MIN_ROWS


def call_rows(model: nn.Module, xb: torch.Tensor) -> int:
    """How many rows (xb's M to :data:`MIN_ROWS`) a call of ``model`` on images xb [M, ...] is
    padded to so that each row's outputs (and, for a gradient call, input gradients) do not
    depend on the call's size; see the module docstring."""
    m = xb.shape[0]
    if m >= MIN_ROWS or m == 0:
        return m
    if getattr(model, "query_only", False) or model.training:
        return MIN_ROWS
    grad = torch.is_grad_enabled() and xb.requires_grad
    key: _Key = (tuple(xb.shape[1:]), xb.dtype, str(xb.device), torch.get_num_threads(), grad)
    try:
        known = _cache.setdefault(model, {})
    except TypeError:                            # a module that cannot be weakly referenced
        return MIN_ROWS
    if key not in known:
        known[key] = _Check(model, key[0], xb.dtype, xb.device, grad)
    return known[key].rows_for(m)


def padded_logits(model: nn.Module, xb: torch.Tensor) -> torch.Tensor:
    """model(xb) [M, K], with calls of fewer than :func:`call_rows` rows padded by repeating the
    last row (detached: gradients flow to xb's own rows only). Differentiable; the gradient
    attacks use it so that an image's gradient does not depend on its batch-mates either."""
    m = xb.shape[0]
    if 0 < m < MIN_ROWS:
        need = call_rows(model, xb)
        if m < need:
            xb = torch.cat([xb, xb[-1:].detach().expand(need - m, *xb.shape[1:])])
    return _call(model, xb)[:m]


@torch.no_grad()
def padded_forward(model: nn.Module, xb: torch.Tensor) -> torch.Tensor:
    """model(xb), with calls of fewer than :func:`call_rows` rows padded by repeating the last row."""
    return padded_logits(model, xb)


@torch.no_grad()
def probs_of(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Softmax probabilities (float64) [N, K] for images [N, C, H, W], in chunks (each call
    padded to at least :func:`call_rows` rows); :class:`InputError` when the model returns NaN
    or infinite values."""
    out = torch.cat([torch.softmax(padded_forward(model, x[i: i + batch_size]).double(), -1)
                     for i in range(0, len(x), batch_size)])
    if not torch.isfinite(out).all():  # argmax(NaN) is class 0: never count that as right or fooled
        raise InputError("the model returned NaN or infinite outputs",
                         "fix the model (its weights may be damaged); results on such a model mean nothing")
    return out
