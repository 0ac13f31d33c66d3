"""First-order influence (FI) on the perturbation manifold of a classifier (Shu & Zhu 2019).

Notation (see DESIGN.md §1). A classifier maps images x in [0,1]^{C×H×W} to logits z (K
classes), p = softmax(z). A perturbation ω acts on a set of d input entries (or weights). With
J = ∂z/∂ω (K×d) the Fisher metric is G = Jᵀ(diag p − p pᵀ)J and, for the objective
f = log p_c, the influence is FI = ∇fᵀ G⁺ ∇f (Moore–Penrose pseudo-inverse). FI is
dimensionless and invariant to rescaling ω (0–255 vs 0–1 pixels give the same value).

How it is computed here (exactly, batched over images):

* One logit Jacobian per image from K backward passes (:func:`logit_jacobian`).
* Rows of log-probability gradients taken as differences from class c,
  L = (I − 1pᵀ)(J − 1J_cᵀ), which stays accurate when p_c → 1; weighted rows a_k = w_k L_k
  with w = √p (exact) or w = p/(√p + ε) (the authors' regularised variant, ``fi_eps=``).
* FI = α² a_cᵀ (AᵀA)⁺ a_c with α² = 1/p_c (exact) or ((√p_c+ε)/(p_c+ε))² (``fi_eps``):
  a closed form for one entry, a d×d eigen-decomposition for small blocks (a pixel's
  channels) and a K×K one for large blocks (windows, layers, arbitrary sets).
* Pseudo-inverse cut-off: eigenvalues of AᵀA below ``rtol`` × the block's largest are
  dropped (exact; the Gram matrices are formed in float64, so structural zeros sit at
  ~1e-16); with ``fi_eps`` the authors' rule drops singular values ≤ ε (eigenvalues ≤ ε²).
* The ε variant is not scale-free: its cut-off compares gradients with ε in the model's input
  units. Gradients here are in [0, 1] pixel units; ``fi_eps_scale=s`` evaluates the variant as
  if the model took pixels in 0..s (gradients divided by s), e.g. ``fi_eps_scale=255`` for the
  authors' CIFAR-10 model, which read raw 0–255 pixels. Exact FI ignores ``fi_eps_scale``.
* ``fi_eps`` / ``fi_eps_scale`` were called ``eps`` / ``eps_scale`` before (``eps`` elsewhere in
  infoswarm is an attack's L∞ bound); the old keywords still work, with a DeprecationWarning.
* Whole image: FI = (1 − p_c)/p_c whenever J has rank K (any network), computed from the
  logits as exp(logsumexp_{k≠c} z_k − z_c).

Models must treat images independently (eval mode: no batch statistics).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ._compat import renamed_kwargs
from .checks import check_classes, check_images, check_logits, check_outputs, unit_float
from .errors import InputError

ClassSpec = torch.Tensor | int | Literal["true", "pred", "second"]
Unit = Literal["element", "pixel"]

RTOL = 1e-12
"""Default relative eigenvalue cut-off of the exact pseudo-inverse (1e-6 on singular values)."""


# --------------------------------------------------------------------------------------------
# classes and Jacobians


def resolve_class(logits: torch.Tensor, cls: ClassSpec, y: torch.Tensor | None = None) -> torch.Tensor:
    """Class indices [N] for the objective f = log p_c.

    ``cls`` is a tensor/int of indices, ``"pred"`` (argmax), ``"true"`` (needs ``y``) or
    ``"second"``: the most probable wrong class — the best class other than ``y`` when labels
    are given, else the second most probable class."""
    n, k = logits.shape
    if isinstance(cls, str):
        if cls == "pred":
            return logits.argmax(1)
        if cls == "true" and y is None:
            raise InputError('cls="true" needs the labels', "pass y=labels")
        if cls == "true":
            return check_classes(y, n, k)  # type: ignore[arg-type]
        if cls == "second":
            masked = logits.detach().clone()
            if y is not None:
                masked.scatter_(1, check_classes(y, n, k).view(-1, 1), float("-inf"))
                return masked.argmax(1)
            return masked.topk(2, dim=1).indices[:, 1]
        raise InputError(f"unknown class spec {cls!r}", 'use "pred", "true", "second" or class indices')
    return check_classes(torch.as_tensor(cls, device=logits.device), n, k)


def logit_jacobian(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits [N, K] and their Jacobian w.r.t. the input, [N, K, C, H, W], by K backward
    passes over the batch (one vector-Jacobian product per class)."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x)
        k = check_logits(logits, x.shape[0])
        rows = []
        for j in range(k):
            (g,) = torch.autograd.grad(logits[:, j].sum(), x, retain_graph=j < k - 1)
            rows.append(g)
    return logits.detach(), torch.stack(rows, 1)


def _batches(x: torch.Tensor, cls: ClassSpec, y: torch.Tensor | None,
             batch_size: int) -> Iterator[tuple[torch.Tensor, ClassSpec, torch.Tensor | None]]:
    """Consecutive batches (x, cls, y) of ``batch_size`` images; ``cls`` is sliced when it is a
    tensor of indices and passed on as it is otherwise (``"pred"``, an int)."""
    if batch_size < 1:
        raise InputError(f"batch_size must be positive, got {batch_size}", "pass batch_size=1 or more")
    for i in range(0, x.shape[0], batch_size):
        s = slice(i, i + batch_size)
        yield (x[s], cls[s] if isinstance(cls, torch.Tensor) and cls.dim() > 0 else cls,
               y[s] if y is not None else None)


def iter_jacobians(model: nn.Module, x: torch.Tensor, cls: ClassSpec = "pred", y: torch.Tensor | None = None,
                   batch_size: int = 64) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Logit Jacobians of images x [N, C, H, W], ``batch_size`` images at a time.

    Yields, per batch of B images: the images [B, C, H, W], their logits [B, K], the Jacobian
    [B, K, C, H, W] (:func:`logit_jacobian`) and the classes c [B] of ``cls``
    (:func:`resolve_class`, with the batch's labels ``y``). InputError when ``batch_size`` < 1."""
    for xb, cb, yb in _batches(x, cls, y, batch_size):
        logits, jac = logit_jacobian(model, xb)
        yield xb, logits, jac, resolve_class(logits, cb, yb)


