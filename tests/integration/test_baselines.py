"""Contract of the docs/METHOD.md §4 baselines, and the checks specific to CAVIA, NCF and CoDA."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from mixer.config import resolve_cell
from mixer.methods import learner_class
from mixer.models import rollout
from mixer.stages.evaluate import evaluate_cell
from mixer.stages.train import train_cell
from mixer.training.adaptation import per_env_mse
from mixer.training.batches import EnvBatch
from tests.helpers import cpu_batch, validated_copy

BASELINES = ("one-for-all", "coda", "cavia", "ncf")
CTX = 2

SMALL = {"width": 16, "depth": 1}
TINY = {
    "training": {"outer_steps": 3, "n_ctx": 2, "n_model": 2, "lr_ctx": 1e-2, "lr_model": 3e-3},
    "adaptation": {"steps": 10},
    "methods": {
        "one-for-all": {"learner": "one-for-all", **SMALL},
        "coda": {"learner": "coda", "context_dim": CTX, **SMALL},
        "cavia": {
            "learner": "cavia",
            "context_dim": CTX,
            "cavia_inner_lr": 0.1,
            "cavia_inner_steps_test": 5,
            **SMALL,
        },
        "ncf": {"learner": "ncf", "context_dim": CTX, "ncf_pool_size": 2, **SMALL},
    },
    "device": "cpu",
}


@pytest.fixture(scope="module")
def config():
    return validated_copy(TINY)


def _learner(config, method, n_envs, seed=0, **overrides):
    cfg = resolve_cell(config, "lv", "default", method, 0)
    cfg.update(overrides)
    return learner_class(cfg["learner"])(cfg, 2, n_envs, torch.device("cpu"), seed=seed)


def _mse(pred, batch):
    return (pred - batch.X).square().mean().item()


@pytest.mark.parametrize("method", BASELINES)
def test_train_and_evaluate_cell(method, tmp_path, config, lotka_volterra):
    cfg = resolve_cell(config, "lv", "default", method, 0)
    cfg["training"]["outer_steps"] = 2
    cfg["training"]["checkpoint_every"] = 1
    train_cell({**cfg, "seed": 0}, lotka_volterra[0], tmp_path)
    metrics = evaluate_cell(tmp_path / "model.pt", lotka_volterra[0], tmp_path / "m.json")
    written = json.loads((tmp_path / "m.json").read_text())
    assert written["status"] == metrics["status"] == "ok"
    assert np.isfinite(written["mse_id"]) and np.isfinite(written["mse_ood"])
    assert written["learner"] == method
    expected = {"one-for-all": "mlp", "coda": "coda", "cavia": "mlp-context-input", "ncf": "ncf"}
    assert written["backbone"] == expected[method]
    if method == "one-for-all":
        assert written["adaptation"] == "none" and written["context_kmeans_ari"] is None
    else:
        assert written["context_dim"] == CTX and written["context_kmeans_ari"] is not None


def test_joint_loop_resumes_from_its_checkpoint(tmp_path, config, lv):
    """A run stopped after a checkpoint and restarted ends where an uninterrupted run ends."""
    train = cpu_batch(lv, "train", trajectories=2)
    full = _learner(config, "coda", train.n_envs)
    full.cfg["training"] = {**full.cfg["training"], "checkpoint_every": 1}
    full.fit(train, tmp_path / "a.pt")

    part = _learner(config, "coda", train.n_envs)
    part.cfg["training"] = {**part.cfg["training"], "checkpoint_every": 1, "outer_steps": 3}
    calls = {"n": 0}
    original = type(part).loss

    def dying(batch, envs=None):
        calls["n"] += 1
        if calls["n"] == 4 + 2:  # inside outer step 2, after checkpoint 1
            raise KeyboardInterrupt
        return original(part, batch, envs)

    part.loss = dying
    with pytest.raises(KeyboardInterrupt):
        part.fit(train, tmp_path / "b.pt")
    resumed = _learner(config, "coda", train.n_envs)
    resumed.cfg["training"] = part.cfg["training"]
    log = resumed.fit(train, tmp_path / "b.pt")
    assert [r["outer_step"] for r in log.rows] == [1, 2, 3]
    assert torch.allclose(resumed.contexts(), full.contexts())


# --- CAVIA: the meta-gradient ---


def _toy_batch(n_envs=3, n_traj=2, n_times=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    t = torch.linspace(0, 0.4, n_times, dtype=torch.float64).repeat(n_envs, 1)
    X = torch.randn(n_envs, n_traj, n_times, 2, generator=gen, dtype=torch.float64)
    X = X.cumsum(dim=2) * 0.1
    return EnvBatch(X, t, np.arange(n_envs), np.zeros(n_envs, dtype=int))


def test_cavia_second_order_gradient_matches_finite_differences(config):
    learner = _learner(
        config, "cavia", 3, cavia_inner_steps=2, cavia_inner_lr=1.0, activation="tanh"
    )
    learner.model.double()
    support, query = learner.split(_toy_batch(n_traj=2))
    params = learner.model_parameters()

    def meta(first_order):
        return learner.meta_loss(support, query, first_order)

    second = torch.autograd.grad(meta(False), params)
    first = torch.autograd.grad(meta(True), params)
    flat2 = torch.cat([g.reshape(-1) for g in second])
    flat1 = torch.cat([g.reshape(-1) for g in first])
    assert (flat2 - flat1).norm() > 1e-3 * flat2.norm()

    gen = torch.Generator().manual_seed(1)
    direction = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in params]
    eps = 1e-5
    with torch.no_grad():
        for p, v in zip(params, direction, strict=True):
            p.add_(eps * v)
    plus = meta(False).item()
    with torch.no_grad():
        for p, v in zip(params, direction, strict=True):
            p.sub_(2 * eps * v)
    minus = meta(False).item()
    with torch.no_grad():
        for p, v in zip(params, direction, strict=True):
            p.add_(eps * v)
    finite = (plus - minus) / (2 * eps)
    analytic = sum((g * v).sum() for g, v in zip(second, direction, strict=True)).item()
    first_dir = sum((g * v).sum() for g, v in zip(first, direction, strict=True)).item()
    assert abs(analytic - finite) < 1e-4 * abs(finite)
    assert abs(first_dir - finite) > 100 * abs(analytic - finite)


@pytest.mark.parametrize("activation", ["silu", "tanh", "gelu", "softplus", "relu"])
@pytest.mark.parametrize(
    "steps,first_order,solver",
    [
        (1, False, ("rk4", 1)),
        (2, False, ("rk4", 1)),
        (2, True, ("rk4", 1)),
        (1, False, ("midpoint", 2)),
    ],
)
def test_cavia_meta_gradient_from_sensitivities_matches_autograd_second_order(
    config, activation, steps, first_order, solver
):
    """The fixed-step path (forward sensitivities, one hand-written reverse pass) gives
    autograd's reverse-through-reverse meta-gradient, and the same adapted contexts."""
    learner = _learner(
        config, "cavia", 3, cavia_inner_steps=steps, cavia_inner_lr=0.5,
        activation=activation, depth=2,
    )  # fmt: skip
    learner.solver.update(method=solver[0], substeps=solver[1])
    learner.model.double()
    support, query = learner.split(_toy_batch(n_traj=4))
    params = learner.model_parameters()
    fast = torch.autograd.grad(learner.meta_loss(support, query, first_order), params)
    phi = learner._inner_loop_autograd(support, steps, True, first_order)
    slow = torch.autograd.grad(
        per_env_mse(learner.roll(learner.field(phi), query), query.X).mean(), params
    )
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    adapted = learner.inner_loop(support, 3, create_graph=False)
    torch.testing.assert_close(
        adapted,
        learner._inner_loop_autograd(support, 3, False, False).detach(),
        rtol=1e-9,
        atol=1e-12,
    )


