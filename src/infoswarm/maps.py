"""Pixel attribution maps and the deletion test that judges them.

A *map* scores every pixel location of an image [C, H, W] by how much changing it should hurt
the class probability p_c; it is a float64 tensor [N, H, W] (larger = more vulnerable). Maps:

* ``element-fi``: exact FI of each channel entry alone, summed over channels
  (:func:`infoswarm.influence.fi_map_from_jacobian`, ``unit="element"``);
* ``pixel-fi``: exact FI of all channels of a location together (``unit="pixel"``);
* ``window-fi-3`` / ``-5`` / ``-7``: exact FI of the w×w block (all channels) centred there;
* ``eps-fi``: the authors' regularised FI (ε = 1e-3 in the model's [0, 1] input units), per
  channel entry, summed over channels;
* ``saliency``: |∂ log p_c / ∂x|, the largest magnitude over channels (Simonyan et al. 2014);
* ``grad-input``: |Σ_channels x · ∂ log p_c / ∂x| (gradient × input);
* ``random``: uniform noise (the control every map must beat).

All but ``random`` come from one logit Jacobian per batch (K backward passes).

**Deletion test** (:func:`deletion_curves`): perturb the k highest-scoring locations (all their
channels) for k = 1 … k_max and record the drop p_c(x) − p_c(x_k) of the clean image's class
probability. Two replacement values: ``"box"`` sets each channel to the corner of [0, 1]
opposite its clean value (1 where x < 0.5, else 0: the largest change the box allows), and
``"blur"`` to the value of a Gaussian-blurred copy (σ = 2 pixels, a "plausible" deletion).
The area under the curve is reported as the mean drop over k = 1 … k_max (in [−1, 1]).

**Insertion test** (:func:`insertion_curves`, the mirror image): start from the replaced image
(every entry at the opposite corner, or the blurred copy) and restore the k highest-scoring
locations to their clean values; record the rise p_c(x_k) − p_c(baseline); its AUC is the mean
rise over k = 1 … k_max. The maps are those of the clean image in both tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ._compat import renamed_kwargs
from .checks import check_images, check_logits
from .errors import InputError
from .influence import ClassSpec, fi_map_from_jacobian, iter_jacobians
from .stats import wilson  # noqa: F401  (re-exported: maps.wilson for the benchmark)

MAPS: tuple[str, ...] = ("element-fi", "pixel-fi", "window-fi-3", "window-fi-5", "window-fi-7",
                         "eps-fi", "saliency", "grad-input", "random")
"""Names of the maps :func:`attribution_maps` computes."""

FI_EPS = 1e-3
"""ε of the authors' regularised FI (the ``eps-fi`` map), in [0, 1] input units."""

EPS = FI_EPS
"""The old name of :data:`FI_EPS`."""

Replacement = Literal["box", "blur"]
REPLACEMENTS: tuple[str, ...] = ("box", "blur")


def check_map_names(kinds: Sequence[str]) -> list[str]:
    """The requested map names, checked (InputError on an unknown one or none)."""
    kinds = list(kinds)
    if not kinds:
        raise InputError("no map requested", f"use some of {', '.join(MAPS)}")
    bad = [k for k in kinds if k not in MAPS]
    if bad:
        raise InputError(f"unknown map {bad[0]!r}", f"use one of {', '.join(MAPS)}")
    return kinds


