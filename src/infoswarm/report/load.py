"""The run folders a report is drawn from: :class:`Run` (an :class:`infoswarm.artifacts.RunFolder`
with a display name and what is damaged), :func:`load_run` and :func:`damage_of`. Every file is
read through the artifacts records; this module only decides what a reader's failure means for
the page."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..artifacts import NPZ, RESULTS, TABLES, RunFolder
from ..errors import InputError
from .format import png_file


@dataclass
class Run(RunFolder):
    """One run folder: its path, kind (``summary["command"]``), summary, display name and damage."""

    name: str = ""
    damaged: str | None = None
    """Why the folder cannot be drawn whole (see :func:`damage_of`), or None."""

    @property
    def settings(self) -> dict[str, Any]:
        """The run's settings (its ``settings`` dict, or the scalar descriptive keys)."""
        s = self.summary.get("settings")
        if isinstance(s, dict):
            return dict(s)
        keys = ("dataset", "split", "model", "mode", "method", "tau", "pixels", "eps", "name",
                "architecture", "seed", "train_images")
        out = {k: self.summary[k] for k in keys if k in self.summary}
        for k in ("map", "recipe"):
            if isinstance(self.summary.get(k), dict):
                sub = self.summary[k]  # influence runs since fi_eps repeat it as eps (eps_scale): show it once
                out.update({f"{k}.{kk}": v for kk, v in sub.items() if not (kk in ("eps", "eps_scale") and
                                                                            f"fi_{kk}" in sub)})
        return out


def load_run(path: str | os.PathLike[str]) -> Run:
    """Read a run folder's ``summary.json`` (or ``card.json``) with
    :meth:`infoswarm.artifacts.RunFolder.open`; raises :class:`InputError` when the folder is
    missing or its summary is absent or unreadable."""
    run: Run = Run.open(Path(path))
    run.name = run.path.resolve().name or str(run.path)
    return run


def unique_names(runs: list[Run]) -> None:
    """Give runs distinct display names (parent/name where two folders share a name)."""
    seen: dict[str, int] = {}
    for r in runs:
        seen[r.name] = seen.get(r.name, 0) + 1
    for r in runs:
        if seen[r.name] > 1:
            rp = r.path.resolve()
            r.name = f"{rp.parent.name}/{rp.name}"
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.name] = counts.get(r.name, 0) + 1
        if counts[r.name] > 1:
            r.name = f"{r.name} ({counts[r.name]})"


def damage_of(run: Run) -> str | None:
    """Why ``run`` cannot be drawn whole, in a few words, or None: a file its kind always writes is
    missing, a CSV or ``adversarial.npz`` cannot be read, a PNG is not a PNG, a heatmap its summary
    lists is gone, or results.csv disagrees with the summary's image count."""
    problems = [f"{fname} is missing" for fname in run.missing()]
    rows = None
    for fname in TABLES:
        try:
            got = run.table(fname)
        except InputError:
            problems.append(f"{fname} cannot be read")
            continue
        if fname == RESULTS:
            rows = got
    try:
        z = run.attack_arrays()             # the attack run's format (a robustness run's differs)
    except InputError as e:
        problems.append(f"{NPZ}: {str(e).split(';')[0].replace(str(run.path / NPZ), '').strip()}")
    else:
        if z is not None and rows is not None and len(rows) != len(z["x"]):
            problems.append(f"results.csv has {len(rows)} rows, adversarial.npz {len(z['x'])} images")
    n = run.summary.get("images")
    if rows is not None and isinstance(n, int) and not isinstance(n, bool) and n != len(rows):
        problems.append(f"results.csv has {len(rows)} rows, the summary says {n} images")
    for png in run.figures():
        if png_file(png) is None:
            problems.append(f"{png.relative_to(run.path)} is not a PNG image")
    top = run.summary.get("top") if run.kind == "influence" else None
    if isinstance(top, list):
        gone = [t.get("heatmap") for t in top if isinstance(t, dict) and isinstance(t.get("heatmap"), str)
                and not (run.path / t["heatmap"]).is_file()]
        if gone:
            problems.append(f"{len(gone)} heatmap(s) listed in summary.json are missing")
    if not problems:
        return None
    return "; ".join(problems[:3]) + (f" (+{len(problems) - 3} more)" if len(problems) > 3 else "")
