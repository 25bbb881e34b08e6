"""The package's folders are its layers: no import runs from a lower layer to a higher one, no
import circle between files, and no module grows past 400 lines (README, "Layout")."""

from __future__ import annotations

import ast
from pathlib import Path

import mixer

PACKAGE = Path(mixer.__file__).resolve().parent
# Lowest first; a layer imports only from its own rank and below.
LAYERS = [
    ("__init__", "errors", "registry"),
    ("records",),
    ("data",),
    ("models",),
    ("training",),
    ("methods",),
    ("config",),
    ("stages", "report"),
    ("cli",),
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def node_of(module: str) -> str | None:
    """The top-level entry of ``mixer`` a dotted module name lies in."""
    parts = module.split(".")
    if parts[0] != "mixer":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def module_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, at module level?) of every import statement that runs in ``path``
    (those under ``if TYPE_CHECKING:`` never do)."""
    tree = ast.parse(path.read_text())
    top = {id(node) for node in ast.walk(tree) if node in tree.body}
    nested, typing_only = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            nested.update(id(n) for n in ast.walk(node) if n is not node)
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            typing_only.update(id(n) for n in ast.walk(node))
    found = []
    for node in ast.walk(tree):
        names = []
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        found += [(name, id(node) not in nested or id(node) in top) for name in names]
    return found


def files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_top_level_entry_has_a_layer():
    entries = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()}
    entries = {e for e in entries if e != "__pycache__" and not e.endswith(".json")}
    assert entries <= set(RANK), f"no layer for {sorted(entries - set(RANK))}"


def test_no_import_runs_from_a_lower_layer_to_a_higher_one():
    upward = []
    for path in files():
        source = node_of(module_of(path))
        for module, _ in imports(path):
            target = node_of(module)
            if target in RANK and RANK[target] > RANK[source]:
                upward.append(f"{path.relative_to(PACKAGE)} imports {module}")
    assert not upward, "\n".join(upward)


def test_no_import_circle_between_modules():
    """Module-level imports between files form no circle (a circle only works by luck)."""
    known = {module_of(p) for p in files()}
    graph = {
        module_of(p): {m for m, top in imports(p) if top and m in known and m != module_of(p)}
        for p in files()
    }
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*trail, node, nxt]
            if nxt not in state and (found := visit(nxt, [*trail, node])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            circle = visit(start, [])
            assert circle is None, " -> ".join(circle)


def test_no_module_over_400_lines():
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in files()
        if (n := len(p.read_text().splitlines())) > 400
    }
    assert not long, long
