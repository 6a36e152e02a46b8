"""The layering drawn in ``corral/__init__.py`` is the one the imports follow.

Every module of the package is parsed (imports inside functions included) and each import
of another part of Corral must point to the same layer or one above it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import corral

PACKAGE = Path(corral.__file__).parent

LAYERS: list[set[str]] = [
    # 0: foundations: errors, and private helpers importing nothing else of Corral's
    {"errors", "_log", "_clock", "_loop", "_task", "_timeout", "_retry", "_verdict", "_pii"},
    # 1: data and contracts
    {"models", "tools"},
    {"events", "actors"},
    # 3: pure rules, pure checks, the journal, the supervisor actor, the trail
    {"router", "guardrails", "store", "supervisor", "observability", "memory"},
    # 4: the agent loop and the workflow engine
    {"subagents", "workflows"},
    # 5: the runtime, its settings, the demo application
    {"runtime", "_settings", "demo"},
    # 6: the package itself, then what sits on top
    {"__init__"},
    {"cli", "server", "__main__", "_client", "_views", "loadtest", "replay"},
]
ACTORS_MAY_IMPORT = {"errors", "_log", "_clock", "_loop"}
"""`corral.actors` is a self-contained actor runtime: it imports only these."""


def _part(module: str) -> str:
    """``corral.store._sqlite`` -> ``store``; ``corral`` (or a name it defines) -> ``__init__``."""
    parts = module.split(".")
    if len(parts) < 2:
        return "__init__"
    is_module = (PACKAGE / f"{parts[1]}.py").exists() or (PACKAGE / parts[1]).is_dir()
    return parts[1] if is_module else "__init__"


def _imports() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(rel.parts).removesuffix(".__init__")
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        targets = found.setdefault(_part(module), set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target == "corral" and not node.level:
                    targets.update(_part(f"corral.{a.name}") for a in node.names)
                    continue
                names = [target] if node.module or not node.level else []
                names += [] if node.module else [f"{target}.{a.name}" for a in node.names]
                targets.update(_part(t) for t in names if t.startswith("corral"))
            elif isinstance(node, ast.Import):
                targets.update(_part(a.name) for a in node.names if a.name.startswith("corral"))
    return found


def _layer(part: str) -> int:
    for i, members in enumerate(LAYERS):
        if part in members:
            return i
    raise AssertionError(f"corral.{part} is in no layer: add it to LAYERS and the docstring")


def test_every_import_points_to_the_same_layer_or_above() -> None:
    wrong = sorted(
        f"corral.{part} (layer {_layer(part)}) imports corral.{target} (layer {_layer(target)})"
        for part, targets in _imports().items()
        for target in targets
        if target != part and _layer(target) > _layer(part)
    )
    assert wrong == []


def test_actors_import_nothing_of_corral_but_the_foundations() -> None:
    assert _imports()["actors"] - {"actors"} <= ACTORS_MAY_IMPORT


def test_the_package_docstring_names_every_layer() -> None:
    doc = corral.__doc__ or ""
    for members in LAYERS:
        for part in members - {"__init__", "__main__"}:
            name = f"corral.{part}"
            if (PACKAGE / f"{part}.py").exists() or (PACKAGE / part).is_dir():
                assert f"`{name}`" in doc, f"{name} is not in corral's layering docstring"
