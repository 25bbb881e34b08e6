"""Learners by name: importing this package registers every method."""

# Importing the learner modules registers them: mixer, moe-gd, moe-frozen, single, ... from
# mixture; one-for-all, coda, cavia, ncf from baselines.
from mixer.methods import baselines, mixture  # noqa: F401
from mixer.methods.base import METHODS, Learner, method_class, register_method

__all__ = ["METHODS", "Learner", "method_class", "register_method"]
