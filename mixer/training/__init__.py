"""Training toolkit: the loops, optimisers, checkpoints, progress, batches and test-time
adaptation that learners are trained with, public for a learner's own loop::

    from mixer.training import RunState, fit_new_contexts, make_optimizer, train_joint

The names are loaded on first use (each module imports torch).
"""

from __future__ import annotations

from mixer.registry import lazy_exports

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
    "mixer.training.optim": ("lr_factor", "make_optimizer", "step_schedule_factor"),
    "mixer.training.progress": ("report", "reporting"),
}
__all__, __getattr__, __dir__ = lazy_exports("mixer.training", globals(), _EXPORTS)
