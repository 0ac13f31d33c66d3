"""Typed records of attack runs: what ``infoswarm attack`` writes and ``evaluate``,
``universality`` and the report read back.

An attack run folder holds

* ``summary.json``: the run's numbers (:meth:`AttackResult.summary` keys), ``command`` "attack",
  ``dataset``, ``settings`` (the command's options, as before) and ``attack_spec`` (an
  :class:`AttackSpec`: everything needed to rebuild the attack);
* ``adversarial.npz``: the :class:`~infoswarm.attacks.AttackResult` as its ``save`` writes it
  (``x_adv`` [M, C, H, W] float32 in [0, 1], ``y``, ``target``, ``pred``, ``queries`` … [M],
  ``indices`` [M, k] int64 perturbed pixel locations (−1 padding), ``seconds``), so
  ``AttackResult.load(folder / "adversarial.npz")`` reads it, plus the clean ``x`` [M, C, H, W]
  and ``dataset_index`` [M] int64 (positions in the scanned split);
* ``results.csv``: one row per attacked image (:data:`RESULT_COLUMNS`).

Only this module knows those keys; readers get one-line :class:`InputError` messages for files
that were damaged or edited by hand.
"""

from __future__ import annotations

import json
import math
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import InputError

NPZ = "adversarial.npz"
SUMMARY = "summary.json"
RESULTS = "results.csv"
SPEC_KEY = "attack_spec"

NPZ_REQUIRED = ("x", "x_adv", "y", "success")
RESULT_COLUMNS = ("index", "label", "target", "success", "pred_adv", "p_true_before", "p_true_after",
                  "target_prob", "linf", "pixel_l0", "element_l0", "queries", "misclassified", "grad_evals")

_REDO = "pass a folder written by `infoswarm attack`, or re-run the attack"

_TYPES: dict[str, tuple[type, ...]] = {
    "attack": (str,), "name": (str,), "eps": (int, float), "particles": (int,), "iterations": (int,),
    "w": (int, float), "c1": (int, float), "c2": (int, float), "restart_iterations": (int,),
    "pixel_rule": (str,), "bounds": (str,), "no_restart": (bool,), "restart": (bool,),
    "pixels": (int, type(None)), "fi_threshold": (int, float, type(None)), "budget": (int, type(None)),
    "steps": (int, type(None)), "target": (str, int, type(None)), "min_prob": (int, float, type(None)),
    "max_prob": (int, float, type(None)), "fi_eps_scale": (int, float), "confusion_min": (int,),
    "batch_size": (int,), "prior": (str,), "loss": (str,), "refine": (bool,), "seed": (int,),
}
"""The JSON types each attack setting may have (settings of other names are not checked)."""

_AT_LEAST_ONE = ("particles", "budget", "steps", "pixels", "confusion_min", "batch_size")
_AT_LEAST_ZERO = ("iterations", "restart_iterations", "seed")
SHARED = ("pixels", "eps", "target", "min_prob", "max_prob", "seed", "budget", "steps")
"""The shared options of :func:`infoswarm.attacks.registry.build`: fields of :class:`AttackSpec`."""


def check_settings(s: Mapping[str, Any], where: str) -> None:
    """Every known key of ``s`` has the type (and sign) :class:`AttackSpec` needs; ``where``
    names the file in the one-line error."""
    from .attacks import registry

    for key, types in _TYPES.items():
        if key not in s:
            continue
        v = s[key]
        ok = isinstance(v, types) and not (isinstance(v, bool) and bool not in types)
        if ok and isinstance(v, float) and not math.isfinite(v):
            ok = False
        if ok and isinstance(v, int) and not isinstance(v, bool) and (
                (key in _AT_LEAST_ONE and v < 1) or (key in _AT_LEAST_ZERO and v < 0)):
            ok = False
        if not ok:
            raise InputError(f"{where} has an invalid settings.{key} ({v!r})", _REDO)
    name = s.get("name", s.get("attack"))
    if name not in registry.names():
        raise InputError(f"{where} names an unknown attack {name!r}", _REDO)
    t = s.get("target", "second")
    if isinstance(t, str) and t.lower() not in ("none", "second", "least-likely", "random", "confusion"):
        try:
            int(t)
        except ValueError:
            raise InputError(f"{where} has an invalid settings.target ({t!r})", _REDO) from None


