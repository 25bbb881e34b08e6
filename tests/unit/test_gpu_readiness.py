"""What a CUDA-graph capture of an inner step needs, checked on CPU: no tensor made without an
explicit device, no host synchronisation, the same shapes at every step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mixer.config import resolve_method, validate_config
from mixer.methods import learner_class
from mixer.training.batches import EnvBatch
from mixer.training.loops import add_proximal_

torch.set_num_threads(1)


def make_learner(backbone="geps", learner="mixer"):
    config = validate_config(
        {"methods": {"m": {"learner": learner, "backbone": backbone, "n_experts": 2,
                           "context_dim": 4, "width": 16, "depth": 2,
                           "context_init": "random"}}}
    )  # fmt: skip
    cfg = resolve_method(config, "m")
    return learner_class(learner)(cfg, 2, 6, torch.device("cpu"), seed=0)


def make_batch(n_envs=6, n_traj=3, n_times=6):
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(n_envs, n_traj, n_times, 2, generator=gen).cumsum(dim=2) * 0.1
    t = torch.arange(n_times, dtype=torch.float32).repeat(n_envs, 1) * 0.2
    return EnvBatch(X, t, np.arange(n_envs), np.zeros(n_envs, dtype=int))


def inner_step(learner, batch, params, opt, anchors):
    loss = learner.loss(batch)
    grads = torch.autograd.grad(loss, params)
    for p, g in zip(params, grads, strict=True):
        p.grad = g
    add_proximal_(params, anchors, 0.5, [1.0] * len(params))
    opt.step(learner.active_experts())
    return loss


@pytest.mark.parametrize("backbone", ["geps", "coda"])
def test_inner_step_makes_no_tensor_without_a_device(backbone, layer_form):
    from mixer.training.optim import make_optimizer

    learner, batch = make_learner(backbone), make_batch()
    learner.model.set_gate(torch.randn(5, 2, generator=torch.Generator().manual_seed(1)))
    params = learner.model_parameters()
    opt = make_optimizer("adabelief", params, 1e-3)
    anchors = [p.detach().clone() for p in params]
    inner_step(learner, batch, params, opt, anchors)  # warm-up: grids checked, state built
    try:
        torch.set_default_device("meta")  # a tensor made without a device lands on meta
        loss = inner_step(learner, batch, params, opt, anchors)
    finally:
        torch.set_default_device(None)
    assert loss.device.type == "cpu"
    assert all(p.device.type == "cpu" for p in params)


@pytest.fixture
def host_syncs(monkeypatch):
    """Counts the Tensor methods that wait for the device's result."""
    calls = []
    for name in ("item", "cpu", "tolist", "numpy", "__bool__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _name=name, _original=original, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return calls


@pytest.mark.parametrize("backbone", ["geps", "coda"])
def test_inner_steps_do_not_synchronise_with_the_host_and_keep_their_shapes(
    backbone, host_syncs, layer_form
):
    from mixer.training.optim import make_optimizer

    learner, batch = make_learner(backbone), make_batch()
    learner.model.set_gate(torch.randn(5, 2, generator=torch.Generator().manual_seed(1)))
    model, ctx = learner.model_parameters(), learner.context_parameters()
    opt_model = make_optimizer("adabelief", model, 1e-3)
    opt_ctx = make_optimizer("adabelief", ctx, 1e-3)
    anchors_model = [p.detach().clone() for p in model]
    anchors_ctx = [p.detach().clone() for p in ctx]
    inner_step(learner, batch, model, opt_model, anchors_model)  # warm-up (grid check)
    host_syncs.clear()
    shapes = set()
    for _ in range(3):
        for params, opt, anchors in (
            (ctx, opt_ctx, anchors_ctx),
            (model, opt_model, anchors_model),
        ):
            loss = inner_step(learner, batch, params, opt, anchors)
            shapes.add(tuple(loss.shape))
    assert host_syncs == []
    assert shapes == {()}
    learner.refit_gate(batch)  # the refit may synchronise: it is outside the inner step


def test_training_loop_synchronises_once_per_outer_step_outside_refits(host_syncs):
    learner, batch = make_learner(), make_batch()
    learner.cfg["gate_every"] = 10**6  # no refit inside this run
    learner.cfg["training"].update(outer_steps=2, n_ctx=3, n_model=3, checkpoint_every=0)
    learner._train = batch
    from mixer.training.loops import train_alternating

    host_syncs.clear()
    train_alternating(learner, batch, learner.cfg["training"])
    # Per outer step two: the mean loss with the contexts' non-finite count (one .tolist)
    # and the routing record (.tolist).
    assert host_syncs.count("tolist") == 4 and "item" not in host_syncs
    assert set(host_syncs) <= {"tolist", "__bool__"}
    assert host_syncs.count("__bool__") <= 1  # the first rollout's grid check


def test_cavia_meta_step_makes_no_tensor_without_a_device_and_does_not_synchronise(host_syncs):
    """CAVIA's meta-gradient (forward sensitivities, hand-written reverse pass) is capturable."""
    config = validate_config(
        {"methods": {"m": {"learner": "cavia", "context_dim": 3, "width": 16, "depth": 2}}}
    )
    learner = learner_class("cavia")(resolve_method(config, "m"), 2, 6, torch.device("cpu"), 0)
    batch, params = make_batch(), learner.model_parameters()
    torch.autograd.grad(learner.loss(batch), params)  # warm-up: the grid check
    host_syncs.clear()
    try:
        torch.set_default_device("meta")
        grads = torch.autograd.grad(learner.loss(batch), params)
    finally:
        torch.set_default_device(None)
    assert host_syncs == []
    pairs = zip(grads, params, strict=True)
    assert all(g.device.type == "cpu" and g.shape == p.shape for g, p in pairs)


def test_ncf_step_makes_no_tensor_without_a_device_and_does_not_synchronise(host_syncs):
    """NCF's loss (pool, Taylor rollout with its hand-written reverse pass) is capturable."""
    config = validate_config(
        {"methods": {"m": {"learner": "ncf", "context_dim": 3, "width": 16, "depth": 2}}}
    )
    learner = learner_class("ncf")(resolve_method(config, "m"), 2, 6, torch.device("cpu"), 0)
    batch = make_batch()
    params = learner.model_parameters() + learner.context_parameters()
    torch.autograd.grad(learner.loss(batch), params, allow_unused=True)  # warm-up: grid check
    host_syncs.clear()
    try:
        torch.set_default_device("meta")
        grads = torch.autograd.grad(learner.loss(batch), params, allow_unused=True)
    finally:
        torch.set_default_device(None)
    assert host_syncs == []
    assert all(g is None or g.device.type == "cpu" for g in grads)
