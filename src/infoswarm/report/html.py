"""A self-contained HTML report over one or more run folders: rendering and writing the page.

The report is three modules by job: :mod:`.load` reads the run folders (through the
:mod:`infoswarm.artifacts` records) and marks damaged ones, :mod:`.sections` turns runs into each
section's data (with :mod:`.format` for the display forms), and this module renders the page
from the template and writes it.

:func:`write_report` reads the folders written by ``infoswarm influence``, ``attack``,
``universality``, ``train`` and ``harden`` and writes one HTML page: every figure is embedded as a
``data:image/png;base64`` URI, the CSS is inline and there is no script and no URL to fetch, so
the page opens the same offline, from a mail attachment or from an archive.

The kind of a run is its ``summary.json`` key ``"command"`` (a folder holding only ``card.json``,
as ``infoswarm train`` writes, is read as a train run). The page's sections are the list
:data:`SECTIONS`, in page order, each with a stable ``id``:

==================  =========================================================================
``summary``         one card per run: key numbers and its settings (always present)
``heatmaps``        influence runs: most vulnerable images and their pixel-FI maps
``gallery``         attack runs: original | adversarial | difference, probabilities before/after
``success-vs-k``    attack runs with at least two different k (pixels): success rate against k
``histograms``      attack runs with ``results.csv``: L∞ and pixel-L0 per image
``comparison``      attack runs: attack, k, eps, success rate, median queries, mean L∞, seconds
``training``        runs with ``metrics.csv``, ``history.csv`` or a ``history`` list: curves
``robustness``      runs whose summary has ``before`` / ``after`` metrics: a before/after table
``robust-accuracy`` ``infoswarm robustness`` runs: the curve, the per-k table (what each attack
                    added) and the masking warnings
==================  =========================================================================

Sections that none of the runs can fill are left out.

How to add a section (two edits, nothing else):

1. In ``sections.py``, write a builder ``def _build_mine(runs: list[Run], shared: Shared) -> Any``
   that returns the section's data, or ``None`` (or anything empty) when no run can fill it,
   and append ``Section(id="mine", title="Mine", build=_build_mine, block="mine")`` to
   :data:`SECTIONS` at the place the section should appear on the page. ``id`` is the HTML
   ``id`` (the nav links to ``#mine``; keep it stable), ``title`` is the nav label, ``block``
   names the template block (a Python identifier; it defaults to ``id`` with ``-`` made ``_``).
   ``shared`` holds what several sections read, e.g. ``shared.attacks`` and
   ``shared.results(run)`` (an attack run's ``results.csv``, read once).
2. In ``templates/report.html.j2``, add ``{% block mine %} … {% endblock %}`` next to the
   other section blocks (inside the ``{% if false %}`` that keeps them from rendering in
   place). The renderer wraps it in ``<section id="mine">`` and adds the nav link; inside the
   block the section's data is the variable named like the block (``mine``), and ``version``
   and ``cards`` are there too. Write the section's ``<h2>`` in the block.

The nav, the ``<section>`` wrappers, :attr:`Report.sections` and the CLI's summary all follow
:data:`SECTIONS` (as this module holds it: a test may replace it here); :func:`render_report`
raises at once if a section's block is missing from the template.
``tests/test_report.py::test_a_section_added_to_the_list_shows_in_page_and_nav`` is a worked
example (it appends a section and supplies its block from a template that extends the page).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..checks import printable
from ..errors import InputError
from .format import fmt
from .load import Run, damage_of, load_run, unique_names
from .sections import SECTIONS, Section, Shared, build_summary

__all__ = ["Run", "Report", "Section", "Shared", "SECTIONS", "damage_of", "load_run", "render_report",
           "write_report"]

TEMPLATE = "report.html.j2"


@dataclass
class Report:
    """What :func:`write_report` produced: the page's path, its section ids, and the runs."""

    path: Path
    sections: list[str]
    runs: list[Run] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(folder, why) of the run folders that could not be read and were left out."""


def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("infoswarm.report", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = fmt
    return env


def _blocks(env: Any, name: str) -> set[str]:
    """The block names of template ``name`` and of the templates it extends."""
    from jinja2 import nodes

    found: set[str] = set()
    todo, seen = [name], set()
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        found |= set(env.get_template(n).blocks)
        ast = env.parse(env.loader.get_source(env, n)[0])
        todo += [e.template.value for e in ast.find_all(nodes.Extends) if isinstance(e.template, nodes.Const)]
    return found


def render_report(run_dirs: Iterable[str | os.PathLike[str]]) -> tuple[str, list[str], list[Run]]:
    """Read the runs and return the page's HTML, its section ids (in order) and the runs."""
    dirs = list(run_dirs)
    if not dirs:
        raise InputError("no run folder given", "pass one or more run folders")
    runs = [load_run(d) for d in dirs]
    unique_names(runs)
    for r in runs:
        r.damaged = damage_of(r)
    whole = [r for r in runs if not r.damaged]   # a damaged run gets its card, marked, and nothing else

    template = _environment().get_template(TEMPLATE)
    ids = [s.id for s in SECTIONS]
    if len(set(ids)) != len(ids):
        raise ValueError(f"report sections with the same id: {ids}")
    missing = [s.block for s in SECTIONS if s.block not in _blocks(template.environment, TEMPLATE)]
    if missing:
        raise ValueError(f"report sections without a block in {TEMPLATE}: {missing}")
    shared = Shared(whole)
    ctx: dict[str, Any] = {
        "title": "infoswarm report: " + ", ".join(r.name for r in runs[:4]) + (" …" if len(runs) > 4 else ""),
        "version": __version__,
    }
    shown: list[dict[str, str]] = []
    for s in SECTIONS:
        data = s.build(runs if s.block == "cards" else whole, shared)
        ctx[s.block] = data
        if data is not None and (not isinstance(data, (list, tuple, dict, str)) or len(data) > 0):
            shown.append({"id": s.id, "title": s.title, "block": s.block})
    ctx.setdefault("cards", build_summary(runs, shared))
    ctx["sections"] = shown
    html = template.render(**ctx)
    return html, [s["id"] for s in shown], runs


