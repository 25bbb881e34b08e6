"""Expert banks, the top-1 mixture layer and batched rollouts (mixer.models)."""

from __future__ import annotations

import math

import pytest
import torch

from mixer.errors import ConfigError
from mixer.models import (
    BACKBONES,
    MixtureOfExperts,
    VectorField,
    backbone_class,
    build_mixture,
    rollout,
)
from mixer.models.reference import env_layers, per_env_reference

torch.set_num_threads(1)

STATE_DIM, CONTEXT_DIM = 2, 4
ODE_BACKBONES = [name for name, cls in BACKBONES.items() if not cls.discrete_time]


def input_dim(bank):
    """What ``field`` takes: the state (ODE banks) or the latent state (the PL-RNN)."""
    return getattr(bank, "latent_dim", STATE_DIM)


def make_bank(name, n_experts, context_dim=CONTEXT_DIM, seed=0, **kwargs):
    return backbone_class(name)(
        STATE_DIM, context_dim, n_experts, width=16, depth=2, generator=seed, **kwargs
    )


def uniform_grid(n_env, n_times, dt=0.1):
    steps = torch.as_tensor(dt, dtype=torch.float64).expand(n_env).reshape(n_env, 1)
    return torch.arange(n_times, dtype=torch.float64) * steps


def routing_gate(context_dim, n_experts=3):
    """A gate sending ξ_0 > 0 to expert 0 and ξ_0 < 0 to expert 2; expert 1 never wins."""
    gate = torch.zeros(context_dim + 1, n_experts)
    gate[0, 0], gate[0, 2], gate[-1, 1] = 1.0, -1.0, -5.0
    return gate


@pytest.mark.parametrize("n_experts", [1, 3])
@pytest.mark.parametrize("name", list(BACKBONES))
def test_shapes_of_bank_and_mixture_rollout(name, n_experts):
    gen = torch.Generator().manual_seed(1)
    n_env, n_traj, n_times = 5, 3, 7
    bank = make_bank(name, n_experts)
    expert_of_env = torch.randint(0, n_experts, (n_env,), generator=gen)
    contexts = torch.randn(n_env, CONTEXT_DIM, generator=gen)
    z = torch.randn(n_env, n_traj, input_dim(bank), generator=gen)
    assert bank(expert_of_env, contexts, z).shape == z.shape
    x = torch.randn(n_env, n_traj, STATE_DIM, generator=gen)

    moe = build_mixture(name, STATE_DIM, CONTEXT_DIM, n_experts, width=16, depth=2, generator=0)
    traj = moe.trajectories(contexts, x, uniform_grid(n_env, n_times))
    assert traj.shape == (n_env, n_traj, n_times, STATE_DIM)
    assert torch.equal(traj[:, :, 0], x)
    assert torch.isfinite(traj).all()


@pytest.mark.parametrize("name", ODE_BACKBONES)
def test_batched_field_equals_per_environment_loop(name, layer_form):
    gen = torch.Generator().manual_seed(2)
    # Large context maps, so that a wrong context term would show far above 1e-6.
    scale = {"coda": {"hyper_init_scale": 1.0}, "geps": {"modulation_init_scale": 1.0}}
    bank = make_bank(name, 3, **scale.get(name, {})).double()
    expert_of_env = torch.tensor([2, 0, 1, 2, 0, 1])
    contexts = 2 * torch.randn(6, CONTEXT_DIM, generator=gen, dtype=torch.float64)
    x = torch.randn(6, 4, STATE_DIM, generator=gen, dtype=torch.float64)
    batched = bank(expert_of_env, contexts, x)
    reference = per_env_reference(bank, expert_of_env, contexts, x)
    torch.testing.assert_close(batched, reference, rtol=0, atol=1e-6)
    if name == "ncf":
        return
    # CoDA and GEPS: the materialised weights themselves, layer by layer.
    weights = bank.dense_layers(expert_of_env, contexts)
    for e, (k, xi) in enumerate(zip(expert_of_env, contexts, strict=True)):
        for (w, b), (w_ref, b_ref) in zip(weights, env_layers(bank, int(k), xi), strict=True):
            torch.testing.assert_close(w[e], w_ref, rtol=0, atol=1e-6)
            torch.testing.assert_close(b[e], b_ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["coda", "geps"])
