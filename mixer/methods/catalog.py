"""Learners by config name, and the hyper-parameters each declares, without importing torch.

A learner is one class (a :class:`mixer.methods.learner.Learner` subclass) that declares its own
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

import json
import pkgutil
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from mixer.errors import ConfigError
from mixer.registry import Registry

TARGET_PATTERN = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"
CATALOG_FILE = Path(__file__).with_name("catalog.json")
CATALOG_FIX = (
    "A built-in learner or backbone added or changed since the catalog was written is listed "
    "only after `mixer learners --write-catalog`"
)


def _learner_modules() -> list[str]:
    # Every module of this package: each registers the learners it defines.
    return [f"{__package__}.{m.name}" for m in pkgutil.iter_modules([str(CATALOG_FILE.parent)])]


# Learner classes by config name (``@register_method("name", ...)``); a user's learner is
# ``package.module:Class``.
LEARNERS = Registry("learner", "mixer.methods.learner:Learner", _learner_modules)
register_method = LEARNERS.register
METHODS = LEARNERS.entries


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
    any_backbone: bool = False

    def keys(self, backbone: str | None = None) -> dict:
        """Every key a method entry of this learner may set (with ``backbone``'s own keys)."""
        keys = dict(self.hyperparameters)
        if self.backbones:
            keys["backbone"] = {
                "description": "Expert architecture: " + ", ".join(self.backbones) + ".",
                "enum": list(self.backbones),
                "default": self.default_backbone,
            }
            if self.any_backbone:  # any Expert subclass, as 'package.module:Class' too
                keys["backbone"]["description"] += " Or your own, as 'package.module:Class'."
                keys["backbone"]["anyOf"] = [
                    {"enum": keys["backbone"].pop("enum")},
                    {"type": "string", "pattern": TARGET_PATTERN},
                ]
            keys.update(backbone_spec(backbone or self.default_backbone)["hyperparameters"])
        return keys


def spec_of_class(name: str, cls) -> LearnerSpec:
    """The declarations of a learner class (imports nothing new)."""
    from mixer.models import BACKBONES  # the caller already imported torch with the class

    backbones = cls.backbones
    if backbones == "all":
        backbones = tuple(BACKBONES.names())
    return LearnerSpec(
        name=name,
        target=f"{cls.__module__}:{cls.__qualname__}",
        hyperparameters=cls.declared_hyperparameters(),
        backbones=tuple(backbones or ()),
        default_backbone=cls.default_backbone if backbones else None,
        fixed_n_experts=cls.fixed_n_experts,
        architecture=cls.architecture,
        any_backbone=cls.backbones == "all",
    )


def learner_spec(name: str) -> LearnerSpec:
    """A learner's declarations: from the catalog (built-in) or its class (``module:Class``)."""
    if ":" in name:
        return spec_of_class(name, LEARNERS.get(name))
    learners = load_catalog()["learners"]
    if name not in learners:
        raise ConfigError(
            f"unknown learner '{name}'. Valid names: {', '.join(sorted(learners))}; or "
            f"'package.module:Name' for your own. {CATALOG_FIX}."
        )
    entry = learners[name]
    return LearnerSpec(name=name, **{**entry, "backbones": tuple(entry["backbones"])})


def backbone_spec(name: str) -> dict:
    """A backbone's target and keys: from the catalog, or its class (``module:Class``)."""
    if ":" in name:
        from mixer.models import backbone_class  # a user's backbone: torch comes with it

        cls = backbone_class(name)
        return {
            "target": f"{cls.__module__}:{cls.__qualname__}",
            "hyperparameters": cls.hyperparameters,
        }
    backbones = load_catalog()["backbones"]
    if name not in backbones:
        raise ConfigError(
            f"unknown backbone '{name}'. Valid names: {', '.join(backbones)}; or "
            f"'package.module:Name' for your own. {CATALOG_FIX}."
        )
    return backbones[name]


def learner_class(name: str):
    """The class behind a learner name (imports torch)."""
    return LEARNERS.get(name)


def learner_names() -> list[str]:
    """Every built-in learner name (from the catalog: no torch)."""
    return sorted(load_catalog()["learners"])


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

    LEARNERS.load()
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
            "any_backbone": spec.any_backbone,
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
