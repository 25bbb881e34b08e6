"""The hierarchical PL-RNN backbone: batched maps, teacher forcing and its targets."""

from __future__ import annotations

import pytest
import torch

from mixer.errors import ConfigError
from mixer.methods.learner import teacher_forcing_alpha
from mixer.models import PLRNNExpert, build_mixture
from mixer.models.reference import per_env_reference, plrnn_env_trajectory

torch.set_num_threads(1)

D, CTX, LATENT, WIDTH = 2, 3, 5, 7


def make_mixture(n_experts=3, gate_mode="refit", **kwargs):
    return build_mixture(
        "plrnn",
        D,
        CTX,
        n_experts,
        width=WIDTH,
        gate_mode=gate_mode,
        generator=0,
        options={"latent_dim": LATENT},
        **kwargs,
    )


def grid(n_env, n_times):
    return torch.arange(n_times, dtype=torch.float64).expand(n_env, n_times).clone()


def make_identity(bank: PLRNNExpert) -> None:
    """Set every expert to the copy map z_{t+1} = z̃_t (A = 1, W1 = 0, h1 = 0, H = 0)."""
    with torch.no_grad():
        weights = bank.unflatten(bank.theta.data)  # views into θ
        weights.a.fill_(1.0)
        weights.w1.zero_()
        weights.h1.zero_()
        bank.hyper.zero_()


def test_target_of_each_step_is_the_next_observation_not_its_input():
    """A copy map with full teacher forcing (α = 0) predicts x_{t+1} := x_t.

    Scoring the output of a step against the input it has seen (the reference's off-by-one,
    docs/METHOD.md §6 defect 9) would give a loss of exactly 0 here.
    """
    moe = make_mixture(n_experts=1)
    make_identity(moe.experts)
    data = torch.randn(4, 2, 9, D, generator=torch.Generator().manual_seed(0))
    contexts = torch.randn(4, CTX)
    pred = moe.trajectories(contexts, data[:, :, 0], grid(4, 9), data=data, alpha=0.0)
    torch.testing.assert_close(pred[:, :, 1:], data[:, :, :-1])
    loss = (pred - data).square().mean()
    expected = (data[:, :, 1:] - data[:, :, :-1]).square().sum() / data.numel()
    torch.testing.assert_close(loss, expected)
    assert loss > 0.1
    # Free running (α = 1), the copy map never sees the data again: every output is x_0.
    free = moe.trajectories(contexts, data[:, :, 0], grid(4, 9), data=data, alpha=1.0)
    torch.testing.assert_close(free, data[:, :, :1].expand_as(data))


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_output_at_step_t_does_not_depend_on_data_from_t_on(alpha):
    """Causality: slot t of the prediction (the target x_t's match) only uses x_0 .. x_{t-1}."""
    moe = make_mixture()
    gen = torch.Generator().manual_seed(1)
    data = torch.randn(3, 2, 8, D, generator=gen)
    contexts = torch.randn(3, CTX, generator=gen)
    pred = moe.trajectories(contexts, data[:, :, 0], grid(3, 8), data=data, alpha=alpha)
    for t in range(1, 8):
        edited = data.clone()
        edited[:, :, t:] += 10.0
        again = moe.trajectories(contexts, data[:, :, 0], grid(3, 8), data=edited, alpha=alpha)
        torch.testing.assert_close(again[:, :, : t + 1], pred[:, :, : t + 1], rtol=0, atol=0)
        if alpha < 1 and t < 7:  # the data at t does drive the next output
            assert not torch.allclose(again[:, :, t + 1], pred[:, :, t + 1])