def test_zero_context_gives_root_network(name):
    bank = make_bank(name, 2).double()
    expert_of_env = torch.tensor([0, 1])
    with_zero = bank.dense_layers(expert_of_env, torch.zeros(2, CONTEXT_DIM, dtype=torch.float64))
    with_one = bank.dense_layers(expert_of_env, torch.ones(2, CONTEXT_DIM, dtype=torch.float64))
    root = bank.unflatten(bank.theta) if name == "coda" else bank.base.gather(expert_of_env)
    for (w0, b0), (w1, _), (w, b) in zip(with_zero, with_one, root, strict=True):
        torch.testing.assert_close(w0, w)
        torch.testing.assert_close(b0, b)
        assert not torch.equal(w1, w)


@pytest.mark.parametrize("split_context", [False, True])
@pytest.mark.parametrize("name", list(BACKBONES))
def test_top1_step_gives_gradient_only_to_routed_experts(name, split_context, layer_form):
    context_dim = 6
    moe = build_mixture(
        name,
        STATE_DIM,
        context_dim,
        3,
        width=16,
        depth=2,
        split_context=split_context,
        generator=0,
    )
    moe.set_gate(routing_gate(context_dim))
    contexts = torch.randn(6, context_dim, generator=torch.Generator().manual_seed(3))
    contexts[:, 0] = torch.tensor([1.0, -1.0, 2.0, -0.5, 0.3, -3.0])
    contexts.requires_grad_(True)
    assert moe.route(contexts).tolist() == [0, 2, 0, 2, 0, 2]
    data = torch.randn(6, 3, 5, STATE_DIM)
    # Through the mixture's one entry point (teacher-forced for the PL-RNN, ODE otherwise).
    traj = moe.trajectories(contexts, data[:, :, 0], uniform_grid(6, 5), data=data, alpha=0.5)
    traj.square().mean().backward()

    params = dict(moe.experts.named_parameters())
    assert params
    for pname, p in params.items():
        assert p.grad is not None, pname
        assert torch.count_nonzero(p.grad[1]) == 0, pname
        assert torch.count_nonzero(p.grad[0]) > 0 and torch.count_nonzero(p.grad[2]) > 0, pname
    assert torch.count_nonzero(contexts.grad) > 0


def test_weights_are_materialised_once_per_rollout(monkeypatch):
    moe = build_mixture("coda", STATE_DIM, CONTEXT_DIM, 3, width=8, depth=1, generator=0)
    calls = []
    original = moe.experts.env_weights
    monkeypatch.setattr(
        moe.experts, "env_weights", lambda *args: calls.append(1) or original(*args)
    )
    field = moe.vector_field(torch.randn(4, CONTEXT_DIM))
    rollout(field, torch.randn(4, 2, STATE_DIM), uniform_grid(4, 6), substeps=2)
    assert len(calls) == 1
    assert field.nfe == 5 * 2 * 4  # intervals × substeps × RK4 stages


def make_moe(gate_mode, dense=False, name="geps", n_experts=3):
    return build_mixture(
        name,
        STATE_DIM,
        CONTEXT_DIM,
        n_experts,
        width=16,
        depth=2,
        gate_mode=gate_mode,
        dense=dense,
        generator=0,
    )


def test_gd_gate_gets_gradient():
    moe = make_moe("gd")
    assert isinstance(moe.gate, torch.nn.Parameter) and moe.gate.requires_grad
    contexts, x = torch.randn(5, CONTEXT_DIM), torch.randn(5, 3, STATE_DIM)
    moe(contexts, x).square().sum().backward()
    assert moe.gate.grad is not None and torch.count_nonzero(moe.gate.grad) > 0