@renamed_kwargs(eps="fi_eps")
def maps_from_jacobian(x: torch.Tensor, jac: torch.Tensor, logits: torch.Tensor, c: torch.Tensor,
                       kinds: Sequence[str], generator: torch.Generator | None = None,
                       fi_eps: float = FI_EPS) -> dict[str, torch.Tensor]:
    """Maps {name: float64 [N, H, W]} from images x [N, C, H, W], their logit Jacobian
    [N, K, C, H, W], logits [N, K] and classes c [N] (pure maths, no model); ``fi_eps`` is the
    ε of the ``eps-fi`` map."""
    kinds = check_map_names(kinds)
    n, _, ch, h, w = jac.shape
    out: dict[str, torch.Tensor] = {}
    grad_logp: torch.Tensor | None = None
    for kind in kinds:
        if kind == "element-fi":
            m = fi_map_from_jacobian(jac, logits, c, unit="element").sum(1)
        elif kind == "pixel-fi":
            m = fi_map_from_jacobian(jac, logits, c, unit="pixel")
        elif kind.startswith("window-fi-"):
            m = fi_map_from_jacobian(jac, logits, c, unit="pixel", window=int(kind.rsplit("-", 1)[1]))
        elif kind == "eps-fi":
            m = fi_map_from_jacobian(jac, logits, c, unit="element", fi_eps=fi_eps).sum(1)
        elif kind in ("saliency", "grad-input"):
            if grad_logp is None:  # ∇ log p_c = J_c − Σ_k p_k J_k
                p = torch.softmax(logits.double(), 1)
                jd = jac.double()
                grad_logp = jd[torch.arange(n, device=jac.device), c] - torch.einsum("nk,nkchw->nchw", p, jd)
            if kind == "saliency":
                m = grad_logp.abs().amax(1)
            else:
                m = (grad_logp * x.double()).sum(1).abs()
        else:  # random
            m = torch.rand((n, h, w), generator=generator, dtype=torch.float64).to(jac.device)
        out[kind] = m.double()
    return out


