"""Training toolkit: the loops, optimisers, checkpoints, progress, batches and test-time
adaptation that learners are trained with, public for a learner's own loop::

    from mixer.training import RunState, fit_new_contexts, make_optimizer, train_joint

The names are loaded on first use (each module imports torch).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "mixer.training.adaptation": ("fit_new_contexts", "per_env_mse"),
    "mixer.training.batches": ("EnvBatch", "make_batch"),
    "mixer.training.bookkeeping": ("Diverged", "RunState", "TrainLog"),
    "mixer.training.checkpoints": ("Checkpoint",),
    "mixer.training.loops": (
        "add_proximal_",
        "proximal_scales",
        "train_alternating",
        "train_joint",
    ),
    "mixer.training.optim": ("make_optimizer", "step_schedule_factor"),
    "mixer.training.progress": ("report", "reporting"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'mixer.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
