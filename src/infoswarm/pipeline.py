"""Whole runs behind a command, as library calls: :func:`attack_images` selects images and
attacks them into a run folder (what ``infoswarm attack`` does once its model and data are loaded
and checked), described by a typed :class:`AttackRequest`; :func:`reattack` attacks a saved run's
images afresh with its own attack and baselines (``infoswarm evaluate``); :func:`influence_scan`
ranks images by their FI and maps the most vulnerable (``infoswarm influence``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch

from . import data, distributed, runs
from .artifacts import AttackRun, AttackSpec, InfluenceRun
from .errors import InputError
from .selection import Selection, select_images


@dataclass(frozen=True)
class AttackRequest:
    """One attack run: the attack (``spec``) on the images ``select`` chooses (``"fi"``: correct
    images with image FI >= ``tau``; ``"all"``: every correct image), in checkpointed chunks of
    ``chunk`` images, into the run folder ``out`` (``overwrite``: replace a finished one).

    ``gallery``: images in gallery.png; ``keep_checkpoints``: keep checkpoints/chunk-*.pt after
    the run; ``settings``: what the results depend on (a rerun in the same folder with other
    settings is refused); ``inputs``: files and folders read (never written over); ``dataset``,
    ``split``, ``model``: named in summary.json, with ``flags`` (the options as given and filled,
    recorded as its ``settings``)."""

    spec: AttackSpec
    out: str
    select: str = "fi"
    tau: float = 0.01
    chunk: int = 64
    gallery: int = 12
    keep_checkpoints: bool = False
    overwrite: bool = False
    settings: Mapping[str, Any] = field(default_factory=dict)
    inputs: tuple[str, ...] = ()
    dataset: str = ""
    split: str = "test"
    model: str = ""
    flags: Mapping[str, Any] = field(default_factory=dict)

    def open_run(self, create: bool = True) -> runs.ResumableRun:
        """The run folder (:class:`infoswarm.runs.ResumableRun`; ``create=False`` only looks)."""
        return runs.ResumableRun(self.out, "attack", dict(self.settings), overwrite=self.overwrite, create=create,
                                 inputs=list(self.inputs))


@dataclass
class AttackOutcome:
    """What :func:`attack_images` did: the ``record`` it saved (summary, arrays, rows), the
    ``selection`` of images and the number of ``candidates`` it chose from."""

    record: AttackRun
    selection: Selection
    candidates: int


def attack_images(request: AttackRequest, attack: Any, model: torch.nn.Module, x8: torch.Tensor, y: torch.Tensor,
                  *, target: Any, device: torch.device, ctx: Any = None, progress: bool = False,
                  class_names: tuple[str, ...] = (), on_start: Callable[[runs.ResumableRun], None] | None = None,
                  gallery: Callable[[Path, torch.Tensor, torch.Tensor, list[dict[str, str]]], None] | None = None,
                  run_check: runs.ResumableRun | None = None) -> AttackOutcome | None:
    """Select images of ``x8`` [N, C, H, W] (uint8 0..255 or float [0, 1]) with labels ``y`` [N]
    by ``request.select`` and run ``attack`` (built from ``request.spec`` with the parsed
    ``target``) on them in chunks, checkpointed in ``request.out``; then write adversarial.npz,
    results.csv, gallery.png (``gallery(path, x, x_adv, captions)`` draws it, with
    ``class_names`` in the captions) and summary.json, and remove the chunk checkpoints unless
    ``request.keep_checkpoints``.

    Under torchrun (``ctx`` active) the selected images are split over the processes and only
    rank 0 writes and gets the outcome (None elsewhere); ``run_check`` is the folder looked at
    before (used by the other ranks). ``on_start(run)`` is called on every rank once the work
    starts (to print held notes, or that a run continues from its checkpoints). Refuses, before any attack, a
    selection with no image."""
    from .attacks.mfipso import confusion_counts
    from .runner import run_attack

    t0 = time.perf_counter()
    selection = select_images(model, x8, y, rule=request.select, tau=request.tau, target=target,
                              batch_size=500, device=device, progress=progress)
    rank = selection.ranking
    idx = distributed.broadcast_object(selection.indices, ctx)   # rank 0's list everywhere
    if idx.numel() == 0:
        raise InputError(f"no image passes the selection (correct and image FI >= {request.tau:g}) "
                         f"among {len(y)}", "raise `limit` or lower `tau`")
    if target == "confusion":
        attack.confusion = confusion_counts(model, x8, y)
    x = data.to_float(x8[idx]).to(device)
    yy = y[idx].to(device)
    distributed.barrier(ctx)
    main = distributed.is_main(ctx)
    run = request.open_run() if main or run_check is None else run_check
    distributed.barrier(ctx)
    if on_start is not None:
        on_start(run)
    res = run_attack(attack, x, yy, chunk=request.chunk, run=run, ctx=ctx, progress=progress)
    if res is None:  # not rank 0: rank 0 merges and writes
        return None
    res = replace(res, seconds=time.perf_counter() - t0)
    probs_before = torch.softmax(rank.logits[idx].double(), 1)
    with torch.no_grad():
        probs_after = torch.softmax(model(res.x_adv).double(), 1).cpu()
    summary = {"command": "attack", "attack": request.spec.name, "attack_repr": repr(attack),
               "dataset": request.dataset, "split": request.split, "model": request.model,
               "candidates": len(y), "selected": int(idx.numel()), "selection_rule": request.select,
               "tau": request.tau, "settings": dict(request.flags)}
    record = AttackRun.from_result(res, x, yy, idx, probs_before, probs_after, summary, request.spec)
    names = tuple(class_names) + tuple(str(i) for i in range(len(class_names), probs_before.shape[1]))
    order = sorted(range(len(idx)), key=lambda j: (not bool(res.success[j]), j))[: request.gallery]
    captions = [{"before": f"#{int(idx[j])} {names[int(yy[j])]} p={float(probs_before[j, yy[j]]):.2f}",
                 "after": f"-> {names[int(res.pred[j])]} p={float(probs_after[j, res.pred[j]]):.2f}"
                          + ("" if res.success[j] else " (failed)"),
                 "diff": f"L0 {int(res.pixel_l0[j])} px, Linf {float(res.linf[j]):.3f}"} for j in order]
    draw = None if gallery is None else (lambda: runs.atomic_write(
        run.path / "gallery.png", lambda p: gallery(p, x[order].cpu(), res.x_adv[order].cpu(), captions)))
    record.save(run.path, before_summary=draw)
    if not request.keep_checkpoints:
        import shutil

        shutil.rmtree(run.path / "checkpoints", ignore_errors=True)   # the result holds everything they did
    return AttackOutcome(record=record, selection=selection, candidates=len(y))


def reattack(run: AttackRun, model: torch.nn.Module, baselines: Sequence[str], *, num_classes: int,
             device: torch.device, seed: int, where: str, probe: int = 64) -> tuple[list[dict[str, Any]], int]:
    """A fresh attack on a saved attack run's original images (``run.arrays["x"]`` [M, C, H, W]
    in [0, 1], labels ``y``), moved to ``device``, on ``model`` (``num_classes`` outputs): the run's own attack,
    rebuilt from its spec, then each of ``baselines`` (registry names; the run's attack itself is
    skipped) at the same query budget with the run's pixels (its mean pixel count for the element-FI
    rule) and its eps where they share its norm. Every attack is built, and its model check run on
    the first ``probe`` images, before any runs. ``where`` names the run in messages. Returns one
    row per attack (attack, repr, pixels for L0 attacks, success_rate, queries_mean, seconds) and
    the query budget."""
    from .attacks import registry
    from .runner import run_attack
    from .selection import parse_target

    spec, arrays, info = run.spec, run.arrays, run.summary
    x = arrays["x"].float().to(device)
    y = arrays["y"].long().to(device)
    target: Any = parse_target(spec.target, num_classes, name=f"{where}/summary.json settings.target")
    if target == "confusion":
        target_arr = arrays.get("target")
        target = target_arr.long().to(device) if target_arr is not None else "second"
    own = spec.build(model, target=target, seed=seed)
    budget = own.query_budget() or spec.query_budget()
    # the paper's rule (pixels None): baselines get the run's mean pixel count
    base_pixels = spec.pixels if spec.pixels is not None else max(1, round(float(info.get("pixel_l0_mean") or 10)))
    # a baseline gets the run's shared options it uses; the others are its own defaults
    specs = [replace(spec, name=b, pixels=base_pixels, options={},
                     eps=spec.eps if registry.attack_class(b).norm == registry.attack_class(spec.name).norm else None,
                     steps=None) for b in baselines if b != spec.name]
    attacks = [(spec.name, own)] + [(sp.name, sp.build(model, target=target, seed=seed, budget=budget))
                                    for sp in specs]  # all built before any runs
    for _, attack in attacks:
        attack.check_model(x[:probe])
    rows = []
    for name, attack in attacks:  # in chunks of 64, as `infoswarm attack` ran them; a log line per chunk
        res = run_attack(attack, x, y, label=f"evaluate {name}")
        assert res is not None  # one process
        rows.append({"attack": name, "repr": repr(attack),
                     "pixels": int(res.pixel_l0.float().mean().round())
                     if registry.attack_class(name).norm == "l0" else None,
                     "success_rate": float(res.success.float().mean()),
                     "queries_mean": float(res.queries.float().mean()), "seconds": float(res.seconds)})
    return rows, budget


@dataclass(frozen=True)
class InfluenceRequest:
    """An influence scan: image FI of every image, and pixel maps of the ``top`` most vulnerable
    correctly classified ones. ``tau``: the vulnerable threshold (image FI >= tau); ``map``,
    ``unit``, ``window``, ``fi_eps``, ``fi_eps_scale`` and ``map_class``: the maps
    (:func:`infoswarm.maps.heatmaps_for_report`); ``batch_size``: images per model call;
    ``dataset``, ``split``, ``model``: named in the summary."""

    top: int = 20
    tau: float = 0.01
    map: str | None = None
    unit: str = "pixel"
    window: int = 1
    fi_eps: float | None = None
    fi_eps_scale: float = 1.0
    map_class: Literal["pred", "true", "second"] = "pred"
    batch_size: int = 500
    dataset: str = ""
    split: str = "test"
    model: str = ""


@dataclass
class InfluenceScan:
    """What :func:`influence_scan` found: the ``record`` (summary.json with its ``top`` rows, whose
    ``heatmap`` names the figure file of each map, and images.csv rows), the ``top`` images
    ``x`` [T, C, H, W] in [0, 1] with their ``maps`` [T, H, W] (or per element) and the class of
    each map ``map_class`` [T]; ``deletion``: the deletion test's curves (or None)."""

    record: InfluenceRun
    x: torch.Tensor
    maps: torch.Tensor
    map_class: torch.Tensor
    deletion: dict[str, Any] | None