@dataclass(frozen=True)
class AttackSpec:
    """An attack and the settings that rebuild it with
    :func:`infoswarm.attacks.registry.build`.

    ``pixels``: k locations (None: mfipso's element-FI rule, ``options["fi_threshold"]``); ``eps``:
    L∞ bound in [0, 1] pixel units; ``target``: "none", "second", "least-likely", "random",
    "confusion" or a class index; ``min_prob``/``max_prob``: success bounds on p(target);
    ``seed``; ``budget``: queries per image; ``steps``: gradient steps (``eps``, ``budget`` and
    ``steps`` None: the attack's default, or an option it does not use); ``options``: other
    keyword arguments of the attack's constructor (those given; the constructor's defaults
    fill the rest)."""

    name: str
    pixels: int | None = 10
    eps: float | None = None
    target: str | int | None = "none"
    min_prob: float | None = None
    max_prob: float | None = None
    seed: int = 0
    budget: int | None = None
    steps: int | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def build(self, model: torch.nn.Module, *, target: Any, seed: int | None = None,
              budget: int | None = None) -> Any:
        """The attack on ``model`` aiming at ``target`` (the spec's target parsed with
        :func:`infoswarm.selection.parse_target` for the model's classes, or a tensor of classes);
        ``seed`` and ``budget`` replace the spec's when given."""
        from .attacks import registry

        budget = self.budget if budget is None else budget
        given = {k: v for k, v in (("eps", self.eps), ("budget", budget), ("steps", self.steps)) if v is not None}
        return registry.build(self.name, model, pixels=self.pixels, target=target, min_prob=self.min_prob,
                              max_prob=self.max_prob, seed=self.seed if seed is None else seed,
                              **given, **self.options)

    def query_budget(self) -> int:
        """Model queries per image at most, as the attack counts them
        (:meth:`infoswarm.attacks.base.Attack.query_budget`; ``budget`` or the attack's default
        budget where it has no cap)."""
        from .attacks import registry

        attack = self.build(torch.nn.Identity(), target=None)
        return attack.query_budget() or int(self.budget or registry.defaults(self.name).get("budget") or 1000)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any, where: str) -> AttackSpec:
        """A spec read from JSON, checked (one-line :class:`InputError` naming ``where``)."""
        if not isinstance(d, dict) or not isinstance(d.get("options", {}), dict):
            got = "nothing" if d is None else f"a {type(d).__name__}"
            raise InputError(f"{where} does not hold the attack's settings ({SPEC_KEY} is {got}, not a "
                             "mapping with name, eps and options)", _REDO)
        lacking = [k for k in ("name", "eps") if k not in d]
        unknown = sorted(set(d) - {f for f in cls.__dataclass_fields__})
        if lacking or unknown:
            raise InputError(f"{where} {'lacks' if lacking else 'has unknown'} "
                             f"{SPEC_KEY}.{(lacking or unknown)[0]}", _REDO)
        check_settings({**d.get("options", {}), **{k: v for k, v in d.items() if k != "options"}}, where)
        return cls(**{**d, "options": dict(d.get("options", {}))})


def read_npz(path: str | Path) -> dict[str, torch.Tensor]:
    """The arrays of an ``adversarial.npz`` (at least :data:`NPZ_REQUIRED`) as tensors."""
    import numpy as np

    if Path(path).is_file() and not zipfile.is_zipfile(path):  # np.load would try it as .npy or pickle
        raise InputError(f"cannot read {path} (not an .npz zip archive)",
                         "pass an adversarial.npz written by infoswarm attack")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as e:
        raise InputError(f"cannot read {path} ({str(e)[:80]})",
                         "pass an adversarial.npz written by infoswarm attack") from None
    except Exception as e:  # zipfile.BadZipFile and friends
        raise InputError(f"cannot read {path} ({type(e).__name__})",
                         "pass an adversarial.npz written by infoswarm attack") from None
    missing = set(NPZ_REQUIRED) - set(arrays)
    if missing:
        raise InputError(f"{path} lacks {', '.join(sorted(missing))}",
                         "pass an adversarial.npz written by infoswarm attack")
    return {k: torch.from_numpy(v) for k, v in arrays.items()}


