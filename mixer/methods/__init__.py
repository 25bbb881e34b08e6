"""Learners by name: importing this package registers every method."""

from mixer.methods import mixture  # noqa: F401  (registers mixer, moe-gd, moe-frozen, single, ...)
from mixer.methods.base import METHODS, Learner, method_class, register_method

__all__ = ["METHODS", "Learner", "method_class", "register_method"]
