"""A learner's own training loop keeps the suite's bookkeeping through the public toolkit
(`mixer.training.RunState`): a log row per outer step, and a killed run resumes from its
checkpoint to end exactly where an uninterrupted one does."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from mixer.training import RunState, make_optimizer
from tests.helpers import cpu_batch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from meanfield import MeanField

CFG = {"outer_steps": 4, "checkpoint_every": 1, "n_ctx": 2, "n_model": 2, "lr_ctx": 1e-2}


class Killed(Exception):
    pass


def custom_fit(learner, batch, checkpoint, kill_at=None):
    """Plain Adam on everything, two inner steps per outer step: a loop of the user's own."""
    params = learner.context_parameters() + learner.model_parameters()
    opt = make_optimizer("adam", params, 1e-2)
    run = RunState(learner, CFG, {"opt": opt}, checkpoint)
    for outer in run.outer_steps():
        if outer == kill_at:
            raise Killed
        losses = []
        for _ in range(2):
            opt.zero_grad(set_to_none=True)
            loss = learner.loss(batch)
            loss.backward()
            opt.step()
            losses.append(loss.detach())
        run.log.inner_steps += 2
        run.end_outer_step(outer, losses, opt)
    return run


def meanfield(batch):
    cfg = {"width": 8, "solver": {"method": "rk4", "substeps": 1}, "adaptation": {}}
    torch.manual_seed(0)  # its network is drawn from torch's global generator
    return MeanField(cfg, 2, batch.n_envs, torch.device("cpu"), seed=0)


def test_a_custom_loop_logs_checkpoints_and_resumes(lv, tmp_path):
    batch = cpu_batch(lv, "train", trajectories=2)
    whole = meanfield(batch)
    run = custom_fit(whole, batch, tmp_path / "a.pt")
    assert [r["outer_step"] for r in run.log.rows] == [1, 2, 3, 4] and run.log.inner_steps == 8
    killed = meanfield(batch)
    with pytest.raises(Killed):
        custom_fit(killed, batch, tmp_path / "b.pt", kill_at=2)
    resumed = meanfield(batch)
    again = custom_fit(resumed, batch, tmp_path / "b.pt")
    assert again.start == 2 and [r["outer_step"] for r in again.log.rows] == [1, 2, 3, 4]
    assert torch.equal(resumed.ctx, whole.ctx)
    for mine, theirs in zip(resumed.model_parameters(), whole.model_parameters(), strict=True):
        assert torch.equal(mine, theirs)
    assert again.log.rows[-1]["loss"] == run.log.rows[-1]["loss"]
