"""The source files a result depends on, found by reading imports, and their hash.

Snakemake does not see a change of imported code, so every rule puts a hash of the code it
runs in its ``params``: a changed file re-runs exactly the rules whose code imports it. The
files are found statically (``ast``, nothing is imported): from a rule's entry modules, every
``import``/``from ... import``, ``importlib.import_module("literal")`` and dotted module name
in a string (the lazy export tables of ``mixer.models`` and ``mixer.training``), at module
level or inside functions, is followed within the ``mixer`` package and within the folder of a
user's own module (``package.module:Class``); other packages (torch, numpy, ...) are not hashed.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import re
from functools import cache
from pathlib import Path

import mixer
from mixer.errors import ConfigError

PACKAGE_DIR = Path(mixer.__file__).resolve().parent
DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")


def module_file(name: str, root: Path) -> Path | None:
    """The file of dotted module ``name`` under ``root`` (the folder holding its top package)."""
    base = root.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


@cache
def _imported_names(path: Path) -> frozenset[str]:
    """Every module name ``path`` may import (for ``from a import b``: ``a`` and ``a.b``)."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    package = _package_of(path)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(filter(None, [*parts, base]))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", None) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if DOTTED.fullmatch(node.value):  # a lazy export table: {"mixer.models.geps": ...}
                names.add(node.value)
    return frozenset(names)


def _package_of(path: Path) -> str:
    """The dotted package a file belongs to (its folders up to the last ``__init__.py``)."""
    parts, folder = [], path.parent
    while (folder / "__init__.py").is_file():
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts)


@cache
def closure(*entries: tuple[str, Path]) -> tuple[tuple[str, Path], ...]:
    """Every source file reached from ``entries`` ((module name, root folder) pairs), as
    (its path relative to its root, its path), sorted.

    Importing ``a.b.c`` runs ``a/__init__.py`` and ``a/b/__init__.py`` too, so those count.
    """
    seen: dict[Path, str] = {}
    todo = list(entries)
    while todo:
        name, root = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            path = module_file(".".join(parts[:i]), root)
            if path is None or path in seen:
                continue
            seen[path] = str(path.relative_to(root))
            for imported in _imported_names(path):
                top = imported.split(".")[0]
                if top == parts[0]:  # within the same package (the suite's, or a user's)
                    todo.append((imported, root))
                elif top == "mixer":  # a user's module importing the suite
                    todo.append((imported, PACKAGE_DIR.parent))
    return tuple(sorted((name, path) for path, name in seen.items()))


def user_module(target: str) -> tuple[str, Path]:
    """(module name, root folder) of a ``package.module:Class`` target, found without running
    the module itself (its parent packages are imported to locate it)."""
    module = target.partition(":")[0]
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as err:
        raise ConfigError(f"'{target}': cannot locate module '{module}' ({err})") from None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        raise ConfigError(
            f"'{target}': module '{module}' not found. Fix: make it importable (installed, "
            "or on PYTHONPATH)."
        )
    origin = Path(spec.origin).resolve()
    depth = module.count(".") + (origin.name == "__init__.py")
    return module, origin.parents[depth]


def files_of(modules: list[str], targets: list[str] = ()) -> tuple[tuple[str, Path], ...]:
    """The files of ``mixer`` modules and of ``module:Class`` targets (the package's or a
    user's), with everything they import: (name relative to its root, path) pairs."""
    modules = [*modules, *(t.partition(":")[0] for t in targets if t.startswith("mixer."))]
    entries = [(m, PACKAGE_DIR.parent) for m in modules]
    entries += [user_module(t) for t in targets if not t.startswith("mixer.")]
    return closure(*sorted(set(entries)))


def source_hash(modules: list[str], targets: list[str] = ()) -> str:
    """SHA-256 (16 hex digits) of the files :func:`files_of` finds: path, then content."""
    return _hash_of(tuple(files_of(modules, targets)))


@cache  # a workflow asks once per job; the files do not change while it plans
def _hash_of(files: tuple[tuple[str, Path], ...]) -> str:
    # Names relative to their roots: a copy of the tree (another checkout) hashes alike.
    digest = hashlib.sha256()
    for name, path in files:
        digest.update(name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
