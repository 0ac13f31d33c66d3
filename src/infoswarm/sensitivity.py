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
from dataclasses import dataclass

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


@dataclass
class SensitivityStudy:
    """What :func:`sensitivity_study` measured: ``summary`` (per split the accuracy and the
    image-FI percentiles; the layer-FI statistics), ``percentile_rows`` and ``layer_rows`` (the
    CSV rows), and for the layer-FI images their labels ``y`` [n], image FI ``image_fi`` [n] and
    per layer ``layer_fi`` {name: [n]} (CPU tensors)."""

    summary: dict
    percentile_rows: list[dict]
    layer_rows: list[dict]
    y: torch.Tensor
    image_fi: torch.Tensor
    layer_fi: dict[str, torch.Tensor]


def sensitivity_study(model: nn.Module, splits: dict[str, tuple[torch.Tensor, torch.Tensor]], *, param_images: int,
                      fi_eps: float | None, device: torch.device, batch_size: int | None = None,
                      class_names: Sequence[str] = (), names: tuple[str, str] = ("", "")) -> SensitivityStudy:
    """Image FI percentiles of the true and the predicted class on each split of ``splits``
    ({"train": (x8, y), "test": (x8, y)}, uint8 images [N, C, H, W] and labels [N]), and the
    parameter FI per layer (:func:`layer_fi`, exact or with ``fi_eps``) of the true label on the
    first ``param_images`` test images, with its median per class (named by ``class_names``).
    ``batch_size``: images per model call (default 500 for image FI, at most 64 for layer FI);
    ``names`` = (model, dataset) for the summary."""
    import time

    from . import influence
    from .data import to_float

    t0 = time.perf_counter()
    pct: dict = {}
    for s, (xx, yy) in splits.items():
        rank = influence.rank_images(model, xx, "pred", batch_size=batch_size or 500, device=device)
        fi_true = influence.image_fi_from_logits(rank.logits, yy)
        acc = float((rank.c == yy).float().mean())
        pct[s] = {"images": len(yy), "accuracy": acc, "fi_true": fi_percentiles(fi_true),
                  "fi_pred": fi_percentiles(rank.fi)}
    t_pct = time.perf_counter() - t0
    x_test, y_test = splits["test"]
    n = min(param_images, len(x_test))
    xp = to_float(x_test[:n]).to(device)
    yp = y_test[:n]
    t0 = time.perf_counter()
    lfi = layer_fi(model, xp, "true", y=yp.to(device), fi_eps=fi_eps, batch_size=min(batch_size or 16, 64))
    t_layer = time.perf_counter() - t0
    img = influence.image_fi(model, xp, "true", y=yp.to(device)).cpu()
    lfi = {name: v.cpu() for name, v in lfi.items()}
    layers = {name: {"median": float(v.median()), "mean": float(v.mean()), "max": float(v.max()),
                     "per_class_median": {class_names[c]: float(v[yp == c].median())
                                          for c in range(len(class_names)) if bool((yp == c).any())}}
              for name, v in lfi.items()}
    layer_rows = []
    for i in range(n):
        row = {"index": i, "label": int(yp[i]), "image_fi": float(img[i])}
        row.update({f"layer:{name}": float(v[i]) for name, v in lfi.items()})
        layer_rows.append(row)
    pct_rows = [{"split": s, "measure": m, **{f"p{q}": pct[s][m][q] for q in pct[s][m]}}
                for s in pct for m in ("fi_true", "fi_pred")]
    summary: dict = {
        "command": "sensitivity", "dataset": names[1], "model": names[0],
        "percentiles": pct, "layer_fi": {"images": n, "split": "test", "class": "true label",
                                        "fi_eps": fi_eps, "eps": fi_eps,  # eps: the old key, same value
                                        "exact": fi_eps is None, "layers": layers},
        "seconds": {"percentiles": round(t_pct, 1), "layer_fi": round(t_layer, 1)},
    }
    return SensitivityStudy(summary=summary, percentile_rows=pct_rows, layer_rows=layer_rows, y=yp, image_fi=img,
                            layer_fi=lfi)