def test_cavia_takes_autograd_for_a_large_context(config, monkeypatch):
    """Above SENSITIVITY_MAX_DIM context entries the inner gradient is autograd's (the
    sensitivities would carry a tangent rollout per entry), and the meta-gradient is the same
    as the sensitivities give."""
    from mixer.methods import cavia

    learner = _learner(config, "cavia", 3, cavia_inner_lr=0.5, depth=2)
    learner.model.double()
    support, query = learner.split(_toy_batch(n_traj=4))
    params = learner.model_parameters()
    assert learner.sensitivities()
    fast = torch.autograd.grad(learner.meta_loss(support, query, False), params)
    monkeypatch.setattr(cavia, "SENSITIVITY_MAX_DIM", CTX - 1)
    assert not learner.sensitivities()
    calls = []
    original = learner._inner_loop_autograd
    learner._inner_loop_autograd = lambda *a: calls.append(1) or original(*a)
    slow = torch.autograd.grad(learner.meta_loss(support, query, False), params)
    assert calls
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_cavia_inner_loop_gives_each_environment_its_own_context(config):
    """Batched inner loop == the inner loop run on each environment alone."""
    learner = _learner(config, "cavia", 3, cavia_inner_steps=2)
    learner.model.double()
    batch = _toy_batch()
    together = learner.inner_loop(batch, 2, create_graph=False)
    for e in range(3):
        alone = learner.inner_loop(batch.subset(torch.tensor([e])), 2, create_graph=False)
        assert torch.allclose(together[e], alone[0], atol=1e-12)