def _check_out(out: Path) -> Path:
    if out.is_dir():
        raise InputError(f"--out {out} is a folder", "pass a file path such as report.html")
    if out.is_symlink() and not out.exists():
        raise InputError(f"--out {out} is a symbolic link to a missing file", "remove the link or choose another --out")
    if out.exists() and not is_report(out):
        raise InputError(f"--out {out} exists and is not an infoswarm report (it would be replaced)",
                         "choose a new file name such as report.html")
    from ..runs import check_writable_parent

    check_writable_parent(out, "choose an --out path in a folder you can write to")
    return out


def is_report(path: Path) -> bool:
    """True when ``path`` is an HTML page written by :func:`write_report` (its generator tag)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return b'<meta name="generator" content="infoswarm' in head


def write_report(run_dirs: Iterable[str | os.PathLike[str]], out: str | os.PathLike[str]) -> Report:
    """Build the page (see :func:`render_report`) and write it atomically to ``out``: a temporary
    file in the same folder is renamed over ``out`` only when complete (an existing file is
    replaced). Returns the path, section ids and runs. Raises :class:`InputError` for a missing
    folder, a folder without ``summary.json``, an unreadable summary, CSV or ``adversarial.npz``,
    or an ``out`` that is a folder or cannot be written."""
    dirs = list(run_dirs)
    skipped: list[tuple[str, str]] = []
    readable = []
    for d in dirs:  # cheap checks of every input before any work
        try:
            load_run(d)
            readable.append(d)
        except InputError as e:
            skipped.append((str(d), str(e).split("; ")[0]))
    if not readable:  # nothing to draw: the first folder's problem is the error
        load_run(dirs[0]) if dirs else render_report(dirs)
    path = _check_out(Path(out).expanduser())
    html, sections, runs = render_report(readable)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
            f.write(printable(html))   # folder names that are not UTF-8: shown escaped
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return Report(path=path, sections=sections, runs=runs, skipped=skipped)