@renamed_kwargs(eps="fi_eps", eps_scale="fi_eps_scale")
def check_fi_eps(fi_eps: float | None, fi_eps_scale: float = 1.0) -> None:
    """Raise InputError unless the authors' regulariser ``fi_eps`` is None (exact FI) or a finite
    number > 0 and ``fi_eps_scale`` a finite number > 0."""
    import math

    if fi_eps is not None and (isinstance(fi_eps, bool) or not isinstance(fi_eps, (int, float))
                               or not math.isfinite(fi_eps) or fi_eps <= 0):
        raise InputError(f"`fi_eps` must be a finite number > 0 (or None for exact FI), got {fi_eps!r}",
                         "pass fi_eps=1e-3 (the authors' value) or leave it out")
    if isinstance(fi_eps_scale, bool) or not isinstance(fi_eps_scale, (int, float)) \
            or not math.isfinite(fi_eps_scale) or fi_eps_scale <= 0:
        raise InputError(f"`fi_eps_scale` must be a finite number > 0, got {fi_eps_scale!r}",
                         "pass 1 for models on [0, 1] pixels or 255 for models trained on 0..255")


check_eps = check_fi_eps
"""The old name of :func:`check_fi_eps` (``eps`` alone now means an attack's L∞ bound)."""


def _in_units(jac: torch.Tensor, fi_eps: float | None, fi_eps_scale: float) -> torch.Tensor:
    """The Jacobian in the input units the ε variant is evaluated in (unchanged when exact)."""
    check_fi_eps(fi_eps, fi_eps_scale)
    return jac / fi_eps_scale if fi_eps is not None and fi_eps_scale != 1.0 else jac