def test_gd_output_is_scaled_by_routed_probability():
    moe = make_moe("gd")
    contexts, x = torch.randn(5, CONTEXT_DIM), torch.randn(5, 3, STATE_DIM)
    k = moe.route(contexts)
    prob = moe.gate_probs(contexts)[torch.arange(5), k]
    expected = prob.view(-1, 1, 1) * moe.experts(k, contexts, x)
    torch.testing.assert_close(moe(contexts, x), expected)


def test_frozen_gate_gets_no_gradient_and_output_is_unscaled():
    moe = make_moe("frozen")
    assert isinstance(moe.gate, torch.nn.Parameter)
    contexts = torch.randn(5, CONTEXT_DIM, requires_grad=True)
    x = torch.randn(5, 3, STATE_DIM)
    out = moe(contexts, x)
    (out.square().sum() + moe.load_balancing_loss(contexts)).backward()
    assert moe.gate.grad is None or torch.count_nonzero(moe.gate.grad) == 0
    torch.testing.assert_close(out, moe.experts(moe.route(contexts), contexts, x))


def test_refit_gate_is_a_buffer_set_from_outside():
    moe = make_moe("refit")
    assert "gate" in dict(moe.named_buffers())
    assert "gate" not in dict(moe.named_parameters())
    moe.set_gate(routing_gate(CONTEXT_DIM))
    contexts = torch.tensor([[1.0, 0, 0, 0], [-1.0, 0, 0, 0]])
    assert moe.route(contexts).tolist() == [0, 2]


def test_dense_gd_mixes_all_experts_with_gate_probabilities():
    moe = make_moe("gd", dense=True)
    contexts, x = torch.randn(5, CONTEXT_DIM), torch.randn(5, 3, STATE_DIM)
    probs = moe.gate_probs(contexts)
    expected = sum(
        probs[:, k].view(-1, 1, 1) * moe.experts(torch.full((5,), k), contexts, x) for k in range(3)
    )
    out = moe(contexts, x)
    torch.testing.assert_close(out, expected)
    out.square().sum().backward()
    assert torch.count_nonzero(moe.gate.grad) > 0


def test_dense_needs_gd_and_gate_mode_is_checked():
    with pytest.raises(ConfigError, match="dense mixing needs gate_mode 'gd'"):
        make_moe("refit", dense=True)
    with pytest.raises(ConfigError, match="unknown gate_mode 'adam'"):
        make_moe("adam")


def test_route_breaks_ties_to_lowest_index_and_balancing_loss():
    moe = make_moe("gd", n_experts=4)
    moe.gate.data.zero_()  # all logits equal: every environment ties
    contexts = torch.randn(6, CONTEXT_DIM)
    assert moe.route(contexts).tolist() == [0] * 6
    # All routed to expert 0 with uniform probabilities: K · 1 · (1/K) = 1.
    torch.testing.assert_close(moe.load_balancing_loss(contexts), torch.tensor(1.0))
    moe.set_gate(torch.eye(CONTEXT_DIM + 1, 4) * 50)  # env e -> expert argmax ξ_e[:4]
    contexts = torch.eye(4, CONTEXT_DIM)
    assert moe.route(contexts).tolist() == [0, 1, 2, 3]
    torch.testing.assert_close(
        moe.load_balancing_loss(contexts), torch.tensor(1.0), atol=1e-4, rtol=0
    )


def test_split_context_needs_divisible_context_dim():
    with pytest.raises(
        ConfigError, match="context_dim 5 is not divisible by n_experts 3 with split_context"
    ):
        build_mixture("ncf", STATE_DIM, 5, 3, split_context=True)
    bank = make_bank("ncf", 3, context_dim=5)
    with pytest.raises(ConfigError, match="context_dim 5 is not divisible by n_experts 3"):
        MixtureOfExperts(bank, 5, split_context=True)


