"""One registry style for every extension point: learners, backbones, ODE systems, generators.

A built-in entry registers itself under its config name with the registry's decorator, in a
module the registry lists (imported on first lookup). A user's entry is never registered: the
config names it as ``package.module:Name`` and it is imported from there, checked against the
registry's base class. The same two ways hold for every kind, with the same messages.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

from mixer.errors import ConfigError


class Registry:
    """Named entries of one kind.

    Args:
        kind: what an entry is, in messages ("learner", "backbone", ...).
        base: ``module:Class`` every entry must subclass (imported only when checked, so a
            registry of torch classes costs no torch import), or None for plain callables.
        modules: the modules whose import registers the built-in entries, in listing order;
            or a function returning them (a package scanned on first use).
        fix: the sentence a message about an unknown name ends with.
    """

    def __init__(
        self,
        kind: str,
        base: str | None,
        modules: Iterable[str] | Callable[[], Iterable[str]] = (),
        fix: str = "",
    ):
        self.kind, self.base, self.fix = kind, base, fix
        self._modules = modules
        self.entries: dict[str, object] = {}
        self._loaded = False

    def register(self, *names: str):
        """Decorator: the entry under each of ``names`` (none: the class's own ``name``)."""

        def decorate(entry):
            for name in names or (entry.name,):
                self.entries[name] = entry
            return entry

        return decorate

    def modules(self) -> list[str]:
        return list(self._modules() if callable(self._modules) else self._modules)

    def load(self) -> None:
        """Import the built-in modules (each registers what it defines)."""
        if not self._loaded:
            for module in self.modules():
                importlib.import_module(module)
            self._loaded = True

    def names(self) -> list[str]:
        """The built-in names, in the order of their modules (then of registration)."""
        self.load()
        order = {m: i for i, m in enumerate(self.modules())}
        entries = enumerate(self.entries.items())
        keyed = sorted((order.get(e.__module__, len(order)), i, n) for i, (n, e) in entries)
        return [name for *_, name in keyed]

    def __iter__(self):
        return iter(self.names())

    def items(self) -> list[tuple[str, object]]:
        return [(name, self.entries[name]) for name in self.names()]

    def get(self, name: str):
        """The entry ``name``: built-in, or ``package.module:Name`` imported (and checked)."""
        if ":" in name:
            return import_class(name, self.base_class(), self.kind)
        self.load()
        if name not in self.entries:
            fix = f"; {self.fix}" if self.fix else ""
            raise ConfigError(
                f"unknown {self.kind} '{name}'. Valid names: {', '.join(self.names())}; or "
                f"'package.module:Name' for your own{fix}"
            )
        return self.entries[name]

    def base_class(self) -> type | None:
        if self.base is None:
            return None
        module, _, name = self.base.partition(":")
        return getattr(importlib.import_module(module), name)


def import_class(target: str, base: type | None, kind: str):
    """The object named ``package.module:Name`` (a ``base`` subclass unless ``base`` is None);
    importing its module runs that module's code."""
    module_name, _, class_name = target.partition(":")
    fix = "Fix: make the module importable (installed, or on PYTHONPATH)."
    try:
        module = importlib.import_module(module_name)
    except SyntaxError as err:
        raise ConfigError(
            f"{kind} '{target}': module '{module_name}' has a syntax error at "
            f"{err.filename}:{err.lineno} ({err.msg}). Fix: correct that line."
        ) from None
    except ImportError as err:
        raise ConfigError(
            f"{kind} '{target}': cannot import module '{module_name}' ({err}). {fix}"
        ) from None
    entry = getattr(module, class_name, None)
    if base is None:
        if not callable(entry):
            raise ConfigError(
                f"{kind} '{target}': '{class_name}' is not a function or class in module "
                f"'{module_name}'."
            )
        return entry
    if not (isinstance(entry, type) and issubclass(entry, base)):
        raise ConfigError(
            f"{kind} '{target}': '{class_name}' is not a {base.__name__} subclass in module "
            f"'{module_name}'. Fix: subclass {base.__module__.rsplit('.', 1)[0]}.{base.__name__}."
        )
    return entry


def lazy_exports(package: str, namespace: dict[str, Any], exports: dict[str, tuple[str, ...]]):
    """``__all__``, ``__getattr__`` and ``__dir__`` for a package whose names are loaded on
    first use (PEP 562): ``exports`` maps module -> the names it gives; ``namespace`` is the
    package's ``globals()``, where each loaded name is then kept."""
    module_of = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str):
        if name not in module_of:
            raise AttributeError(f"module '{package}' has no attribute {name!r}")
        value = getattr(importlib.import_module(module_of[name]), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *module_of})

    return sorted(module_of), __getattr__, __dir__
