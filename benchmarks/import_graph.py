"""Figures of a package's import graph, at the granularity of its top-level entries.

Each top-level module ``mixer/foo.py`` is a node ``foo``, each top-level folder ``mixer/bar/`` a
node ``bar``, ``mixer/__init__.py`` the node ``__init__``. An edge A -> B (A != B) exists when
any .py file inside A imports anything inside B (absolute or relative imports, read with ``ast``;
``importlib.import_module`` strings are not followed). An edge is "module" when at least one
such import runs at import time (module top level, top-level ``if``/``try``/``with``/class
bodies; not ``if TYPE_CHECKING:``), "deferred" when all are inside function bodies, and
"typing" when all are under ``if TYPE_CHECKING:`` (these count in neither figure).

Printed: nodes; edges (all runtime = module + deferred, and module only); cycles (strongly
connected components of more than one node, and the number of simple cycles) over both edge
sets; levels (the longest path, in nodes, of the condensation DAG; a node importing nothing is
level 1); upward edges (with ``--layers``: rank(A) < rank(B); without: the edges inside an SCC);
the number of .py files and those over 400 lines. Standard library only; nothing is imported.

    python benchmarks/import_graph.py
    python benchmarks/import_graph.py --package /tmp/base_run/mixer --edges
    python benchmarks/import_graph.py --layers \
        "errors,registry:records:data:models:training:methods:config:stages,report:cli" --json
"""

import argparse
import ast
import json
from collections import defaultdict
from pathlib import Path

LONG = 400


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(tree: ast.Module):
    """Yield (node, kind) for every Import/ImportFrom, kind in module/deferred/typing."""
    stack = [(n, "module") for n in tree.body]
    while stack:
        node, kind = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, kind
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            kind = "deferred" if kind == "module" else kind
        if isinstance(node, ast.If) and kind == "module" and is_type_checking(node.test):
            stack += [(n, "typing") for n in node.body] + [(n, kind) for n in node.orelse]
            continue
        stack += [(n, kind) for n in ast.iter_child_nodes(node)]


def targets(imp, parts: list[str], is_init: bool, pkg: str, nodes: set[str]):
    """The top-level nodes that one import statement reaches."""
    if isinstance(imp, ast.Import):
        mods = [a.name.split(".") for a in imp.names]
        names: list[str] = []
    else:
        mods = [imp.module.split(".") if imp.module else []]
        names = [a.name for a in imp.names]
        if imp.level:
            base = parts if is_init else parts[:-1]
            base = base[: len(base) - imp.level + 1]
            mods = [base + mods[0]]
    for mod in mods:
        if not mod or mod[0] != pkg:
            continue
        if len(mod) > 1:
            yield mod[1]
        elif not names:
            yield "__init__"
        else:
            yield from (n if n in nodes else "__init__" for n in names)


def build(pkg_dir: Path):
    pkg = pkg_dir.name
    files = sorted(p for p in pkg_dir.rglob("*.py") if "__pycache__" not in p.parts)
    nodes = {p.relative_to(pkg_dir).parts[0].removesuffix(".py") for p in files}
    edges: dict[tuple[str, str], set[str]] = defaultdict(set)
    lines = {}
    for path in files:
        rel = path.relative_to(pkg_dir)
        src = path.read_text(encoding="utf-8")
        lines[str(rel)] = len(src.splitlines())
        parts = [pkg, *rel.parts[:-1]] + ([] if rel.name == "__init__.py" else [rel.stem])
        a = rel.parts[0].removesuffix(".py")
        for imp, kind in imports(ast.parse(src, str(path))):
            for b in targets(imp, parts, rel.name == "__init__.py", pkg, nodes):
                if b in nodes and b != a:
                    edges[a, b].add(kind)
    first = ("module", "deferred", "typing")
    return sorted(nodes), {e: next(k for k in first if k in ks) for e, ks in edges.items()}, lines