def write_npz(path: Path, arrays: Mapping[str, torch.Tensor | Any]) -> None:
    """``arrays`` (tensors or numpy arrays) into a compressed .npz at ``path``, atomically."""
    import numpy as np

    from . import runs

    def write(p: Path) -> None:
        with open(p, "wb") as f:
            plain: dict[str, Any] = {k: (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v))
                                     for k, v in arrays.items()}
            np.savez_compressed(f, **plain)

    runs.atomic_write(Path(path), write)


@dataclass
class AttackRun:
    """One ``infoswarm attack`` run: ``summary`` (summary.json), ``arrays`` (adversarial.npz,
    tensors on the CPU) and ``rows`` (results.csv; empty when read back)."""

    summary: dict[str, Any]
    arrays: dict[str, torch.Tensor]
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def dataset(self) -> str:
        return str(self.summary["dataset"])

    @property
    def spec(self) -> AttackSpec:
        """The attack as run (from ``attack_spec``; from ``settings`` for older runs)."""
        return AttackSpec.from_dict(self.summary.get(SPEC_KEY), SUMMARY)

    @staticmethod
    def from_result(res: Any, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor, probs_before: torch.Tensor,
                    probs_after: torch.Tensor, summary: dict[str, Any], spec: AttackSpec) -> AttackRun:
        """The record of an attack on float images ``x`` [M, C, H, W] with labels ``y`` [M]
        (positions ``index`` [M] in the scanned split), from its :class:`AttackResult` ``res``
        and the class probabilities [M, K] before and after; ``summary`` gets ``res.summary()``
        and the spec added."""
        yc = y.cpu()
        rows = [{"index": int(index[j]), "label": int(yc[j]), "target": int(res.target[j]),
                 "success": int(res.success[j]), "pred_adv": int(res.pred[j]),
                 "p_true_before": float(probs_before[j, yc[j]]), "p_true_after": float(probs_after[j, yc[j]]),
                 "target_prob": float(res.target_prob[j]), "linf": float(res.linf[j]),
                 "pixel_l0": int(res.pixel_l0[j]), "element_l0": int(res.element_l0[j]),
                 "queries": int(res.queries[j]), "misclassified": int(res.pred[j] != yc[j]),
                 "grad_evals": int(res.grad_evals[j])} for j in range(len(index))]
        from .attacks.result import ARRAYS

        arrays = {name: getattr(res, name).detach().cpu() for name in ARRAYS}
        arrays.update(indices=torch.from_numpy(res.index_array()), x=x.cpu(), dataset_index=index.cpu(),
                      seconds=torch.tensor(float(res.seconds), dtype=torch.float64))
        return AttackRun(summary={**summary, **res.summary(), SPEC_KEY: spec.to_dict()}, arrays=arrays, rows=rows)

    def save(self, folder: str | Path, before_summary: Any = None) -> None:
        """adversarial.npz, results.csv, then (after ``before_summary()``, e.g. a figure)
        summary.json last: a folder with a summary.json is a finished run."""
        from . import runs

        folder = Path(folder)
        write_npz(folder / NPZ, self.arrays)
        if self.rows:
            runs.atomic_write(folder / RESULTS, lambda p: runs.write_csv(p, self.rows, list(RESULT_COLUMNS)))
        if before_summary is not None:
            before_summary()
        runs.atomic_write(folder / SUMMARY, lambda p: runs.write_json(p, self.summary))

    def result(self, folder: str | Path) -> Any:
        """The run's :class:`~infoswarm.attacks.AttackResult`, read from ``folder``'s
        adversarial.npz (the same file ``AttackResult.load`` reads)."""
        from .attacks.result import AttackResult

        return AttackResult.load(Path(folder) / NPZ)

    @classmethod
    def load(cls, folder: str | Path, name: str = "folder") -> AttackRun:
        """A finished attack run, checked: summary.json is an attack run's with a dataset and a
        valid attack spec, and adversarial.npz holds M ≥ 1 images with consistent shapes.
        ``name`` is what errors call the folder (e.g. the flag it came from)."""
        folder = Path(folder)
        info = _read_summary(folder, "attack", name)
        where = f"{folder}/summary.json"
        AttackSpec.from_dict(info.get(SPEC_KEY), where)
        if not isinstance(info.get("dataset"), str):
            raise InputError(f"{where} lacks dataset of the attack run", _REDO)
        arrays = read_npz(folder / NPZ)
        n = len(arrays["x"])
        if (arrays["x_adv"].shape != arrays["x"].shape or arrays["x"].dim() != 4 or n == 0
                or arrays["y"].shape != (n,) or arrays["success"].shape != (n,)
                or ("target" in arrays and arrays["target"].shape != (n,))):
            raise InputError(f"{folder}/adversarial.npz holds arrays of inconsistent shapes", _REDO)
        return cls(summary=info, arrays=arrays)


