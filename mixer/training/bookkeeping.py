"""Resume, logging and checkpoints of an outer-step training loop, public for custom loops.

:class:`RunState` is what :func:`~mixer.training.loops.train_alternating` and
:func:`~mixer.training.loops.train_joint` use; a learner with its own loop gets the same
resume-from-checkpoint, one log row (and NaN check) per outer step, progress lines and
periodic checkpoints with::

    run = RunState(learner, cfg, {"opt": opt}, checkpoint)  # resumes when it is this run's
    for outer in run.outer_steps():
        losses = [...]                                    # the inner steps, loss.detach()
        run.log.inner_steps += n_inner
        run.end_outer_step(outer, losses, opt)            # may raise Diverged
    return run.log
"""

from __future__ import annotations

import csv
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from mixer.records.atomic import atomic_write
from mixer.training.checkpoints import as_checkpoint
from mixer.training.progress import report


class Diverged(Exception):
    """The training loss became NaN or infinite."""


@dataclass
class TrainLog:
    rows: list[dict] = field(default_factory=list)
    routing: list[list[int]] = field(default_factory=list)
    seconds: float = 0.0
    inner_steps: int = 0
    # The state of lowest validation MSE so far (training's val_every > 0), or None:
    # {"outer_step", "inner_steps", "mse_val", "learner": the learner's state_dict on the CPU}.
    best_val: dict | None = None

    def write_csv(self, path: Path) -> None:
        if not self.rows:
            return

        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(self.rows[0]))
                writer.writeheader()
                writer.writerows(self.rows)

        atomic_write(path, write)


class RunState:
    """One run of a loop: its log, where it starts (a resumed run: after its checkpoint), and
    the bookkeeping at the end of each outer step.

    Args:
        learner: has ``state_dict()``/``load_state_dict()``, a ``generator``, ``log_extras()``
            and, optionally, a ``device``.
        cfg: the ``training`` block (``outer_steps``, ``checkpoint_every``).
        optimizers: name -> optimiser, saved in and restored from the checkpoint.
        checkpoint: a :class:`~mixer.training.checkpoints.Checkpoint`, a path, or None.
    """

    def __init__(self, learner, cfg: dict, optimizers: dict, checkpoint=None):
        self.learner, self.cfg, self.optimizers = learner, cfg, optimizers
        self.checkpoint = checkpoint
        self.log, self.start = resume(checkpoint, learner, optimizers)
        self.n_outer = cfg["outer_steps"]
        self.val_every = cfg.get("val_every") or 0
        self._began = 0.0

    def outer_steps(self):
        """The outer steps still to run, each timed from when it is handed out."""
        for outer in range(self.start, self.n_outer):
            self._began = time.perf_counter()
            yield outer

    def end_outer_step(self, outer: int, losses: list, opt, routing=None) -> None:
        """Log row (mean loss, ``opt``'s first learning rate), NaN check, then a checkpoint
        every ``checkpoint_every`` outer steps."""
        end_outer_step(
            self.log, outer, losses, self._began, opt, self.learner, routing, self.n_outer
        )
        if self.val_every:
            track_validation(self.log, self.learner, outer, self.n_outer, self.val_every)
        maybe_checkpoint(
            self.checkpoint, self.cfg, outer, self.n_outer, self.learner, self.optimizers, self.log
        )


def resume(checkpoint, learner, optimizers: dict) -> tuple[TrainLog, int]:
    """(log, first outer step): a fresh start, or the state of ``checkpoint`` when it holds
    this run's own (see :class:`mixer.training.checkpoints.Checkpoint`)."""
    checkpoint = as_checkpoint(checkpoint)
    state = None if checkpoint is None else checkpoint.load(getattr(learner, "device", None))
    if state is None:
        return TrainLog(), 0
    learner.load_state_dict(state["learner"])
    for key, opt in optimizers.items():
        opt.load_state_dict(state[key])
    learner.generator.set_state(state["generator"].cpu())
    start = state["outer_step"]
    print(f"resumed from {checkpoint.path} at outer step {start}", file=sys.stderr, flush=True)
    return TrainLog(**state["log"]), start


def end_outer_step(log: TrainLog, outer, losses, began, opt, learner, routing, n_outer) -> None:
    """The one host synchronisation of an outer step: mean loss, NaN check, log row.

    Contexts are checked too: a context entry that no expert reads (a split context's chunk
    of an expert the environment is not routed to) can become NaN while the loss stays
    finite, and would only surface when the contexts are scored.
    """
    loss = torch.stack(losses).mean()
    bad = [(~torch.isfinite(p.detach())).sum().to(loss) for p in learner.context_parameters()]
    values = torch.stack([loss.detach(), *bad]).tolist()
    mean_loss, non_finite = values[0], int(sum(values[1:]))
    log.seconds += time.perf_counter() - began
    if not math.isfinite(mean_loss):
        raise Diverged(f"loss became {mean_loss} at outer step {outer + 1}")
    if non_finite:
        raise Diverged(
            f"{non_finite} context entries became NaN or inf at outer step {outer + 1} "
            f"(the loss, {mean_loss:.4g}, stayed finite: entries no expert reads)"
        )
    log.routing.append(routing.tolist() if routing is not None else [])
    log.rows.append(
        {
            "outer_step": outer + 1,
            "inner_steps": log.inner_steps,
            "loss": mean_loss,
            "lr_model": opt.param_groups[0]["lr"],
            "seconds": round(log.seconds, 4),
            **learner.log_extras(),
        }
    )
    report(log.rows[-1], n_outer)


def track_validation(log: TrainLog, learner, outer: int, n_outer: int, every: int) -> None:
    """Every ``every`` outer steps and after the last: the validation MSE into the log row
    (``mse_val``, empty on the other rows) and, when it is the lowest so far, a copy of the
    learner's state as ``log.best_val``. Not counted in the step's training seconds."""
    row = log.rows[-1]
    row["mse_val"] = None
    if (outer + 1) % every and outer + 1 < n_outer:
        return
    mse = learner.validation_mse()
    row["mse_val"] = mse
    if math.isfinite(mse) and (log.best_val is None or mse < log.best_val["mse_val"]):
        state = {key: _to_cpu(value) for key, value in learner.state_dict().items()}
        log.best_val = {
            "outer_step": outer + 1,
            "inner_steps": log.inner_steps,
            "mse_val": mse,
            "learner": state,
        }


def _to_cpu(value):
    """A copy on the CPU of a state entry (tensors, and mappings or lists of them)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: _to_cpu(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_cpu(item) for item in value)
    return value


def maybe_checkpoint(checkpoint, cfg, outer, n_outer, learner, optimizers: dict, log) -> None:
    """Every ``checkpoint_every`` outer steps (not after the last): write, then rename."""
    every = cfg.get("checkpoint_every") or 0
    if checkpoint is None or not every or (outer + 1) % every or outer + 1 >= n_outer:
        return
    as_checkpoint(checkpoint).save(
        {
            "learner": learner.state_dict(),
            **{key: opt.state_dict() for key, opt in optimizers.items()},
            "log": asdict(log),  # plain values: read back with weights_only=True
            "outer_step": outer + 1,
            "generator": learner.generator.get_state(),
        }
    )
