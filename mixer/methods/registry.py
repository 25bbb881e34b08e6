"""Learners by config name, and the hyper-parameters each declares, without importing torch.

A learner is one class (a :class:`mixer.methods.base.Learner` subclass) that declares its own
keys. The built-in learners register themselves under their config names with
:func:`register_method`; a user's learner is named in the config as ``package.module:Class``,
exactly like a user's ODE system.

The workflow plans a run (``snakemake -n``) without importing torch, so the declarations of
the built-in learners and backbones are read from ``catalog.json`` beside this module. That
file is written from the classes by ``mixer learners --write-catalog``, and a unit test fails
when it is out of date. A ``module:Class`` learner is imported to read its declarations:
importing a user's module runs its code (README, "Extending the suite").
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from mixer.errors import ConfigError
from mixer.plugins import import_class

CATALOG_FILE = Path(__file__).with_name("catalog.json")
CATALOG_FIX = "Fix: run `mixer learners --write-catalog` after changing a built-in learner."

# Config name -> learner class, filled by @register_method when mixer.methods is imported.
METHODS: dict[str, type] = {}


def register_method(*names: str):
    """Class decorator: make a learner available under each of ``names`` in the config."""

    def decorate(cls):
        for name in names:
            METHODS[name] = cls
        return cls

    return decorate


@dataclass(frozen=True)
class LearnerSpec:
    """What the config validator needs to know about a learner (plain data, no torch).

    ``hyperparameters``: key -> JSON-schema fragment (type, default, description), inherited
    keys included. ``backbones``: the expert architectures the learner accepts through its
    ``backbone`` key (empty: a fixed architecture, no ``backbone`` key). ``fixed_n_experts``:
    a mixture learner that always uses this many experts whatever ``n_experts`` says.
    """

    name: str
    target: str
    hyperparameters: dict = field(default_factory=dict)
    backbones: tuple[str, ...] = ()
    default_backbone: str | None = None
    fixed_n_experts: int | None = None
    architecture: str | None = None

    def keys(self, backbone: str | None = None) -> dict:
        """Every key a method entry of this learner may set (with ``backbone``'s own keys)."""
        keys = dict(self.hyperparameters)
        if self.backbones:
            keys["backbone"] = {
                "description": "Expert architecture: " + ", ".join(self.backbones) + ".",
                "enum": list(self.backbones),
                "default": self.default_backbone,
            }
            keys.update(backbone_spec(backbone or self.default_backbone)["hyperparameters"])
        return keys


def spec_of_class(name: str, cls) -> LearnerSpec:
    """The declarations of a learner class (imports nothing new)."""
    from mixer.models import BACKBONES  # the caller already imported torch with the class

    backbones = cls.backbones
    if backbones == "all":
        backbones = tuple(BACKBONES)
    return LearnerSpec(
        name=name,
        target=f"{cls.__module__}:{cls.__qualname__}",
        hyperparameters=cls.declared_hyperparameters(),
        backbones=tuple(backbones or ()),
        default_backbone=cls.default_backbone if backbones else None,
        fixed_n_experts=cls.fixed_n_experts,
        architecture=cls.architecture,
    )


def import_learner(target: str):
    """The learner class named ``package.module:Class`` (importing the module runs its code)."""
    from mixer.methods.base import Learner

    return import_class(target, Learner, "learner")


def learner_spec(name: str) -> LearnerSpec:
    """A learner's declarations: from the catalog (built-in) or its class (``module:Class``)."""
    if ":" in name:
        return spec_of_class(name, import_learner(name))
    learners = load_catalog()["learners"]
    if name not in learners:
        raise ConfigError(
            f"unknown learner '{name}'. Valid learners: {', '.join(sorted(learners))}; "
            "or 'package.module:ClassName' for your own Learner subclass."
        )
    entry = learners[name]
    return LearnerSpec(name=name, **{**entry, "backbones": tuple(entry["backbones"])})


def backbone_spec(name: str) -> dict:
    backbones = load_catalog()["backbones"]
    if name not in backbones:
        raise ConfigError(f"unknown backbone '{name}'. Valid backbones: {', '.join(backbones)}")
    return backbones[name]


def learner_class(name: str):
    """The class behind a learner name (imports torch)."""
    if ":" in name:
        return import_learner(name)
    load_builtin_learners()
    if name not in METHODS:
        raise ConfigError(f"unknown learner '{name}'. Valid learners: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def learner_names() -> list[str]:
    """Every built-in learner name (from the catalog: no torch)."""
    return sorted(load_catalog()["learners"])


def load_builtin_learners() -> None:
    """Import every module of this package: each registers the learners it defines."""
    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
        importlib.import_module(f"{__package__}.{module.name}")


@cache
def load_catalog() -> dict:
    try:
        return json.loads(CATALOG_FILE.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"learner catalog {CATALOG_FILE} unreadable ({err}). {CATALOG_FIX}"
        ) from None


def build_catalog() -> dict:
    """The catalog as the classes declare it now (imports torch and every built-in learner)."""
    from mixer.models import BACKBONES

    load_builtin_learners()
    learners = {}
    for name in sorted(METHODS):
        spec = spec_of_class(name, METHODS[name])
        learners[name] = {
            "target": spec.target,
            "hyperparameters": spec.hyperparameters,
            "backbones": list(spec.backbones),
            "default_backbone": spec.default_backbone,
            "fixed_n_experts": spec.fixed_n_experts,
            "architecture": spec.architecture,
        }
    backbones = {
        name: {
            "target": f"{cls.__module__}:{cls.__qualname__}",
            "hyperparameters": cls.hyperparameters,
        }
        for name, cls in BACKBONES.items()
    }
    return {"learners": learners, "backbones": backbones}


def write_catalog() -> Path:
    text = json.dumps(build_catalog(), indent=1, sort_keys=True) + "\n"
    CATALOG_FILE.write_text(text)
    load_catalog.cache_clear()
    return CATALOG_FILE