def _written_by(command: str) -> str:
    return f"pass a folder written by `infoswarm {command}`"


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def _read_json(path: Path, missing: str, fix: str) -> Any:
    """A JSON file's content; one-line InputErrors for a missing or broken file."""
    if not path.is_file():
        raise InputError(f"{missing} (no {path.name})", fix)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise InputError(f"{path} is not valid JSON", fix) from None


def _read_summary(folder: Path, command: str, name: str) -> dict[str, Any]:
    """The summary.json of a finished ``infoswarm <command>`` run in ``folder`` (which errors
    call ``name``); one-line InputErrors for a missing, broken or other run's summary."""
    fix = _written_by(command)
    info = _read_json(folder / SUMMARY, f"{name} {folder} is not a finished {command} run", fix)
    if not isinstance(info, dict) or info.get("command") != command:
        kind = info.get("command") if isinstance(info, dict) else None
        raise InputError(f"{name} {folder} is {_a(str(kind))} run, not {_a(command)} run", fix)
    return info


WEIGHTS = "model.safetensors"
CARD = "card.json"


def model_card(name: str, model: torch.nn.Module, dataset: str, test_accuracy: float | None,
               **extra: Any) -> dict[str, Any]:
    """The card of a model infoswarm wrote (``train``, ``harden``): its ``name``, architecture
    (class name of ``model``), ``dataset``, ``test_accuracy`` in [0, 1], the torch and infoswarm
    versions, the command line, and ``extra`` keys (e.g. a recipe, the base model)."""
    import sys

    import torch as _torch

    from . import __version__

    argv = sys.argv[1:]
    return {"name": name, "architecture": type(model).__name__, "dataset": dataset, **extra,
            "test_accuracy": test_accuracy, "torch": _torch.__version__, "infoswarm": __version__,
            "command": "infoswarm " + " ".join(argv) if argv else None}


def save_model(folder: str | Path, weights: Mapping[str, torch.Tensor], card: Mapping[str, Any],
               metadata: Mapping[str, str]) -> None:
    """The one writer of a model: ``model.safetensors`` (the state dict ``weights``, contiguous
    CPU tensors, with string ``metadata``: one key keeps the file bitwise repeatable) and its
    ``card.json``, each atomically."""
    from safetensors.torch import save_file

    from . import runs

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
    runs.atomic_write(folder / WEIGHTS, lambda p: save_file(state, str(p), metadata=dict(metadata)))
    runs.atomic_write(folder / CARD, lambda p: runs.write_json(p, dict(card)))


HARDEN_NPZ = "adversarial-train.npz"
HARDEN_WEIGHTS = WEIGHTS
HARDEN_CARD = CARD
HARDEN_METRICS = "metrics.csv"
HARDEN_ARRAYS = ("x_adv", "y", "dataset_index")


