"""FI as an outlier detector (Shu & Zhu, AAAI 2019, Setup 0), against the Jacobian-norm baseline.

Synthetic outliers: the pixel-wise maximum of a training image and a *shifted* image of another
class, labelled as the first image (:func:`make_outliers`). A copy of the model is fine-tuned on
clean training images plus the outliers (:func:`finetune`); then every image of that training
set is scored (:func:`score_images`) by

* ``fi``: the image FI of its given label, (1 − p_y)/p_y (closed form, one forward pass);
* ``jacobian``: the Jacobian norm ‖∇ₓ log p_y‖₂ in [0, 1] pixel units (one backward pass).

A good score ranks the outliers first; :func:`roc_curve`, :func:`pr_curve`, :func:`roc_auc`
and :func:`average_precision` measure that (no scikit-learn needed).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace

import torch
from torch import nn

from .checks import check_images, unit_float
from .errors import InputError
from .zoo import Recipe


@dataclass
class Outliers:
    """Synthetic outliers: ``x`` uint8 [M, C, H, W], ``y`` [M] (the base image's label),
    ``base`` and ``partner`` [M] (indices into the source set), ``shift`` [M, 2] (dy, dx)."""

    x: torch.Tensor
    y: torch.Tensor
    base: torch.Tensor
    partner: torch.Tensor
    shift: torch.Tensor


def shift_images(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Images [M, C, H, W] moved by (dy[i], dx[i]) pixels (down, right; integers), zeros fill
    what comes in from outside (no wrap-around)."""
    m, _, h, w = x.shape
    rows = torch.arange(h).view(1, h) - dy.view(m, 1)      # source row of each output row
    cols = torch.arange(w).view(1, w) - dx.view(m, 1)
    ok = ((rows >= 0) & (rows < h)).view(m, 1, h, 1) & ((cols >= 0) & (cols < w)).view(m, 1, 1, w)
    r = rows.clamp(0, h - 1).view(m, 1, h, 1).expand(-1, x.shape[1], -1, w)
    c = cols.clamp(0, w - 1).view(m, 1, 1, w).expand(-1, x.shape[1], h, -1)
    out = x.gather(2, r).gather(3, c)
    return torch.where(ok, out, torch.zeros_like(out))


def make_outliers(x: torch.Tensor, y: torch.Tensor, n: int, seed: int = 0,
                  min_shift: int = 4, max_shift: int = 8) -> Outliers:
    """``n`` outliers from images x [N, C, H, W] (uint8 or float) with labels y [N]: for a
    random base image i and a random partner j of another class, the pixel-wise max of x_i and
    x_j shifted by a random (dy, dx) with min_shift <= max(|dy|, |dx|) <= max_shift, labelled y_i."""
    check_shapes(x, y)
    if n < 1:
        raise InputError(f"the number of outliers must be positive, got {n}", "pass 1 or more")
    if not 0 <= min_shift <= max_shift:
        raise InputError(f"need 0 <= min_shift <= max_shift, got {min_shift}, {max_shift}", "e.g. 4 and 8")
    if int(torch.unique(y).numel()) < 2:
        raise InputError("outliers need images of at least two classes", "use a dataset with several classes")
    gen = torch.Generator().manual_seed(seed)
    base = torch.randint(len(x), (n,), generator=gen)
    partner = torch.empty(n, dtype=torch.long)
    todo = torch.ones(n, dtype=torch.bool)
    while bool(todo.any()):  # redraw partners of the same class
        draw = torch.randint(len(x), (int(todo.sum()),), generator=gen)
        partner[todo] = draw
        todo = y[partner] == y[base]
    shift = torch.empty(n, 2, dtype=torch.long)
    todo = torch.ones(n, dtype=torch.bool)
    while bool(todo.any()):
        shift[todo] = torch.randint(-max_shift, max_shift + 1, (int(todo.sum()), 2), generator=gen)
        todo = shift.abs().amax(1) < min_shift
    moved = shift_images(x[partner], shift[:, 0], shift[:, 1])
    return Outliers(torch.maximum(x[base], moved), y[base].clone(), base, partner, shift)


def check_shapes(x: torch.Tensor, y: torch.Tensor) -> None:
    """Images [N, C, H, W] and labels [N] that fit together."""
    if x.dim() != 4 or y.dim() != 1 or len(x) != len(y) or len(x) == 0:
        raise InputError(f"need images [N, C, H, W] and labels [N], got {tuple(x.shape)} and {tuple(y.shape)}",
                         "pass a dataset loaded with infoswarm.data.load")


FINETUNE = Recipe(epochs=2, lr=0.01, batch_size=128, weight_decay=5e-4)
"""Default fine-tuning schedule: 2 epochs of SGD (Nesterov, momentum 0.9), cosine from 0.01."""


def finetune(model: nn.Module, x: torch.Tensor, y: torch.Tensor, recipe: Recipe = FINETUNE,
             seed: int = 0) -> tuple[nn.Module, list[dict]]:
    """A fine-tuned copy of ``model`` (eval mode) trained on x [N, C, H, W] (uint8 or [0, 1])
    with labels y [N]; the original is left untouched. Returns (copy, per-epoch history)."""
    from .training import train

    check_shapes(x, y)
    if isinstance(model, torch.jit.ScriptModule):
        raise InputError("fine-tuning needs a Python nn.Module, not TorchScript",
                         "load the model as file.py:Class with --weights")
    net = copy.deepcopy(model)
    history = train(net, x, y, replace(recipe, augment="none"), seed=seed)
    return net.eval(), history


def score_images(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 batch_size: int = 500) -> dict[str, torch.Tensor]:
    """Outlier scores of images x [N, C, H, W] (uint8 or float in [0, 1]) with labels y [N]:
    {"fi": image FI of y, float64 [N]; "jacobian": ‖∇ₓ log p_y‖₂, float64 [N];
    "p": p_y, float64 [N]}. Larger = more suspicious."""
    check_shapes(x, y)
    dev = next((p.device for p in model.parameters()), torch.device("cpu"))
    fi, jn, pr = [], [], []
    for i in range(0, len(x), batch_size):
        xb = x[i: i + batch_size].to(dev)
        xb = unit_float(xb)
        check_images(xb)
        yb = y[i: i + batch_size].to(dev)
        xb = xb.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model(xb)
            logp = torch.log_softmax(logits, 1)
            (g,) = torch.autograd.grad(logp.gather(1, yb.view(-1, 1)).sum(), xb)
        z = logits.detach().double().clone()
        idx = torch.arange(len(yb), device=dev)
        zc = z[idx, yb]
        z[idx, yb] = float("-inf")
        fi.append(torch.exp(torch.logsumexp(z, 1) - zc).cpu())
        jn.append(g.double().flatten(1).norm(dim=1).cpu())
        pr.append(logp.detach().double()[idx, yb].exp().cpu())
    return {"fi": torch.cat(fi), "jacobian": torch.cat(jn), "p": torch.cat(pr)}


# --------------------------------------------------------------------------------------------
# ranking quality


def _check_scores(score: torch.Tensor, positive: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    s = torch.as_tensor(score).double().flatten()
    pos = torch.as_tensor(positive).bool().flatten()
    if s.numel() != pos.numel() or s.numel() == 0:
        raise InputError("scores and labels must be non-empty and of equal length", "pass one score per image")
    if not bool(torch.isfinite(s).all()):
        raise InputError("scores must be finite", "drop or fix NaN/inf scores")
    if not bool(pos.any()) or bool(pos.all()):
        raise InputError("need both outliers and clean images to rank", "include some of each")
    return s, pos


def roc_curve(score: torch.Tensor, positive: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """ROC points (false-positive rate, true-positive rate), float64, from (0, 0) to (1, 1),
    one point per distinct score threshold (ties move together)."""
    s, pos = _check_scores(score, positive)
    order = torch.argsort(s, descending=True, stable=True)
    s, pos = s[order], pos[order].double()
    tp, fp = torch.cumsum(pos, 0), torch.cumsum(1 - pos, 0)
    last = torch.ones_like(s, dtype=torch.bool)
    last[:-1] = s[1:] != s[:-1]                           # end of each tie group
    zero = torch.zeros(1, dtype=torch.float64)
    return torch.cat([zero, fp[last] / fp[-1]]), torch.cat([zero, tp[last] / tp[-1]])


def roc_auc(score: torch.Tensor, positive: torch.Tensor) -> float:
    """Area under the ROC curve = P(score of a random outlier > score of a random clean
    image), ties counted as one half (Mann–Whitney)."""
    s, pos = _check_scores(score, positive)
    ranks = _average_ranks(s)
    n1, n0 = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def roc_auc_interval(auc: float, n_pos: int, n_neg: int, z: float = 1.959964) -> tuple[float, float]:
    """Approximate 95 % interval of a ROC AUC from its standard error (Hanley & McNeil 1982),
    clipped to [0, 1]; n_pos outliers and n_neg clean images."""
    if n_pos < 1 or n_neg < 1:
        raise InputError("need both outliers and clean images", "include some of each")
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)
    half = z * max(var, 0.0) ** 0.5
    return max(0.0, auc - half), min(1.0, auc + half)


def auc_difference(score_a: torch.Tensor, score_b: torch.Tensor, positive: torch.Tensor,
                   n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """ROC AUC of ``score_a`` minus that of ``score_b`` on the same images, with a paired
    stratified bootstrap 95 % interval (outliers and clean images resampled separately, the
    same draw for both scores): (difference, low, high)."""
    a, pos = _check_scores(score_a, positive)
    b, _ = _check_scores(score_b, positive)
    if n_boot < 1:
        raise InputError(f"n_boot must be positive, got {n_boot}", "pass e.g. 1000")
    diff = roc_auc(a, pos) - roc_auc(b, pos)
    gen = torch.Generator().manual_seed(seed)
    ip, ineg = pos.nonzero().flatten(), (~pos).nonzero().flatten()
    boots = []
    for _ in range(n_boot):
        idx = torch.cat([ip[torch.randint(len(ip), (len(ip),), generator=gen)],
                         ineg[torch.randint(len(ineg), (len(ineg),), generator=gen)]])
        boots.append(roc_auc(a[idx], pos[idx]) - roc_auc(b[idx], pos[idx]))
    q = torch.quantile(torch.tensor(boots, dtype=torch.float64), torch.tensor([0.025, 0.975], dtype=torch.float64))
    return diff, float(q[0]), float(q[1])


def _average_ranks(s: torch.Tensor) -> torch.Tensor:
    """1-based ranks of s (ascending), ties given their average rank."""
    order = torch.argsort(s, stable=True)
    sorted_s = s[order]
    _, inverse, counts = torch.unique_consecutive(sorted_s, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).double()
    avg = ends - (counts.double() - 1) / 2
    ranks = torch.empty_like(s)
    ranks[order] = avg[inverse]
    return ranks


def pr_curve(score: torch.Tensor, positive: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Precision-recall points (recall, precision), float64, one per distinct threshold, from
    the highest threshold down."""
    s, pos = _check_scores(score, positive)
    order = torch.argsort(s, descending=True, stable=True)
    s, pos = s[order], pos[order].double()
    tp = torch.cumsum(pos, 0)
    seen = torch.arange(1, len(s) + 1, dtype=torch.float64)
    last = torch.ones_like(s, dtype=torch.bool)
    last[:-1] = s[1:] != s[:-1]
    return tp[last] / tp[-1], tp[last] / seen[last]


def average_precision(score: torch.Tensor, positive: torch.Tensor) -> float:
    """Area under the precision-recall curve as average precision: Σ (R_i − R_{i−1}) P_i over
    distinct thresholds (a random score gets about the outlier share)."""
    recall, precision = pr_curve(score, positive)
    prev = torch.cat([torch.zeros(1, dtype=torch.float64), recall[:-1]])
    return float(((recall - prev) * precision).sum())


SCORE_NAMES = {"fi": "image FI of the label", "jacobian": "Jacobian norm ||d log p_y/dx||"}
"""The two outlier scores compared, and how figures and lines name them."""


@dataclass
class OutlierStudy:
    """The outlier-detection experiment of :func:`outlier_study`: ``summary`` (with each score's
    ROC AUC and its interval, average precision, precision at the number of outliers and its
    ``top`` images), ``rows`` (one per image: index, outlier, label, p_label, image_fi,
    jacobian_norm), ``curves`` (ROC and precision-recall points per score), the images ``x``
    (uint8 [N + M, C, H, W]: the clean ones, then the outliers) with labels ``y`` and the mask
    ``is_outlier``, the ``outliers`` made, the fine-tuned ``model``, ``top`` (per score, the
    indices of the highest-scored images) and ``tune_seconds``."""

    summary: dict
    rows: list[dict]
    curves: dict
    x: torch.Tensor
    y: torch.Tensor
    is_outlier: torch.Tensor
    outliers: Outliers
    model: nn.Module
    top: dict[str, torch.Tensor]
    tune_seconds: float


def outlier_study(model: nn.Module, x8: torch.Tensor, y: torch.Tensor, n: int, *, device: torch.device,
                  seed: int = 0, min_shift: int = 4, max_shift: int = 8, epochs: int = FINETUNE.epochs,
                  lr: float = FINETUNE.lr, batch_size: int | None = None, top: int = 16,
                  names: tuple[str, str] = ("", "")) -> OutlierStudy:
    """AAAI'19 Setup 0 on clean training images ``x8`` [N, C, H, W] (uint8) with labels ``y`` [N]:
    ``n`` synthetic outliers (:func:`make_outliers`, shifts in [``min_shift``, ``max_shift``]
    pixels), ``model`` fine-tuned on clean + outliers (``epochs``, ``lr``, ``batch_size``, else
    :data:`FINETUNE`'s), then every image scored by image FI of its label and by the Jacobian
    norm, each score judged as an outlier detector (ROC AUC with its interval, average
    precision, precision among the top ``n``, the paired bootstrap difference of the AUCs) and
    its ``top`` highest-scored images listed. ``names`` = (model, dataset) for the summary."""
    import time

    from .data import to_float

    out = make_outliers(x8, y, n, seed=seed, min_shift=min_shift, max_shift=max_shift)
    xs = torch.cat([x8, out.x])
    ys = torch.cat([y, out.y])
    is_out = torch.cat([torch.zeros(len(x8), dtype=torch.bool), torch.ones(len(out.x), dtype=torch.bool)])
    recipe = replace(FINETUNE, epochs=epochs, lr=lr, batch_size=batch_size or FINETUNE.batch_size)
    t0 = time.perf_counter()
    tuned, history = finetune(model, xs, ys, recipe, seed=seed)
    t_tune = time.perf_counter() - t0
    t0 = time.perf_counter()
    sc = score_images(tuned, xs, ys)
    t_score = time.perf_counter() - t0
    result: dict = {}
    curves: dict = {}
    tops: dict[str, torch.Tensor] = {}
    for key in SCORE_NAMES:
        fpr, tpr = roc_curve(sc[key], is_out)
        rec, prec = pr_curve(sc[key], is_out)
        auc = roc_auc(sc[key], is_out)
        ap = average_precision(sc[key], is_out)
        top_n = int(is_out.sum())
        order = torch.argsort(sc[key], descending=True, stable=True)
        hits = int(is_out[order[:top_n]].sum())
        tops[key] = order[:top]
        result[key] = {"roc_auc": auc, "roc_auc_ci95": roc_auc_interval(auc, top_n, len(xs) - top_n),
                       "average_precision": ap, "precision_at_n_outliers": hits / top_n,
                       "top": [{"index": int(i), "outlier": bool(is_out[i])} for i in tops[key].tolist()]}
        curves[key] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "recall": rec.tolist(), "precision": prec.tolist()}
    d, d_lo, d_hi = auc_difference(sc["fi"], sc["jacobian"], is_out, n_boot=500, seed=seed)
    with torch.no_grad():
        acc_before = float((model(to_float(x8[:2000]).to(device)).argmax(1).cpu() == y[:2000]).float().mean())
        acc_after = float((tuned(to_float(x8[:2000]).to(device)).argmax(1).cpu() == y[:2000]).float().mean())
    summary: dict = {
        "command": "outliers", "dataset": names[1], "model": names[0], "clean_images": len(x8),
        "outliers": len(out.x), "outlier_share": len(out.x) / len(xs), "shift": [min_shift, max_shift],
        "finetune": {"epochs": recipe.epochs, "lr": recipe.lr, "batch_size": recipe.batch_size,
                     "schedule": "SGD Nesterov momentum 0.9, cosine to 0, weight decay 5e-4, no augmentation",
                     "seconds": round(t_tune, 1), "history": history},
        "train_accuracy_first_2000_clean": {"before": acc_before, "after": acc_after},
        "scores": result, "seconds_scoring": round(t_score, 1),
        "roc_auc_fi_minus_jacobian": {"difference": d, "ci95": [d_lo, d_hi],
                                      "interval": "paired stratified bootstrap, 500 resamples"},
        "measure": "outliers are the positives; ROC AUC = P(outlier scores above a clean image); "
                   "average precision = area under the precision-recall curve",
    }
    rows = [{"index": i, "outlier": int(is_out[i]), "label": int(ys[i]), "p_label": float(sc["p"][i]),
             "image_fi": float(sc["fi"][i]), "jacobian_norm": float(sc["jacobian"][i])} for i in range(len(xs))]
    return OutlierStudy(summary=summary, rows=rows, curves=curves, x=xs, y=ys, is_outlier=is_out, outliers=out,
                        model=tuned, top=tops, tune_seconds=t_tune)
