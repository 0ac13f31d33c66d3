"""The result type shared by every attack, built and re-verified by :func:`finalize`."""

from __future__ import annotations

import os
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from ..criteria import Criterion
from ..errors import InputError
from ..stats import wilson
from ._forward import probs_of


@dataclass
class AttackResult:
    """Outcome of an attack on N images.

    x_adv [N,C,H,W] float in [0,1]; success [N] bool (re-verified by a fresh forward pass);
    pred [N] class predicted on x_adv; target [N] (−1 when untargeted); target_prob [N] the
    probability on x_adv of the *judged* class — the target when targeted, and for an
    untargeted attack the most probable class other than the true one (not a target that was
    given; −1 rows have no target); indices [N, k]
    perturbed pixel locations h·W + w (−1 padding); pixel_l0 / element_l0 [N] locations / channel
    entries that changed; linf [N] max |x_adv − x|; queries [N] model evaluations spent; seconds
    wall time of the whole call; grad_evals [N] input-gradient (backward) passes spent on the
    image outside its queries, e.g. for a sparse attack's saliency or FI prior (zeros when the
    attack computes none; a gradient attack's forward+backward steps are its queries)."""

    x_adv: torch.Tensor
    success: torch.Tensor
    pred: torch.Tensor
    target: torch.Tensor
    target_prob: torch.Tensor
    indices: torch.Tensor
    pixel_l0: torch.Tensor
    element_l0: torch.Tensor
    linf: torch.Tensor
    queries: torch.Tensor
    seconds: float
    y: torch.Tensor
    grad_evals: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.grad_evals is None:
            self.grad_evals = torch.zeros_like(self.queries)

    def __len__(self) -> int:
        return int(self.success.numel())

    @classmethod
    def cat(cls, results: Sequence[AttackResult], seconds: float | None = None) -> AttackResult:
        """Concatenate results over chunks of images, in order: every [N, …] field is joined,
        ``indices`` padded with −1 to the widest k; ``seconds`` defaults to the chunks' sum.
        Tensors must be on one device (see :meth:`to`); :class:`InputError` for no results."""
        if len(results) == 0:
            raise InputError("results is empty: nothing to concatenate", "pass at least one AttackResult")
        width = max(r.indices.shape[1] for r in results)
        joined = {f.name: torch.cat([getattr(r, f.name) for r in results]) for f in fields(cls)
                  if f.name not in ("indices", "seconds")}
        idx = torch.cat([torch.nn.functional.pad(r.indices, (0, width - r.indices.shape[1]), value=-1)
                         for r in results])
        total = float(sum(r.seconds for r in results)) if seconds is None else float(seconds)
        return cls(indices=idx, seconds=total, **joined)

    @classmethod
    def empty(cls, x: torch.Tensor, y: torch.Tensor) -> AttackResult:
        """The result of attacking no images, shaped like results for images x [N, C, H, W] with
        labels y [N] (only their shapes, dtypes and device are used)."""
        long = torch.empty(0, dtype=torch.long, device=x.device)
        real = torch.empty(0, device=x.device)
        return cls(x_adv=x[:0].clone(), success=torch.empty(0, dtype=torch.bool, device=x.device), pred=long,
                   target=long, target_prob=real, indices=torch.empty(0, 0, dtype=torch.long, device=x.device),
                   pixel_l0=long, element_l0=long, linf=real, queries=long, seconds=0.0, y=y[:0].to(torch.long),
                   grad_evals=long)

    def take(self, index: torch.Tensor) -> AttackResult:
        """The results of the images ``index`` (an integer tensor [M] on the results' device, or
        a bool mask [N]), in that order; ``seconds`` is kept."""
        return replace(self, **{f.name: getattr(self, f.name)[index] for f in fields(self)
                                if isinstance(getattr(self, f.name), torch.Tensor)})

    def to(self, device: torch.device | str) -> AttackResult:
        """A copy with every tensor on ``device``."""
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)
                                if isinstance(getattr(self, f.name), torch.Tensor)})

    def save(self, path: str | os.PathLike[str], **extra: Any) -> None:
        """Write the result to an .npz file at ``path`` (exactly that name): the arrays
        :data:`ARRAYS` (x_adv float [N,C,H,W], success bool [N], pred, target, indices [N,k] (−1
        padding), queries, grad_evals, pixel_l0, element_l0, y int64 [N], target_prob and linf
        float [N]) and ``seconds`` (a 0-d float64). ``extra`` arrays (e.g. the clean ``x``, a
        ``dataset_index``) are stored beside them under their own names."""
        clash = sorted(set(extra) & (set(ARRAYS) | {"seconds"}))
        if clash:
            raise InputError(f"extra array name {clash[0]!r} is taken by the result itself",
                             "store it under another name")
        arrays: dict[str, Any] = {name: getattr(self, name).detach().cpu().numpy() for name in ARRAYS}
        arrays["indices"] = self.index_array()
        arrays["seconds"] = np.asarray(self.seconds, dtype=np.float64)
        arrays.update({k: v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
                       for k, v in extra.items()})
        with open(path, "wb") as f:
            np.savez_compressed(f, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: torch.device | str = "cpu") -> AttackResult:
        """Read a result written by :meth:`save` (extra arrays are ignored) onto ``device``;
        :class:`InputError` naming ``path`` when the file is missing, not an .npz archive or
        lacks one of the result's arrays."""
        where = os.fspath(path)
        if not os.path.isfile(where) or not zipfile.is_zipfile(where):
            raise InputError(f"path {where} is not an .npz file", "pass a file written by AttackResult.save")
        try:
            with np.load(where, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as e:  # noqa: BLE001 - zipfile and numpy raise many types for damaged files
            raise InputError(f"cannot read path {where} ({type(e).__name__})",
                             "pass a file written by AttackResult.save") from None
        missing = sorted(set(ARRAYS) - set(arrays))
        if missing or "seconds" not in arrays:
            raise InputError(f"path {where} lacks the result's {', '.join(missing or ['seconds'])}",
                             "pass a file written by AttackResult.save")
        got = {k: torch.from_numpy(np.ascontiguousarray(arrays[k])).to(device) for k in ARRAYS}
        return cls(seconds=float(arrays["seconds"]), **got)

    def index_array(self) -> Any:
        """Perturbed locations as a numpy int64 array [N, k] (−1 padding)."""
        return self.indices.detach().cpu().numpy().astype("int64")

    def summary(self) -> dict[str, Any]:
        """Success rate and the paper's perturbation statistics (max|Δ| per image: mean, std,
        max, 95% quantile), pixel L0 and queries, over all images and over successes."""
        n = len(self)
        s = self.success
        linf = self.linf[s].double() if s.any() else torch.zeros(0, dtype=torch.float64)

        def stats(t: torch.Tensor) -> dict[str, float | None]:
            if t.numel() == 0:
                return {"mean": None, "std": None, "max": None, "q95": None}
            return {"mean": float(t.mean()), "std": float(t.std(unbiased=False)),
                    "max": float(t.max()), "q95": float(torch.quantile(t, 0.95))}

        q = self.queries[s].double()
        wrong = self.pred != self.y
        assert self.grad_evals is not None
        return {
            "images": n,
            "success_rate": float(s.double().mean()) if n else 0.0,
            "successes": int(s.sum()),
            "success_ci95": list(wilson(int(s.sum()), n)),
            "misclassified": float(wrong.double().mean()) if n else 0.0,
            "misclassified_count": int(wrong.sum()),
            "misclassified_ci95": list(wilson(int(wrong.sum()), n)),
            "linf_success": stats(linf),
            "pixel_l0_mean": float(self.pixel_l0.double().mean()) if n else 0.0,
            "element_l0_mean": float(self.element_l0.double().mean()) if n else 0.0,
            "queries_mean": float(self.queries.double().mean()) if n else 0.0,
            "queries_median_success": float(q.median()) if q.numel() else None,
            "grad_evals_mean": float(self.grad_evals.double().mean()) if n else 0.0,
            "seconds": self.seconds,
            "seconds_per_image": self.seconds / max(n, 1),
        }


ARRAYS: tuple[str, ...] = ("x_adv", "success", "pred", "target", "target_prob", "indices", "queries", "grad_evals",
                           "linf", "pixel_l0", "element_l0", "y")
"""The tensors of an :class:`AttackResult`, as :meth:`AttackResult.save` writes them."""


@torch.no_grad()
def finalize(model: nn.Module, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor,
             target: torch.Tensor, criterion: Criterion, queries: torch.Tensor,
             started: float, indices: torch.Tensor | None = None, batch_size: int = 1024) -> AttackResult:
    """Clamp x_adv to [0,1], evaluate it afresh and fill the shared result type.

    ``indices`` defaults to the locations that actually changed."""
    x_adv = x_adv.detach().clamp(0.0, 1.0)
    probs = probs_of(model, x_adv, batch_size)   # padded calls: independent of the other images
    success, _, judged, p_j = criterion.evaluate(probs, y, target)
    changed = (x_adv != x)
    pix = changed.any(1).flatten(1)                                   # [N, H*W]
    if indices is None:
        kmax = int(pix.sum(1).max()) if len(x) else 0
        order = torch.argsort(pix.to(torch.int8), dim=1, descending=True, stable=True)[:, :kmax]
        indices = torch.where(pix.gather(1, order), order, torch.full_like(order, -1))
    return AttackResult(
        x_adv=x_adv, success=success, pred=probs.argmax(-1), target=target.clone(),
        target_prob=p_j.float(), indices=indices, pixel_l0=pix.sum(1), element_l0=changed.flatten(1).sum(1),
        linf=(x_adv - x).abs().flatten(1).amax(1) if len(x) else torch.zeros(0),
        queries=queries.clone(), seconds=time.perf_counter() - started, y=y.clone())