@pytest.mark.parametrize("alpha", [0.0, 0.4, 1.0])
def test_batched_weights_and_unroll_equal_a_per_environment_loop(alpha):
    bank = PLRNNExpert(D, CTX, 3, width=WIDTH, latent_dim=LATENT, generator=3).double()
    with torch.no_grad():
        bank.hyper.mul_(100.0)  # large context maps: a wrong context term would show
    gen = torch.Generator().manual_seed(4)
    expert_of_env = torch.tensor([2, 0, 1, 2, 0])
    contexts = torch.randn(5, CTX, generator=gen, dtype=torch.float64)
    z = torch.randn(5, 3, LATENT, generator=gen, dtype=torch.float64)
    batched = bank(expert_of_env, contexts, z)
    torch.testing.assert_close(
        batched, per_env_reference(bank, expert_of_env, contexts, z), rtol=0, atol=1e-6
    )
    data = 0.3 * torch.randn(5, 3, 6, D, generator=gen, dtype=torch.float64)
    weights = bank.env_weights(expert_of_env, contexts)
    pred = bank.unroll(
        lambda tau, x: bank.field(weights, x),
        data[:, :, 0],
        grid(5, 6),
        data=data,
        alpha=alpha,
    )
    for e in range(5):
        reference = plrnn_env_trajectory(bank, int(expert_of_env[e]), contexts[e], data[e], alpha)
        torch.testing.assert_close(pred[e], reference, rtol=0, atol=1e-6)


def test_expert_losses_match_one_unroll_per_expert_with_teacher_forcing():
    moe = make_mixture()
    gen = torch.Generator().manual_seed(5)
    contexts = torch.randn(4, CTX, generator=gen)
    data = torch.randn(4, 2, 7, D, generator=gen)
    losses = moe.expert_losses(contexts, data[:, :, 0], grid(4, 7), data, alpha=0.25)
    assert losses.shape == (4, 3) and not losses.requires_grad
    for k in range(3):
        weights = moe.experts.env_weights(torch.full((4,), k), contexts)
        pred = moe.experts.unroll(
            lambda tau, z, w=weights: moe.experts.field(w, z),
            data[:, :, 0],
            grid(4, 7),
            data=data,
            alpha=0.25,
        )
        torch.testing.assert_close(losses[:, k], (pred - data).square().mean(dim=(1, 2, 3)))


def test_gd_mixture_scales_the_map_by_the_routed_probability():
    moe = make_mixture(gate_mode="gd")
    contexts, z = torch.randn(5, CTX), torch.randn(5, 2, LATENT)
    k = moe.route(contexts)
    prob = moe.gate_probs(contexts)[torch.arange(5), k]
    torch.testing.assert_close(moe(contexts, z), prob.view(-1, 1, 1) * moe.experts(k, contexts, z))
    data = torch.randn(5, 2, 6, D)
    moe.trajectories(contexts, data[:, :, 0], grid(5, 6), data=data, alpha=0.5).sum().backward()
    assert torch.count_nonzero(moe.gate.grad) > 0


def test_latent_size_default_and_check():
    assert PLRNNExpert(3, 2, 1, width=4).latent_dim == 16
    assert PLRNNExpert(20, 2, 1, width=4).latent_dim == 20
    with pytest.raises(ConfigError, match=r"latent_dim \(1\) must be >= the observed dimension"):
        PLRNNExpert(2, 2, 1, width=4, latent_dim=1)
    with pytest.raises(ValueError, match="teacher forcing"):
        make_mixture().trajectories(
            torch.zeros(1, CTX), torch.zeros(1, 1, D), grid(1, 4), alpha=0.5
        )


def test_teacher_forcing_schedule():
    fixed = {"tf_alpha": 0.3, "tf_alpha_end": None}
    assert [teacher_forcing_alpha(fixed, i, 5) for i in range(5)] == [0.3] * 5
    annealed = {"tf_alpha": 0.2, "tf_alpha_end": 0.6}
    values = [teacher_forcing_alpha(annealed, i, 5) for i in range(5)]
    assert values == pytest.approx([0.2, 0.3, 0.4, 0.5, 0.6])
    assert teacher_forcing_alpha(annealed, 0, 1) == pytest.approx(0.6)
