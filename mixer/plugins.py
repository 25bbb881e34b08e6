"""User classes named in the config as ``package.module:Class`` (ODE systems, learners)."""

from __future__ import annotations

import importlib

from mixer.errors import ConfigError


def import_class(target: str, base: type, kind: str):
    """The subclass of ``base`` named ``target``; importing its module runs that module's code.

    ``kind`` names what it is in error messages (e.g. "system", "learner").
    """
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(
            f"{kind} '{target}': cannot import module '{module_name}' ({err}). "
            "Fix: make the module importable (installed, or on PYTHONPATH)."
        ) from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(
            f"{kind} '{target}': '{class_name}' is not a {base.__name__} subclass in module "
            f"'{module_name}'. Fix: subclass {base.__module__.rsplit('.', 1)[0]}.{base.__name__}."
        )
    return cls