@pytest.mark.parametrize("name", list(BACKBONES))
def test_split_context_expert_reads_its_own_chunk(name):
    moe = build_mixture(name, STATE_DIM, 6, 3, width=16, depth=2, split_context=True, generator=0)
    assert moe.experts.context_dim == 2
    moe.set_gate(routing_gate(6))
    gen = torch.Generator().manual_seed(4)
    contexts = torch.randn(4, 6, generator=gen)
    contexts[:, 0] = torch.tensor([1.0, -1.0, 1.0, -1.0])  # experts 0, 2, 0, 2
    x = torch.randn(4, 3, input_dim(moe.experts), generator=gen)
    k = torch.tensor([0, 2, 0, 2])
    own_chunk = torch.stack([contexts[e, 2 * int(k[e]) : 2 * int(k[e]) + 2] for e in range(4)])
    out = moe(contexts, x)
    torch.testing.assert_close(out, moe.experts(k, own_chunk, x))
    # Editing the unused chunk (ξ[2:4], expert 1's) changes nothing; own chunks do matter.
    edited = contexts.clone()
    edited[:, 2:4] += 1.0
    torch.testing.assert_close(moe(edited, x), out, rtol=0, atol=0)
    edited[:, 4:6] += 1.0
    assert not torch.allclose(moe(edited, x)[1::2], out[1::2])


def test_expert_losses_match_one_rollout_per_expert():
    moe = make_moe("refit", name="ncf")
    gen = torch.Generator().manual_seed(5)
    contexts = torch.randn(4, CONTEXT_DIM, generator=gen, requires_grad=True)
    x0 = torch.randn(4, 2, STATE_DIM, generator=gen)
    t = torch.cat([uniform_grid(2, 6, 0.1), uniform_grid(2, 6, 0.3)])
    target = torch.randn(4, 2, 6, STATE_DIM, generator=gen)
    losses = moe.expert_losses(contexts, x0, t, target, substeps=2)
    assert losses.shape == (4, 3) and not losses.requires_grad
    for k in range(3):
        expert_k = VectorField(lambda tau, x, k=k: moe.experts(torch.full((4,), k), contexts, x))
        pred = rollout(expert_k, x0, t, substeps=2)
        expected = (pred - target).square().mean(dim=(1, 2, 3))
        torch.testing.assert_close(losses[:, k], expected.detach())


def oscillator_field(omega):
    """f_e(x) = ω_e J x with J the rotation generator: x(t) = R(ω_e t) x0."""

    def field(tau, x):
        return omega.view(-1, 1, 1) * torch.stack([x[..., 1], -x[..., 0]], dim=-1)

    return field


def exact_oscillator(omega, x0, t):
    angle = (omega.view(-1, 1) * (t - t[:, :1])).unsqueeze(1)  # [E, 1, T]
    cos, sin = torch.cos(angle), torch.sin(angle)
    a, b = x0[..., 0:1], x0[..., 1:2]  # [E, N, 1]
    return torch.stack([a * cos + b * sin, -a * sin + b * cos], dim=-1)