@renamed_kwargs(eps="fi_eps")
def attribution_maps(model: nn.Module, x: torch.Tensor, kinds: Sequence[str] = MAPS,
                     cls: ClassSpec = "pred", *, y: torch.Tensor | None = None, batch_size: int = 32,
                     seed: int = 0, fi_eps: float = FI_EPS) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Maps {name: float64 [N, H, W]} for images x [N, C, H, W] in [0, 1] and the classes c [N]
    of their objective log p_c (``cls`` as in :func:`infoswarm.influence.resolve_class`).
    ``seed`` fixes the random map; ``fi_eps`` is the ε of the ``eps-fi`` map."""
    check_images(x)
    kinds = check_map_names(kinds)
    gen = torch.Generator().manual_seed(seed)
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in kinds}
    classes = []
    for xb, logits, jac, c in iter_jacobians(model, x, cls, y, batch_size):
        for k, m in maps_from_jacobian(xb, jac, logits, c, kinds, gen, fi_eps).items():
            parts[k].append(m)
        classes.append(c)
    return {k: torch.cat(v) for k, v in parts.items()}, torch.cat(classes)


# --------------------------------------------------------------------------------------------
# deletion test


def gaussian_blur(x: torch.Tensor, sigma: float = 2.0) -> torch.Tensor:
    """Per-channel Gaussian blur of images [N, C, H, W] (kernel 2·⌈2σ⌉+1, edges replicated)."""
    r = max(1, math.ceil(2 * sigma))
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k1 = torch.exp(-0.5 * (t / sigma) ** 2)
    k1 = k1 / k1.sum()
    n, ch, h, w = x.shape
    z = x.reshape(n * ch, 1, h, w)
    z = F.conv2d(F.pad(z, (r, r, 0, 0), mode="replicate"), k1.view(1, 1, 1, -1))
    z = F.conv2d(F.pad(z, (0, 0, r, r), mode="replicate"), k1.view(1, 1, -1, 1))
    return z.reshape(n, ch, h, w)


def replacement_values(x: torch.Tensor, how: Replacement) -> torch.Tensor:
    """What a deleted entry becomes, [N, C, H, W]: ``"box"`` the opposite corner of [0, 1]
    (1 where x < 0.5, else 0), ``"blur"`` a Gaussian-blurred copy (σ = 2)."""
    if how == "box":
        return (x < 0.5).to(x.dtype)
    if how == "blur":
        return gaussian_blur(x)
    raise InputError(f"unknown replacement {how!r}", f"use one of {', '.join(REPLACEMENTS)}")


def top_k_order(m: torch.Tensor, k_max: int) -> torch.Tensor:
    """Flat indices [N, k_max] of the k_max highest map values per image (m [N, H, W])."""
    flat = m.flatten(1)
    if not 1 <= k_max <= flat.shape[1]:
        raise InputError(f"k_max must be in 1..{flat.shape[1]}, got {k_max}", "pass a smaller k_max")
    return flat.topk(k_max, dim=1).indices


def _rank_of_locations(m: torch.Tensor, k_max: int) -> torch.Tensor:
    """For maps m [N, H, W]: int64 [N, 1, H, W], the step k (1 … k_max) at which each location
    is changed (its rank among the k_max highest map values), k_max + 1 for the others."""
    n, h, w = m.shape
    order = top_k_order(m, k_max)                                        # [N, k_max]
    rank = torch.full((n, h * w), k_max + 1, dtype=torch.long, device=m.device)
    rank.scatter_(1, order, torch.arange(1, k_max + 1, device=m.device).expand(n, -1))
    return rank.view(n, 1, h, w)


@torch.no_grad()
def _path_scores(model: nn.Module, start: torch.Tensor, end: torch.Tensor, c: torch.Tensor, rank: torch.Tensor,
                 k_max: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Class probability, log-odds and prediction along the path x_k, k = 0 … k_max, where x_k
    takes the ``end`` value [N, C, H, W] at the locations with rank ≤ k and the ``start`` value
    elsewhere (rank [N, 1, H, W] from :func:`_rank_of_locations`; x_0 = start).

    Returns p_c(x_k) and log(p_c/(1 − p_c))(x_k) as float64 [N, k_max + 1] and argmax int64
    [N, k_max + 1]. N·(k_max + 1) forward passes, ``batch_size`` images per pass."""
    n = start.shape[0]
    dev = start.device
    idx_all = torch.arange(n, device=dev).repeat_interleave(k_max + 1)   # image of each step
    k_all = torch.arange(k_max + 1, device=dev).repeat(n)                # k of each step
    probs, preds, odds = [], [], []
    for s in range(0, idx_all.numel(), batch_size):
        idx, kk = idx_all[s: s + batch_size], k_all[s: s + batch_size]
        xb = torch.where(rank[idx] <= kk.view(-1, 1, 1, 1), end[idx], start[idx])
        logits = model(xb)
        check_logits(logits, xb.shape[0])
        zd = logits.detach().double().clone()
        ar = torch.arange(len(idx), device=dev)
        ci = c[idx]
        probs.append(torch.softmax(zd, 1)[ar, ci])
        zc = zd[ar, ci]
        zd[ar, ci] = float("-inf")
        odds.append(zc - torch.logsumexp(zd, 1))
        preds.append(logits.argmax(1))
    p = torch.cat(probs).view(n, k_max + 1).cpu()
    lo = torch.cat(odds).view(n, k_max + 1).cpu()
    pred = torch.cat(preds).view(n, k_max + 1).cpu()
    return p, lo, pred


def _check_curve_inputs(x: torch.Tensor, c: torch.Tensor, m: torch.Tensor, batch_size: int) -> None:
    check_images(x)
    n, _, h, w = x.shape
    if m.shape != (n, h, w):
        raise InputError(f"map must have shape {(n, h, w)}, got {tuple(m.shape)}", "pass one [H, W] map per image")
    if c.shape != (n,):
        raise InputError(f"classes must have shape {(n,)}, got {tuple(c.shape)}", "pass one class per image")
    if batch_size < 1:
        raise InputError(f"batch_size must be positive, got {batch_size}", "pass batch_size=1 or more")