@dataclass
class HardenRun:
    """One ``infoswarm harden`` run: ``summary`` (summary.json: settings, before/after metrics,
    ``history`` of the fine-tuning epochs), ``card`` (card.json of the hardened model) and
    ``adversarial`` (adversarial-train.npz: the adversarial training images ``x_adv`` [M, C, H, W]
    float in [0, 1], their true labels ``y`` [M] and their positions ``dataset_index`` [M] in the
    training split; CPU tensors)."""

    summary: dict[str, Any]
    card: dict[str, Any]
    adversarial: dict[str, torch.Tensor]

    def save(self, folder: str | Path, weights: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> None:
        """Write model.safetensors (``weights``, a state dict, with string ``metadata``),
        card.json, metrics.csv (one row per epoch of ``summary["history"]``),
        adversarial-train.npz and summary.json last (a folder with one is a finished run); each
        file atomically."""
        from . import runs

        folder = Path(folder)
        save_model(folder, weights, self.card, metadata)
        history = self.summary.get("history") or []
        if history:
            runs.atomic_write(folder / HARDEN_METRICS, lambda p: runs.write_csv(p, history, list(history[0])))
        write_npz(folder / HARDEN_NPZ, {k: self.adversarial[k] for k in HARDEN_ARRAYS})
        runs.atomic_write(folder / SUMMARY, lambda p: runs.write_json(p, self.summary))

    @classmethod
    def load(cls, folder: str | Path, name: str = "folder") -> HardenRun:
        """A finished harden run, checked: summary.json is a harden run's with before/after
        metrics, card.json reads, and adversarial-train.npz holds consistent arrays (M may be
        0). ``name`` is what errors call the folder."""
        import numpy as np

        folder = Path(folder)
        redo = _written_by("harden")
        info = _read_summary(folder, "harden", name)
        if not all(isinstance(info.get(k), dict) for k in ("before", "after", "settings")):
            raise InputError(f"{folder}/summary.json lacks the before/after metrics of a harden run", redo)
        card = _read_json(folder / HARDEN_CARD, f"{name} {folder} has no readable card.json", redo)
        try:
            with np.load(folder / HARDEN_NPZ, allow_pickle=False) as z:
                arrays = {k: torch.from_numpy(z[k]) for k in HARDEN_ARRAYS}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise InputError(f"cannot read {folder}/{HARDEN_NPZ} ({type(e).__name__})", redo) from None
        m = len(arrays["y"])
        if arrays["x_adv"].dim() != 4 or len(arrays["x_adv"]) != m or arrays["dataset_index"].shape != (m,):
            raise InputError(f"{folder}/{HARDEN_NPZ} holds arrays of inconsistent shapes", redo)
        return cls(summary=info, card=card, adversarial=arrays)




INFLUENCE_CSV = "images.csv"
INFLUENCE_COLUMNS = ("index", "label", "pred", "p_pred", "image_fi_pred", "image_fi_true")


@dataclass
class InfluenceRun:
    """One ``infoswarm influence`` run: ``summary`` (summary.json: accuracy, the vulnerable
    count, the map settings, ``top`` rows of the heatmap images) and ``rows`` (images.csv: one
    row per scanned image with the columns :data:`INFLUENCE_COLUMNS`; values are strings when
    read back). The heatmap PNGs are figures the command writes beside them."""

    summary: dict[str, Any]
    rows: list[dict[str, Any]]

    def save(self, folder: str | Path) -> None:
        """images.csv, then summary.json last (a folder with one is a finished run); atomically."""
        from . import runs

        folder = Path(folder)
        runs.atomic_write(folder / INFLUENCE_CSV, lambda p: runs.write_csv(p, self.rows, list(INFLUENCE_COLUMNS)))
        runs.atomic_write(folder / SUMMARY, lambda p: runs.write_json(p, self.summary))

    @classmethod
    def load(cls, folder: str | Path, name: str = "folder") -> InfluenceRun:
        """A finished influence run, checked: summary.json is an influence run's and images.csv
        has the columns :data:`INFLUENCE_COLUMNS` and as many rows as the summary's ``images``."""
        import csv

        folder = Path(folder)
        redo = _written_by("influence")
        info = _read_summary(folder, "influence", name)
        try:
            with open(folder / INFLUENCE_CSV, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                rows = list(reader)
                columns = tuple(reader.fieldnames or ())
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise InputError(f"cannot read {folder}/{INFLUENCE_CSV} ({type(e).__name__})", redo) from None
        if columns != INFLUENCE_COLUMNS or len(rows) != info.get("images"):
            raise InputError(f"{folder}/{INFLUENCE_CSV} does not match its summary.json (columns or row count)", redo)
        return cls(summary=info, rows=rows)


ROBUSTNESS_CSV = "robustness.csv"
ROBUSTNESS_CURVE = "curve.png"
ROBUSTNESS_IMAGE_COLUMNS = ("index", "label", "clean_pred", "clean_correct", "min_k")
ROBUSTNESS_K_COLUMNS = ("broken", "by", "queries", "pixel_l0")
"""Per-k columns of robustness.csv, each written as ``<name>_k<k>`` (e.g. ``broken_k10``)."""


def robustness_columns(ks: list[int]) -> list[str]:
    """The columns of robustness.csv for pixel counts ``ks``."""
    return list(ROBUSTNESS_IMAGE_COLUMNS) + [f"{c}_k{k}" for k in ks for c in ROBUSTNESS_K_COLUMNS]


@dataclass
class RobustnessRun:
    """One ``infoswarm robustness`` run.

    * ``summary`` (summary.json): :meth:`infoswarm.robustness.RobustnessResult.summary` (with
      ``per_k`` {"10": {"robust", "total", …}}, ``ks``, ``curve``, ``warnings``) plus
      ``command`` "robustness", ``dataset``, ``model`` and ``settings``;
    * ``arrays`` (adversarial.npz, CPU tensors): ``x`` [N, C, H, W] float32 in [0, 1], ``y``
      [N] int64, ``dataset_index`` [N] int64, and per k ``x_adv_k<k>`` [N, C, H, W] (the
      image that broke each broken image, the clean image elsewhere), ``broken_k<k>`` [N] bool,
      ``queries_k<k>`` and ``pixel_l0_k<k>`` [N] int64;
    * ``rows`` (robustness.csv, :func:`robustness_columns`; empty when read back).

    The curve plot (curve.png) is a figure the command writes before summary.json."""

    summary: dict[str, Any]
    arrays: dict[str, torch.Tensor]
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ks(self) -> list[int]:
        return [int(k) for k in self.summary["ks"]]

    @staticmethod
    def from_result(res: Any, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor, clean_pred: torch.Tensor,
                    summary: Mapping[str, Any]) -> RobustnessRun:
        """The record of a :class:`~infoswarm.robustness.RobustnessResult` ``res`` on images x
        [N, C, H, W] with labels y [N] (positions ``index`` [N] in the split, clean predictions
        ``clean_pred`` [N]); ``summary`` (command, dataset, settings …) gets ``res.summary()``."""
        yc, idx, pred = y.cpu().long(), index.cpu().long(), clean_pred.cpu().long()
        arrays: dict[str, torch.Tensor] = {"x": x.detach().cpu().float(), "y": yc, "dataset_index": idx}
        for k in res.ks:
            r = res.per_k[k]
            arrays[f"x_adv_k{k}"] = r.x_adv.float()
            arrays[f"broken_k{k}"] = r.broken.bool()
            arrays[f"queries_k{k}"] = r.queries.long()
            arrays[f"pixel_l0_k{k}"] = r.pixel_l0.long()
        rows = []
        for j in range(len(yc)):
            row: dict[str, Any] = {"index": int(idx[j]), "label": int(yc[j]), "clean_pred": int(pred[j]),
                                   "clean_correct": int(res.correct[j]), "min_k": int(res.min_k[j])}
            for k in res.ks:
                r = res.per_k[k]
                row.update({f"broken_k{k}": int(r.broken[j]), f"by_k{k}": r.by[j],
                            f"queries_k{k}": int(r.queries[j]), f"pixel_l0_k{k}": int(r.pixel_l0[j])})
            rows.append(row)
        return RobustnessRun(summary={**summary, **res.summary()}, arrays=arrays, rows=rows)

    def save(self, folder: str | Path, before_summary: Any = None) -> None:
        """adversarial.npz, robustness.csv, then (after ``before_summary()``, e.g. the curve)
        summary.json last: a folder with a summary.json is a finished run."""
        from . import runs

        folder = Path(folder)
        write_npz(folder / NPZ, self.arrays)
        runs.atomic_write(folder / ROBUSTNESS_CSV,
                          lambda p: runs.write_csv(p, self.rows, robustness_columns(self.ks)))
        if before_summary is not None:
            before_summary()
        runs.atomic_write(folder / SUMMARY, lambda p: runs.write_json(p, self.summary))

    @classmethod
    def load(cls, folder: str | Path, name: str = "folder") -> RobustnessRun:
        """A finished robustness run, checked: summary.json is a robustness run's with ``ks`` and
        a ``per_k`` entry (integer ``robust`` ≤ ``total``) for each, and adversarial.npz holds
        ``x``, ``y`` and each k's ``x_adv_k<k>`` / ``broken_k<k>`` with consistent shapes, the
        broken count agreeing with the summary. ``name`` is what errors call the folder."""
        import numpy as np

        folder = Path(folder)
        redo = _written_by("robustness")
        info = _read_summary(folder, "robustness", name)
        where = f"{folder}/summary.json"
        ks, per_k = info.get("ks"), info.get("per_k")
        if (not isinstance(ks, list) or not ks or not all(isinstance(k, int) and not isinstance(k, bool) and k > 0
                                                          for k in ks) or not isinstance(per_k, dict)):
            raise InputError(f"{where} lacks the ks and per_k of a robustness run", redo)
        for k in ks:
            e = per_k.get(str(k))
            if not (isinstance(e, dict) and all(isinstance(e.get(c), int) and not isinstance(e.get(c), bool)
                                                for c in ("robust", "total")) and 0 <= e["robust"] <= e["total"]):
                raise InputError(f"{where} has no valid per_k entry for k={k}", redo)
        try:
            with np.load(folder / NPZ, allow_pickle=False) as z:
                arrays = {key: torch.from_numpy(z[key]) for key in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise InputError(f"cannot read {folder}/{NPZ} ({type(e).__name__})", redo) from None
        need = ["x", "y"] + [f"{a}_k{k}" for k in ks for a in ("x_adv", "broken")]
        missing = [a for a in need if a not in arrays]
        if missing:
            raise InputError(f"{folder}/{NPZ} lacks {missing[0]}", redo)
        n = len(arrays["x"])
        if arrays["x"].dim() != 4 or n == 0 or arrays["y"].shape != (n,) or any(
                arrays[f"x_adv_k{k}"].shape != arrays["x"].shape or arrays[f"broken_k{k}"].shape != (n,)
                or per_k[str(k)]["total"] != n or n - int(arrays[f"broken_k{k}"].sum()) != per_k[str(k)]["robust"]
                for k in ks):
            raise InputError(f"{folder}/{NPZ} does not match its summary.json (shapes or counts)", redo)
        return cls(summary=info, arrays=arrays)


TRAIN_HISTORY = "history.csv"
INFLUENCE_DELETION = "deletion.png"
ATTACK_GALLERY = "gallery.png"
HEATMAPS = "heatmaps"
TABLES = (RESULTS, INFLUENCE_CSV, HARDEN_METRICS, TRAIN_HISTORY)
"""The CSV tables a run folder may hold (attack, influence, harden, train)."""
EXPECTED: dict[str, tuple[str, ...]] = {"influence": (INFLUENCE_CSV,)}
"""Files a finished run of each kind always holds (summary.json is written last); an attack run
may lack adversarial.npz (older runs: its gallery.png stands for it)."""
FIGURES: dict[str, tuple[tuple[str, str], ...]] = {
    "outliers": (("roc_pr.png", "ROC and precision-recall: image FI vs Jacobian norm"),
                 ("top_fi.png", "top-ranked by image FI (red: synthetic outlier)"),
                 ("top_jacobian.png", "top-ranked by Jacobian norm (red: synthetic outlier)")),
    "sensitivity": (("layer_fi.png", "parameter FI per layer and class"),)}
"""The figures (file, caption) the analysis commands write beside their summary."""
FIX_RUN = "pass a folder written by an infoswarm command (influence, attack, universality, train, harden)"


@dataclass
class RunFolder:
    """Any finished run folder, read for display (``infoswarm report``): its ``path``, its
    ``kind`` (``summary.json``'s ``command``; ``train`` for a folder holding only ``card.json``)
    and its ``summary``; the files beside it are read on demand by the methods below, each
    raising a one-line :class:`InputError` for a file that cannot be read."""

    path: Path
    kind: str
    summary: dict[str, Any]

    @classmethod
    def open(cls, path: str | Path) -> Any:
        """Read a run folder's ``summary.json`` (or ``card.json``); :class:`InputError` when the
        folder is missing or its summary is absent or unreadable. Returns an instance of ``cls``."""
        p = Path(path).expanduser()
        if not p.exists():
            raise InputError(f"run folder {p} does not exist", FIX_RUN)
        if not p.is_dir():
            raise InputError(f"run folder {p} is a file, not a folder", FIX_RUN)
        for fname in (SUMMARY, CARD):
            f = p / fname
            if f.is_file():
                break
        else:
            raise InputError(f"{p} has no summary.json", FIX_RUN)
        try:
            summary = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise InputError(f"cannot read {f} ({type(e).__name__}: {str(e)[:80]})",
                             "re-run the command that wrote it") from None
        if not isinstance(summary, dict):
            raise InputError(f"{f} does not hold a JSON object", "re-run the command that wrote it")
        command = summary.get("command")
        if fname == CARD:
            kind = "train"
        elif isinstance(command, str) and command:
            kind = command
        else:
            kind = ("attack" if (p / RESULTS).is_file() else
                    "influence" if (p / INFLUENCE_CSV).is_file() else "other")
        return cls(p, kind, summary)

    def table(self, name: str) -> list[dict[str, str]] | None:
        """The rows (strings) of the CSV table ``name`` (one of :data:`TABLES`), None when absent."""
        f = self.path / name
        return read_csv(f) if f.is_file() else None

    def results(self) -> list[dict[str, str]] | None:
        """An attack run's results.csv rows (:data:`RESULT_COLUMNS`, as strings), None without one."""
        return self.table(RESULTS)

    def attack_arrays(self) -> dict[str, Any] | None:
        """An attack run's adversarial.npz as numpy arrays (at least :data:`NPZ_REQUIRED`, with
        ``x``/``x_adv`` [M, C, H, W] and ``y``/``success`` [M]), None when it has none; a
        robustness run's npz (another format) is not read."""
        f = self.path / NPZ
        if self.kind != "attack" or not f.is_file():
            return None
        return read_attack_npz(f)

    def curves(self) -> tuple[str, list[dict[str, Any]]] | None:
        """The per-epoch rows of a harden run's metrics.csv or a train run's history.csv (or a
        summary's ``history`` list), with the name of where they came from; None without any."""
        for fname in (HARDEN_METRICS, TRAIN_HISTORY):
            rows = self.table(fname)
            if rows is not None:
                return fname, list(rows)
        h = self.summary.get("history")
        if isinstance(h, list) and h and all(isinstance(r, dict) for r in h):
            return "summary.json history", h
        return None

    def missing(self) -> list[str]:
        """The files a run of this kind always writes (:data:`EXPECTED`) that are not here."""
        return [f for f in EXPECTED.get(self.kind, ()) if not (self.path / f).is_file()]

    def figures(self) -> list[Path]:
        """The PNG figures in the folder and its heatmaps/ folder, sorted."""
        return sorted(self.path.glob("*.png")) + sorted((self.path / HEATMAPS).glob("*.png"))


def read_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV file with a header (values as strings); :class:`InputError` when it cannot
    be read."""
    import csv

    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"cannot read {path} ({type(e).__name__})", "re-run the command that wrote it") from None


def read_attack_npz(path: Path) -> dict[str, Any]:
    """An attack run's adversarial.npz as numpy arrays, checked: :data:`NPZ_REQUIRED` present,
    ``x`` and ``x_adv`` [M, C, H, W] of one shape, ``y`` and ``success`` [M]."""
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # OSError, ValueError, zipfile.BadZipFile, EOFError ...
        raise InputError(f"cannot read {path} ({type(e).__name__})",
                         "re-run infoswarm attack to write it again") from None
    missing = set(NPZ_REQUIRED) - set(arrays)
    if missing:
        raise InputError(f"{path} lacks {', '.join(sorted(missing))}", "pass a folder written by infoswarm attack")
    n = len(arrays["x"])
    if arrays["x"].shape != arrays["x_adv"].shape or arrays["x"].ndim != 4 or len(arrays["y"]) != n \
            or len(arrays["success"]) != n:
        raise InputError(f"{path} holds arrays of inconsistent shapes", "re-run infoswarm attack to write it again")
    return arrays