@pytest.mark.parametrize(
    ("method", "kwargs"), [("rk4", {"substeps": 40}), ("dopri5", {"rtol": 1e-10, "atol": 1e-12})]
)
def test_rollout_matches_closed_form_with_per_environment_steps(method, kwargs):
    omega = torch.tensor([1.0, 2.5], dtype=torch.float64)
    # Two environments, different Δt (0.1 and 0.37) and start times, one call.
    t = torch.stack(
        [
            torch.linspace(0.0, 1.9, 20, dtype=torch.float64),
            3.0 + 0.37 * torch.arange(20, dtype=torch.float64),
        ]
    )
    x0 = torch.randn(2, 3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    field = VectorField(oscillator_field(omega))
    traj = rollout(field, x0, t, method=method, **kwargs)
    torch.testing.assert_close(traj, exact_oscillator(omega, x0, t), rtol=0, atol=1e-6)
    assert field.nfe > 0
    field.reset_nfe()
    assert field.nfe == 0


def test_rollout_without_substeps_is_coarser():
    # Guards the test above: one RK4 step per interval at ωΔt = 0.925 is visibly inexact.
    omega = torch.tensor([2.5], dtype=torch.float64)
    t = 0.37 * torch.arange(20, dtype=torch.float64).unsqueeze(0)
    x0 = torch.ones(1, 1, 2, dtype=torch.float64)
    error = (rollout(oscillator_field(omega), x0, t) - exact_oscillator(omega, x0, t)).abs()
    assert error.max() > 1e-3


def test_rollout_rejects_non_uniform_grids_and_unknown_solvers():
    x0 = torch.zeros(2, 1, 2)
    t = uniform_grid(2, 5)
    t[1, 3] += 0.05
    with pytest.raises(ValueError, match="environment 1 is not uniform"):
        rollout(oscillator_field(torch.ones(2)), x0, t)
    with pytest.raises(ConfigError, match="unknown ODE solver 'rk5'"):
        rollout(oscillator_field(torch.ones(2)), x0, uniform_grid(2, 5), method="rk5")
    # A float64 grid cast to float32 is still uniform.
    grid = (10.0 + math.pi * torch.arange(20, dtype=torch.float64)).expand(2, 20).float()
    assert rollout(oscillator_field(torch.ones(2)), x0, grid).shape == (2, 1, 20, 2)


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(
        ConfigError,
        match=r"unknown backbone 'mlp'\. Valid names: ncf, coda, geps, plrnn; or 'package",
    ):
        backbone_class("mlp")


@pytest.mark.parametrize("name", list(BACKBONES))
def test_init_is_deterministic_from_seed(name):
    first, second, other = (
        make_bank(name, 3, seed=7),
        make_bank(name, 3, seed=7),
        make_bank(name, 3, seed=8),
    )
    for p, q, r in zip(first.parameters(), second.parameters(), other.parameters(), strict=True):
        assert torch.equal(p, q)
        assert not torch.equal(p, r)


def reference_trajectories(moe, contexts, x0, t, substeps):
    """The mixture's rollout through the literal per-environment formula, by autograd."""
    k = moe.route(contexts)
    own = moe.expert_contexts(contexts, k)
    scale = torch.ones(len(k), 1, 1, dtype=contexts.dtype)
    if moe.gate_mode == "gd":
        scale = moe.gate_probs(contexts).gather(1, k.unsqueeze(1)).view(-1, 1, 1)
    field = VectorField(lambda tau, x: scale * per_env_reference(moe.experts, k, own, x))
    return rollout(field, x0, t, substeps=substeps)


@pytest.mark.parametrize("gate_mode", ["refit", "gd"])
@pytest.mark.parametrize("name", ["coda", "geps", "ncf"])
def test_grouped_rollout_and_its_reverse_pass_match_the_per_environment_formula(
    name, gate_mode, layer_form
):
    # Float64, large context maps, one expert unrouted: values and every gradient to 1e-6.
    scale = {"coda": {"hyper_init_scale": 1.0}, "geps": {"modulation_init_scale": 1.0}}
    moe = build_mixture(
        name, STATE_DIM, 6, 3, width=16, depth=2, split_context=True, gate_mode=gate_mode,
        generator=0, options=scale.get(name),
    ).double()  # fmt: skip
    with torch.no_grad():
        moe.gate.copy_(routing_gate(6))
    gen = torch.Generator().manual_seed(7)
    contexts = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    contexts[:, 0] = torch.tensor([1.0, -1.0, 2.0, -0.5, 0.3, -3.0])
    contexts.requires_grad_(True)
    x0 = torch.randn(6, 3, STATE_DIM, generator=gen, dtype=torch.float64)
    t = torch.cat([uniform_grid(3, 5, 0.1), uniform_grid(3, 5, 0.25)])
    weight = torch.randn(6, 3, 5, STATE_DIM, generator=gen, dtype=torch.float64)
    params = [contexts, *[p for p in moe.parameters() if p.requires_grad]]
    fast = moe.trajectories(contexts, x0, t, substeps=2)
    slow = reference_trajectories(moe, contexts, x0, t, substeps=2)
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-6)
    grads = torch.autograd.grad((fast * weight).sum(), params)
    expected = torch.autograd.grad((slow * weight).sum(), params)
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    by_param = dict(zip([id(p) for p in params], grads, strict=True))
    for p in moe.experts.parameters():  # expert 1 is never routed to: exactly zero
        assert torch.count_nonzero(by_param[id(p)][1]) == 0


