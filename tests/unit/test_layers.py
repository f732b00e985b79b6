"""The package's layers, drawn from its imports: each folder imports only the layers below it.

Every ``import`` counts, at module level or inside a function (a lazy import is still an
arrow), and so does a dotted module path written as a string (the registry's ``lazy`` builders).
A module may import its own folder freely; anything else must sit in a strictly lower layer.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "lightning_talos"

#: Bottom to top. A name is a folder of the package or one of its top-level modules.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__init__", "errors"),
    ("safe_load", "distributed", "precision", "threads", "interrupts", "profiling"),
    ("config", "data", "models", "losses", "optim"),
    ("attacks",),
    ("defences",),
    ("modules", "callbacks"),
    ("analysis",),
    ("runs",),
    ("stages",),
    ("report",),
    ("orchestration",),
    ("bench",),
    ("cli",),
    ("__main__",),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}

#: The most of the package's lines one folder may hold (a folder past it mixes concerns).
MAX_FOLDER_SHARE = 0.20


def _component(module: str) -> str:
    """``lightning_talos.stages.registry`` -> ``stages``; the package itself -> ``__init__``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(dotted: str) -> bool:
    """True when ``dotted`` names a module or folder of the package (not e.g. a barrier name)."""
    where = PACKAGE.parent.joinpath(*dotted.split("."))
    return where.with_suffix(".py").is_file() or (where / "__init__.py").is_file()


def _imports(path: Path) -> set[str]:
    """Package modules ``path`` imports, lazily or not, or names as a dotted string."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.level:
                raise AssertionError(f"{path}: relative import; write the full module path")
            found.add(node.module)
            found.update(
                f"{node.module}.{a.name}"
                for a in node.names
                if _is_module(f"{node.module}.{a.name}")
            )
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith("lightning_talos.")
            and _is_module(node.value)
        ):
            found.add(node.value)
    return {m for m in found if m == "lightning_talos" or m.startswith("lightning_talos.")}


def _edges() -> dict[str, set[str]]:
    """Component -> components it imports (its own excluded)."""
    edges: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        source = _component(_module_name(path))
        for target in map(_component, _imports(path)):
            if target != source:
                edges[source].add(target)
    return edges


def test_every_folder_and_module_has_a_layer() -> None:
    present = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()}
    present = {n for n in present if not n.startswith((".", "__pycache__")) and "." not in n}
    present -= {"__pycache__"}
    assert present - set(RANK) == set(), "add the new folder or module to LAYERS"


def test_no_import_runs_upward() -> None:
    upward = [
        f"{source} -> {target}"
        for source, targets in _edges().items()
        for target in targets
        if RANK[target] >= RANK[source]
    ]
    assert upward == []


def test_no_circle_between_folders() -> None:
    edges = _edges()

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in edges.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    assert [c for c in list(edges) if reaches(c, c, {c})] == []


def test_no_folder_holds_more_than_a_fifth_of_the_lines() -> None:
    lines: dict[str, int] = defaultdict(int)
    for path in PACKAGE.rglob("*.py"):
        lines[_component(_module_name(path))] += len(path.read_text().splitlines())
    total = sum(lines.values())
    over = {c: round(n / total, 3) for c, n in lines.items() if n / total > MAX_FOLDER_SHARE}
    assert over == {}


def test_every_folder_says_what_lives_there() -> None:
    missing = [
        p.parent.name
        for p in PACKAGE.glob("*/__init__.py")
        if not (ast.get_docstring(ast.parse(p.read_text())) or "").strip()
    ]
    assert missing == []


def test_the_checks_see_a_planted_upward_import(tmp_path: Path) -> None:
    """The import reader finds lazy and string arrows (else the tests above prove nothing)."""
    planted = tmp_path / "x.py"
    planted.write_text(
        "def f():\n    from lightning_talos.report.report import table\n"
        "BUILD = 'lightning_talos.stages.builders'\n"
    )
    assert {"lightning_talos.report.report", "lightning_talos.stages.builders"} <= _imports(planted)