def _rows(jac: torch.Tensor, logits: torch.Tensor, c: torch.Tensor,
          fi_eps: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted log-probability gradient rows A [N, K, ...] (float64) and α² [N]."""
    logp = torch.log_softmax(logits.double(), 1)
    p = logp.exp()
    n = jac.shape[0]
    jd = jac.double()
    idx = torch.arange(n, device=jac.device)
    d = jd - jd[idx, c].unsqueeze(1)                      # J − J_c
    view = (n, -1) + (1,) * (jac.dim() - 2)
    lc = -(p.view(view) * d).sum(1, keepdim=True)        # L_c = −Σ_k p_k D_k
    lrows = d + lc                                        # L_k = D_k + L_c
    pc = p[idx, c]
    if fi_eps is None:
        w = p.sqrt()
        alpha2 = 1.0 / pc
    else:
        w = p / (p.sqrt() + fi_eps)
        alpha2 = ((pc.sqrt() + fi_eps) / (pc + fi_eps)) ** 2
    return w.view(view) * lrows, alpha2


def _keep(lam: torch.Tensor, fi_eps: float | None, rtol: float) -> torch.Tensor:
    """Which eigenvalues the pseudo-inverse keeps (ascending eigenvalues on the last axis)."""
    if fi_eps is not None:
        return lam > fi_eps * fi_eps
    top = lam[..., -1:]
    return (lam > rtol * top) & (top > 0)


def _fi_small_gram(a: torch.Tensor, c: torch.Tensor, alpha2: torch.Tensor,
                   fi_eps: float | None, rtol: float) -> torch.Tensor:
    """FI of blocks from rows a [N, B, K, d] with d <= K, through the d×d Gram AᵀA."""
    n, b = a.shape[:2]
    gram = torch.einsum("nbkd,nbke->nbde", a, a)
    lam, vec = torch.linalg.eigh(gram)
    ac = a[torch.arange(n, device=a.device), :, c]        # [N, B, d]
    proj = torch.einsum("nbd,nbdi->nbi", ac, vec)
    keep = _keep(lam, fi_eps, rtol)
    q = torch.where(keep, proj.square() / torch.where(keep, lam, torch.ones_like(lam)),
                    torch.zeros_like(lam)).sum(-1)
    return alpha2.view(n, 1) * q


def _fi_class_gram(m: torch.Tensor, c: torch.Tensor, alpha2: torch.Tensor,
                   fi_eps: float | None, rtol: float) -> torch.Tensor:
    """FI of blocks from their K×K Gram matrices M = A Aᵀ, [N, B, K, K]."""
    n = m.shape[0]
    lam, vec = torch.linalg.eigh(m)
    uc = vec[torch.arange(n, device=m.device), :, c]      # [N, B, K] (row c of U)
    q = torch.where(_keep(lam, fi_eps, rtol), uc.square(), torch.zeros_like(uc)).sum(-1)
    return alpha2.view(n, 1) * q


def _fi_elements(a: torch.Tensor, c: torch.Tensor, alpha2: torch.Tensor,
                 fi_eps: float | None) -> torch.Tensor:
    """FI of single entries: rows a [N, K, ...] -> [N, ...] (closed form)."""
    n = a.shape[0]
    ac2 = a[torch.arange(n, device=a.device), c].square()
    s2 = a.square().sum(1)
    keep = s2 > (fi_eps * fi_eps if fi_eps is not None else 0.0)
    view = (n,) + (1,) * (a.dim() - 2)
    return torch.where(keep, alpha2.view(view) * ac2 / torch.where(keep, s2, torch.ones_like(s2)),
                       torch.zeros_like(s2))


def _class_gram_from_rows(a: torch.Tensor) -> torch.Tensor:
    """Rows a [N, K, d] of one block per image -> M [N, 1, K, K]."""
    return torch.einsum("nkd,nld->nkl", a, a).unsqueeze(1)


# --------------------------------------------------------------------------------------------
# image level


def image_fi_from_logits(logits: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Closed-form whole-image FI (1 − p_c)/p_c = exp(logsumexp_{k≠c} z_k − z_c), float64 [N]."""
    z = logits.detach().double()
    idx = torch.arange(z.shape[0], device=z.device)
    zc = z[idx, c]
    others = z.clone()
    others[idx, c] = float("-inf")
    return torch.exp(torch.logsumexp(others, 1) - zc)


def _prepare(model: nn.Module, x: torch.Tensor, fi_eps: float | None = None) -> None:
    check_images(x)
    check_fi_eps(fi_eps)


@renamed_kwargs(eps="fi_eps", eps_scale="fi_eps_scale")
def image_fi(model: nn.Module, x: torch.Tensor, cls: ClassSpec = "pred", *,
             y: torch.Tensor | None = None, fi_eps: float | None = None,
             method: Literal["closed", "general"] = "closed", rtol: float = RTOL,
             fi_eps_scale: float = 1.0) -> torch.Tensor:
    """Whole-image FI, float64 [N], for images x [N, C, H, W] in [0, 1].

    ``method="closed"`` (default, exact when the logit Jacobian has full rank K, which holds
    for any practical network) uses (1 − p_c)/p_c from one forward pass; ``"general"``
    evaluates ∇fᵀG⁺∇f from the Jacobian. ``fi_eps`` (the authors' variant) implies general."""
    _prepare(model, x, fi_eps)
    if fi_eps is None and method == "closed":
        with torch.no_grad():
            logits = model(x)
        check_logits(logits, x.shape[0])
        return image_fi_from_logits(logits, resolve_class(logits, cls, y))
    mask = torch.ones(x.shape[1:], dtype=torch.bool, device=x.device)
    return block_fi(model, x, cls, mask, y=y, fi_eps=fi_eps, rtol=rtol, fi_eps_scale=fi_eps_scale)


@renamed_kwargs(eps="fi_eps", eps_scale="fi_eps_scale")
def block_fi(model: nn.Module, x: torch.Tensor, cls: ClassSpec, mask: torch.Tensor, *,
             y: torch.Tensor | None = None, fi_eps: float | None = None, rtol: float = RTOL,
             fi_eps_scale: float = 1.0) -> torch.Tensor:
    """FI of perturbing a chosen set of input entries together, float64 [N].

    ``mask`` is bool [C, H, W] (same set for every image) or [N, C, H, W] (a set per image);
    the result is ∇fᵀ G⁺ ∇f over the selected entries (0 for an empty set)."""
    _prepare(model, x, fi_eps)
    mask = torch.as_tensor(mask, device=x.device)
    if mask.dtype != torch.bool or mask.shape not in (x.shape[1:], x.shape):
        raise InputError(f"mask must be bool with shape {tuple(x.shape[1:])} or {tuple(x.shape)}, "
                         f"got {mask.dtype} {tuple(mask.shape)}", "build it with x.new_zeros(...).bool()")
    check_fi_eps(fi_eps, fi_eps_scale)
    logits, jac = logit_jacobian(model, x)
    c = resolve_class(logits, cls, y)
    a, alpha2 = _rows(_in_units(jac, fi_eps, fi_eps_scale), logits, c, fi_eps)
    a = a * mask.expand_as(x).unsqueeze(1)
    return _fi_class_gram(_class_gram_from_rows(a.flatten(2)), c, alpha2, fi_eps, rtol)[:, 0]


# --------------------------------------------------------------------------------------------
# pixel maps


def _window_sum(t: torch.Tensor, window: int) -> torch.Tensor:
    """Sum over the window×window neighbourhood of each position (zeros outside): [..., H, W]."""
    shape = t.shape
    flat = t.reshape(-1, 1, shape[-2], shape[-1])
    summed = F.avg_pool2d(flat, window, stride=1, padding=window // 2,
                          count_include_pad=True) * (window * window)
    return summed.reshape(shape)


@renamed_kwargs(eps="fi_eps", eps_scale="fi_eps_scale")
def fi_map_from_jacobian(jac: torch.Tensor, logits: torch.Tensor, c: torch.Tensor, *,
                         unit: Unit = "element", window: int = 1, fi_eps: float | None = None,
                         rtol: float = RTOL, fi_eps_scale: float = 1.0) -> torch.Tensor:
    """Pixel-FI map from a logit Jacobian [N, K, C, H, W] (pure maths, no model).

    ``fi_eps_scale``: with ``fi_eps``, the input scale the ε cut-off is meant for (module docstring).

    Returns float64 [N, C, H, W] for ``unit="element"`` (each channel entry, or each
    channel's window) and [N, H, W] for ``unit="pixel"`` (all channels of a location, or of
    the window centred there). Windows are cut at the image border."""
    if unit not in ("element", "pixel"):
        raise InputError(f"unknown unit {unit!r}", 'use unit="element" or unit="pixel"')
    if window < 1 or window % 2 == 0:
        raise InputError(f"window must be an odd size like 1, 3, 5 or 7, got {window}", "pass window=1, 3, 5 or 7")
    n, k, ch, h, w = jac.shape
    a, alpha2 = _rows(_in_units(jac, fi_eps, fi_eps_scale), logits, c, fi_eps)   # [N, K, C, H, W]
    d = (ch if unit == "pixel" else 1) * window * window
    if d == 1:
        fi = _fi_elements(a, c, alpha2, fi_eps)                  # [N, C, H, W] (or C == 1 pixels)
        return fi[:, 0] if unit == "pixel" else fi
    if window == 1 and d <= k:                                 # a pixel's channels: d×d Gram
        rows = a.permute(0, 3, 4, 1, 2).reshape(n, h * w, k, ch)
        return _fi_small_gram(rows, c, alpha2, fi_eps, rtol).view(n, h, w)
    # K×K Gram of each block: window sums of per-entry outer products.
    outer = torch.einsum("nkchw,nlchw->nclkhw", a, a)        # [N, C, K, K, H, W]
    if unit == "pixel":
        outer = outer.sum(1, keepdim=True)
    if window > 1:
        outer = _window_sum(outer, window)
    groups = outer.shape[1]
    m = outer.permute(0, 1, 4, 5, 2, 3).reshape(n, groups * h * w, k, k)
    fi = _fi_class_gram(m, c, alpha2, fi_eps, rtol).view(n, groups, h, w)
    return fi[:, 0] if unit == "pixel" else fi


@renamed_kwargs(eps="fi_eps", eps_scale="fi_eps_scale")
def pixel_fi(model: nn.Module, x: torch.Tensor, cls: ClassSpec = "pred", *,
             y: torch.Tensor | None = None, unit: Unit = "element", window: int = 1,
             fi_eps: float | None = None, batch_size: int = 64, rtol: float = RTOL,
             fi_eps_scale: float = 1.0) -> torch.Tensor:
    """Per-pixel FI maps for images x [N, C, H, W] in [0, 1], objective f = log p_cls.

    ``unit="element"`` -> float64 [N, C, H, W]: FI of each channel entry alone (with
    ``window`` > 1: of each channel's window centred there). ``unit="pixel"`` -> [N, H, W]:
    FI of all channels of a location together (with ``window``: of the window×window block
    centred there, all channels, cut at the borders). Values lie in [0, (1 − p_c)/p_c]."""
    _prepare(model, x, fi_eps)
    check_fi_eps(fi_eps, fi_eps_scale)
    return torch.cat([fi_map_from_jacobian(jac, logits, c, unit=unit, window=window, fi_eps=fi_eps, rtol=rtol,
                                           fi_eps_scale=fi_eps_scale)
                      for _, logits, jac, c in iter_jacobians(model, x, cls, y, batch_size)])


# --------------------------------------------------------------------------------------------
# parameters


@renamed_kwargs(eps="fi_eps")
def parameter_fi(model: nn.Module, x: torch.Tensor, cls: ClassSpec = "pred", *,
                 y: torch.Tensor | None = None, fi_eps: float | None = None, batch_size: int = 8,
                 layers: Iterable[str] | None = None, rtol: float = RTOL) -> dict[str, torch.Tensor]:
    """FI of perturbing the weights of each layer (all its parameters together), per image.

    Returns {module name: float64 [N]} for every module that owns parameters (or the names in
    ``layers``). Note: a layer whose logit Jacobian has rank K gives exactly the image value
    (1 − p_c)/p_c — the layers that differ are the small or rank-limited ones, and all of
    them under ``fi_eps``."""
    from torch.func import functional_call, jacrev, vmap

    _prepare(model, x, fi_eps)
    if isinstance(model, torch.jit.ScriptModule):
        raise InputError("parameter FI needs a Python nn.Module, not TorchScript",
                         "load the model as file.py:Class with --weights")
    groups: dict[str, list[str]] = {}
    for name, prm in model.named_parameters():
        if prm.requires_grad:
            groups.setdefault(name.rpartition(".")[0] or name, []).append(name)
    if layers is not None:
        wanted = list(layers)
        unknown = [layer for layer in wanted if layer not in groups]
        if unknown:
            raise InputError(f"no layer named {unknown[0]!r} with parameters",
                             f"use one of {', '.join(groups)}")
        groups = {layer: groups[layer] for layer in wanted}
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def logits_of(prm: dict[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        return functional_call(model, (prm, buffers), (xi.unsqueeze(0),)).squeeze(0)

    out: dict[str, list[torch.Tensor]] = {g: [] for g in groups}
    for xb, cb, yb in _batches(x, cls, y, batch_size):
        with torch.no_grad():
            logits = model(xb)
        check_logits(logits, xb.shape[0])
        c = resolve_class(logits, cb, yb)
        jac = vmap(jacrev(logits_of), in_dims=(None, 0))(params, xb)  # name -> [n, K, *shape]
        for g, names in groups.items():
            j = torch.cat([jac[nm].flatten(2) for nm in names], 2)    # [n, K, P]
            a, alpha2 = _rows(j, logits, c, fi_eps)
            out[g].append(_fi_class_gram(_class_gram_from_rows(a), c, alpha2, fi_eps, rtol)[:, 0])
    return {g: torch.cat(v) for g, v in out.items()}


# --------------------------------------------------------------------------------------------
# dataset ranking


@dataclass
class Ranking:
    """Image-level FI over a dataset. ``order`` lists indices from most to least vulnerable
    (largest FI of ``cls`` first); ``fi`` [N] float64; ``logits`` [N, K]; ``c`` the classes."""

    fi: torch.Tensor
    order: torch.Tensor
    logits: torch.Tensor
    c: torch.Tensor


def rank_images(model: nn.Module, x: torch.Tensor, cls: ClassSpec = "pred", *,
                y: torch.Tensor | None = None, batch_size: int = 500,
                progress: bool = False, device: torch.device | str | None = None) -> Ranking:
    """Vulnerable-image ranking by closed-form image FI over a dataset, batched.

    ``x`` may be uint8 (0..255, converted per batch) or float [0, 1]; [N, C, H, W]."""
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise InputError(f"batch_size must be positive, got {batch_size}", "pass batch_size=1 or more")
    dev = torch.device(device) if device is not None else next(
        (p.device for p in model.parameters()), torch.device("cpu"))
    all_logits = []
    bar = tqdm(total=len(x), desc="image FI", unit="img", disable=not progress)
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = x[i: i + batch_size].to(dev)
            xb = unit_float(xb)
            check_images(xb)
            logits = model(xb)
            check_logits(logits, xb.shape[0])
            check_outputs(logits)
            all_logits.append(logits.cpu())
            bar.update(xb.shape[0])
    bar.close()
    logits = torch.cat(all_logits)
    c = resolve_class(logits, cls, y)
    fi = image_fi_from_logits(logits, c)
    return Ranking(fi=fi, order=torch.argsort(fi, descending=True, stable=True), logits=logits, c=c)
