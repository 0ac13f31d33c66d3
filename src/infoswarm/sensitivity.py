"""Network sensitivity (Shu & Zhu, AAAI 2019): per-layer parameter FI, and image FI percentiles
on the training versus the test split.

* :func:`layer_fi`: for each layer (module owning parameters) and image, FI = ∇fᵀG⁺∇f with the
  perturbation ω on all of that layer's weights and f = log p_c. Computed in the low-rank form:
  with the K×P logit Jacobian J of the layer, G = JᵀAJ (A = diag p − ppᵀ) has rank < K, and
  ∇fᵀG⁺∇f reduces to a K×K eigen-problem (:func:`infoswarm.influence.parameter_fi`, vectorised
  over images with ``torch.func``). Exact FI of a layer whose Jacobian has full rank equals the
  image value (1 − p_c)/p_c; the authors' ε-variant (``fi_eps``, default 1e-3 here as in their
  code) is what separates layers.
* :func:`fi_percentiles`: the 75/80/85/90/95/98/99/100th percentiles of image FI
  (1 − p_y)/p_y over a split (the AAAI'19 table's layout).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from ._compat import renamed_kwargs
from .errors import InputError
from .influence import ClassSpec, parameter_fi

PERCENTILES: tuple[float, ...] = (75, 80, 85, 90, 95, 98, 99, 100)
"""Percentiles of the AAAI'19 train-versus-test table."""


@renamed_kwargs(eps="fi_eps")
def layer_fi(model: nn.Module, x: torch.Tensor, cls: ClassSpec = "true", *, y: torch.Tensor | None = None,
             fi_eps: float | None = 1e-3, batch_size: int = 16,
             layers: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
    """Per-layer parameter FI {layer name: float64 [N]} for images x [N, C, H, W] in [0, 1].

    ``fi_eps=None`` gives exact FI; a float the authors' regularised variant with that ε."""
    if fi_eps is not None and fi_eps <= 0:
        raise InputError(f"`fi_eps` must be positive, got {fi_eps}", "pass e.g. 1e-3, or None for exact FI")
    return parameter_fi(model, x, cls, y=y, fi_eps=fi_eps, batch_size=batch_size, layers=layers)


def fi_percentiles(fi: torch.Tensor, percentiles: Sequence[float] = PERCENTILES) -> dict[str, float]:
    """{"75": value, ...}: percentiles (0–100, linear interpolation) of FI values [N]."""
    v = torch.as_tensor(fi).double().flatten()
    if v.numel() == 0:
        raise InputError("no FI values", "pass at least one image")
    bad = [q for q in percentiles if not 0 <= q <= 100]
    if bad:
        raise InputError(f"percentiles must lie in 0..100, got {bad[0]}", "e.g. 75, 90, 99")
    qs = torch.quantile(v, torch.tensor([q / 100 for q in percentiles], dtype=torch.float64))
    return {f"{q:g}": float(val) for q, val in zip(percentiles, qs, strict=True)}