def sccs(nodes, adj):
    """Tarjan's strongly connected components."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in adj[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while not comp or comp[-1] != v:
                comp.append(stack.pop())
                on.discard(comp[-1])
            out.append(sorted(comp))

    for v in nodes:
        if v not in index:
            visit(v)
    return out


def simple_cycles(nodes, adj) -> int:
    """Count elementary cycles: each is counted once, from its smallest node."""
    order = {v: i for i, v in enumerate(nodes)}
    count = 0
    for s in nodes:
        todo = [(s, iter(adj[s]), {s})]
        while todo:
            _, it, seen = todo[-1]
            w = next(it, None)
            if w is None:
                todo.pop()
            elif w == s:
                count += 1
            elif order[w] > order[s] and w not in seen:
                todo.append((w, iter(adj[w]), seen | {w}))
    return count


def analyse(nodes, edges):
    adj = {v: sorted(b for a, b in edges if a == v) for v in nodes}
    comps = sccs(nodes, adj)
    comp_of = {v: i for i, c in enumerate(comps) for v in c}
    level: dict[int, int] = {}
    for i, c in enumerate(comps):  # Tarjan emits components sinks first
        succ = {comp_of[w] for v in c for w in adj[v]} - {i}
        level[i] = 1 + max((level[j] for j in succ), default=0)
    return {
        "edges": len(edges),
        "sccs": [c for c in comps if len(c) > 1],
        "simple_cycles": simple_cycles(nodes, adj),
        "levels": max(level.values(), default=0),
        "in_scc": [e for e in sorted(edges) if comp_of[e[0]] == comp_of[e[1]]],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--package", type=Path, default=Path(__file__).resolve().parents[1] / "mixer")
    ap.add_argument("--layers", help="ranks low to high, ':' between ranks, ',' within one")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--edges", action="store_true", help="list every edge with its kind")
    args = ap.parse_args()
    nodes, kinds, lines = build(args.package.resolve())
    runtime = {e: k for e, k in kinds.items() if k != "typing"}
    module = {e: k for e, k in runtime.items() if k == "module"}
    res = {"package": str(args.package), "nodes": len(nodes), "py_files": len(lines)}
    res["long_files"] = {f: n for f, n in lines.items() if n > LONG}
    res["all"], res["module"] = analyse(nodes, runtime), analyse(nodes, module)
    res["typing_only_edges"] = sum(k == "typing" for k in kinds.values())
    if args.layers:
        rank = {"__init__": 0}
        for r, names in enumerate(args.layers.split(":"), start=1):
            rank.update({n.strip(): r for n in names.split(",") if n.strip()})
        res["upward_definition"] = "--layers: rank(A) < rank(B)"
        res["unranked"] = [v for v in nodes if v not in rank]
        up = [
            e for e in sorted(runtime) if e[0] in rank and e[1] in rank and rank[e[0]] < rank[e[1]]
        ]
    else:
        res["upward_definition"] = "no --layers: edges inside a cycle (SCC), all edges"
        up = res["all"]["in_scc"]
    res["upward_edges"] = [f"{a} -> {b} ({runtime[a, b]})" for a, b in up]
    for key in ("all", "module"):
        res[key]["in_scc"] = len(res[key]["in_scc"])
    if args.edges:
        res["edge_list"] = [f"{a} -> {b} ({k})" for (a, b), k in sorted(kinds.items())]
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print(f"package: {res['package']}")
    print(f"nodes: {res['nodes']}  .py files: {res['py_files']}")
    print(
        f"files over {LONG} lines: "
        + (", ".join(f"{f} ({n})" for f, n in res["long_files"].items()) or "none")
    )
    for key, title in (("all", "all runtime edges"), ("module", "module-level edges")):
        r = res[key]
        print(
            f"{title}: {r['edges']} edges, {r['levels']} levels, {len(r['sccs'])} SCCs"
            f" ({r['in_scc']} edges inside them), {r['simple_cycles']} simple cycles"
        )
        for c in r["sccs"]:
            print("  SCC: " + ", ".join(c))
    print(f"typing-only edges (in neither figure): {res['typing_only_edges']}")
    print(f"upward edges ({res['upward_definition']}): {len(up)}")
    for e in res["upward_edges"]:
        print(f"  {e}")
    if args.layers:
        print("unranked (edges not judged): " + (", ".join(res["unranked"]) or "none"))
    for e in res.get("edge_list", []):
        print(f"  {e}")


if __name__ == "__main__":
    main()