# --- NCF: the Taylor correction ---


@pytest.mark.parametrize("activation", ["silu", "tanh", "gelu", "softplus", "relu"])
@pytest.mark.parametrize("solver", [("rk4", 1), ("midpoint", 2)])
def test_ncf_taylor_rollout_reverse_pass_matches_autograd(config, activation, solver):
    """The fixed-step Taylor rollout (one node, hand-written reverse) gives autograd's
    trajectories and gradients through the Taylor field, in float64."""
    learner = _learner(config, "ncf", 4, activation=activation, depth=2)
    learner.solver.update(method=solver[0], substeps=solver[1])
    learner.model.double()
    batch, n_pool = _toy_batch(n_envs=4, n_traj=3), 2
    gen = torch.Generator().manual_seed(5)
    pool_ctx, delta = torch.randn(2, 4 * n_pool, CTX, generator=gen, dtype=torch.float64)
    pool_ctx.requires_grad_(True)
    delta.requires_grad_(True)
    inputs = [*learner.model_parameters(), pool_ctx, delta]
    fast = learner.taylor_rollout(pool_ctx, delta, batch, n_pool)
    slow = rollout(
        learner.taylor_field(pool_ctx, delta),
        batch.x0.repeat_interleave(n_pool, dim=0),
        batch.t.repeat_interleave(n_pool, dim=0),
        method=solver[0],
        substeps=solver[1],
    )
    torch.testing.assert_close(fast, slow, rtol=1e-12, atol=1e-12)
    weights = torch.randn(fast.shape, generator=gen, dtype=torch.float64)
    grads_fast = torch.autograd.grad((fast * weights).sum(), inputs, allow_unused=True)
    grads_slow = torch.autograd.grad((slow * weights).sum(), inputs, allow_unused=True)
    for a, b in zip(grads_fast, grads_slow, strict=True):
        if b is None:  # a parameter the field does not use
            assert a is None or not a.any()
            continue
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    for p in learner.model_parameters():  # a context step: the contexts' gradients alone
        p.requires_grad_(False)
    fast = learner.taylor_rollout(pool_ctx, delta, batch, n_pool)
    only = torch.autograd.grad((fast * weights).sum(), [pool_ctx, delta])
    for a, b in zip(only, grads_slow[-2:], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_ncf_taylor_field_is_second_order_accurate(config):
    learner = _learner(config, "ncf", 4, activation="tanh")
    learner.model.double()
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(4, 5, 2, generator=gen, dtype=torch.float64)
    anchor = torch.randn(4, CTX, generator=gen, dtype=torch.float64)
    direction = torch.randn(4, CTX, generator=gen, dtype=torch.float64)
    errors = []
    for h in (0.2, 0.1, 0.05):
        delta = h * direction
        with torch.no_grad():
            approx = learner.taylor_field(anchor, delta)(None, x)
            exact = learner.model.forward(anchor + delta, x)
        errors.append((approx - exact).norm().item())
    for coarse, fine in itertools.pairwise(errors):
        assert 3 <= coarse / fine <= 5, errors


def test_ncf_pool_members(config):
    learner = _learner(config, "ncf", 5, ncf_pool="nearest", ncf_pool_size=3)
    with torch.no_grad():
        learner.ctx.copy_(torch.tensor([[0.0, 0], [1, 0], [3, 0], [6, 0], [10, 0]]))
    members = learner.pool(torch.arange(5))
    assert members.shape == (5, 3)
    assert members[:, 0].tolist() == [0, 1, 2, 3, 4]  # nearest: itself first
    assert members[2, :2].tolist() == [2, 1]  # then 0 and 3 tie at distance 3
    thirds = {learner.pool(torch.tensor([2]))[0, 2].item() for _ in range(20)}
    assert thirds == {0, 3}  # the tie is broken at random, both ways
    learner.cfg["ncf_pool"] = "random"
    draws = learner.pool(torch.arange(5))
    assert all(len(set(row.tolist())) == 3 for row in draws)


# --- CoDA: the regulariser ---


def test_coda_regulariser_equals_its_formula(config):
    learner = _learner(config, "coda", 2, coda_lambda_ctx=0.5, coda_lambda_hyper=0.25)
    hyper = learner.model.experts.hyper
    with torch.no_grad():
        learner.ctx.copy_(torch.tensor([[1.0, 2.0], [0.0, -2.0]]))  # Σ||ξ||² = 5 + 4 = 9
        hyper.zero_()
        hyper[0, :, 0] = torch.tensor([3.0, 4.0])  # ||row 0|| = 5
        hyper[0, :, 1] = torch.tensor([0.0, -2.0])  # ||row 1|| = 2
    assert learner.regulariser().item() == 0.5 * 9 + 0.25 * 7
    learner.cfg["coda_lambda_ctx"] = learner.cfg["coda_lambda_hyper"] = 0.0
    assert learner.regulariser().item() == 0.0


# --- the joint loop ---


def test_coda_steps_theta_hyper_and_contexts_together(config, lv):
    """One joint step (no alternation) moves θ, H and Ξ at once."""
    train = cpu_batch(lv, "train", trajectories=2)
    learner = _learner(config, "coda", train.n_envs)
    learner.cfg["training"] = {**learner.cfg["training"], "outer_steps": 1, "n_ctx": 0}
    learner.cfg["training"]["n_model"] = 1
    experts = learner.model.experts
    before = [
        experts.theta.detach().clone(),
        experts.hyper.detach().clone(),
        learner.contexts().clone(),
    ]
    learner.fit(train)
    after = [experts.theta, experts.hyper, learner.contexts()]
    for old, new in zip(before, after, strict=True):
        assert not torch.equal(old, new.detach())


def test_joint_loop_raises_diverged(config, lv):
    from mixer.training.bookkeeping import Diverged

    train = cpu_batch(lv, "train", trajectories=2)
    learner = _learner(config, "one-for-all", train.n_envs)
    with torch.no_grad():
        learner.model.biases[-1].fill_(float("nan"))
    with pytest.raises(Diverged):
        learner.fit(train)


def test_ncf_pool_of_itself_is_the_plain_loss(config, lv):
    """P = 1 nearest pools each environment with itself: zero Taylor term, the order-0 loss."""
    train = cpu_batch(lv, "train", trajectories=2)
    learner = _learner(config, "ncf", train.n_envs, ncf_pool="nearest", ncf_pool_size=1)
    with torch.no_grad():
        learner.ctx.copy_(
            torch.randn(train.n_envs, CTX, generator=torch.Generator().manual_seed(0))
        )
        plain = _mse(learner.predict(train), train)
        pooled = learner.loss(train).item()
    assert pooled == pytest.approx(plain, rel=1e-6)
    learner.cfg["ncf_pool_size"] = 3
    with torch.no_grad():
        assert learner.loss(train).item() != pytest.approx(plain, rel=1e-3)


def test_cli_trains_and_evaluates_a_baseline(tmp_path, config, lotka_volterra):
    from mixer.cli import main

    cfg = resolve_cell(config, "lv", "default", "cavia", 0)
    cfg["training"]["outer_steps"] = 1
    spec = json.dumps(cfg)
    data = str(lotka_volterra[0])
    args = ["train", "--spec", spec, "--dataset-dir", data, "--seed", "0", "--out", str(tmp_path)]
    assert main(args) == 0
    # --out may name a folder that does not exist yet
    model, out = str(tmp_path / "model.pt"), str(tmp_path / "scores" / "metrics.json")
    assert main(["evaluate", "--model", model, "--dataset-dir", data, "--out", out]) == 0
    written = json.loads((tmp_path / "scores" / "metrics.json").read_text())
    assert written["status"] == "ok" and written["adaptation"] == "inner-loop"