@torch.no_grad()
def deletion_curves(model: nn.Module, x: torch.Tensor, c: torch.Tensor, m: torch.Tensor,
                    how: Replacement = "box", k_max: int = 50,
                    batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Probability drop, log-odds drop and prediction of the deletion test.

    Images x [N, C, H, W] in [0, 1], classes c [N], map m [N, H, W]. Returns ``drop`` float64
    [N, k_max + 1] with drop[:, k] = p_c(x) − p_c(x_k) (column 0 is 0) and ``pred`` int64
    [N, k_max + 1], the argmax class of x_k; ``logodds`` float64 [N, k_max + 1], the drop of
    log(p_c / (1 − p_c)) = z_c − logsumexp_{k≠c} z_k (= −log image FI), which does not saturate
    when p_c is near 1. x_k replaces the top-k locations (all channels)
    by :func:`replacement_values`. N·(k_max + 1) forward passes, ``batch_size`` images at a time."""
    _check_curve_inputs(x, c, m, batch_size)
    rank = _rank_of_locations(m.to(x.device), k_max)
    p, lo, pred = _path_scores(model, x, replacement_values(x, how), c.to(x.device), rank, k_max, batch_size)
    return p[:, :1] - p, lo[:, :1] - lo, pred


@torch.no_grad()
def insertion_curves(model: nn.Module, x: torch.Tensor, c: torch.Tensor, m: torch.Tensor,
                     how: Replacement = "box", k_max: int = 50,
                     batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Probability rise, log-odds rise, prediction and baseline probability of the insertion test.

    The mirror of :func:`deletion_curves`: start from the baseline b = :func:`replacement_values`
    (x, how) [N, C, H, W] (``"box"``: every entry at the opposite corner of [0, 1]; ``"blur"``: the
    blurred image) and restore the k highest-scoring locations of map m [N, H, W] (all channels) to
    their clean values from x [N, C, H, W] in [0, 1], k = 0 … k_max. Returns ``rise`` float64
    [N, k_max + 1] with rise[:, k] = p_c(x_k) − p_c(b) (column 0 is 0; higher = the map's top pixels
    carry more of the evidence for class c [N]), ``logodds`` float64 [N, k_max + 1], the rise of
    log(p_c/(1 − p_c)) in nats, ``pred`` int64 [N, k_max + 1], the argmax class of x_k, and ``p0``
    float64 [N], p_c(b). N·(k_max + 1) forward passes, ``batch_size`` images at a time."""
    _check_curve_inputs(x, c, m, batch_size)
    rank = _rank_of_locations(m.to(x.device), k_max)
    p, lo, pred = _path_scores(model, replacement_values(x, how), x, c.to(x.device), rank, k_max, batch_size)
    return p - p[:, :1], lo - lo[:, :1], pred, p[:, 0].clone()


@dataclass
class Summary:
    """Mean over images of a per-image score, with a normal 95 % interval."""

    mean: float
    lo: float
    hi: float
    n: int

    def text(self, digits: int = 3) -> str:
        return f"{self.mean:.{digits}f} [{self.lo:.{digits}f}, {self.hi:.{digits}f}]"


def mean_interval(v: torch.Tensor, z: float = 1.959964) -> Summary:
    """Mean of v [N] and its normal-approximation 95 % interval (mean ± z·sd/√N)."""
    v = v.double().flatten()
    n = v.numel()
    if n == 0:
        raise InputError("no values to summarise", "pass at least one image")
    mu = float(v.mean())
    half = z * float(v.std(unbiased=True)) / math.sqrt(n) if n > 1 else float("inf")
    return Summary(mu, mu - half, mu + half, n)


def deletion_auc(drop: torch.Tensor) -> torch.Tensor:
    """Area under each deletion (or insertion) curve [N, k_max + 1], normalised: the mean of
    columns k = 1 … k_max, float [N] (for probabilities in [−1, 1])."""
    return drop[:, 1:].mean(1)


insertion_auc = deletion_auc
"""Area under each insertion curve: the mean rise over k = 1 … k_max, [N] (same formula)."""


# --------------------------------------------------------------------------------------------
# the report's heatmaps

DEFAULT_MAP = "saliency"
"""The map ``infoswarm influence`` draws by default: the map that is best or tied with the best
in the most settings of the deletion and insertion benchmark (see :data:`DEFAULT_MAP_REASON` and
BENCHMARKS.md, sections "Pixel maps: deletion test" and "Pixel maps: insertion test")."""

DEFAULT_MAP_EVIDENCE: dict[str, tuple[int, int]] = {"deletion": (4, 6), "insertion": (2, 4)}
"""{test: (settings where :data:`DEFAULT_MAP` is best or tied with the best, settings counted)}
in ``tests/fixtures/maps_results.json`` (datasets × replacements; failed insertion tests left out);
checked against that file by the tests."""

DEFAULT_MAP_REASON = (
    "saliency |d log p_c/dx| is best or tied with the best (paired 95 % interval of the AUC difference "
    "containing 0) in 4 of the 6 deletion settings and 2 of the 4 insertion settings of bench/maps.py "
    "(MNIST, Fashion-MNIST, CIFAR-10; 200 correctly classified test images each, 30 for CIFAR-10 insertion; "
    "the k = 1..50 top pixels set to the opposite corner of [0, 1] or to a blurred value, or restored from that "
    "baseline), more than any other map. "
    "E.g. MNIST deletion, opposite corner: saliency 0.352 [0.312, 0.392] against 0.231 for the best FI map (the "
    "authors' eps-FI) and 0.080 for random. Where it loses: Fashion-MNIST deletion with the opposite corner, exact "
    "3x3 window FI 0.367 [0.331, 0.402] (saliency 0.313); CIFAR-10 deletion with the opposite corner, the random "
    "map 0.465 [0.430, 0.500] (saliency 0.411); MNIST insertion from the blurred image, gradient x input "
    "0.405 [0.369, 0.441] (saliency 0.348); "
    "CIFAR-10 insertion from the opposite-corner image, the authors' eps-FI 0.001 [-0.021, 0.023] (saliency -0.021; "
    "random is tied with it). Gradient x input comes second (best or tied in 2 deletion and 3 insertion settings). "
    "Insertion from the opposite-corner image is a failed test on MNIST and Fashion-MNIST (every map, random "
    "included, lowers p_c) and is not counted. Exact FI stays available "
    "with --map fi. See BENCHMARKS.md, 'Pixel maps: deletion test' and 'Pixel maps: insertion test'.")
"""Why :data:`DEFAULT_MAP` is the default (the figures of the benchmark run recorded in
``tests/fixtures/maps_results.json``); shown in the report beside the heatmaps."""


REPORT_INSERTION: Replacement = "blur"
"""Baseline of the report's insertion test: the blurred image (an image still near the data,
unlike the all-corners box image), with the top pixels restored."""

REPLACEMENT_TEXT = {"box": "box (opposite corner of [0, 1])", "blur": "blur (Gaussian-blurred copy, σ = 2 px)"}


@renamed_kwargs(eps="fi_eps", eps_scale="fi_eps_scale")
def choose_map(map_name: str | None, unit: str = "pixel", window: int = 1, fi_eps: float | None = None,
               fi_eps_scale: float = 1.0) -> str:
    """The heatmap to draw: ``map_name`` when given, else ``"fi"`` when the FI options ask for
    it (unit element, a window, ε ``fi_eps`` or an ε scale ``fi_eps_scale``), else :data:`DEFAULT_MAP`."""
    wants_fi = unit != "pixel" or window != 1 or fi_eps is not None or fi_eps_scale != 1.0
    if map_name is not None:
        if map_name != "fi" and map_name not in MAPS:
            raise InputError(f"unknown map {map_name!r}", f"use fi or one of {', '.join(MAPS)}")
        if map_name != "fi" and wants_fi:
            raise InputError(f"--unit/--window/--fi-eps/--fi-eps-scale set the FI map, not {map_name}",
                             "pass --map fi with them, or drop them")
        return map_name
    return "fi" if wants_fi else DEFAULT_MAP


@renamed_kwargs(eps="fi_eps", eps_scale="fi_eps_scale")
def heatmaps_for_report(model: nn.Module, x: torch.Tensor, cls: ClassSpec, y: torch.Tensor | None, *,
                        map_name: str | None = None, unit: str = "pixel", window: int = 1,
                        fi_eps: float | None = None, fi_eps_scale: float = 1.0, batch_size: int = 32,
                        k_max: int = 50, seed: int = 0) -> tuple[torch.Tensor, dict, dict]:
    """Heatmaps of images x [N, C, H, W] for the influence report, their description, and a
    deletion test of them on the same images.

    Returns ``maps`` (float64 [N, C, H, W] for FI with unit element, else [N, H, W]), ``info``
    {name, class, unit, window, fi_eps, fi_eps_scale, exact, why; and under their old names eps,
    eps_scale} and ``deletion`` {replacement, k_max, images,
    curves: {map: mean drop of p_c at k = 0 … k_max}, auc: {map: mean drop over k ≥ 1},
    insertion: {the same keys for the insertion test, rise of p_c}} for the drawn map, exact pixel
    FI and the random control ("box" replacement for deletion, :data:`REPORT_INSERTION` for
    insertion)."""
    from .influence import pixel_fi

    name = choose_map(map_name, unit, window, fi_eps, fi_eps_scale)
    if name == "fi":
        heat = pixel_fi(model, x, cls, y=y, unit="element" if unit == "element" else "pixel", window=window,
                        fi_eps=fi_eps, fi_eps_scale=fi_eps_scale,
                        batch_size=batch_size).cpu()
        label = (f"exact FI ({unit}, window {window})" if fi_eps is None
                 else f"ε-FI (ε={fi_eps:g}, {unit}, window {window})")
        info = {"name": label, "class": cls, "unit": unit, "window": window,
                "fi_eps": fi_eps, "fi_eps_scale": fi_eps_scale,
                "exact": fi_eps is None,
                "why": "exact FI was asked for (--map fi, --unit element, --window or --fi-eps)"}
        loc = heat.sum(1) if heat.dim() == 4 else heat
    else:
        got, _ = attribution_maps(model, x, [name], cls, y=y, batch_size=batch_size, seed=seed)
        heat = loc = got[name].cpu()
        info = {"name": name, "class": cls, "unit": "pixel", "window": 1,
                "fi_eps": FI_EPS if name == "eps-fi" else None,
                "exact": name.endswith("fi") and name != "eps-fi",
                "why": DEFAULT_MAP_REASON if map_name is None else f"--map {name} was asked for"}
    # the same values under their old keys, for readers of summary.json written before fi_eps
    info.update({old: info[new] for old, new in (("eps", "fi_eps"), ("eps_scale", "fi_eps_scale")) if new in info})
    others = [k for k in ("pixel-fi", "random") if k != name]
    ref, c = attribution_maps(model, x, others, cls, y=y, batch_size=batch_size, seed=seed)
    k = min(k_max, x.shape[-1] * x.shape[-2])
    curves, auc, in_curves, in_auc = {}, {}, {}, {}
    for label, m in [(str(info["name"]), loc), *[(o if o != "pixel-fi" else "exact pixel FI", ref[o]) for o in others]]:
        drop, _, _ = deletion_curves(model, x, c, m.to(x.device), "box", k)
        curves[label] = drop.mean(0).tolist()
        auc[label] = float(deletion_auc(drop).mean())
        rise, _, _, _ = insertion_curves(model, x, c, m.to(x.device), REPORT_INSERTION, k)
        in_curves[label] = rise.mean(0).tolist()
        in_auc[label] = float(insertion_auc(rise).mean())
    deletion = {"replacement": "box (opposite corner of [0, 1])", "k_max": k, "images": int(x.shape[0]),
                "curves": curves, "auc": auc,
                "insertion": {"replacement": REPLACEMENT_TEXT[REPORT_INSERTION], "k_max": k, "images": int(x.shape[0]),
                              "curves": in_curves, "auc": in_auc}}
    return heat, info, deletion