@pytest.mark.parametrize("name", ["coda", "geps"])
def test_hand_written_reverse_pass_passes_gradcheck(name, layer_form):
    moe = build_mixture(name, STATE_DIM, 4, 2, width=8, depth=2, split_context=True,
                        gate_mode="gd", generator=0).double()  # fmt: skip
    gen = torch.Generator().manual_seed(8)
    contexts = torch.randn(3, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    x0 = torch.randn(3, 2, STATE_DIM, generator=gen, dtype=torch.float64, requires_grad=True)
    t = uniform_grid(3, 4, 0.2)
    # Contexts and initial states here; the weights' gradients are checked against the
    # per-environment formula in the test above.
    torch.autograd.gradcheck(
        lambda c, x: moe.trajectories(c, x, t, substeps=1), (contexts, x0), atol=1e-6
    )


@pytest.mark.parametrize("name", ["coda", "geps"])
def test_contexts_only_and_model_only_gradients_match_the_full_reverse_pass(name, layer_form):
    # The alternating loop asks for one group at a time, and the forward then keeps only what
    # that group needs: each partial gradient must equal its part of the full one.
    moe = build_mixture(name, STATE_DIM, 6, 3, width=16, depth=2, split_context=True,
                        generator=0).double()  # fmt: skip
    with torch.no_grad():
        moe.gate.copy_(routing_gate(6))
    gen = torch.Generator().manual_seed(9)
    contexts = torch.randn(6, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    x0 = torch.randn(6, 3, STATE_DIM, generator=gen, dtype=torch.float64)
    t = uniform_grid(6, 5, 0.2)
    weight = torch.randn(6, 3, 5, STATE_DIM, generator=gen, dtype=torch.float64)
    model = [p for p in moe.parameters() if p.requires_grad]

    def loss():
        return (moe.trajectories(contexts, x0, t) * weight).sum()

    full = torch.autograd.grad(loss(), [contexts, *model])
    for p in model:
        p.requires_grad_(False)
    (ctx_only,) = torch.autograd.grad(loss(), [contexts])
    for p in model:
        p.requires_grad_(True)
    contexts.requires_grad_(False)
    model_only = torch.autograd.grad(loss(), model)
    torch.testing.assert_close(ctx_only, full[0], rtol=0, atol=1e-10)
    for got, want in zip(model_only, full[1:], strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    ("name", "width", "n_envs", "middle"),
    [("geps", 64, 9, "env"), ("geps", 64, 40, "env"), ("geps", 64, 160, "geps"),
     ("geps", 256, 9, "geps"), ("coda", 224, 9, "env"), ("coda", 256, 40, "coda")],
)  # fmt: skip
def test_wide_layers_take_the_form_their_size_makes_cheaper(name, width, n_envs, middle):
    # The thresholds come from timings (GEPSExpert/CoDAExpert.per_env_max); the thin first and
    # last layers are always per environment.
    bank = backbone_class(name)(STATE_DIM, 2, 1, width=width, depth=2, generator=0)
    mlp = bank.env_weights(torch.zeros(n_envs, dtype=torch.long), torch.zeros(n_envs, 2))
    assert [layer.kind for layer in mlp.layers] == ["env", middle, "env"]
