"""Learners: one class per module, registered under config names (see registry.py).

Importing this package does not import torch (the workflow plans runs without it); the
learner classes are imported on demand by :func:`learner_class`.
"""

from mixer.methods.catalog import (
    METHODS,
    LearnerSpec,
    learner_class,
    learner_names,
    learner_spec,
    register_method,
)

__all__ = [
    "METHODS",
    "Learner",
    "LearnerSpec",
    "learner_class",
    "learner_names",
    "learner_spec",
    "register_method",
]


def __getattr__(name: str):
    # `from mixer.methods import Learner` for user learners: the ABC imports torch, so it is
    # loaded only when asked for.
    if name == "Learner":
        from mixer.methods.learner import Learner

        return Learner
    raise AttributeError(f"module 'mixer.methods' has no attribute {name!r}")