def influence_scan(request: InfluenceRequest, model: torch.nn.Module, x8: torch.Tensor, y: torch.Tensor, *,
                   device: torch.device, progress: bool = False) -> InfluenceScan:
    """Image FI (of the predicted class) of every image of ``x8`` [N, C, H, W] (uint8 0..255) with
    labels ``y`` [N], the vulnerable count, and pixel maps of the ``request.top`` correctly
    classified images of largest FI. Refuses (:class:`InputError`) a set with no correctly
    classified image. Writes nothing: the caller saves ``record`` and draws the maps."""
    from . import __version__, influence
    from .artifacts import HEATMAPS
    from .maps import heatmaps_for_report

    t0 = time.perf_counter()
    bs = request.batch_size
    rank = influence.rank_images(model, x8, "pred", batch_size=bs, progress=progress, device=device)
    fi_true = influence.image_fi_from_logits(rank.logits, y)
    t_rank = time.perf_counter() - t0
    probs = torch.softmax(rank.logits.double(), 1)
    pred = rank.c
    correct = pred == y
    top = rank.order[correct[rank.order]][: request.top]     # the most vulnerable: correctly classified images only
    if top.numel() == 0:
        raise InputError(f"no image of the {len(y)} is classified correctly, so none is vulnerable",
                         "check that `model` is made for `dataset`")
    t0 = time.perf_counter()
    xt = data.to_float(x8[top]).to(device)
    maps, map_info, deletion = heatmaps_for_report(model, xt, request.map_class, y[top].to(device),
                                                   map_name=request.map, unit=request.unit, window=request.window,
                                                   fi_eps=request.fi_eps, fi_eps_scale=request.fi_eps_scale,
                                                   batch_size=min(bs, 64))
    t_maps = time.perf_counter() - t0
    map_cls = influence.resolve_class(rank.logits[top], request.map_class, y[top])
    vulnerable = correct & (rank.fi >= request.tau)
    rows = [{"index": i, "label": int(y[i]), "pred": int(pred[i]), "p_pred": float(probs[i, pred[i]]),
             "image_fi_pred": float(rank.fi[i]), "image_fi_true": float(fi_true[i])}
            for i in range(len(y))]
    top_rows = [{"rank": r + 1, "index": i, "label": int(y[i]), "pred": int(pred[i]),
                 "p_pred": float(probs[i, pred[i]]), "image_fi_pred": float(rank.fi[i]),
                 "map_class": int(map_cls[r]), "map_max": float(maps[r].max()),
                 "heatmap": f"{HEATMAPS}/rank{r + 1:03d}_index{i}.png"} for r, i in enumerate(top.tolist())]
    summary: dict[str, Any] = {
        "command": "influence", "dataset": request.dataset, "split": request.split, "model": request.model,
        "images": len(y), "accuracy": float(correct.float().mean()), "tau": request.tau,
        "vulnerable_correct": int(vulnerable.sum()),
        "vulnerable_rule": "correctly classified and image FI (pred) >= tau, i.e. p_pred <= 1/(1+tau)",
        "image_fi_pred_quantiles": {q: float(torch.quantile(rank.fi, float(q))) for q in ("0.5", "0.9", "0.99")},
        "map": map_info, "deletion": deletion,
        "seconds": {"image_fi": round(t_rank, 3), "pixel_maps": round(t_maps, 3)},
        "top": top_rows, "versions": {"infoswarm": __version__, "torch": torch.__version__},
    }
    return InfluenceScan(record=InfluenceRun(summary=summary, rows=rows), x=xt, maps=maps, map_class=map_cls,
                         deletion=deletion)
