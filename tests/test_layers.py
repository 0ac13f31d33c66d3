"""The house's shape, read from the source: the import picture has no circle and no arrow back up
the layers of docs/DESIGN.md, and the public names load from ``infoswarm`` itself."""

from __future__ import annotations

import ast
from pathlib import Path

import infoswarm

SRC = Path(__file__).resolve().parents[1] / "src" / "infoswarm"

# A module may import from its own layer and the ones below it, never from a layer above.
LAYERS = [
    ("core", ("infoswarm", "_compat", "errors", "cpu", "stats", "progress", "models", "checks", "criteria", "swarm",
              "runs", "zoo", "distributed", "data")),
    ("maths", ("influence", "inner", "maps", "sensitivity", "training", "outliers", "universality", "attacks")),
    ("middle", ("selection", "runner", "artifacts", "pipeline", "presets", "hardening", "sparse_hardening",
                "robustness")),
    ("interface", ("report", "cli", "__main__")),
]


def _modules() -> dict[str, Path]:
    mods = {}
    for f in SRC.rglob("*.py"):
        parts = ["infoswarm", *f.relative_to(SRC).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = f
    return mods


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Every infoswarm module each module imports (module level or inside functions)."""
    edges: dict[str, set[str]] = {}
    for name, f in mods.items():
        package = name.split(".") if f.name == "__init__.py" else name.split(".")[:-1]
        found = set()
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or "" if node.level == 0 else ".".join(
                    package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
                for alias in node.names:
                    target = f"{base}.{alias.name}" if f"{base}.{alias.name}" in mods else base
                    found.add(target)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
        edges[name] = {t for t in found if t in mods and t != name}
    return edges


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else module
    for i, (_, names) in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS and docs/DESIGN.md")


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle, or None (depth-first search; package __init__ re-exports of their own
    submodules are not arrows of the picture)."""
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for t in sorted(edges[m]):
            if t.startswith(m + "."):
                continue
            if state.get(t) == 1:
                return path[path.index(t):] + [t]
            if t not in state and (found := visit(t)):
                return found
        state[m] = 2
        path.pop()
        return None

    for m in sorted(edges):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_circle_and_no_arrow_back_up() -> None:
    mods = _modules()
    edges = _imports(mods)
    assert len(mods) > 50 and sum(map(len, edges.values())) > 100     # the parser did find the picture
    assert _cycle(edges) is None, " -> ".join(_cycle(edges) or [])
    up = [f"{m} -> {t}" for m, ts in sorted(edges.items()) for t in sorted(ts)
          if t != "infoswarm" and _layer(t) > _layer(m)]
    assert not up, f"imports from a higher layer: {up}"


def test_the_checker_sees_a_circle_and_an_arrow_up() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _layer("infoswarm.cli.attack") > _layer("infoswarm.runner") > _layer("infoswarm.attacks.base")


def test_public_names_load_from_the_package() -> None:
    from infoswarm import attacks, influence, presets, runner, selection

    for name in infoswarm.__all__:
        assert getattr(infoswarm, name) is not None, name
    assert infoswarm.SparseSwarm is attacks.SparseSwarm and infoswarm.MFIPSO is attacks.MFIPSO
    assert infoswarm.run_attack is runner.run_attack and infoswarm.select_images is selection.select_images
    assert infoswarm.image_fi is influence.image_fi and infoswarm.presets is presets
    assert {"SparseSwarm", "run_attack", "Criterion"} <= set(dir(infoswarm))
